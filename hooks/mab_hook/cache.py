"""What planning learnt, kept between runs under the git dir: parsed Dockerfiles and the image
names they mention, keyed by blob id, and validated configurations, so that what did not
change costs nothing.

The entries live in an SQLite database (Python's own sqlite3), one row each, read one at a
time as planning asks for them: a push that touches a few images of a 5,000-image repository
reads those few, not everything earlier runs learnt. A run writes only the rows it learnt.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import enum
import functools
import importlib
import io
import os
import pickle
import sqlite3
from collections.abc import Hashable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import e2b_dockerfile_utils

from mab_hook import __version__, state

LIMIT = 20_000  # entries; past it the oldest go
_MISSING = object()


class Entries(MutableMapping[Hashable, Any]):
    """The entries, read as they are asked for, noting what this run added and dropped."""

    def __init__(self, db: sqlite3.Connection | None = None) -> None:
        self.db = db  # None: nothing kept (none yet, or unreadable): a cache in memory only
        self.read: dict[Hashable, Any] = {}  # what was asked of the database (_MISSING: not there)
        self.added: dict[Hashable, Any] = {}
        self.dropped: set[Hashable] = set()

    @property
    def changed(self) -> bool:
        return bool(self.added) or bool(self.dropped)

    def __getitem__(self, key: Hashable) -> Any:
        if key in self.added:
            return self.added[key]
        if key in self.dropped:
            raise KeyError(key)
        if key not in self.read:
            self.read[key] = self._row(key)
        found = self.read[key]
        if found is _MISSING:
            raise KeyError(key)
        return found

    def __contains__(self, key: object) -> bool:
        try:
            self[key]
        except (KeyError, TypeError):
            return False
        return True

    def __setitem__(self, key: Hashable, value: Any) -> None:
        self.added[key] = value
        self.dropped.discard(key)

    def __delitem__(self, key: Hashable) -> None:
        if key not in self:
            raise KeyError(key)
        self.added.pop(key, None)
        self.dropped.add(key)

    def __iter__(self) -> Iterator[Hashable]:
        """Every key: each entry read (rare: planning asks for entries by key)."""
        kept = [key for key in self._keys() if key not in self.added and key in self]
        return iter([*kept, *self.added])

    def __len__(self) -> int:
        return sum(1 for _key in self)

    def _row(self, key: Hashable) -> Any:
        if self.db is None:
            return _MISSING
        try:
            row = self.db.execute("select value from entries where key = ?", (_text(key),)).fetchone()
            return _MISSING if row is None else _loads(row[0])
        except Exception:  # a cache: whatever is wrong with an entry is a miss
            return _MISSING

    def _keys(self) -> list[Hashable]:
        if self.db is None:
            return []
        found = []
        with contextlib.suppress(sqlite3.Error):
            for (blob,) in self.db.execute("select pickled from entries order by written"):
                with contextlib.suppress(Exception):
                    found.append(_loads(blob))
        return found


def _text(key: Hashable) -> str:
    """A key as the database finds it: its repr, the same in every run (keys are tuples of
    strings, numbers and records)."""
    return repr(key)


def _version() -> str:
    """A new mab-hook or a new parser starts afresh. (The parser's files are looked at rather
    than its metadata: importlib.metadata costs some 50 ms a run.)"""
    parser = Path(e2b_dockerfile_utils.__file__).parent
    stamps = [f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in sorted(parser.glob("*.py"))]
    # v8: SQLite, an entry a row; v9: Where by glob; v10: a Config with engines
    return "/".join(("v10", __version__, *stamps))


class _Records(pickle.Unpickler):
    """Unpickles records and nothing else: a pickle can name any callable to run as it loads,
    so only mab-hook's own record types (named tuples, frozen dataclasses, enums) and plain
    containers may be named. A row crafted to run code is, like a damaged one, a miss."""

    def find_class(self, module: str, name: str) -> Any:
        return _record_class(module, name)


@functools.cache  # each entry names its classes again: a heavy push loads 3,000 entries
def _record_class(module: str, name: str) -> Any:
    if (module, name) in _BUILTINS:
        return getattr(builtins, name)
    if module.startswith("mab_hook.") and "." not in name:
        found = getattr(importlib.import_module(module), name, None)
        if isinstance(found, type) and (
            issubclass(found, (tuple, enum.Enum)) or dataclasses.is_dataclass(found)
        ):
            return found
    raise pickle.UnpicklingError(f"{module}.{name} is not a record of mab-hook's")


_PLAIN = ("frozenset", "set", "tuple", "list", "dict", "str", "int", "float", "bool", "bytes")
_BUILTINS = {("builtins", name) for name in _PLAIN}


def _loads(data: bytes) -> Any:
    return _Records(io.BytesIO(data)).load()


def load(path: Path) -> Entries:
    """The kept entries, to be read as asked; none when there are none yet, they are of another
    version, or the database cannot be read (then `save` starts it afresh)."""
    if not path.is_file():
        return Entries()
    try:
        db = sqlite3.connect(path, timeout=5, isolation_level=None, check_same_thread=False)
        row = db.execute("select value from meta where key = 'version'").fetchone()
    except sqlite3.Error:
        return Entries()
    if row is None or row[0] != _version():
        db.close()
        return Entries()
    return Entries(db)


def save(path: Path, entries: Entries) -> None:
    """Write the rows this run learnt and drop those it dropped (and the oldest past LIMIT); a
    database of another version, or one that cannot be written, is started afresh. A write that
    fails costs time on the next run, never correctness."""
    if not entries.changed:
        return
    with contextlib.suppress(sqlite3.Error, OSError):
        db = entries.db or _fresh(path)
        try:
            _write(db, entries)
        except sqlite3.DatabaseError:  # damaged: start afresh
            db.close()
            _write(_fresh(path), entries)


def _fresh(path: Path) -> sqlite3.Connection:
    state.private_dir(path.parent)
    for stale in (path, path.with_name(path.name + "-journal")):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))  # private from the start
    db = sqlite3.connect(path, timeout=5, isolation_level=None, check_same_thread=False)
    db.execute("pragma synchronous = off")  # see `_write`
    db.executescript(
        "begin;"
        "create table meta (key text primary key, value text);"
        "create table entries (key text primary key, pickled blob, value blob, written integer);"
        "create index written on entries (written);"
        "commit;"
    )
    db.execute("insert into meta values ('version', ?)", (_version(),))
    return db


def _write(db: sqlite3.Connection, entries: Entries) -> None:
    # Not flushed to disk: a cache lost to a power cut costs time, and a damaged one is started afresh.
    db.execute("pragma synchronous = off")
    db.execute("begin immediate")  # one writer at a time: another run's rows are never half-written
    try:
        db.executemany("delete from entries where key = ?", [(_text(key),) for key in entries.dropped])
        start = db.execute("select coalesce(max(written), 0) from entries").fetchone()[0]
        db.executemany(
            "insert or replace into entries values (?, ?, ?, ?)",
            [
                (_text(key), _dumps(key), _dumps(value), start + i)
                for i, (key, value) in enumerate(entries.added.items(), 1)
            ],
        )
        db.execute(
            "delete from entries where written <= (select written from entries order by written desc "
            "limit 1 offset ?)",
            (LIMIT,),
        )
        db.execute("commit")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            db.execute("rollback")
        raise


def _dumps(value: Any) -> bytes:
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
