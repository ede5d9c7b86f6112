"""The pushed commit, checked out where buildx can read it, and always cleaned up.

A worktree of git's own (not `git archive`), so that LFS and other checkout filters apply as
they would for anyone cloning the commit; but only the paths the builds read, so that its cost
follows the contexts built, not the size of the repository. Submodules the builds read are
checked out at the commits the pushed commit records. Worktrees are locked with a reason that
names mab-hook, so that a run that died (even by SIGKILL) leaves nothing the next run does not
find and remove.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

import git

from mab_hook.errors import FatalError

LOCK_REASON = "mab-hook run"  # and the pid: `git worktree list` shows it


@contextmanager
def checkout(
    repo: git.Repo, sha: str, *, paths: Sequence[str] | None = None, submodules: Sequence[str] = ()
) -> Iterator[Path]:
    """A detached worktree of `sha`: what is pushed, not HEAD or uncommitted files. With
    `paths`, only those (files or directories, and the attribute files that apply to them);
    with `submodules`, those submodules checked out too. Removed even on ^C."""
    parent = Path(tempfile.mkdtemp(prefix="mab-hook-"))
    path = parent / sha[:12]
    reason = f"{LOCK_REASON} {os.getpid()}"
    try:
        whole = paths is None or "." in paths or "" in paths
        no_checkout = () if whole else ("--no-checkout",)
        repo.git.worktree(
            "add",
            "--detach",
            "--force",
            "--lock",
            "--reason",
            reason,
            *no_checkout,
            "--quiet",
            str(path),
            sha,
        )
        tree = git.Repo(path)
        if not whole:
            _checkout_paths(repo, tree, sha, paths or ())
        if submodules:
            populate_submodules(repo, tree, submodules)
        _drop_gitlinks(path, submodules)
        yield path
    finally:
        _remove(repo, path)
        shutil.rmtree(parent, ignore_errors=True)


def _checkout_paths(repo: git.Repo, tree: git.Repo, sha: str, paths: Sequence[str]) -> None:
    """The attribute files first (they say which filters the rest goes through), then the rest."""
    wanted = sorted(set(paths))
    attributes = [p for p in _attribute_files(repo, sha, wanted) if p not in wanted]
    for batch in (attributes, wanted):
        if batch:
            tree.git.checkout(sha, "--", *(f":(literal){p}" for p in batch))


def _attribute_files(repo: git.Repo, sha: str, paths: Sequence[str]) -> list[str]:
    """The .gitattributes (and .gitmodules) of the commit in the directories above `paths`."""
    above = {""}
    for path in paths:
        parts = path.split("/")[:-1]
        above.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
    wanted = [f"{d}/.gitattributes" if d else ".gitattributes" for d in sorted(above)] + [".gitmodules"]
    listed = repo.git.ls_tree("--name-only", "-z", sha, "--", *(f":(literal){p}" for p in wanted))
    return [p for p in listed.split("\0") if p]


def populate_submodules(repo: git.Repo, tree: git.Repo, submodules: Sequence[str]) -> None:
    """The submodules at the commits the pushed commit records: from the clone's own copy of
    each (`.git/modules/<name>`) when it has one, else from its URL. One that cannot be had is
    an error before any build."""
    names = _submodule_names(tree)
    for path in submodules:
        name = names.get(path)
        if name is None:
            raise FatalError(f"submodule {path}: not in .gitmodules of the pushed commit; fix .gitmodules")
        local = Path(repo.common_dir) / "modules" / name
        options: list[str] = []
        if (local / "HEAD").exists():  # the user's own copy: no network, and faster
            options = ["-c", "protocol.file.allow=always", "-c", f"submodule.{name}.url={local}"]
        try:
            tree.git.execute(["git", *options, "submodule", "update", "--init", "--recursive", "--", path])
        except git.GitCommandError as e:
            detail = " ".join(str(e.stderr).split())[:400]
            raise FatalError(
                f"submodule {path} ({name}) could not be checked out for the build: {detail}. "
                f"Run `git submodule update --init {path}` here, or check its URL in .gitmodules; "
                "nothing was built"
            ) from None


def _submodule_names(tree: git.Repo) -> dict[str, str]:
    """Submodule path -> name, from the checkout's .gitmodules."""
    try:
        out = tree.git.config("--file", ".gitmodules", "--get-regexp", r"^submodule\..*\.path$")
    except git.GitCommandError:
        return {}
    found = {}
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        match = re.match(r"^submodule\.(.*)\.path$", key)
        if match:
            found[value] = match.group(1)
    return found


def _drop_gitlinks(path: Path, submodules: Sequence[str]) -> None:
    """A build sees the commit's files as a clone's, without `.git`: the worktree's (and each
    submodule's) is a file naming a directory of this machine, which a context would carry into
    the build, and which no build could use. (Removing the worktree no longer needs it.)"""
    links = [path / ".git"]
    for submodule in submodules:
        links += (path / submodule).rglob(".git")
    for link in links:
        if link.is_file() and not link.is_symlink():
            link.unlink()


def _remove(repo: git.Repo, path: Path) -> None:
    if (path / ".git").is_file():
        with suppress(git.GitCommandError):
            repo.git.worktree("remove", "--force", "--force", str(path))
            return
    # Without its .git (dropped for the build, as it always is once checked out; never
    # created; gone), `remove` would refuse: unlocked, prune forgets it.
    with suppress(git.GitCommandError):
        repo.git.worktree("unlock", str(path))
    with suppress(git.GitCommandError):
        repo.git.worktree("prune")


def remove_stale(repo: git.Repo) -> list[str]:
    """Worktrees earlier runs left behind (a run killed with SIGKILL, say): only a run that
    holds the repository's lock calls this, so every mab-hook worktree there is stale."""
    removed = []
    for path, reason in _locked_worktrees(repo):
        if reason.startswith(LOCK_REASON):
            _remove(repo, Path(path))
            shutil.rmtree(path, ignore_errors=True)
            if Path(path).parent.name.startswith("mab-hook-"):
                shutil.rmtree(Path(path).parent, ignore_errors=True)
            removed.append(path)
    return removed


def _locked_worktrees(repo: git.Repo) -> list[tuple[str, str]]:
    found, path = [], None
    for line in repo.git.worktree("list", "--porcelain").splitlines():
        if line.startswith("worktree "):
            path = line[len("worktree ") :]
        elif line.startswith("locked") and path is not None:
            found.append((path, line[len("locked ") :]))
    return found
