from __future__ import annotations

import pytest

from mab_hook.dockerfile import (
    Dockerfile,
    Source,
    is_remote,
    parse,
    parse_mount,
    platform_args,
)
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


def df(text: str, build_args: dict[str, str] | None = None, platform: str = "linux/arm64") -> Dockerfile:
    return parse(text, build_args or {}, platform=platform, build_platform="linux/amd64", source="Dockerfile")


def test_stages_expand_global_args_like_buildkit() -> None:
    found = df(TRICKY)
    assert [(s.number, s.name, s.base, s.line) for s in found.stages] == [
        (0, "build", "registry.internal:5000/team/base:1.0", 4),
        (1, "empty", "scratch", 7),
        (2, "final", "build", 8),
        (3, None, "fallback/image", 12),
    ]
    assert found.stages[2].sources == ()  # a heredoc is no source


def test_build_args_override_declared_defaults_only() -> None:
    found = df(TRICKY, {"REGISTRY": "mirror:5000", "UNDECLARED": "x"})
    assert found.stages[0].base == "mirror:5000/team/base:1.0"


def test_no_from_is_an_error() -> None:
    with pytest.raises(FatalError, match="services/api/Dockerfile: no FROM instruction"):
        parse(
            "RUN true\n",
            {},
            platform="linux/amd64",
            build_platform="linux/amd64",
            source="services/api/Dockerfile",
        )


def test_copy_and_add_sources() -> None:
    found = df(
        "FROM busybox\n"
        'COPY --chmod=755 --link ["a b", "c*", "/dst/"]\n'
        "COPY --parents --exclude=*.md --exclude=tmp ./src/**/x /x/\n"
        "ADD https://example.com/a.tgz git@github.com:a/b.git local.tar /d/\n"
        "COPY <<one <<-two src2 /dst/\nhello\none\n\tx\ntwo\n"
    )
    assert found.stages[0].sources == (
        Source("COPY", None, "a b", (), 2),
        Source("COPY", None, "c*", (), 2),
        Source("COPY", None, "./src/**/x", ("*.md", "tmp"), 3, parents=True),
        Source("ADD", None, "local.tar", (), 4),
        Source("COPY", None, "src2", (), 5),
    )


def test_arg_and_env_expand_per_stage() -> None:
    found = df(
        "ARG APP=global\n"
        "FROM busybox AS one\n"
        "ARG APP\n"  # brings the global value in
        "ENV DIR=src/${APP}\n"
        "COPY ${DIR}/main.py ${MISSING}x /app/\n"
        "FROM busybox AS two\n"
        "COPY ${APP}/y /app/\n"  # not declared in this stage: empty
        "ARG VERSION=1\n"
        "ARG TARGETARCH\n"
        "COPY bin-${TARGETARCH}-${VERSION} /bin/\n",
        {"VERSION": "2"},
    )
    assert [s.pattern for s in found.stages[0].sources] == ["src/global/main.py", "x"]
    assert [s.pattern for s in found.stages[1].sources] == ["/y", "bin-arm64-2"]


def test_copy_from_and_bind_mounts() -> None:
    found = df(
        "FROM golang AS build\n"
        "FROM busybox\n"
        "COPY --from=build /out /bin/\n"
        "COPY --from=registry:5000/tools:1 /tool /bin/\n"
        "RUN --mount=type=bind,source=go.sum,target=/x --mount=from=build,target=/y "
        "--mount=type=cache,target=/root/.cache --mount=type=bind,target=/src make\n"
    )
    final = found.stages[1]
    assert final.uses == ("build", "registry:5000/tools:1", "build")
    assert final.sources == (
        Source("COPY", "build", "/out", (), 3),
        Source("COPY", "registry:5000/tools:1", "/tool", (), 4),
        Source("bind mount", None, "go.sum", (), 5),
        Source("bind mount", "build", ".", (), 5),
        Source("bind mount", None, ".", (), 5),
    )


