"""What planning learnt, kept between runs under the git dir: parsed Dockerfiles and the image
names they mention, keyed by blob id, and validated configurations, so that what did not
change costs nothing.

The file is a header and then batches of entries, one pickle each: a run that only learnt
something new appends a batch (rewriting a 1,000-Dockerfile cache costs some 20 ms); one that
dropped entries, or finds the file grown past its limit, writes it afresh.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import io
import os
import pickle
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import e2b_dockerfile_utils

from mab_hook import __version__, state

LIMIT = 20_000  # entries; past it the oldest go
MAX_BATCHES = 64  # appended batches before the file is written afresh


class Entries(dict[Hashable, Any]):
    """The entries, noting what this run added and whether it dropped any."""

    def __init__(self, *args: Any, batches: int = 0, appendable: bool = False) -> None:
        super().__init__(*args)
        self.added: dict[Hashable, Any] = {}
        self.dropped = False
        self.batches = batches  # in the file it came from
        # The file is ours, of this version: a batch may be appended to it. Otherwise (missing,
        # another version, damaged at its start) it is written afresh.
        self.appendable = appendable

    @property
    def changed(self) -> bool:
        return bool(self.added) or self.dropped

    def __setitem__(self, key: Hashable, value: Any) -> None:
        self.added[key] = value
        super().__setitem__(key, value)

    def __delitem__(self, key: Hashable) -> None:
        self.dropped = True
        self.added.pop(key, None)
        super().__delitem__(key)


def _version() -> str:
    """A new mab-hook or a new parser starts afresh. (The parser's files are looked at rather
    than its metadata: importlib.metadata costs some 50 ms a run.)"""
    parser = Path(e2b_dockerfile_utils.__file__).parent
    stamps = [f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in sorted(parser.glob("*.py"))]
    return "/".join(("v7", __version__, *stamps))  # v7: stages keep FROM --platform; images aliases


class _Records(pickle.Unpickler):
    """Unpickles records and nothing else: a pickle can name any callable to run as it loads,
    so only mab-hook's own record types (named tuples, frozen dataclasses, enums) and plain
    containers may be named. A file crafted to run code is, like a damaged one, a miss."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _BUILTINS:
            return super().find_class(module, name)
        if module.startswith("mab_hook.") and "." not in name:
            found = super().find_class(module, name)
            if isinstance(found, type) and (
                issubclass(found, (tuple, enum.Enum)) or dataclasses.is_dataclass(found)
            ):
                return found
        raise pickle.UnpicklingError(f"{module}.{name} is not a record of mab-hook's")


_PLAIN = ("frozenset", "set", "tuple", "list", "dict", "str", "int", "float", "bool", "bytes")
_BUILTINS = {("builtins", name) for name in _PLAIN}


def load(path: Path) -> Entries:
    """The cache, or an empty one when it is missing or from another version; a damaged
    batch (or anything else amiss with the file) ends it, and what came before is kept."""
    try:
        stream = io.BytesIO(path.read_bytes())
    except OSError:
        return Entries()
    found: dict[Hashable, Any] = {}
    batches = 0
    ours = False
    with contextlib.suppress(Exception):  # a cache: whatever is wrong with it costs time, not the run
        if _Records(stream).load() != {"version": _version()}:  # our own file, in the git dir
            return Entries()
        ours = True
        while stream.tell() < len(stream.getbuffer()):
            batch = _Records(stream).load()
            if not isinstance(batch, dict):
                break
            found.update(batch)
            batches += 1
    return Entries(found, batches=batches, appendable=ours)


def save(path: Path, entries: Entries) -> None:
    """Append what this run learnt, or write the file afresh; a write that fails costs time
    on the next run, never correctness."""
    if not entries.changed:
        return
    fresh = (
        not entries.appendable or entries.dropped or entries.batches >= MAX_BATCHES or len(entries) > LIMIT
    )
    with contextlib.suppress(OSError):
        if fresh:
            kept = dict(list(entries.items())[-LIMIT:])
            header = pickle.dumps({"version": _version()}, protocol=pickle.HIGHEST_PROTOCOL)
            state.write_private(path, header + pickle.dumps(kept, protocol=pickle.HIGHEST_PROTOCOL))
            return
        batch = pickle.dumps(entries.added, protocol=pickle.HIGHEST_PROTOCOL)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, batch)  # one write at the end: another run's batch never interleaves
        finally:
            os.close(fd)
