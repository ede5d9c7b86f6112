from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mab_hook import state as kept
from mab_hook.state import State, lock
from tests.conftest import Repo


def test_records(tmp_path: Path) -> None:
    state = State(tmp_path / "mab-hook")
    assert not state.built("team_SLASH_api", "a" * 64)
    state.record("team_SLASH_api", "a" * 64, {"commit": "c" * 40})
    assert state.built("team_SLASH_api", "a" * 64)
    assert not state.built("team_SLASH_api", "b" * 64)
    assert not state.built("team_api", "a" * 64)
    # written whole: nothing but the record itself (no temporary file) is left
    assert [p.name for p in (tmp_path / "mab-hook" / "built").iterdir()] == [
        f"team_SLASH_api-{'a' * 64}.json"
    ]


def test_a_write_that_fails_leaves_no_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        kept.write_private(tmp_path / "x" / "f", b"data")
    assert list((tmp_path / "x").iterdir()) == []


def test_everything_written_is_private(tmp_path: Path) -> None:
    previous = os.umask(0o022)  # a usual umask, whatever the caller's: and the caller's again after
    try:
        written_private(tmp_path)
    finally:
        os.umask(previous)


def written_private(tmp_path: Path) -> None:
    root = tmp_path / "mab-hook"
    State(root).record("api", "a" * 64, {})
    with kept.open_private(State(root).logs("c" * 40) / "api.log") as log:
        log.write("ARG TOKEN=secret\n")
    with lock(root, print):
        pass
    modes = {str(p.relative_to(root)): p.stat().st_mode & 0o777 for p in [root, *root.rglob("*")]}
    assert modes == {
        ".": 0o700, "built": 0o700, f"built/api-{'a' * 64}.json": 0o600, "logs": 0o700,
        "logs/cccccccccccc": 0o700, "logs/cccccccccccc/api.log": 0o600, "lock": 0o600,
    }  # fmt: skip


def test_a_second_run_waits_for_the_first(tmp_path: Path) -> None:
    order: list[str] = []
    messages: list[str] = []
    held = threading.Event()

    def first() -> None:
        with lock(tmp_path, messages.append):
            order.append("first in")
            held.set()
            time.sleep(0.5)
            order.append("first out")

    thread = threading.Thread(target=first)
    thread.start()
    held.wait(5)
    # flock is per open file description: a second opener in this process waits like another process.
    with lock(tmp_path, messages.append):
        order.append("second in")
    thread.join()
    assert order == ["first in", "first out", "second in"]
    assert messages == [f"another mab-hook run (pid {os.getpid()}) is building in this repository; "
                        "waiting for it to finish (^C to stop waiting)"]  # fmt: skip


def test_a_stale_lock_from_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    # A process takes the lock and dies without any cleanup (SIGKILL).
    script = (f"import sys, os; sys.path.insert(0, {str(Path(__file__).parents[1] / 'hooks')!r})\n"
              "from pathlib import Path\nfrom mab_hook.state import lock\n"
              f"with lock(Path({str(tmp_path)!r}), print):\n    os.kill(os.getpid(), 9)\n")  # fmt: skip
    proc = subprocess.run((sys.executable, "-c", script), check=False)
    assert proc.returncode == -9
    dead_pid = (tmp_path / "lock").read_text().strip()
    assert dead_pid.isdigit()
    messages: list[str] = []
    with lock(tmp_path, messages.append):
        assert (tmp_path / "lock").read_text().strip() == str(os.getpid())  # the dead pid overwritten
    assert messages == []  # taken over at once, no waiting


