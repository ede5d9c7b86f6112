"""Resolved compose services and bake targets as images, checked like [tool.multiarch] tables.
The targets here are what `docker buildx bake --print` printed for such files in the lab
(tests/test_definitions.py runs the resolver itself)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from mab_hook import file_images
from mab_hook.definitions import Source, Target
from mab_hook.errors import FatalError
from mab_hook.images import Defaults, Image
from mab_hook.paths import Tree
from mab_hook.validation import Problems

COMPOSE = Source("compose", ("compose.yaml",), ".")
TREE = Tree.of(
    [
        "compose.yaml",
        "src/ad/Dockerfile",
        "src/ad/build.gradle",
        "src/cart/Dockerfile",
        "deploy/compose.yaml",
        "shared/proto/a.proto",
        "layouts/base/index.json",
    ]
)


AMD64 = Defaults(platforms=("linux/amd64",))


def images(*targets: Target, defaults: Defaults = AMD64) -> dict[str, Image]:
    problems = Problems("pyproject.toml at abc")
    found = file_images.images_of(targets, defaults, TREE, problems)
    problems.raise_if_any()
    return found


def problem(*targets: Target) -> str:
    with pytest.raises(FatalError) as info:
        images(*targets)
    return str(info.value)


def target(name: str, source: Source = COMPOSE, *, default: bool = True, **spec: Any) -> Target:
    return Target(name, {key.replace("_", "-"): value for key, value in spec.items()}, source, default)


def test_a_root_context_and_a_dockerfile_relative_to_it() -> None:
    """opentelemetry-demo's shape: every context is the repository root."""
    found = images(
        target("ad", context=".", dockerfile="./src/ad/Dockerfile", args={"V": "2.1.0", "UNSET": None})
    )
    assert found["ad"] == Image(name="ad", context=".", dockerfile="src/ad/Dockerfile", platforms=("linux/amd64",),
                                build_args=(("V", "2.1.0"),), defined_in="compose.yaml")  # fmt: skip


def test_the_dockerfile_defaults_to_the_contexts_and_names_lose_their_capitals() -> None:
    found = images(target("Cart_Service", context="src/cart", platforms=["linux/arm64"], target="prod"))
    assert found["cart_service"].dockerfile == "src/cart/Dockerfile"
    assert (found["cart_service"].platforms, found["cart_service"].target) == (("linux/arm64",), "prod")


def test_a_compose_file_in_a_directory_has_its_paths_there() -> None:
    deploy = Source("compose", ("deploy/compose.yaml",), "deploy")
    found = images(target("ad", deploy, context="../src/ad", contexts={"proto": "../shared/proto"}))
    assert (found["ad"].context, found["ad"].dockerfile) == ("src/ad", "src/ad/Dockerfile")
    assert found["ad"].contexts == (("proto", "shared/proto"),)


def test_target_and_service_contexts_name_other_images() -> None:
    found = images(
        target("base", context="src/cart"),
        target("tool-lite", context="src/ad", contexts={"base": "target:base", "cfg": "service:my.cfg"}),
        target("my_cfg", context="src/cart", default=False),  # compose's `my.cfg`, named by bake
    )
    assert found["tool-lite"].contexts == (("base", "target:base"), ("cfg", "target:my_cfg"))
    assert found["tool-lite"].image_contexts == (("base", "base"), ("cfg", "my_cfg"))
    assert found["my_cfg"].only_as_context and not found["base"].only_as_context


def test_what_changes_a_build_reaches_it_and_the_rest_is_mab_hooks() -> None:
    found = images(target("ad", context="src/ad", labels={"team": "ads", "gone": None}, tags=["x/ad:1"],
                          output=["type=docker"], network="host", ssh=["default"], shm_size="1GiB",
                          secret=["id=npm,env=NPM_TOKEN"], cache_from=[{"type": "registry", "ref": "r/c"}]))  # fmt: skip
    image = found["ad"]
    assert image.labels == (("team", "ads"),)
    assert image.extra == (("network", '"host"'), ("shm-size", '"1GiB"'))
    assert image.secrets == ()  # what a build gets is the pusher's grant (mab_hook.grants)
    assert image.cache_from == ("type=registry,ref=r/c",)  # newer buildx prints specs as objects


def test_the_configs_build_settings_apply_unless_the_file_sets_its_own() -> None:
    defaults = Defaults(("linux/amd64",), cache_from=("type=registry,ref=r/cache/{name}",), timeout=60.0)
    found = images(target("ad", context="src/ad"), target("cart", context="src/cart", cache_from=["type=gha"]),
                   defaults=defaults)  # fmt: skip
    assert (found["ad"].cache_from, found["ad"].timeout) == (("type=registry,ref=r/cache/ad",), 60.0)
    assert found["cart"].cache_from == ("type=gha",)


