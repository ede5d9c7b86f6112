"""Every rule of "what does this build read": a path that must count, and one that must not."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Mapping
from typing import Any, NamedTuple

import pytest
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st

from mab_hook import input_digest
from mab_hook.changes import Commit, Ref
from mab_hook.errors import FatalError
from mab_hook.images import Config, Image
from mab_hook.inputs import Files, Inputs, compute, pulls, unmatched
from mab_hook.plan import Explanation, Plan, make_plan
from tests.buildkit import MARK, Link, Scenario, Tree, ignore_files, read_by_build, scenarios
from tests.conftest import Lab, Repo

ALL3 = ("linux/amd64", "linux/arm64", "linux/arm/v7")


def inputs(dockerfile: str, files: dict[str, str] | None = None, **image: Any) -> Inputs:
    tree = {"svc/Dockerfile": dockerfile, **(files or {})}
    spec = Image(name="svc", context="svc", dockerfile="svc/Dockerfile", platforms=ALL3)
    return compute(dataclasses.replace(spec, **image), Files.of(tree), build_platform="linux/amd64")


def counts(found: Inputs, *paths: str) -> dict[str, bool]:
    return {path: found.reason(path) is not None for path in paths}


def test_the_dockerfile_always_counts_even_when_ignored() -> None:
    found = inputs("FROM busybox\n", {"svc/.dockerignore": "*\n"})
    assert found.reason("svc/Dockerfile") == "Dockerfile changed: svc/Dockerfile"


def test_copy_file_directory_and_glob() -> None:
    found = inputs("FROM busybox\nCOPY main.py lib/ conf/*.yml /app/\n")
    assert counts(found, "svc/main.py", "svc/lib/a/b.py", "svc/conf/x.yml", "svc/conf/sub/x.yml",
                  "svc/conf/x.json", "svc/README.md", "svc/main.pyc", "other/main.py") == {
        "svc/main.py": True, "svc/lib/a/b.py": True, "svc/conf/x.yml": True, "svc/conf/sub/x.yml": False,
        "svc/conf/x.json": False, "svc/README.md": False, "svc/main.pyc": False, "other/main.py": False,
    }  # fmt: skip
    assert found.reason("svc/lib/a/b.py") == "COPY 'lib/' (line 2) reads: svc/lib/a/b.py"


def test_copy_json_form_and_flags_do_not_matter() -> None:
    found = inputs('FROM busybox\nCOPY --link --chmod=755 --chown=1:1 ["my file", "/app/"]\n')
    assert counts(found, "svc/my file", "svc/my") == {"svc/my file": True, "svc/my": False}


def test_copy_dot_and_leading_slash_mean_the_context_root() -> None:
    for source in (".", "./", "/"):
        assert counts(inputs(f"FROM busybox\nCOPY {source} /app/\n"), "svc/any/thing") == {
            "svc/any/thing": True
        }
    assert counts(inputs("FROM busybox\nCOPY /src/./x.py /app/\n"), "svc/src/x.py") == {"svc/src/x.py": True}


def test_copy_parents_with_double_star() -> None:
    found = inputs("FROM busybox\nCOPY --parents ./pkgs/**/package.json /app/\n")
    assert counts(found, "svc/pkgs/a/package.json", "svc/pkgs/a/b/package.json", "svc/pkgs/a/index.js") == {
        "svc/pkgs/a/package.json": True, "svc/pkgs/a/b/package.json": True, "svc/pkgs/a/index.js": False,
    }  # fmt: skip


def test_copy_exclude() -> None:
    found = inputs("FROM busybox\nCOPY --exclude=*.md --exclude=tests src/ /app/\n")
    assert counts(found, "svc/src/a.py", "svc/src/README.md", "svc/src/tests/t.py", "svc/src/pkg/NOTES.md") == {
        "svc/src/a.py": True, "svc/src/README.md": False, "svc/src/tests/t.py": False,
        "svc/src/pkg/NOTES.md": True,  # '*.md' does not cross '/', as in Go's filepath.Match
    }  # fmt: skip
    assert found.explain("svc/src/README.md").startswith("does not count: excluded by --exclude=*.md,tests")


def test_add_local_counts_remote_does_not() -> None:
    found = inputs("FROM busybox\nADD https://example.com/x.tgz git@github.com:o/r.git vendor.tar /opt/\n")
    assert counts(found, "svc/vendor.tar", "svc/x.tgz") == {"svc/vendor.tar": True, "svc/x.tgz": False}
    assert found.reason("svc/vendor.tar") == "ADD 'vendor.tar' (line 2) reads: svc/vendor.tar"


def test_heredoc_sources_read_nothing() -> None:
    found = inputs("FROM busybox\nCOPY <<EOF /etc/motd\nhello\nEOF\n")
    assert found.rules == ()
    assert counts(found, "svc/EOF", "svc/motd") == {"svc/EOF": False, "svc/motd": False}


def test_dockerignore_excludes_and_exceptions() -> None:
    found = inputs(
        "FROM busybox\nCOPY . /app/\n", {"svc/.dockerignore": "# build output\n*.log\n/docs\n!docs/keep.md\n"}
    )
    assert counts(found, "svc/a.py", "svc/x.log", "svc/docs/a.md", "svc/docs/keep.md", "svc/sub/x.log") == {
        "svc/a.py": True, "svc/x.log": False, "svc/docs/a.md": False, "svc/docs/keep.md": True,
        "svc/sub/x.log": True,  # '*.log' is anchored at the context root
    }  # fmt: skip
    assert found.explain("svc/x.log") == "does not count: excluded by svc/.dockerignore"


def test_the_ignore_file_in_use_counts() -> None:
    found = inputs("FROM busybox\nCOPY . /app/\n", {"svc/.dockerignore": "*.log\n"})
    assert found.reason("svc/.dockerignore") == "ignore file changed: svc/.dockerignore"


def test_dockerfile_specific_ignore_file_replaces_the_contexts() -> None:
    files = {"svc/.dockerignore": "*.py\n", "svc/Dockerfile.dockerignore": "*.log\n"}
    found = inputs("FROM busybox\nCOPY . /app/\n", files)
    assert found.ignore_file == "svc/Dockerfile.dockerignore"
    assert counts(found, "svc/a.py", "svc/a.log", "svc/Dockerfile.dockerignore") == {
        "svc/a.py": True, "svc/a.log": False, "svc/Dockerfile.dockerignore": True}  # fmt: skip
    # The context's own .dockerignore is not in use, and COPY . does not send it either.
    assert found.reason("svc/.dockerignore") == "COPY '.' (line 2) reads: svc/.dockerignore"
    assert counts(inputs("FROM busybox\nCOPY app /app/\n", files), "svc/.dockerignore") == {
        "svc/.dockerignore": False
    }


def test_only_stages_the_target_builds_count() -> None:
    dockerfile = (
        "FROM busybox AS deps\nCOPY requirements.txt /\n"
        "FROM deps AS test\nCOPY tests/ /tests/\n"
        "FROM busybox AS assets\nCOPY web/ /web/\n"
        "FROM deps AS runtime\nCOPY --from=assets /web /srv/\nCOPY app/ /app/\n"
    )
    runtime = inputs(dockerfile, target="runtime")
    assert counts(runtime, "svc/requirements.txt", "svc/web/i.js", "svc/app/m.py", "svc/tests/t.py") == {
        "svc/requirements.txt": True, "svc/web/i.js": True, "svc/app/m.py": True, "svc/tests/t.py": False,
    }  # fmt: skip
    assert runtime.explain("svc/tests/t.py") == (
        "does not count: only COPY 'tests/' (line 4) in stage 'test' reads it, "
        "and the build of stage 'runtime' does not run that stage"
    )
    test = inputs(dockerfile, target="test")
    assert counts(test, "svc/tests/t.py", "svc/web/i.js") == {"svc/tests/t.py": True, "svc/web/i.js": False}


def test_without_target_the_last_stage_is_built() -> None:
    found = inputs("FROM busybox AS a\nCOPY a /\nFROM busybox AS b\nCOPY b /\n")
    assert counts(found, "svc/a", "svc/b") == {"svc/a": False, "svc/b": True}


def test_copy_from_an_image_reads_no_repository_file() -> None:
    found = inputs("FROM busybox\nCOPY --from=registry:5000/tools:1 /bin/tool /bin/\n")
    assert found.rules == ()
    assert found.bases == ("busybox", "registry:5000/tools:1")


def test_bind_mounts() -> None:
    found = inputs(
        "FROM golang AS build\nCOPY gen/ /gen/\n"
        "FROM busybox\n"
        "RUN --mount=type=bind,source=go.mod,target=/src/go.mod --mount=type=bind,from=build,source=/gen,target=/g "
        "--mount=type=cache,target=/root/.cache make\n"
    )
    assert counts(found, "svc/go.mod", "svc/gen/x.go", "svc/go.sum") == {
        "svc/go.mod": True, "svc/gen/x.go": True, "svc/go.sum": False}  # fmt: skip
    assert found.reason("svc/go.mod") == "bind mount 'go.mod' (line 4) reads: svc/go.mod"


def test_a_bind_mount_without_source_reads_the_whole_context() -> None:
    found = inputs("FROM busybox\nRUN --mount=target=/src make -C /src\n", {"svc/.dockerignore": "out/\n"})
    assert counts(found, "svc/any.c", "svc/out/x.o") == {"svc/any.c": True, "svc/out/x.o": False}


def test_args_expand_with_build_args_defaults_and_globals() -> None:
    dockerfile = (
        "ARG FLAVOR=slim\n"
        "FROM busybox\n"
        "ARG FLAVOR\n"
        "ARG CONF\n"
        "ARG DIR=${FLAVOR}-files\n"
        "ENV EXTRA=extra\n"
        "COPY ${DIR}/ ${CONF:-default.conf} ${EXTRA}/ /app/\n"
    )
    found = inputs(dockerfile)
    assert counts(found, "svc/slim-files/a", "svc/default.conf", "svc/extra/x", "svc/full-files/a") == {
        "svc/slim-files/a": True, "svc/default.conf": True, "svc/extra/x": True, "svc/full-files/a": False,
    }  # fmt: skip
    overridden = inputs(dockerfile, build_args=(("CONF", "prod.conf"), ("FLAVOR", "full")))
    assert counts(overridden, "svc/full-files/a", "svc/prod.conf", "svc/default.conf") == {
        "svc/full-files/a": True, "svc/prod.conf": True, "svc/default.conf": False}  # fmt: skip


def test_platform_args_count_for_every_platform_of_the_image() -> None:
    dockerfile = "FROM scratch\nARG TARGETARCH\nCOPY busybox-${TARGETARCH} /bin/busybox\n"
    found = inputs(dockerfile)
    assert counts(found, "svc/busybox-amd64", "svc/busybox-arm64", "svc/busybox-arm", "svc/busybox-riscv64") == {
        "svc/busybox-amd64": True, "svc/busybox-arm64": True, "svc/busybox-arm": True, "svc/busybox-riscv64": False,
    }  # fmt: skip
    one = inputs(dockerfile, platforms=("linux/arm64",))
    assert counts(one, "svc/busybox-amd64", "svc/busybox-arm64") == {
        "svc/busybox-amd64": False,
        "svc/busybox-arm64": True,
    }


def test_named_contexts_from_config() -> None:
    dockerfile = "FROM base AS b\nFROM busybox\nCOPY --from=proto api.proto /p/\nCOPY --from=b / /\n"
    files = {
        "shared/proto/api.proto": "",
        "shared/proto/old.proto": "",
        "rootfs/etc/x": "",
        "rootfs/.dockerignore": "tmp\n",
    }
    found = inputs(dockerfile, files, contexts=(("base", "rootfs"), ("proto", "shared/proto")))
    assert counts(found, "shared/proto/api.proto", "shared/proto/old.proto", "rootfs/etc/x", "rootfs/tmp") == {
        "shared/proto/api.proto": True, "shared/proto/old.proto": False, "rootfs/etc/x": True, "rootfs/tmp": False,
    }  # fmt: skip
    assert found.reason("shared/proto/api.proto") == (
        "COPY 'api.proto' from context 'proto' (line 3) reads: shared/proto/api.proto"
    )
    assert "base" not in found.bases  # a named context, not an image


def test_explain_a_path_that_is_never_copied() -> None:
    found = inputs("FROM busybox\nCOPY app/ /app/\n")
    assert (
        found.explain("svc/README.md")
        == "does not count: in the build context, but no COPY, ADD or bind mount reads it"
    )
    assert found.explain("docs/x") == "does not count: outside every build context of the image"
    assert found.explain("svc/app/m.py") == "counts: COPY 'app/' (line 2) reads: svc/app/m.py"


def test_a_source_matching_nothing_is_a_warning() -> None:
    found = inputs("FROM busybox\nCOPY *.txt missing.py present.py /app/\n", {"svc/present.py": ""})
    assert unmatched(found, Files.of({"svc/present.py": "", "svc/Dockerfile": ""})) == (
        "svc: COPY '*.txt' (line 2) matches no file in the build context (svc)",
        "svc: COPY 'missing.py' (line 2) matches no file in the build context (svc)",
    )


@pytest.mark.parametrize(
    ("source", "warned"),
    [
        ("app", False),  # a directory
        ("app/", False),
        ("app/m.py", False),
        ("ap", False),  # a file beside the directory it prefixes
        ("app/*/x.py", True),
        ("app/sub/*.py", False),
        ("*/sub", False),
        ("ap?/sub/y.py", False),
        (".", False),
        ("app/ignored.log", True),  # all it names is left out by .dockerignore
        ("app/sub/x.py", True),
    ],
)
def test_unmatched_looks_where_a_source_can_match(source: str, warned: bool) -> None:
    tree = {"svc/.dockerignore": "*.log\n**/*.log\n", "svc/ap": "", "svc/app/m.py": "",
            "svc/app/ignored.log": "", "svc/app/sub/y.py": "", "svc/apq": ""}  # fmt: skip
    dockerfile = f"FROM busybox\nCOPY {source} /dst/\n"
    found = inputs(dockerfile, tree)
    assert bool(unmatched(found, Files.of({**tree, "svc/Dockerfile": dockerfile}))) == warned


# --- in a plan -------------------------------------------------------------------------------

CONFIG = Config(
    source="pyproject.toml at abc",
    platforms=ALL3,
    registry="reg:5000/team",
    images=(
        Image("base", "base", "base/Dockerfile", ALL3),
        Image("api", "api", "api/Dockerfile", ALL3, watch=("proto/**",)),
        Image("tool", "tool", "tool/Dockerfile", ALL3),
    ),
)
TREE = {
    "base/Dockerfile": "FROM busybox\nCOPY etc/ /etc/\n",
    "base/etc/motd": "hi\n",
    "api/Dockerfile": "FROM reg:5000/team/base:1\nCOPY app/ /app/\n",
    "api/app/main.py": "",
    "api/README.md": "",
    "tool/Dockerfile": "FROM busybox\nCOPY --from=reg:5000/team/base /etc/motd /motd\n",
}


def plan_for(*changed: str) -> Plan:
    commit = Commit("f" * 40, (Ref("main"),), frozenset(changed), "test")
    return make_plan(commit, CONFIG, Files.of(TREE), build_platform="linux/amd64", explain=("api",))


def explain(plan: Plan, name: str) -> Explanation:
    (item,) = (e for e in plan.explanations if e.name == name)
    return item


def test_plan_reasons_and_order() -> None:
    p = plan_for("base/etc/motd")
    assert [(x.image.name, x.reasons) for x in p.affected] == [
        ("base", ("COPY 'etc/' (line 2) reads: base/etc/motd",)),
        ("api", ("base image base is rebuilt",)),
        ("tool", ("base image base is rebuilt",)),  # through COPY --from=<in-repo image>
    ]


@pytest.mark.parametrize(("changed", "affected"), [
    ("api/README.md", []),  # never copied
    ("api/app/main.py", ["api"]),
    ("proto/v1.proto", ["api"]),  # watched
    ("base/Dockerfile", ["base", "api", "tool"]),
])  # fmt: skip
def test_plan_selects_exactly(changed: str, affected: list[str]) -> None:
    assert [x.image.name for x in plan_for(changed).affected] == affected


def test_explain_in_a_plan() -> None:
    p = plan_for("api/README.md", "api/app/main.py", "docs/x")
    item = explain(p, "api")
    assert item.affected
    assert item.paths == (
        ("api/README.md", "does not count: in the build context, but no COPY, ADD or bind mount reads it"),
        ("api/app/main.py", "counts: COPY 'app/' (line 2) reads: api/app/main.py"),
    )
    assert item.inputs == ("COPY 'app/' (line 2)",)
    assert item.bases == ("base",)
    quiet = explain(plan_for("api/README.md"), "api")
    assert not quiet.affected


# --- what BuildKit reads that a simpler reading would miss ------------------------------------


def test_variables_expand_in_the_json_form_too() -> None:
    found = inputs('FROM busybox\nARG D=sub\nENV F=a.txt\nCOPY ["${D}/${F}", "/x/"]\n')
    assert counts(found, "svc/sub/a.txt", "svc/${D}/${F}") == {"svc/sub/a.txt": True, "svc/${D}/${F}": False}


def test_env_comes_with_a_stage_built_on_and_wins_over_an_arg() -> None:
    found = inputs("FROM busybox AS base\nENV D=conf\nFROM base\nARG D=other\nCOPY $D/ /x/\n")
    assert counts(found, "svc/conf/a", "svc/other/a") == {"svc/conf/a": True, "svc/other/a": False}


def test_a_stage_built_on_another_has_its_args_and_its_triggers_expand_with_them() -> None:
    """Found by the BuildKit oracle: BuildKit carries a stage's ARGs into a stage FROM it, and
    runs the ONBUILD triggers there with them (whatever the later stage declares after)."""
    found = inputs("FROM busybox AS s0\nARG A=sub\nONBUILD COPY ${B}/ /t/\nARG B=conf\nFROM s0\nARG B=other\n"
                   "COPY ${A}/ /x/\n")  # fmt: skip
    assert counts(found, "svc/sub/a", "svc/conf/a", "svc/other/a") == {
        "svc/sub/a": True, "svc/conf/a": True, "svc/other/a": False}  # fmt: skip


def test_a_cache_mount_from_a_stage_builds_that_stage() -> None:
    found = inputs(
        "FROM busybox AS deps\nCOPY lock.json /\nFROM busybox AS unused\nCOPY other /\n"
        "FROM busybox\nRUN --mount=type=cache,from=deps,target=/c,sharing=locked true\n"
    )
    assert counts(found, "svc/lock.json", "svc/other") == {"svc/lock.json": True, "svc/other": False}
    assert found.reason("svc/lock.json") == "COPY 'lock.json' (line 2) reads: svc/lock.json"


def test_a_cache_mount_seeded_from_a_named_context_reads_its_source() -> None:
    found = inputs("FROM busybox\nRUN --mount=type=cache,from=seed,source=pip,target=/root/.cache true\n",
                   {"shared/pip/wheel.whl": "", "shared/other": ""}, contexts=(("seed", "shared"),))  # fmt: skip
    assert counts(found, "shared/pip/wheel.whl", "shared/other") == {
        "shared/pip/wheel.whl": True,
        "shared/other": False,
    }
    assert found.reason("shared/pip/wheel.whl") == (
        "cache mount 'pip' from context 'seed' (line 2) reads: shared/pip/wheel.whl"
    )


def test_onbuild_triggers_read_the_context_of_the_stage_built_on_them() -> None:
    found = inputs(
        "FROM busybox AS onb\nENV APP=app\nONBUILD COPY ${APP}/ /app/\nONBUILD RUN --mount=type=bind,source=tools,target=/t true\n"
        "FROM onb AS built\nFROM onb AS unused\nFROM busybox\nCOPY --from=built /app /app\n"
    )
    assert counts(found, "svc/app/main.py", "svc/tools/x") == {"svc/app/main.py": True, "svc/tools/x": True}
    assert found.reason("svc/app/main.py") == (
        "COPY 'app/' (ONBUILD of stage 'onb', line 3) reads: svc/app/main.py"
    )


def test_a_stage_carries_its_own_triggers_only() -> None:
    found = inputs("FROM busybox AS a\nONBUILD COPY x /\nFROM a AS b\nONBUILD COPY y /\n")
    assert [s.pattern for s in found.onbuild] == ["y"]  # a's ran in b; b's run in what is FROM it


def symlinked(files: dict[str, str], symlinks: dict[str, str]) -> Files:
    """A commit's files as git lists them: symlinks have mode 120000, their blob their target."""
    return Files.of({**files, **symlinks})._replace(symlinks=frozenset(symlinks))