def test_old_logs_and_records_go_and_recent_ones_stay(tmp_path: Path) -> None:
    root = tmp_path / "mab-hook"
    state = State(root)
    now = time.time()
    for i in range(5):
        (state.logs(f"{i:012d}" + "0" * 28) / "api.log").write_text("x")
        os.utime(root / "logs" / f"{i:012d}", (now - 100 * (5 - i), now - 100 * (5 - i)))
    state.record("old", "a" * 64, {})
    state.record("new", "b" * 64, {})
    old_record = root / "built" / f"old-{'a' * 64}.json"
    os.utime(old_record, (now - 100 * 86400, now - 100 * 86400))
    kept.prune(root, keep_logs=2, now=now)
    assert sorted(p.name for p in (root / "logs").iterdir()) == [f"{3:012d}", f"{4:012d}"]  # the newest two
    assert not old_record.exists()
    assert state.built("new", "b" * 64)  # recent: kept
    held = kept.held(root)
    assert (held.logs, held.records) == (2, 1) and held.size > 0


def test_a_planted_symlink_is_never_written_through(tmp_path: Path) -> None:
    root, target = tmp_path / "mab-hook", tmp_path / "someone-elses-file"
    root.mkdir()
    target.write_text("theirs\n")
    (root / "lock").symlink_to(target)
    with pytest.raises(kept.StateError, match=r"cannot write .*lock"), lock(root, print):
        pass
    logs = root / "logs" / "abc"
    logs.mkdir(parents=True)
    (logs / "api.log").symlink_to(target)
    with pytest.raises(kept.StateError):
        kept.open_private(logs / "api.log")
    assert target.read_text() == "theirs\n"


def test_an_unwritable_state_directory_is_an_error_that_says_what_to_do(repo: Repo, tmp_path: Path) -> None:
    """Not a traceback: exit 1, naming the directory (as another user, root writes anyway)."""
    repo.commit(
        {"pyproject.toml": '[tool.multiarch]\nplatforms = ["linux/amd64"]\n', "Dockerfile": "FROM scratch\n"}
    )
    blocker = repo.path / ".git" / "mab-hook"
    blocker.write_text("a file where mab-hook's directory goes\n")  # fails for root too
    ran = subprocess.run((sys.executable, "-m", "mab_hook", "--all"), cwd=repo.path, capture_output=True, text=True,
                         check=False)  # fmt: skip
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert "Traceback" not in ran.stdout + ran.stderr
    assert f"cannot write {blocker}" in ran.stderr


def test_records_are_kept_90_days_counted_in_days_and_logs_of_the_last_50_pushes(tmp_path: Path) -> None:
    root = tmp_path / "mab-hook"
    state = State(root)
    now = 1_000_000_000.0
    for name, days in (("day89", 89.9), ("day90", 90.0), ("day91", 90.1)):
        state.record(name, "a" * 64, {"commit": "c" * 40})
        path = root / "built" / f"{name}-{'a' * 64}.json"
        os.utime(path, (now - days * 86400, now - days * 86400))
    for i in range(52):
        (state.logs(f"{i:012d}" + "0" * 28) / "api.log").write_text("x")
        os.utime(root / "logs" / f"{i:012d}", (now - 1000 + i, now - 1000 + i))
    kept.prune(root, now=now)  # the defaults: 50 pushes' logs, 90 days of records
    assert [state.built(name, "a" * 64) for name in ("day89", "day90", "day91")] == [True, True, False]
    assert sorted(p.name for p in (root / "logs").iterdir()) == [f"{i:012d}" for i in range(2, 52)]
    written = json.loads((root / "built" / f"day89-{'a' * 64}.json").read_text())
    assert written["entry"] == "day89" and written["digest"] == "a" * 64 and written["commit"] == "c" * 40
    assert isinstance(written["at"], float)
    kept.prune(root)  # now is now: everything written above is older than 90 days
    assert not state.built("day89", "a" * 64)


