from __future__ import annotations

import contextlib
import pickle
import sqlite3
import stat
from collections.abc import Iterable
from pathlib import Path

import e2b_dockerfile_utils
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


def rows(path: Path) -> dict[str, bytes]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return dict(db.execute("select key, value from entries"))


def test_round_trip_writes_only_what_a_run_learnt(tmp_path: Path) -> None:
    path = tmp_path / "cache" / "c.sqlite"
    assert cache.load(path) == {} and not cache.load(path).changed
    learn(path, a=1)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # private, like everything under .git/mab-hook
    learn(path, b=2)
    loaded = cache.load(path)
    assert loaded == {"a": 1, "b": 2} and not loaded.changed and dict(loaded.items()) == {"a": 1, "b": 2}
    before = rows(path)
    learn(path, c=3)
    assert {key: value for key, value in rows(path).items() if key != repr("c")} == before  # untouched
    loaded = cache.load(path)
    del loaded["a"]
    assert "a" not in loaded and loaded.changed
    with pytest.raises(KeyError):
        del loaded["a"]
    cache.save(path, loaded)
    assert cache.load(path) == {"b": 2, "c": 3}


def test_entries_are_read_as_asked_not_all_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.sqlite"
    learn(path, **{f"k{i}": i for i in range(100)})
    loads: list[bytes] = []
    real = cache._loads

    def counting(data: bytes) -> object:
        loads.append(data)
        return real(data)

    monkeypatch.setattr(cache, "_loads", counting)
    loaded = cache.load(path)
    assert loaded["k7"] == 7 and loaded.get("k8") == 8 and loaded.get("missing") is None
    assert "k9" in loaded and len(loads) == 3  # one row each, once: not the other 97


def test_the_oldest_go_past_the_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.sqlite"
    monkeypatch.setattr(cache, "LIMIT", 3)
    for i in range(5):
        learn(path, **{f"k{i}": i})
    assert cache.load(path) == {"k2": 2, "k3": 3, "k4": 4}
    learn(path, k2=20)  # learnt again: the newest now
    learn(path, k5=5)
    assert cache.load(path) == {"k2": 20, "k4": 4, "k5": 5}


def test_other_versions_and_damage(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    learn(path, a=1, b=2)
    with contextlib.closing(sqlite3.connect(path)) as db:  # one row damaged: that entry is a miss
        db.execute("update entries set value = ? where key = ?", (b"\x80\x05garbage", repr("a")))
        db.commit()
    assert cache.load(path) == {"b": 2}
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("update meta set value = 'v0' where key = 'version'")
        db.commit()
    assert cache.load(path) == {}  # another version's: not trusted
    path.write_bytes(b"not a database" * 100)
    assert cache.load(path) == {}
    learn(path, c=3)  # started afresh
    assert cache.load(path) == {"c": 3}


def test_a_database_of_another_version_is_replaced_not_added_to(tmp_path: Path) -> None:
    """What a new mab-hook learns is kept: added under an old version it would be lost on
    every run."""
    path = tmp_path / "c.sqlite"
    learn(path, x=1)
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("update meta set value = 'v0' where key = 'version'")
        db.commit()
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
def test_a_crafted_or_strange_row_runs_nothing_and_is_a_miss(tmp_path: Path, payload: str) -> None:
    path, proof = tmp_path / "c.sqlite", tmp_path / "proof"
    learn(path, a=1, b=2)
    bodies = {
        "crafted": pickle.dumps(Runs(proof)),
        "record_of_another_module": pickle.dumps(Path("/etc/passwd")),
        "deep": b"(" * 200_000 + b".",  # a stack of marks: damaged, whatever it does
    }
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("update entries set value = ? where key = ?", (bodies[payload], repr("b")))
        db.commit()
    assert cache.load(path) == {"a": 1}  # the other entries are kept
    assert not proof.exists()


def test_none_is_a_value_and_the_count_is_of_entries(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    learn(path, nothing=None, one=1)
    loaded = cache.load(path)
    assert "nothing" in loaded and loaded["nothing"] is None and "other" not in loaded
    assert len(loaded) == 2


def test_a_new_parser_starts_the_cache_afresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parser = tmp_path / "parser"
    parser.mkdir()
    (parser / "__init__.py").write_text("")
    (parser / "model.py").write_text("v1\n")
    monkeypatch.setattr(e2b_dockerfile_utils, "__file__", str(parser / "__init__.py"))
    before = cache._version()
    (parser / "model.py").write_text("v2, longer\n")
    assert cache._version() != before


def crafted(module: str, name: str, *args: object) -> bytes:
    """A pickle that calls `module.name(*args)` as it loads: what a planted row could hold."""

    def text(value: str) -> bytes:
        data = value.encode()
        return b"\x8c" + bytes([len(data)]) + data  # SHORT_BINUNICODE

    return b"\x80\x04" + text(module) + text(name) + b"\x93" + pickle.dumps(args, protocol=4)[2:-1] + b"R."


@pytest.mark.parametrize(("module", "name", "args"), [
    ("os", "stat_result", ((0,) * 10,)),  # a tuple subclass, not mab-hook's
    ("mab_hook.listing", "os.stat_result", ((0,) * 10,)),  # the same, through one of mab-hook's modules
    ("mab_hook.runs", "Ledger", ()),  # mab-hook's, but no record
    ("builtins", "eval", ("40 + 2",)),  # a builtin, but not a container: it would run code
    ("builtins", "getattr", ((), "count")),
])  # fmt: skip
def test_only_mab_hooks_own_records_are_unpickled(
    tmp_path: Path, module: str, name: str, args: tuple[object, ...]
) -> None:
    path = tmp_path / "c.sqlite"
    learn(path, a=1, b=2)
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("update entries set value = ? where key = ?", (crafted(module, name, *args), repr("b")))
        db.commit()
    assert cache.load(path) == {"a": 1}


def test_a_damaged_database_is_started_afresh_without_its_journal(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    path.write_bytes(b"not a database" * 100)
    journal = tmp_path / "c.sqlite-journal"
    journal.write_bytes(b"a journal of another database" * 100)  # not to be replayed into the new one
    learn(path, a=1)
    assert cache.load(path) == {"a": 1} and not journal.exists()
