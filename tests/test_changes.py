from __future__ import annotations

from collections.abc import Iterable

import git as gitpython
import pytest

from mab_hook import changes, listing
from mab_hook.changes import PushedRef, Target
from mab_hook.errors import FatalError
from tests.conftest import Repo

Z40 = "0" * 40
Z64 = "0" * 64


def open_repo(repo: Repo) -> gitpython.Repo:
    return gitpython.Repo(repo.path)


def pushed(
    repo: Repo, local: str = "refs/heads/main", remote: str = "refs/heads/main", remote_sha: str = Z40
) -> PushedRef:
    return PushedRef(local, repo.git("rev-parse", local), remote, remote_sha)


def test_parse_push_lines() -> None:
    text = (
        f"refs/heads/main {'a' * 40} refs/heads/main {'b' * 40}\n\n(delete) {Z40} refs/heads/old {'c' * 40}\n"
    )
    assert changes.parse_push_lines(text) == (
        PushedRef("refs/heads/main", "a" * 40, "refs/heads/main", "b" * 40),
        PushedRef("(delete)", Z40, "refs/heads/old", "c" * 40),
    )


def test_parse_push_lines_rejects_garbage() -> None:
    with pytest.raises(FatalError, match="pre-push input line 1 is not"):
        changes.parse_push_lines("refs/heads/main abc\n")


@pytest.mark.parametrize(
    ("sha", "null"), [(Z40, True), (Z64, True), ("0" * 39, False), ("a" + Z40[1:], False)]
)
def test_is_null(sha: str, null: bool) -> None:
    assert changes.is_null(sha) is null


def test_update_of_an_existing_branch_diffs_against_the_remote_sha(repo: Repo) -> None:
    first = repo.commit({"a/x": "1", "b/y": "1"})
    repo.git("push", "-q", "origin", "main")
    repo.commit({"a/x": "2"})
    repo.commit({"c/z": "1"})
    (target,) = changes.targets_from_push(open_repo(repo), "origin", [pushed(repo, remote_sha=first)])
    assert target == Target(
        repo.head(),
        "main",
        frozenset({"a/x", "c/z"}),
        f"refs/heads/main: {first[:7]}..{repo.head()[:7]}",
        (first,),
    )


def test_delete_builds_nothing(repo: Repo) -> None:
    first = repo.commit({"a/x": "1"})
    for zeros in (Z40, Z64):
        ref = PushedRef("(delete)", zeros, "refs/heads/old", first)
        assert changes.targets_from_push(open_repo(repo), "origin", [ref]) == ()


def test_new_branch_diffs_against_what_the_remote_has(repo: Repo) -> None:
    repo.commit({"a/x": "1", "b/y": "1"})
    repo.git("push", "-q", "origin", "main")
    base = repo.head()
    repo.git("checkout", "-q", "-b", "feature")
    repo.commit({"b/y": "2"})
    repo.commit({"d/new": "1"})
    ref = pushed(repo, "refs/heads/feature", "refs/heads/feature")
    (target,) = changes.targets_from_push(open_repo(repo), "origin", [ref])
    assert target.changed == frozenset({"b/y", "d/new"})
    assert target.branch == "feature"
    assert f"2 new commit(s) since {base[:7]}" in target.why


def test_new_branch_with_nothing_new_builds_nothing(repo: Repo) -> None:
    repo.commit({"a/x": "1"})
    repo.git("push", "-q", "origin", "main")
    repo.git("branch", "copy")
    ref = pushed(repo, "refs/heads/copy", "refs/heads/copy")
    assert changes.targets_from_push(open_repo(repo), "origin", [ref]) == ()


def test_root_commit_means_everything(repo: Repo) -> None:
    repo.commit({"a/x": "1"})
    repo.commit({"b/y": "1"})
    (target,) = changes.targets_from_push(open_repo(repo), "origin", [pushed(repo)])
    assert target.changed is None
    assert "root commit" in target.why


def test_remote_sha_unknown_locally_falls_back_to_remote_tracking_refs(repo: Repo) -> None:
    repo.commit({"a/x": "1"})
    repo.git("push", "-q", "origin", "main")
    repo.commit({"b/y": "2"})
    ref = pushed(repo, remote_sha="f" * 40)  # someone else's commit we never fetched
    (target,) = changes.targets_from_push(open_repo(repo), "origin", [ref])
    assert target.changed == frozenset({"b/y"})


def test_every_ref_of_the_push_counts(repo: Repo) -> None:
    first = repo.commit({"a/x": "1", "b/y": "1"})
    repo.git("push", "-q", "origin", "main")
    repo.git("checkout", "-q", "-b", "one")
    repo.commit({"a/x": "2"})
    repo.git("checkout", "-q", "-b", "two", "main")
    repo.commit({"b/y": "2"})
    refs = [
        pushed(repo, "refs/heads/one", "refs/heads/one"),
        pushed(repo, "refs/heads/two", "refs/heads/two"),
        PushedRef("(delete)", Z40, "refs/heads/gone", first),
    ]
    targets = changes.targets_from_push(open_repo(repo), "origin", refs)
    assert [(t.branch, t.changed) for t in targets] == [
        ("one", frozenset({"a/x"})),
        ("two", frozenset({"b/y"})),
    ]


def test_refs_at_the_same_commit_share_a_target(repo: Repo) -> None:
    first = repo.commit({"a/x": "1"})
    repo.git("push", "-q", "origin", "main")
    repo.commit({"b/y": "1"})
    repo.git("branch", "release")
    refs = [pushed(repo, remote_sha=first), pushed(repo, "refs/heads/release", "refs/heads/release")]
    (target,) = changes.targets_from_push(open_repo(repo), "origin", refs)
    assert target.changed == frozenset({"b/y"})


