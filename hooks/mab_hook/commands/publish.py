"""`mab-hook publish`: the last job of a CI fan-out. What `mab-hook build --push-by-digest`
uploaded for each platform is merged by digest into each image's index, under its input-digest
tag and its public tags, only when every platform of every image is there: nothing public moves
before. `--pending`: instead, the publishes a push left waiting run now.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple, TextIO

from mab_hook import gitobjects, input_digest, publisher
from mab_hook.commands.arguments import add_range
from mab_hook.errors import FatalError
from mab_hook.merging import merged
from mab_hook.output import Printer
from mab_hook.plan import Plan, PlannedImage
from mab_hook.registry import Manifest, Registry
from mab_hook.repository import open_repo
from mab_hook.selection import Range, can_ask, plans_of, pushed_only


class Options(NamedTuple):
    selected: Range
    pending: str | None = None  # "": every waiting publish; an id: that one; None: a fan-out's
    after: int | None = None  # the push's process, which a background publisher waits for


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    found = argparse.ArgumentParser(
        prog="mab-hook publish",
        description="Merge what `mab-hook build --push-by-digest` uploaded for each platform into each "
        "image's manifest list, under its input-digest tag and its public tags: only when every platform "
        "of every image is there.",
    )
    found.add_argument(
        "--pending",
        nargs="?",
        const="",
        default=None,
        metavar="ID",
        help="instead: tag what the remote accepted of the pushes whose publish is "
        "waiting (or failed), or of the one named (see `mab-hook status`)",
    )
    found.add_argument("--after", type=int, default=None, help=argparse.SUPPRESS)  # the push's process
    found.add_argument(
        "--ref",
        metavar="REF",
        help="the ref that was pushed (refs/heads/main, "
        "refs/tags/v1.2.0; default: the branch checked out): what it publishes is the "
        'publishing policy\'s call, e.g. --ref "$GITHUB_REF"',
    )
    add_range(found)
    return found.parse_args(argv)


def options(args: argparse.Namespace) -> Options:
    selected = Range(args.all, args.from_ref, args.to_ref, args.repo, args.budget, args.ref)
    return Options(selected, args.pending, args.after)


def run(options: Options, env: Mapping[str, str], stdin: TextIO, printer: Printer) -> int:
    if options.pending is not None:
        repo = open_repo(options.selected.repo or Path.cwd())
        return publisher.run_pending(repo, env, printer, chosen=options.pending, after=options.after)
    repo, plans = plans_of(options.selected, "publish", env)
    pushed_only(plans, "publish")
    registry = Registry(env)
    can_ask(registry, plans, "publish")
    known = gitobjects.known_commits(repo)
    try:
        merges = [_merge_of(registry, plan, planned, known) for plan in plans for planned in plan.affected]
        missing = [f"{m.planned.image.name} {p}" for m in merges for p in m.missing]
        if missing:
            jobs = "their `mab-hook build --push-by-digest` jobs failed or did not run"
            raise FatalError(
                f"not every platform was built, so nothing was published: missing "
                f"{', '.join(missing)} ({jobs})"
            )
        for merge in merges:
            _publish_one(registry, merge, printer)
    except OSError as e:  # RegistryError included: the registry failed us half way
        raise FatalError(
            f"the registry failed while publishing: {e}; run `mab-hook publish` again "
            "(what is already tagged is tagged again, nothing is built)"
        ) from e
    return 0


class Merge(NamedTuple):
    planned: PlannedImage
    whole: str  # the image's input-digest reference: the merged index goes there
    manifests: tuple[tuple[str, Manifest], ...]  # per platform; empty when `whole` is there already
    missing: tuple[str, ...]  # platforms without an upload


def _merge_of(registry: Registry, plan: Plan, planned: PlannedImage, known: Callable[[str], bool]) -> Merge:
    """What publishing an image takes. One the gate (or an earlier publish) put under its
    input-digest tag already is only tagged: merging again would make a second index of the
    same images, and the public tags would move to it. Only uploads labelled as built from
    these inputs at a commit of the repository count (`Registry.proof`)."""
    config, image, value = plan.config, planned.image, planned.input_digest
    whole = input_digest.staged(config, image, value)
    if registry.proof(whole, planned.input_digest, known).trusted:
        return Merge(planned, whole, (), ())
    found: dict[str, Manifest | None] = {}
    for platform in planned.image.platforms:
        staged = input_digest.staged(config, image, value, platform)
        trusted = registry.proof(staged, planned.input_digest, known).trusted
        found[platform] = registry.manifest(staged) if trusted else None
    manifests = tuple((p, m) for p, m in found.items() if m is not None)
    return Merge(planned, whole, manifests, tuple(p for p, m in found.items() if m is None))


def _publish_one(registry: Registry, merge: Merge, printer: Printer) -> None:
    name = merge.planned.image.name
    if merge.manifests:
        registry.put_manifest(merge.whole, merged(merge.manifests))
    tagged = registry.tag(merge.whole, merge.planned.tags)
    if not tagged.ok:
        so_far = ", ".join(tagged.published) or "nothing"
        raise FatalError(
            f"{name}: tagging failed ({tagged.detail}); published so far: {so_far}; "
            "run `mab-hook publish` again"
        )
    how = f"merged {len(merge.manifests)} platforms" if merge.manifests else "built from these inputs before"
    printer.outcome(f"{name}: published {', '.join(merge.planned.tags) or 'no tag'} ({how})")