def test_symlinks_a_source_names_or_goes_through_are_followed() -> None:
    """As BuildKit copies them (tried in the lab): `link` -> `real/` copies real's files, a
    path through a linked directory reads the real one, a wildcard's matches that are links are
    followed; links inside a copied directory stay links."""
    dockerfile = (
        "FROM busybox\nCOPY link /a/\nCOPY link.txt /b\nCOPY via/sub/g /c/\nCOPY *.cfg /d/\nCOPY dir /e/\n"
    )
    files = symlinked(
        {"svc/Dockerfile": dockerfile, "svc/real/f": "", "svc/real/sub/g": "", "svc/data.txt": "", "svc/conf/x.ini": "",
         "svc/dir/plain": "", "svc/target.txt": ""},
        {"svc/link": "real", "svc/link.txt": "data.txt", "svc/via": "./real", "svc/app.cfg": "/conf/x.ini",
         "svc/dir/inner": "../target.txt"},
    )  # fmt: skip
    found = compute(Image("svc", "svc", "svc/Dockerfile", ALL3), files, build_platform="linux/amd64")
    assert counts(found, "svc/real/f", "svc/data.txt", "svc/real/sub/g", "svc/conf/x.ini", "svc/target.txt") == {
        "svc/real/f": True, "svc/data.txt": True, "svc/real/sub/g": True, "svc/conf/x.ini": True,
        "svc/target.txt": False,  # dir/inner is copied as a link
    }  # fmt: skip
    assert found.reason("svc/real/f") == "COPY 'real' (line 2, through symlink 'svc/link') reads: svc/real/f"
    assert found.reason("svc/link") == "COPY 'link' (line 2) reads: svc/link"  # changing where it points
    assert found.reason("svc/conf/x.ini") == (
        "COPY 'conf/x.ini' (line 5, through symlink 'svc/app.cfg') reads: svc/conf/x.ini"
    )


