from __future__ import annotations

import git as gitpython
import pytest

from mab_hook import changes
from mab_hook.changes import Commit, PushedRef, Ref
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
    with pytest.raises(FatalError) as info:
        changes.parse_push_lines(
            f"refs/heads/main {'a' * 40} refs/heads/main {'b' * 40}\nrefs/heads/main abc\n"
        )
    assert str(info.value) == ("pre-push input line 2 is not '<local ref> <local sha> <remote ref> <remote sha>' "
                               "(each sha 40 or 64 hex digits): 'refs/heads/main abc'")  # fmt: skip


def test_a_local_ref_as_typed_may_hold_spaces() -> None:
    """`git push origin "HEAD@{1 hour ago}":main` hands the hook what was typed."""
    line = f"HEAD@{{1 hour ago}} {'a' * 40} refs/heads/main {'b' * 40}"
    assert changes.parse_push_lines(line) == (
        PushedRef("HEAD@{1 hour ago}", "a" * 40, "refs/heads/main", "b" * 40),
    )


def test_a_ref_and_a_commit_say_nothing_unless_told() -> None:
    ref = Ref("main")
    assert (ref.known, ref.full, ref.pushed, ref.default) == (False, None, None, False) and not ref.is_tag
    assert Ref("v1", full="refs/tags/v1").is_tag and not Ref("main", full="refs/heads/main").is_tag
    commit = Commit("a" * 40, (ref,), frozenset(), "by hand")
    assert (commit.bases, commit.names) == ((), ("main",))
    assert Commit("a" * 40, (), None, "x").names == (None,)
    assert changes.Pushed(()).notes == ()


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
    (target,) = changes.from_push(open_repo(repo), "origin", [pushed(repo, remote_sha=first)]).commits
    assert target == Commit(
        repo.head(),
        (Ref("main", full="refs/heads/main", pushed=repo.head(), default=True),),
        frozenset({"a/x", "c/z"}),
        f"refs/heads/main: {first[:7]}..{repo.head()[:7]}",
        (first,),
        changes.delta(open_repo(repo), first, repo.head()),
    )


def test_delete_builds_nothing(repo: Repo) -> None:
    first = repo.commit({"a/x": "1"})
    for zeros in (Z40, Z64):
        ref = PushedRef("(delete)", zeros, "refs/heads/old", first)
        assert changes.from_push(open_repo(repo), "origin", [ref]).commits == ()


def test_new_branch_diffs_against_what_the_remote_has(repo: Repo) -> None:
    repo.commit({"a/x": "1", "b/y": "1"})
    repo.git("push", "-q", "origin", "main")
    base = repo.head()
    repo.git("checkout", "-q", "-b", "feature")
    repo.commit({"b/y": "2"})
    repo.commit({"d/new": "1"})
    ref = pushed(repo, "refs/heads/feature", "refs/heads/feature")
    (target,) = changes.from_push(open_repo(repo), "origin", [ref]).commits
    assert target.changed == frozenset({"b/y", "d/new"})
    assert target.refs == (Ref("feature", full="refs/heads/feature", pushed=repo.head()),)
    assert f"2 new commit(s) since {base[:7]}" in target.why


def test_a_new_ref_on_commits_the_remote_has_changes_nothing_but_is_known(repo: Repo) -> None:
    """`git push origin v1.4.1` of a commit pushed before: nothing changed, but the ref is new
    (its {branch} tags go on every image, from the registry)."""
    repo.commit({"a/x": "1"})
    repo.git("push", "-q", "origin", "main")
    repo.git("tag", "v1.4.1")
    ref = pushed(repo, "refs/tags/v1.4.1", "refs/tags/v1.4.1")
    (commit,) = changes.from_push(open_repo(repo), "origin", [ref]).commits
    assert (commit.sha, commit.refs, commit.changed) == (
        repo.head(),
        (Ref("v1.4.1", known=True, full="refs/tags/v1.4.1", pushed=repo.head()),),
        frozenset(),
    )
    assert "the remote has every commit already" in commit.why


