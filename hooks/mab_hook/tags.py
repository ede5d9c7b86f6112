"""Tag templates: `{sha}`, `{short_sha}` and `{branch}`, checked once and rendered per ref.

Templates are read by a parser of our own rather than `str.format`, which would take
`{sha!r}`, `{sha.real}` or a lone `}` for something else, or crash on them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator

from mab_hook.references import TAG_RE

FIELDS = ("sha", "short_sha", "branch")
SHORT = 7  # characters of {short_sha}
MAX = 128  # a tag's length limit
_PIECE_RE = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|([{}])|([^{}]+)")


def _pieces(template: str) -> Iterator[tuple[str, str]]:
    """("text", literal) and ("field", name) pieces; ("error", why) for a stray brace."""
    for match in _PIECE_RE.finditer(template):
        whole, field, stray, text = match.group(0), match.group(1), match.group(2), match.group(3)
        if whole in ("{{", "}}"):
            yield "text", whole[0]
        elif field is not None:
            yield "field", field
        elif stray is not None:
            yield "error", f"a lone {stray!r} (write {stray * 2} for a literal one)"
        else:
            yield "text", text


def problem(template: str) -> str | None:
    """Why a template cannot make a tag, or None."""
    for kind, value in _pieces(template):
        if kind == "error":
            return f"{template!r} has {value}"
        if kind == "field" and value not in FIELDS:
            allowed = ", ".join(f"{{{f}}}" for f in FIELDS)
            return f"{template!r} uses unknown field {{{value}}}; allowed: {allowed}"
    sample = render(template, sha="0" * 40, ref="main")
    if not TAG_RE.match(sample):
        return (
            f"{template!r} does not make a valid tag "
            f"(letters, digits, _ . -, at most {MAX}, not starting with . or -)"
        )
    return None


def moves(template: str) -> bool:
    """Whether the tag a template makes moves from commit to commit (`latest`, `{branch}`), as
    opposed to naming one commit (`{sha}`, `{short_sha}`): fixed tags are published first."""
    return not any(kind == "field" and value in ("sha", "short_sha") for kind, value in _pieces(template))


def safe(ref: str | None) -> str:
    """A ref's name as a tag may hold it: feature/x -> feature-x."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", ref or "detached").lstrip(".-") or "detached"


def render(template: str, *, sha: str, ref: str | None) -> str:
    """The tag a template makes for a commit pushed as `ref` (a branch or tag name; None when
    detached). The ref is made tag-safe (`safe`); a tag past MAX characters is cut and ends in
    a hash of the whole, so two long names never make the same tag."""
    values = {"sha": sha, "short_sha": sha[:SHORT], "branch": safe(ref)}
    whole = "".join(
        values.get(value, "") if kind == "field" else value
        for kind, value in _pieces(template)
        if kind != "error"
    )
    if len(whole) <= MAX:
        return whole
    return whole[: MAX - 9] + "-" + hashlib.sha256(whole.encode()).hexdigest()[:8]
