"""Repository paths: a commit's sorted file list, and POSIX path helpers."""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Iterable, Sequence
from typing import NamedTuple


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
