from __future__ import annotations

import io
import os
import sys
import time

import pytest

from mab_hook import process
from mab_hook.errors import FatalError


def test_run_captures_output() -> None:
    result = process.run((sys.executable, "-c", "print('hi')"), env=os.environ)
    assert (result.returncode, result.stdout) == (0, "hi\n")


def test_run_error_shows_command_exit_code_and_tail() -> None:
    script = "import sys\nfor i in range(40): print('line', i)\nsys.exit(3)"
    with pytest.raises(process.CommandError) as info:
        process.run((sys.executable, "-c", script), env=os.environ, hint="Run `fix-it`.")
    message = str(info.value)
    assert "command failed (exit 3):" in message
    assert "line 39" in message
    assert "line 10" not in message  # only the tail
    assert message.endswith("Run `fix-it`.")
    assert info.value.returncode == 3


def test_run_unchecked_returns_the_failure() -> None:
    assert (
        process.run((sys.executable, "-c", "raise SystemExit(2)"), env=os.environ, check=False).returncode
        == 2
    )


def test_missing_program_is_a_fatal_error() -> None:
    with pytest.raises(FatalError, match=r"'no-such-program' not found on PATH\. Install it\."):
        process.run(("no-such-program",), env=os.environ, hint="Install it.")


def test_unchecked_a_missing_program_is_a_result() -> None:
    found = process.run(("no-such-program",), env=os.environ, check=False)
    assert (found.missing, found.returncode, found.timed_out) == (True, 127, False)
    assert "'no-such-program' not found on PATH" in found.stderr


def test_unchecked_a_timeout_is_a_result() -> None:
    found = process.run((sys.executable, "-c", "import time; time.sleep(5)"), env=os.environ, check=False,
                        timeout=0.2)  # fmt: skip
    assert (found.timed_out, found.returncode) == (True, -1)


def test_input_reaches_the_program() -> None:
    found = process.run((sys.executable, "-c", "print(input()[::-1])"), env=os.environ, input="abc\n")
    assert found.stdout == "cba\n"


def test_stream_tees_lines_and_returns_the_exit_code() -> None:
    log = io.StringIO()
    lines: list[str] = []
    code = process.Group().stream(
        (sys.executable, "-c", "print('a'); print('b'); raise SystemExit(4)"),
        env=os.environ,
        log=log,
        on_line=lines.append,
    )
    assert (code, lines, log.getvalue()) == ((4, False, ("a", "b")), ["a", "b"], "a\nb\n")


def test_stream_stops_a_command_at_its_timeout() -> None:
    started = time.monotonic()
    streamed = process.Group().stream((sys.executable, "-c", "import time; time.sleep(60)"), env=os.environ,
                                      log=io.StringIO(), timeout=0.5)  # fmt: skip
    assert streamed.timed_out
    assert streamed.returncode != 0
    assert time.monotonic() - started < 30


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by init) counts as gone.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split()[2] != "Z"


def test_interrupt_kills_the_whole_process_group() -> None:
    # The child starts a grandchild (as buildx starts helpers) and reports both pids.
    script = (
        "import subprocess, sys, time\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    pids: list[int] = []

    def on_line(line: str) -> None:
        pids.append(int(line))
        raise KeyboardInterrupt

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        process.Group().stream(
            (sys.executable, "-c", script), env=os.environ, log=io.StringIO(), on_line=on_line
        )
    assert time.monotonic() - started < 30
    deadline = time.monotonic() + 10
    while alive(pids[0]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pids[0])


def test_streamed_output_is_redacted_in_the_log_and_the_callback() -> None:
    log = io.StringIO()
    lines: list[str] = []
    process.Group().stream((sys.executable, "-c", "print('GET https://u:token@reg.internal/v2/')"), env=os.environ,
                   log=log, on_line=lines.append)  # fmt: skip
    assert "token" not in log.getvalue()
    assert lines == ["GET https://***@reg.internal/v2/"]
