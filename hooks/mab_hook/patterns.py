"""Docker's path patterns: COPY/ADD sources, `watch` globs, `--exclude`, `.dockerignore`.

COPY sources follow Go's `filepath.Match` (where `**` is no more than `*`; only
`COPY --parents` gives it its any-depth meaning); `watch` globs, `--exclude` and ignore files
follow moby's patternmatcher (`Matcher`).

Every pattern is matched in time linear in the path, as Go's regexp (RE2) matches it in
BuildKit: a pushed `.dockerignore` of `**/a*/**/a*/...` would make Python's backtracking
regular expressions run for hours. A pattern with at most two unbounded wildcards is matched by
`re` (quadratic at worst, and fast); one with more by a small automaton of its own.
"""

from __future__ import annotations

import posixpath
import re
import warnings
from collections.abc import Callable, Sequence
from functools import lru_cache

from e2b_dockerfile_utils import PatternMatcher

from mab_hook.paths import Tracked, in_directory


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
    tokens: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            tokens.append(STAR)
        elif ch == "?":
            tokens.append(ONE)
        elif ch == "\\" and i < n:
            tokens.append(re.escape(pattern[i]))
            i += 1
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                tokens.append(re.escape(ch))
                continue
            body = pattern[i:end]
            negate = body.startswith("^")
            body = body[1:] if negate else body
            tokens.append(("[^" if negate else "[") + body.replace("\\", "\\\\") + "]")
            i = end + 1
        else:
            tokens.append(re.escape(ch))
    return predicate(tokens)


# --- regular expressions of path patterns, matched in linear time -------------------------------

# The pieces the patterns are made of: one character (a literal, escaped, or a class), or these.
ONE, STAR, DIRS, ALL = "[^/]", "[^/]*", "(.*/)?", ".*"
_UNBOUNDED = (STAR, DIRS, ALL)


def predicate(tokens: Sequence[str]) -> Callable[[str], bool]:
    """Whether a whole path matches the regular expression `tokens` spell: by `re` when it has
    at most two unbounded pieces (at worst quadratic in the path), else by an automaton that
    follows every way at once (linear, as RE2 is)."""
    if sum(token in _UNBOUNDED for token in tokens) <= 2:
        with warnings.catch_warnings():  # `[[]`: "possible nested set", a warning for the future
            warnings.simplefilter("ignore", FutureWarning)
            compiled = re.compile("".join(tokens) + r"\Z")
        return lambda path: compiled.match(path) is not None
    return _Automaton(tokens).matches


class _Automaton:
    """A Thompson automaton of the pieces: a set of positions, advanced one character at a time."""

    def __init__(self, tokens: Sequence[str]) -> None:
        self.steps: list[tuple[str, Callable[[str], bool] | None, int]] = []  # (kind, test, jump)
        for token in tokens:
            if token == DIRS:  # empty, or anything that ends in "/"
                self.steps.append(("split", None, len(self.steps) + 3))
                self.steps.append(("loop", None, 0))
                self.steps.append(("char", "/".__eq__, 0))
            elif token in (STAR, ALL):
                self.steps.append(("loop", "/".__ne__ if token == STAR else None, 0))
            else:
                self.steps.append(("char", _one_character(token), 0))
        self.start = self._closure({0})

    def _closure(self, states: set[int]) -> frozenset[int]:
        """The positions reachable without reading a character."""
        todo, seen = list(states), set(states)
        while todo:
            state = todo.pop()
            if state >= len(self.steps):
                continue
            kind, _test, jump = self.steps[state]
            following = (state + 1, jump) if kind == "split" else (state + 1,) if kind == "loop" else ()
            for next_state in following:
                if next_state not in seen:
                    seen.add(next_state)
                    todo.append(next_state)
        return frozenset(seen)

    def matches(self, path: str) -> bool:
        states = self.start
        for ch in path:
            moved = set()
            for state in states:
                if state >= len(self.steps):
                    continue
                kind, test, _jump = self.steps[state]
                if kind == "loop" and (test is None or test(ch)):
                    moved.add(state)
                elif kind == "char" and test is not None and test(ch):
                    moved.add(state + 1)
            if not moved:
                return False
            states = self._closure(moved)
        return len(self.steps) in states


def _one_character(token: str) -> Callable[[str], bool]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        compiled = re.compile(token)
    return lambda ch: compiled.fullmatch(ch) is not None


