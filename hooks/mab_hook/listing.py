"""What a commit tracks: every file's path, mode and object id.

Listing a 500,000-file commit costs git and Python some 0.3 s and 200 MB, and a push needs a few
hundred of those entries. So a listing is kept under the git dir in a form that is read a block
at a time, never loaded whole, and a commit's listing is that kept one with what `git diff-tree`
says changed laid over it: a push costs what its difference and the entries it reads cost. The
kept listing is written afresh only once the difference has grown, or when it is damaged or gone.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import itertools
import operator
import os
import sys
import threading
import zlib
from array import array
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path
from typing import BinaryIO, NamedTuple, Protocol, TypeVar

import git

from mab_hook import gitobjects, state
from mab_hook.paths import Difference

MAGIC = b"mab-hook listing v5"
MODE = 6  # git prints every mode with six octal digits
KIND = "100644 blob "  # how wide a record's mode and type are
SYMLINK, GITLINK = "120000", "160000"  # the modes kept apart: few, and asked for as a whole
SPECIAL = (SYMLINK, GITLINK)
# Past this share of changed entries a fresh `git ls-tree` costs no more than patching.
MAX_PATCH_FRACTION = 0.25
# A patched listing is written down (for later runs to patch) once it is this far from the
# kept one: writing a large listing costs more than patching a little more next time.
SAVE_FRACTION = 0.01
T = TypeVar("T")
BLOCK = 4096  # bytes of a kept listing checked at once, the first time one of them is read
STRIDE = 128  # every this many paths, one is kept in the header: a look-up's first steps

# A change of a commit from the listing it is laid over: a path's new record, or None for a
# path the commit no longer has.
Change = tuple[str, "str | None"]


class Patch(NamedTuple):
    """What changed from one tree to another."""

    changes: list[Change]  # sorted by path
    moved: frozenset[str]  # the paths only one of the two trees has (added, deleted)


class Base(Protocol):
    """A whole listing, sorted by path: held in memory, or read in place from the kept file."""

    @property
    def tree_id(self) -> str: ...

    def __len__(self) -> int: ...
    def bisect(self, path: str) -> int: ...
    def path(self, i: int) -> str: ...
    def paths(self, start: int, end: int) -> Sequence[str]: ...
    def records(self, start: int, end: int) -> str: ...
    def specials(self) -> tuple[tuple[str, str], ...]: ...  # (path, mode) of symlinks and submodules


@dataclasses.dataclass(frozen=True)
class Listed:
    """A listing in memory: as `git ls-tree` gave it, or patched."""

    tree_id: str
    every: tuple[str, ...]  # every tracked path, sorted
    # "<mode> blob <object id>" of each path, in the same order, one fixed-width record after
    # the other: one string rather than 100,000 small ones. ("blob" for a submodule too: the
    # mode tells them apart, and a fixed width is what matters.)
    text: str

    @property
    def width(self) -> int:
        return len(self.text) // len(self.every) if self.every else 0

    def __len__(self) -> int:
        return len(self.every)

    def bisect(self, path: str) -> int:
        return bisect.bisect_left(self.every, path)

    def path(self, i: int) -> str:
        return self.every[i]

    def paths(self, start: int, end: int) -> Sequence[str]:
        return self.every[start:end]

    def records(self, start: int, end: int) -> str:
        return self.text[start * self.width : end * self.width]

    def specials(self) -> tuple[tuple[str, str], ...]:
        return self._specials

    @cached_property
    def _specials(self) -> tuple[tuple[str, str], ...]:  # a scan of every record: once
        width, found, start = self.width, [], 0
        while (at := _next_special(self.text, start)) != -1:
            if at % width == 0:
                found.append((self.every[at // width], self.text[at : at + MODE]))
            start = at + 1
        return tuple(found)


def _next_special(text: str, start: int) -> int:
    found = [at for mode in SPECIAL if (at := text.find(mode + " ", start)) != -1]
    return min(found, default=-1)


class Listing:
    """The tracked files of one commit: a whole listing (`base`) with the commit's changes from
    it laid over (`patch`, sorted by path). It answers what planning asks of a commit's files
    (`exists`, `under`, `has_dir`, `paths`: see `paths.Tracked`) reading only what it needs."""

    def __init__(
        self, tree_id: str, base: Base, patch: Patch | None = None, known: Known | None = None
    ) -> None:
        self.tree_id, self.base = tree_id, base
        self.known = known if known is not None else Known.of(base.tree_id, {})
        self.patch = tuple(patch.changes) if patch is not None else ()
        self.moved = patch.moved if patch is not None else frozenset()
        self._changed = dict(self.patch)
        self._patched = tuple(path for path, _record in self.patch)
        self._under: dict[str, Sequence[str]] = {}

    @property
    def tree(self) -> Listing:
        """The tracked paths, as planning asks about them."""
        return self

    def difference(self) -> Difference:
        return Difference(self.base.tree_id, self.moved, frozenset(self._changed))

    def entry(self, path: str) -> str | None:
        """The file's "<mode> <object id>": what a file's content and executable bit hash to."""
        record = self._changed[path] if path in self._changed else self._in_base(path)
        return None if record is None else f"{record[:MODE]} {record[len(KIND) :]}"

    def blob_id(self, path: str) -> str | None:
        found = self.entry(path)
        return found[MODE + 1 :] if found is not None else None

    def _in_base(self, path: str) -> str | None:
        if path in self.known.records:
            self.known.asked.add(path)
            return self.known.records[path]
        i = self.base.bisect(path)
        found = self.base.records(i, i + 1) if i < len(self.base) and self.base.path(i) == path else None
        if len(self.known.asked) < MAX_KNOWN:
            self.known.records[path] = found
            self.known.asked.add(path)
        return found

    def exists(self, path: str) -> bool:
        if path in self._changed:
            return self._changed[path] is not None
        return self._in_base(path) is not None

    def under(self, directory: str) -> Sequence[str]:
        """The sorted paths inside `directory` ("." or "": all of them)."""
        if directory in (".", ""):
            return self.paths
        if directory not in self._under:  # planning asks after a context several times
            start, end, changes = self._range(directory)
            found = self.base.paths(start, end)
            if changes:
                gone = {path for path, record in changes if record is None}
                came = {path for path, record in changes if record is not None}
                found = sorted((set(found) - gone) | came)
            self._under[directory] = found
        return self._under[directory]

    def has_dir(self, directory: str) -> bool:
        if directory in (".", ""):
            return True
        start, end, changes = self._range(directory)
        # Every change of a path the base lacks adds it; one it has changes or deletes it.
        return any(record is not None for _path, record in changes) or end - start > len(changes)

    def _range(self, directory: str) -> tuple[int, int, tuple[Change, ...]]:
        # Every path under "dir/" sorts between "dir/" and "dir0" ("0" follows "/").
        low, high = directory + "/", directory + "0"
        changes = self.patch[bisect.bisect_left(self._patched, low) : bisect.bisect_left(self._patched, high)]
        return self.base.bisect(low), self.base.bisect(high), changes

    @cached_property
    def paths(self) -> Sequence[str]:
        """Every tracked path, sorted: the whole listing read (image discovery needs it)."""
        return self.materialized().every

    def gitlinks(self) -> tuple[str, ...]:
        """The submodules the commit records (mode 160000), by path."""
        return tuple(path for path, mode in self._specials() if mode == GITLINK)

    def symlinks(self) -> frozenset[str]:
        """The symlinks of the commit (mode 120000), by path."""
        return frozenset(path for path, mode in self._specials() if mode == SYMLINK)

    def _specials(self) -> list[tuple[str, str]]:
        kept = [(path, mode) for path, mode in self.base.specials() if path not in self._changed]
        laid = [(path, record[:MODE]) for path, record in self.patch if record and record[:MODE] in SPECIAL]
        return sorted(kept + laid)

    def materialized(self) -> Listed:
        """The whole listing in memory: the base's untouched runs copied whole between changes."""
        if not self.patch and isinstance(self.base, Listed):
            return self.base
        paths: list[str] = []
        records: list[str] = []
        start = 0
        for path, record in self.patch:
            i = self.base.bisect(path)
            paths += self.base.paths(start, i)
            records.append(self.base.records(start, i))
            start = i + 1 if i < len(self.base) and self.base.path(i) == path else i
            if record is not None:
                paths.append(path)
                records.append(record)
        paths += self.base.paths(start, len(self.base))
        records.append(self.base.records(start, len(self.base)))
        return Listed(self.tree_id, tuple(paths), "".join(records))


