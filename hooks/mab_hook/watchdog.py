"""The watchdog of one run's builds: it stops them when the run dies, however it dies.

mab-hook writes `+PGID` when it starts a child (in a process group of its own) and `-PGID`
when the child is done. When its standard input ends without the run saying so first
(`mab-hook` killed with SIGKILL, say), every group still listed is stopped: SIGTERM, then
SIGKILL. Started in a session of its own, so the signals that stop the run do not stop it.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterable

GRACE = 5.0  # seconds between SIGTERM and SIGKILL


def watch(lines: Iterable[str]) -> set[int]:
    """The process groups still running when the input ends (the run's end, or its death)."""
    running: set[int] = set()
    for line in lines:
        sign, number = line[:1], line[1:].strip()
        if sign == "." and not number:  # the run ends in order: nothing to stop
            return set()
        if not number.isdigit():
            continue
        if sign == "+":
            running.add(int(number))
        elif sign == "-":
            running.discard(int(number))
    return running


def stop(groups: set[int]) -> None:
    for sig in (signal.SIGTERM, getattr(signal, "SIGKILL", signal.SIGTERM)):
        for group in list(groups):
            try:
                os.killpg(group, sig)  # type: ignore[attr-defined,unused-ignore]
            except ProcessLookupError:
                groups.discard(group)
        deadline = time.monotonic() + GRACE
        while groups and time.monotonic() < deadline:
            time.sleep(0.1)
            groups = {g for g in groups if _alive(g)}


def _alive(group: int) -> bool:
    try:
        os.killpg(group, 0)  # type: ignore[attr-defined,unused-ignore]
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main() -> int:
    for name in ("SIGINT", "SIGHUP", "SIGTERM"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    stop(watch(sys.stdin))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
