"""Image references, parsed by Docker's rules."""

from __future__ import annotations

import pytest

from mab_hook import references
from mab_hook.references import Reference


@pytest.mark.parametrize(("text", "parsed"), [
    ("busybox", Reference("docker.io", "library/busybox")),
    ("team/api:1.2", Reference("docker.io", "team/api", "1.2")),
    ("127.0.0.1:5000/team/api:latest", Reference("127.0.0.1:5000", "team/api", "latest")),
    ("localhost/api", Reference("localhost", "api")),
    ("Registry/api", Reference("Registry", "api")),  # capitals: a registry, not a path
    ("index.docker.io/x", Reference("docker.io", "library/x")),
    ("reg:5000/a@sha256:" + "0" * 64, Reference("reg:5000", "a", None, "sha256:" + "0" * 64)),
    ("reg:5000/a:1@sha256:" + "0" * 64, Reference("reg:5000", "a", "1", "sha256:" + "0" * 64)),
])  # fmt: skip
def test_parse(text: str, parsed: Reference) -> None:
    assert references.parse(text) == parsed


@pytest.mark.parametrize(("text", "key"), [
    ("127.0.0.1:5000/team/base:latest", "127.0.0.1:5000/team/base"),  # seen on the lab: :latest trimmed
    ("docker.io/library/busybox", "busybox"),
    ("team/base:1.0", "team/base:1.0"),
])  # fmt: skip
def test_named_context_keys_are_what_buildkit_looks_up(text: str, key: str) -> None:
    assert references.parse(text).context_key == key


def test_names_and_repositories() -> None:
    for ok in ("api", "team/api", "a.b", "a__b", "a---b", "a_b"):
        assert references.NAME_RE.match(ok), ok
    for bad in ("Api", "-api", "api-", "a..b", "a___b", "/api", "api/"):
        assert not references.NAME_RE.match(bad), bad
    assert references.REPOSITORY_PREFIX_RE.match("registry.internal:5000/team")
    assert not references.REPOSITORY_PREFIX_RE.match("user:pw@registry.internal/team")
    assert references.parse("r:5000/team/api:1").with_tag("mab-x") == "r:5000/team/api:mab-x"
    assert references.split("host:5000/team/api:1.2@sha256:ab") == ("host:5000/team/api", "1.2")
    assert references.parse("busybox").familiar == "busybox"
    assert references.parse("busybox").api_host == "registry-1.docker.io"


@pytest.mark.parametrize(("ref", "split"), [
    ("base", ("base", None)),
    ("host:5000/team/base", ("host:5000/team/base", None)),
    ("host:5000/team/base:1.2", ("host:5000/team/base", "1.2")),
    ("base@sha256:" + "a" * 64, ("base", None)),
])  # fmt: skip
def test_split_as_written(ref: str, split: tuple[str, str | None]) -> None:
    assert references.split(ref) == split


@pytest.mark.parametrize(("ref", "key"), [
    ("127.0.0.1:5000/team/base:latest", "127.0.0.1:5000/team/base"),
    ("127.0.0.1:5000/team/base", "127.0.0.1:5000/team/base"),
    ("127.0.0.1:5000/team/base:v1", "127.0.0.1:5000/team/base:v1"),
    ("docker.io/library/base:latest", "base"),
    ("docker.io/team/base:2", "team/base:2"),
    ("base", "base"),
])  # fmt: skip
def test_context_key_is_the_normalized_reference(ref: str, key: str) -> None:
    assert references.parse(ref).context_key == key
