"""The input digest: every input changes it; order and unrelated files do not."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from mab_hook import input_digest as digest
from mab_hook.images import BUILD_FIELDS, Config, Image
from mab_hook.inputs import Files, Inputs, compute
from mab_hook.paths import Tree

TREE = {
    "svc/Dockerfile": "FROM busybox AS build\nCOPY src/ /src/\nFROM build AS test\nCOPY tests/ /t/\nFROM build\n",
    "svc/Dockerfile.alt": "FROM busybox AS build\nCOPY src/a.py /src/\nFROM build AS test\nFROM build\n",
    "svc/.dockerignore": "**/*.log\n",
    "svc/src/a.py": "a",
    "svc/src/b.py": "b",
    "svc/src/x.log": "log",
    "svc/tests/t.py": "t",
    "svc/README.md": "readme",
    "proto/api.proto": "p",
    "docs/index.md": "d",
}
BLOBS = {path: f"100644 {i:040x}" for i, path in enumerate(sorted(TREE))}
IMAGE = Image("svc", "svc", "svc/Dockerfile", ("linux/amd64", "linux/arm64"), build_args=(("V", "1"),),
              watch=("proto/**",))  # fmt: skip


def inputs_of(**changes: Any) -> Inputs:
    return compute(dataclasses.replace(IMAGE, **changes), Files.of(TREE), build_platform="linux/amd64")


def value(
    found: Inputs | None = None, blobs: dict[str, str] | None = None, bases: dict[str, str] | None = None
) -> str:
    found = found or inputs_of()
    files = digest.input_files(found, Tree.of(TREE))
    table = blobs if blobs is not None else BLOBS
    return digest.compute(found, {path: table[path] for path in files}, bases or {})


def test_input_files_are_what_the_build_reads() -> None:
    files = digest.input_files(inputs_of(), Tree.of(TREE))
    assert files == {"svc/Dockerfile", "svc/.dockerignore", "svc/src/a.py", "svc/src/b.py", "proto/api.proto"}


def test_stable() -> None:
    assert value() == value()
    assert len(value()) == 64


@pytest.mark.parametrize("path", ["svc/Dockerfile", "svc/.dockerignore", "svc/src/a.py", "proto/api.proto"])
def test_every_input_file_changes_it(path: str) -> None:
    changed = {**BLOBS, path: "100644 " + "f" * 40}
    assert value(blobs=changed) != value()


def test_the_executable_bit_changes_it() -> None:
    assert (
        value(blobs={**BLOBS, "svc/src/a.py": BLOBS["svc/src/a.py"].replace("100644", "100755")}) != value()
    )


@pytest.mark.parametrize("path", ["svc/tests/t.py", "svc/src/x.log", "svc/README.md", "docs/index.md"])
def test_files_the_build_does_not_read_do_not(path: str) -> None:
    assert value(blobs={**BLOBS, path: "100644 " + "f" * 40}) == value()


@pytest.mark.parametrize("changes", [
    {"build_args": (("V", "2"),)},
    {"build_args": (("V", "1"), ("W", "1"))},
    {"platforms": ("linux/arm64",)},
    {"target": "test"},
    {"contexts": (("tools", "docker-image://registry.internal/tools:2"),)},
])  # fmt: skip
def test_build_settings_change_it(changes: dict[str, Any]) -> None:
    assert value(inputs_of(**changes)) != value()


def test_platform_and_build_arg_order_do_not() -> None:
    reordered = inputs_of(platforms=("linux/arm64", "linux/amd64"))
    assert value(reordered) == value()


def test_a_bases_digest_changes_it() -> None:
    assert value(bases={"base": "1" * 64}) != value(bases={"base": "2" * 64})
    assert value(bases={"base": "1" * 64}) != value()


def test_the_digest_tag() -> None:
    assert digest.tag("a" * 64) == "mab-" + "a" * 64


# Every field of the image record, with a value other than IMAGE's, split by whether that must
# give another digest (what the build makes) or must not (where it goes, how it is run, who said
# it). A field added to `Image` fails the first test below until it is put in one of the two.
FEEDS: dict[str, Any] = {
    "context": ".",  # other files are read
    "dockerfile": "svc/Dockerfile.alt",
    "platforms": ("linux/arm64",),
    "target": "test",
    "build_args": (("V", "2"),),
    "watch": ("docs/**",),
    "contexts": (("tools", "docker-image://registry.internal/tools:2"),),
    "secrets": ("id=npm",),  # which secrets, never their values
    "labels": (("team", "ads"),),
    "extra": (("shm-size", '"2g"'),),
}
DOES_NOT: dict[str, tuple[Any, str]] = {
    "name": ("web", "where the image goes: its staging tag is in its own repository"),
    "cache_from": (("type=registry,ref=r/cache",), "where BuildKit looks for cache, not what it builds"),
    "cache_to": (("type=inline",), "where BuildKit puts cache"),
    "timeout": (60.0, "how long a build may take"),
    "defined_in": ("compose.yaml", "which file said it"),
    "only_as_context": (True, "whether it is published on its own"),
    "aliases": (("getsentry/sentry:nightly",), "what other definitions call it: not what is built"),
    "also": (("worker", "cron"), "the other names it is published under: the same build"),
    "foreign_binaries": (
        ("/usr/lib/qemu/**",),
        "what the check of the built image lets be: nothing built differs",
    ),
}


def test_every_field_of_the_image_record_is_decided() -> None:
    fields = {field.name for field in dataclasses.fields(Image)}
    assert fields == set(FEEDS) | set(DOES_NOT), "a new Image field: put it in FEEDS or DOES_NOT"
    assert set(BUILD_FIELDS) == set(FEEDS)  # what makes an image affected is what its digest covers


@pytest.mark.parametrize("field", sorted(FEEDS))
def test_a_field_of_what_is_built_changes_it(field: str) -> None:
    assert value(inputs_of(**{field: FEEDS[field]})) != value()


@pytest.mark.parametrize("field", sorted(DOES_NOT))
def test_a_field_of_where_or_how_does_not(field: str) -> None:
    assert value(inputs_of(**{field: DOES_NOT[field][0]})) == value()


def test_the_digest_of_these_inputs_is_this_value() -> None:
    """Pinned: any change to what is hashed, or how, changes every digest, and every image of
    every team gets built again once. Change this only with VERSION."""
    assert value() == "664a07ac679766e294ab24a172e9ec7a2634387f015555fd56b3ce4c28a1fde0"
    every = inputs_of(target="test", contexts=(("t", "docker-image://r/t:1"), ("d", "proto")), secrets=("id=npm",),
                      labels=(("team", "ads"),), extra=(("shm-size", '"1g"'),))  # fmt: skip
    assert (
        value(every, bases={"base": "b" * 64})
        == "342f542469922652ed996a94d3426fdec6c7898b27527655b4a1ea5da9281fd9"
    )


def test_a_named_context_counts_by_its_source_and_a_directory_by_its_files() -> None:
    external = value(inputs_of(contexts=(("t", "docker-image://r/t:1"),)))
    assert external != value(inputs_of(contexts=(("t", "docker-image://r/t:2"),)))
    # A directory context is the files it holds (hashed as files): its path alone is no input.
    assert value(inputs_of(contexts=(("d", "proto"),))) == value(inputs_of(contexts=(("d", "./proto"),)))


@pytest.mark.parametrize(("reference", "staging"), [
    ("reg:5000/team/api:mab-" + "a" * 64, True), ("reg:5000/team/api:latest", False),
    ("reg:5000/mab-team/api:1", False), ("api:mab-" + "a" * 64 + "-linux-arm-v7", True),
])  # fmt: skip
def test_what_a_staging_reference_is(reference: str, staging: bool) -> None:
    assert digest.is_staging(reference) is staging


def test_a_platforms_staging_tag() -> None:
    assert digest.tag("a" * 64, "linux/arm/v7") == "mab-" + "a" * 64 + "-linux-arm-v7"


def test_uploads_wait_in_the_images_staging_repository() -> None:
    image = Image("api", "api", "api/Dockerfile", ("linux/amd64",))
    config = Config("t", ("linux/amd64",), (image,), registry="reg:5000/team")
    assert digest.staged(config, image, "a" * 64) == "reg:5000/team/mab-staging/api:mab-" + "a" * 64
    assert digest.staged(config, image, "a" * 64, "linux/arm64").endswith(":mab-" + "a" * 64 + "-linux-arm64")
    apart = dataclasses.replace(config, staging="reg:5000/staging")
    assert digest.staged(apart, image, "b" * 64) == "reg:5000/staging/api:mab-" + "b" * 64
