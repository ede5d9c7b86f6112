from __future__ import annotations

import pytest
from mab_hook.dockerfile import Stage, context_key, external_bases, split_reference, stages
from mab_hook.errors import FatalError

TRICKY = """\
# escape=`
ARG REGISTRY=registry.internal:5000
ARG BASE=${REGISTRY}/team/base:1.0
FROM --platform=$BUILDPLATFORM ${BASE} AS build
RUN echo `
    continued
FROM scratch AS empty
FROM build AS final
COPY <<EOF /etc/motd
FROM not-an-instruction
EOF
FROM ${MISSING:-fallback/image}
"""


def test_stages_expand_global_args_like_buildkit() -> None:
    assert stages(TRICKY, {}, source="Dockerfile") == (
        Stage("build", "registry.internal:5000/team/base:1.0"),
        Stage("empty", "scratch"),
        Stage("final", "build"),
        Stage(None, "fallback/image"),
    )


def test_build_args_override_declared_defaults_only() -> None:
    found = stages(TRICKY, {"REGISTRY": "mirror:5000", "UNDECLARED": "x"}, source="Dockerfile")
    assert found[0].base == "mirror:5000/team/base:1.0"


def test_external_bases_skip_stages_and_scratch() -> None:
    found = stages(TRICKY, {}, source="Dockerfile")
    assert external_bases(found) == ("registry.internal:5000/team/base:1.0", "fallback/image")


def test_stage_names_are_case_insensitive() -> None:
    found = stages("FROM alpine AS Build\nFROM BUILD\n", {}, source="Dockerfile")
    assert external_bases(found) == ("alpine",)


def test_no_from_is_an_error() -> None:
    with pytest.raises(FatalError, match="services/api/Dockerfile: no FROM instruction"):
        stages("RUN true\n", {}, source="services/api/Dockerfile")


@pytest.mark.parametrize(
    ("ref", "split"),
    [
        ("base", ("base", None)),
        ("host:5000/team/base", ("host:5000/team/base", None)),
        ("host:5000/team/base:1.2", ("host:5000/team/base", "1.2")),
        ("base@sha256:" + "a" * 64, ("base", None)),
    ],
)
def test_split_reference(ref: str, split: tuple[str, str | None]) -> None:
    assert split_reference(ref) == split


@pytest.mark.parametrize(
    ("ref", "key"),
    [
        ("127.0.0.1:5000/team/base:latest", "127.0.0.1:5000/team/base"),
        ("127.0.0.1:5000/team/base", "127.0.0.1:5000/team/base"),
        ("127.0.0.1:5000/team/base:v1", "127.0.0.1:5000/team/base:v1"),
        ("docker.io/library/base:latest", "base"),
        ("docker.io/team/base:2", "team/base:2"),
        ("base", "base"),
    ],
)
def test_context_key_is_the_normalized_reference(ref: str, key: str) -> None:
    assert context_key(ref) == key