def test_root_commit_means_everything(repo: Repo) -> None:
    repo.commit({"a/x": "1"})
    repo.commit({"b/y": "1"})
    (target,) = changes.from_push(open_repo(repo), "origin", [pushed(repo)]).commits
    assert target.changed is None
    assert "root commit" in target.why


def test_remote_sha_unknown_locally_falls_back_to_remote_tracking_refs(repo: Repo) -> None:
    repo.commit({"a/x": "1"})
    repo.git("push", "-q", "origin", "main")
    repo.commit({"b/y": "2"})
    ref = pushed(repo, remote_sha="f" * 40)  # someone else's commit we never fetched
    (target,) = changes.from_push(open_repo(repo), "origin", [ref]).commits
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
    targets = changes.from_push(open_repo(repo), "origin", refs).commits
    assert [(t.refs[0].name, t.changed) for t in targets] == [
        ("one", frozenset({"a/x"})),
        ("two", frozenset({"b/y"})),
    ]


def test_refs_at_the_same_commit_share_a_commit_and_keep_their_names(repo: Repo) -> None:
    first = repo.commit({"a/x": "1"})
    repo.git("push", "-q", "origin", "main")
    repo.commit({"b/y": "1"})
    repo.git("branch", "release")
    refs = [pushed(repo, remote_sha=first), pushed(repo, "refs/heads/release", "refs/heads/release")]
    (target,) = changes.from_push(open_repo(repo), "origin", refs).commits
    assert target.changed == frozenset({"b/y"})
    assert target.names == ("main", "release")  # each ref its own tags


def test_rename_counts_old_and_new_path(repo: Repo) -> None:
    content = "\n".join(f"line {i}" for i in range(50))
    first = repo.commit({"old/app.py": content, "keep": "1"})
    (repo.path / "new").mkdir()
    repo.git("mv", "old/app.py", "new/app.py")
    repo.git("commit", "-q", "-m", "move")
    assert changes.delta(open_repo(repo), first, repo.head()).paths == frozenset({"old/app.py", "new/app.py"})


def test_what_changed_is_every_path_git_reports_whatever_its_name_and_kind(repo: Repo) -> None:
    first = repo.commit({"a b/c d": "1", "x\ny": "2" * 50, "gone": "3", "exe": "4", "link": "t", "same": "5"})
    repo.write({"a b/c d": "changed", "gone": None, "\u00e9t\u00e9": "new"})
    repo.git("mv", "x\ny", "z")
    (repo.path / "exe").chmod(0o755)
    (repo.path / "link").unlink()
    (repo.path / "link").symlink_to("same")
    second = repo.commit({})
    found = changes.delta(open_repo(repo), first, second)
    assert (found.old, found.new) == (first, second)
    assert {c.path: (c.status, c.mode) for c in found.changes} == {
        "a b/c d": ("M", "100644"), "x\ny": ("D", "000000"), "z": ("A", "100644"), "gone": ("D", "000000"),
        "\u00e9t\u00e9": ("A", "100644"), "exe": ("M", "100755"), "link": ("T", "120000"),
    }  # fmt: skip
    assert (
        changes.delta(open_repo(repo), first, second).paths
        == found.paths
        == frozenset({"a b/c d", "x\ny", "z", "gone", "\u00e9t\u00e9", "exe", "link"})
    )
    blob = repo.git("rev-parse", f"{second}:z")
    assert next(c.object_id for c in found.changes if c.path == "z") == blob


def test_range_by_hand(repo: Repo) -> None:
    repo.commit({"a/x": "1"})
    repo.commit({"b/y": "1"})
    target = changes.for_range(open_repo(repo), "HEAD~1", "HEAD", "main")
    assert (target.sha, target.changed, target.why) == (repo.head(), frozenset({"b/y"}), "HEAD~1..HEAD")


def test_unknown_revision_is_a_clear_error(repo: Repo) -> None:
    repo.commit({"a/x": "1"})
    with pytest.raises(FatalError, match="'nope' is not a commit"):
        changes.for_range(open_repo(repo), "nope", "HEAD", None)


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
    found = changes.from_pre_commit(open_repo(repo), env)
    assert found == Commit(
        repo.head(),
        (Ref("prod", full="refs/heads/prod", pushed=repo.head()),),
        frozenset({"b/y"}),
        f"{first[:12]}..{repo.head()[:12]}",
        (first,),
        changes.delta(open_repo(repo), first, repo.head()),
    )
    assert changes.from_pre_commit(open_repo(repo), {"PRE_COMMIT": "1"}) is None


