"""The pushed commit, checked out where buildx can read it, and always cleaned up."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import git


@contextmanager
def checkout(repo: git.Repo, sha: str) -> Iterator[Path]:
    """A detached worktree of `sha`: what is pushed, not HEAD or uncommitted files.

    A worktree (not `git archive`) so that LFS and other checkout filters apply as they would
    for anyone cloning the commit. It is removed even on ^C.
    """
    parent = Path(tempfile.mkdtemp(prefix="mab-hook-"))
    path = parent / sha[:12]
    try:
        repo.git.worktree("add", "--detach", "--force", "--quiet", str(path), sha)
        yield path
    finally:
        # Never created, or already gone: prune below forgets it either way.
        with suppress(git.GitCommandError):
            repo.git.worktree("remove", "--force", str(path))
        shutil.rmtree(parent, ignore_errors=True)
        repo.git.worktree("prune")