def test_links_in_circles_or_out_of_the_context_stay_in_it() -> None:
    files = symlinked({"svc/Dockerfile": "FROM busybox\nCOPY loop up /x/\n", "svc/etc/passwd": "", "etc/passwd": ""},
                      {"svc/loop": "loop2", "svc/loop2": "loop", "svc/up": "../../etc/passwd"})  # fmt: skip
    found = compute(Image("svc", "svc", "svc/Dockerfile", ALL3), files, build_platform="linux/amd64")
    assert counts(found, "svc/etc/passwd", "etc/passwd") == {"svc/etc/passwd": True, "etc/passwd": False}


def test_an_ignore_file_with_a_byte_order_mark() -> None:
    found = inputs("FROM busybox\nCOPY . /app/\n", {"svc/.dockerignore": "\ufeff*.log\n"})
    assert counts(found, "svc/debug.log", "svc/app.py") == {"svc/debug.log": False, "svc/app.py": True}


# --- the same constructs, built by BuildKit in the lab --------------------------------------------


class Construct(NamedTuple):
    dockerfile: str  # of image svc; {busybox} and {registry} filled in
    changed: str  # the path the second commit changes (v1 -> v2)
    explained: str  # what `--explain svc` says of it
    extra: Mapping[str, str] = {}  # more files; "-> target" makes a symlink
    out: str = "/out"  # where the built image has the changed file's content