def test_what_cannot_be_written_is_named_with_the_directory_to_fix(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    root = tmp_path / "file" / "mab-hook"
    with pytest.raises(kept.StateError) as info:
        State(root).record("api", "a" * 64, {})
    assert str(info.value) == (
        f"cannot write {root}: Not a directory. mab-hook keeps its logs, records and caches under {root}: "
        "make it yours and writable (`ls -ld` it), or remove it (it is rebuilt)"
    )
    elsewhere = tmp_path / "state" / "logs"
    assert str(kept._unwritable(elsewhere, OSError("no room"))).startswith(
        f"cannot write {elsewhere}: no room. mab-hook keeps its logs, records and caches under {elsewhere.parent}: "
    )
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "lock").mkdir()  # what should be the lock file is a directory
    at_lock = re.escape(f"cannot write {tmp_path / 'state' / 'lock'}: Is a directory")
    with pytest.raises(kept.StateError, match=f"^{at_lock}"), lock(tmp_path / "state", print):
        pass


def test_pruning_passes_over_what_it_cannot_remove_and_hidden_files(tmp_path: Path) -> None:
    """A symlink planted among the logs is neither followed nor a reason to stop; half-written
    files (hidden, `.name-XXXX`) are not records, and nothing is counted where nothing is."""
    root = tmp_path / "mab-hook"
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "keep").write_text("mine")
    (root / "logs").mkdir(parents=True)
    (root / "logs" / "planted").symlink_to(target)
    os.utime(root / "logs" / "planted", (0, 0), follow_symlinks=False)
    for n in range(3):
        State(root).logs(str(n) * 40)
    kept.prune(root, keep_logs=2)
    assert (target / "keep").read_text() == "mine"
    State(root).record("api", "a" * 64, {})
    (root / "built" / ".api-half-written").write_text("{")
    assert kept.held(root) == kept.Held(logs=3, records=1, size=kept.held(root).size)
    assert kept.held(tmp_path / "nothing-here") == kept.Held(0, 0, 0)


def test_a_record_goes_the_moment_it_is_older_than_its_days(tmp_path: Path) -> None:
    root = tmp_path / "mab-hook"
    State(root).record("api", "a" * 64, {})
    made = (root / "built" / f"api-{'a' * 64}.json").stat().st_mtime
    kept.prune(root, record_days=1.0, now=made + 86400 - 1)
    assert State(root).built("api", "a" * 64)
    kept.prune(root, record_days=1.0, now=made + 86400 + 1)
    assert not State(root).built("api", "a" * 64)


def test_a_file_is_written_under_a_hidden_temporary_name_then_renamed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    renamed: list[tuple[str, str]] = []
    real = os.replace

    def replace(src: str, dst: str) -> None:
        renamed.append((str(src), str(dst)))
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    kept.write_private(tmp_path / "f.json", b"{}")
    ((temporary, final),) = renamed
    assert Path(temporary).parent == tmp_path and Path(temporary).name.startswith(".f.json-")
    assert final == str(tmp_path / "f.json")


def test_a_log_is_appended_to_or_started_afresh_and_takes_any_text(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "api.log"
    with kept.open_private(log) as out:
        out.write("first\n")
    with kept.open_private(log, "a") as out:
        out.write("second \udcff\n")  # a build's undecodable byte, as surrogateescape keeps it
    assert log.read_text() == "first\nsecond ?\n"
    with kept.open_private(log) as out:
        out.write("again\n")
    assert log.read_text() == "again\n"


def test_a_lock_held_by_a_run_that_wrote_no_pid_says_so(tmp_path: Path) -> None:
    from mab_hook import filelock  # noqa: PLC0415

    root = tmp_path / "mab-hook"
    root.mkdir()
    holder = os.open(root / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    assert filelock.try_lock(holder)
    said: list[str] = []

    def second() -> None:
        with lock(root, said.append):
            said.append("in")

    waiting = threading.Thread(target=second)
    waiting.start()
    deadline = time.monotonic() + 10
    while not said and time.monotonic() < deadline:
        time.sleep(0.01)
    os.close(holder)
    waiting.join(timeout=10)
    assert said == ["another mab-hook run (pid unknown) is building in this repository; waiting for it to "
                    "finish (^C to stop waiting)", "in"]  # fmt: skip
