"""Reading commits and files of a commit from git, many at a time."""

from __future__ import annotations

from collections.abc import Iterable

import git as gitpython
import pytest

from mab_hook import gitobjects, listing
from mab_hook.errors import FatalError
from tests.conftest import Repo


def open_repo(repo: Repo) -> gitpython.Repo:
    return gitpython.Repo(repo.path)


def test_files_are_read_at_the_commit_not_the_work_tree(repo: Repo) -> None:
    sha = repo.commit({"a/x": "committed", "b/y": "1"})
    repo.write({"a/x": "uncommitted", "c/new": "1"})
    assert gitobjects.read_file(open_repo(repo), sha, "a/x") == b"committed"
    assert gitobjects.read_file(open_repo(repo), sha, "c/new") is None
    assert listing.of_commit(open_repo(repo), sha).tree.paths == ("a/x", "b/y")


def test_many_files_are_read_at_once(repo: Repo) -> None:
    files = {"a/x": "one\n", "empty": "", "b/ünï": "ü\nlines\n\n", "odd\nname": "newline in its name"}
    repo.commit(files)
    (repo.path / "raw").write_bytes(b"\xff\xfe not utf-8\n")
    sha = repo.commit({})
    handle = open_repo(repo)
    found = listing.of_commit(handle, sha)
    reader = gitobjects.Reader(handle, found.blob_id)
    paths = [*files, "raw", "a", "missing", "a/x"]
    reader.fetch(paths)
    texts = {path: reader.read(path) for path in paths}
    assert texts == {**files, "raw": "\ufffd\ufffd not utf-8\n", "a": None, "missing": None}


def test_a_reader_reads_each_file_once(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    sha = repo.commit(
        {"a": "1", "b": "2", "c": "3", **{f"many/{n}": str(n) for n in range(gitobjects.FEW + 1)}}
    )
    handle = open_repo(repo)
    reader = gitobjects.Reader(handle, listing.of_commit(handle, sha).blob_id)
    reader.fetch(["a", "b", "nope"])
    asked: list[list[str]] = []
    real = gitobjects.read_blobs

    def counting(repo: gitpython.Repo, ids: Iterable[str]) -> dict[str, bytes]:
        asked.append(list(ids))
        return real(repo, asked[-1])

    monkeypatch.setattr(gitobjects, "read_blobs", counting)
    assert (reader.read("a"), reader.read("b"), reader.read("nope")) == ("1", "2", None)
    reader.fetch(["a", "nope"])
    assert asked == []  # nothing asked of git again
    assert reader.read("c") == "3" and asked == []  # one file: from git's running cat-file process
    reader.fetch([f"many/{n}" for n in range(gitobjects.FEW + 1)])
    assert len(asked) == 1 and reader.read("many/3") == "3"  # many: one `cat-file --batch` of their own


def test_raw_bytes_are_kept_for_whoever_needs_them(repo: Repo) -> None:
    (repo.path / "raw").write_bytes(b"\xff\xfe not utf-8\n")
    sha = repo.commit({})
    handle = open_repo(repo)
    reader = gitobjects.Reader(handle, listing.of_commit(handle, sha).blob_id)
    assert reader.data("raw") == b"\xff\xfe not utf-8\n"


def test_a_bare_repository_is_named_by_its_git_dir(tmp_path: object, repo: Repo) -> None:
    bare = gitpython.Repo(repo.remote)
    with pytest.raises(FatalError, match=f"'HEAD' is not a commit in {repo.remote}"):
        gitobjects.resolve(bare, "HEAD")


def test_a_work_tree_file_is_the_commits_only_byte_for_byte(repo: Repo) -> None:
    sha = repo.commit({"same": "one\n", "edited": "one\n", "gone": "one\n", "dir/x": "1"})
    repo.write({"edited": "two\n", "new": "one\n"})
    (repo.path / "gone").unlink()
    handle = open_repo(repo)
    same = {path: gitobjects.same_as_committed(handle, sha, repo.path, path)
            for path in ("same", "edited", "gone", "new", "absent", "dir")}  # fmt: skip
    # a directory is no file in either
    assert same == {"same": True, "edited": False, "gone": False, "new": False, "absent": True, "dir": True}