CONSTRUCTS = {
    "json-form-variable": Construct('FROM {busybox}\nARG D=sub\nCOPY ["${{D}}/a.txt", "/out"]\n', "svc/sub/a.txt",
                                    "counts: COPY 'sub/a.txt' (line 3) reads"),
    "env-of-the-stage-built-on": Construct("FROM {busybox} AS base\nENV D=sub\nFROM base\nCOPY $D/a.txt /out\n",
                                           "svc/sub/a.txt", "counts: COPY 'sub/a.txt' (line 4) reads"),
    "cache-mount-from-a-stage": Construct(
        "FROM {busybox} AS deps\nCOPY sub/a.txt /seed/out\nFROM {busybox}\n"
        "RUN --mount=type=cache,from=deps,source=/seed,target=/c,id={salt} cp /c/out /out\n",
        "svc/sub/a.txt", "counts: COPY 'sub/a.txt' (line 2) reads"),
    "onbuild-of-a-stage": Construct("FROM {busybox} AS onb\nONBUILD COPY sub/a.txt /out\nFROM onb\n", "svc/sub/a.txt",
                                    "counts: COPY 'sub/a.txt' (ONBUILD of stage 'onb', line 2) reads"),
    "onbuild-of-an-in-repo-base": Construct(
        "FROM {registry}/base\n", "svc/app.txt",
        "counts: COPY 'app.txt' (ONBUILD of base image base (base/Dockerfile), line 2) reads",
        {"base/Dockerfile": "FROM {busybox}\nONBUILD COPY app.txt /out\n"}),
    "symlinked-directory": Construct("FROM {busybox}\nCOPY link/a.txt /out\n", "svc/sub/a.txt",
                                     "counts: COPY 'sub/a.txt' (line 2, through symlink 'svc/link') reads",
                                     {"svc/link": "-> sub"}),
    "ignore-file-with-a-bom": Construct("FROM {busybox}\nCOPY sub/ /out/\n", "svc/sub/skip.txt",
                                        "does not count: excluded by svc/.dockerignore",
                                        {"svc/.dockerignore": "\ufeffsub/skip.txt\n", "svc/sub/skip.txt": "v1\n"},
                                        out=""),
}  # fmt: skip