def of_commit(
    repo: git.Repo, sha: str, cache_dir: Path | None = None, delta: gitobjects.TreeDiff | None = None
) -> Listing:
    """The listing of a commit: the one kept in `cache_dir` with the commit's changes laid over
    it when those are few, else listed afresh; kept there for the next run. `delta`: the push's
    own diff to the commit, which saves asking git when it starts where the last run ended."""
    tree_id = str(repo.git.rev_parse("--verify", f"{sha}^{{tree}}"))
    path = cache_dir / "listing" if cache_dir is not None else None
    kept = load(path, lambda tree: ls_tree(repo, tree)) if path is not None else None
    known = load_known(path.with_name(KNOWN), kept.tree_id) if path is not None and kept is not None else None
    if kept is not None and kept.tree_id == tree_id:
        return Listing(tree_id, kept, known=known)
    last = load_patch(path.with_name(PATCH), kept.tree_id) if path is not None and kept is not None else None
    own = delta if delta is not None and delta.new == sha else None  # the diff to this very commit
    patch = _patch(repo, kept, last, tree_id, own) if kept is not None else None
    if kept is not None and patch is not None:
        found = Listing(tree_id, kept, patch, known)
        if len(patch.changes) <= SAVE_FRACTION * len(kept):
            if path is not None and (last is None or last[0] != tree_id):
                keep_patch(path.with_name(PATCH), kept.tree_id, tree_id, patch)
            return found  # laying it over again next time costs less than writing it now
        fresh = found.materialized()
    else:
        fresh = ls_tree(repo, tree_id)
    if kept is not None:
        kept.close()  # where an open file cannot be replaced (Windows)
    if path is None:
        return Listing(tree_id, fresh)
    save(path, fresh)
    return Listing(tree_id, fresh, known=Known.of(tree_id, {}, path.with_name(KNOWN)))


