"""`mab-hook build`: one platform of one image, for a CI job of a fan-out.

`mab-hook --dry-run --json` gives the matrix (and appends it to `$GITHUB_OUTPUT`); each job runs
`mab-hook build --image NAME --platform P --push-by-digest`, which uploads that platform's build
under a staging tag of its own (`mab-<input digest>-linux-arm64`); `mab-hook publish` then puts
the platforms of each image together, only when every platform of every image is there.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping, Sequence
from typing import NamedTuple, TextIO

from mab_hook import building, gitobjects, input_digest
from mab_hook.commands.arguments import add_range
from mab_hook.errors import FatalError
from mab_hook.output import Printer
from mab_hook.plan import Plan, PlannedImage
from mab_hook.registry import Registry
from mab_hook.selection import Range, plans_of, pushed_only


class Options(NamedTuple):
    image: str
    platform: str
    push_by_digest: bool
    selected: Range
    json: bool = False


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    found = argparse.ArgumentParser(
        prog="mab-hook build",
        description="Build one platform of one image, for a CI job of a fan-out; with --push-by-digest, "
        "upload it under that platform's staging tag (`mab-hook publish` merges the platforms).",
    )
    found.add_argument("--image", required=True, metavar="NAME")
    found.add_argument("--platform", required=True, metavar="OS/ARCH")
    found.add_argument(
        "--push-by-digest", action="store_true", help="upload under the platform's staging tag"
    )
    add_range(found)
    return found.parse_args(argv)


def options(args: argparse.Namespace) -> Options:
    selected = Range(args.all, args.from_ref, args.to_ref, args.repo, args.budget, None)
    return Options(args.image, args.platform, args.push_by_digest, selected, args.json)


def run(options: Options, env: Mapping[str, str], stdin: TextIO, printer: Printer) -> int:
    repo, plans = plans_of(options.selected, "build", env)
    (plan,) = plans
    if options.push_by_digest:
        pushed_only(plans, "upload to")
    one = one_platform(plan, options.image, options.platform)
    others = tuple(p for p in (*plan.context_only, *plan.affected) if p.image.name != options.image)
    config = plan.config if options.push_by_digest else dataclasses.replace(plan.config, push=False)
    single = plan._replace(config=config, affected=(one,), context_only=others)
    at = f"at {plan.commit.sha[:12]} (inputs {one.input_digest[:12]})"
    printer.line(f"{options.image} [{options.platform}] {at}")
    if options.push_by_digest:
        whole = input_digest.staged(plan.config, one.image, one.input_digest)
        proof = Registry(env).proof(whole, one.input_digest, gitobjects.known_commits(repo))
        if proof.trusted:
            said = f"already published from these inputs ({whole}; {proof.detail}): nothing to build"
            printer.outcome(f"{options.image}: {said}")
            return 0
    return building.build(repo, [single], env, printer, json=options.json, timeout=None, publishing=False)


def one_platform(plan: Plan, name: str, platform: str) -> PlannedImage:
    found = next((p for p in plan.affected if p.image.name == name), None)
    if found is None:
        known = ", ".join(p.image.name for p in plan.affected) or "none"
        every = ", ".join(image.name for image in plan.config.images)
        raise FatalError(
            f"no affected image named {name!r} at {plan.commit.sha[:12]} (affected: {known}; images: {every})"
        )
    if platform not in found.image.platforms:
        raise FatalError(
            f"image {name} is not built for {platform}; its platforms: {', '.join(found.image.platforms)}"
        )
    image = dataclasses.replace(found.image, platforms=(platform,))
    return found._replace(image=image, one_platform=platform)