def test_upstream_range(repo: Repo) -> None:
    repo.commit({"a/x": "1"})
    repo.git("push", "-q", "-u", "origin", "main")
    repo.commit({"b/y": "1"})
    target = changes.upstream(open_repo(repo))
    assert (target.changed, target.refs) == (
        frozenset({"b/y"}),
        (Ref("main", full="refs/heads/main", default=True),),  # by hand: nothing pushed yet
    )


def test_no_upstream_is_the_first_push_of_the_branch(repo: Repo) -> None:
    """A branch never pushed: by hand, what its first push would build (as the pre-push hook
    does for a new ref): the commits the remote does not have."""
    first = repo.commit({"a/x": "1"})
    repo.git("push", "-q", "origin", "main")  # no -u: main has no upstream
    repo.git("checkout", "-q", "-b", "feature/x")
    repo.commit({"b/y": "1"})
    repo.commit({"c/z": "1"})
    target = changes.upstream(open_repo(repo))
    assert (target.sha, target.changed, target.bases) == (repo.head(), frozenset({"b/y", "c/z"}), (first,))
    assert target.refs == (Ref("feature/x", full="refs/heads/feature/x"),)
    assert (
        target.why == "feature/x (no upstream: its first push to origin): 2 new commit(s) since " + first[:7]
    )


def test_a_first_push_goes_where_git_would_push(repo: Repo) -> None:
    repo.commit({"a/x": "1"})
    repo.git("remote", "rename", "origin", "upstream")
    repo.git("remote", "add", "fork", str(repo.remote))
    handle = open_repo(repo)
    assert changes.push_remote(handle, "main") is None  # two remotes, none origin: git would ask
    repo.git("config", "remote.pushDefault", "fork")
    assert changes.push_remote(handle, "main") == "fork"
    repo.git("config", "branch.main.pushRemote", "upstream")
    assert changes.push_remote(handle, "main") == "upstream"
    repo.git("config", "branch.main.pushRemote", "gone")  # a remote that is not there: the next say
    assert changes.push_remote(handle, "main") == "fork"
    repo.git("remote", "remove", "fork")  # git drops remote.pushDefault with it
    assert changes.push_remote(handle, None) == "upstream"  # the only one


def test_no_upstream_and_no_remote_says_what_to_run(repo: Repo) -> None:
    repo.commit({"a/x": "1"})
    repo.git("remote", "remove", "origin")
    with pytest.raises(FatalError) as info:
        changes.upstream(open_repo(repo))
    assert str(info.value).startswith("no range to build: HEAD has no upstream branch and the repository no "
                                      "remote to push to. Run `mab-hook --all`")  # fmt: skip


def test_a_new_repository_s_first_push_is_everything(repo: Repo) -> None:
    repo.commit({"a/x": "1"})
    target = changes.upstream(open_repo(repo))  # origin is empty: new history down to a root
    assert (target.changed, target.why) == (None, "main (no upstream: its first push to origin): new history "
                                            "down to a root commit, so everything")  # fmt: skip


def test_an_annotated_tag_builds_its_commit(repo: Repo) -> None:
    repo.commit({"a/x": "1"})
    repo.git("push", "-q", "origin", "main")
    commit = repo.commit({"b/y": "1"})
    repo.git("tag", "-a", "v1.0", "-m", "release")
    tag_object = repo.git("rev-parse", "v1.0")
    assert tag_object != commit
    ref = PushedRef("refs/tags/v1.0", tag_object, "refs/tags/v1.0", Z40)
    (target,) = changes.from_push(open_repo(repo), "origin", [ref]).commits
    assert (target.sha, target.refs, target.changed) == (
        commit,
        (Ref("v1.0", full="refs/tags/v1.0", pushed=tag_object),),  # the tag object is what the remote gets
        frozenset({"b/y"}),
    )


