"""`mab-hook install`: have every ref of a push checked, with or without pre-commit.

git gives a pre-push hook every ref of the push on stdin; pre-commit hands its hooks only the
first one. But pre-commit runs `.git/hooks/pre-push.legacy` first, with git's whole stdin. So
under pre-commit, `install` puts a small shell script there that only hands git's lines over
(a private file named for pre-commit's process), and the mab-hook hook pre-commit runs next
checks every ref from them: the mab-hook that runs is the one pre-commit installed for the
`rev:` of .pre-commit-config.yaml (a `rev:` bump changes it, nothing is pinned), each ref is
checked once, pre-commit's `SKIP` and its final Passed/Failed are the truth. Without
pre-commit, mab-hook is the pre-push hook itself.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple, TextIO

from mab_hook import process
from mab_hook.errors import FatalError
from mab_hook.handover import HANDOVER, MARKER
from mab_hook.output import Printer
from mab_hook.repository import open_repo


class Options(NamedTuple):
    repo: Path | None  # the repository around this directory; None: the current one


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    found = argparse.ArgumentParser(
        prog="mab-hook install",
        description="Install mab-hook so that every ref of a push is checked: under pre-commit as "
        ".git/hooks/pre-push.legacy (which pre-commit runs first, with every ref), else as "
        ".git/hooks/pre-push.",
    )
    found.add_argument("-C", "--repo", type=Path, default=None, metavar="DIR")
    found.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    found.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    found.add_argument("-v", "--verbose", action="store_true", help=argparse.SUPPRESS)
    return found.parse_args(argv)


def options(args: argparse.Namespace) -> Options:
    return Options(args.repo)


def run(options: Options, env: Mapping[str, str], stdin: TextIO, printer: Printer) -> int:
    repo = open_repo(options.repo or Path.cwd())
    hooks = Path(repo.git.rev_parse("--path-format=absolute", "--git-path", "hooks"))
    work = Path(repo.working_tree_dir or repo.git_dir)
    if (work / ".pre-commit-config.yaml").is_file():
        _pre_commit_install(work, env)
        target = hooks / "pre-push.legacy"
        _write(target, script(sys.executable, under_pre_commit=True))
        printer.outcome(
            f"installed {target}: pre-commit runs it first with every ref of a push, and "
            "it hands them to the mab-hook hook of .pre-commit-config.yaml"
        )
    else:
        target = hooks / "pre-push"
        _write(target, script(sys.executable, under_pre_commit=False))
        printer.outcome(f"installed {target}: every ref of a push is checked")
    return 0


def _pre_commit_install(work: Path, env: Mapping[str, str]) -> None:
    done = process.run(
        (sys.executable, "-m", "pre_commit", "install", "--hook-type", "pre-push"),
        env=env,
        cwd=work,
        check=False,
        timeout=300,
    )
    if done.returncode != 0:
        raise FatalError(
            f"`pre-commit install --hook-type pre-push` failed: {done.stderr.strip() or done.stdout}"
        )


def _write(target: Path, text: str) -> None:
    if target.exists() and MARKER not in target.read_text(errors="replace"):
        raise FatalError(
            f"{target} exists and is not mab-hook's: move it away (or merge it into the script "
            "`mab-hook install` writes), then run `mab-hook install` again"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    target.chmod(0o755)


def script(python: str, *, under_pre_commit: bool) -> str:
    """The hook script. Without pre-commit: mab-hook in the environment it was installed from
    (gone, pre-commit's cache or a venv removed: the push stops with what to run). Under
    pre-commit: no Python at all, git's refs handed to the mab-hook hook pre-commit runs next
    (written privately, then renamed, so a half-written file is never read)."""
    if under_pre_commit:
        return HANDOVER
    gone = 'echo "mab-hook: error: $python is gone: run \\`mab-hook install\\` again." >&2\nexit 1'
    run = 'if [ -x "$python" ]; then exec "$python" -m mab_hook "$@"; fi'
    return (
        f"#!/bin/sh\n{MARKER}: every ref of a push is checked\npython={shlex.quote(python)}\n{run}\n{gone}\n"
    )