def near(repo: git.Repo, known: Listing, sha: str) -> Listing:
    """The listing of a commit close to one listed (the commit a push is relative to): its
    changes laid over the same base; nothing is kept."""
    tree_id = str(repo.git.rev_parse("--verify", f"{sha}^{{tree}}"))
    if tree_id == known.tree_id:
        return known
    patch = diff(repo, known.base, tree_id)
    if patch is None:
        return Listing(tree_id, ls_tree(repo, tree_id))
    return Listing(tree_id, known.base, patch, known.known)


def ls_tree(repo: git.Repo, tree_id: str) -> Listed:
    out = repo.git.ls_tree("-r", "-z", "--full-tree", tree_id, strip_newline_in_stdout=False)
    entries = out.split("\0")
    entries.pop()  # the text ends with a NUL
    if not entries:
        return Listed(tree_id, (), "")
    # "<mode> <type> <id>\t<path>", all as wide before the path but a submodule's ("commit"
    # for "blob"): where there is none, slicing is several times faster than splitting.
    tab = entries[0].index("\t")
    if entries[0][MODE:].startswith(" blob ") and " commit " not in out:
        paths = tuple([e[tab + 1 :] for e in entries])
        records = "".join([e[:tab] for e in entries])
    else:
        pairs = [_split(e) for e in entries]
        paths, records = tuple(p for p, _ in pairs), "".join(r for _, r in pairs)
    # git sorts byte-wise, which is Python's order for UTF-8 but not for the surrogates that
    # stand for bytes that are not UTF-8. Python's order is the one every look-up uses.
    if not _is_sorted(paths):
        width = len(records) // len(paths)
        pairs = sorted(
            zip(paths, (records[i : i + width] for i in range(0, len(records), width)), strict=True)
        )
        paths, records = tuple(p for p, _ in pairs), "".join(r for _, r in pairs)
    return Listed(tree_id, paths, records)


