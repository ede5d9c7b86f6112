"""The one subprocess wrapper: argument tuples, never a shell, errors that show what ran."""

from __future__ import annotations

import collections
import os
import shlex
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, NamedTuple

from mab_hook.errors import FatalError
from mab_hook.redact import redact

TAIL_LINES = 25


MISSING = 127  # the shell's exit code for a program that is not there


class Completed(NamedTuple):
    cmd: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    missing: bool = False  # the program is not installed (or not on PATH)
    timed_out: bool = False


class CommandError(FatalError):
    def __init__(self, cmd: Sequence[str], returncode: int, output: str, hint: str = "") -> None:
        self.cmd = tuple(cmd)
        self.returncode = returncode
        self.output = output
        lines = [f"command failed (exit {returncode}): {shlex.join(cmd)}"]
        tail = tail_lines(output)
        if tail:
            lines += ["output (last lines):", *(f"  {line}" for line in tail)]
        if hint:
            lines.append(hint)
        super().__init__("\n".join(lines))


def tail_lines(text: str, n: int = TAIL_LINES) -> list[str]:
    return [line for line in text.rstrip().splitlines()][-n:]


def run(
    cmd: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path | None = None,
    check: bool = True,
    hint: str = "",
    timeout: float | None = None,
    input: str | None = None,
) -> Completed:
    """Run a command to completion, capturing its output. A program that is not installed is
    a result (`missing`), or with `check` an error that says so."""
    cmd = tuple(cmd)
    try:
        proc = subprocess.run(
            cmd,
            env=dict(env),
            cwd=cwd,
            capture_output=True,
            text=True,
            errors="replace",
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        message = f"{cmd[0]!r} not found on PATH.{' ' + hint if hint else ''}"
        if check:
            raise FatalError(message) from None
        return Completed(cmd, MISSING, "", message, missing=True)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        if check:
            raise CommandError(cmd, -1, out, f"timed out after {timeout:g} s. {hint}") from None
        return Completed(cmd, -1, out, f"timed out after {timeout:g} s", timed_out=True)
    result = Completed(cmd, proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        raise CommandError(cmd, proc.returncode, proc.stderr + proc.stdout, hint)
    return result


class Streamed(NamedTuple):
    returncode: int
    timed_out: bool
    tail: tuple[str, ...] = ()  # the last lines of output, as the log has them


class Group:
    """The long-running children of one run (builds, pushes), so that ^C stops them all.

    Each child gets its own session and process group: stopping it stops whatever it
    started too, and no buildx process outlives the run.
    """

    def __init__(self) -> None:
        self._running: set[subprocess.Popen[str]] = set()
        self._lock = threading.Lock()

    def stream(
        self,
        cmd: Sequence[str],
        *,
        env: Mapping[str, str],
        log: IO[str],
        on_line: Callable[[str], None] = lambda line: None,
        timeout: float | None = None,
    ) -> Streamed:
        """Run a command, teeing its merged output (redacted) to `log` and `on_line`."""
        cmd = tuple(cmd)
        try:
            proc = subprocess.Popen(
                cmd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                bufsize=1,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise FatalError(f"{cmd[0]!r} not found on PATH") from None
        with self._lock:
            self._running.add(proc)
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            terminate(proc)

        timer = threading.Timer(timeout, expire) if timeout else None
        if timer:
            timer.daemon = True
            timer.start()
        tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        try:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = redact(raw)
                log.write(line)
                tail.append(line.rstrip("\n"))
                on_line(tail[-1])
            code = proc.wait()
            log.flush()
        except BaseException:
            terminate(proc)
            raise
        finally:
            if timer:
                timer.cancel()
            with self._lock:
                self._running.discard(proc)
        return Streamed(code, expired.is_set(), tuple(tail))

    def terminate_all(self) -> None:
        with self._lock:
            running = list(self._running)
        for proc in running:
            terminate(proc)


def terminate(proc: subprocess.Popen[str], grace: float = 5.0) -> None:
    """SIGTERM the process group, then SIGKILL it if it does not go in time."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
