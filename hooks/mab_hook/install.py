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
import contextlib
import os
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple, TextIO

import git

from mab_hook import process, state
from mab_hook.errors import FatalError
from mab_hook.output import Printer

MARKER = "# installed by `mab-hook install`"
HANDED = "push-refs-"  # under .git/mab-hook, + pre-commit's pid: git's lines of one push
HANDED_AGE = 3600.0  # seconds a hand-over stays good for (one push's hooks run within it)
HANDOVER = f"""#!/bin/sh
{MARKER}: hands git's refs to the mab-hook hook of .pre-commit-config.yaml,
# which pre-commit runs next with the first ref only; that hook then checks every ref.
umask 077
dir="$(git rev-parse --git-common-dir)/mab-hook" && mkdir -p "$dir" || exit 1
handed="$dir/{HANDED}$PPID"
{{ printf '%s\\n%s\\n' "$1" "$2" && cat; }} >"$handed.tmp" && mv -f "$handed.tmp" "$handed" || {{
    echo "mab-hook: error: cannot hand this push's refs to mab-hook ($handed)" >&2
    exit 1
}}
"""


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
        printer.outcome(f"installed {target}: pre-commit runs it first with every ref of a push, and "
                     "it hands them to the mab-hook hook of .pre-commit-config.yaml")  # fmt: skip
    else:
        target = hooks / "pre-push"
        _write(target, script(sys.executable, under_pre_commit=False))
        printer.outcome(f"installed {target}: every ref of a push is checked")
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


class Handed(NamedTuple):
    remote: str  # as git named it to the hook: a remote's name, or the URL pushed to
    lines: str  # git's pre-push lines, every ref of the push


def handed_refs(root: Path) -> Handed | None:
    """What the script under pre-commit handed over for this push (pre-commit's process runs
    it and then this hook, so both know the same pid); the file is gone once read. Hand-overs
    no hook read (a push with `SKIP=mab-hook`, an interrupted one) are removed when old."""
    own = root / f"{HANDED}{os.getppid()}"
    for stale in root.glob(f"{HANDED}*"):
        with contextlib.suppress(OSError):
            if stale != own and time.time() - stale.lstat().st_mtime > HANDED_AGE:
                stale.unlink()
    try:
        fd = os.open(own, os.O_RDONLY | state.NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, encoding="utf-8", errors="replace") as handed:
        fresh = time.time() - os.fstat(handed.fileno()).st_mtime < HANDED_AGE
        text = handed.read()
    own.unlink(missing_ok=True)
    remote, _url, lines = [*text.split("\n", 2), "", ""][:3]
    return Handed(remote, lines) if fresh and remote else None
