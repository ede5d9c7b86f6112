from __future__ import annotations

import pickle
from collections.abc import Iterable
from pathlib import Path

import pytest

from mab_hook import cache, cli, dockerfile, gitobjects
from mab_hook.inputs import Files
from mab_hook.paths import Tree
from tests.conftest import Repo
from tests.test_cli import FILES


def learn(path: Path, **new: object) -> cache.Entries:
    entries = cache.load(path)
    for key, value in new.items():
        entries[key] = value
    cache.save(path, entries)
    return entries


def test_round_trip_appends_and_rewrites(tmp_path: Path) -> None:
    path = tmp_path / "cache" / "c.pickle"
    assert cache.load(path) == {} and not cache.load(path).changed
    learn(path, a=1)
    size = path.stat().st_size
    learn(path, b=2)
    assert path.stat().st_size > size  # appended
    loaded = cache.load(path)
    assert loaded == {"a": 1, "b": 2} and not loaded.changed and loaded.batches == 2
    del loaded["a"]
    cache.save(path, loaded)  # a dropped entry: written afresh, as one batch
    assert cache.load(path) == {"b": 2} and cache.load(path).batches == 1


def test_many_batches_are_folded_into_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.pickle"
    monkeypatch.setattr(cache, "MAX_BATCHES", 3)
    for i in range(5):
        learn(path, **{f"k{i}": i})
    assert cache.load(path) == {f"k{i}": i for i in range(5)}
    assert cache.load(path).batches < 3


def test_other_versions_and_damage(tmp_path: Path) -> None:
    path = tmp_path / "c.pickle"
    learn(path, a=1)
    learn(path, b=2)
    whole = path.read_bytes()
    path.write_bytes(whole[:-2])  # the last batch torn (a run killed while appending)
    assert cache.load(path) == {"a": 1}
    path.write_bytes(pickle.dumps({"version": "v0"}) + pickle.dumps({"x": 1}))  # not trusted
    assert cache.load(path) == {}
    path.write_bytes(b"not a pickle")
    assert cache.load(path) == {}


def test_a_file_of_another_version_is_replaced_not_appended_to(tmp_path: Path) -> None:
    """What a new mab-hook learns is kept: appended under an old header it would be lost on
    every run."""
    path = tmp_path / "c.pickle"
    path.write_bytes(pickle.dumps({"version": "v0"}) + pickle.dumps({"x": 1}))
    learn(path, a=1)
    learn(path, b=2)
    assert cache.load(path) == {"a": 1, "b": 2}


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
    real_fetch = gitobjects.Reader.fetch

    def counting_fetch(self: gitobjects.Reader, paths: Iterable[str]) -> None:
        wanted = [path for path in paths if path not in self.blobs]
        real_fetch(self, wanted)
        reads.extend(path for path in wanted if self.blobs.get(path) is not None)

    monkeypatch.setattr(gitobjects.Reader, "fetch", counting_fetch)

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
    assert reads == ["pyproject.toml"]  # neither Dockerfiles nor ignore files are read again
    assert capsys.readouterr().out == first
    repo.commit({"api/Dockerfile": "FROM reg:5000/team/base\nCOPY . /srv\n"})
    assert cli.main(["--dry-run", "--all"]) == 0
    assert parses == ["api/Dockerfile"]


class Runs:
    """What a crafted pickle asks to run as it loads: here, a file that proves it ran."""

    def __init__(self, proof: Path) -> None:
        self.proof = proof

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (Path.write_text, (str(self.proof), "ran"))


@pytest.mark.parametrize("payload", ["crafted", "record_of_another_module", "deep"])
def test_a_crafted_or_strange_cache_runs_nothing_and_is_a_miss(tmp_path: Path, payload: str) -> None:
    path, proof = tmp_path / "c.pickle", tmp_path / "proof"
    learn(path, a=1)
    header = path.read_bytes()[
        : len(pickle.dumps({"version": cache._version()}, protocol=pickle.HIGHEST_PROTOCOL))
    ]
    bodies = {
        "crafted": pickle.dumps({"b": Runs(proof)}),
        "record_of_another_module": pickle.dumps({"b": Path("/etc/passwd")}),
        "deep": b"(" * 200_000 + b".",  # a stack of marks: damaged, whatever it does
    }
    path.write_bytes(header + pickle.dumps({"a": 1}) + bodies[payload])
    assert cache.load(path) == {"a": 1}  # what came before the strange batch is kept
    assert not proof.exists()