def moby_tokens(pattern: str, backslash_is_escape: bool = True) -> tuple[str, list[str]]:
    """A cleaned pattern as moby's patternmatcher compiles it: its kind ("exact", "prefix",
    "suffix" or "regex", as its fast paths) and its regular expression's pieces."""
    kind, tokens, i, n = "exact", [], 0, len(pattern)
    while i < n:
        first, ch = i == 0, pattern[i]
        i += 1
        if ch == "*" and i < n and pattern[i] == "*":
            i += 1
            if i < n and pattern[i] == "/":  # "**/" is "**"
                i += 1
            if i >= n:
                tokens.append(ALL)
                kind = "prefix" if kind == "exact" else "regex"
            else:
                tokens.append(DIRS)
                kind = "regex"
            kind = "suffix" if first else kind
        elif ch in "*?":
            tokens.append(STAR if ch == "*" else ONE)
            kind = "regex"
        elif ch == "[":
            j = i + 1 if i < n and pattern[i] == "^" else i
            while j < n and pattern[j] != "]":
                j += 2 if pattern[j] == "\\" and backslash_is_escape else 1
            tokens.append(pattern[i - 1 : j + 1])
            i, kind = j + 1, "regex"
        elif ch == "]":
            tokens.append("]")
            kind = "regex"
        elif ch == "\\" and backslash_is_escape and i < n:
            tokens.append(re.escape(pattern[i]))
            i, kind = i + 1, "regex"
        else:
            tokens.append(re.escape(ch))
    return kind, tokens


def _moby_predicate(pattern: str) -> Callable[[str], bool]:
    kind, tokens = moby_tokens(pattern)
    if kind == "exact":
        return pattern.__eq__
    if kind == "prefix":
        return lambda path: path.startswith(pattern[:-2])
    if kind == "suffix":
        suffix = pattern[2:]  # "**/foo" matches "foo" too
        return lambda path: path.endswith(suffix) or (suffix.startswith("/") and path == suffix[1:])
    return predicate(tokens)


def _cleaned(patterns: Sequence[str]) -> list[tuple[bool, str]]:
    """Each pattern line as moby reads it: comments and blank lines dropped, a leading `!` an
    exception (before the path is cleaned: `/!x` is a path that starts with `!`)."""
    found = []
    for line in patterns:
        pattern = line.strip()
        if line.startswith("#") or not pattern:
            continue
        exclusion = pattern.startswith("!")
        pattern = posixpath.normpath(re.sub("/+", "/", pattern[1:].strip() if exclusion else pattern))
        found.append((exclusion, pattern[1:] if len(pattern) > 1 and pattern.startswith("/") else pattern))
    return found


class Matcher:
    """moby's patternmatcher: `!` exceptions where the last match wins, a pattern that matches a
    directory matching everything under it. Patterns are checked and cleaned as BuildKit does
    (e2b-dockerfile-utils' port of it: a bad one raises ValueError); matching is this module's,
    in linear time."""

    def __init__(self, patterns: Sequence[str]) -> None:
        with warnings.catch_warnings():  # the port compiles them too: `[[]` warns of nested sets
            warnings.simplefilter("ignore", FutureWarning)
            PatternMatcher(list(patterns))  # raises ValueError for a pattern BuildKit refuses
        self.rules = tuple((exclusion, _moby_predicate(pattern)) for exclusion, pattern in _cleaned(patterns))

    def matches(self, path: str) -> bool:
        """Whether `path` is matched; its parent directories are matched first, as in BuildKit."""
        segments = path.split("/")
        parents: list[bool] = []
        matched = False
        for depth in range(1, len(segments) + 1):
            current = "/".join(segments[:depth])
            found: list[bool] = []
            matched = False
            for index, (exclusion, match) in enumerate(self.rules):
                hit = bool(parents) and parents[index]
                if not hit:
                    if exclusion != matched:  # neither can change the answer so far
                        found.append(False)
                        continue
                    hit = match(current)
                found.append(hit)
                if hit:
                    matched = not exclusion
            parents = found
        return matched


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


def pattern_matcher(pattern: str) -> Matcher:
    """A matcher for one Docker pattern (with `**`), cached."""
    return _matcher(clean(pattern))


@lru_cache(maxsize=4096)
def _matcher(pattern: str) -> Matcher:
    return Matcher([pattern])


@lru_cache(maxsize=1024)
def _matcher_of(patterns: tuple[str, ...]) -> Matcher:
    return Matcher(patterns)


def watched_in(glob: str, tree: Tracked) -> list[str]:
    """The tracked paths a `watch` glob matches, reading only the directory it starts in."""
    return watched(glob, tree.under(literal_prefix(glob)))


def watched(glob: str, paths: Sequence[str]) -> list[str]:
    """The sorted paths (of a sorted sequence) a `watch` glob matches, Docker pattern syntax."""
    prefix = literal_prefix(glob)
    matcher = pattern_matcher(glob)
    return [path for path in in_directory(paths, prefix) if matcher.matches(path)]
