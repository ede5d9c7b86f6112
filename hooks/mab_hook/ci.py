"""CI fan-out: a job per image and platform, on native runners, merged by digest.

`mab-hook --dry-run --json` gives the matrix (and appends it to `$GITHUB_OUTPUT`); each job runs
`mab-hook build --image NAME --platform P --push-by-digest`, which uploads that platform's build
under a staging tag of its own (`mab-<input digest>-linux-arm64`); `mab-hook publish` then puts
the platforms of each image together, under its input-digest tag and its public tags, only
when every platform of every image is there. Nothing public moves before.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform as os_platform
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TextIO

from mab_hook import budget, changes, gitobjects, input_digest, planning, platforms, references
from mab_hook.errors import FatalError
from mab_hook.output import Printer
from mab_hook.plan import Plan, PlannedImage
from mab_hook.registry import INDEXES, Manifest, Registry

INDEX = INDEXES[0]


def add_range(parser: argparse.ArgumentParser) -> None:
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("--all", action="store_true", help="every image of the commit (--to, default HEAD)")
    scope.add_argument("--from", dest="from_ref", metavar="REF", help="the images that changed since REF")
    parser.add_argument("--to", dest="to_ref", metavar="REF", help="the commit (default HEAD)")
    parser.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    parser.add_argument("-C", "--repo", type=Path, default=None, metavar="DIR")
    parser.add_argument("-v", "--verbose", action="store_true", help="show buildx's output as it comes")
    budget.add_argument(parser)


def plans_of(args: argparse.Namespace, what: str, env: Mapping[str, str]) -> tuple[Any, list[Plan]]:
    """The repository and the plans (with input digests) of `--all`/`--from`; one of them is needed."""
    from mab_hook import hook  # noqa: PLC0415 - hook imports this module for the matrix

    if not args.all and not args.from_ref:
        raise FatalError(f"say what to {what}: --all (every image of --to, default HEAD) or --from REF")
    repo = hook.open_repo(args.repo or Path.cwd())
    commit = changes.by_hand_range(repo, None if args.all else args.from_ref, args.to_ref)
    if getattr(args, "ref", None):  # CI checks out a commit, often detached: the ref says what was pushed
        commit = commit._replace(refs=(changes.pushed_ref(args.ref, changes.default_branch(repo, None)),))
    build_platform = platforms.native(os_platform.machine())
    deadline = budget.start(args.budget, env, f"planning ({what})")
    return repo, [planning.plan_at(repo, commit, env=env, build_platform=build_platform, digests=True,
                                   deadline=deadline)]  # fmt: skip


def pushed_only(plans: Sequence[Plan], what: str) -> None:
    for plan in plans:
        if not plan.config.push:
            raise FatalError(
                f"{plan.config.source}: push = false, so no image is in a registry to {what}: "
                "only pushed images can be checked or merged (set push = true in [tool.multiarch])"
            )


def can_ask(registry: Registry, plans: Sequence[Plan], what: str) -> None:
    """One request per registry first: a registry that wants credentials the runner lacks is
    said once, clearly, not as one failure per image."""
    asked = set()
    for plan in plans:
        for planned in plan.affected:
            reference = plan.config.reference(planned.image)
            domain = references.parse(reference).domain
            if domain in asked:
                continue
            asked.add(domain)
            access = registry.access(reference, push=what == "publish")
            if not access.ok:
                fix = f"run `docker login {domain}` (or set up its credential helper) on this runner first"
                if access.code == "unreachable":
                    fix = f"check that {domain} is reachable from this runner"
                raise FatalError(f"cannot {what}: {access.detail}; {fix}")


# --- mab-hook build --------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mab-hook build",
        description="Build one platform of one image, for a CI job of a fan-out; with --push-by-digest, "
        "upload it under that platform's staging tag (`mab-hook publish` merges the platforms).",
    )
    parser.add_argument("--image", required=True, metavar="NAME")
    parser.add_argument("--platform", required=True, metavar="OS/ARCH")
    parser.add_argument(
        "--push-by-digest", action="store_true", help="upload under the platform's staging tag"
    )
    add_range(parser)
    return parser


def one_platform(plan: Plan, name: str, platform: str) -> PlannedImage:
    found = next((p for p in plan.affected if p.image.name == name), None)
    if found is None:
        known = ", ".join(p.image.name for p in plan.affected) or "none"
        every = ", ".join(image.name for image in plan.config.images)
        raise FatalError(f"no affected image named {name!r} at {plan.commit.sha[:12]} (affected: {known}; "
                         f"images: {every})")  # fmt: skip
    if platform not in found.image.platforms:
        raise FatalError(
            f"image {name} is not built for {platform}; its platforms: {', '.join(found.image.platforms)}"
        )
    image = dataclasses.replace(found.image, platforms=(platform,))
    return found._replace(image=image, one_platform=platform)


def build(args: argparse.Namespace, env: Mapping[str, str], stdin: TextIO, printer: Printer) -> int:
    from mab_hook import hook  # noqa: PLC0415

    repo, plans = plans_of(args, "build", env)
    (plan,) = plans
    if args.push_by_digest:
        pushed_only(plans, "upload to")
    one = one_platform(plan, args.image, args.platform)
    others = tuple(p for p in (*plan.context_only, *plan.affected) if p.image.name != args.image)
    config = plan.config if args.push_by_digest else dataclasses.replace(plan.config, push=False)
    single = plan._replace(config=config, affected=(one,), context_only=others)
    printer.line(f"{args.image} [{args.platform}] at {plan.commit.sha[:12]} (inputs {one.input_digest[:12]})")
    if args.push_by_digest:
        whole = input_digest.staged(plan.config, one.image, one.input_digest)
        proof = Registry(env).proof(whole, one.input_digest, gitobjects.known_commits(repo))
        if proof.trusted:
            said = f"already published from these inputs ({whole}; {proof.detail}): nothing to build"
            printer.outcome(f"{args.image}: {said}")
            return 0
    return hook.build(args, repo, [single], env, printer, publishing=False)


# --- mab-hook publish ------------------------------------------------------------------------


def publish_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mab-hook publish",
        description="Merge what `mab-hook build --push-by-digest` uploaded for each platform into each "
        "image's manifest list, under its input-digest tag and its public tags: only when every platform "
        "of every image is there.",
    )
    parser.add_argument("--pending", nargs="?", const="", default=None, metavar="ID",
                        help="instead: tag what the remote accepted of the pushes whose publish is "
                        "waiting (or failed), or of the one named (see `mab-hook status`)")  # fmt: skip
    parser.add_argument("--after", type=int, default=None, help=argparse.SUPPRESS)  # the push's process
    parser.add_argument("--ref", metavar="REF", help="the ref that was pushed (refs/heads/main, "
                        "refs/tags/v1.2.0; default: the branch checked out): what it publishes is the "
                        "publishing policy's call, e.g. --ref \"$GITHUB_REF\"")  # fmt: skip
    add_range(parser)
    return parser


def publish(args: argparse.Namespace, env: Mapping[str, str], stdin: TextIO, printer: Printer) -> int:
    if args.pending is not None:
        from mab_hook import hook, publisher, state  # noqa: PLC0415

        return publisher.run_pending(args, env, printer, state.root(hook.open_repo(args.repo or Path.cwd())))
    repo, plans = plans_of(args, "publish", env)
    pushed_only(plans, "publish")
    registry = Registry(env)
    can_ask(registry, plans, "publish")
    known = gitobjects.known_commits(repo)
    try:
        merges = [_merge_of(registry, plan, planned, known) for plan in plans for planned in plan.affected]
        missing = [f"{m.planned.image.name} {p}" for m in merges for p in m.missing]
        if missing:
            jobs = "their `mab-hook build --push-by-digest` jobs failed or did not run"
            raise FatalError(f"not every platform was built, so nothing was published: missing "
                             f"{', '.join(missing)} ({jobs})")  # fmt: skip
        for merge in merges:
            _publish_one(registry, merge, printer)
    except OSError as e:  # RegistryError included: the registry failed us half way
        raise FatalError(f"the registry failed while publishing: {e}; run `mab-hook publish` again "
                         "(what is already tagged is tagged again, nothing is built)") from e  # fmt: skip
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
        raise FatalError(f"{name}: tagging failed ({tagged.detail}); published so far: {so_far}; "
                         "run `mab-hook publish` again")  # fmt: skip
    how = f"merged {len(merge.manifests)} platforms" if merge.manifests else "built from these inputs before"
    printer.outcome(f"{name}: published {', '.join(merge.planned.tags) or 'no tag'} ({how})")


def merged(manifests: Sequence[tuple[str, Manifest]]) -> Manifest:
    """One index of every platform's image (and its attestations), as one multi-platform build
    would have pushed it: the very manifests, by digest, so no layer is uploaded again."""
    entries: list[dict[str, Any]] = []
    for platform, manifest in manifests:
        if manifest.media_type in INDEXES:
            entries += json.loads(manifest.body).get("manifests", [])
            continue
        found = platforms.parse(platform)
        described = {
            "os": found.os,
            "architecture": found.arch,
            **({"variant": found.variant} if found.variant else {}),
        }
        entries.append({"mediaType": manifest.media_type, "digest": manifest.digest,
                        "size": len(manifest.body), "platform": described})  # fmt: skip
    body = json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": entries}, separators=(",", ":"))
    return Manifest(body.encode(), INDEX, "")