def _split(entry: str) -> tuple[str, str]:
    meta, _, path = entry.partition("\t")
    return path, _record(meta[:MODE], meta.rpartition(" ")[2])


def _record(mode: str, object_id: str) -> str:
    return f"{mode} blob {object_id}"


def _is_sorted(paths: tuple[str, ...]) -> bool:
    return all(map(operator.le, paths, itertools.islice(paths, 1, None)))


def diff(repo: git.Repo, old: Base, tree_id: str, delta: gitobjects.TreeDiff | None = None) -> Patch | None:
    """What changed from `old` to another tree: each path's new record, or None for a deleted
    path. None when so much changed that a fresh listing costs no more. `delta`: the push's own
    diff, used when it is from `old`'s tree."""
    found = _since(repo, old.tree_id, tree_id, delta)
    if found is None or len(found.changes) > MAX_PATCH_FRACTION * len(old):
        return None  # the kept tree is gone (pruned), or a fresh listing costs no more
    return found


def _diff_tree(repo: git.Repo, old: str, new: str) -> Patch | None:
    try:
        return _as_patch(gitobjects.diff_tree(repo, old, new))
    except git.GitCommandError:
        return None


def _as_patch(found: Sequence[gitobjects.TreeChange]) -> Patch:
    changes: list[Change] = []
    moved = []
    for path, mode, object_id, status in found:
        changes.append((path, None if status == "D" else _record(mode, object_id)))
        if status in ("A", "D"):
            moved.append(path)
    return Patch(sorted(changes), frozenset(moved))


def _since(repo: git.Repo, old_tree: str, tree_id: str, delta: gitobjects.TreeDiff | None) -> Patch | None:
    """The changes from a tree listed before (the last run's, the kept listing's) to this one:
    the push's own diff when it is from a commit of that tree (the usual push follows the one
    before, a heavy one starts where the kept listing was made), else git's."""
    if delta is not None and _tree_of(repo, delta.old) == old_tree:
        return _as_patch(delta.changes)
    return _diff_tree(repo, old_tree, tree_id)


def _tree_of(repo: git.Repo, commit: str) -> str | None:
    """A commit's tree, read through GitPython's running `git cat-file` (no process of its own)."""
    try:
        return str(repo.commit(commit).tree.hexsha)
    except (ValueError, git.GitCommandError):
        return None


def _patch(
    repo: git.Repo,
    kept: Base,
    last: tuple[str, Patch] | None,
    tree_id: str,
    delta: gitobjects.TreeDiff | None,
) -> Patch | None:
    """The changes from the kept listing to a tree: the last run's (`last`: its tree, and the
    changes from the kept listing to it) with what changed since laid over them, when there
    are some; else `git diff-tree` from the kept tree. A push is a commit or a few past the
    last one, while the kept listing may be thousands of paths behind (it is written anew only
    past SAVE_FRACTION): the diff from the last tree is the small one."""
    if last is None:
        return diff(repo, kept, tree_id, delta)
    since = _since(repo, last[0], tree_id, delta)
    if since is None:
        return diff(repo, kept, tree_id, delta)
    found = composed(last[1], since)
    return found if len(found.changes) <= MAX_PATCH_FRACTION * len(kept) else None


def composed(first: Patch, then: Patch) -> Patch:
    """The changes from a base to a tree, from those of the base to a middle tree (`first`)
    and of the middle tree to that one (`then`). Whether the base has a path follows from
    either: one `first` changes is in the base unless `first` added it; one only `then`
    changes is in the base as it is in the middle tree (`then` did not add it)."""
    before = dict(first.changes)
    in_base = {path: record is None or path not in first.moved for path, record in first.changes}
    in_base.update(
        (path, path not in then.moved or record is None)
        for path, record in then.changes
        if path not in before
    )
    records = {**before, **dict(then.changes)}
    changes: list[Change] = []
    moved = []
    for path in sorted(records):
        record, was = records[path], in_base[path]
        if record is None and not was:
            continue  # added, then deleted: the base has it not, nor has the tree
        changes.append((path, record))
        if was != (record is not None):
            moved.append(path)
    return Patch(changes, frozenset(moved))