def test_a_pushed_tag_naming_a_blob_or_a_tree_builds_nothing_and_says_why(repo: Repo) -> None:
    repo.commit({"a/x": "1"})
    blob = repo.git("rev-parse", "HEAD:a/x")
    tree = repo.git("rev-parse", "HEAD^{tree}")
    refs = [
        PushedRef("refs/tags/b", blob, "refs/tags/b", Z40),
        PushedRef("refs/tags/t", tree, "refs/tags/t", Z40),
    ]
    found = changes.from_push(open_repo(repo), "origin", refs)
    assert found.commits == ()
    assert found.notes == (
        "refs/tags/b names a blob, not a commit: nothing to build",
        "refs/tags/t names a tree, not a commit: nothing to build",
    )


def test_a_push_to_a_url_compares_with_the_remote_of_that_url(repo: Repo) -> None:
    """`git push <url>` names no remote: git passes the URL as its name."""
    repo.commit({"a/x": "1"})
    repo.git("push", "-q", "origin", "main")
    repo.git("checkout", "-q", "-b", "feature")
    repo.commit({"b/y": "2"})
    ref = pushed(repo, "refs/heads/feature", "refs/heads/feature")
    (commit,) = changes.from_push(open_repo(repo), str(repo.remote), [ref]).commits
    assert commit.changed == frozenset({"b/y"})  # not "new history down to a root commit"
    (elsewhere,) = changes.from_push(open_repo(repo), "/some/other/url.git", [ref]).commits
    assert elsewhere.changed == frozenset({"b/y"})  # every remote's refs stand in


def test_the_default_branch_is_where_the_remotes_head_points_else_main_or_master(repo: Repo) -> None:
    repo.commit({"a/x": "1"})
    handle = open_repo(repo)
    assert changes.default_branch(handle, "origin") == "main"  # no origin/HEAD: main, which it has
    repo.git("branch", "-m", "main", "master")
    assert changes.default_branch(open_repo(repo), "origin") == "master"
    repo.git("branch", "-m", "master", "trunk")
    assert changes.default_branch(open_repo(repo), "origin") is None
    repo.git("push", "-q", "origin", "trunk")
    repo.git("symbolic-ref", "refs/remotes/origin/HEAD", "refs/remotes/origin/trunk")
    handle = open_repo(repo)
    assert changes.default_branch(handle, "origin") == "trunk"
    url = handle.remotes.origin.url
    assert changes.default_branch(handle, url) == "trunk"  # a push to the remote's URL
    ref = PushedRef("refs/heads/trunk", repo.head(), "refs/heads/trunk", Z40)
    (commit,) = changes.from_push(handle, url, [ref]).commits
    assert commit.refs[0].default
    assert changes.by_hand(handle, "trunk").default and not changes.by_hand(handle, "main").default
    assert changes.by_hand(handle, None) == Ref(None)
    # Another remote, its own default branch: found by its name or its URL, not origin's.
    other = repo.path.parent / "upstream.git"
    git_init = gitpython.Repo.init(other, bare=True)
    repo.git("remote", "add", "upstream", str(other))
    repo.git("push", "-q", "upstream", "trunk:release")
    repo.git("symbolic-ref", "refs/remotes/upstream/HEAD", "refs/remotes/upstream/release")
    handle = open_repo(repo)
    assert changes.default_branch(handle, "upstream") == "release"
    assert changes.default_branch(handle, str(other)) == "release"
    assert changes.default_branch(handle, "/elsewhere.git") == "trunk"  # an unknown URL: origin's
    git_init.close()


@pytest.mark.parametrize(("ref", "name"), [
    ("refs/heads/feature/x", "feature/x"), ("refs/tags/v1.4.0", "v1.4.0"), ("HEAD", None), ("", None), (None, None),
])  # fmt: skip
def test_the_name_branch_tags_are_made_of(ref: str | None, name: str | None) -> None:
    assert changes.ref_name(ref) == name


