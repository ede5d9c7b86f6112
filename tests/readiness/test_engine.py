"""Readiness of docker, buildx, the builder and its driver."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mab_hook import readiness
from mab_hook.process import Completed
from mab_hook.readiness import FAIL, OK, WARN, Check, Wanted
from mab_hook.readiness.engine import docker_hub_mirrors
from mab_hook.readiness.model import parse_json
from tests.readiness.recorded import (
    ALL3,
    INSPECT_CONTAINER,
    INSPECT_DOCKER,
    LS_CONTAINER,
    LS_MULTI,
    by_name,
    docker,
    fake_run,
    host,
    info,
)


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
    assert check == Check("docker", FAIL, "the docker CLI is not installed",
                          "install Docker Engine and its CLI (https://docs.docker.com/engine/install/)",
                          "docker-missing")  # fmt: skip


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
    assert (
        "docker buildx create --name multi-arch --driver docker-container --bootstrap" in check.fix
    )  # no --use
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


START = "start it (`sudo systemctl start docker`), or point DOCKER_HOST / `docker context use` at a running engine"
INSTALL_BUILDX = ("install the buildx plugin (Debian/Ubuntu: `apt-get install docker-buildx`, or the docker-buildx "
                  "binary in ~/.docker/cli-plugins/)")  # fmt: skip
VERSION_CMD = ("docker", "version", "--format", "{{json .}}")


@pytest.mark.parametrize(("said", "expected"), [
    ("one\ntwo\nCannot connect to the Docker daemon at unix:///x.sock. Is the docker daemon running?",
     Check("docker", FAIL, "the Docker daemon does not answer: two Cannot connect to the Docker daemon at "
           "unix:///x.sock. Is the docker daemon running?", START, "daemon-down")),
    ("", Check("docker", FAIL, "the Docker daemon does not answer: no answer", START, "daemon-down")),
    ('error: context "work" does not exist',
     Check("docker", FAIL, "the docker context 'work' does not exist", "`docker context ls` shows the contexts "
           "there are; `docker context use NAME`, or unset DOCKER_CONTEXT (it names 'work')", "context-missing")),
    ("Cannot connect to the Docker daemon at tcp://10.0.0.5:2376. Is the docker daemon running?",
     Check("docker", FAIL, "the engine at tcp://10.0.0.5:2376 does not answer: Cannot connect to the Docker daemon "
           "at tcp://10.0.0.5:2376. Is the docker daemon running?", "check that tcp://10.0.0.5:2376 answers "
           "(`docker -H tcp://10.0.0.5:2376 version`), or point DOCKER_HOST / `docker context use` at an "
           "engine that runs", "endpoint-down")),
    ("error during connect: ssh://me@build.lan: exit status 255",
     Check("docker", FAIL, "the engine at ssh://me@build.lan does not answer: error during connect: "
           "ssh://me@build.lan: exit status 255", "check that ssh://me@build.lan answers (`ssh "
           "me@build.lan docker version`), or point DOCKER_HOST / `docker context use` at an engine that runs",
           "endpoint-down")),
])  # fmt: skip
def test_an_engine_that_does_not_answer_is_told_by_what_docker_said(
    tmp_path: Path, said: str, expected: Check
) -> None:
    answers = docker()
    answers[VERSION_CMD] = (1, '{"Client":{"Version":"26.1.5"},"Server":null}', said)
    assert readiness.check(host(tmp_path, answers), Wanted(ALL3)).checks == (expected,)


def test_a_server_without_a_version_is_no_answer_and_a_client_without_one_is_said(tmp_path: Path) -> None:
    answers = docker()
    answers[VERSION_CMD] = (0, '{"Client":{"Version":"26.1.5"},"Server":{}}', "")
    (check,) = readiness.check(host(tmp_path, answers), Wanted(ALL3)).checks
    assert (check.code, check.finding) == ("daemon-down", "the Docker daemon does not answer: no answer")
    answers[VERSION_CMD] = (0, '{"Server":{"Version":"26.1.5"}}', "")
    assert by_name(readiness.check(host(tmp_path / "2", answers), Wanted(ALL3)))["docker"] == Check(
        "docker", OK, "client ?, server 26.1.5"
    )


@pytest.mark.parametrize(("answer", "expected"), [
    ((1, "", "docker: 'buildx' is not a docker command."),
     Check("buildx", FAIL, "docker buildx is not installed", INSTALL_BUILDX, "buildx-missing")),
    ((0, "no version here\n"), Check("buildx", FAIL, "docker buildx is not installed", INSTALL_BUILDX, "buildx-missing")),
    ((0, "github.com/docker/buildx v0.12.1 30feaa1\n"),
     Check("buildx", FAIL, "buildx v0.12.1 is older than 0.13", INSTALL_BUILDX, "buildx-old")),
    ((0, "github.com/docker/buildx v0.13.0 30feaa1\n"), Check("buildx", OK, "buildx 0.13.0")),
    ((0, "github.com/docker/buildx 1.2 x\n"), Check("buildx", OK, "buildx 1.2")),
])  # fmt: skip
def test_every_buildx_verdict(
    tmp_path: Path, answer: tuple[int, str, str] | tuple[int, str], expected: Check
) -> None:
    answers = docker()
    answers[("docker", "buildx", "version")] = answer
    assert by_name(readiness.check(host(tmp_path, answers), Wanted(ALL3)))["buildx"] == expected


@pytest.mark.parametrize(
    ("version", "ok"), [("v0.13.1", False), ("0.18.9", False), ("v0.19.0", True), ("1.0", True)]
)
def test_a_buildx_older_than_the_definition_files_need_fails(tmp_path: Path, version: str, ok: bool) -> None:
    answers = docker()
    answers[("docker", "buildx", "version")] = (0, f"github.com/docker/buildx {version} 30feaa1\n")
    found = by_name(readiness.check(host(tmp_path, answers), Wanted(ALL3, buildx=(0, 19, 0))))["buildx"]
    said = version.lstrip("v")
    assert found == (Check("buildx", OK, f"buildx {said}") if ok else Check(
        "buildx", FAIL, f"buildx {said} cannot read this repository's definition files (they need 0.19.0 or later)",
        "install buildx 0.19.0 or later (Docker's packages, or https://github.com/docker/buildx/releases)",
        "buildx-old"))  # fmt: skip


def test_a_missing_builder_named_or_current(tmp_path: Path) -> None:
    answers = docker()
    answers[("docker", "buildx", "inspect")] = (1, "", "ERROR: no current builder")
    report = readiness.check(host(tmp_path, answers), Wanted(ALL3))
    assert by_name(report)["builder"] == Check(
        "builder", FAIL, "no current builder",
        "create it: `docker buildx create --name multi-arch --driver docker-container --use --bootstrap` "
        "(mab-hook doctor --fix does)", "builder-missing")  # fmt: skip
    answers[("docker", "buildx", "inspect", "fleet")] = (1, "", 'ERROR: no builder "fleet" found')
    named = readiness.check(host(tmp_path / "2", answers), Wanted(ALL3, builder="fleet"))
    assert by_name(named)["builder"].fix == (
        "create it: `docker buildx create --name fleet --driver docker-container --bootstrap` "
        "(mab-hook doctor --fix does)"  # passed as --builder: the current builder stays the user's
    )


def test_a_builder_of_several_nodes_some_stopped(tmp_path: Path) -> None:
    answers = docker()
    answers[("docker", "buildx", "inspect", "fleet")] = (0, (
        "Name: fleet\nDriver: docker-container\n\nNodes:\nName: fleet0\nEndpoint: unix:///a.sock\nStatus: running\n\n"
        "Name: fleet1\nEndpoint: ssh://b\nStatus: inactive\n\nName: fleet2\nEndpoint: ssh://c\n"))  # fmt: skip
    answers[("docker", "buildx", "ls", "--format", "json")] = (1, "", "")
    report = readiness.check(host(tmp_path, answers), Wanted(ALL3, builder="fleet"))
    assert by_name(report)["builder"] == Check(
        "builder", WARN, "fleet (docker-container, 3 nodes) is not running (fleet1: inactive, fleet2: unknown)",
        "start it: `docker buildx inspect --bootstrap fleet` (mab-hook doctor --fix does)", "builder-stopped")  # fmt: skip
    assert by_name(report)["driver"] == Check(
        "driver", OK, "the docker-container driver builds several platforms at once"
    )


def test_every_driver_verdict(tmp_path: Path) -> None:
    assert by_name(readiness.check(host(tmp_path), Wanted(ALL3)))["driver"] == Check(
        "driver", OK, "the docker driver with the containerd image store builds several platforms"
    )
    answers = docker()
    answers[("docker", "info", "--format", "{{json .}}")] = (0, info('[["Backing Filesystem","extfs"]]'))
    two = by_name(readiness.check(host(tmp_path / "2", answers), Wanted(ALL3[:2])))["driver"]
    assert two == Check(
        "driver", FAIL, "the docker driver of builder default cannot build several platforms at once",
        "either create a docker-container builder (`docker buildx create --name multi-arch --driver "
        'docker-container --bootstrap`, and set builder = "multi-arch"), or turn on the containerd '
        'image store (daemon.json: {"features": {"containerd-snapshotter": true}}, then restart dockerd)',
        "driver-single-platform")  # fmt: skip


def test_insecure_registries_are_those_docker_info_calls_not_secure(tmp_path: Path) -> None:
    from mab_hook.readiness.engine import insecure_registries  # noqa: PLC0415

    answers = docker()
    answers[("docker", "info", "--format", "{{json .}}")] = (0, json.dumps({"RegistryConfig": {
        "InsecureRegistryCIDRs": ["127.0.0.0/8"],
        "IndexConfigs": {"docker.io": {"Secure": True}, "plain:5000": {"Secure": False}, "unsaid:5000": {}}}}))  # fmt: skip
    assert insecure_registries(host(tmp_path, answers)) == (("plain:5000",), ("127.0.0.0/8",))


def test_a_json_answer_is_an_object_or_nothing() -> None:
    assert parse_json('{"Id": "sha256:1"}') == parse_json(b'{"Id": "sha256:1"}') == {"Id": "sha256:1"}
    assert parse_json(b"[]") == {} and parse_json("nope") == {} and parse_json(b"") == {}


# As written: the commands docker is asked, never a name for them.
INFO = ("docker", "info", "--format", "{{json .}}")


def test_the_mirrors_of_the_engine_serve_the_docker_driver() -> None:
    said = [
        "https://mirror.internal:5000/",
        "http://plain.internal",
        "https://with.path/dockerhub",
        "ftp://x",
        3,
    ]
    info = json.dumps({"RegistryConfig": {"Mirrors": said}})
    run = fake_run({("docker", "buildx", "inspect"): (0, INSPECT_DOCKER), INFO: (0, info)})
    assert docker_hub_mirrors(run, None) == ("https://mirror.internal:5000", "http://plain.internal")


def test_a_docker_container_builders_own_mirrors() -> None:
    """The recorded builder's buildkitd.toml: mirrors = ["mirror.internal:5000"] for docker.io."""
    run = fake_run({("docker", "buildx", "inspect", "intranet"): (0, INSPECT_CONTAINER),
                    ("docker", "buildx", "ls", "--format", "json"): (0, LS_CONTAINER)})  # fmt: skip
    assert docker_hub_mirrors(run, "intranet") == ("https://mirror.internal:5000",)


def test_docker_that_cannot_say_means_no_mirror() -> None:
    run = fake_run({("docker", "buildx", "inspect"): (1, "", "no builder"), INFO: (1, "", "no engine")})
    assert docker_hub_mirrors(run, None) == ()
    garbled = fake_run({("docker", "buildx", "inspect"): (0, INSPECT_DOCKER), INFO: (0, "<no value>")})
    assert docker_hub_mirrors(garbled, None) == ()
