"""`.dockerignore` files, with Docker's own semantics.

The matcher is moby's patternmatcher (Go `filepath.Match` plus `**`, `!` exceptions where the
last match wins, comments, a leading `/` ignored), checked and cleaned by e2b-dockerfile-utils'
port of it and matched in linear time (`patterns.Matcher`): it agreed with BuildKit on every
case we tried, where pathspec (gitignore rules) and the docker SDK's matcher did not.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import NamedTuple

from mab_hook import paths
from mab_hook.errors import FatalError
from mab_hook.patterns import Matcher


class Ignore(NamedTuple):
    """The ignore file in use for one build context (path None: there is none)."""

    path: str | None
    matcher: Matcher | None = None

    def excludes(self, relative: str) -> bool:
        """Whether a path, relative to the context root, is left out of the context."""
        return self.matcher is not None and _matches(self.matcher, relative)


NO_IGNORE = Ignore(None)
OWN = ".dockerignore"  # `<Dockerfile>.dockerignore`: a Dockerfile's own ignore file


def ignore_file(context: str, dockerfile: str | None, exists: Callable[[str], bool]) -> str | None:
    """`<Dockerfile>.dockerignore` beside the Dockerfile wins over `<context>/.dockerignore`."""
    if dockerfile is not None and exists(specific := dockerfile + OWN):
        return specific
    default = paths.join(context, ".dockerignore")
    return default if exists(default) else None


def load(path: str | None, text: str | None) -> Ignore:
    if path is None or text is None:
        return NO_IGNORE
    try:
        return Ignore(path, _parse(text.removeprefix("\ufeff")))  # BuildKit drops a UTF-8 BOM
    except ValueError as e:
        raise FatalError(f"{path}: {e}") from None


@lru_cache(maxsize=1 << 16)
def _matches(matcher: Matcher, relative: str) -> bool:
    """Several rules of a build ask about the same paths; the matcher is slow Python."""
    return bool(matcher.matches(relative))


@lru_cache(maxsize=1024)
def _parse(text: str) -> Matcher:
    """Ignore files are often copies of each other: each text is compiled once."""
    return Matcher(text.splitlines())