@pytest.mark.lab
@pytest.mark.parametrize("name", list(CONSTRUCTS))
def test_a_change_buildkit_reads_rebuilds_and_explain_names_the_line(lab: Lab, repo: Repo, name: str) -> None:
    construct = CONSTRUCTS[name]
    # push = false: the images stay in the engine's store, under names of this test's own.
    registry = lab.namespace(local=True)
    fill = {"busybox": lab.busybox, "registry": registry, "salt": uuid.uuid4().hex}
    files = {"pyproject.toml": '[tool.multiarch]\nplatforms = ["linux/amd64"]\n'
                               f'registry = "{registry}"\n[tool.multiarch.images.svc]\ncontext = "svc"\n',
             "svc/Dockerfile": construct.dockerfile.format(**fill), "svc/sub/a.txt": "v1\n", "svc/app.txt": "v1\n"}  # fmt: skip
    for path, text in construct.extra.items():
        if text.startswith("-> "):
            (repo.path / path).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(text[3:], repo.path / path)
        else:
            files[path] = text.format(**fill) if path.endswith("Dockerfile") else text
    if "base/Dockerfile" in files:
        files["pyproject.toml"] += '[tool.multiarch.images.base]\ncontext = "base"\n'
    repo.commit(files)
    first = run_mab(repo, lab, "--all")
    assert first.returncode == 0, first.stdout + first.stderr
    sha = repo.commit({construct.changed: "v2\n"})
    explained = run_mab(repo, lab, "--from", "HEAD^", "--explain", "svc")
    assert construct.explained in explained.stdout, explained.stdout
    built = run_mab(repo, lab, "--from", "HEAD^")
    assert built.returncode == 0, built.stdout + built.stderr
    if construct.out:
        assert "svc  " in built.stdout and "built" in built.stdout, built.stdout
        shown = lab.docker("run", "--rm", f"{registry}/svc:{sha[:7]}", "cat", construct.out)
        assert shown.stdout == "v2\n"
    else:
        assert "no image is affected" in built.stdout and "unaffected: svc" in built.stdout, built.stdout