def test_reachability_follows_from_and_copy_from() -> None:
    found = df(
        "FROM busybox AS deps\n"
        "FROM deps AS build\n"
        "FROM busybox AS test\n"
        "COPY --from=build /x /x\n"
        "FROM busybox AS tools\n"
        "FROM busybox AS runtime\n"
        "COPY --from=1 /bin /bin\n"
        "RUN --mount=from=tools,target=/t true\n"
    )
    runtime = found.target(None, source="Dockerfile")
    assert [s.name for s in found.reachable(runtime)] == ["deps", "build", "tools", "runtime"]
    test = found.target("TEST", source="Dockerfile")
    assert [s.name for s in found.reachable(test)] == ["deps", "build", "test"]
    assert found.external(found.reachable(runtime)) == ("busybox",)


def test_a_stage_named_like_its_image_builds_on_the_image() -> None:
    found = df("FROM alpine AS alpine\nFROM alpine\n")
    assert found.external(found.stages) == ("alpine",)
    assert [s.number for s in found.reachable(found.stages[1])] == [0, 1]


def test_unknown_target() -> None:
    with pytest.raises(
        FatalError, match=r"target stage 'prod' is not in the Dockerfile \(named stages: build\)"
    ):
        df("FROM a AS build\nFROM b\n").target("prod", source="Dockerfile")


def test_platform_args() -> None:
    assert platform_args("linux/arm/v7", "linux/amd64") == {
        "TARGETPLATFORM": "linux/arm/v7", "TARGETOS": "linux", "TARGETARCH": "arm", "TARGETVARIANT": "v7",
        "BUILDPLATFORM": "linux/amd64", "BUILDOS": "linux", "BUILDARCH": "amd64", "BUILDVARIANT": "",
    }  # fmt: skip


def test_parse_mount() -> None:
    assert parse_mount('type=bind,"source=a,b",target=/x,rw') == {
        "type": "bind", "source": "a,b", "target": "/x", "rw": "true"}  # fmt: skip


@pytest.mark.parametrize(("source", "remote"), [
    ("https://example.com/a.tgz", True), ("git@github.com:org/repo.git", True),
    ("github.com/org/repo.git#main", False), ("ssh://git@host/repo.git", True),
    ("local.tar", False), ("dir/file.git", False),
])  # fmt: skip
def test_is_remote(source: str, remote: bool) -> None:
    assert is_remote(source) is remote


@pytest.mark.parametrize("where", ["ARG", "ENV"])
def test_variables_that_double_each_other_are_refused_before_they_take_the_memory(where: str) -> None:
    """26 lines of `ARG A1=$A0$A0` make a 64 MiB value, 40 lines a terabyte."""
    lines = ["FROM scratch", f"{where} A0=xxxxxxxx"]
    lines += [f"{where} A{i}=${{A{i - 1}}}${{A{i - 1}}}" for i in range(1, 40)]
    with pytest.raises(FatalError, match=r"Dockerfile: '\$\{A15\}\$\{A15\}' expands to more than 256 KiB"):
        df("\n".join(lines) + "\nCOPY $A39 /\n")
    assert df("\n".join(lines[:10]) + "\n").stages[0].name is None  # 8 KiB: a value like any other


def test_a_from_platform_flag_is_kept_expanded_per_stage() -> None:
    text = ("ARG PIN=linux/arm64\nFROM --platform=$BUILDPLATFORM golang AS build\nFROM --platform=${PIN} debian AS pin\n"
            "FROM alpine\n")  # fmt: skip
    parsed = parse(text, {}, platform="linux/arm/v7", build_platform="linux/amd64", source="D")
    assert [(s.base, s.platform) for s in parsed.stages] == [
        ("golang", "linux/amd64"), ("debian", "linux/arm64"), ("alpine", "")
    ]  # fmt: skip
    pinned = parse(text, {"PIN": "linux/s390x"}, platform="linux/arm/v7", build_platform="linux/amd64",
                              source="D")  # fmt: skip
    assert pinned.stages[1].platform == "linux/s390x"
