"""Planning as one call: a commit of a repository in, its `Plan` out.

The hook, `--explain`, `doctor` (and whatever else plans) go through here, so that the
configuration at a commit is loaded one way, and what planning learnt is kept one way.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import git

from mab_hook import cache, config, gitobjects, listing, plan, state
from mab_hook.changes import Commit
from mab_hook.config import Config
from mab_hook.errors import FatalError
from mab_hook.inputs import Files
from mab_hook.paths import Tree
from mab_hook.validation import PYPROJECT


def plan_at(
    repo: git.Repo,
    commit: Commit,
    *,
    build_platform: str,
    digests: bool = False,
    explain: Sequence[str] = (),
) -> plan.Plan:
    """The plan of one pushed commit: its configuration, what the changes affect, and (with
    `digests`) every planned image's input digest."""
    cache_dir = state.root(repo) / "cache"
    commit_listing = listing.of_commit(repo, commit.sha, cache_dir)
    memory = cache.load(cache_dir / "planning.pickle")
    reader = gitobjects.Reader(repo, commit_listing.blob_id)
    cfg = load_config(repo, commit.sha, data=reader.data(PYPROJECT), tree=commit_listing.tree, cache=memory)
    files = Files(commit_listing.tree, reader.read, commit_listing.entry, memory, reader.fetch,
                  commit_listing.gitlinks())  # fmt: skip
    previous = None
    if PYPROJECT in (commit.changed or ()):
        previous = previous_configs(repo, commit, commit_listing.tree, memory)
    planned = plan.make_plan(
        commit, cfg, files, build_platform=build_platform, previous=previous, digests=digests, explain=explain
    )
    if memory.changed:
        cache.save(cache_dir / "planning.pickle", memory)
    return planned


def load_config(
    repo: git.Repo,
    sha: str,
    *,
    tree: Tree,
    data: bytes | None = None,
    cache: cache.Entries | None = None,
) -> Config:
    """`[tool.multiarch]` at a commit (`data`: its pyproject.toml, when already read)."""
    if data is None:
        data = gitobjects.read_file(repo, sha, PYPROJECT)
    return config.load(data, source=f"{PYPROJECT} at {sha[:12]}", tracked=tree, root_name=root_name(repo),
                       cache=cache)  # fmt: skip


def root_name(repo: git.Repo) -> str:
    """What a Dockerfile at the root is named after: the repository's directory."""
    return Path(repo.working_tree_dir or repo.git_dir).name.removesuffix(".git") or "app"


def previous_configs(repo: git.Repo, commit: Commit, tree: Tree, memory: cache.Entries) -> list[Config]:
    """The configuration at the commits the push is relative to; unreadable ones are left out
    (then every image counts as new). The new tree stands in for the old: only the images'
    settings are compared, not their paths."""
    found = []
    for base in commit.bases:
        try:
            found.append(load_config(repo, base, tree=tree, cache=memory))
        except FatalError:
            continue
    return found
