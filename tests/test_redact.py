"""No credential reaches output, logs or labels."""

from __future__ import annotations

import pytest

from mab_hook.redact import redact


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
