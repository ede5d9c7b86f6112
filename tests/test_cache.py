from __future__ import annotations

import pickle
from collections.abc import Iterable
from pathlib import Path

import pytest

from mab_hook import cache, changes, cli, dockerfile
from mab_hook.inputs import Files
from mab_hook.paths import Tree
from tests.conftest import Repo
from tests.test_cli import FILES


def test_round_trip_and_versions(tmp_path: Path) -> None:
    path = tmp_path / "cache" / "c.pickle"
    assert cache.load(path) == {}
    cache.save(path, {("blob", "words"): frozenset({"base"})})
    loaded = cache.load(path)
    assert loaded == {("blob", "words"): frozenset({"base"})} and not loaded.changed
    del loaded[("blob", "words")]
    assert loaded.changed  # a dropped entry is a change to write too
    with path.open("wb") as stream:  # another version's cache is not trusted
        pickle.dump({"version": "v0", "entries": {"x": 1}}, stream)
    assert cache.load(path) == {}
    path.write_bytes(b"not a pickle")
    assert cache.load(path) == {}


def test_memo_by_blob_id() -> None:
    calls: list[str] = []
    memory: dict[object, object] = {}
    files = Files(Tree(("a",)), lambda path: "x", {"a": "blob1"}.get, memory)

    def make() -> str:
        calls.append("made")
        return "value"

    assert files.memo("a", ("k",), make) == "value"
    assert files.memo("a", ("k",), make) == "value"
    assert files.memo("b", ("k",), make) == "value"  # no blob id: never cached
    assert calls == ["made", "made"]
    assert memory == {("blob1", "k"): "value"}


def test_a_second_plan_parses_no_unchanged_dockerfile(
    repo: Repo, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo.commit({**FILES, "api/.dockerignore": "*.md\n"})
    monkeypatch.chdir(repo.path)
    parses: list[str] = []
    real = dockerfile.parse
    reads: list[str] = []
    real_read = changes.read_blobs

    def counting_read(repo: object, ids: Iterable[str]) -> dict[str, str]:
        found = real_read(repo, ids)  # type: ignore[arg-type]
        reads.extend(found.values())
        return found

    monkeypatch.setattr(changes, "read_blobs", counting_read)

    def counting(text: str, *args: object, **kwargs: object) -> dockerfile.Dockerfile:
        parses.append(str(kwargs["source"]))
        return real(text, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(dockerfile, "parse", counting)
    assert cli.main(["--dry-run", "--all"]) == 0
    assert sorted(parses) == ["api/Dockerfile", "base/Dockerfile"]
    first = capsys.readouterr().out
    parses.clear()
    reads.clear()
    assert cli.main(["--dry-run", "--all"]) == 0
    assert parses == []
    assert reads == [FILES["pyproject.toml"]]  # neither Dockerfiles nor ignore files are read again
    assert capsys.readouterr().out == first
    repo.commit({"api/Dockerfile": "FROM reg:5000/team/base\nCOPY . /srv\n"})
    assert cli.main(["--dry-run", "--all"]) == 0
    assert parses == ["api/Dockerfile"]
