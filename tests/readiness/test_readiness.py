"""A ready host is remembered for a short while, for the same question and fingerprint."""

from __future__ import annotations

from pathlib import Path

from mab_hook import readiness
from mab_hook.process import Completed
from mab_hook.readiness import Wanted
from tests.readiness.recorded import ALL3, docker, host


def counting(tmp_path: Path) -> tuple[readiness.Host, list[tuple[str, ...]]]:
    calls: list[tuple[str, ...]] = []
    found = host(tmp_path)
    real = found.run

    def run(cmd: tuple[str, ...]) -> Completed:
        calls.append(cmd)
        return real(cmd)

    return found._replace(run=run), calls


def test_a_ready_host_is_not_asked_again_soon(tmp_path: Path) -> None:
    machine, calls = counting(tmp_path)
    path = tmp_path / "ready.json"
    first = readiness.check_remembered(machine, Wanted(ALL3), path, "key", now=1000.0)
    asked = len(calls)
    assert first.ready and asked > 0
    again = readiness.check_remembered(machine, Wanted(ALL3), path, "key", now=1300.0)
    assert len(calls) == asked  # docker was not asked
    assert again.checks == first.checks and again.insecure == first.insecure
    readiness.check_remembered(machine, Wanted(ALL3), path, "another engine", now=1300.0)
    assert len(calls) > asked  # another fingerprint: asked again
    asked = len(calls)
    readiness.check_remembered(machine, Wanted(("linux/s390x",)), path, "key", now=1300.0)
    assert len(calls) > asked  # another question
    asked = len(calls)
    readiness.check_remembered(machine, Wanted(ALL3), path, "key", now=1000.0 + readiness.READY_FOR + 1)
    assert len(calls) > asked  # too old
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_host_that_is_not_ready_is_asked_every_time(tmp_path: Path) -> None:
    answers = docker()
    answers[("docker", "buildx", "version")] = (1, "", "not installed")
    machine = host(tmp_path, answers)
    path = tmp_path / "ready.json"
    assert not readiness.check_remembered(machine, Wanted(ALL3), path, "key").ready
    assert not path.exists()


def test_the_fingerprint_follows_the_emulators_and_the_engine(tmp_path: Path) -> None:
    root = tmp_path / "binfmt"
    root.mkdir()
    (root / "qemu-aarch64").write_text("enabled\n")
    env = {"DOCKER_CONFIG": str(tmp_path / "docker"), "DOCKER_HOST": "unix:///a.sock"}
    first = readiness.fingerprint(env, root)
    assert readiness.fingerprint(env, root) == first
    (root / "qemu-aarch64").write_text("disabled\n")
    assert readiness.fingerprint(env, root) != first
    assert readiness.fingerprint({**env, "DOCKER_HOST": "unix:///b.sock"}, root) != readiness.fingerprint(
        env, root
    )
