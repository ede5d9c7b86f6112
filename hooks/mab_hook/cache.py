"""What planning learnt about files, kept between runs under the git dir: parsed Dockerfiles
and the image names they mention, keyed by blob id, so an unchanged file costs nothing."""

from __future__ import annotations

import pickle
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import e2b_dockerfile_utils

from mab_hook import __version__

LIMIT = 20_000  # entries; past it the oldest go


def _version() -> str:
    """A new mab-hook or a new parser starts afresh. (The parser's files are looked at rather
    than its metadata: importlib.metadata costs some 50 ms a run.)"""
    parser = Path(e2b_dockerfile_utils.__file__).parent
    stamps = [f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in sorted(parser.glob("*.py"))]
    return "/".join(("v1", __version__, *stamps))


def load(path: Path) -> dict[Hashable, Any]:
    """The cache, or an empty one when it is missing, unreadable or from another version."""
    try:
        with path.open("rb") as stream:
            data = pickle.load(stream)  # our own file, inside the repository's git dir
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != _version():
        return {}
    entries = data.get("entries")
    return dict(entries) if isinstance(entries, dict) else {}


def save(path: Path, entries: dict[Hashable, Any]) -> None:
    """Write it whole, or not at all (never a torn file for the next run)."""
    kept = dict(list(entries.items())[-LIMIT:])
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        with temporary.open("wb") as stream:
            pickle.dump({"version": _version(), "entries": kept}, stream, protocol=pickle.HIGHEST_PROTOCOL)
        temporary.replace(path)
    except OSError:
        pass  # a cache: losing it costs time, never correctness
