"""What the commits being pushed change, with GitPython.

Each pushed commit becomes a `Commit`: the sha to build, the refs it is pushed as, and the paths
changed since what the remote already has (`None`: everything, e.g. a root commit or `--all`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import NamedTuple

import git

from mab_hook import gitobjects
from mab_hook.errors import FatalError
from mab_hook.gitobjects import is_commit, object_type, resolve


class PushedRef(NamedTuple):
    """One stdin line git gives a pre-push hook."""

    local_ref: str
    local_sha: str
    remote_ref: str
    remote_sha: str


class Ref(NamedTuple):
    """A name a commit is pushed as: for the `{branch}` tags, and for whether it publishes."""

    name: str | None  # a branch's or a tag's short name; None when detached
    # The remote already has every commit of it (a tag on a pushed commit, say): nothing
    # changed, but the ref's own `{branch}` tags go on every image (from the registry).
    known: bool = False
    full: str | None = None  # the ref the remote is asked to update (refs/heads/main); None: none
    pushed: str | None = None  # the object id pushed as it (an annotated tag's own id); None by hand
    default: bool = False  # it is the remote's default branch

    @property
    def is_tag(self) -> bool:
        return (self.full or "").startswith("refs/tags/")


class Commit(NamedTuple):
    sha: str
    refs: tuple[Ref, ...]
    changed: frozenset[str] | None  # None means: treat every image as affected
    why: str  # where the range came from, for the plan and the logs
    bases: tuple[str, ...] = ()  # the commits `changed` is relative to (to compare settings with)
    # git's diff from the one base (when there is one): planning lays it over the file list it kept
    # from that base's tree, instead of asking git again.
    delta: gitobjects.TreeDiff | None = None

    @property
    def names(self) -> tuple[str | None, ...]:
        return tuple(ref.name for ref in self.refs) or (None,)


class Pushed(NamedTuple):
    """The commits a push builds, and a note for every ref that builds nothing, and why."""

    commits: tuple[Commit, ...]
    notes: tuple[str, ...] = ()


def is_null(sha: str) -> bool:
    """git's all-zero object id, for SHA-1 (40) and SHA-256 (64) repositories."""
    return len(sha) in (40, 64) and set(sha) == {"0"}


def parse_push_lines(text: str) -> tuple[PushedRef, ...]:
    refs = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        # rsplit: the local ref is whatever the user typed, and may hold spaces.
        parts = line.rsplit(maxsplit=3)
        if len(parts) != 4 or not all(_SHA_RE.match(sha) for sha in (parts[1], parts[3])):
            raise FatalError(
                f"pre-push input line {number} is not '<local ref> <local sha> "
                f"<remote ref> <remote sha>' (each sha 40 or 64 hex digits): {line!r}"
            )
        refs.append(PushedRef(*parts))
    return tuple(refs)


_SHA_RE = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")


def ref_name(ref: str | None) -> str | None:
    """The name {branch} stands for: a branch's or a tag's short name."""
    if not ref or ref == "HEAD":
        return None
    return ref.removeprefix("refs/heads/").removeprefix("refs/tags/")


def from_push(repo: git.Repo, remote: str, refs: Iterable[PushedRef]) -> Pushed:
    """Every ref of the push counts; refs pointing at the same commit share one `Commit`."""
    commits, notes = [], []
    others = _remote_refs(repo, remote)
    default = default_branch(repo, remote)
    for ref in refs:
        if is_null(ref.local_sha):
            continue  # a delete builds nothing
        kind = object_type(repo, ref.local_sha)
        if kind not in ("commit", "tag") or not is_commit(repo, ref.local_sha):
            notes.append(
                f"{ref.remote_ref} names a {kind or 'missing object'}, not a commit: nothing to build"
            )
            continue
        sha = resolve(repo, ref.local_sha)  # an annotated tag's object names its commit
        pushed = pushed_ref(ref.remote_ref, default, ref.local_sha)
        if not is_null(ref.remote_sha) and is_commit(repo, ref.remote_sha):
            base = resolve(repo, ref.remote_sha)
            why = f"{ref.remote_ref}: {ref.remote_sha[:7]}..{sha[:7]}"
            found = delta(repo, base, sha)
            commits.append(Commit(sha, (pushed,), found.paths, why, (base,), found))
            continue
        commits.append(new_ref(repo, others, sha, pushed, ref.remote_ref))
    return Pushed(merge(commits), tuple(notes))


def pushed_ref(full: str, default: str | None, sha: str | None = None) -> Ref:
    """The ref a push (or a run by hand, for a branch) asks the remote to update."""
    full = full if full.startswith("refs/") else f"refs/heads/{full}"
    is_default = default is not None and full == f"refs/heads/{default}"
    return Ref(ref_name(full), full=full, pushed=sha, default=is_default)


