"""No credential reaches output, logs or labels."""

from __future__ import annotations

import os
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mab_hook.redact import redact
from tests.conftest import finishes


@pytest.mark.parametrize(("text", "shown"), [
    ("pushing to https://bob:s3cret@registry.internal/v2/ and ssh://git@host/repo, not http://plain/x",
     "pushing to https://***@registry.internal/v2/ and ssh://***@host/repo, not http://plain/x"),
    ("user:pass@host:path/repo.git", "***@host:path/repo.git"),  # an scp-style remote with a password
    ("bob:s3cret@registry.internal:5000/team", "***@registry.internal:5000/team"),
    ("git@github.com:org/repo.git", "git@github.com:org/repo.git"),  # a user name alone is no secret
    ("registry.internal:5000/team", "registry.internal:5000/team"),
    ("busybox@sha256:abc", "busybox@sha256:abc"),
])  # fmt: skip
def test_redact(text: str, shown: str) -> None:
    assert redact(text) == shown


# The expressions redaction used to be written as: the meaning the linear version keeps.
_URL_USERINFO_RE = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/\s@]+@")
_BARE_USERINFO_RE = re.compile(r"(?<![\w/:@.*-])[^\s/@:]+:[^\s/@]+@(?=[A-Za-z0-9\[])")


def by_regex(text: str) -> str:
    return _BARE_USERINFO_RE.sub("***@", _URL_USERINFO_RE.sub(r"\g<scheme>***@", text))


@settings(max_examples=3000, deadline=None, derandomize=bool(os.environ.get("CI")))
@given(st.text(alphabet="ab1Z:/@.*-_[! \té", max_size=24))
def test_redaction_means_what_the_regular_expressions_meant(text: str) -> None:
    assert redact(text) == by_regex(text)


def test_redaction_is_linear_in_the_line() -> None:
    """Lines a hostile build step may print: quadratic redaction took hours on 1 MB."""
    program = (
        "from mab_hook.redact import redact\n"
        "for line in ('a' * 1_000_000 + '@b', 'a' * 1_000_000 + '://x@b', (',a:' * 300_000) + '@b', ':@a' * 300_000):\n"
        "    redact(line)\n"
    )
    finishes(program)
