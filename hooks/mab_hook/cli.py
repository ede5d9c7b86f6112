"""The `mab-hook` command: wires config -> changes -> plan -> builds -> report."""

from __future__ import annotations

import argparse
import os
import platform
import signal
import sys
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, TextIO

import git

from mab_hook import cache, changes, config, fields, listing, output, plan, state
from mab_hook.buildx import PUSHED, BuildResult
from mab_hook.errors import FatalError
from mab_hook.inputs import Files
from mab_hook.output import Printer
from mab_hook.paths import Tree

if TYPE_CHECKING:
    from mab_hook import readiness

EXIT_OK, EXIT_FAIL, EXIT_BUG, EXIT_INTERRUPTED = 0, 1, 3, 130


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="mab-hook",
        description="Build the Docker images affected by the commits being pushed, for every "
        "platform in [tool.multiarch] of pyproject.toml; fail if any build fails.",
    )
    parser.add_argument(
        "remote",
        nargs="?",
        help="as a git pre-push hook: the remote's name (the refs being pushed are read from standard input)",
    )
    parser.add_argument("url", nargs="?", help="as a git pre-push hook: the remote's URL")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--all", action="store_true", help="build every image of the commit (--to, default HEAD)"
    )
    scope.add_argument("--from", dest="from_ref", metavar="REF", help="build what changed since REF")
    parser.add_argument("--to", dest="to_ref", metavar="REF", help="the commit to build (default HEAD)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan; build nothing")
    parser.add_argument(
        "--explain", metavar="NAME", help="say why image NAME is or is not affected; build nothing"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    parser.add_argument(
        "-C",
        "--repo",
        type=Path,
        default=None,
        metavar="DIR",
        help="the repository (default: the one around the current directory)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show buildx's output as it comes")
    parser.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="stop any image's build that takes longer (overrides the configured timeout)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # `doctor` is a command, not a remote: git passes a hook the remote's name *and* URL.
    if argv[:1] == ["doctor"] and (len(argv) == 1 or argv[1].startswith("-")):
        from mab_hook import doctor  # noqa: PLC0415 - what only some runs need loads when needed

        args, command = doctor.parse_args(argv[1:]), doctor.run
    else:
        args, command = parse_args(argv), run
    env = dict(os.environ)
    stream = sys.stderr if args.json else sys.stdout
    printer = Printer(stream, output.use_color(args.color, env, stream.isatty()), args.verbose)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return command(args, env, sys.stdin, printer)
    except FatalError as e:
        printer.error(str(e))
        return EXIT_FAIL
    except KeyboardInterrupt:
        printer.error("interrupted: builds stopped, nothing pushed")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`mab-hook --json | head`): not a bug, and nothing left to say.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAIL
    except Exception:
        traceback.print_exc()
        printer.error("this is a bug in mab-hook; please report it with the output above")
        return EXIT_BUG
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM stops builds the same way ^C does


def run(args: argparse.Namespace, env: Mapping[str, str], stdin: TextIO, printer: Printer) -> int:
    repo = open_repo(args.repo or Path.cwd())
    targets = select_targets(args, repo, env, stdin, printer)
    if not targets:
        printer.info("the push adds no commits: nothing to build")
        return _finish(args, [], [], printer)
    build_platform = fields.native_platform(platform.machine())
    plans = [plan_for(repo, target, build_platform) for target in targets]
    if args.explain:
        explanations = [plan.explain(p, args.explain) for p in plans]
        if args.json:
            output.dump_json(output.explain_json(explanations), sys.stdout)
        else:
            printer.line(output.explain_text(explanations, printer))
        return EXIT_OK
    if args.dry_run or not any(p.affected for p in plans):
        if not args.json:
            printer.line(output.plan_text(plans, printer))
        return _finish(args, plans, [], printer)
    printer.line(output.plan_text(plans, printer))
    from mab_hook import pipeline, readiness  # noqa: PLC0415 - only when something is to be built

    host = readiness.local_host(env, platform.machine())
    with output.progress_sink(printer, env) as progress:
        events = pipeline.Events(progress=progress, build_line=printer.build_line, notice=printer.info)
        results = pipeline.run(repo, plans, env, events, ready=lambda: ensure_ready(plans, host, printer),
                               timeout=args.timeout)  # fmt: skip
    return _finish(args, plans, results, printer)


def _finish(
    args: argparse.Namespace, plans: Sequence[plan.Plan], results: Sequence[BuildResult], printer: Printer
) -> int:
    ok = all(r.ok for r in results)
    if args.json:
        data = output.plan_json(plans)
        if not args.dry_run:
            data["results"] = output.results_json(results)
        output.dump_json(data, sys.stdout)
    if results:
        printer.line(output.summary(results, printer))
        if not ok:
            pushed = any(r.status == PUSHED for r in results)
            what = "some images reached the registry (see above)" if pushed else "nothing was pushed"
            printer.error(
                f"the push is blocked and {what}: fix the failed build(s) above, commit, and push again"
            )
    return EXIT_OK if ok else EXIT_FAIL


