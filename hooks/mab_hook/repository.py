"""The git repository a command works in: found from a directory, as git finds it."""

from __future__ import annotations

from pathlib import Path

import git

from mab_hook.errors import FatalError


def open_repo(path: Path) -> git.Repo:
    try:
        return git.Repo(path, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise FatalError(f"{path} is not inside a git repository") from None


def configured_remotes(path: Path) -> tuple[str, ...]:
    """The remotes of the repository around `path`; none outside a repository."""
    try:
        return tuple(remote.name for remote in open_repo(path).remotes)
    except FatalError:
        return ()
