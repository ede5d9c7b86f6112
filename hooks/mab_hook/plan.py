"""From changed paths to the images to build, why, and in which order."""

from __future__ import annotations

import graphlib
from collections.abc import Callable, Mapping
from typing import NamedTuple

from e2b_dockerfile_utils import PatternMatcher

from mab_hook import dockerfile
from mab_hook.changes import Target
from mab_hook.config import Config, Image, render_tag
from mab_hook.errors import FatalError


class Base(NamedTuple):
    """An in-repo image another image is built on."""

    name: str  # the base image's name in the config
    key: str  # the FROM reference as buildx's named-context key


class PlannedImage(NamedTuple):
    image: Image
    reasons: tuple[str, ...]
    tags: tuple[str, ...]  # full references: <registry>/<name>:<tag>
    bases: tuple[Base, ...]


class Plan(NamedTuple):
    target: Target
    config: Config
    affected: tuple[PlannedImage, ...]  # in build order: bases before their dependants
    unaffected: tuple[str, ...]
    # Unaffected in-repo bases of affected images: built (from cache, usually) at the same
    # commit as named contexts, so a dependant never builds on a stale or missing base tag.
    context_only: tuple[PlannedImage, ...] = ()


def make_plan(target: Target, config: Config, read: Callable[[str], str | None]) -> Plan:
    """`read(path)` returns a file of the target commit (None when missing)."""
    bases = {image.name: find_bases(image, config, read) for image in config.images}
    order = build_order(config, bases)
    by_name = {image.name: image for image in config.images}
    reasons: dict[str, tuple[str, ...]] = {}
    for name in order:
        image = by_name[name]
        own = direct_reasons(image, target)
        via = tuple(
            f"base image {base.name} is rebuilt"
            for base in bases[name]
            if base.name in reasons and target.changed is not None
        )
        if own or via:
            reasons[name] = own + via
    affected = tuple(
        PlannedImage(by_name[name], reasons[name], image_tags(config, by_name[name], target), bases[name])
        for name in order
        if name in reasons
    )
    unaffected = tuple(image.name for image in config.images if image.name not in reasons)
    needed = _bases_needed(affected, bases)
    context_only = tuple(
        PlannedImage(by_name[name], (), (), bases[name])
        for name in order
        if name in needed and name not in reasons
    )
    return Plan(target, config, affected, unaffected, context_only)


def _bases_needed(affected: tuple[PlannedImage, ...], bases: Mapping[str, tuple[Base, ...]]) -> set[str]:
    needed: set[str] = set()
    todo = [base.name for planned in affected for base in planned.bases]
    while todo:
        name = todo.pop()
        if name not in needed:
            needed.add(name)
            todo.extend(base.name for base in bases[name])
    return needed


def direct_reasons(image: Image, target: Target) -> tuple[str, ...]:
    if target.changed is None:
        return (f"every image is built ({target.why})",)
    reasons = []
    matchers = [(glob, PatternMatcher([glob])) for glob in image.watch]
    for path in sorted(target.changed):
        if path == image.dockerfile:
            reasons.append(f"Dockerfile changed: {path}")
        elif image.context == "." or path.startswith(image.context + "/"):
            reasons.append(f"build context changed: {path}")
        else:
            glob = next((g for g, matcher in matchers if matcher.matches(path)), None)
            if glob is not None:
                reasons.append(f"watch {glob!r} matched: {path}")
    return tuple(reasons)


def find_bases(image: Image, config: Config, read: Callable[[str], str | None]) -> tuple[Base, ...]:
    text = read(image.dockerfile)
    if text is None:
        raise FatalError(f"{config.source}: image {image.name}: {image.dockerfile} is missing")
    stages = dockerfile.stages(text, dict(image.build_args), source=image.dockerfile)
    names = _names_by_reference(config)
    found = []
    for ref in dockerfile.external_bases(stages):
        repo, _tag = dockerfile.split_reference(ref)
        base_name = names.get(repo) or names.get(dockerfile.context_key(repo))
        if base_name is not None and base_name != image.name:
            found.append(Base(base_name, dockerfile.context_key(ref)))
    return tuple(found)


def _names_by_reference(config: Config) -> Mapping[str, str]:
    """Every way a FROM line can name an image of this repository."""
    names = {}
    for image in config.images:
        names[image.name] = image.name
        names[config.reference(image)] = image.name
    return names


def build_order(config: Config, bases: Mapping[str, tuple[Base, ...]]) -> tuple[str, ...]:
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for image in config.images:
        sorter.add(image.name, *(base.name for base in bases[image.name]))
    try:
        return tuple(sorter.static_order())
    except graphlib.CycleError as e:
        cycle = " -> ".join(reversed(e.args[1]))
        raise FatalError(
            f"{config.source}: images are built on each other in a cycle: {cycle}. "
            "Change a FROM line to break it."
        ) from None


def image_tags(config: Config, image: Image, target: Target) -> tuple[str, ...]:
    ref = config.reference(image)
    return tuple(
        dict.fromkeys(
            f"{ref}:{render_tag(template, sha=target.sha, branch=target.branch)}" for template in config.tags
        )
    )