def run_mab(repo: Repo, lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run((sys.executable, "-m", "mab_hook", *args), cwd=repo.path, env=lab.env,
                          capture_output=True, text=True, check=False)  # fmt: skip


# --- against BuildKit: generated builds of every construct ------------------------------------------


def predicted(
    scenario: Scenario, ignore: str | None, platforms: tuple[str, ...] = ("linux/amd64",)
) -> set[str]:
    """The tree's files mab-hook says the build reads (the context is `ctx`, the Dockerfile
    beside it, as in the real build)."""
    contents = {
        f"ctx/{path}": item.target if isinstance(item, Link) else item for path, item in scenario.tree.items()
    }
    contents["Dockerfile"] = scenario.dockerfile
    if ignore is not None:
        contents["ctx/.dockerignore"] = ignore
    links = {f"ctx/{path}" for path, item in scenario.tree.items() if isinstance(item, Link)}
    files = Files.of(contents)._replace(symlinks=frozenset(links))
    image = Image("x", "ctx", "Dockerfile", platforms, target=scenario.target,
                  build_args=tuple(sorted(scenario.build_args.items())))  # fmt: skip
    read = input_digest.input_files(compute(image, files, build_platform="linux/amd64"), files.tree)
    return {
        path[4:]
        for path in read
        if path.startswith("ctx/") and path not in links and path[4:] in scenario.tree
    }


ignore_texts = st.builds(
    lambda bom, comment, rules: ("\ufeff" if bom else "") + ("# generated\n" if comment else "") + "\n".join(rules) + "\n",
    st.booleans(), st.booleans(), ignore_files,
)  # fmt: skip


CONSTRUCT_MARKERS = {"ONBUILD": "ONBUILD", "cache mount from a stage": "type=cache", "bind mount": "type=bind",
                     "COPY --from": "--from=", "JSON form": '["', "a variable": "$", "a stage built on": "FROM s"}  # fmt: skip


@pytest.mark.lab
@settings(settings.get_profile("lab"))
@given(data=st.data())
def test_what_a_build_reads_matches_buildkit(lab: Lab, data: st.DataObject) -> None:
    """ARG and ENV in shell and JSON sources (defaults, build args, globals, a stage built on),
    --target and the stages it reaches, COPY --from by name and index, bind mounts, cache mounts
    from a stage, ONBUILD, symlinks, ignore files with a BOM, comments, `!` and `**`: the files
    mab-hook says a build reads are the files BuildKit puts in what it builds.
    (`COPY --parents` and `--exclude` need a newer Dockerfile frontend than the lab's engine
    has, and nothing can be pulled here: tests/test_inputs.py checks them by hand.)"""
    scenario = data.draw(scenarios(lab.busybox))
    ignore = data.draw(st.none() | ignore_texts)
    for construct, marker in CONSTRUCT_MARKERS.items():  # --hypothesis-show-statistics counts them
        if marker in scenario.dockerfile:
            event(construct)
    if any(isinstance(item, Link) for item in scenario.tree.values()):
        event("symlinks")
    observed = read_by_build(lab, scenario, ignore)
    assume(observed is not None)  # BuildKit refused it (a source naming nothing): no case
    assert predicted(scenario, ignore) == observed, scenario.dockerfile


PLATFORM_SOURCES = ("${TARGETARCH}/", "$TARGETOS/$TARGETARCH$TARGETVARIANT", '["${TARGETARCH}/"]', "${BUILDARCH}/",
                    "${TARGETPLATFORM}")  # fmt: skip


@pytest.mark.lab
@settings(settings.get_profile("lab"))
@given(sources=st.lists(st.sampled_from(PLATFORM_SOURCES), min_size=1, max_size=3, unique=True),
       declared=st.booleans())  # fmt: skip
def test_platform_args_per_platform_match_buildkit(lab: Lab, sources: list[str], declared: bool) -> None:
    """Each platform's build reads its own files: the platform ARGs, declared in the stage or
    not (then only the global scope has them), as every platform of a multi-platform build."""
    tree: Tree = {path: MARK + path + "\n" for path in ("amd64/a", "arm64/a", "arm/a", "linux/amd64", "linux/arm64",
                                                 "linux/armv7", "x/a")}  # fmt: skip
    lines = ["FROM scratch AS s0", *(["ARG TARGETARCH", "ARG TARGETOS", "ARG TARGETVARIANT", "ARG BUILDARCH",
                                     "ARG TARGETPLATFORM"] if declared else [])]  # fmt: skip
    for n, source in enumerate(sources):
        lines.append(f'COPY {source[:-1]}, "/o{n}/"]' if source.startswith("[") else f"COPY {source} /o{n}/")
    scenario = Scenario(tree, "\n".join(lines) + "\n", "s0", {})
    platforms = ("linux/amd64", "linux/arm64", "linux/arm/v7")
    observed = read_by_build(lab, scenario, None, ",".join(platforms))
    assume(observed is not None)
    assert predicted(scenario, None, platforms) == observed, scenario.dockerfile


def test_a_symlinked_dockerfile_or_ignore_file_is_read_where_it_leads_inside_the_repository() -> None:
    """buildx reads both itself, on the pushing machine, following the link."""
    files = symlinked({"real/Dockerfile": "FROM busybox\nCOPY a.txt /\n", "shared/ignore": "*.log\n", "svc/a.txt": ""},
                      {"svc/Dockerfile": "../real/Dockerfile", "svc/.dockerignore": "../shared/ignore"})  # fmt: skip
    image = Image("svc", "svc", "svc/Dockerfile", ("linux/amd64",))
    found = compute(image, files, build_platform="linux/amd64")
    assert [rule.source.pattern for rule in found.rules] == ["a.txt"]
    assert found.ignore.excludes("x.log") and found.followed == ("real/Dockerfile", "shared/ignore")
    assert (
        found.reason("real/Dockerfile")
        == "what its Dockerfile or ignore file links to changed: real/Dockerfile"
    )
    assert {"real/Dockerfile", "shared/ignore"} <= input_digest.input_files(found, files.tree)


@pytest.mark.parametrize("target", ["/etc/passwd", "../../home/me/.ssh/id_rsa"])
def test_a_symlinked_dockerfile_that_leads_out_of_the_repository_is_refused(target: str) -> None:
    files = symlinked({}, {"svc/Dockerfile": target})
    with pytest.raises(FatalError, match=f"image svc: its Dockerfile svc/Dockerfile is a symlink to '{re.escape(target)}', "
                                         "outside the repository"):  # fmt: skip
        compute(Image("svc", "svc", "svc/Dockerfile", ("linux/amd64",)), files, build_platform="linux/amd64")


# --- rules the mutation run found unchecked ----------------------------------------------------


def test_what_a_commit_holds_is_fetched_once_and_worked_out_once() -> None:
    """`prefetch` reads together only the files whose results are not kept; `memo` keeps a
    result by the file's blob and the key, and works it out again for another blob; without a
    blob id or a cache nothing is kept."""
    fetched: list[list[str]] = []
    cache: dict[object, object] = {}
    blobs = {"a": "100644 aaa", "b": "100644 bbb"}
    files = Files(Files.of({"a": "", "b": ""}).tree, {"a": "", "b": ""}.get, blobs.get, cache,
                  lambda paths: fetched.append(list(paths)))  # fmt: skip
    made: list[str] = []

    def make(what: str) -> str:
        made.append(what)
        return what.upper()

    files.prefetch([("a", ("k",)), ("b", ("k",)), ("none", ("k",))])
    assert fetched == [["a", "b", "none"]]
    assert files.memo("a", ("k",), lambda: make("a")) == "A"
    assert files.memo("a", ("k",), lambda: make("again")) == "A"  # kept
    assert files.memo("a", ("other",), lambda: make("other")) == "OTHER"  # another key
    files.prefetch([("a", ("k",)), ("b", ("k",))])
    assert fetched[-1] == ["b"]  # a's result is kept: a is not read again
    assert (
        files.memo("none", ("k",), lambda: make("x")) == "X"
        and files.memo("none", ("k",), lambda: make("y")) == "Y"
    )
    assert made == ["a", "other", "x", "y"]
    blobs["a"] = "100644 a2"  # the file changed
    assert files.memo("a", ("k",), lambda: make("changed")) == "CHANGED"
    uncached = files._replace(cache=None)
    assert (
        uncached.memo("a", ("k",), lambda: make("n1")) == "N1"
        and uncached.memo("a", ("k",), lambda: make("n2")) == "N2"
    )
    uncached.prefetch([("a", ("k",))])
    assert fetched[-1] == ["a"]


def test_a_symlinked_dockerfile_that_leads_nowhere_good_is_said() -> None:
    circle = symlinked({}, {"svc/Dockerfile": "D2", "svc/D2": "Dockerfile"})
    with pytest.raises(
        FatalError, match=r"^image svc: its Dockerfile svc/Dockerfile: its symlinks go round in circles$"
    ):
        circle.followed("svc/Dockerfile", "image svc: its Dockerfile")
    out = symlinked({}, {"svc/Dockerfile": "/etc/passwd"})
    with pytest.raises(FatalError) as info:
        out.followed("svc/Dockerfile", "image svc: its Dockerfile")
    assert str(info.value) == (
        "image svc: its Dockerfile svc/Dockerfile is a symlink to '/etc/passwd', outside the repository: buildx "
        "would read that file of the machine that pushes. Make it a file, or a link inside the repository"
    )
    inside = symlinked({"svc/real.Dockerfile": "FROM busybox\n"}, {"svc/Dockerfile": "real.Dockerfile"})
    assert inside.followed("svc/Dockerfile", "x") == "svc/real.Dockerfile"
    assert inside.followed("svc/real.Dockerfile", "x") == "svc/real.Dockerfile"


def test_the_files_read_ahead_follow_a_commits_symlinks() -> None:
    from mab_hook.inputs import reads_needed  # noqa: PLC0415

    image = Image("svc", "svc", "svc/Dockerfile", ALL3)
    plain = Files.of({"svc/Dockerfile": "FROM busybox\n", "svc/.dockerignore": "*.md\n"})
    assert [path for path, _key in reads_needed(image, plain, "linux/amd64")] == [
        "svc/Dockerfile",
        "svc/.dockerignore",
    ]
    assert [path for path, _key in reads_needed(image, Files.of({"svc/Dockerfile": ""}), "linux/amd64")] == [
        "svc/Dockerfile"]  # fmt: skip
    linked = symlinked({"build/Dockerfile": "FROM busybox\n", "build/ignore": "*.md\n"},
                       {"svc/Dockerfile": "../build/Dockerfile", "svc/.dockerignore": "../build/ignore"})  # fmt: skip
    assert [path for path, _key in reads_needed(image, linked, "linux/amd64")] == [
        "build/Dockerfile",
        "build/ignore",
    ]


def test_why_a_rule_does_not_read_a_path() -> None:
    found = inputs("FROM busybox\nCOPY --exclude=*.log app/ /app/\n",
                   {"svc/.dockerignore": "app/tmp\n"})  # fmt: skip
    (rule,) = found.rules
    assert rule.why_not("docs/x") == "outside its context"
    assert rule.why_not("svc/other.py") == "not matched"
    assert rule.why_not("svc/app/tmp") == "excluded by svc/.dockerignore"
    assert rule.why_not("svc/app/x.log") == "excluded by --exclude=*.log of COPY 'app/' (line 2)"
    assert rule.why_not("svc/app/x.py") is None


def test_every_explanation_of_a_path_that_does_not_count() -> None:
    dockerfile = ("FROM busybox AS unused\nCOPY tools/ /t/\nFROM busybox\nCOPY --exclude=*.log app/ /app/\n"
                  "COPY --from=proto api.proto /p/\n")  # fmt: skip
    files = {"svc/.dockerignore": "app/tmp\n", "shared/proto/.dockerignore": "old.proto\n"}
    found = inputs(dockerfile, files, contexts=(("proto", "shared/proto"),))
    assert found.explain("docs/x") == "does not count: outside every build context of the image"
    assert found.explain("svc/app/tmp") == "does not count: excluded by svc/.dockerignore"
    assert found.explain("shared/proto/old.proto") == "does not count: excluded by shared/proto/.dockerignore"
    assert found.explain("svc/tools/x") == (
        "does not count: only COPY 'tools/' (line 2) in stage 'unused' reads it, and the build of stage 1 "
        "does not run that stage")  # fmt: skip
    assert (
        found.explain("svc/app/x.log")
        == "does not count: excluded by --exclude=*.log of COPY 'app/' (line 4)"
    )
    assert found.explain("svc/notes.md") == (
        "does not count: in the build context, but no COPY, ADD or bind mount reads it")  # fmt: skip
    assert found.explain("shared/proto/api.proto") == (
        "counts: COPY 'api.proto' from context 'proto' (line 5) reads: shared/proto/api.proto")  # fmt: skip


@pytest.mark.parametrize(("source", "submodules"), [
    ("vendor/lib/src", ["vendor/lib"]),  # reads into the submodule
    ("vendor", ["vendor/lib", "vendor/other"]),  # reads both whole
    ("vendor/lib", ["vendor/lib"]),
    ("vendor/li", []),  # a name that only begins like one
    ("vendor/other/deep/er", ["vendor/other"]),
    ("docs", []),
])  # fmt: skip
def test_the_submodules_a_build_reads(source: str, submodules: list[str]) -> None:
    found = inputs(f"FROM busybox\nCOPY {source} /x/\n")
    assert list(found.submodules(["svc/vendor/lib", "svc/vendor/other", "elsewhere/lib"])) == [
        f"svc/{path}" for path in submodules]  # fmt: skip


def test_a_submodule_the_ignore_file_excludes_is_not_read() -> None:
    found = inputs("FROM busybox\nCOPY vendor/lib/src /x/\n", {"svc/.dockerignore": "vendor/lib\n"})
    assert found.submodules(["svc/vendor/lib"]) == ()
    unreachable = inputs("FROM busybox AS old\nCOPY vendor/lib/src /x/\nFROM busybox\n")
    assert unreachable.submodules(["svc/vendor/lib"]) == ()


def test_what_a_build_needs_on_disk() -> None:
    found = inputs("FROM busybox\nCOPY --from=proto a /p/\n", {"svc/.dockerignore": "x\n"},
                   contexts=(("proto", "shared/proto"), ("base", "target:base"), ("img", "docker-image://busybox"),
                             ("layout", "oci-layout://layouts/app@sha256:" + "a" * 64)))  # fmt: skip
    assert found.materialized() == (
        "svc/Dockerfile",
        "svc/.dockerignore",
        "svc",
        "shared/proto",
        "layouts/app",
    )


def test_a_commit_seen_before_is_neither_read_nor_parsed_again() -> None:
    contents = {
        "svc/Dockerfile": "FROM busybox\nCOPY app/ /app/\n",
        "svc/.dockerignore": "*.md\n",
        "svc/app/a": "",
    }
    read: list[str] = []

    def reader(path: str) -> str | None:
        read.append(path)
        return contents.get(path)

    blobs = {path: f"100644 {hashlib.sha1(text.encode()).hexdigest()}" for path, text in contents.items()}
    files = Files(Files.of(contents).tree, reader, blobs.get, {})
    image = Image("svc", "svc", "svc/Dockerfile", ALL3)
    first = compute(image, files, build_platform="linux/amd64")
    assert sorted(set(read)) == ["svc/.dockerignore", "svc/Dockerfile"]
    read.clear()
    assert compute(image, files, build_platform="linux/amd64") == first
    assert read == []  # both kept, by blob


def test_a_dockerfile_linked_through_two_links_is_read_where_they_end() -> None:
    files = symlinked({"build/real.Dockerfile": "FROM busybox\n"},
                      {"svc/Dockerfile": "../build/next", "build/next": "real.Dockerfile"})  # fmt: skip
    assert files.followed("svc/Dockerfile", "x") == "build/real.Dockerfile"
    found = compute(Image("svc", "svc", "svc/Dockerfile", ALL3), files, build_platform="linux/amd64")
    assert found.reason("build/real.Dockerfile") == (
        "what its Dockerfile or ignore file links to changed: build/real.Dockerfile")  # fmt: skip


def test_an_ignore_file_linked_out_of_the_repository_is_refused_naming_it() -> None:
    files = symlinked({"svc/Dockerfile": "FROM busybox\n"}, {"svc/.dockerignore": "/etc/ignore"})
    said = ("ignore file svc/.dockerignore is a symlink to '/etc/ignore', outside the repository: buildx would read "
            "that file of the machine that pushes. Make it a file, or a link inside the repository")  # fmt: skip
    with pytest.raises(FatalError) as info:
        compute(Image("svc", "svc", "svc/Dockerfile", ALL3), files, build_platform="linux/amd64")
    assert str(info.value) == said
    from mab_hook.inputs import reads_needed  # noqa: PLC0415

    with pytest.raises(FatalError) as ahead:
        reads_needed(Image("svc", "svc", "svc/Dockerfile", ALL3), files, "linux/amd64")
    assert str(ahead.value) == said
    dockerfile = symlinked({}, {"svc/Dockerfile": "/etc/Dockerfile"})
    with pytest.raises(
        FatalError, match=r"^image svc: its Dockerfile svc/Dockerfile is a symlink to '/etc/Dockerfile'"
    ):
        reads_needed(Image("svc", "svc", "svc/Dockerfile", ALL3), dockerfile, "linux/amd64")


def test_a_missing_dockerfile_is_said_exactly() -> None:
    with pytest.raises(FatalError) as info:
        compute(Image("svc", "svc", "svc/Dockerfile", ALL3), Files.of({}), build_platform="linux/amd64")
    assert str(info.value) == "image svc: svc/Dockerfile is missing"


def test_a_path_the_ignore_file_excludes_is_said_so_when_nothing_reads_the_context() -> None:
    found = inputs("FROM busybox\nRUN true\n", {"svc/.dockerignore": "*.md\n"})
    assert found.explain("svc/notes.md") == "does not count: excluded by svc/.dockerignore"


def test_a_named_context_as_a_stage_base_and_a_source_it_does_not_have() -> None:
    dockerfile = "FROM base\nCOPY --from=proto missing.txt /p/\n"
    found = inputs(dockerfile, {"rootfs/etc/x": "", "shared/proto/a.proto": ""},
                   contexts=(("base", "rootfs"), ("proto", "shared/proto")))  # fmt: skip
    assert found.reason("rootfs/etc/x") == "FROM '.' from context 'base' (line 1) reads: rootfs/etc/x"
    files = Files.of({"svc/Dockerfile": dockerfile, "rootfs/etc/x": "", "shared/proto/a.proto": ""})
    assert unmatched(found, files) == (
        "svc: COPY 'missing.txt' from context 'proto' (line 2) matches no file in context 'proto' (shared/proto)",)  # fmt: skip


def test_only_an_image_a_stage_is_built_on_brings_its_onbuild_triggers() -> None:
    """`FROM busybox AS base` then `FROM base`: base is the stage, not the repository's image
    named base, whose triggers therefore never run here; `FROM reg/team/base` is the image."""
    from mab_hook.dockerfile import Source  # noqa: PLC0415

    onbuild = (Source("COPY", None, "src/", (), 2, trigger="base image base (base/Dockerfile)"),)

    def triggers(ref: str) -> tuple[Source, ...]:
        return onbuild if ref in ("base", "reg/team/base") else ()

    image = Image("svc", "svc", "svc/Dockerfile", ALL3)
    for dockerfile, reads in (("FROM busybox AS base\nFROM base\n", False), ("FROM reg/team/base\n", True)):
        files = Files.of({"svc/Dockerfile": dockerfile, "svc/src/a": ""})
        found = compute(image, files, build_platform="linux/amd64", triggers=triggers)
        assert (found.reason("svc/src/a") is not None) is reads, dockerfile


def pulls_of(
    dockerfile: str, platforms: tuple[str, ...] = ALL3, **image: Any
) -> list[tuple[str, str, str, str]]:
    spec = dataclasses.replace(
        Image(name="svc", context="svc", dockerfile="svc/Dockerfile", platforms=ALL3), **image
    )
    found = pulls(spec, Files.of({"svc/Dockerfile": dockerfile, "svc/lib/x": ""}), build_platform="linux/amd64",
                  platforms=platforms)  # fmt: skip
    return [(p.platform, p.ref, p.wanted, p.how) for p in found]


def test_what_a_build_pulls_per_platform_its_from_platform_and_copy_from() -> None:
    text = ("FROM --platform=$BUILDPLATFORM golang:1 AS build\nFROM alpine AS unused\nFROM debian\n"
            "COPY --from=build /a /a\nCOPY --from=tools:2 /b /b\nRUN --mount=from=cache:3,target=/c true\n")  # fmt: skip
    assert pulls_of(text, ("linux/amd64", "linux/arm64")) == [
        ("linux/amd64", "golang:1", "linux/amd64", "FROM"),
        ("linux/amd64", "debian", "linux/amd64", "FROM"),
        ("linux/amd64", "tools:2", "linux/amd64", "--from"),
        ("linux/amd64", "cache:3", "linux/amd64", "--from"),
        ("linux/arm64", "golang:1", "linux/amd64", "FROM"),  # built on the build platform
        ("linux/arm64", "debian", "linux/arm64", "FROM"),
        ("linux/arm64", "tools:2", "linux/arm64", "--from"),  # --from an image: the platform built
        ("linux/arm64", "cache:3", "linux/arm64", "--from"),
    ]


def test_a_base_chosen_by_platform_args_is_pulled_per_platform() -> None:
    text = "ARG TARGETARCH\nFROM base-${TARGETARCH}:1\n"
    assert pulls_of(text, ("linux/amd64", "linux/arm/v7")) == [
        ("linux/amd64", "base-amd64:1", "linux/amd64", "FROM"),
        ("linux/arm/v7", "base-arm:1", "linux/arm/v7", "FROM"),
    ]
    assert pulls_of("FROM --platform=linux/s390x x\n", ("linux/amd64",)) == [
        ("linux/amd64", "x", "linux/s390x", "FROM")
    ]


def test_named_contexts_that_are_images_are_pulled_and_the_others_not() -> None:
    text = "FROM base AS app\nCOPY --from=lib / /lib\nCOPY --from=sibling / /s\nCOPY --from=layout / /l\nFROM scratch\n"
    contexts = (("base", "docker-image://reg/base:1"), ("lib", "lib"), ("sibling", "target:other"),
                ("layout", "oci-layout://lay"))  # fmt: skip
    assert pulls_of(text, ("linux/arm64",), contexts=contexts, target="app") == [
        ("linux/arm64", "reg/base:1", "linux/arm64", "named context 'base'")
    ]


def test_a_from_that_expands_to_nothing_is_said_not_looked_up() -> None:
    found = inputs("ARG X\nFROM ${X} AS build\nFROM alpine\nCOPY --from=build /a /a\n")
    assert found.blank == (2,) and found.bases == ("alpine",)
    tree = Files.of({"svc/Dockerfile": ""})
    assert unmatched(found, tree) == (
        "svc: FROM (line 2 of svc/Dockerfile) expands to nothing, which BuildKit refuses: an ARG without a value? "
        "Set it in build-args of [tool.multiarch.images.svc]",
    )
    assert inputs("ARG X=alpine\nFROM ${X}\n").blank == ()
    assert pulls_of("ARG X\nFROM ${X}\n", ("linux/amd64",)) == []


def test_the_root_of_an_image_is_the_from_its_built_stage_descends_from() -> None:
    spec = Image(name="svc", context="svc", dockerfile="svc/Dockerfile", platforms=("linux/amd64",))
    text = "FROM golang:1 AS build\nFROM alpine:3 AS base\nFROM base\nCOPY --from=build /a /a\nCOPY --from=tools:1 / /\n"
    found = pulls(
        spec, Files.of({"svc/Dockerfile": text}), build_platform="linux/amd64", platforms=("linux/amd64",)
    )
    assert [(p.ref, p.root) for p in found] == [("golang:1", False), ("alpine:3", True), ("tools:1", False)]
    assert pulls_of("FROM scratch\nCOPY --from=tools:1 / /\n", ("linux/amd64",)) == [
        ("linux/amd64", "tools:1", "linux/amd64", "--from")
    ]


def test_what_a_build_pulls_is_worked_out_from_the_parse_planning_keeps() -> None:
    spec = Image(name="svc", context="svc", dockerfile="svc/Dockerfile", platforms=ALL3)
    tree = {"svc/Dockerfile": "ARG TARGETARCH\nFROM base-${TARGETARCH}\n"}
    kept: dict[object, object] = {}
    files = Files(Files.of(tree).tree, tree.get, lambda path: f"100644 {hashlib.sha1(tree[path].encode()).hexdigest()}",
                  kept)  # fmt: skip
    compute(spec, files, build_platform="linux/amd64")
    assert len(kept) == 1
    found = pulls(spec, files, build_platform="linux/amd64", platforms=ALL3)
    assert len(kept) == 1 and [p.ref for p in found] == ["base-amd64", "base-arm64", "base-arm"]
    pulls(
        spec, files, build_platform="linux/amd64", platforms=ALL3[:1]
    )  # as a base of fewer platforms' image
    assert len(kept) == 2