def ensure_ready(plans: Sequence[plan.Plan], host: readiness.Host, printer: Printer) -> None:
    """The readiness checks for what is about to be built; a failure costs no build time."""
    from mab_hook import readiness  # noqa: PLC0415

    for wanted in wanted_for(plans):
        report = readiness.check(host, wanted)
        for check in report.checks:
            if check.status == readiness.WARN:  # on every push: the gist; doctor has the rest
                gist = check.finding.rsplit("; ", 1)[-1]
                printer.warn(f"{check.name}: {gist} (`mab-hook doctor` says more)")
        if not report.ready:
            failed = [check for check in report.checks if check.status == readiness.FAIL]
            raise FatalError(
                "this host cannot build what the push needs; nothing was built:\n"
                + output.checks_text(failed, printer)
                + "\nFix the above (`mab-hook doctor` shows every check, `mab-hook doctor --fix` applies "
                "the safe fixes), then push again."
            )


def wanted_for(plans: Sequence[plan.Plan]) -> list[readiness.Wanted]:
    """One readiness question per builder: the platforms of its images, its registry if pushing."""
    from mab_hook import readiness  # noqa: PLC0415

    by_builder: dict[str | None, readiness.Wanted] = {}
    for p in plans:
        platforms = tuple(dict.fromkeys(pf for planned in p.affected for pf in planned.image.platforms))
        if not platforms:
            continue
        cfg = p.config
        seen = by_builder.get(cfg.builder)
        registry = cfg.registry if cfg.push else None
        if seen is not None:
            platforms = tuple(dict.fromkeys((*seen.platforms, *platforms)))
            registry = seen.registry or registry
        by_builder[cfg.builder] = readiness.Wanted(
            platforms, cfg.builder, registry, cfg.binfmt_image, cfg.builder_spec
        )
    return list(by_builder.values())


def open_repo(path: Path) -> git.Repo:
    try:
        return git.Repo(path, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise FatalError(f"{path} is not inside a git repository") from None


def select_targets(
    args: argparse.Namespace, repo: git.Repo, env: Mapping[str, str], stdin: TextIO, printer: Printer
) -> tuple[changes.Target, ...]:
    current = None if repo.head.is_detached else repo.active_branch.name
    if args.all:
        return (changes.target_for_all(repo, args.to_ref or "HEAD", current, "--all"),)
    if args.from_ref:
        return (changes.target_for_range(repo, args.from_ref, args.to_ref or "HEAD", current),)
    if args.remote:
        return changes.targets_from_push(repo, args.remote, changes.parse_push_lines(stdin.read()))
    if env.get("PRE_COMMIT") or env.get("PRE_COMMIT_TO_REF"):
        targets = changes.targets_from_pre_commit(repo, env)
        if targets is None:
            # pre-commit's "all files" push: new history down to a root commit.
            rev = env.get("PRE_COMMIT_LOCAL_BRANCH") or "HEAD"
            printer.warn(
                "pre-commit gave no push range (PRE_COMMIT_FROM_REF/PRE_COMMIT_TO_REF unset, "
                f"as for a push of new history): building EVERY image of {rev}"
            )
            branch = changes.branch_name(env.get("PRE_COMMIT_REMOTE_BRANCH")) or current
            return (changes.target_for_all(repo, rev, branch, "no push range from pre-commit"),)
        return targets
    if args.to_ref:
        raise FatalError("--to needs --from REF or --all")
    return (changes.upstream_target(repo),)


def plan_for(repo: git.Repo, target: changes.Target, build_platform: str) -> plan.Plan:
    cache_dir = state.root(repo) / "cache"
    commit = listing.of_commit(repo, target.sha, cache_dir)
    memory = cache.load(cache_dir / "planning.pickle")
    reader = changes.Reader(repo, commit.blob_id)
    cfg = config.load(
        reader.read(fields.PYPROJECT),
        source=f"{fields.PYPROJECT} at {target.sha[:12]}",
        tracked=commit.tree,
        root_name=Path(repo.working_tree_dir or repo.git_dir).name,
        cache=memory,
    )
    files = Files(commit.tree, reader.read, commit.entry, memory, reader.fetch)
    previous = None
    if fields.PYPROJECT in (target.changed or ()):
        previous = previous_configs(repo, target, commit.tree, memory)
    planned = plan.make_plan(target, cfg, files, build_platform=build_platform, previous=previous)
    if memory.changed:
        cache.save(cache_dir / "planning.pickle", memory)
    return planned


def previous_configs(
    repo: git.Repo, target: changes.Target, tree: Tree, memory: cache.Entries
) -> list[config.Config]:
    """The configuration at the commits the push is relative to; unreadable ones are left out
    (then every image counts as new). The new tree stands in for the old: only the images'
    settings are compared, not their paths."""
    found = []
    for base in target.bases:
        try:
            found.append(
                config.load(
                    changes.read_file(repo, base, fields.PYPROJECT), source=base, tracked=tree, cache=memory
                )
            )
        except FatalError:
            continue
    return found
