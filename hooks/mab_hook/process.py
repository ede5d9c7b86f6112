"""The one subprocess wrapper: argument tuples, never a shell, errors that show what ran."""

from __future__ import annotations

import collections
import contextlib
import os
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, NamedTuple, TypeVar

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
    contained: bool = False,
    memory: int | None = None,
) -> Completed:
    """Run a command to completion, capturing its output. A program that is not installed is
    a result (`missing`), or with `check` an error that says so. `contained`: the command gets a
    process group of its own, stopped whole when it times out or the run is interrupted (a
    program that starts others, as docker starts buildx); `memory`: the bytes of address space
    it may use (Linux)."""
    cmd = tuple(cmd)
    try:
        proc = subprocess.Popen(
            cmd,
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            **(new_group() if contained else {}),
        )
    except FileNotFoundError:
        message = f"{cmd[0]!r} not found on PATH.{' ' + hint if hint else ''}"
        if check:
            raise FatalError(message) from None
        return Completed(cmd, MISSING, "", message, missing=True)
    if memory is not None:
        limit_memory(proc.pid, memory)
    try:
        stdout, stderr = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(proc, contained)
        out = proc.stdout.read() if proc.stdout else ""  # what it said before it was stopped
        if check:
            raise CommandError(cmd, -1, out, f"timed out after {timeout:g} s. {hint}") from None
        return Completed(cmd, -1, out, f"timed out after {timeout:g} s", timed_out=True)
    except BaseException:
        stop(proc, contained)
        raise
    result = Completed(cmd, proc.returncode, stdout, stderr)
    if check and proc.returncode != 0:
        raise CommandError(cmd, proc.returncode, stderr + stdout, hint)
    return result


T = TypeVar("T")


def read_stream(
    cmd: Sequence[str], consume: Callable[[IO[bytes]], T], *, env: Mapping[str, str], timeout: float
) -> tuple[T | None, Completed]:
    """Run a command and hand its binary output to `consume` as it comes (an image's tar,
    gigabytes maybe, read for a few small files); the command is stopped once `consume` returns
    or `timeout` seconds pass. What `consume` found (None when the command could not start or
    `consume` raised OSError), and how the command ended (its stderr; no stdout)."""
    cmd = tuple(cmd)
    try:
        proc = subprocess.Popen(
            cmd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            **new_group(),
        )
    except FileNotFoundError:
        return None, Completed(cmd, MISSING, "", f"{cmd[0]!r} not found on PATH", missing=True)
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        stop(proc, True)

    timer = threading.Timer(timeout, expire)
    timer.start()
    found: T | None = None
    try:
        assert proc.stdout is not None
        found = consume(proc.stdout)
    except OSError:
        found = None
    finally:
        timer.cancel()
        stop(proc, True)  # done reading: the rest of the stream is not wanted
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    return found, Completed(cmd, proc.returncode, "", err, timed_out=expired.is_set())


def detach(cmd: Sequence[str], *, env: Mapping[str, str], stdout: IO[str], stderr: IO[str]) -> None:
    """Start a command that outlives this process: a session of its own (no ^C or hang-up of
    this terminal reaches it) and no pipe of ours (pre-commit and git wait for those to close)."""
    subprocess.Popen(
        tuple(cmd),
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        close_fds=True,
        **new_group(),
    )


def stop(proc: subprocess.Popen[Any], contained: bool) -> None:
    """Stop a child at once, with everything it started when it has a group of its own."""
    if contained and POSIX:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, getattr(signal, "SIGKILL", signal.SIGTERM))  # type: ignore[attr-defined,unused-ignore]
    elif contained:
        subprocess.run(("taskkill", "/T", "/F", "/PID", str(proc.pid)), capture_output=True, check=False)
    with contextlib.suppress(OSError):
        proc.kill()
    proc.wait()


