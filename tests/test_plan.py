from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import pytest

from mab_hook.changes import Target
from mab_hook.config import Config, Image
from mab_hook.errors import FatalError
from mab_hook.inputs import Files
from mab_hook.plan import Base, Plan, make_plan

PLATFORMS = ("linux/amd64", "linux/arm64")


def image(name: str, context: str, watch: tuple[str, ...] = ()) -> Image:
    return Image(
        name=name, context=context, dockerfile=f"{context}/Dockerfile", platforms=PLATFORMS, watch=watch
    )


CONFIG = Config(
    source="pyproject.toml at abc",
    platforms=PLATFORMS,
    registry="reg:5000/team",
    tags=("{short_sha}", "{branch}"),
    images=(
        image("api", "services/api", watch=("proto/**", "*.md")),
        image("base", "base"),
        image("worker", "services/worker"),
        image("tool", "tools/tool"),
    ),
)
DOCKERFILES = {
    "base/Dockerfile": "FROM busybox\n",
    "services/api/Dockerfile": "ARG TAG=latest\nFROM reg:5000/team/base:${TAG}\nCOPY . /app\n",
    "services/worker/Dockerfile": "FROM base AS b\nFROM b\n",
    "tools/tool/Dockerfile": "FROM reg:5000/other/base\n",
}


def plan(changed: set[str] | None, config: Config = CONFIG, files: Mapping[str, str] = DOCKERFILES) -> Plan:
    target = Target("0123456789" * 4, "main", None if changed is None else frozenset(changed), "test")
    return make_plan(target, config, Files.of(files), build_platform="linux/amd64")


def names(p: Plan) -> list[str]:
    return [planned.image.name for planned in p.affected]


def with_images(*images: Image) -> Config:
    return Config(source=CONFIG.source, platforms=PLATFORMS, registry=CONFIG.registry, images=images)


def test_nothing_changed_nothing_affected() -> None:
    p = plan({"docs/index.md"})
    assert names(p) == []
    assert p.unaffected == ("api", "base", "worker", "tool")


def test_context_file_affects_the_image() -> None:
    p = plan({"services/api/main.py"})
    assert names(p) == ["api"]
    assert p.affected[0].reasons == ("COPY '.' (line 3) reads: services/api/main.py",)
    assert p.affected[0].tags == ("reg:5000/team/api:0123456", "reg:5000/team/api:main")


def test_a_sibling_directory_with_the_same_prefix_does_not() -> None:
    assert names(plan({"services/api-docs/x"})) == []


def test_dockerfile_outside_the_context_counts() -> None:
    config = with_images(Image("api", "services/api", "docker/api.Dockerfile", PLATFORMS))
    p = plan({"docker/api.Dockerfile"}, config, {"docker/api.Dockerfile": "FROM busybox\n"})
    assert p.affected[0].reasons == ("Dockerfile changed: docker/api.Dockerfile",)


def test_watch_globs() -> None:
    reasons = plan({"proto/v1/api.proto"}).affected[0].reasons
    assert reasons == ("watch 'proto/**' matched: proto/v1/api.proto",)
    assert names(plan({"README.md"})) == ["api"]
    assert names(plan({"docs/README.md"})) == []  # '*.md' is anchored at the root, as in Docker


def test_a_changed_base_rebuilds_its_dependants_after_it() -> None:
    p = plan({"base/Dockerfile"})
    assert names(p) == ["base", "api", "worker"]
    api = p.affected[1]
    assert api.reasons == ("base image base is rebuilt",)
    assert api.bases == (Base("base", "reg:5000/team/base"),)  # ${TAG} expanded, :latest trimmed
    assert p.affected[2].bases == (Base("base", "base"),)  # bare name, through a stage alias
    assert "tool" in p.unaffected  # reg:5000/other/base is not ours


def test_an_unaffected_base_is_built_as_a_context_only() -> None:
    p = plan({"services/api/main.py"})
    assert names(p) == ["api"]
    assert [planned.image.name for planned in p.context_only] == ["base"]
    assert p.context_only[0].tags == ()


def test_everything() -> None:
    p = plan(None)
    assert names(p)[0] == "base"
    assert set(names(p)) == {"api", "base", "worker", "tool"}
    assert p.affected[0].reasons == ("every image is built (test)",)


def test_root_context_copied_whole_sees_every_change() -> None:
    config = with_images(Image("app", ".", "Dockerfile", PLATFORMS))
    assert names(plan({"anything/at/all"}, config, {"Dockerfile": "FROM busybox\nCOPY . /\n"})) == ["app"]
    assert names(plan({"anything/at/all"}, config, {"Dockerfile": "FROM busybox\nCOPY app /\n"})) == []


def test_cycle_is_a_config_error_naming_it() -> None:
    config = with_images(image("a", "a"), image("b", "b"))
    files = {"a/Dockerfile": "FROM reg:5000/team/b\n", "b/Dockerfile": "FROM reg:5000/team/a:1\n"}
    with pytest.raises(FatalError, match=r"in a cycle: (a -> b -> a|b -> a -> b)"):
        plan({"a/Dockerfile"}, config, files)


def test_a_missing_dockerfile_is_reported() -> None:
    with pytest.raises(FatalError, match="image api: services/api/Dockerfile is missing"):
        plan({"services/api/x"}, files={})


def test_changed_settings_make_an_image_affected() -> None:
    before = with_images(image("api", "services/api"), image("base", "base"))
    now = with_images(
        dataclasses.replace(image("api", "services/api"), build_args=(("V", "2"),)),
        image("base", "base"),
        image("worker", "services/worker"),
    )
    target = Target("0123456789" * 4, "main", frozenset({"pyproject.toml"}), "test", ("a" * 40,))
    p = make_plan(target, now, Files.of(DOCKERFILES), build_platform="linux/amd64", previous=[before])
    assert {x.image.name: x.reasons for x in p.affected} == {
        "api": ("its [tool.multiarch] settings changed (pyproject.toml)",),
        "worker": ("new image in [tool.multiarch] (pyproject.toml)",),
    }
