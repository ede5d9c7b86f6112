"""What planning learnt, kept between runs under the git dir: parsed Dockerfiles and the image
names they mention, keyed by blob id, and validated configurations, so that what did not
change costs nothing."""

from __future__ import annotations

import contextlib
import pickle
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import e2b_dockerfile_utils

from mab_hook import __version__, state

LIMIT = 20_000  # entries; past it the oldest go


class Entries(dict[Hashable, Any]):
    """The entries; `changed` says whether this run added or dropped any (and so whether the
    file needs writing)."""

    changed = False

    def __setitem__(self, key: Hashable, value: Any) -> None:
        self.changed = True
        super().__setitem__(key, value)

    def __delitem__(self, key: Hashable) -> None:
        self.changed = True
        super().__delitem__(key)


def _version() -> str:
    """A new mab-hook or a new parser starts afresh. (The parser's files are looked at rather
    than its metadata: importlib.metadata costs some 50 ms a run.)"""
    parser = Path(e2b_dockerfile_utils.__file__).parent
    stamps = [f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in sorted(parser.glob("*.py"))]
    return "/".join(("v2", __version__, *stamps))


def load(path: Path) -> Entries:
    """The cache, or an empty one when it is missing, unreadable or from another version."""
    try:
        with path.open("rb") as stream:
            data = pickle.load(stream)  # our own file, inside the repository's git dir
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError):
        return Entries()
    if not isinstance(data, dict) or data.get("version") != _version():
        return Entries()
    entries = data.get("entries")
    return Entries(entries) if isinstance(entries, dict) else Entries()


def save(path: Path, entries: dict[Hashable, Any]) -> None:
    """Write it whole, or not at all (never a torn file for the next run)."""
    kept = dict(list(entries.items())[-LIMIT:])
    data = pickle.dumps({"version": _version(), "entries": kept}, protocol=pickle.HIGHEST_PROTOCOL)
    with contextlib.suppress(OSError):  # a cache: losing it costs time, never correctness
        state.write_whole(path, data)
