"""The watchdog: what it is told, and the process groups it stops when the run dies. Real
processes, no Docker."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from mab_hook import watchdog

# A child that ignores SIGTERM, as buildx ignores it mid-export: only SIGKILL ends it.
STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"


@pytest.fixture
def child() -> Iterator[subprocess.Popen[str]]:
    """A process in a group of its own, as builds run; killed at the end whatever happened."""
    proc = subprocess.Popen((sys.executable, "-c", STUBBORN), stdout=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline() == "up\n"
    yield proc
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_it_keeps_the_groups_still_running_when_its_input_ends() -> None:
    assert watchdog.watch(["+10\n", "+11\n", "-10\n", "+12\n", "junk\n", "+x\n", "?13\n"]) == {11, 12}
    assert watchdog.watch(["+10\n", ".\n", "+11\n"]) == set()  # the run ended in order: nothing to stop
    assert watchdog.watch(["+10\n", ".5\n"]) == {10}
    assert watchdog.watch([]) == set()


def test_stopping_a_group_that_ignores_sigterm_kills_it(
    child: subprocess.Popen[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watchdog, "GRACE", 0.3)
    started = time.monotonic()
    watchdog.stop({child.pid, 2**22 + 7})  # and a group that is gone already
    assert child.wait(timeout=5) == -signal.SIGKILL
    assert time.monotonic() - started < 3


def test_main_ignores_the_signals_that_stop_the_run_and_stops_what_is_left(
    child: subprocess.Popen[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = {name: signal.getsignal(getattr(signal, name)) for name in ("SIGINT", "SIGHUP", "SIGTERM")}
    monkeypatch.setattr(watchdog, "GRACE", 0.3)
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"+{child.pid}\n"))
    try:
        assert watchdog.main() == 0
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        for name, handler in before.items():
            signal.signal(getattr(signal, name), handler)
    assert child.wait(timeout=5) == -signal.SIGKILL


def test_a_run_killed_with_sigkill_leaves_no_child_running() -> None:
    """The whole chain, as mab-hook uses it: a run streams a stubborn child and is SIGKILLed;
    the watchdog it started stops the child."""
    sleeper = "print('up', flush=True); import time; time.sleep(60)"
    run = ("import os, sys; from mab_hook import process\n"
           f"process.Group().stream((sys.executable, '-c', {sleeper!r}), env=os.environ, log=sys.stdout)\n")  # fmt: skip
    # Unbuffered whatever the caller's environment says: "up" must come through while it runs.
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen((sys.executable, "-c", run), stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None and proc.stdout.readline() == "up\n"
    children = _children_of(proc.pid)
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 10 * watchdog.GRACE
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert children and not any(_alive(pid) for pid in children)


def _children_of(pid: int) -> list[int]:
    found = subprocess.run(("pgrep", "-P", str(pid)), capture_output=True, text=True, check=False)
    return [int(line) for line in found.stdout.split()]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False