KNOWN = "listing-known"  # what look-ups of the kept listing found, beside it
PATCH = "listing-patch"  # the last run's changes from the kept listing, beside it
MAX_KNOWN = 100_000  # entries remembered, at most


class Known(NamedTuple):
    """What look-ups of a whole listing found (path -> record, None for no such path), kept for
    the next run over the same listing: pushes ask after the same files again and again, and a
    dict answers in a tenth of what a look-up in the kept file costs. What a run did not ask is
    not kept: the file holds what pushes use, not everything any run (`--all`) ever read."""

    tree_id: str
    records: dict[str, str | None]
    saved: frozenset[str]  # what the file holds
    path: Path | None  # where they are kept; None: not kept (not the kept listing's)
    asked: set[str]  # what this run looked up

    @classmethod
    def of(cls, tree_id: str, records: dict[str, str | None], path: Path | None = None) -> Known:
        return cls(tree_id, records, frozenset(records), path, set())


def load_known(path: Path, tree_id: str) -> Known:
    """What earlier runs found in the kept listing, of `tree_id`; nothing when the file is of
    another listing or does not hold together."""
    with contextlib.suppress(OSError, ValueError):
        head, _, body = path.read_bytes().partition(b"\n")
        if head == _known_head(tree_id, body):
            fields = body.decode("utf-8", "surrogateescape").split("\0")
            pairs = zip(fields[0:-1:2], fields[1::2], strict=True)
            return Known.of(tree_id, {name: record or None for name, record in pairs}, path)
    return Known.of(tree_id, {}, path)


def remember(found: Listing) -> None:
    """Keep what this run looked up in the kept listing, for the next run over it."""
    kept = found.known
    if kept.path is None or kept.asked == kept.saved:
        return
    body = "".join(f"{path}\0{kept.records[path] or ''}\0" for path in sorted(kept.asked))
    data = body.encode("utf-8", "surrogateescape")
    with contextlib.suppress(OSError):
        state.write_private(kept.path, _known_head(kept.tree_id, data) + b"\n" + data)


def _known_head(tree_id: str, body: bytes) -> bytes:
    return f"{MAGIC.decode()} known {tree_id} {zlib.crc32(body):08x}".encode()


def load_patch(path: Path, base: str) -> tuple[str, Patch] | None:
    """The last run's tree and its changes from the kept listing (of `base`); None when the
    file is of another listing or does not hold together."""
    with contextlib.suppress(OSError, ValueError):
        head, _, body = path.read_bytes().partition(b"\n")
        tree_id = head.split(b" ")[-2].decode() if head.count(b" ") > 2 else ""
        if tree_id and head == _patch_head(base, tree_id, body):
            fields = body.decode("utf-8", "surrogateescape").split("\0")
            entries = list(zip(fields[0:-1:3], fields[1::3], fields[2::3], strict=True))
            changes = [(name, record or None) for name, record, _moved in entries]
            return tree_id, Patch(changes, frozenset(name for name, _record, moved in entries if moved))
    return None


def keep_patch(path: Path, base: str, tree_id: str, patch: Patch) -> None:
    """Keep this run's changes from the kept listing, for the next run to start from."""
    moved = patch.moved
    body = "".join(
        f"{name}\0{record or ''}\0{'m' if name in moved else ''}\0" for name, record in patch.changes
    )
    data = body.encode("utf-8", "surrogateescape")
    with contextlib.suppress(OSError):
        state.write_private(path, _patch_head(base, tree_id, data) + b"\n" + data)


def _patch_head(base: str, tree_id: str, body: bytes) -> bytes:
    return f"{MAGIC.decode()} patch {base} {tree_id} {zlib.crc32(body):08x}".encode()


