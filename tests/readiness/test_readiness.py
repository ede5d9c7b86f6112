"""A ready host is remembered for a short while, for the same question and fingerprint."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mab_hook import readiness
from mab_hook.process import Completed
from mab_hook.readiness import FAIL, Wanted
from tests.readiness import recorded
from tests.readiness.recorded import ALL3, by_name, docker, host


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


def test_the_fingerprint_follows_the_builder_the_docker_binary_and_the_engines_socket(tmp_path: Path) -> None:
    root = tmp_path / "binfmt"
    root.mkdir()
    bin_dir, sock = tmp_path / "bin", tmp_path / "docker.sock"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text("#!/bin/sh\n")
    (bin_dir / "docker").chmod(0o755)
    sock.write_text("")
    env = {"DOCKER_CONFIG": str(tmp_path / "docker"), "DOCKER_HOST": f"unix://{sock}", "PATH": str(bin_dir)}
    first = readiness.fingerprint(env, root)
    for changed in ({"BUILDX_BUILDER": "arm"}, {"BUILDX_CONFIG": str(tmp_path / "bx")}):
        assert readiness.fingerprint({**env, **changed}, root) != first
    (bin_dir / "docker").unlink()
    (bin_dir / "docker").write_text("#!/bin/sh\n# another docker\n")
    (bin_dir / "docker").chmod(0o755)
    second = readiness.fingerprint(env, root)
    assert second != first
    sock.unlink()
    sock.write_text("")  # the engine started again: a new socket
    assert readiness.fingerprint(env, root) != second


@pytest.mark.parametrize("kept", [
    '{"q": {"at": 99999999999, "checks": [], "insecure": [[], []]}}',  # written in the future
    '{"q": {"at": 1000, "checks": [{"nonsense": 1}], "insecure": [[], []]}}',
    '{"q": {"at": 1000, "checks": [], "insecure": 5}}', '{"q": 5}', "[1, 2]", "{not json", "",
    '{"q": {"at": "a while ago", "checks": [], "insecure": [[], []]}}',
])  # fmt: skip
def test_a_damaged_or_future_answer_is_asked_again(tmp_path: Path, kept: str) -> None:
    machine, calls = counting(tmp_path)
    path = tmp_path / "ready.json"
    path.write_text(kept.replace('"q"', '"' + question_of(Wanted(ALL3), "key") + '"'))
    assert readiness.check_remembered(machine, Wanted(ALL3), path, "key", now=1100.0).ready
    assert calls  # docker was asked
    assert readiness.check_remembered(
        machine, Wanted(ALL3), path, "key", now=1200.0
    ).ready  # rewritten, sound


def question_of(wanted: Wanted, key: str) -> str:
    return readiness.question_key(wanted, key)


def test_a_probe_is_remembered_per_engine_builder_and_platform_and_only_when_it_ran(tmp_path: Path) -> None:
    from mab_hook.process import Completed  # noqa: PLC0415

    ran: list[tuple[str, ...]] = []
    code = [0]

    def run(cmd: tuple[str, ...]) -> Completed:
        ran.append(cmd)
        return Completed(cmd, code[0], "", "exec format error" if code[0] else "")

    path = tmp_path / "probes.json"
    assert readiness.remembered_probe(path, run, "linux/arm64", None, "engine-1") is True
    assert json.loads(path.read_text()) == {"engine-1||linux/arm64": True}
    assert readiness.remembered_probe(path, run, "linux/arm64", None, "engine-1") is True
    assert len(ran) == 1  # remembered
    code[0] = 1
    for builder, engine in ((None, "engine-2"), ("fleet", "engine-1")):
        assert readiness.remembered_probe(path, run, "linux/arm64", builder, engine) is False
    assert len(ran) == 3 and json.loads(path.read_text()) == {
        "engine-1||linux/arm64": True
    }  # failures are not kept
    assert readiness.remembered_probe(path, run, "linux/arm64", "fleet", "engine-1") is False
    assert len(ran) == 4  # a failure is asked again: it may be fixed by then
    assert (
        readiness.remembered_probe(path, run, "linux/mips64le", None, "engine-1") is None
    )  # no probe program
    assert readiness.remembered_probe(None, run, "linux/arm64", None, "engine-1") is False
    path.write_text("{damaged")
    code[0] = 0
    assert readiness.remembered_probe(path, run, "linux/arm64", None, "engine-1") is True
    assert len(ran) == 6


@pytest.mark.parametrize("change", ["config.json", "contexts/meta", "buildx/instances", "buildx/current"])
def test_the_fingerprint_follows_dockers_config_where_docker_reads_it(tmp_path: Path, change: str) -> None:
    """Credentials, contexts and builders: in DOCKER_CONFIG, else ~/.docker."""
    root = tmp_path / "binfmt"
    root.mkdir()
    for env, config in (({"DOCKER_CONFIG": str(tmp_path / "dc")}, tmp_path / "dc"),
                        ({"HOME": str(tmp_path / "home")}, tmp_path / "home" / ".docker")):  # fmt: skip
        target = config / change
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("one") if "." in change or change.endswith("current") else target.mkdir()
        first = readiness.fingerprint(env, root)
        if target.is_dir():
            os.utime(target, ns=(1, 1))
        else:
            target.write_text("two")
            os.utime(target, ns=(2, 2))
        assert readiness.fingerprint(env, root) != first, (env, change)


def test_the_fingerprint_follows_the_context_and_the_default_socket(tmp_path: Path) -> None:
    root = tmp_path / "binfmt"
    root.mkdir()
    env = {"DOCKER_CONFIG": str(tmp_path / "dc")}
    assert readiness.fingerprint({**env, "DOCKER_CONTEXT": "work"}, root) != readiness.fingerprint(env, root)
    assert readiness.fingerprint({**env, "DOCKER_HOST": "tcp://a:2375"}, root) != readiness.fingerprint(
        env, root
    )


def test_docker_is_asked_each_question_once(tmp_path: Path) -> None:
    machine, calls = counting(tmp_path)
    readiness.check(machine, Wanted(ALL3))
    assert calls and len(calls) == len(set(calls))


def test_an_answer_is_fresh_from_the_moment_it_was_written_for_ready_for_seconds(tmp_path: Path) -> None:
    path = tmp_path / "ready.json"
    for now, asked_again in ((1000.0, False), (1000.0 + readiness.READY_FOR - 0.5, False),
                             (1000.0 + readiness.READY_FOR, True)):  # fmt: skip
        machine, calls = counting(tmp_path / str(now))
        path.write_text(json.dumps({question_of(Wanted(ALL3), "key"): {"at": 1000.0, "checks": [],
                                                                        "insecure": [[], []]}}))  # fmt: skip
        readiness.check_remembered(machine, Wanted(ALL3), path, "key", now=now)
        assert bool(calls) is asked_again, now


def test_a_local_host_is_this_machine_as_docker_sees_it(tmp_path: Path) -> None:
    import sys  # noqa: PLC0415

    local = readiness.local_host(dict(os.environ), "x86_64")
    assert (local.binfmt_root, local.client_os, local.machine) == (
        Path("/proc/sys/fs/binfmt_misc"), sys.platform, "x86_64")  # fmt: skip
    failed = local.run(("sh", "-c", "echo nope >&2; exit 3"))  # docker failing is an answer, not an error
    assert (failed.returncode, failed.stderr) == (3, "nope\n")


def test_the_fingerprint_follows_the_default_socket_when_no_host_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert readiness.DEFAULT_SOCKET == "/var/run/docker.sock"  # docker's own, without DOCKER_HOST
    sock = tmp_path / "docker.sock"
    sock.write_text("")
    monkeypatch.setattr(readiness, "DEFAULT_SOCKET", str(sock))
    root = tmp_path / "binfmt"
    root.mkdir()
    env = {"DOCKER_CONFIG": str(tmp_path / "dc")}
    first = readiness.fingerprint(env, root)
    sock.unlink()
    sock.write_text("")  # dockerd started again
    assert readiness.fingerprint(env, root) != first


def test_an_ok_check_has_no_fix_and_no_code(tmp_path: Path) -> None:
    from mab_hook import output  # noqa: PLC0415

    report = readiness.check(host(tmp_path), Wanted(ALL3[:2]))
    shown = output.checks_json(report)["checks"]
    assert {(c["fix"], c["code"]) for c in shown if c["status"] == "ok"} == {("", None)}


def test_an_engine_that_is_a_docker_context_is_checked_where_it_runs_and_named_in_every_check(
    tmp_path: Path,
) -> None:
    answers = {**recorded.docker(), **recorded.through_context("arm-box", recorded.arm_engine())}
    calls: list[tuple[str, ...]] = []
    run = recorded.fake_run(answers)

    def recording(cmd: tuple[str, ...]) -> Completed:
        calls.append(cmd)
        return run(cmd)

    machine = recorded.host(tmp_path, answers)._replace(run=recording)
    report = readiness.check(machine, Wanted(("linux/arm64",), engine="arm-box"))
    assert report.ready, report.checks
    assert (report.engine, report.context) == ("arm-box", "arm-box")
    assert all(c.id.startswith("arm-box/") for c in report.checks)
    assert "native" in by_name(report)["arm-box/platform linux/arm64"].finding
    # After asking whether it is a context, docker only ever talks to that engine.
    assert calls[0] == ("docker", "context", "inspect", "--format", "{{.Name}}", "arm-box")
    assert all(cmd[:3] == ("docker", "--context", "arm-box") for cmd in calls[1:])


def test_an_engine_that_is_a_buildx_builder_is_asked_by_its_name(tmp_path: Path) -> None:
    answers = {**recorded.docker(), ("docker", "context", "inspect", "--format", "{{.Name}}", "fleet"): (1, "", "not found"),
               ("docker", "buildx", "inspect", "fleet"): (0, recorded.INSPECT_DOCKER)}  # fmt: skip
    report = readiness.check(recorded.host(tmp_path, answers), Wanted(("linux/arm64",), engine="fleet"))
    assert (report.engine, report.context) == ("fleet", "")
    assert report.checks[0].id == "fleet/docker"


def test_an_engine_nothing_names_fails_with_how_to_make_it(tmp_path: Path) -> None:
    answers: recorded.Answers = {("docker", "context", "inspect", "--format", "{{.Name}}", "arm-box"): (1, "", "not found"),
               ("docker", "buildx", "inspect", "arm-box"): (1, "", "no builder \"arm-box\" found")}  # fmt: skip
    report = readiness.check(recorded.host(tmp_path, answers), Wanted(("linux/arm64",), engine="arm-box"))
    (missing,) = report.checks
    assert (missing.id, missing.status, missing.code) == ("arm-box/engine", FAIL, "engine-missing")
    assert missing.finding == "no docker context or buildx builder is named arm-box"
    assert "docker context create arm-box --docker host=ssh://" in missing.fix


def test_an_engine_that_does_not_answer_fails_named(tmp_path: Path) -> None:
    down = recorded.arm_engine()
    down[("docker", "version", "--format", "{{json .}}")] = (
        1, "", "error during connect: ssh: connect to host arm-box port 22: Connection refused\n"
    )  # fmt: skip
    answers = recorded.through_context("arm-box", down)
    report = readiness.check(recorded.host(tmp_path, answers), Wanted(("linux/arm64",), engine="arm-box"))
    assert not report.ready
    failed = [c for c in report.checks if c.status == FAIL]
    assert [c.id for c in failed] == ["arm-box/docker"] and "arm-box port 22" in failed[0].finding
