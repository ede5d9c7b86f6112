"""The one way an image record is made: what a source says, over what lies under it."""

from __future__ import annotations

import copy
import dataclasses
import sys
from pathlib import Path

import pytest

from mab_hook import cache, config, images, schema
from mab_hook.images import Config, Defaults, Image, Said, assemble, is_external_context, layout_path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULTS = Defaults(
    platforms=("linux/amd64", "linux/arm64"),
    cache_from=("type=registry,ref=r/cache/{name}",),
    cache_to=("type=registry,ref=r/cache/{name},mode=max",),
    timeout=900.0,
    secrets=("id=npm,env=NPM_TOKEN",),
)

# A compose service as file_images makes it: what a table may then say more of.
SERVICE = Image(
    name="api",
    context="src/api",
    dockerfile="src/api/Dockerfile",
    platforms=("linux/arm64",),
    target="prod",
    build_args=(("A", "file"), ("B", "file")),
    watch=("proto/**",),
    contexts=(("lib", "src/lib"), ("tools", "src/tools")),
    cache_from=("type=gha,scope=api",),
    cache_to=("type=gha,scope=api,mode=max",),
    timeout=60.0,
    secrets=("id=git",),
    labels=(("team", "core"),),
    extra=(("network", '"host"'),),
    defined_in="compose.yaml",
    only_as_context=True,
    foreign_binaries=("/opt/qemu/*",),
    aliases=("acme/api:dev",),
    also=("api-worker",),
)


def test_a_source_that_says_nothing_gets_the_defaults_with_its_name_filled_in() -> None:
    image = assemble("api", Said("src/api", "src/api/Dockerfile"), DEFAULTS)
    assert image == Image(
        name="api",
        context="src/api",
        dockerfile="src/api/Dockerfile",
        platforms=("linux/amd64", "linux/arm64"),
        cache_from=("type=registry,ref=r/cache/api",),
        cache_to=("type=registry,ref=r/cache/api,mode=max",),
        timeout=900.0,
        secrets=("id=npm,env=NPM_TOKEN",),
    )


def test_what_a_source_says_replaces_the_defaults() -> None:
    said = Said(
        "src/api",
        "src/api/Dockerfile",
        platforms=("linux/arm/v7",),
        cache_from=("type=local,src=.cache/{name}",),
        cache_to=(),  # an empty list says "none", not "the default"
        timeout=30.0,
        secrets=(),
    )
    image = assemble("web", said, DEFAULTS)
    assert (image.platforms, image.cache_from, image.cache_to, image.timeout, image.secrets) == (
        ("linux/arm/v7",),
        ("type=local,src=.cache/web",),
        (),
        30.0,
        (),
    )


def test_a_table_over_a_compose_service_keeps_what_it_does_not_say() -> None:
    image = assemble("api", Said("src/api", "src/api/Dockerfile"), SERVICE)
    assert image == SERVICE


def test_a_table_over_a_compose_service_replaces_settings_and_adds_to_maps_and_lists() -> None:
    said = Said(
        "src/api",
        "src/api/Containerfile",
        platforms=("linux/amd64",),
        target="debug",
        build_args=(("B", "table"), ("C", "table")),
        watch=("schema/**",),
        contexts=(("lib", "vendor/lib"), ("docs", "docs")),
        cache_from=("type=registry,ref=r/{name}",),
        timeout=120.0,
        secrets=("id=pip",),
        foreign_binaries=("/usr/arm/*",),
    )
    image = assemble("api", said, SERVICE)
    assert image == dataclasses.replace(
        SERVICE,
        dockerfile="src/api/Containerfile",
        platforms=("linux/amd64",),
        target="debug",
        build_args=(("A", "file"), ("B", "table"), ("C", "table")),
        watch=("proto/**", "schema/**"),
        contexts=(("docs", "docs"), ("lib", "vendor/lib"), ("tools", "src/tools")),
        cache_from=("type=registry,ref=r/api",),
        timeout=120.0,
        secrets=("id=pip",),
        foreign_binaries=("/opt/qemu/*", "/usr/arm/*"),
    )


def test_what_only_a_definition_file_says_comes_from_it() -> None:
    said = Said(
        "src/api",
        "src/api/Dockerfile",
        labels=(("tier", "web"),),
        extra=(("shm-size", '"1GiB"'), ("network", '"none"')),
        defined_in="docker-bake.hcl",
        aliases=("acme/api:dev", "acme/api:1"),
    )
    image = assemble("api", said, SERVICE)
    assert image.labels == (("team", "core"), ("tier", "web"))
    assert image.extra == (("shm-size", '"1GiB"'), ("network", '"none"'))  # in the order buildx gets them
    assert image.defined_in == "docker-bake.hcl"
    assert image.aliases == ("acme/api:dev", "acme/api:1")
    assert (image.only_as_context, image.also) == (True, ("api-worker",))
    plain = assemble("web", Said("web", "web/Dockerfile", only_as_context=True), DEFAULTS)
    assert (plain.only_as_context, plain.defined_in, plain.also) == (True, "", ())


def test_an_oci_layouts_path_is_without_its_tag_or_digest() -> None:
    assert layout_path("oci-layout://layouts/base") == "layouts/base"
    assert layout_path("oci-layout://layouts/base:1.2") == "layouts/base"
    assert layout_path("oci-layout://layouts/base@sha256:abc") == "layouts/base"
    assert layout_path("oci-layout://layouts/v1:2/base") == "layouts/v1:2/base"


