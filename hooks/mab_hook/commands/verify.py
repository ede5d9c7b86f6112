"""`mab-hook verify`: was this commit gated? Every image it affects must be in its staging
repository under its input digest (`<registry>/mab-staging/<name>:mab-<digest>`), the tag the
gate puts there only once the image built from exactly these inputs is wholly uploaded.

It reads nothing but git and the registry (its HTTP API, with docker's credentials and
credential helpers): no Docker engine is needed, so it runs on any CI runner. With
`--build-missing`, what is missing is built and published the way the hook does (that needs
the engine), then verified again.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, TextIO

from mab_hook import __version__, building, gitobjects, input_digest, output
from mab_hook.commands.arguments import add_range
from mab_hook.errors import FatalError
from mab_hook.output import Printer
from mab_hook.plan import Plan
from mab_hook.registry import Proof, Registry
from mab_hook.selection import Range, can_ask, plans_of, pushed_only

CONCURRENCY = 16  # registry round trips at once


class Found(NamedTuple):
    name: str
    commit: str
    input_digest: str
    reference: str  # its staging upload: the input-digest tag
    present: bool  # there, and labelled as built from these inputs at a commit of the repository
    checked: str = ""  # what was checked, or why what is there is not trusted


class Options(NamedTuple):
    selected: Range
    build_missing: bool = False
    json: bool = False


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    found = argparse.ArgumentParser(
        prog="mab-hook verify",
        description="Check that every image a commit affects was built and pushed from exactly its inputs "
        "(its mab-<input digest> tag is in its staging repository). Needs git and the registry only.",
    )
    found.add_argument(
        "--build-missing", action="store_true", help="build and push what is missing, then check"
    )
    add_range(found)
    return found.parse_args(argv)


def options(args: argparse.Namespace) -> Options:
    return Options(
        Range(args.all, args.from_ref, args.to_ref, args.repo, args.budget, None),
        args.build_missing,
        args.json,
    )


def run(options: Options, env: Mapping[str, str], stdin: TextIO, printer: Printer) -> int:
    repo, plans = plans_of(options.selected, "verify", env)
    pushed_only(plans, "verify")
    registry = Registry(env)
    can_ask(registry, plans, "verify")
    known = gitobjects.known_commits(repo)
    found = ask(registry, plans, known)
    if options.build_missing and any(not f.present for f in found):
        missing = {f.name for f in found if not f.present}
        printer.info(f"building what is missing: {', '.join(sorted(missing))}")
        built = [
            plan._replace(affected=tuple(p for p in plan.affected if p.image.name in missing))
            for plan in plans
        ]
        if (
            building.build(repo, built, env, printer, json=False, timeout=None) != 0
        ):  # its report as text: verify's JSON follows
            return 1
        found = ask(registry, plans, known)
    return report(options.json, found, printer)


def ask(registry: Registry, plans: Sequence[Plan], known: Callable[[str], bool]) -> list[Found]:
    """Each image's input-digest reference, and whether what it holds is labelled as built from
    these inputs at a commit of this repository (`Registry.proof`)."""
    wanted = []
    for plan in plans:
        for planned in plan.affected:
            reference = input_digest.staged(plan.config, planned.image, planned.input_digest)
            wanted.append((planned.image.name, plan.commit.sha, planned.input_digest, reference))
    with concurrent.futures.ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
        proofs = list(pool.map(lambda item: _proof(registry, item[3], item[2], known), wanted))
    return [Found(*item, proof.trusted, proof.detail) for item, proof in zip(wanted, proofs, strict=True)]


def _proof(registry: Registry, reference: str, digest: str, known: Callable[[str], bool]) -> Proof:
    try:
        return registry.proof(reference, digest, known)
    except (OSError, ValueError) as e:
        raise FatalError(
            f"the registry would not say what {reference} holds ({e}); check `docker login` "
            "for it on this runner"
        ) from None


def report(json: bool, found: Sequence[Found], printer: Printer) -> int:
    missing = [f for f in found if not f.present]
    if json:
        data: dict[str, Any] = {
            "version": __version__,
            "ok": not missing,
            "present": [f._asdict() for f in found if f.present],
            "missing": [f._asdict() for f in missing],
        }
        output.dump_json(data, sys.stdout)
    width = max((len(f.name) for f in found), default=0)  # the names in one column
    for f in found:
        state = "ok" if f.present else "missing"
        checked = f"; {f.checked}" if f.checked else ""
        printer.line(
            f"  {state:<8} {f.name:<{width}}  (commit {f.commit[:12]}, inputs {f.input_digest[:12]}{checked})"
        )
    if missing:
        names = ", ".join(f.name for f in missing)
        printer.error(
            f"not built by the gate from these inputs: {names} (pushed with --no-verify, or from a "
            "machine without the hook?): run `mab-hook verify --build-missing` with the same range "
            "to build and push them"
        )
        return 1
    printer.outcome(
        f"every affected image ({len(found)}) is in the registry, built from exactly these inputs"
    )
    return 0
