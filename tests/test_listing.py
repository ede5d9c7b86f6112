from __future__ import annotations

import dataclasses
import os
import string
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

import git as gitpython
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mab_hook import changes, listing
from mab_hook.paths import Tree
from tests.conftest import Repo, git


def expected(repo: Repo, sha: str) -> dict[str, str]:
    """What `git ls-tree` says, path -> "<mode> <id>"."""
    out = repo.git("ls-tree", "-r", "-z", "--full-tree", sha)
    entries = {}
    for entry in out.split("\0"):
        if entry:
            meta, _, path = entry.partition("\t")
            mode, _kind, object_id = meta.split(" ")
            entries[path] = f"{mode} {object_id}"
    return entries


def as_dict(found: listing.Listing) -> dict[str, str]:
    return {path: found.entry(path) or "" for path in found.tree.paths}


def answers(found: listing.Listing, asked: Iterable[str]) -> dict[str, tuple[object, ...]]:
    """What the listing says of each path and directory: as a Tree of git's own paths says."""
    return {
        path: (
            found.exists(path),
            tuple(found.under(path)),
            found.has_dir(path),
            found.entry(path) is not None,
        )
        for path in asked
    }


def every_question(paths: Iterable[str]) -> set[str]:
    """Each path, each directory holding one, and names beside them that are neither."""
    found = {".", "", "zz", "a0"}
    for path in paths:
        parts = path.split("/")
        found |= {"/".join(parts[: i + 1]) for i in range(len(parts))}
        found |= {path + "x", path + "/x", path[:-1] or "x"}
    return found


def as_git_says(repo: Repo, sha: str, asked: Iterable[str]) -> dict[str, tuple[object, ...]]:
    tree = Tree.of(expected(repo, sha))
    return {
        path: (tree.exists(path), tuple(tree.under(path)), tree.has_dir(path), tree.exists(path))
        for path in asked
    }


def test_modes_ids_links_and_submodules(repo: Repo, tmp_path: Path) -> None:
    repo.commit({"a/run.sh": "#!/bin/sh\n", "b": "x", "a.b": "y", "a0": "z"})
    os.chmod(repo.path / "a/run.sh", 0o755)
    os.symlink("b", repo.path / "link")
    sub = tmp_path / "sub"
    git(tmp_path, "init", "-q", str(sub))
    git(sub, "commit", "-q", "--allow-empty", "-m", "sub")
    repo.git("add", "-A")
    repo.git("update-index", "--add", "--cacheinfo", f"160000,{git(sub, 'rev-parse', 'HEAD')},vendor/sub")
    repo.git("commit", "-q", "-m", "links and a submodule")
    sha = repo.head()
    found = listing.of_commit(gitpython.Repo(repo.path), sha)
    assert as_dict(found) == expected(repo, sha)
    assert found.tree.paths == tuple(sorted(expected(repo, sha)))
    assert (found.entry("a/run.sh") or "").startswith("100755 ")
    assert (found.entry("link") or "").startswith("120000 ")
    assert (found.entry("vendor/sub") or "").startswith("160000 ")
    assert found.blob_id("b") == repo.git("rev-parse", f"{sha}:b")
    assert found.entry("a") is None and found.blob_id("missing") is None
    assert (found.gitlinks(), found.symlinks()) == (("vendor/sub",), frozenset({"link"}))


def test_names_that_are_not_utf8(repo: Repo) -> None:
    repo.commit({"a": "1", "z": "2"})
    (repo.path / os.fsdecode(b"caf\xe9")).write_text("latin-1 name")
    (repo.path / "\u00e9t\u00e9").write_text("utf-8 name")
    sha = repo.commit({})
    found = listing.of_commit(gitpython.Repo(repo.path), sha)
    assert len(found.tree.paths) == 4
    assert all(found.entry(path) for path in found.tree.paths)  # sorted the way bisect needs
    assert list(found.tree.paths) == sorted(found.tree.paths)


