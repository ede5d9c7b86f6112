"""What a lab test session removes from the engine's store (tests/leftovers.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests import leftovers

OURS = "127.0.0.1:5000/t0123456789/mab-staging/api:mab-1"
LOCAL = "docker.io/mab-test/tabcdefabcd/svc:x"
OTHERS = "127.0.0.1:5000/tfedcba9876/web:latest"
LAB = "127.0.0.1:5000"


def test_a_namespace_is_found_in_registry_and_local_names_only() -> None:
    assert leftovers.namespace_of(OURS) == "t0123456789"
    assert leftovers.namespace_of(LOCAL) == "tabcdefabcd"
    for kept in ("docker.io/mab-lab/busybox:latest", "127.0.0.1:5000/mab-lab/busybox:latest",
                 "docker.io/library/t0123456789/x:y", "127.0.0.1:5000/t012345678/short:x",
                 "127.0.0.1:5000/bench-build-0c2513/api:x", "moby-dangling@sha256:00"):  # fmt: skip
        assert leftovers.namespace_of(kept) is None, kept


def test_what_is_swept_at_start_is_what_no_running_session_claims() -> None:
    found = {OURS, LOCAL, OTHERS, "docker.io/mab-lab/busybox:latest", "moby-dangling@sha256:00"}
    assert leftovers.left_by_others(found, live={"tfedcba9876"}) == {OURS, LOCAL}


def test_what_is_swept_at_start_includes_images_of_registries_gone_with_their_test() -> None:
    gone, running = "127.0.0.1:41469/team/mab-staging/api:mab-1", "127.0.0.1:38643/team/img:src"
    tls = "192.0.2.2:34303/team/mab-staging/api:mab-2"
    kept = {OTHERS, running, "127.0.0.1:5000/mab-lab/busybox:latest", "127.0.0.1:5000/team/x:y"}
    asked: list[tuple[str, int]] = []

    def listening(address: tuple[str, int]) -> bool:
        asked.append(address)
        return address == ("127.0.0.1", 38643)

    found = leftovers.left_behind({*kept, OURS, gone, tls}, {"tfedcba9876"}, LAB, listening)
    assert found == {OURS, gone, tls}
    assert ("127.0.0.1", 5000) not in asked  # the lab's own registry is never a test's


def test_what_is_removed_at_the_end_is_what_the_session_made() -> None:
    test_registry = "127.0.0.1:41469/team/api:x"
    before = {"moby-dangling@sha256:00", OTHERS, "127.0.0.1:38643/team/img:src", "127.0.0.1:5000/team/x:y"}
    now = {*before, OURS, LOCAL, "moby-dangling@sha256:11", "docker.io/mab-lab/busybox:latest", test_registry,
           "127.0.0.1:5000/team/new:y"}  # fmt: skip
    made = leftovers.made_by(now, mine={"t0123456789", "tabcdefabcd"}, before=before, lab_registry=LAB)
    assert made == {OURS, LOCAL, "moby-dangling@sha256:11", test_registry}


def test_a_session_sees_the_claims_of_live_sessions_and_forgets_dead_ones(tmp_path: Path) -> None:
    ours = leftovers.Claims(tmp_path)
    alive = subprocess.Popen((sys.executable, "-c", "import time; time.sleep(60)"))
    dead = subprocess.Popen((sys.executable, "-c", "pass"))
    dead.wait()
    try:
        (tmp_path / str(alive.pid)).write_text(f"{leftovers._started(alive.pid)}\ntaaaaaaaaaa\n")
        (tmp_path / str(dead.pid)).write_text("12345\ntbbbbbbbbbb\n")
        reused = tmp_path / str(os.getppid())  # a pid now someone else's: another start time
        reused.write_text("1\ntcccccccccc\n")
        ours.claim("tdddddddddd")
        assert ours.others_live() == {"taaaaaaaaaa"}
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted((str(alive.pid), str(os.getpid())))
        assert ours.mine == {"tdddddddddd"}
        ours.release()
        assert not (tmp_path / str(os.getpid())).exists()
    finally:
        alive.kill()
        alive.wait()
