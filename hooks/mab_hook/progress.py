"""Progress while images build: per image and platform, the step it is at and the time spent.

On a terminal it is a status block that updates in place, with messages (an image built, a
wait) printed above it. Anywhere else it is plain lines: each step as it starts, and every half
minute a line for each step still running, so that a CI log or a captured push shows life.

pre-commit gives a hook a pseudo-terminal for its colours and shows nothing of it until the
hook ends; so under pre-commit progress goes to the controlling terminal itself (/dev/tty, the
console on Windows) whenever there is one.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TextIO

from mab_hook.output import Printer, terminal_safe

REDRAW = 0.5  # seconds between redraws of the status block
STILL_RUNNING = 30.0  # seconds between "still running" lines when not on a terminal
TERMINAL = "CONOUT$" if sys.platform == "win32" else "/dev/tty"


def clock_text(seconds: float) -> str:
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes else f"{rest}s"


class Progress:
    """Where a run's progress goes. Thread-safe: builds report from their own threads."""

    def __init__(
        self,
        stream: TextIO | None,
        *,
        live: bool,
        prefix: str = "mab-hook: ",
        clock: Callable[[], float] = time.monotonic,
        failures: bool = False,
    ) -> None:
        self.stream, self.live, self.prefix, self.clock = stream, live, prefix, clock
        # The failure's excerpt as it happens: only where the summary comes too late (pre-commit).
        self.failures = failures
        self._lock = threading.Lock()
        self._rows: dict[tuple[str, str], tuple[str, float, float]] = {}  # what, step start, image start
        self._drawn = 0  # lines of the block on screen
        self._last_note = clock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- what the build phase reports ---------------------------------------------------------

    def message(self, text: str) -> None:
        """A line that stays: an image built, skipped, failed; a wait."""
        if self.stream is None:
            return
        with self._lock:
            self._clear()
            self._write(f"{self.prefix}{terminal_safe(text)}\n")
            self._draw()

    def step(self, image: str, platform: str, what: str) -> None:
        """A build step started."""
        now = self.clock()
        key = (image, platform)
        with self._lock:
            began = self._rows[key][2] if key in self._rows else now
            self._rows[key] = (what, now, began)
            if self.stream is not None and not self.live:
                where = f" {platform}" if platform else ""
                self._write(f"{self.prefix}{terminal_safe(f'{image}{where}: {what}')}\n")
        self._start()

    def failed(self, image: str, excerpt: Sequence[str]) -> None:
        """An image's build failed: where the summary would come only after the hook's verdict,
        what it said is shown now."""
        if self.failures and excerpt:
            self.message("\n".join([f"{image} failed:", *(f"  {line}" for line in excerpt)]))

    def done(self, image: str) -> None:
        """An image's build ended, however: its rows leave the block."""
        with self._lock:
            for key in [k for k in self._rows if k[0] == image]:
                del self._rows[key]
            self._clear()
            self._draw()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            self._rows.clear()
            self._clear()

    # --- drawing ------------------------------------------------------------------------------

    def rows(self) -> list[str]:
        """The status block: one line per image and platform building."""
        now = self.clock()
        rows = []
        for (image, platform), (what, since, began) in sorted(self._rows.items()):
            where = f" {platform}" if platform else ""
            spent = f"{clock_text(now - since)} (building {clock_text(now - began)})"
            rows.append(terminal_safe(f"  {image}{where}: {what[:70]}  {spent}"))
        return rows

    def _start(self) -> None:
        if self.stream is None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._tick, name="mab-hook progress", daemon=True)
        self._thread.start()

    def _tick(self) -> None:
        while not self._stop.wait(REDRAW):
            with self._lock:
                if self.live:
                    self._clear()
                    self._draw()
                elif self._rows and self.clock() - self._last_note >= STILL_RUNNING:
                    self._last_note = self.clock()
                    for row in self.rows():
                        self._write(f"{self.prefix}still running:{row[1:]}\n")

    def _clear(self) -> None:
        if self.live and self._drawn:
            self._write(f"\x1b[{self._drawn}F\x1b[J")  # up to the block's first line, clear below
            self._drawn = 0

    def _draw(self) -> None:
        if self.live and self._rows:
            rows = self.rows()
            self._write("".join(f"{row}\n" for row in rows))
            self._drawn = len(rows)

    def _write(self, text: str) -> None:
        assert self.stream is not None
        try:
            self.stream.write(text)
            self.stream.flush()
        except OSError:  # the terminal went away (a closed ssh): the run goes on
            self.stream = None


@contextmanager
def progress_for(printer: Printer, env: Mapping[str, str]) -> Iterator[Progress]:
    """Progress where the user sees it as it happens, decided once."""
    if env.get("PRE_COMMIT"):
        try:
            tty = open(TERMINAL, "w", encoding="utf-8", errors="replace")  # noqa: SIM115 - closed below
        except OSError:
            tty = None
        if tty is not None:
            with tty:
                found = Progress(tty, live=True, failures=True)
                try:
                    yield found
                finally:
                    found.close()
            return
        # pre-commit holds what we write until the hook ends: nothing to show as it happens
        found = Progress(None, live=False)
    else:
        found = Progress(printer.talk, live=printer.talk.isatty() and env.get("TERM") != "dumb")
    try:
        yield found
    finally:
        found.close()


def to_terminal(text: str) -> bool:
    """`text` written to this process's terminal; False when there is none."""
    try:
        with open(TERMINAL, "w", encoding="utf-8", errors="replace") as tty:
            tty.write(text)
    except OSError:
        return False
    return True