def test_kept_and_patched_listings_match_git(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = repo.path / ".git" / "mab-hook" / "cache"
    handle = gitpython.Repo(repo.path)
    first = repo.commit({f"d{i}/f{j}": f"{i}{j}" for i in range(10) for j in range(20)})
    assert as_dict(listing.of_commit(handle, first, cache)) == expected(repo, first)
    assert (cache / "listing").is_file()
    monkeypatch.setattr(listing, "ls_tree", lambda *_: pytest.fail("listed afresh, not patched"))
    gone = {f"d0/f{j}": None for j in range(20)}  # a whole directory
    second = repo.commit({"d1/f1": None, "d2/f2": "changed", "new/file": "n", **gone})
    assert as_dict(listing.of_commit(handle, second, cache)) == expected(repo, second)
    os.chmod(repo.path / "d3/f3", 0o755)
    (repo.path / "d4/f4").unlink()
    (repo.path / "d4/f4").mkdir()  # a file becomes a directory
    third = repo.commit({"d4/f4/inner": "i"})
    assert as_dict(listing.of_commit(handle, third, cache)) == expected(repo, third)
    assert as_dict(listing.of_commit(handle, first, cache)) == expected(repo, first)  # and back


def test_a_small_patch_is_not_written_a_large_one_is(repo: Repo) -> None:
    cache = repo.path / ".git" / "mab-hook" / "cache"
    handle = gitpython.Repo(repo.path)
    first = repo.commit({f"f{i:03}": str(i) for i in range(300)})
    kept = listing.of_commit(handle, first, cache)
    second = repo.commit({"f000": "changed"})  # 1 of 300: patched from the kept one next time too
    listing.of_commit(handle, second, cache)
    assert as_dict(kept_in(cache)) == as_dict(kept) == expected(repo, first)
    third = repo.commit({f"f{i:03}": "changed" for i in range(10)})
    found = listing.of_commit(handle, third, cache)
    assert as_dict(kept_in(cache)) == as_dict(found) == expected(repo, third)


def kept_in(cache: Path) -> listing.Listing:
    """The listing kept in `cache`, read as it is (never listed afresh)."""
    kept = listing.load(cache / "listing", lambda tree: pytest.fail(f"{tree} listed afresh"))
    assert kept is not None
    return listing.Listing(kept.tree_id, kept)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "gone tree", "an id changed, the shape kept"])
def test_a_damaged_or_stale_listing_is_listed_afresh(repo: Repo, damage: str) -> None:
    cache = repo.path / ".git" / "mab-hook" / "cache"
    handle = gitpython.Repo(repo.path)
    first = repo.commit({"a": "1", "b/c": "2", **{f"more/{i}": str(i) for i in range(10)}})  # small patches
    listing.of_commit(handle, first, cache)
    kept = cache / "listing"
    if damage == "garbage":
        kept.write_bytes(b"\x00\xff not a listing")
    elif damage == "truncated":
        kept.write_bytes(kept.read_bytes()[:-3])
    elif damage == "an id changed, the shape kept":  # b/c, which the next commit leaves as it is
        blob = handle.git.rev_parse(f"{first}:b/c")
        kept.write_bytes(kept.read_bytes().replace(blob.encode(), ("0" * 40).encode()))
    else:  # a tree git no longer has (pruned since)
        found = listing.ls_tree(handle, handle.git.rev_parse(f"{first}^{{tree}}"))
        listing.save(kept, dataclasses.replace(found, tree_id="1" * 40))
    second = repo.commit({"a": "changed"})
    assert as_dict(listing.of_commit(handle, second, cache)) == expected(repo, second)


NAMES = st.text(alphabet=string.ascii_lowercase[:4] + ".-0", min_size=1, max_size=3).filter(
    lambda name: name not in (".", "..")  # no file can be called that
)
PATHS = st.lists(NAMES, min_size=1, max_size=3).map("/".join)
STEPS = st.lists(
    st.dictionaries(PATHS, st.sampled_from(["a", "b", None]), max_size=8), min_size=1, max_size=4
)


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(steps=STEPS, save=st.booleans())
def test_patching_any_history_gives_what_git_lists(
    tmp_path_factory: pytest.TempPathFactory, steps: list[dict[str, str | None]], save: bool
) -> None:
    """Every listing after the first is patched (from the first one, or each from the one
    before), whatever the changes: files added, changed, deleted, turned into directories."""
    path = tmp_path_factory.mktemp("history")
    git(path, "init", "-q")
    repo = Repo(path, path)
    handle = gitpython.Repo(path)
    cache = path / ".git" / "mab-hook" / "cache"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(listing, "MAX_PATCH_FRACTION", float("inf"))
        patch.setattr(listing, "SAVE_FRACTION", 0 if save else float("inf"))
        patch.setattr(listing, "STRIDE", 2)  # windows of two paths, blocks of 64 bytes: many of each
        patch.setattr(listing, "BLOCK", 64)
        seed: dict[str, str | None] = {"seed": "s"}
        for number, step in enumerate([seed, *steps]):
            if number == 1:
                patch.setattr(listing, "ls_tree", lambda *_: pytest.fail("listed afresh, not patched"))
            sha = repo.commit(_possible(path, step))
            found = listing.of_commit(handle, sha, cache)
            assert as_dict(found) == expected(repo, sha)
            asked = every_question([*expected(repo, sha), *step])
            assert answers(found, asked) == as_git_says(repo, sha, asked)
            direct = listing.diff(handle, found.base, found.tree_id)
            assert direct is not None  # what config replay asks again: the paths added or deleted
            assert found.difference().moved == direct.moved
            listing.remember(found)