def default_branch(repo: git.Repo, remote: str | None) -> str | None:
    """The remote's default branch: where its HEAD points (`refs/remotes/<remote>/HEAD`, which
    a clone sets), else `main` or `master`, whichever the repository has (`main` when both)."""
    names = [r.name for r in repo.remotes]
    by_url = [r.name for r in repo.remotes if remote is not None and remote in r.urls]
    configured = remote if remote in names else (by_url or ["origin" if "origin" in names else ""])[0]
    if configured:
        try:
            target = str(repo.git.symbolic_ref("--quiet", f"refs/remotes/{configured}/HEAD"))
        except git.GitCommandError:
            target = ""
        if target.startswith(f"refs/remotes/{configured}/"):
            return target.removeprefix(f"refs/remotes/{configured}/")
    heads = {head.name for head in repo.heads}
    remotes = {ref.remote_head for r in repo.remotes for ref in r.refs}
    return next((name for name in ("main", "master") if name in heads | remotes), None)


def _remote_refs(repo: git.Repo, remote: str) -> str:
    """What `rev-list --not` takes for "what the remote has": its remote-tracking refs. Pushing
    to a URL names no remote: the remote configured with that URL, else every remote's refs."""
    if remote in {r.name for r in repo.remotes}:
        return f"--remotes={remote}"
    for configured in repo.remotes:
        if remote in configured.urls:
            return f"--remotes={configured.name}"
    return "--remotes"


def new_ref(repo: git.Repo, others: str, sha: str, ref: Ref, label: str) -> Commit:
    """A ref the remote does not have yet, diffed against what the remote already has."""
    lines = repo.git.rev_list("--boundary", sha, "--not", others).split()
    new = [line for line in lines if not line.startswith("-")]
    boundaries = [line[1:] for line in lines if line.startswith("-")]
    if not new:
        why = f"{label}: the remote has every commit already"
        return Commit(sha, (ref._replace(known=True),), frozenset(), why, (sha,))
    if not boundaries:
        return Commit(sha, (ref,), None, f"{label}: new history down to a root commit, so everything")
    deltas = [delta(repo, base, sha) for base in boundaries]
    changed = frozenset().union(*(found.paths for found in deltas))
    why = f"{label}: {len(new)} new commit(s) since {', '.join(b[:7] for b in boundaries)}"
    return Commit(sha, (ref,), changed, why, tuple(boundaries), deltas[0] if len(deltas) == 1 else None)


def by_hand(repo: git.Repo, name: str | None) -> Ref:
    """The ref of a run by hand: the branch checked out (or named), if any."""
    if name is None:
        return Ref(None)
    return pushed_ref(name, default_branch(repo, None))


def named(repo: git.Repo, rev: str | None) -> str | None:
    """The branch or tag a run by hand builds (its full ref): the one `--to` names (a branch, a
    tag, a remote's branch), or with no `--to` the branch checked out; None for a commit id or
    any other revision, which names neither (so no `{branch}` tag, and nothing publishes)."""
    if rev is None:
        rev = "HEAD"
    try:
        full = str(repo.git.rev_parse("--verify", "--quiet", "--symbolic-full-name", rev)).strip()
    except git.GitCommandError:
        return None
    if full.startswith(("refs/heads/", "refs/tags/")):
        return full
    if full.startswith("refs/remotes/") and full.count("/") >= 3:
        return "refs/heads/" + full.split("/", 3)[3]  # origin/release: the branch release
    return None


def by_hand_range(repo: git.Repo, from_ref: str | None, to_ref: str | None) -> Commit:
    """What a run by hand builds: every image at `to_ref` (no `from_ref`: --all) or what
    from_ref..to_ref changes, pushed as the branch or tag `--to` names (else the one checked out)."""
    name = named(repo, to_ref)
    rev = to_ref or "HEAD"
    commit = for_all(repo, rev, name, "--all") if from_ref is None else for_range(repo, from_ref, rev, name)
    if to_ref and name is None:
        return commit._replace(
            why=f"{commit.why}; --to {_short(to_ref)} names no branch or tag: it publishes nothing"
        )
    return commit


def for_range(repo: git.Repo, from_ref: str, to_ref: str, name: str | None) -> Commit:
    sha = resolve(repo, to_ref)
    base = resolve(repo, from_ref)
    why = f"{_short(from_ref)}..{_short(to_ref)}"
    found = delta(repo, base, sha)
    return Commit(sha, (by_hand(repo, name),), found.paths, why, (base,), found)