def test_rename_counts_old_and_new_path(repo: Repo) -> None:
    content = "\n".join(f"line {i}" for i in range(50))
    first = repo.commit({"old/app.py": content, "keep": "1"})
    (repo.path / "new").mkdir()
    repo.git("mv", "old/app.py", "new/app.py")
    repo.git("commit", "-q", "-m", "move")
    assert changes.changed_paths(open_repo(repo), first, repo.head()) == frozenset(
        {"old/app.py", "new/app.py"}
    )


def test_parse_name_status_handles_odd_names() -> None:
    out = "M\0a b/c d\0R100\0x\ny\0z\0A\0\u00e9t\u00e9\0"
    assert changes.parse_name_status(out) == frozenset({"a b/c d", "x\ny", "z", "\u00e9t\u00e9"})


def test_range_by_hand(repo: Repo) -> None:
    repo.commit({"a/x": "1"})
    repo.commit({"b/y": "1"})
    target = changes.target_for_range(open_repo(repo), "HEAD~1", "HEAD", "main")
    assert (target.sha, target.changed, target.why) == (repo.head(), frozenset({"b/y"}), "HEAD~1..HEAD")


def test_unknown_revision_is_a_clear_error(repo: Repo) -> None:
    repo.commit({"a/x": "1"})
    with pytest.raises(FatalError, match="'nope' is not a commit"):
        changes.target_for_range(open_repo(repo), "nope", "HEAD", None)


def test_pre_commit_environment(repo: Repo) -> None:
    first = repo.commit({"a/x": "1"})
    repo.commit({"b/y": "1"})
    env = {
        "PRE_COMMIT": "1",
        "PRE_COMMIT_FROM_REF": first,
        "PRE_COMMIT_TO_REF": repo.head(),
        "PRE_COMMIT_LOCAL_BRANCH": "refs/heads/main",
        "PRE_COMMIT_REMOTE_BRANCH": "refs/heads/prod",
    }
    targets = changes.targets_from_pre_commit(open_repo(repo), env)
    assert targets == (
        Target(repo.head(), "prod", frozenset({"b/y"}), f"{first[:12]}..{repo.head()[:12]}", (first,)),
    )
    assert changes.targets_from_pre_commit(open_repo(repo), {"PRE_COMMIT": "1"}) is None


def test_upstream_range(repo: Repo) -> None:
    repo.commit({"a/x": "1"})
    repo.git("push", "-q", "-u", "origin", "main")
    repo.commit({"b/y": "1"})
    target = changes.upstream_target(open_repo(repo))
    assert (target.changed, target.branch) == (frozenset({"b/y"}), "main")


def test_no_upstream_says_what_to_run(repo: Repo) -> None:
    repo.commit({"a/x": "1"})
    with pytest.raises(FatalError, match="mab-hook --all"):
        changes.upstream_target(open_repo(repo))


def test_files_are_read_at_the_commit_not_the_work_tree(repo: Repo) -> None:
    sha = repo.commit({"a/x": "committed", "b/y": "1"})
    repo.write({"a/x": "uncommitted", "c/new": "1"})
    assert changes.read_file(open_repo(repo), sha, "a/x") == "committed"
    assert changes.read_file(open_repo(repo), sha, "c/new") is None
    assert listing.of_commit(open_repo(repo), sha).tree.paths == ("a/x", "b/y")


def test_an_annotated_tag_builds_its_commit(repo: Repo) -> None:
    repo.commit({"a/x": "1"})
    repo.git("push", "-q", "origin", "main")
    commit = repo.commit({"b/y": "1"})
    repo.git("tag", "-a", "v1.0", "-m", "release")
    tag_object = repo.git("rev-parse", "v1.0")
    assert tag_object != commit
    ref = PushedRef("refs/tags/v1.0", tag_object, "refs/tags/v1.0", Z40)
    (target,) = changes.targets_from_push(open_repo(repo), "origin", [ref])
    assert (target.sha, target.branch, target.changed) == (commit, "v1.0", frozenset({"b/y"}))


def test_many_files_are_read_at_once(repo: Repo) -> None:
    files = {"a/x": "one\n", "empty": "", "b/ünï": "ü\nlines\n\n", "odd\nname": "newline in its name"}
    repo.commit(files)
    (repo.path / "raw").write_bytes(b"\xff\xfe not utf-8\n")
    sha = repo.commit({})
    handle = open_repo(repo)
    found = listing.of_commit(handle, sha)
    reader = changes.Reader(handle, found.blob_id)
    paths = [*files, "raw", "a", "missing", "a/x"]
    reader.fetch(paths)
    texts = {path: reader.read(path) for path in paths}
    assert texts == {**files, "raw": "\ufffd\ufffd not utf-8\n", "a": None, "missing": None}


def test_a_reader_reads_each_file_once(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    sha = repo.commit({"a": "1", "b": "2", "c": "3"})
    handle = open_repo(repo)
    reader = changes.Reader(handle, listing.of_commit(handle, sha).blob_id)
    reader.fetch(["a", "b", "nope"])
    asked: list[list[str]] = []
    real = changes.read_blobs

    def counting(repo: gitpython.Repo, ids: Iterable[str]) -> dict[str, str]:
        asked.append(list(ids))
        return real(repo, asked[-1])

    monkeypatch.setattr(changes, "read_blobs", counting)
    assert (reader.read("a"), reader.read("b"), reader.read("nope")) == ("1", "2", None)
    reader.fetch(["a", "nope"])
    assert asked == []  # nothing asked of git again
    assert reader.read("c") == "3" and len(asked) == 1
