"""The CI fan-out as data: one matrix entry per affected image and platform (bases first, by
level), and what a GitHub Actions job hands the jobs after it (`$GITHUB_OUTPUT`)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from mab_hook.errors import FatalError
from mab_hook.plan import Plan


def levels(plan: Plan) -> dict[str, int]:
    """Each planned image's depth: 0 for one built on no in-repo image, bases first."""
    by_name = {p.image.name: p for p in (*plan.context_only, *plan.affected)}
    found: dict[str, int] = {}

    def level(name: str) -> int:
        if name not in found:
            found[name] = 1 + max(
                (level(b.name) for b in by_name[name].bases if b.name in by_name), default=-1
            )
        return found[name]

    return {name: level(name) for name in by_name}


def matrix(plans: Sequence[Plan]) -> dict[str, list[dict[str, Any]]]:
    """A GitHub Actions matrix: one entry per affected image and platform."""
    include = []
    for plan in plans:
        depth = levels(plan)
        for planned in plan.affected:
            name = planned.image.name
            include += [
                {"image": name, "platform": platform, "level": depth[name], "commit": plan.commit.sha}
                for platform in planned.image.platforms
            ]
    return {"include": include}


GITHUB_JOBS = 256  # what one GitHub Actions matrix may start


def too_big(plans: Sequence[Plan]) -> str | None:
    """Why the matrix cannot run as one GitHub Actions matrix, or None."""
    jobs = len(matrix(plans)["include"])
    if jobs <= GITHUB_JOBS:
        return None
    return (
        f"the CI matrix has {jobs} jobs, more than the {GITHUB_JOBS} GitHub Actions runs from one matrix: "
        "split it (by `level`, or by image) or build with `mab-hook --all` on one runner"
    )


def write_github_output(plans: Sequence[Plan], env: Mapping[str, str]) -> None:
    """`affected=` and `matrix=` appended to $GITHUB_OUTPUT, for the jobs that follow."""
    path = env.get("GITHUB_OUTPUT")
    if not path:
        return
    names = list(dict.fromkeys(p.image.name for plan in plans for p in plan.affected))
    try:
        with open(path, "a", encoding="utf-8") as out:
            out.write(f"affected={json.dumps(names)}\n")
            out.write(f"matrix={json.dumps(matrix(plans), separators=(',', ':'))}\n")
    except OSError as e:
        raise FatalError(
            f"cannot write the outputs to $GITHUB_OUTPUT ({path}): {e.strerror or e}; "
            "what was built or published stays so"
        ) from None