def test_a_configs_defaults_are_the_ones_the_readme_gives() -> None:
    """One fact: what a key left out means. The record's defaults, what loading a config that
    sets only `platforms` gives, and the README's default column (the schema's) agree."""
    minimal = config.load(
        '[tool.multiarch]\nplatforms = ["linux/amd64"]\n', source="p", tracked=["Dockerfile"]
    )
    defaults = {f.name: f.default for f in dataclasses.fields(Config) if f.default is not dataclasses.MISSING}
    compared = []
    for key in schema.TOP:
        field = key.name.replace("-", "_")
        if field not in defaults:
            continue  # an image's setting, or a definition file: not the config's own
        shown = key.default.strip("`")
        try:  # a TOML value in backticks, or a bare string; else words ("none", "<registry>/...")
            value = tomllib.loads(f"v = {shown}")["v"]
        except tomllib.TOMLDecodeError:
            value = shown if key.default.startswith("`") and "<" not in shown else None
        expected = tuple(value) if isinstance(value, list) else value
        expected = tuple(value.items()) if isinstance(value, dict) else expected
        assert (defaults[field], getattr(minimal, field)) == (expected, expected), key.name
        compared.append(key.name)
    assert len(compared) == 13, compared


def test_what_an_images_record_tells() -> None:
    image = dataclasses.replace(
        SERVICE,
        contexts=(("lib", "src/lib"), ("base", "target:base"), ("hub", "docker-image://alpine"),
                  ("layout", "oci-layout://layouts/x:1")),
    )  # fmt: skip
    assert image.names == ("api", "api-worker")
    assert image.network == "host"
    assert dataclasses.replace(image, extra=()).network is None
    assert [image.context_dir(name) for name in ("lib", "base", "hub", "layout", "none")] == [
        "src/lib",
        None,
        None,
        None,
        None,
    ]
    assert image.image_contexts == (("base", "base"),)
    assert image.watches == ("proto/**", "layouts/x/**")
    assert is_external_context("https://example.com/x.tar") and not is_external_context("src/lib")
    listed = Config("p", (), (SERVICE, dataclasses.replace(SERVICE, name="web", only_as_context=False)))
    assert [i.name for i in listed.published] == ["web"]


def test_the_labels_every_image_carries_are_the_ones_the_readme_names() -> None:
    """What a registry's users read (`docker inspect`, `verify`): a promise, said once."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for label in (images.INPUT_DIGEST_LABEL, images.REVISION_LABEL):
        assert f"`{label}`" in readme
    assert (images.INPUT_DIGEST_LABEL, images.REVISION_LABEL) == (
        "dev.mab-hook.input-digest",
        "org.opencontainers.image.revision",
    )
    assert images.DOCKER_IMAGE == "docker-image://" and f"`{images.DOCKER_IMAGE}...`" in readme


def test_records_are_immutable_and_say_nothing_they_were_not_told() -> None:
    image = Image("api", "api", "api/Dockerfile", ())
    assert (image.target, image.timeout, image.extra, image.only_as_context, image.defined_in) == (
        None,
        None,
        (),
        False,
        "",
    )
    listed = Config("p", (), (image,))
    assert (listed.builder_spec, listed.definitions, listed.notes) == (None, (), ())
    assert assemble("api", Said("api", "api/Dockerfile"), Defaults()).platforms == ()
    for record in (image, listed, Defaults(), Said("api", "api/Dockerfile")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            record.platforms = ("linux/amd64",)  # type: ignore[misc]


def test_an_image_kept_between_runs_comes_back_equal_and_keeps_only_what_differs_from_the_defaults() -> None:
    """A kept configuration pickles its images without the fields left at their defaults (the
    class holds those): each comes back equal, every field readable, whatever it was told."""
    plain = Image("app", "app", "app/Dockerfile", ("linux/amd64",))
    told = Image("api", ".", "api/Dockerfile", ("linux/arm64",), target="", build_args=(("A", "1"),),
                 timeout=0.0, only_as_context=True, also=("b",), defined_in="compose.yaml")  # fmt: skip
    assert set(plain.__getstate__()) == {"name", "context", "dockerfile", "platforms"}
    # "" for a None default and 0.0 for None are told, not defaults: kept as they are.
    assert set(told.__getstate__()) == {
        "name", "context", "dockerfile", "platforms", "target", "build_args", "timeout", "only_as_context",
        "also", "defined_in",
    }  # fmt: skip
    for image in (plain, told):
        again = cache._loads(cache._dumps(image))  # as the planning cache reads it back
        assert again == image and hash(again) == hash(image)
        assert all(getattr(again, f.name) == getattr(image, f.name) for f in dataclasses.fields(Image))
        assert (again.target, again.timeout) == (image.target, image.timeout)
        assert type(again.timeout) is type(image.timeout)
    assert copy.copy(told) == told and dataclasses.replace(plain, name="web").watch == ()
    # What planning works out from an image and keeps on it is not kept with it.
    built_on = dataclasses.replace(plain, contexts=(("base", "target:base"),))
    assert built_on.image_contexts == (("base", "base"),)
    assert set(built_on.__getstate__()) == {"name", "context", "dockerfile", "platforms", "contexts"}
    assert cache._loads(cache._dumps(built_on)).image_contexts == (("base", "base"),)