def _possible(root: Path, step: dict[str, str | None]) -> dict[str, str | None]:
    """The writes and deletions of a step that a file system allows."""
    files: dict[str, str | None] = {}
    for name, content in step.items():
        if content is None:
            if (root / name).is_file() and name not in files:
                files[name] = None
            continue
        parents = [str(p) for p in PurePosixPath(name).parents][:-1]  # without "."
        taken = any(p in files or (root / p).is_file() for p in parents)
        holds = (root / name).is_dir() or any(other.startswith(name + "/") for other in files)
        if not taken and not holds:
            files[name] = content
    return files


def test_sha256_repositories_and_empty_trees(tmp_path: Path) -> None:
    path = tmp_path / "sha256"
    git(tmp_path, "init", "-q", "--object-format=sha256", str(path))
    repo = Repo(path, path)
    handle = gitpython.Repo(path)
    cache = path / ".git" / "mab-hook" / "cache"
    empty = repo.commit({})
    assert listing.of_commit(handle, empty, cache).tree.paths == ()
    first = repo.commit({"a/x": "1", "b": "2"})
    found = listing.of_commit(handle, first, cache)
    assert as_dict(found) == expected(repo, first)
    assert len(found.blob_id("a/x") or "") == 64
    second = repo.commit({"a/y": "3"})
    assert as_dict(listing.of_commit(handle, second, cache)) == expected(repo, second)


def test_links_and_submodules_of_a_kept_listing_and_of_what_is_laid_over_it(
    repo: Repo, tmp_path: Path
) -> None:
    cache = repo.path / ".git" / "mab-hook" / "cache"
    handle = gitpython.Repo(repo.path)
    os.symlink("b", repo.path / "link")
    os.symlink("b", repo.path / "gone")
    first = repo.commit({"b": "x", **{f"f{i:03}": str(i) for i in range(300)}})
    listing.of_commit(handle, first, cache)  # kept
    sub = tmp_path / "sub"
    git(tmp_path, "init", "-q", str(sub))
    git(sub, "commit", "-q", "--allow-empty", "-m", "sub")
    (repo.path / "gone").unlink()
    os.symlink("b", repo.path / "new")
    repo.git("add", "-A")
    repo.git("update-index", "--add", "--cacheinfo", f"160000,{git(sub, 'rev-parse', 'HEAD')},vendor/sub")
    repo.git("commit", "-q", "-m", "a link gone, a link and a submodule new")
    found = listing.of_commit(handle, repo.head(), cache)
    assert isinstance(found.base, listing.Kept) and found.patch  # laid over the kept one
    assert (found.gitlinks(), found.symlinks()) == (("vendor/sub",), frozenset({"link", "new"}))
    assert as_dict(found) == expected(repo, repo.head())


