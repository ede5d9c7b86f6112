"""`mab-hook install`: have every ref of a push checked, with or without pre-commit.

git gives a pre-push hook every ref of the push on stdin; pre-commit hands its hooks only the
first one. But pre-commit runs `.git/hooks/pre-push.legacy` first, with git's whole stdin. So
under pre-commit, mab-hook goes there, checks every ref, and leaves a note for the mab-hook
that pre-commit then runs, which finds the push already checked and says so. Without pre-commit,
mab-hook is the pre-push hook itself.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

import git

from mab_hook import process, state
from mab_hook.errors import FatalError
from mab_hook.output import Printer

MARKER = "# installed by `mab-hook install`"
ALL_REFS = "MAB_HOOK_ALL_REFS"  # set by the installed script: this run sees every ref
NOTE = "legacy-run.json"  # under .git/mab-hook: what the run with every ref checked
NOTE_AGE = 3600.0  # seconds a note stays good for (one push's hooks run within it)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="mab-hook install",
        description="Install mab-hook so that every ref of a push is checked: under pre-commit as "
        ".git/hooks/pre-push.legacy (which pre-commit runs first, with every ref), else as "
        ".git/hooks/pre-push.",
    )
    parser.add_argument("-C", "--repo", type=Path, default=None, metavar="DIR")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    parser.add_argument("-v", "--verbose", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def install(args: argparse.Namespace, env: Mapping[str, str], stdin: TextIO, printer: Printer) -> int:
    repo = _open(args.repo or Path.cwd())
    hooks = Path(repo.git.rev_parse("--path-format=absolute", "--git-path", "hooks"))
    work = Path(repo.working_tree_dir or repo.git_dir)
    if (work / ".pre-commit-config.yaml").is_file():
        _pre_commit_install(work, env)
        target = hooks / "pre-push.legacy"
        _write(target, script(sys.executable, under_pre_commit=True))
        printer.line(f"mab-hook: installed {target}: pre-commit runs it first with every ref of a push; the "
                     "mab-hook hook in .pre-commit-config.yaml then finds the push checked")  # fmt: skip
    else:
        target = hooks / "pre-push"
        _write(target, script(sys.executable, under_pre_commit=False))
        printer.line(f"mab-hook: installed {target}: every ref of a push is checked")
    return 0


def _open(path: Path) -> git.Repo:
    try:
        return git.Repo(path, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise FatalError(f"{path} is not inside a git repository") from None


def _pre_commit_install(work: Path, env: Mapping[str, str]) -> None:
    done = process.run((sys.executable, "-m", "pre_commit", "install", "--hook-type", "pre-push"), env=env,
                       cwd=work, check=False, timeout=300)  # fmt: skip
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
    """The hook script: mab-hook in the environment it was installed from. If that environment
    is gone (pre-commit's cache cleaned, say), a plain hook stops the push; under pre-commit the
    mab-hook hook of .pre-commit-config.yaml still checks the first ref, so it only warns."""
    gone = (
        'echo "mab-hook: warning: $python is gone; only the first ref of this push is checked. '
        'Run \\`mab-hook install\\` again." >&2\nexit 0'
        if under_pre_commit
        else 'echo "mab-hook: error: $python is gone: run \\`mab-hook install\\` again." >&2\nexit 1'
    )
    run = f'if [ -x "$python" ]; then {ALL_REFS}=1 exec "$python" -m mab_hook "$@"; fi'
    return (
        f"#!/bin/sh\n{MARKER}: every ref of a push is checked\npython={shlex.quote(python)}\n{run}\n{gone}\n"
    )


def note_checked(root: Path, shas: Sequence[str], ok: bool) -> None:
    """What a run with every ref found, for the mab-hook pre-commit runs next in the same push
    (the same parent process: pre-commit's hook-impl runs the legacy hook and then its hooks)."""
    data = {"ppid": os.getppid(), "shas": list(shas), "ok": ok, "at": time.time()}
    state.write_private(root / NOTE, json.dumps(data).encode())


def checked_already(root: Path, sha: str) -> bool:
    """Whether the legacy hook of this very push checked `sha` (with every other ref)."""
    try:
        data = json.loads((root / NOTE).read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(data, dict)
        and data.get("ppid") == os.getppid()
        and sha in data.get("shas", [])
        and time.time() - float(data.get("at", 0)) < NOTE_AGE
    )