def limit_memory(pid: int, limit: int) -> None:
    """Cap a child's address space as it starts (before it starts others, which inherit it):
    a runaway input then ends it rather than the machine. Where the kernel has no prlimit
    (macOS, Windows) the timeout alone bounds it."""
    try:
        import resource  # noqa: PLC0415 - POSIX only

        resource.prlimit(pid, resource.RLIMIT_AS, (limit, limit))  # type: ignore[attr-defined,unused-ignore]
    except (ImportError, AttributeError, OSError, ValueError):
        pass


class Streamed(NamedTuple):
    returncode: int
    timed_out: bool
    tail: tuple[str, ...] = ()  # the last lines of output, as the log has them


POSIX = sys.platform != "win32"


class Group:
    """The long-running children of one run (builds, pushes), so that ^C stops them all.

    Each child gets its own process group: stopping it stops whatever it started too. A
    watchdog process (`mab_hook.watchdog`) stops them too if the run itself is killed, so no
    buildx process outlives the run, even one ended by SIGKILL.
    """

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self._running: set[subprocess.Popen[str]] = set()
        self._lock = threading.Lock()
        self._env = env
        self._watchdog: subprocess.Popen[str] | None = None

    def _tell(self, message: str) -> None:
        """Tell the watchdog (started with the first child) what runs and what ended."""
        if not POSIX:
            return  # Windows: process trees are ended by taskkill when the run ends them
        with self._lock:
            if self._watchdog is None:
                # The file itself, without site-packages (-S): it needs only the standard library,
                # and starts beside the first build in some 10 ms rather than 30.
                watchdog = str(Path(__file__).with_name("watchdog.py"))
                self._watchdog = subprocess.Popen(
                    (sys.executable, "-S", "-E", watchdog),
                    stdin=subprocess.PIPE,
                    text=True,
                    env=dict(self._env) if self._env is not None else None,
                    start_new_session=True,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            assert self._watchdog.stdin is not None
            with contextlib.suppress(OSError):
                self._watchdog.stdin.write(message + "\n")
                self._watchdog.stdin.flush()

    def close(self) -> None:
        """The run ends in order: the watchdog may go, stopping nothing."""
        with self._lock:
            watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None and watchdog.stdin is not None:
            with contextlib.suppress(OSError):
                watchdog.stdin.write(".\n")
                watchdog.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                watchdog.wait(timeout=10)

    def stream(
        self,
        cmd: Sequence[str],
        *,
        env: Mapping[str, str],
        log: IO[str],
        on_line: Callable[[str], None] = lambda line: None,
        timeout: float | None = None,
        render: Callable[[str], list[str]] | None = None,
    ) -> Streamed:
        """Run a command, teeing its merged output (redacted) to `log` and `on_line`; `render`
        turns each line of output into the lines kept (a machine format into a readable one)."""
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
                **new_group(),
            )
        except FileNotFoundError:
            raise FatalError(f"{cmd[0]!r} not found on PATH") from None
        with self._lock:
            self._running.add(proc)
        self._tell(f"+{proc.pid}")
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
                for kept in render(raw) if render is not None else (raw.rstrip("\n"),):
                    line = redact(kept)
                    log.write(line + "\n")
                    tail.append(line)
                    on_line(line)
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
            self._tell(f"-{proc.pid}")
        return Streamed(code, expired.is_set(), tuple(tail))

    def terminate_all(self) -> None:
        with self._lock:
            running = list(self._running)
        for proc in running:
            terminate(proc)


def new_group() -> dict[str, Any]:
    """Popen arguments that give a child a process group of its own."""
    if POSIX:
        return {"start_new_session": True}
    return {"creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}


def terminate(proc: subprocess.Popen[str], grace: float = 5.0) -> None:
    """Stop a child and everything it started: SIGTERM to its process group, then SIGKILL if it
    does not go in time (on Windows, taskkill of its process tree)."""
    if not POSIX:
        subprocess.run(("taskkill", "/T", "/F", "/PID", str(proc.pid)), capture_output=True, check=False)
        return
    for sig, wait in ((signal.SIGTERM, grace), (getattr(signal, "SIGKILL", signal.SIGTERM), None)):
        try:
            os.killpg(proc.pid, sig)  # type: ignore[attr-defined,unused-ignore]
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
