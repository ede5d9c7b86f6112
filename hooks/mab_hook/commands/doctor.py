"""`mab-hook doctor`: the host readiness checks on their own, and the safe fixes."""

from __future__ import annotations

import argparse
import platform
import sys
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import NamedTuple, TextIO

from mab_hook import (
    __version__,
    changes,
    coverage,
    gitobjects,
    grants,
    listing,
    output,
    planning,
    platforms,
    readiness,
    routing,
    state,
)
from mab_hook.definitions import NewerBuildxNeeded
from mab_hook.errors import FatalError
from mab_hook.images import Config
from mab_hook.output import Printer
from mab_hook.readiness import FAIL, OK, WARN, Check
from mab_hook.repository import open_repo
from mab_hook.validation import PYPROJECT

COMMON_PLATFORMS = ("linux/amd64", "linux/arm64", "linux/arm/v7")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    found = argparse.ArgumentParser(
        prog="mab-hook doctor",
        description="Check that this host can build every configured platform, and say how to fix it if not.",
    )
    found.add_argument(
        "--fix",
        action="store_true",
        help="apply the safe fixes (mount binfmt_misc, create or start the builder), then check again",
    )
    found.add_argument(
        "--platform",
        action="append",
        metavar="OS/ARCH",
        help="check this platform (repeatable; default: those of [tool.multiarch] at HEAD)",
    )
    found.add_argument("--builder", help="check this buildx builder (default: the configured or current one)")
    found.add_argument(
        "--probe",
        action="store_true",
        help="also prove each platform with a tiny build that runs one of its programs (pulls nothing)",
    )
    found.add_argument(
        "--bases",
        action="store_true",
        help="also look up every base the images at HEAD pull, for every platform they are built for, as "
        "the gate does (Docker Hub through the builder's mirror)",
    )
    found.add_argument("--json", action="store_true", help="every check as JSON on stdout")
    found.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    found.add_argument("-C", "--repo", type=Path, default=None, metavar="DIR")
    found.add_argument("-v", "--verbose", action="store_true")
    return found.parse_args(argv)


class Options(NamedTuple):
    fix: bool = False
    platforms: tuple[str, ...] = ()  # none: those of [tool.multiarch] at HEAD
    builder: str | None = None
    probe: bool = False
    bases: bool = False
    json: bool = False
    repo: Path | None = None


def options(args: argparse.Namespace) -> Options:
    return Options(
        args.fix, tuple(args.platform or ()), args.builder, args.probe, args.bases, args.json, args.repo
    )


def run(options: Options, env: Mapping[str, str], stdin: TextIO, printer: Printer) -> int:
    every = wanted_from(options, env, printer)
    wanted, engines = every[0], every[1:]
    kept = _kept(options.repo or Path.cwd())
    host = readiness.local_host(env, platform.machine(), readiness.probes_file(kept[0]) if kept else None)
    report = readiness.check(host, wanted)
    if options.fix and any(check.status != readiness.OK for check in report.checks):
        for line in readiness.apply_fixes(host, report, wanted):
            printer.info(f"fix: {line}")
        report = readiness.check(host, wanted)
    if options.probe and report.builder is not None:
        report = report._replace(checks=report.checks + tuple(readiness.probe(host, report.builder, wanted)))
    if options.bases:
        report = report._replace(
            checks=(*report.checks, bases_check(options.repo or Path.cwd(), env, host, wanted))
        )
    report = report._replace(checks=(*report.checks, *_engine_checks(options, env, host, engines)))
    if options.json:
        found = {"version": __version__, **output.checks_json(report)}
        if kept is not None:
            found["kept"] = {"path": str(kept[0]), **kept[1]._asdict()}
        output.dump_json(found, sys.stdout)
    else:
        platforms_ = dict.fromkeys(p for w in every for p in w.platforms)
        printer.line(f"mab-hook {__version__}: host readiness for {', '.join(platforms_)}")
        printer.line(output.checks_text(report.checks, printer))
        if kept is not None:
            where, held = kept
            printer.line(
                f"kept in {where}: logs of {held.logs} push(es), {held.records} build record(s), "
                f"{held.size / 1e6:.1f} MB in all (deleting it is always safe)"
            )
    return 0 if report.ready else 1


