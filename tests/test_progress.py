"""Progress while images build: a status block on a terminal, plain lines elsewhere."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest

from mab_hook import progress
from mab_hook.output import Printer
from mab_hook.progress import Progress


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_shows_a_block_per_image_and_platform_updated_in_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Only what the calls below draw: the thread's redraw never comes between them, however slow.
    monkeypatch.setattr(progress, "REDRAW", 3600.0)
    stream, clock = Terminal(), Clock()
    shown = Progress(stream, live=True, clock=clock)
    shown.step("api", "linux/arm64", "2/3 RUN make")
    clock.now += 5
    shown.step("api", "linux/amd64", "3/3 COPY app /")
    clock.now += 70
    assert shown.rows() == ["  api linux/amd64: 3/3 COPY app /  1m10s (building 1m10s)",
                            "  api linux/arm64: 2/3 RUN make  1m15s (building 1m15s)"]  # fmt: skip
    shown.message("worker: built (3.0 s)")
    out = stream.getvalue()
    assert "mab-hook: worker: built (3.0 s)\n" in out
    assert "\x1b[" not in out.split("mab-hook: worker")[0]  # nothing drawn before the first redraw...
    assert out.endswith(
        "  api linux/arm64: 2/3 RUN make  1m15s (building 1m15s)\n"
    )  # ...then the block below it
    shown.done("api")
    assert stream.getvalue().endswith("\x1b[2F\x1b[J")  # the block is cleared in place
    shown.close()


def test_plain_lines_elsewhere_and_a_still_running_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "REDRAW", 0.01)
    # The line is due only once the clock has moved: the redraw thread may run at any moment.
    monkeypatch.setattr(progress, "STILL_RUNNING", 42.0)
    stream, clock = io.StringIO(), Clock()
    shown = Progress(stream, live=False, clock=clock)
    shown.step("api", "", "2/3 RUN make")  # one platform: no platform shown
    clock.now += 42
    for _ in range(200):
        if "still running" in stream.getvalue():
            break
        time.sleep(0.01)
    shown.close()
    out = stream.getvalue()
    assert out.startswith("mab-hook: api: 2/3 RUN make\n")
    assert "mab-hook: still running: api: 2/3 RUN make  42s (building 42s)\n" in out
    assert "\x1b[" not in out


def test_where_progress_goes(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    terminal = Terminal()
    with progress.progress_for(Printer(terminal, color=False), {}) as shown:
        assert (shown.stream, shown.live) == (terminal, True)
    plain = io.StringIO()
    with progress.progress_for(Printer(plain, color=False), {}) as shown:
        assert (shown.stream, shown.live) == (plain, False)
    # Under pre-commit the captured pseudo-terminal is never used: the controlling terminal is.
    monkeypatch.setattr(progress, "TERMINAL", "/nonexistent/tty")
    with progress.progress_for(Printer(terminal, color=False), {"PRE_COMMIT": "1"}) as shown:
        assert shown.stream is None


def test_talk_goes_where_the_printer_says_it_goes() -> None:
    """Progress is said about the run: the printer's messages stream (stderr), not its results."""
    results, talk = io.StringIO(), Terminal()
    with progress.progress_for(Printer(results, color=False, messages=talk), {}) as shown:
        assert (shown.stream, shown.live) == (talk, True)


def test_a_failure_is_shown_as_it_happens_only_where_the_summary_comes_too_late(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Under pre-commit (which holds the hook's output until its verdict) the terminal gets the
    failing step's excerpt as the build ends; elsewhere the summary, right after, is enough."""
    tty = tmp_path / "tty"
    tty.write_text("")
    monkeypatch.setattr(progress, "TERMINAL", str(tty))
    with progress.progress_for(Printer(io.StringIO(), color=False), {"PRE_COMMIT": "1"}) as shown:
        shown.failed("api", ["#9 ERROR: exit code: 1", "\x1b[2Jboom"])
    assert tty.read_text() == "mab-hook: api failed:\n  #9 ERROR: exit code: 1\n  \\x1b[2Jboom\n"
    plain = io.StringIO()
    with progress.progress_for(Printer(plain, color=False), {}) as shown:
        shown.failed("api", ["#9 ERROR: exit code: 1"])
    assert plain.getvalue() == ""
    assert progress.to_terminal("the plan\n") and tty.read_text().endswith("the plan\n")
    monkeypatch.setattr(progress, "TERMINAL", str(tmp_path / "none" / "tty"))
    assert not progress.to_terminal("the plan\n")