def test_pre_commit_says_which_ref_of_which_remote_is_pushed(repo: Repo) -> None:
    first = repo.commit({"a/x": "1"})
    repo.commit({"b/y": "1"})
    env = {"PRE_COMMIT_FROM_REF": first, "PRE_COMMIT_TO_REF": repo.head(), "PRE_COMMIT_REMOTE_NAME": "origin",
           "PRE_COMMIT_REMOTE_BRANCH": "refs/tags/v2.0.0"}  # fmt: skip
    found = changes.from_pre_commit(open_repo(repo), env)
    assert found is not None
    assert found.refs == (Ref("v2.0.0", full="refs/tags/v2.0.0", pushed=repo.head()),)
    assert found.refs[0].is_tag
    env["PRE_COMMIT_REMOTE_BRANCH"] = "HEAD"
    found = changes.from_pre_commit(open_repo(repo), env)
    assert found is not None and found.refs == (Ref(None),)


def test_a_run_by_hand_is_the_ref_to_names_else_the_branch_checked_out(repo: Repo) -> None:
    first = repo.commit({"a": "1"})
    repo.git("branch", "release")
    repo.git("tag", "v1.0")
    repo.git("tag", "-a", "-m", "annotated", "v1.1")
    second = repo.commit({"a": "2"})
    repo.git("update-ref", "refs/remotes/origin/feature/x", first)
    handle = open_repo(repo)
    assert changes.named(handle, None) == "refs/heads/main"
    assert changes.named(handle, "HEAD") == "refs/heads/main"
    assert changes.named(handle, "release") == "refs/heads/release"
    assert changes.named(handle, "refs/heads/release") == "refs/heads/release"
    assert changes.named(handle, "v1.0") == "refs/tags/v1.0"
    assert changes.named(handle, "v1.1") == "refs/tags/v1.1"
    assert changes.named(handle, "origin/feature/x") == "refs/heads/feature/x"
    assert changes.named(handle, first) is None  # a commit id names no ref
    assert changes.named(handle, "HEAD~1") is None
    assert changes.named(handle, "nope") is None
    built = changes.by_hand_range(handle, None, "release")
    assert (built.sha, built.refs[0].name, built.refs[0].full, built.why) == (first, "release", "refs/heads/release",
                                                                             "--all")  # fmt: skip
    ranged = changes.by_hand_range(handle, first, None)
    assert (ranged.sha, ranged.refs[0].name, ranged.why) == (second, "main", f"{first[:12]}..HEAD")
    bare = changes.by_hand_range(handle, None, first)
    assert (
        bare.refs == (Ref(None),)
        and bare.why == f"--all; --to {first[:12]} names no branch or tag: it publishes nothing"
    )
    repo.git("checkout", "-q", "--detach", first)
    assert changes.named(open_repo(repo), None) is None


def test_the_same_commit_pushed_twice_is_one_commit_with_both_refs_and_both_ranges() -> None:
    main, v1 = Ref("main"), Ref("v1")
    merged = changes.merge([
        Commit("a" * 40, (main,), frozenset({"x"}), "main: 1 new commit(s)", ("b" * 40,)),
        Commit("c" * 40, (main,), frozenset({"y"}), "other", ()),
        Commit("a" * 40, (v1, main), frozenset({"z"}), "v1: new", ("b" * 40, "d" * 40)),
    ])  # fmt: skip
    assert merged[0] == Commit("a" * 40, (main, v1), frozenset({"x", "z"}), "main: 1 new commit(s); v1: new",
                               ("b" * 40, "d" * 40))  # fmt: skip
    assert [c.sha for c in merged] == ["a" * 40, "c" * 40]
    everything = changes.merge(
        [Commit("a" * 40, (main,), frozenset({"x"}), "m"), Commit("a" * 40, (v1,), None, "v")]
    )
    assert everything[0].changed is None  # one of them builds everything: so does the commit
    assert (
        changes.merge([Commit("a" * 40, (v1,), None, "v"), Commit("a" * 40, (main,), frozenset(), "m")])[
            0
        ].changed
        is None
    )


