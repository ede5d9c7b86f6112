"""Input digests: one hash of everything an image's build depends on.

Same digest, same image: a build whose digest was built (or pushed) before is skipped. Unlike
Skaffold's inputDigest, build args and platforms are in it, so an arm64-only build and a
multi-arch build of the same files never share a tag.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence

from mab_hook import budget
from mab_hook.budget import Deadline
from mab_hook.images import Config, Image
from mab_hook.inputs import Inputs
from mab_hook.paths import Tracked
from mab_hook.patterns import watched_in

VERSION = b"mab-hook input digest v1"
TAG_PREFIX = "mab-"


def input_files(
    found: Inputs, tree: Tracked, gitlinks: Sequence[str] = (), *, deadline: Deadline = budget.NONE
) -> set[str]:
    """The repository files the build reads (reachable rules, after the ignore files) or watches,
    and the submodules it reads (their recorded commits)."""
    files = {found.image.dockerfile, *found.followed}
    if found.ignore_file:
        files.add(found.ignore_file)
    for rule in found.rules:
        deadline.check()
        if rule.reachable:
            files.update(path for path in rule.candidates(tree) if rule.reads(path))
    for glob in found.image.watches:
        files.update(watched_in(glob, tree))
    files.update(found.submodules(gitlinks))
    return files


def compute(
    found: Inputs,
    blobs: Mapping[str, str],
    base_digests: Mapping[str, str],
) -> str:
    """The digest of an image's inputs.

    `blobs` maps each input file to git's mode and object id for it (content and executable
    bit, which COPY keeps); `base_digests` the digests of the in-repo images it builds on.
    """
    hasher = hashlib.sha256(VERSION)
    for record in _records(found.image, blobs, base_digests):
        for field in record:
            hasher.update(field.encode())
            hasher.update(b"\0")
        hasher.update(b"\n")
    return hasher.hexdigest()


def _records(
    image: Image, blobs: Mapping[str, str], base_digests: Mapping[str, str]
) -> Iterator[tuple[str, ...]]:
    yield from (("file", path, blobs[path]) for path in sorted(blobs))
    yield from (("arg", key, value) for key, value in sorted(image.build_args))
    yield ("target", image.target or "")
    yield from (("platform", platform) for platform in sorted(image.platforms))
    yield from (("secret", secret) for secret in sorted(image.secrets))  # which secrets, never their values
    for name, value in sorted(image.contexts):
        yield ("context", name, value if image.context_dir(name) is None else "dir")
    yield from (("base", name, value) for name, value in sorted(base_digests.items()))
    # Set by compose and bake files only; fed only when set, so other images keep their digests.
    yield from (("label", name, value) for name, value in image.labels)
    yield from (("bake", name, value) for name, value in image.extra)


def tag(value: str, platform: str = "") -> str:
    """The registry tag that marks an image built from these inputs; with `platform`, the tag
    a CI job uploads that platform's build under, until every platform is merged under the
    image's own (`mab-<digest>-linux-arm-v7`)."""
    suffix = f"-{platform.replace('/', '-')}" if platform else ""
    if len(TAG_PREFIX + value + suffix) > MAX_TAG:  # many platforms of one engine: named by their hash
        suffix = "-p" + hashlib.sha256(platform.encode()).hexdigest()[:16]
    return TAG_PREFIX + value + suffix


MAX_TAG = 128  # what the distribution spec allows a tag


def engine_part(platforms: Sequence[str]) -> str:
    """What stands for the platforms one engine builds in their staging tag: a CI job's one
    platform, or several (`linux/arm64_linux/arm/v7`)."""
    return "_".join(platforms)


def staged(config: Config, image: Image, value: str, platform: str = "") -> str:
    """Where an upload built from these inputs waits to be published: the image's staging
    repository, under its input-digest tag (with `platform`, a CI job's share)."""
    return f"{config.staging_repository(image)}:{tag(value, platform)}"


def is_staging(reference: str) -> bool:
    """Whether a reference is an input-digest tag: what a build uploads before the push may
    publish, and what no one reads as a public tag."""
    return reference.rpartition(":")[2].startswith(TAG_PREFIX)
