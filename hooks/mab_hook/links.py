"""Symlinks as BuildKit follows them in a build context.

A COPY/ADD source or a mount source that is a symlink, or whose path goes through one, reads
what the link points to: BuildKit resolves it inside the context (an absolute target, or one
that climbs past the context's root, stays in the context). Symlinks inside a copied
directory are copied as links, not followed.
"""

from __future__ import annotations

import posixpath
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


def _inside(directory: str, target: str) -> str:
    """A link's target as a path in the context: absolute from the context's root, relative
    from the link's directory, never above the root."""
    joined = posixpath.normpath(target if target.startswith("/") else posixpath.join("/", directory, target))
    return joined.lstrip("/")
