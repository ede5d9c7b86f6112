"""What planning learnt about files, kept between runs under the git dir: parsed Dockerfiles
and the image names they mention, keyed by blob id, so an unchanged file costs nothing."""

from __future__ import annotations

import pickle
from collections.abc import Hashable
from importlib import metadata
from pathlib import Path
from typing import Any

LIMIT = 20_000  # entries; past it the oldest go


def _version() -> str:
    versions = []
    for name in ("mab-hook", "e2b-dockerfile-utils"):
        try:
            versions.append(metadata.version(name))
        except metadata.PackageNotFoundError:
            versions.append("?")
    return "/".join(("v1", *versions))  # a new parser or a new mab-hook starts afresh


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
