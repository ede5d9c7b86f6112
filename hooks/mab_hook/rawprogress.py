"""buildx's `--progress=rawjson`, rendered as its plain progress.

Plain progress is what people read in a build log, and what mab-hook reads a failure from; but
it announces a step only when it gets to printing it, which for steps running side by side
(one per platform) can be when they end. The raw status has each step the moment BuildKit starts
it. So builds run with rawjson, and this renders it as plain progress (`#12 [api linux/arm64
2/3] RUN make`, its output, `#12 DONE 3.1s`, `#12 ERROR: ...`) while telling when steps start.
Lines that are not JSON (buildx's own `ERROR: failed to solve: ...`) pass through.
"""

from __future__ import annotations

import base64
import datetime
import json
from collections.abc import Callable
from typing import Any


def _time(value: Any) -> datetime.datetime | None:
    if not isinstance(value, str):
        return None
    try:  # Go trims a fraction's trailing zeros (all of them: no fraction) and writes up to nine
        # digits: Python 3.10 takes six
        head, _, rest = value.removesuffix("Z").partition(".")
        digits = "".join(c for c in rest if c.isdigit())[:6].ljust(6, "0")
        return datetime.datetime.fromisoformat(f"{head}.{digits}+00:00")
    except ValueError:
        return None


class Renderer:
    """Feed it raw lines; it returns plain-progress lines, and calls `started(name)` once for
    every vertex (build step) as BuildKit starts it."""

    def __init__(self, started: Callable[[str, str], None] = lambda number, name: None) -> None:
        self.started = started
        self._buffer = ""
        self._numbers: dict[str, int] = {}  # vertex digest -> its number in the log
        self._shown: set[str] = set()  # vertices whose start was rendered
        self._ended: set[str] = set()
        self._decoder = json.JSONDecoder()

    def feed(self, line: str) -> list[str]:
        if not self._buffer and not line.lstrip().startswith("{"):
            return [line.rstrip("\n")] if line.strip() else []
        self._buffer += line
        # buildx indents each status over many lines and closes it with a `}` of its own: decoding
        # only at a line that may close one keeps a status of n lines O(n), not O(n^2), in CPU the
        # builds beside it want. (A nested object's `}` is indented; a compact one is one line.)
        if line[:1].isspace() or not line.rstrip().endswith("}"):
            return []
        out: list[str] = []
        while self._buffer:
            text = self._buffer.lstrip()
            try:
                status, end = self._decoder.raw_decode(text)
            except json.JSONDecodeError:  # at a line that closes a status, what does not decode is none
                self._buffer = ""
                return out + [kept for kept in text.splitlines() if kept.strip()]
            self._buffer = text[end:].lstrip()
            if isinstance(status, dict):
                out += self._render(status)
        return out

    def _number(self, digest: str) -> int:
        return self._numbers.setdefault(digest, len(self._numbers) + 1)

    def _render(self, status: dict[str, Any]) -> list[str]:
        out: list[str] = []
        for vertex in status.get("vertexes") or ():
            out += self._vertex(vertex)
        for log in status.get("logs") or ():
            digest = str(log.get("vertex", ""))
            try:
                data = base64.b64decode(str(log.get("data", ""))).decode("utf-8", errors="replace")
            except ValueError:
                continue
            number = self._number(digest)
            out += [f"#{number} {line}" for line in data.splitlines() if line.strip()]
        for warning in status.get("warnings") or ():
            short = warning.get("short")
            if short:
                text = base64.b64decode(str(short)).decode("utf-8", errors="replace")
                out.append(f"WARNING: {text}")
        return out

    def _vertex(self, vertex: dict[str, Any]) -> list[str]:
        digest, name = str(vertex.get("digest", "")), str(vertex.get("name", ""))
        number = self._number(digest)
        out = []
        if vertex.get("started") and digest not in self._shown:
            self._shown.add(digest)
            out.append(f"#{number} {name}")
            self.started(str(number), name)
        if digest in self._ended:
            return out
        if vertex.get("error"):
            self._ended.add(digest)
            if digest not in self._shown:
                self._shown.add(digest)
                out.append(f"#{number} {name}")
            error = str(vertex["error"])
            # A step stopped because another failed: plain progress calls it CANCELED, not an error.
            out.append(
                f"#{number} CANCELED" if error.endswith("context canceled") else f"#{number} ERROR: {error}"
            )
        elif vertex.get("cached"):
            self._ended.add(digest)
            out.append(f"#{number} CACHED")
        elif vertex.get("completed"):
            self._ended.add(digest)
            began, ended = _time(vertex.get("started")), _time(vertex.get("completed"))
            seconds = (ended - began).total_seconds() if began and ended else 0.0
            out.append(f"#{number} DONE {seconds:.1f}s")
        return out