@pytest.mark.parametrize(("spec", "said"), [
    ({"context": "https://github.com/x/y.git"}, "is a remote context: mab-hook builds what the pushed commit holds"),
    ({"context": "git@github.com:x/y.git"}, "is a remote context"),
    ({"context": "../elsewhere"}, "'../elsewhere' must be a path inside the repository"),
    ({"context": "/srv/app"}, "'/srv/app' must be a path inside the repository"),
    ({"context": "missing"}, "directory 'missing' does not exist in this commit"),
    ({"context": "src/ad", "dockerfile": "Other"}, "'src/ad/Other' is not a tracked file in this commit"),
    ({"context": "src/ad", "dockerfile-inline": "FROM scratch"}, "dockerfile-inline] is not supported"),
    ({"context": "src/ad", "cache-to": ["type=local,dest=/tmp/x"]}, "dest= must be a path inside the repository"),
    ({"context": "src/ad", "platforms": ["linux/aarch64"]}, "did you mean 'linux/arm64'"),
    ({"context": "src/ad", "contexts": {"b": "target:nope"}}, "'target:nope' names no target of compose.yaml"),
    ({"context": "src/ad", "contexts": {"l": "oci-layout:///var/lib/x"}}, "the layout's path must be a path inside"),
])  # fmt: skip
def test_bad_targets_are_refused_like_bad_tables(spec: dict[str, Any], said: str) -> None:
    message = problem(Target("ad", spec, COMPOSE, True))
    assert "[compose.yaml: target 'ad" in message
    assert said in message


def test_two_targets_one_image() -> None:
    message = problem(target("Api", context="src/ad"), target("api", context="src/cart"))
    assert "is image 'api', as a target of compose.yaml is; give one of them another name" in message


def test_what_a_definition_tags_an_image_is_what_other_images_may_name_it_by() -> None:
    found = images(
        target("web", context="src/cart", tags=["getsentry/sentry:nightly", "not a ref", "r:5000/x:1"])
    )
    assert found["web"].aliases == ("getsentry/sentry:nightly", "r:5000/x:1")
    assert images(target("web", context="src/cart"))["web"].aliases == ()


def test_local_platforms_are_the_machines_that_build_or_the_configs() -> None:
    problems = Problems("pyproject.toml at abc")
    found = file_images.images_of([target("web", context="src/cart", platforms=["local", "linux/s390x"])],
                                  Defaults(), TREE, problems, local=("linux/amd64", "linux/arm64"))  # fmt: skip
    problems.raise_if_any()
    assert found["web"].platforms == ("linux/amd64", "linux/arm64", "linux/s390x")
    assert '"local" is the machine that builds: set `platforms` in [tool.multiarch]' in problem(
        target("web", context="src/cart", platforms=["local"])
    )


@pytest.mark.parametrize(
    ("outputs", "published"),
    [
        (None, True),
        (["type=image,push=true"], True),
        (["type=registry"], True),
        (["type=docker"], True),
        (["type=local,dest=./bin"], False),  # files, not an image
        ([{"type": "tar", "dest": "out.tar"}], False),
        (["type=cacheonly"], False),
        (["type=local,dest=./bin", "type=image"], True),
    ],
)
def test_a_target_whose_outputs_are_no_image_is_never_published(
    outputs: list[object] | None, published: bool
) -> None:
    spec: dict[str, Any] = {"output": outputs} if outputs is not None else {}
    found = images(target("web", context="src/cart", **spec))
    assert found["web"].only_as_context is not published


def test_a_problem_of_a_definition_file_says_to_fix_that_file() -> None:
    said = problem(target("web", context="src/cart", platforms=["local"]))
    assert said.endswith("\nFix compose.yaml and run again; nothing was built."), said


def test_services_that_share_one_build_are_one_image_published_under_every_name() -> None:
    """getsentry/self-hosted's shape: one `build:` through a YAML anchor under many services."""
    sentry: dict[str, Any] = {
        "context": "src/cart",
        "args": {"V": "1"},
        "cache_from": ["type=registry,ref=r/c"],
    }
    found = file_images.one_build_each(list(images(
        target("web", tags=["sentry-self-hosted-local"], **sentry), target("cron", **sentry),
        target("worker", tags=["sentry-worker"], **{**sentry, "cache_from": ["type=registry,ref=r/other"]}),
        target("ad", context="src/cart", args={"V": "2"}),  # another build arg: another build
        target("cleanup", context="src/ad", contexts={"sentry": "service:worker"}),
        target("only", context="src/cart", args={"V": "1"}, default=False),  # a context only: never merged
    ).values()))  # fmt: skip
    by_name = {image.name: image for image in found}
    assert sorted(by_name) == ["ad", "cleanup", "cron", "only"]
    assert by_name["cron"].also == ("web", "worker") and by_name["ad"].also == by_name["only"].also == ()
    assert by_name["cron"].aliases == ("sentry-self-hosted-local", "sentry-worker")
    assert by_name["cron"].cache_from == ("type=registry,ref=r/c",)  # the build's own, not per name
    assert by_name["cleanup"].contexts == (("sentry", "target:cron"),)  # a merged name names the build
    assert by_name["cron"].names == ("cron", "web", "worker")


