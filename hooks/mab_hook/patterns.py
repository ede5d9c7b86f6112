"""Docker's path patterns: COPY/ADD sources, `watch` globs, `--exclude`.

COPY sources follow Go's `filepath.Match` (where `**` is no more than `*`; only
`COPY --parents` gives it its any-depth meaning); `watch` globs and `--exclude` use moby's
patternmatcher (e2b-dockerfile-utils' port), as `.dockerignore` does.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Sequence
from functools import lru_cache

from e2b_dockerfile_utils import PatternMatcher

from mab_hook.paths import in_directory


def matched_root(pattern: str, relative: str, *, parents: bool = False) -> str | None:
    """What a COPY/ADD source (or bind mount source) matching `relative` copies, or None.

    A source names a file or a directory (copied whole), possibly through wildcards: the
    result is the matched file, or the matched directory that holds `relative` ("" for the
    whole context). Wildcards follow Go's `filepath.Match`, where `**` is no more than `*`;
    only `COPY --parents` gives `**` its any-depth meaning.
    """
    cleaned = clean(pattern)
    if cleaned == "":
        return ""
    matches = _matcher(cleaned).matches if parents else _go_match(cleaned)
    segments = relative.split("/")
    for depth in range(1, len(segments) + 1):
        prefix = "/".join(segments[:depth])
        if matches(prefix):
            return prefix
    return None


def clean(pattern: str) -> str:
    """A source path as BuildKit resolves it: relative to the context root, "" for the root."""
    cleaned = posixpath.normpath("/" + pattern).lstrip("/")
    return "" if cleaned in (".", "") else cleaned


def excluded_by(excludes: tuple[str, ...], root: str, relative: str) -> bool:
    """COPY --exclude patterns apply to paths relative to what the source matched."""
    if not excludes:
        return False
    inside = posixpath.basename(relative) if relative == root else relative[len(root) :].lstrip("/")
    return _matcher_of(excludes).matches(inside)


@lru_cache(maxsize=4096)
def _go_match(pattern: str) -> Callable[[str], bool]:
    """Go's filepath.Match as a predicate on a whole path."""
    regex, i, n = [], 0, len(pattern)
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            regex.append("[^/]*")
        elif ch == "?":
            regex.append("[^/]")
        elif ch == "\\" and i < n:
            regex.append(re.escape(pattern[i]))
            i += 1
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                regex.append(re.escape(ch))
                continue
            body = pattern[i:end]
            negate = body.startswith("^")
            body = body[1:] if negate else body
            regex.append(("[^" if negate else "[") + body.replace("\\", "\\\\") + "]")
            i = end + 1
        else:
            regex.append(re.escape(ch))
    compiled = re.compile("".join(regex) + r"\Z")
    return lambda path: compiled.match(path) is not None


def literal_prefix(pattern: str) -> str:
    """The leading directories of a pattern that hold no wildcard ("" when the first does)."""
    parts = clean(pattern).split("/")[:-1]
    literal = []
    for part in parts:
        if has_wildcard(part):
            break
        literal.append(part)
    return "/".join(literal)


def has_wildcard(pattern: str) -> bool:
    return any(c in pattern for c in "*?[\\")


def escape(path: str) -> str:
    """A path as a pattern that matches it alone."""
    return re.sub(r"([*?\[\\])", r"\\\1", path)


def pattern_matcher(pattern: str) -> PatternMatcher:
    """A matcher for one Docker pattern (with `**`), cached."""
    return _matcher(clean(pattern))


@lru_cache(maxsize=4096)
def _matcher(pattern: str) -> PatternMatcher:
    return PatternMatcher([pattern])


@lru_cache(maxsize=1024)
def _matcher_of(patterns: tuple[str, ...]) -> PatternMatcher:
    return PatternMatcher(list(patterns))


def watched(glob: str, paths: Sequence[str]) -> list[str]:
    """The sorted paths (of a sorted sequence) a `watch` glob matches, Docker pattern syntax."""
    prefix = literal_prefix(glob)
    matcher = pattern_matcher(glob)
    return [path for path in in_directory(paths, prefix) if matcher.matches(path)]