def test_what_a_run_looked_up_is_answered_from_memory_by_the_next_over_the_same_kept_listing(
    repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = repo.path / ".git" / "mab-hook" / "cache"
    handle = gitpython.Repo(repo.path)
    first = repo.commit({f"d{i}/f{j}": f"{i}{j}" for i in range(10) for j in range(30)})
    listing.of_commit(handle, first, cache)
    second = repo.commit({"d0/f0": "changed"})
    found = listing.of_commit(handle, second, cache)
    asked = ["d1/f1", "d2/f2", "d0/f0", "missing"]
    said = {path: found.entry(path) for path in asked}
    listing.remember(found)
    third = repo.commit({"d1/f1": "changed too"})
    with monkeypatch.context() as patch:
        patch.setattr(listing.Kept, "bisect", lambda *_: pytest.fail("read from the kept listing"))
        again = listing.of_commit(handle, third, cache)
        assert {path: again.entry(path) for path in asked} == {
            **said,
            "d1/f1": f"100644 {repo.git('rev-parse', f'{third}:d1/f1')}",
        }
    again.entry("d3/f3")
    listing.remember(again)  # what this run asked of the kept listing, and nothing else
    assert set(listing.load_known(cache / listing.KNOWN, again.known.tree_id).records) == {
        "d2/f2",
        "d3/f3",
        "missing",
    }
    repo.commit({f"d{i}/f{j}": "all changed" for i in range(10) for j in range(3)})  # past SAVE_FRACTION
    rewritten = listing.of_commit(handle, repo.head(), cache)
    assert rewritten.known.records == {}  # the kept listing changed: nothing remembered holds
    assert listing.load_known(cache / listing.KNOWN, rewritten.tree_id).records == {}


def test_a_damaged_block_is_listed_afresh_and_the_kept_listing_dropped(repo: Repo) -> None:
    cache = repo.path / ".git" / "mab-hook" / "cache"
    handle = gitpython.Repo(repo.path)
    first = repo.commit({f"f{i:04}": str(i) for i in range(2000)})
    listing.of_commit(handle, first, cache)
    kept = cache / "listing"
    data = bytearray(kept.read_bytes())
    data[-10] ^= 1  # a path's byte, in the last block
    kept.write_bytes(bytes(data))
    second = repo.commit({"f0000": "changed"})
    found = listing.of_commit(handle, second, cache)
    assert found.entry("f1999") == f"100644 {repo.git('rev-parse', f'{second}:f1999')}"
    assert as_dict(found) == expected(repo, second) and not kept.exists()


def diffs_asked(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """The trees git is asked to diff from here on, as (old, new), each diffed as before."""
    asked: list[tuple[str, str]] = []
    real = listing._diff_tree

    def diff_tree(r: gitpython.Repo, old: str, new: str) -> listing.Patch | None:
        asked.append((old, new))
        return real(r, old, new)

    monkeypatch.setattr(listing, "_diff_tree", diff_tree)
    return asked


def test_a_push_past_the_last_one_is_diffed_from_it_not_from_the_kept_listing(
    repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kept listing is written anew only past SAVE_FRACTION, so it may be thousands of
    paths behind; each run keeps its own changes from it, and the next run asks git only what
    changed since that run's tree."""
    cache = repo.path / ".git" / "mab-hook" / "cache"
    handle = gitpython.Repo(repo.path)
    first = repo.commit({f"d{i}/f{j}": f"{i}{j}" for i in range(10) for j in range(40)})  # 4 changes kept
    listing.of_commit(handle, first, cache)
    second = repo.commit({"d1/f1": None, "d2/f2": "changed", "new/one": "n"})
    listing.of_commit(handle, second, cache)
    assert (cache / listing.PATCH).stat().st_mode & 0o777 == 0o600
    asked = diffs_asked(monkeypatch)
    third = repo.commit({"new/one": None, "d1/f1": "back", "d3/f3": "changed", "new/two": "t"})
    found = listing.of_commit(handle, third, cache)
    tree = handle.git.rev_parse
    assert asked == [(tree(f"{second}^{{tree}}"), tree(f"{third}^{{tree}}"))]
    assert as_dict(found) == expected(repo, third)
    # Added and deleted since the kept listing: d1/f1 is back, new/one came and went.
    assert found.difference().moved == frozenset({"new/two"})
    assert found.difference().changed == frozenset({"d1/f1", "d2/f2", "d3/f3", "new/two"})
    asked.clear()
    fourth = repo.commit({"d3/f3": "again"})  # and the next run from the third's tree
    assert as_dict(listing.of_commit(handle, fourth, cache)) == expected(repo, fourth)
    assert asked == [(tree(f"{third}^{{tree}}"), tree(f"{fourth}^{{tree}}"))]


def test_a_push_from_where_the_last_run_ended_lays_its_own_diff_over_without_asking_git(
    repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The usual push follows the one before: its diff (changes.delta, on the Commit) goes from
    the last run's tree to this one, so git is not asked the same again. A diff from any other
    commit, or to another, is not laid over."""
    cache = repo.path / ".git" / "mab-hook" / "cache"
    handle = gitpython.Repo(repo.path)
    first = repo.commit({f"d{i}/f{j}": f"{i}{j}" for i in range(10) for j in range(40)})
    listing.of_commit(handle, first, cache)
    second = repo.commit({"d1/f1": None, "d2/f2": "changed", "new/one": "n"})
    listing.of_commit(handle, second, cache)
    third = repo.commit({"new/one": None, "d1/f1": "back", "d3/f3": "changed", "new/two": "t"})
    asked = diffs_asked(monkeypatch)
    saved = {path.name: path.read_bytes() for path in cache.iterdir()}
    for delta, git_asked in (
        (changes.delta(handle, second, third), False),  # from the last run's commit
        (changes.delta(handle, first, third), True),  # from another commit
        (changes.delta(handle, second, first), True),  # to another commit
        (None, True),
    ):
        for name, data in saved.items():  # each as the run after the second's
            (cache / name).write_bytes(data)
        asked.clear()
        found = listing.of_commit(handle, third, cache, delta)
        assert as_dict(found) == expected(repo, third)
        assert found.difference().moved == frozenset({"new/two"})
        assert found.difference().changed == frozenset({"d1/f1", "d2/f2", "d3/f3", "new/two"})
        assert bool(asked) is git_asked, delta
    # With no run kept since the kept listing (a heavy push after priming): the diff from the
    # kept listing's own commit is laid over it.
    for delta, git_asked in (
        (changes.delta(handle, first, third), False),
        (changes.delta(handle, second, third), True),
    ):
        for name, data in saved.items():
            (cache / name).write_bytes(data)
        (cache / listing.PATCH).unlink()
        asked.clear()
        assert as_dict(listing.of_commit(handle, third, cache, delta)) == expected(repo, third)
        assert bool(asked) is git_asked, delta


@pytest.mark.parametrize("damage", ["garbage", "a record changed", "another kept listing's"])
def test_a_damaged_or_stale_kept_patch_is_not_used(repo: Repo, damage: str) -> None:
    cache = repo.path / ".git" / "mab-hook" / "cache"
    handle = gitpython.Repo(repo.path)
    first = repo.commit({f"f{i:03}": str(i) for i in range(300)})
    listing.of_commit(handle, first, cache)
    second = repo.commit({"f001": "changed", "f002": None})
    listing.of_commit(handle, second, cache)
    kept = cache / listing.PATCH
    if damage == "garbage":
        kept.write_bytes(b"\x00\xff not a patch")
    elif damage == "a record changed":  # the shape kept, f001's blob id another
        blob = handle.git.rev_parse(f"{second}:f001")
        kept.write_bytes(kept.read_bytes().replace(blob.encode(), b"0" * 40))
    else:  # of a listing kept before the one there now
        kept.write_bytes(
            kept.read_bytes().replace(handle.git.rev_parse(f"{first}^{{tree}}").encode(), b"1" * 40)
        )
    assert listing.load_patch(kept, handle.git.rev_parse(f"{first}^{{tree}}")) is None
    third = repo.commit({"f003": "changed"})
    assert as_dict(listing.of_commit(handle, third, cache)) == expected(repo, third)


def test_patches_compose_as_one() -> None:
    first = listing.Patch([("added", "r1"), ("changed", "r2"), ("deleted", None), ("gone", "r3")],
                          frozenset({"added", "deleted", "gone"}))  # fmt: skip
    then = listing.Patch([("added", None), ("changed", "r4"), ("deleted", "r5"), ("gone", None), ("kept", None),
                          ("new", "r6"), ("same", "r7")], frozenset({"added", "deleted", "gone", "kept", "new"}))  # fmt: skip
    found = listing.composed(first, then)
    # "added" came and went, "gone" too (added by first); "deleted" is back (changed, if anything).
    assert found.changes == [
        ("changed", "r4"),
        ("deleted", "r5"),
        ("kept", None),
        ("new", "r6"),
        ("same", "r7"),
    ]
    assert found.moved == frozenset({"kept", "new"})


def test_a_patch_grown_past_the_limit_since_the_kept_listing_lists_afresh(
    repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = repo.path / ".git" / "mab-hook" / "cache"
    handle = gitpython.Repo(repo.path)
    first = repo.commit({f"f{i:03}": str(i) for i in range(300)})
    listing.of_commit(handle, first, cache)
    monkeypatch.setattr(listing, "MAX_PATCH_FRACTION", 0.005)  # 1.5 of 300 paths
    listing.of_commit(handle, repo.commit({"f001": "changed"}), cache)  # kept as the last patch
    listed: list[str] = []
    real = listing.ls_tree

    def ls_tree(r: gitpython.Repo, tree: str) -> listing.Listed:
        listed.append(tree)
        return real(r, tree)

    monkeypatch.setattr(listing, "ls_tree", ls_tree)
    third = repo.commit({"f002": "changed"})  # one since the last: two since the kept listing
    assert as_dict(listing.of_commit(handle, third, cache)) == expected(repo, third)
    assert listed == [handle.git.rev_parse(f"{third}^{{tree}}")]
