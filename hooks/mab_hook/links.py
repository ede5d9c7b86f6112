"""Symlinks as BuildKit follows them in a build context.

A COPY/ADD source or a mount source that is a symlink, or whose path goes through one, reads
what the link points to: BuildKit resolves it inside the context (an absolute target, or one
that climbs past the context's root, stays in the context). Symlinks inside a copied
directory are copied as links, not followed.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from typing import NamedTuple

from mab_hook.paths import join

MAX_HOPS = 40  # as Linux gives up on a chain of links (ELOOP)


class Followed(NamedTuple):
    path: str  # where the path leads, relative to the context
    link: str  # the first symlink on its way, relative to the context


def resolve(
    context: str, path: str, is_link: Callable[[str], bool], read: Callable[[str], str | None]
) -> Followed | None:
    """`path` (relative to `context`) with every symlink on its way followed; None when none is
    on its way (or the links go round in circles). `is_link` and `read` take repository paths."""
    parts = [part for part in path.split("/") if part not in ("", ".")]
    first = ""
    for _hop in range(MAX_HOPS):
        for i in range(1, len(parts) + 1):
            prefix = "/".join(parts[:i])
            if not is_link(join(context, prefix)):
                continue
            target = read(join(context, prefix)) or ""
            first = first or prefix
            parts = _inside(posixpath.dirname(prefix), target).split("/") + parts[i:]
            parts = [part for part in parts if part not in ("", ".")]
            break
        else:
            return Followed("/".join(parts) or ".", first) if first else None
    return None


class Escape(ValueError):
    """A symlink of the commit that leads out of the repository; `target` "" for links that go
    round in circles."""

    def __init__(self, path: str, target: str) -> None:
        super().__init__(path, target)
        self.path, self.target = path, target


def followed(path: str, target_of: Callable[[str], str | None]) -> list[str]:
    """The repository paths on the way from `path` through the commit's symlinks, the file
    itself last: for files read on the pushing machine (definition files, a Dockerfile), where
    nothing clamps a link to the repository as BuildKit clamps one to a context, so a link out
    of it raises Escape. `target_of`: a link's target, None for a path that is no link."""
    on_way = []
    for _hop in range(MAX_HOPS):
        on_way.append(path)
        target = target_of(path)
        if target is None:
            return on_way
        joined = posixpath.normpath(posixpath.join(posixpath.dirname(path), target.replace("\\", "/")))
        if (
            posixpath.isabs(target)
            or re.match(r"^[A-Za-z]:", target)
            or joined == ".."
            or joined.startswith("../")
        ):
            raise Escape(path, target)
        path = joined
    raise Escape(path, "")


def _inside(directory: str, target: str) -> str:
    """A link's target as a path in the context: absolute from the context's root, relative
    from the link's directory, never above the root."""
    joined = posixpath.normpath(target if target.startswith("/") else posixpath.join("/", directory, target))
    return joined.lstrip("/")