# The kept file, all of it written at once (`save`); integers are this machine's.
#   b"<MAGIC> <byte order> <tree id> <paths> <record width> <header bytes> <its CRC-32>\n"
#   then the header (checked whole as the file is opened): the CRC-32 of each BLOCK of the body
#   (uint32), every STRIDE-th path and the symlinks and submodules (NUL-separated text);
#   then the body (each block checked the first time it is read): the records, the offset in the
#   names of each window of STRIDE paths (uint64; one more for the end), and the paths (each
#   followed by NUL).


class _Damaged(Exception):
    """A block of the kept listing is not what was written."""


class Kept:
    """The kept listing, read in place: a look-up reads a few blocks of the file, each checked
    against its CRC-32 as it is read. (Read, not mapped: a mapped file's pages come in by the
    16, and a 500,000-file listing would cost as much memory as loading it.) A damaged block
    lists the tree afresh (`relist`) and drops the file, so that the run answers as git would and
    the next one writes it anew."""

    def __init__(self, path: Path, stream: BinaryIO, head: _Head, relist: Callable[[str], Listed]) -> None:
        self.tree_id, self.count, self._path, self._stream = head.tree_id, head.entries, path, stream
        self._relist = relist
        self._lock = threading.Lock()  # one seek and read at a time
        self._width, self._start, self._crcs = head.width, head.body, head.crcs
        self._offsets = self._start + _aligned(head.entries * head.width)
        self._names = self._offsets + 8 * (_windows(head.entries) + 1)
        self._samples, self._special = head.samples, head.specials
        self._blocks: dict[int, bytes] = {}  # as read, checked
        self._windows: dict[int, list[str]] = {}  # STRIDE paths each, as read
        self._listed: Listed | None = None

    def __len__(self) -> int:
        return self.count

    def bisect(self, path: str) -> int:
        return self._safely(lambda: self._bisect(path), lambda listed: listed.bisect(path))

    def path(self, i: int) -> str:
        return self._safely(lambda: self._window(i // STRIDE)[i % STRIDE], lambda listed: listed.path(i))

    def paths(self, start: int, end: int) -> Sequence[str]:
        return self._safely(lambda: self._from_windows(start, end), lambda listed: listed.paths(start, end))

    def records(self, start: int, end: int) -> str:
        return self._safely(lambda: self._records(start, end), lambda listed: listed.records(start, end))

    def specials(self) -> tuple[tuple[str, str], ...]:
        return self._listed.specials() if self._listed is not None else self._special

    def close(self) -> None:
        self._stream.close()

    def _safely(self, read: Callable[[], T], instead: Callable[[Listed], T]) -> T:
        if self._listed is None:
            try:
                return read()
            except _Damaged:
                self._listed = self._relist(self.tree_id)
                with contextlib.suppress(OSError):
                    self._path.unlink()
        return instead(self._listed)

    def _bisect(self, path: str) -> int:
        # The header's every STRIDE-th path finds the window; the window is read whole, once.
        window = bisect.bisect_left(self._samples, path) - 1
        if window < 0:
            return 0
        return window * STRIDE + bisect.bisect_left(self._window(window), path)

    def _window(self, window: int) -> list[str]:
        if window not in self._windows:
            at = self._offsets + 8 * window
            first, end = array("Q", self._read(at, at + 16))
            text = self._read(self._names + first, self._names + end - 1)
            self._windows[window] = text.decode("utf-8", "surrogateescape").split("\0")
        return self._windows[window]

    def _from_windows(self, start: int, end: int) -> list[str]:
        """Paths from the windows that hold them (a directory's: the one or two a look-up read)."""
        found: list[str] = []
        for window in range(start // STRIDE, (end - 1) // STRIDE + 1 if end > start else start // STRIDE):
            first = window * STRIDE
            found += self._window(window)[max(start - first, 0) : end - first]
        return found

    def _records(self, start: int, end: int) -> str:
        return self._read(self._start + start * self._width, self._start + end * self._width).decode("ascii")

    def _read(self, start: int, end: int) -> bytes:
        first, last = (start - self._start) // BLOCK, (end - 1 - self._start) // BLOCK
        at = self._start + first * BLOCK
        if first == last:  # the usual read: a window's names, a few records
            return self._block(first)[start - at : end - at]
        data = b"".join([self._block(block) for block in range(first, last + 1)])
        return data[start - at : end - at]

    def _block(self, block: int) -> bytes:
        if block not in self._blocks:
            with self._lock:
                self._stream.seek(self._start + block * BLOCK)
                data = self._stream.read(BLOCK)
            if block >= len(self._crcs) or zlib.crc32(data) != self._crcs[block]:
                raise _Damaged(block)
            self._blocks[block] = data
        return self._blocks[block]


class _Head(NamedTuple):
    tree_id: str
    entries: int
    width: int
    body: int  # where the body starts in the file
    crcs: array[int]
    samples: list[str]
    specials: tuple[tuple[str, str], ...]


def _aligned(size: int) -> int:
    return -(-size // 8) * 8


def _windows(count: int) -> int:
    return -(-count // STRIDE)


def load(path: Path, relist: Callable[[str], Listed]) -> Kept | None:
    """The kept listing, or None when there is none, it is of another version or machine, or it
    does not hold together. `relist`: what lists a tree afresh, should a block read later be
    damaged."""
    try:
        stream = path.open("rb", buffering=0)
    except OSError:
        return None
    try:
        head = _head(stream, os.fstat(stream.fileno()).st_size)
    except OSError:
        head = None
    if head is None:
        stream.close()
        return None
    return Kept(path, stream, head, relist)


def _head(stream: BinaryIO, size: int) -> _Head | None:
    line = stream.readline(256)
    fields = line.split()
    try:
        if len(fields) != 9 or b" ".join(fields[:3]) != MAGIC or fields[3].decode() != sys.byteorder:
            return None
        tree_id, count, width, length = fields[4].decode(), int(fields[5]), int(fields[6]), int(fields[7])
        crc = int(fields[8], 16)
    except ValueError:  # not numbers, not text
        return None
    header = stream.read(length)
    if len(header) != length or zlib.crc32(header, zlib.crc32(line[: line.rindex(b" ")])) != crc:
        return None
    body = _aligned(len(line) + length)
    blocks = -(-(size - body) // BLOCK)
    if body + _aligned(count * width) + 8 * (_windows(count) + 1) > size or 4 * blocks > length:
        return None
    crcs = array("I", header[: 4 * blocks])
    samples, _, specials = header[4 * blocks :].decode("utf-8", "surrogateescape").partition("\0\0")
    pairs = tuple((entry[MODE + 1 :], entry[:MODE]) for entry in specials.split("\0") if entry)
    return _Head(tree_id, count, width, body, crcs, samples.split("\0") if samples else [], pairs)


def save(path: Path, listing: Listed) -> None:
    """Written whole or not at all; a lost listing costs time, never correctness."""
    every = listing.every
    windows = [("\0".join(every[i : i + STRIDE]) + "\0").encode("utf-8", "surrogateescape")
               for i in range(0, len(every), STRIDE)]  # fmt: skip
    offsets = array("Q", itertools.accumulate(map(len, windows), initial=0))
    names = b"".join(windows)
    records = listing.text.encode("ascii")
    body = b"".join((records, bytes(_aligned(len(records)) - len(records)), offsets.tobytes(), names))
    view = memoryview(body)
    crcs = array("I", (zlib.crc32(view[at : at + BLOCK]) for at in range(0, len(body), BLOCK)))
    specials = "\0".join(f"{mode} {path}" for path, mode in listing.specials())
    text = "\0".join(listing.every[::STRIDE]) + "\0\0" + specials
    header = crcs.tobytes() + text.encode("utf-8", "surrogateescape")
    fields = (MAGIC.decode(), sys.byteorder, listing.tree_id, len(listing), listing.width, len(header))
    line = " ".join(map(str, fields)).encode()
    first = line + f" {zlib.crc32(header, zlib.crc32(line)):08x}\n".encode()
    padding = bytes(_aligned(len(first) + len(header)) - len(first) - len(header))
    with contextlib.suppress(OSError):
        state.write_private(path, first + header + padding + body)
