"""What a commit tracks: every file's path, mode and object id.

Listing a 100,000-file commit costs git itself some 90 ms, and turning that into Python
strings as much again. So a listing is kept under the git dir, and the next commit's is
patched from it with `git diff-tree`, which costs what the difference costs: a push is a small
difference from the commit an earlier run listed.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import operator
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import git

from mab_hook import state
from mab_hook.paths import Tree

MAGIC = "mab-hook listing v3"  # the records: "<mode> blob <id>"; a CRC-32 of the rest in the header
MODE = 6  # git prints every mode with six octal digits
KIND = "100644 blob "  # how wide a record's mode and type are
# Past this share of changed entries a fresh `git ls-tree` costs no more than patching.
MAX_PATCH_FRACTION = 0.25
# A patched listing is written down (for later runs to patch) once it is this far from the
# kept one: writing a large listing costs more than patching a little more next time.
SAVE_FRACTION = 0.01


class Listing(NamedTuple):
    tree_id: str
    tree: Tree  # every tracked path, sorted
    # "<mode> blob <object id>" of each path, in the same order, one fixed-width record after
    # the other: one string rather than 100,000 small ones. ("blob" for a submodule too: the
    # mode tells them apart, and a fixed width is what matters.)
    records: str

    @property
    def width(self) -> int:
        return len(self.records) // len(self.tree.paths) if self.tree.paths else 0

    def entry(self, path: str) -> str | None:
        """The file's "<mode> <object id>": what a file's content and executable bit hash to."""
        i = bisect.bisect_left(self.tree.paths, path)
        if i == len(self.tree.paths) or self.tree.paths[i] != path:
            return None
        record = self.records[i * self.width : (i + 1) * self.width]
        return f"{record[:MODE]} {record[len(KIND) :]}"

    def gitlinks(self) -> tuple[str, ...]:
        """The submodules the commit records (mode 160000), by path."""
        return self._of_mode("160000 ")

    def symlinks(self) -> frozenset[str]:
        """The symlinks of the commit (mode 120000), by path."""
        return frozenset(self._of_mode("120000 "))

    def _of_mode(self, mode: str) -> tuple[str, ...]:
        width, found, start = self.width, [], 0
        while (at := self.records.find(mode, start)) != -1:
            if at % width == 0:
                found.append(self.tree.paths[at // width])
            start = at + 1
        return tuple(found)

    def blob_id(self, path: str) -> str | None:
        found = self.entry(path)
        return found[MODE + 1 :] if found is not None else None


def of_commit(repo: git.Repo, sha: str, cache_dir: Path | None = None) -> Listing:
    """The listing of a commit: patched from the one kept in `cache_dir` when that is close,
    else listed afresh; kept there for the next run."""
    tree_id = str(repo.git.rev_parse("--verify", f"{sha}^{{tree}}"))
    path = cache_dir / "listing" if cache_dir is not None else None
    kept = load(path) if path is not None else None
    if kept is not None and kept.tree_id == tree_id:
        return kept
    patch = diff(repo, kept, tree_id) if kept is not None else None
    if kept is not None and patch is not None:
        found = apply(kept, tree_id, patch)
        if len(patch) <= SAVE_FRACTION * len(kept.tree.paths):
            return found  # patching again next time costs less than writing it now
    else:
        found = ls_tree(repo, tree_id)
    if path is not None:
        save(path, found)
    return found


def near(repo: git.Repo, known: Listing, sha: str) -> Listing:
    """The listing of a commit close to one listed (the commit a push is relative to): patched
    from it, and not kept."""
    tree_id = str(repo.git.rev_parse("--verify", f"{sha}^{{tree}}"))
    if tree_id == known.tree_id:
        return known
    patch = diff(repo, known, tree_id)
    return apply(known, tree_id, patch) if patch is not None else ls_tree(repo, tree_id)


def ls_tree(repo: git.Repo, tree_id: str) -> Listing:
    out = repo.git.ls_tree("-r", "-z", "--full-tree", tree_id, strip_newline_in_stdout=False)
    entries = out.split("\0")
    entries.pop()  # the text ends with a NUL
    if not entries:
        return Listing(tree_id, Tree(()), "")
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
    # stand for bytes that are not UTF-8.
    if not _is_sorted(paths):
        width = len(records) // len(paths)
        pairs = sorted(
            zip(paths, (records[i : i + width] for i in range(0, len(records), width)), strict=True)
        )
        paths, records = tuple(p for p, _ in pairs), "".join(r for _, r in pairs)
    return Listing(tree_id, Tree(paths), records)


def _split(entry: str) -> tuple[str, str]:
    meta, _, path = entry.partition("\t")
    return path, _record(meta[:MODE], meta.rpartition(" ")[2])


def _record(mode: str, object_id: str) -> str:
    return f"{mode} blob {object_id}"


def _is_sorted(paths: tuple[str, ...]) -> bool:
    return all(map(operator.le, paths, itertools.islice(paths, 1, None)))


def diff(repo: git.Repo, old: Listing, tree_id: str) -> list[tuple[str, str | None]] | None:
    """What changed from `old` to another tree, sorted by path: each path's new record, or
    None for a deleted path. None when so much changed that a fresh listing costs no more."""
    try:
        out = repo.git.diff_tree(
            "-r", "-z", "--no-renames", old.tree_id, tree_id, strip_newline_in_stdout=False
        )
    except git.GitCommandError:
        return None  # the kept tree is gone (pruned): list afresh
    fields = out.split("\0")
    changes = []
    for meta, path in zip(fields[0:-1:2], fields[1::2], strict=True):
        _old_mode, new_mode, _old_id, new_id, status = meta.lstrip(":").split(" ")
        changes.append((path, None if status == "D" else _record(new_mode, new_id)))
    if len(changes) > MAX_PATCH_FRACTION * len(old.tree.paths):
        return None
    return sorted(changes)


def apply(old: Listing, tree_id: str, changes: Iterable[tuple[str, str | None]]) -> Listing:
    """`old` with records replaced, added and deleted (`changes` sorted by path); the untouched
    runs between them are copied whole."""
    paths: list[str] = []
    records: list[str] = []
    old_paths, width, start = old.tree.paths, old.width, 0
    for path, record in changes:
        i = bisect.bisect_left(old_paths, path, start)
        paths += old_paths[start:i]
        records.append(old.records[start * width : i * width])
        start = i + 1 if i < len(old_paths) and old_paths[i] == path else i
        if record is not None:
            paths.append(path)
            records.append(record)
    paths += old_paths[start:]
    records.append(old.records[start * width :])
    return Listing(tree_id, Tree(tuple(paths)), "".join(records))


def load(path: Path) -> Listing | None:
    """The kept listing, or None when there is none or it does not hold together: a damaged
    listing would change plans, so its checksum is checked (some 5 ms for 100,000 files)."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    head, _, body = data.partition(b"\n")
    magic, _, rest = head.decode("utf-8", errors="replace").rpartition(" ")
    tree_id, _, crc = rest.partition(":")
    if magic != MAGIC or not tree_id or crc != f"{zlib.crc32(body):08x}":
        return None
    records, _, names = body.decode("utf-8", errors="surrogateescape").partition("\n")
    paths = tuple(names.split("\0")) if names else ()
    if (paths and len(records) % len(paths)) or (records and not paths):
        return None
    return Listing(tree_id, Tree(paths), records)


def save(path: Path, listing: Listing) -> None:
    """Written whole or not at all; a lost listing costs time, never correctness."""
    body = f"{listing.records}\n{chr(0).join(listing.tree.paths)}".encode("utf-8", errors="surrogateescape")
    with contextlib.suppress(OSError):
        state.write_private(path, f"{MAGIC} {listing.tree_id}:{zlib.crc32(body):08x}\n".encode() + body)
