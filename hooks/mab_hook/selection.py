"""What a by-hand command works on (`--all` or `--from REF`, `--to REF`): the commit, planned
with input digests; and the questions asked before a command reads a registry."""

from __future__ import annotations

import platform as os_platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import git

from mab_hook import budget, changes, planning, platforms, references
from mab_hook.errors import FatalError
from mab_hook.plan import Plan
from mab_hook.registry import Registry
from mab_hook.repository import open_repo


class Range(NamedTuple):
    """`--all`, `--from`, `--to`, `-C`, `--budget`; `ref`: the ref CI says was pushed."""

    every: bool
    from_ref: str | None
    to_ref: str | None
    repo: Path | None
    budget: float | None
    ref: str | None


def plans_of(selected: Range, what: str, env: Mapping[str, str]) -> tuple[git.Repo, list[Plan]]:
    """The repository and the plan (with input digests) of the range; one of --all and --from
    is needed."""
    if not selected.every and not selected.from_ref:
        raise FatalError(f"say what to {what}: --all (every image of --to, default HEAD) or --from REF")
    repo = open_repo(selected.repo or Path.cwd())
    commit = changes.by_hand_range(repo, None if selected.every else selected.from_ref, selected.to_ref)
    if selected.ref:  # CI checks out a commit, often detached: the ref says what was pushed
        commit = commit._replace(refs=(changes.pushed_ref(selected.ref, changes.default_branch(repo, None)),))
    build_platform = platforms.native(os_platform.machine())
    deadline = budget.start(selected.budget, env, f"planning ({what})")
    return repo, [
        planning.plan_at(
            repo, commit, env=env, build_platform=build_platform, digests=True, deadline=deadline
        )
    ]


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