def _short(rev: str) -> str:
    """Full object ids (as pre-commit passes them) shortened for people; names kept."""
    return rev[:12] if len(rev) in (40, 64) and all(c in "0123456789abcdef" for c in rev) else rev


def work_tree(repo: git.Repo, env: Mapping[str, str], *, everything: bool) -> Commit:
    """The work tree as it is, as a commit no ref names (so it publishes nothing): what its
    changes against HEAD affect, or (`everything`) every image of it."""
    sha = gitobjects.work_tree_commit(repo, env)
    if everything or not repo.head.is_valid():
        return for_all(repo, sha, None, "the work tree as it is (--work-tree --all)")
    return for_range(repo, "HEAD", sha, None)._replace(why="uncommitted changes (--work-tree), against HEAD")


def for_all(repo: git.Repo, rev: str, name: str | None, why: str) -> Commit:
    return Commit(resolve(repo, rev), (by_hand(repo, name),), None, why)


def from_pre_commit(repo: git.Repo, env: Mapping[str, str]) -> Commit | None:
    """pre-commit consumes the hook's stdin and passes the range in its environment instead."""
    to_ref = env.get("PRE_COMMIT_TO_REF")
    from_ref = env.get("PRE_COMMIT_FROM_REF")
    if to_ref and from_ref:
        return for_range(repo, from_ref, to_ref, None)._replace(refs=(pre_commit_ref(repo, env),))
    return None


def pre_commit_ref(repo: git.Repo, env: Mapping[str, str]) -> Ref:
    """The ref pre-commit says is pushed (the first of the push)."""
    full = env.get("PRE_COMMIT_REMOTE_BRANCH") or env.get("PRE_COMMIT_LOCAL_BRANCH")
    if not full or full == "HEAD":
        return Ref(None)
    return pushed_ref(
        full, default_branch(repo, env.get("PRE_COMMIT_REMOTE_NAME")), env.get("PRE_COMMIT_TO_REF")
    )


def upstream(repo: git.Repo) -> Commit:
    """By hand with no range: what `git push` would send now, HEAD against its upstream; with
    none, what its first push would (against everything the push remote has, as the pre-push
    hook does for a new branch)."""
    branch = current_branch(repo)
    try:
        tracked = repo.git.rev_parse("--abbrev-ref", "--symbolic-full-name", "@{upstream}")
    except git.GitCommandError:
        remote = push_remote(repo, branch)
        if remote is None:
            raise FatalError(
                "no range to build: HEAD has no upstream branch and the repository no remote to push to. "
                "Run `mab-hook --all` to build every image, or `mab-hook --from REF --to REF`."
            ) from None
        label = f"{branch or 'HEAD'} (no upstream: its first push to {remote})"
        return new_ref(repo, f"--remotes={remote}", resolve(repo, "HEAD"), by_hand(repo, branch), label)
    return for_range(repo, tracked, "HEAD", branch)


def push_remote(repo: git.Repo, branch: str | None) -> str | None:
    """Where a plain `git push` of the branch goes: its pushRemote, remote.pushDefault, else
    `origin`, else the only remote; None when git would have to ask."""
    names = [remote.name for remote in repo.remotes]
    keys = (*((f"branch.{branch}.pushRemote",) if branch else ()), "remote.pushDefault")
    for key in keys:
        try:
            configured = str(repo.git.config("--get", key))
        except git.GitCommandError:
            continue
        if configured in names:
            return configured
    if "origin" in names:
        return "origin"
    return names[0] if len(names) == 1 else None


def current_branch(repo: git.Repo) -> str | None:
    try:
        return None if repo.head.is_detached else repo.active_branch.name
    except TypeError:  # an unborn branch
        return None


def merge(commits: Iterable[Commit]) -> tuple[Commit, ...]:
    merged: dict[str, Commit] = {}
    for commit in commits:
        seen = merged.get(commit.sha)
        if seen is None:
            merged[commit.sha] = commit
            continue
        changed = None if seen.changed is None or commit.changed is None else seen.changed | commit.changed
        merged[commit.sha] = Commit(
            seen.sha,
            tuple(dict.fromkeys(seen.refs + commit.refs)),
            changed,
            f"{seen.why}; {commit.why}",
            tuple(dict.fromkeys(seen.bases + commit.bases)),
        )
    return tuple(merged.values())


def delta(repo: git.Repo, base: str, sha: str) -> gitobjects.TreeDiff:
    """What changed from `base` to `sha`, path by path (its `paths`: a rename counts its old
    and its new path): `git diff-tree`, rather than `Commit.diff()`, which is two orders of
    magnitude slower on large pushes."""
    return gitobjects.TreeDiff(base, sha, gitobjects.diff_tree(repo, base, sha))