@pytest.mark.parametrize(("rev", "shown"), [
    ("a" * 40, "a" * 12), ("b" * 64, "b" * 12), ("a" * 65, "a" * 65), ("A" * 40, "A" * 40), ("HEAD~2", "HEAD~2"),
    ("g" * 40, "g" * 40), ("main", "main"),
])  # fmt: skip
def test_object_ids_are_shortened_for_people_and_names_kept(rev: str, shown: str) -> None:
    assert changes._short(rev) == shown


def test_a_push_range_carries_gits_diff_from_its_one_base_and_a_merges_none(repo: Repo) -> None:
    """Planning lays the diff over the file list it kept from the base (listing.of_commit)."""
    base = repo.commit({"a": "1"})
    sha = repo.commit({"b": "2"})
    handle = open_repo(repo)
    by_hand = changes.for_range(handle, base, sha, "main")
    assert by_hand.delta == changes.delta(handle, base, sha) and by_hand.delta.paths == by_hand.changed
    pushed = changes.from_push(
        handle, "origin", changes.parse_push_lines(f"refs/heads/main {sha} refs/heads/main {base}\n")
    )
    assert pushed.commits[0].delta == by_hand.delta
    repo.git("checkout", "-q", "-b", "side", base)
    side = repo.commit({"c": "3"})
    repo.git("checkout", "-q", "main")
    repo.git("merge", "-q", "--no-edit", "side")
    merged = repo.head()
    repo.git("update-ref", "refs/remotes/origin/main", sha)
    repo.git("update-ref", "refs/remotes/origin/side", side)
    line = f"refs/heads/main {merged} refs/heads/new {'0' * 40}\n"
    (new,) = changes.from_push(handle, "origin", changes.parse_push_lines(line)).commits
    assert set(new.bases) == {sha, side} and new.delta is None  # two bases: no one diff to lay over


def test_a_run_by_hand_names_a_remotes_branch_as_that_branch_and_other_refs_as_nothing(repo: Repo) -> None:
    repo.commit({"a/x": "1"})
    repo.git("push", "-q", "origin", "main:release")
    repo.git("fetch", "-q", "origin")
    repo.git("update-ref", "refs/custom/a/b", "HEAD")
    handle = open_repo(repo)
    assert changes.named(handle, "origin/release") == "refs/heads/release"
    assert changes.named(handle, "refs/custom/a/b") is None
    assert changes.named(handle, "nope") is None


def test_pre_commit_without_a_from_ref_gives_no_range_and_names_the_local_branch_else(repo: Repo) -> None:
    sha = repo.commit({"a/x": "1"})
    handle = open_repo(repo)
    assert changes.from_pre_commit(handle, {"PRE_COMMIT_TO_REF": sha}) is None
    assert changes.from_pre_commit(handle, {"PRE_COMMIT_FROM_REF": sha}) is None
    local = changes.pre_commit_ref(
        handle, {"PRE_COMMIT_LOCAL_BRANCH": "refs/heads/main", "PRE_COMMIT_TO_REF": sha}
    )
    assert local == Ref("main", full="refs/heads/main", pushed=sha, default=True)
    assert changes.pre_commit_ref(handle, {"PRE_COMMIT_LOCAL_BRANCH": "HEAD"}) == Ref(None)


def test_the_upstream_range_says_what_it_compares_with(repo: Repo) -> None:
    repo.commit({"a/x": "1"})
    repo.git("push", "-q", "-u", "origin", "main")
    repo.commit({"b/y": "1"})
    assert changes.upstream(open_repo(repo)).why == "origin/main..HEAD"
    repo.git("checkout", "-q", "--detach")
    repo.git("remote", "add", "second", str(repo.remote))  # origin wins over another remote
    detached = changes.upstream(open_repo(repo))
    assert detached.why.startswith("HEAD (no upstream: its first push to origin): 1 new commit(s) since ")


def test_a_push_of_commits_the_remote_has_says_so(repo: Repo) -> None:
    first = repo.commit({"a/x": "1"})
    repo.git("push", "-q", "origin", "main")
    (commit,) = changes.from_push(
        open_repo(repo), "origin", [pushed(repo, "refs/heads/main", "refs/heads/v2")]
    ).commits
    assert commit.why.endswith(": the remote has every commit already") and commit.sha == first
