"""The gate: `mab-hook` as git's pre-push hook (under pre-commit or on its own), and by hand
(`--all`, `--from`, `--work-tree`): the pushed commits -> their plans -> the build step -> the
report; under a push, what publishes waits for the remote to accept it."""

from __future__ import annotations

import argparse
import platform
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple, TextIO

import git

from mab_hook import (
    __version__,
    budget,
    building,
    changes,
    gitobjects,
    handover,
    output,
    planning,
    platforms,
    process,
    progress,
    state,
)
from mab_hook.commands import COMMANDS
from mab_hook.commands.arguments import add_output
from mab_hook.errors import EXIT_OK, FatalError
from mab_hook.gitobjects import where
from mab_hook.output import Printer
from mab_hook.plan import Plan
from mab_hook.repository import open_repo
from mab_hook.validation import PYPROJECT


class Options(NamedTuple):
    """The gate's command line. `remote` and `url`: git's, as a pre-push hook."""

    remote: str | None
    url: str | None
    every: bool
    from_ref: str | None
    to_ref: str | None
    work_tree: bool
    dry_run: bool
    publish: bool
    bake: bool
    explain: str | None
    json: bool
    repo: Path | None
    timeout: float | None
    budget: float | None


EXAMPLES = """\
examples:
  git push                        the hook builds what the pushed commits affect
  mab-hook --all                  build every image of HEAD
  mab-hook --from origin/main     build what changed since a ref
  mab-hook --dry-run --json       the plan, machine-readable
  mab-hook --explain api          why image api is or is not affected
  mab-hook doctor                 can this host build every platform?
  mab-hook install                have every ref of a push checked under pre-commit
  mab-hook verify --from HEAD^     in CI: were the images of this commit built by the gate?
  mab-hook status                 what the last pushes published, or why not
  mab-hook gc --dry-run           staging uploads older than 14 days that nothing needs
  mab-hook report                 the slowest emulated build steps, with the fix
"""


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    found = argparse.ArgumentParser(
        prog="mab-hook",
        description="Build the Docker images affected by the commits being pushed, for every "
        "platform in [tool.multiarch] of pyproject.toml; fail if any build fails. "
        f"Commands: {', '.join(COMMANDS)} (mab-hook COMMAND --help).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    found.add_argument("--version", action="version", version=f"mab-hook {__version__}")
    found.add_argument(
        "remote",
        nargs="?",
        help="as a git pre-push hook: the remote's name (the refs being pushed are read from standard input)",
    )
    found.add_argument("url", nargs="?", help="as a git pre-push hook: the remote's URL")
    scope = found.add_mutually_exclusive_group()
    scope.add_argument(
        "--all", action="store_true", help="build every image of the commit (--to, default HEAD)"
    )
    scope.add_argument("--from", dest="from_ref", metavar="REF", help="build what changed since REF")
    found.add_argument("--to", dest="to_ref", metavar="REF", help="the commit to build (default HEAD)")
    found.add_argument(
        "--work-tree",
        action="store_true",
        help="by hand, while iterating: plan and build "
        "the work tree as it is (uncommitted changes and new files included) against HEAD, "
        "or every image with --all; never publishes",
    )
    found.add_argument("--dry-run", action="store_true", help="print the plan; build nothing")
    found.add_argument(
        "--publish",
        action="store_true",
        help="by hand: also move the public tags, as "
        "the publishing policy says for the branch (a push publishes once the remote "
        "accepts it; by hand, without this, images go to staging tags only)",
    )
    found.add_argument(
        "--bake",
        action="store_true",
        help="print the affected images as a bake definition (JSON) that `docker buildx bake -f -` "
        "builds at the repository's root; build nothing",
    )
    found.add_argument(
        "--explain", metavar="NAME", help="say why image NAME is or is not affected; build nothing"
    )
    add_output(found)
    found.add_argument(
        "--timeout",
        type=budget.seconds,
        metavar="SECONDS",
        help="stop any image's build that takes longer (overrides the configured timeout)",
    )
    budget.add_argument(found)
    return found.parse_args(argv)


def options(args: argparse.Namespace) -> Options:
    return Options(
        args.remote,
        args.url,
        args.all,
        args.from_ref,
        args.to_ref,
        args.work_tree,
        args.dry_run,
        args.publish,
        args.bake,
        args.explain,
        args.json,
        args.repo,
        args.timeout,
        args.budget,
    )


def run(options: Options, env: Mapping[str, str], stdin: TextIO, printer: Printer) -> int:
    repo = open_repo(options.repo or Path.cwd())
    commits = select_commits(options, repo, env, stdin, printer)
    return plan_and_build(options, repo, commits, env, printer, remote=pushed_to(options, env))


def pushed_to(options: Options, env: Mapping[str, str]) -> str | None:
    """The remote (a name or a URL) of the push that runs this pre-push hook; None by hand."""
    if options.remote is not None and options.url is not None:
        return str(options.remote)
    if env.get("PRE_COMMIT_TO_REF") or env.get("PRE_COMMIT_REMOTE_NAME"):
        return env.get("PRE_COMMIT_REMOTE_NAME") or env.get("PRE_COMMIT_REMOTE_URL") or None
    return None


def plan_and_build(
    options: Options,
    repo: git.Repo,
    commits: Sequence[changes.Commit],
    env: Mapping[str, str],
    printer: Printer,
    *,
    remote: str | None = None,
) -> int:
    """`remote`: the push runs this pre-push hook; public tags wait for the remote to accept it."""
    if not commits:
        printer.info("the push adds no commits: nothing to build")
        return building.finish([], [], printer, json=options.json, dry_run=options.dry_run)
    plans = plan_commits(options, repo, commits, env, printer, by_hand=remote is None)
    if options.explain:
        explanations = [item for p in plans for item in p.explanations]
        if options.json:
            output.dump_json(output.explain_json(explanations), sys.stdout)
        else:
            printer.line(output.explain_text(explanations, printer))
        return EXIT_OK
    if options.bake:
        from mab_hook import bakefile, grants  # noqa: PLC0415 - the build code loads only when needed

        granted = grants.read(Path(repo.working_tree_dir or repo.git_dir), env)
        output.dump_json(bakefile.export(plans, granted), sys.stdout)
        return EXIT_OK
    if options.dry_run or not any(p.affected for p in plans):
        if not options.json:
            printer.line(output.plan_text(plans, printer))
        code = building.finish(plans, [], printer, env, json=options.json, dry_run=options.dry_run)
        if remote is not None and not options.dry_run:  # nothing to build, but a commit to tag
            building.hand_over(repo, plans, remote, insecure=None, env=env, printer=printer)
        return code
    shown_live(output.plan_text(plans, printer), printer, env)
    by_hand = remote is None
    publishing = by_hand and options.publish
    code = building.build(
        repo,
        plans,
        env,
        printer,
        json=options.json,
        timeout=options.timeout,
        publishing=publishing,
        remote=remote,
    )
    if (
        code == EXIT_OK
        and by_hand
        and not options.publish
        and any(p.config.push and p.affected for p in plans)
    ):
        printer.info("by hand: uploaded under staging tags only; `--publish` also moves the public tags")
    return code


def shown_live(text: str, printer: Printer, env: Mapping[str, str]) -> None:
    """The plan before anything is built. pre-commit holds a hook's output until it ends, so
    under pre-commit it goes to the terminal, where the user sees it now; stdout otherwise."""
    if not (env.get("PRE_COMMIT") and progress.to_terminal(text + "\n")):
        printer.line(text)


def plan_commits(
    options: Options,
    repo: git.Repo,
    commits: Sequence[changes.Commit],
    env: Mapping[str, str],
    printer: Printer,
    *,
    by_hand: bool,
) -> list[Plan]:
    """The plan of each commit; input digests only when something may be built. By hand, a
    configuration changed but not committed is said (it is not what is planned)."""
    build_platform = platforms.native(platform.machine())
    building = not (options.dry_run or options.explain or options.bake)
    explain = (options.explain,) if options.explain else ()
    deadline = budget.start(options.budget, env, "planning the push")
    plans = [
        planning.plan_at(
            repo,
            commit,
            env=env,
            build_platform=build_platform,
            digests=building,
            explain=explain,
            deadline=deadline,
        )
        for commit in commits
    ]
    for note in uncommitted_config(repo, plans, env) if by_hand else ():
        printer.warn(note)
    return plans


def uncommitted_config(repo: git.Repo, plans: Sequence[Plan], env: Mapping[str, str]) -> tuple[str, ...]:
    """By hand, a change to the configuration that is not committed is not what is planned: said,
    when the commit planned is the one checked out."""
    head = repo.head.commit.hexsha if repo.working_tree_dir and repo.head.is_valid() else None
    at_head = [p for p in plans if p.commit.sha == head]
    if head is None or not at_head:
        return ()
    files = sorted({PYPROJECT, *(path for p in at_head for path in p.config.definitions)})
    root = Path(str(repo.working_tree_dir))
    if all(gitobjects.same_as_committed(repo, head, root, path) for path in files):
        return ()
    status = ("git", "-C", str(repo.working_tree_dir), "status", "--porcelain", "--", *files)
    done = process.run(status, env=env, check=False, timeout=30)
    changed = [line[3:] for line in done.stdout.splitlines() if line[:2].strip() and line[:2] != "??"]
    if not changed:
        return ()
    return (
        f"{', '.join(changed)}: changed but not committed; mab-hook plans and builds what is committed "
        f"({head[:12]}): commit the change to build with it",
    )


def select_commits(
    options: Options, repo: git.Repo, env: Mapping[str, str], stdin: TextIO, printer: Printer
) -> tuple[changes.Commit, ...]:
    if options.work_tree:
        if options.from_ref or options.to_ref or options.publish or options.remote:
            raise FatalError(
                "--work-tree builds the work tree against HEAD (or every image, with --all): "
                "it takes no --from, --to, --publish or remote"
            )
        return (changes.work_tree(repo, env, everything=options.every),)
    if options.every or options.from_ref:
        return (changes.by_hand_range(repo, None if options.every else options.from_ref, options.to_ref),)
    # git's lines: on stdin when git runs the hook, handed over when pre-commit does.
    handed = handover.handed_refs(state.root(repo)) if env.get("PRE_COMMIT") and not options.remote else None
    if handed is None and options.remote:
        handed = handover.Handed(options.remote, stdin.read())
    if handed is not None:
        pushed = changes.from_push(repo, handed.remote, changes.parse_push_lines(handed.lines))
        for note in pushed.notes:
            printer.info(note)
        return pushed.commits
    if env.get("PRE_COMMIT") or env.get("PRE_COMMIT_TO_REF"):
        return (pre_commit_range(repo, env, printer),)
    if options.to_ref:
        raise FatalError("--to needs --from REF or --all")
    if not repo.working_tree_dir and not repo.remotes:
        raise FatalError(f"{where(repo)} is a bare repository: say what to build with --all or --from REF")
    return (changes.upstream(repo),)


def pre_commit_range(repo: git.Repo, env: Mapping[str, str], printer: Printer) -> changes.Commit:
    """The first ref of the push, as pre-commit passes it (with no hand-over from `mab-hook install`)."""
    found = changes.from_pre_commit(repo, env)
    if found is not None:
        return found
    # pre-commit's "all files" push: new history down to a root commit.
    rev = env.get("PRE_COMMIT_LOCAL_BRANCH") or "HEAD"
    printer.warn(
        "pre-commit gave no push range (PRE_COMMIT_FROM_REF/PRE_COMMIT_TO_REF unset, "
        f"as for a push of new history): building EVERY image of {rev}"
    )
    found = changes.for_all(repo, rev, changes.current_branch(repo), "no push range from pre-commit")
    ref = changes.pre_commit_ref(repo, env)
    return found._replace(refs=(ref._replace(pushed=ref.pushed or found.sha),)) if ref.name else found
