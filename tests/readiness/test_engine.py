"""Readiness of docker, buildx, the builder and its driver."""

from __future__ import annotations

from pathlib import Path

import pytest

from mab_hook import readiness
from mab_hook.process import Completed
from mab_hook.readiness import FAIL, OK, WARN, Check, Wanted
from tests.readiness.recorded import ALL3, LS_MULTI, by_name, docker, fake_run, host, info


def test_a_ready_lab_host(tmp_path: Path) -> None:
    report = readiness.check(host(tmp_path), Wanted(ALL3))
    checks = by_name(report)
    assert report.ready
    assert checks["docker"] == Check("docker", OK, "client 26.1.5+dfsg1, server 26.1.5+dfsg1")
    assert checks["buildx"].finding == "buildx 0.13.1"
    assert checks["builder"].finding == "default (docker, 1 node), running"
    assert checks["driver"].status == OK
    assert checks["platform linux/amd64"].finding == "native on this x86_64 host"
    assert checks["platform linux/arm64"] == Check(
        "platform:linux/arm64",
        OK,
        "emulated by qemu-aarch64 (/usr/libexec/qemu-binfmt/aarch64-binfmt-P, flags PF)",
    )
    # Seen on the lab: the docker driver omits linux/arm/v7 although arm/v7 RUN steps work.
    arm = checks["platform linux/arm/v7"]
    assert arm.status == WARN
    assert "builder default does not list linux/arm/v7" in arm.finding
    assert "docker-container" in arm.fix


def test_daemon_unreachable(tmp_path: Path) -> None:
    answers = docker()
    answers[("docker", "version", "--format", "{{json .}}")] = (
        1,
        '{"Client":{"Version":"26.1.5"},"Server":null}',
        "Cannot connect to the Docker daemon at unix:///nope.sock. Is the docker daemon running?",
    )
    report = readiness.check(host(tmp_path, answers), Wanted(ALL3))
    (check,) = report.checks
    assert (check.status, report.ready) == (FAIL, False)
    assert (
        "the Docker daemon does not answer: Cannot connect to the Docker daemon at unix:///nope.sock"
        in check.finding
    )
    assert "DOCKER_HOST" in check.fix


def test_docker_cli_missing(tmp_path: Path) -> None:
    recorded = fake_run(docker())

    def run(cmd: tuple[str, ...]) -> Completed:
        if cmd[0] == "docker":
            return Completed(cmd, 127, "", "'docker' not found on PATH", missing=True)
        return recorded(cmd)

    (check,) = readiness.check(host(tmp_path)._replace(run=run), Wanted(ALL3)).checks
    assert (check.status, check.finding, check.code) == (
        FAIL,
        "the docker CLI is not installed",
        "docker-missing",
    )


@pytest.mark.parametrize(("answer", "finding"), [
    ((1, "", "docker: 'buildx' is not a docker command."), "docker buildx is not installed"),
    ((0, "github.com/docker/buildx v0.12.1 30feaa1\n"), "buildx v0.12.1 is older than 0.13"),
])  # fmt: skip
def test_buildx_missing_or_old(
    tmp_path: Path, answer: tuple[int, str, str] | tuple[int, str], finding: str
) -> None:
    answers = docker()
    answers[("docker", "buildx", "version")] = answer
    checks = by_name(readiness.check(host(tmp_path, answers), Wanted(ALL3)))
    assert (checks["buildx"].status, checks["buildx"].finding) == (FAIL, finding)
    assert "docker-buildx" in checks["buildx"].fix


def test_configured_builder_missing(tmp_path: Path) -> None:
    answers = docker()
    answers[("docker", "buildx", "inspect", "multi-arch")] = (1, "", 'ERROR: no builder "multi-arch" found')
    report = readiness.check(host(tmp_path, answers), Wanted(ALL3, builder="multi-arch"))
    check = by_name(report)["builder"]
    assert (check.status, check.finding) == (FAIL, "builder 'multi-arch' does not exist")
    assert "docker buildx create --name multi-arch --driver docker-container --use --bootstrap" in check.fix
    assert report.builder is None


def test_docker_driver_without_containerd_store(tmp_path: Path) -> None:
    answers = docker()
    answers[("docker", "info", "--format", "{{json .}}")] = (0, info('[["Backing Filesystem","extfs"]]'))
    check = by_name(readiness.check(host(tmp_path, answers), Wanted(ALL3)))["driver"]
    assert check.status == FAIL
    assert "cannot build several platforms at once" in check.finding
    assert "docker-container" in check.fix and "containerd-snapshotter" in check.fix
    # One platform (a CI job of a fan-out, on a runner's stock engine) needs no more.
    alone = by_name(readiness.check(host(tmp_path / "alone", answers), Wanted(("linux/arm64",))))["driver"]
    assert (alone.status, alone.finding) == (
        OK,
        "the docker driver builds one platform at a time: enough here",
    )


def test_stopped_builder_is_a_warning_with_bootstrap(tmp_path: Path) -> None:
    answers = docker()
    answers[("docker", "buildx", "inspect", "stopped")] = (
        0,
        "Name: stopped\nDriver: docker-container\n\nNodes:\nName: stopped0\nEndpoint: unix:///var/run/docker.sock\nStatus: inactive\n",
    )
    answers[("docker", "buildx", "ls", "--format", "json")] = (0, LS_MULTI)
    report = readiness.check(host(tmp_path, answers), Wanted(("linux/arm64",), builder="stopped"))
    check = by_name(report)["builder"]
    assert (check.status, check.finding) == (
        WARN,
        "stopped (docker-container, 1 node) is not running (stopped0: inactive)",
    )
    assert check.fix.startswith("start it: `docker buildx inspect --bootstrap stopped`")
    assert by_name(report)["driver"].status == OK