def test_a_table_that_changes_one_service_makes_it_a_build_of_its_own() -> None:
    alike = [Image("web", "src/cart", "src/cart/Dockerfile", ("linux/amd64",), defined_in="compose.yaml"),
             Image("cron", "src/cart", "src/cart/Dockerfile", ("linux/amd64",), defined_in="compose.yaml")]  # fmt: skip
    assert [image.names for image in file_images.one_build_each(alike)] == [("cron", "web")]
    apart = [alike[0], dataclasses.replace(alike[1], platforms=("linux/arm64",))]
    assert [image.names for image in file_images.one_build_each(apart)] == [("web",), ("cron",)]
    tables = [dataclasses.replace(image, defined_in="") for image in alike]  # two tables: as written
    assert [image.names for image in file_images.one_build_each(tables)] == [("web",), ("cron",)]


def said(message: str) -> list[str]:
    """Each problem of a refusal, as `[key] what`."""
    return [line.removeprefix("  - ") for line in message.splitlines() if line.startswith("  - ")]


def test_every_bad_target_is_named_at_once_each_with_its_own_key() -> None:
    message = problem(
        target("ad", context="missing"),
        target("cart", context="src/cart", dockerfile="Nope", args={"A": [1]}, cache_from=["registry"]),
        target("web", context="src/cart", dockerfile="cwd://src/ad/Dockerfile", platforms="local",
               contexts={"p": "shared/proto", "b": "target:nope"}),
        target("Ad", context="src/ad"),
        target("api", context="src/ad", contexts={"c": "service:gone", "d": "target:none"}),
        target("lone", context="src/ad", platforms=["local"]),
        target("inline", context="src/ad", dockerfile_inline="FROM scratch"),
        target("out", context="src/ad", dockerfile="../../../etc/Dockerfile"),
    )  # fmt: skip
    assert said(message) == [
        "[compose.yaml: target 'ad'.context] directory 'missing' does not exist in this commit",
        "[compose.yaml: target 'ad'.dockerfile] 'missing/Dockerfile' is not a tracked file in this commit",
        "[compose.yaml: target 'cart'.dockerfile] 'src/cart/Nope' is not a tracked file in this commit",
        "[compose.yaml: target 'cart'.args.A] must be a string or number, not an array",
        "[compose.yaml: target 'cart'.cache-from] 'registry' is not a BuildKit cache spec, e.g. "
        "'type=registry,ref=registry.internal:5000/cache/{name}'",
        "[compose.yaml: target 'web'.platforms] must be a list of strings, not a string ('local')",
        "[compose.yaml: target 'web'.contexts.b] 'target:nope' names no target of compose.yaml",
        "[compose.yaml: target 'Ad'] is image 'ad', as a target of compose.yaml is; give one of them another name",
        "[compose.yaml: target 'api'.contexts.c] 'service:gone' names no target of compose.yaml",
        "[compose.yaml: target 'api'.contexts.d] 'target:none' names no target of compose.yaml",
        "[compose.yaml: target 'lone'.platforms] \"local\" is the machine that builds: set `platforms` in "
        "[tool.multiarch]",
        "[compose.yaml: target 'inline'.dockerfile-inline] is not supported: mab-hook reads what a build reads from "
        "the Dockerfile in the repository; move it into a file named by `dockerfile`",
        "[compose.yaml: target 'out'.dockerfile] 'src/ad/../../../etc/Dockerfile' must be a path inside the "
        "repository, relative to its root",
    ]


def test_two_compose_projects_with_one_service_name_are_told_to_name_a_project() -> None:
    shop = Source("compose", ("shop/compose.yaml",), "shop", project="shop")
    other = Source("compose", ("deploy/compose.yaml",), "deploy", project="shop")
    message = problem(target("web", shop, context="../src/ad"), target("web", other, context="../src/cart"))
    assert said(message) == [
        "[deploy/compose.yaml: target 'web'] is image 'shop-web', as a target of shop/compose.yaml is; give one "
        "project a `name:`"
    ]


def test_cwd_paths_are_where_bake_runs_and_a_target_without_a_context_builds_the_root() -> None:
    bake = Source("bake", ("docker-bake.hcl",), ".")
    found = images(
        target("web", bake, context="cwd://src/cart", dockerfile="cwd://src/ad/Dockerfile"),
        target("root", bake, dockerfile="src/ad/Dockerfile"),
    )
    assert (found["web"].context, found["web"].dockerfile) == ("src/cart", "src/ad/Dockerfile")
    assert (found["root"].context, found["root"].dockerfile) == (".", "src/ad/Dockerfile")


def test_the_fields_buildx_gets_as_they_are_each_as_canonical_json() -> None:
    found = images(
        target("ad", context="src/ad", ulimits={"nofile": {"soft": 1024, "hard": 4096}},
               extra_hosts=["db:10.0.0.2"], shm_size="1g"),
    )  # fmt: skip
    assert found["ad"].extra == (
        ("shm-size", '"1g"'),
        ("ulimits", '{"nofile": {"hard": 4096, "soft": 1024}}'),
        ("extra-hosts", '["db:10.0.0.2"]'),
    )
