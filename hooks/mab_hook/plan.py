"""From changed paths to the images to build, why, and in which order."""

from __future__ import annotations

import graphlib
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from e2b_dockerfile_utils import PatternMatcher

from mab_hook import dockerfile, inputs
from mab_hook.changes import Target
from mab_hook.config import Config, Image, render_tag
from mab_hook.errors import FatalError
from mab_hook.inputs import Files, Inputs


class Base(NamedTuple):
    """An in-repo image another image is built on."""

    name: str  # the base image's name in the config
    key: str  # the reference as written, as buildx's named-context key


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
    warnings: tuple[str, ...] = ()
    inputs: Mapping[str, Inputs] = {}  # by image name, for --explain


def make_plan(target: Target, config: Config, files: Files, *, build_platform: str) -> Plan:
    found = {
        image.name: inputs.compute(image, files, build_platform=build_platform) for image in config.images
    }
    bases = {name: find_bases(config, name, found[name].bases) for name in found}
    order = build_order(config, bases)
    by_name = {image.name: image for image in config.images}
    changed = tuple(sorted(target.changed)) if target.changed is not None else None
    reasons: dict[str, tuple[str, ...]] = {}
    for name in order:
        own = direct_reasons(found[name], changed, target.why)
        via = tuple(
            f"base image {base.name} is rebuilt"
            for base in bases[name]
            if base.name in reasons and changed is not None
        )
        if own or via:
            reasons[name] = own + via
    affected = tuple(
        PlannedImage(by_name[name], reasons[name], image_tags(config, by_name[name], target), bases[name])
        for name in order
        if name in reasons
    )
    needed = _bases_needed(affected, bases)
    context_only = tuple(
        PlannedImage(by_name[name], (), (), bases[name])
        for name in order
        if name in needed and name not in reasons
    )
    warnings = tuple(w for p in affected for w in inputs.unmatched(found[p.image.name], files))
    unaffected = tuple(image.name for image in config.images if image.name not in reasons)
    return Plan(target, config, affected, unaffected, context_only, warnings, found)


def direct_reasons(found: Inputs, changed: Sequence[str] | None, why: str) -> tuple[str, ...]:
    """Every changed path the image's build reads (or watches), each with the rule that reads it."""
    if changed is None:
        return (f"every image is built ({why})",)
    image = found.image
    candidates = {image.dockerfile, *([found.ignore_file] if found.ignore_file else [])}
    for context in found.contexts():
        candidates.update(inputs.in_directory(changed, context))
    reasons = []
    for path in sorted(candidates & set(changed)):
        reason = found.reason(path)
        if reason is not None:
            reasons.append(reason)
    if image.watch:
        matchers = [(glob, PatternMatcher([glob])) for glob in image.watch]
        for path in changed:
            glob = next((g for g, matcher in matchers if matcher.matches(path)), None)
            if glob is not None and path not in candidates:
                reasons.append(f"watch {glob!r} matched: {path}")
    return tuple(reasons)


def find_bases(config: Config, name: str, refs: Sequence[str]) -> tuple[Base, ...]:
    """The in-repo images among the references an image's build reads (FROM, --from)."""
    names = _names_by_reference(config)
    found = []
    for ref in refs:
        repo, _tag = dockerfile.split_reference(ref)
        base_name = names.get(repo) or names.get(dockerfile.context_key(repo))
        if base_name is not None and base_name != name:
            found.append(Base(base_name, dockerfile.context_key(ref)))
    return tuple(found)


def _names_by_reference(config: Config) -> Mapping[str, str]:
    """Every way a FROM line can name an image of this repository."""
    names = {}
    for image in config.images:
        names[image.name] = image.name
        names[config.reference(image)] = image.name
    return names


def _bases_needed(affected: tuple[PlannedImage, ...], bases: Mapping[str, tuple[Base, ...]]) -> set[str]:
    needed: set[str] = set()
    todo = [base.name for planned in affected for base in planned.bases]
    while todo:
        name = todo.pop()
        if name not in needed:
            needed.add(name)
            todo.extend(base.name for base in bases[name])
    return needed


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


class Explanation(NamedTuple):
    """Why one image is or is not affected by one commit's changes."""

    name: str
    commit: str
    affected: bool
    reasons: tuple[str, ...]
    paths: tuple[tuple[str, str], ...]  # changed paths near the image, and why each counts or not
    inputs: tuple[str, ...]  # what the built stages read
    bases: tuple[str, ...]  # in-repo images it is built on


def explain(plan: Plan, name: str) -> Explanation:
    found = plan.inputs.get(name)
    if found is None:
        known = ", ".join(plan.inputs) or "none"
        raise FatalError(f"{plan.config.source}: no image named {name!r} (images: {known})")
    planned = next((p for p in plan.affected if p.image.name == name), None)
    changed = sorted(plan.target.changed or ())
    near = {found.image.dockerfile, *([found.ignore_file] if found.ignore_file else [])}
    for directory in {found.image.context, *(rule.context for rule in found.rules)}:
        near.update(inputs.in_directory(changed, directory))
    paths = tuple((path, found.explain(path)) for path in changed if path in near)
    described = tuple(dict.fromkeys(rule.describe() for rule in found.rules if rule.reachable))
    bases = find_bases(plan.config, name, found.bases)
    return Explanation(
        name=name,
        commit=plan.target.sha,
        affected=planned is not None,
        reasons=planned.reasons if planned else (),
        paths=paths,
        inputs=described,
        bases=tuple(base.name for base in bases),
    )
