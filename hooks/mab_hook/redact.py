"""Credentials never reach output, logs or image labels.

Two forms are redacted: `scheme://userinfo@` (URLs) and `user:password@host` (scp-like git
remotes, registry strings). A regular expression for them backtracks: a build step that prints a
1 MB line of punctuation made it quadratic (hours). Both forms end at an `@` and hold no space,
`/` or other `@`, so each `@` is looked at once, with only the text back to the previous one of
those: linear in the line.
"""

from __future__ import annotations

import re

_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-")
_HOST_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789[")
_ENDS = frozenset("/@")  # besides whitespace, what userinfo never holds


def redact(text: str) -> str:
    """`https://user:token@host` -> `https://***@host`; `user:pw@host:path` -> `***@host:path`."""
    if "@" not in text:
        return text
    return _bare(_urls(text))


def _userinfo_start(text: str, at: int, floor: int) -> int:
    """Where the run of characters that may be userinfo, ending at `at`, starts (not before `floor`)."""
    start = at
    while start > floor and not (text[start - 1] in _ENDS or text[start - 1].isspace()):
        start -= 1
    return start


def _urls(text: str) -> str:
    """`scheme://userinfo@` -> `scheme://***@`."""
    out, done, at = [], 0, text.find("@")
    while at != -1:
        start = _userinfo_start(text, at, done)
        if start < at and text.startswith("://", start - 3) and _has_scheme(text, start - 3, done):
            out += [text[done:start], "***@"]
            done = at + 1
        at = text.find("@", at + 1)
    return "".join(out) + text[done:]


def _has_scheme(text: str, end: int, floor: int) -> bool:
    """Whether a URL scheme ends at `end`: a run of scheme characters holding a letter."""
    start = end
    while start > floor and text[start - 1] in _SCHEME_CHARS:
        start -= 1
    return _SCHEME_RE.search(text, start, end) is not None


def _bare(text: str) -> str:
    """`user:password@host` -> `***@host`: the user has no `:`, the password one character at
    least; what comes before the user is none of `\\w / : @ . * -`, and a host follows."""
    out, done, at = [], 0, text.find("@")
    while at != -1:
        if at + 1 < len(text) and text[at + 1] in _HOST_START:
            start = _bare_start(text, _userinfo_start(text, at, done), at)
            if start is not None:
                out += [text[done:start], "***@"]
                done = at + 1
        at = text.find("@", at + 1)
    return "".join(out) + text[done:]


def _bare_start(text: str, first: int, at: int) -> int | None:
    """The leftmost start of `user:password` in text[first:at], or None."""
    if at - first < 3:  # a user, a colon and a password need three characters at least
        return None
    colon = text.rfind(":", first, at - 1)  # a colon with a password after it
    for start in range(first, colon if colon != -1 else first):
        before = text[start - 1] if start > 0 else " "
        if text[start] != ":" and not (before.isalnum() or before in "_/:@.*-"):
            return start
    return None