def wanted_from(options: Options, env: Mapping[str, str], printer: Printer) -> list[readiness.Wanted]:
    """What to check: --platform/--builder, else what [tool.multiarch] at HEAD asks for; the
    default engine first, then each engine of `engines` with the platforms routed to it."""
    buildx = None
    try:
        cfg = _head_config(options.repo or Path.cwd(), env)
    except FatalError as e:  # the host can be checked all the same
        printer.warn(f"{e}\nchecking the host for {', '.join(options.platforms or COMMON_PLATFORMS)} instead")
        cfg, buildx = None, e.since if isinstance(e, NewerBuildxNeeded) else None
    if options.platforms:
        problems = [p for p in (platforms.problem(p) for p in options.platforms) if p]
        if problems:
            raise FatalError("; ".join(problems))
    if cfg is None:
        asked = tuple(options.platforms or COMMON_PLATFORMS)
        return [readiness.Wanted(asked, options.builder, buildx=buildx)]
    wanted = tuple(options.platforms or dict.fromkeys(p for image in cfg.images for p in image.platforms))
    repository = cfg.staging_repository(cfg.images[0]) if cfg.push and cfg.images else None
    spec = cfg.builder_spec if not options.builder or options.builder == cfg.builder else None
    by_engine = dict(routing.DIRECT.slices(cfg, wanted))  # the gate's grouping of platforms
    default = readiness.Wanted(
        by_engine.pop(routing.DEFAULT, ()),
        options.builder or cfg.builder,
        repository,
        cfg.binfmt_image,
        buildkit_image=cfg.buildkit_image,
        builder_spec=spec,
    )
    return [default, *(default._replace(platforms=ps, engine=e.name) for e, ps in by_engine.items())]


def bases_check(path: Path, env: Mapping[str, str], host: readiness.Host, wanted: readiness.Wanted) -> Check:
    """Whether every base the images at HEAD pull has each platform they are built for, looked
    up as the gate looks them up (the engine's store, else the registry; Docker Hub through the
    mirror of the builder that pulls)."""
    try:
        repo = open_repo(path)
        commit = changes.by_hand_range(repo, None, None)
        machine = platforms.native(platform.machine())
        planned = planning.plan_at(repo, commit, env=env, build_platform=machine, digests=True).affected
    except FatalError as e:
        return Check(
            "bases",
            FAIL,
            f"the images at HEAD cannot be planned: {e}",
            "`mab-hook --all --dry-run` says more",
            "bases-unplanned",
        )
    known = coverage.Known.of(state.root(repo))
    lookup = coverage.local_sources(
        env, known, partial(readiness.docker_hub_mirrors, host.run, wanted.builder)
    )
    found = coverage.check(planned, lookup)
    known.save()
    if found.gaps:
        lines = "\n".join(coverage.gap_lines(found.gaps))
        finding = f"a base lacks a platform an image is built for:\n{lines}"
        return Check("bases", FAIL, finding, coverage.GAP_FIX, "bases-platform-missing")
    if found.unchecked:
        finding = "; ".join(coverage.unchecked_text(ref, why) for ref, why in found.unchecked)
        fix = (
            "check the base's name, and that its registry (or Docker Hub's mirror) answers to docker's login"
        )
        return Check("bases", WARN, finding, fix, "bases-unchecked")
    said = f"{len(found.found)} base(s) of {len(planned)} image(s) have every platform they are built for"
    return Check("bases", OK, said)


def _engine_checks(
    options: Options, env: Mapping[str, str], host: readiness.Host, engines: Sequence[readiness.Wanted]
) -> tuple[Check, ...]:
    """Each engine of `engines`, checked where it runs, if the pusher lets builds run there."""
    granted = _granted(options.repo or Path.cwd(), env)
    found: list[Check] = []
    for routed in engines:
        mine = (
            readiness.check(host, routed) if routed.engine in granted else routing.not_granted(routed.engine)
        )
        found += mine.checks
    return tuple(found)


def _granted(path: Path, env: Mapping[str, str]) -> frozenset[str]:
    """The engines the pusher lets builds of the repository run on (none outside one)."""
    try:
        repo = open_repo(path)
    except FatalError:
        return frozenset()
    return grants.read(Path(repo.working_tree_dir or repo.git_dir), env).engines


def _kept(path: Path) -> tuple[Path, state.Held] | None:
    """What the repository's .git/mab-hook holds; None outside a repository."""
    try:
        repo = open_repo(path)
    except FatalError:
        return None
    root = state.root(repo)
    return root, state.held(root)


def _head_config(path: Path, env: Mapping[str, str]) -> Config | None:
    """The configuration at HEAD, read as the hook reads it; None outside a repository or
    without [tool.multiarch]."""
    try:
        repo = open_repo(path)
        sha = gitobjects.resolve(repo, "HEAD")
    except FatalError:
        return None
    data = gitobjects.read_file(repo, sha, PYPROJECT)
    if data is None or b"multiarch" not in data:
        return None
    tree = listing.of_commit(repo, sha, state.root(repo) / "cache").tree
    return planning.load_config(repo, sha, tree=tree, data=data, env=env)
