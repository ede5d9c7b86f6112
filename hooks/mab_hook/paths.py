"""Repository paths: a commit's sorted file list, and POSIX path helpers."""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Iterable, Sequence
from typing import NamedTuple, Protocol


class Difference(NamedTuple):
    """How a listing differs from the whole one it is laid over (`listing.Listing`)."""

    base: str  # the tree id of that whole listing
    moved: frozenset[str]  # the paths only one of the two has
    changed: frozenset[str]  # every path that differs (moved, or another blob or mode)


class Tracked(Protocol):
    """What planning asks of a commit's tracked files: a `Tree` in memory, or a kept listing
    that reads only what is asked (`listing.Listing`)."""

    @property
    def paths(self) -> Sequence[str]: ...  # every path, sorted: the whole listing

    def exists(self, path: str) -> bool: ...
    def under(self, directory: str) -> Sequence[str]: ...  # sorted; "." or "": every path
    def has_dir(self, directory: str) -> bool: ...
    def difference(self) -> Difference | None: ...  # None: not laid over a kept listing


def is_tracked(found: object) -> bool:
    """Whether `found` answers as a `Tracked` does (a list or set of paths does not)."""
    return hasattr(type(found), "under")


class Tree(NamedTuple):
    """The tracked files of a commit, sorted, so that a directory's files are one slice."""

    paths: tuple[str, ...]

    @classmethod
    def of(cls, paths: Iterable[str]) -> Tree:
        return cls(paths if isinstance(paths, tuple) and _is_sorted(paths) else tuple(sorted(paths)))

    def exists(self, path: str) -> bool:
        i = bisect.bisect_left(self.paths, path)
        return i < len(self.paths) and self.paths[i] == path

    def under(self, directory: str) -> Sequence[str]:
        return in_directory(self.paths, directory)

    def has_dir(self, directory: str) -> bool:
        return directory in (".", "") or bool(self.under(directory))

    def difference(self) -> Difference | None:
        return None


def _is_sorted(paths: tuple[str, ...]) -> bool:
    return all(a <= b for a, b in itertools.pairwise(paths))


def in_directory(paths: Sequence[str], directory: str) -> Sequence[str]:
    """The slice of sorted `paths` inside `directory` ("." or "": all of them)."""
    if directory in (".", ""):
        return paths
    # Every path under "dir/" sorts between "dir/" and "dir0" ("0" follows "/").
    return paths[bisect.bisect_left(paths, directory + "/") : bisect.bisect_left(paths, directory + "0")]


def relative_to(path: str, directory: str) -> str | None:
    """`path` relative to `directory`, or None when it is not inside it."""
    if directory in (".", ""):
        return path
    return path[len(directory) + 1 :] if path.startswith(directory + "/") else None


_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def shown(path: str) -> str:
    """A path as it may reach a terminal: control characters (a newline, an escape sequence in
    a file's name) spelled out, never acted on."""
    return _CONTROL_RE.sub(lambda m: f"\\x{ord(m.group()):02x}", path)


def join(directory: str, path: str) -> str:
    if path in ("", "."):
        return directory
    return path if directory in ("", ".") else f"{directory}/{path}"
