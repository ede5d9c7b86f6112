"""Planning as one call: a commit of a repository in, its `Plan` out.

The hook, `--explain`, `verify`, the CI commands and `doctor` go through here, so that the
configuration at a commit is loaded one way (compose and bake files resolved at that commit),
and what planning learnt is kept one way.
"""

from __future__ import annotations

import contextlib
import platform as os_platform
from collections.abc import Mapping, Sequence
from pathlib import Path

import git

from mab_hook import budget, cache, config, definitions, gitobjects, listing, plan, platforms, state
from mab_hook.budget import Deadline
from mab_hook.changes import Commit
from mab_hook.errors import FatalError
from mab_hook.images import Config
from mab_hook.inputs import Files
from mab_hook.paths import Tracked
from mab_hook.validation import PYPROJECT

CACHE = "planning.sqlite"  # what planning learnt (`cache`), beside the kept listing


def plan_at(
    repo: git.Repo,
    commit: Commit,
    *,
    env: Mapping[str, str],
    build_platform: str,
    digests: bool = False,
    explain: Sequence[str] = (),
    deadline: Deadline = budget.NONE,
) -> plan.Plan:
    """The plan of one pushed commit: its configuration, what the changes affect, and (with
    `digests`) every planned image's input digest. `env`: what docker runs with, to resolve
    compose and bake files."""
    cache_dir = state.root(repo) / "cache"
    commit_listing = listing.of_commit(repo, commit.sha, cache_dir, commit.delta)
    memory = cache.load(cache_dir / CACHE)
    reader = gitobjects.Reader(repo, commit_listing.blob_id)
    symlinks = commit_listing.symlinks()  # once: each look scans every record

    def link(path: str) -> str | None:
        return (reader.data(path) or b"").decode("utf-8", "surrogateescape") if path in symlinks else None

    resolve = definitions.Resolver(
        definitions.CommitFiles(commit_listing.blob_id, reader.data, commit.sha, link), env, memory
    )
    cfg = load_config(
        repo,
        commit.sha,
        data=reader.data(PYPROJECT),
        tree=commit_listing.tree,
        cache=memory,
        env=env,
        resolve=resolve,
    )
    files = Files(
        commit_listing.tree,
        reader.read,
        commit_listing.entry,
        memory,
        reader.fetch,
        commit_listing.gitlinks(),
        symlinks,
    )
    previous = None
    touched = set(commit.changed or ())
    if PYPROJECT in touched or touched & set(cfg.definitions):
        previous = previous_configs(repo, commit, commit_listing, memory, env)
    planned = plan.make_plan(
        commit,
        cfg,
        files,
        build_platform=build_platform,
        previous=previous,
        digests=digests,
        explain=explain,
        deadline=deadline,
    )
    if memory.db is None:
        with contextlib.suppress(OSError):
            (cache_dir / "planning.pickle").unlink(missing_ok=True)  # what mab-hook 0.1 kept instead
    cache.save(cache_dir / CACHE, memory)
    listing.remember(commit_listing)
    return planned


def load_config(
    repo: git.Repo,
    sha: str,
    *,
    tree: Tracked,
    env: Mapping[str, str],
    data: bytes | None = None,
    cache: cache.Entries | None = None,
    resolve: config.Resolve | None = None,
) -> Config:
    """`[tool.multiarch]` at a commit (`data`: its pyproject.toml, when already read; `resolve`:
    what reads compose and bake files at that commit, when already made)."""
    if data is None:
        data = gitobjects.read_file(repo, sha, PYPROJECT)
    if data is None and repo.working_tree_dir and (Path(repo.working_tree_dir) / PYPROJECT).is_file():
        raise FatalError(
            f"{PYPROJECT} is in the work tree but not in commit {sha[:12]}: mab-hook builds "
            f"what is committed; `git add {PYPROJECT}` and commit it"
        )
    if resolve is None:
        at = definitions.CommitFiles(
            lambda path: gitobjects.blob_id(repo, sha, path),
            lambda path: gitobjects.read_file(repo, sha, path),
            sha,
            lambda path: gitobjects.link_target(repo, sha, path),
        )
        resolve = definitions.Resolver(at, env, cache)
    local = platforms.native(os_platform.machine())  # what a bake target's `platforms = ["local"]` means
    return config.load(
        data,
        source=f"{PYPROJECT} at {sha[:12]}",
        tracked=tree,
        root_name=root_name(repo),
        cache=cache,
        resolve=resolve,
        local_platform=local,
    )


def root_name(repo: git.Repo) -> str:
    """What a Dockerfile at the root is named after: the repository as its remote names it
    (origin's, else the first remote's URL: `git@host:team/netbox-docker.git` is netbox-docker),
    so that every clone names it alike; with no remote, the repository's directory."""
    reader = repo.config_reader("repository")  # where remotes live; no system or global file read
    sections = [section for section in reader.sections() if section.startswith('remote "')]
    for section in sorted(sections, key=lambda section: section != 'remote "origin"'):
        url = str(reader.get_value(section, "url", default="")).rstrip("/")
        name = url.rsplit("/", 1)[-1].rsplit(":", 1)[-1].removesuffix(".git")
        if name:
            return name
    return Path(repo.working_tree_dir or repo.git_dir).name.removesuffix(".git") or "app"


def previous_configs(
    repo: git.Repo, commit: Commit, pushed: listing.Listing, memory: cache.Entries, env: Mapping[str, str]
) -> list[Config]:
    """The configuration at each commit the push is relative to, read against that commit's own
    files (an image whose directory the push removes was valid there); unreadable ones are left
    out (then every image counts as new)."""
    found = []
    for base in commit.bases:
        try:
            tree = listing.near(repo, pushed, base).tree
            found.append(load_config(repo, base, tree=tree, cache=memory, env=env))
        except (FatalError, git.GitCommandError):
            continue
    return found
