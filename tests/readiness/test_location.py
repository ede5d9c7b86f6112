"""Where the engine runs, from what docker says, against this machine.

Recordings of engines that cannot run here, with where each comes from:
- Docker Desktop on macOS: docker/for-mac#7402 (client darwin/arm64, context desktop-linux,
  "Server: Docker Desktop 4.33.0", kernel 6.10.0-linuxkit, engine linux/arm64) and
  docker/for-mac#7108 (the VM's host name, `docker-desktop`); the socket is Docker Desktop's
  documented `~/.docker/run/docker.sock`.
- colima on macOS: abiosoft/colima#712 (`socket: unix:///Users/$USER/.colima/default/docker.sock`,
  arch aarch64) and docker/actions-toolkit#201 (colima runs Ubuntu since 0.6.0).
- The lab's own engine, recorded there (tests/readiness/recorded.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mab_hook import readiness
from mab_hook.readiness import FAIL, OK, WARN, Wanted
from mab_hook.readiness.location import locate
from tests.readiness.recorded import CONTAINERD, LAB_CONTEXT, Answers, by_name, docker, host, info

DESKTOP = {"OperatingSystem": "Docker Desktop", "KernelVersion": "6.10.0-linuxkit", "Name": "docker-desktop",
           "ID": "desktop-engine", "Architecture": "aarch64"}  # fmt: skip
DESKTOP_CONTEXT = json.dumps({"Name": "desktop-linux",
                              "Endpoints": {"docker": {"Host": "unix:///Users/dev/.docker/run/docker.sock"}}})  # fmt: skip
COLIMA = {"OperatingSystem": "Ubuntu 24.04.1 LTS", "KernelVersion": "6.8.0-50-generic", "Name": "colima",
          "ID": "colima-engine", "Architecture": "aarch64"}  # fmt: skip
COLIMA_CONTEXT = json.dumps({"Name": "colima",
                             "Endpoints": {"docker": {"Host": "unix:///Users/dev/.colima/default/docker.sock"}}})  # fmt: skip
INFO = ("docker", "info", "--format", "{{json .}}")
CONTEXT = ("docker", "context", "inspect", "--format", "{{json .}}")


def engine_answers(engine: dict[str, str], context: str) -> Answers:
    answers = docker()
    answers[INFO] = (0, info(CONTAINERD, **engine))
    answers[CONTEXT] = (0, context)
    return answers


@pytest.mark.parametrize(("engine", "context", "client", "where"), [
    ({}, LAB_CONTEXT, "linux", "this machine"),
    (DESKTOP, DESKTOP_CONTEXT, "darwin", "a Docker Desktop VM"),
    (COLIMA, COLIMA_CONTEXT, "darwin", "a colima VM"),
    ({"Name": "build-box"}, json.dumps({"Name": "remote", "Endpoints": {"docker": {"Host": "ssh://ci@build-box"}}}),
     "linux", "another machine (ssh://ci@build-box)"),
    ({"Name": "elsewhere"}, LAB_CONTEXT, "linux", "another machine (elsewhere, this is vm)"),
    ({}, LAB_CONTEXT, "darwin", "another machine or a VM (macOS runs no Linux engine itself)"),
    ({}, json.dumps({"Name": "default", "Endpoints": {"docker": {"Host": "npipe:////./pipe/dockerDesktopLinuxEngine"}}}),
     "win32", "a Docker Desktop VM"),
])  # fmt: skip
def test_where_the_engine_is(
    tmp_path: Path, engine: dict[str, str], context: str, client: str, where: str
) -> None:
    found = locate(host(tmp_path, engine_answers(engine, context), client_os=client))
    assert (found.where, found.local) == (where, where == "this machine")


def test_docker_desktop_judges_emulation_on_the_engines_side(tmp_path: Path) -> None:
    """On a Mac there is no /proc: the engine's builder list and a probe decide."""
    probed: list[tuple[str, str | None, str]] = []

    def probe(platform: str, builder: str | None, engine: str) -> bool:
        probed.append((platform, builder, engine))
        return True

    machine = host(tmp_path, engine_answers(DESKTOP, DESKTOP_CONTEXT), client_os="darwin", root=tmp_path / "no-proc",
                   machine="arm64", probe=probe)  # fmt: skip
    report = readiness.check(machine, Wanted(("linux/amd64", "linux/arm64", "linux/arm/v7")))
    checks = by_name(report)
    assert report.ready, checks
    assert checks["engine"].finding == ("a Docker Desktop VM, kernel 6.10.0-linuxkit (context desktop-linux, "
                                        "unix:///Users/dev/.docker/run/docker.sock); emulation judged on the engine's side")  # fmt: skip
    assert checks["platform linux/arm64"].finding == "native on the engine's aarch64 machine"
    assert (
        checks["platform linux/amd64"].finding
        == "builder default lists it (emulation judged on the engine's side)"
    )
    # the recorded builder does not list arm/v7: a probe, once, by the engine's ID
    assert probed == [("linux/arm/v7", "default", "desktop-engine")]
    assert "binfmt_misc" not in " ".join(c.finding + c.fix for c in report.checks)


def test_an_engine_elsewhere_that_cannot_run_a_platform_gets_an_engine_side_fix(tmp_path: Path) -> None:
    machine = host(tmp_path, engine_answers(COLIMA, COLIMA_CONTEXT), client_os="darwin", root=tmp_path / "no-proc",
                   probe=lambda platform, builder, engine: False)  # fmt: skip
    check = by_name(readiness.check(machine, Wanted(("linux/arm/v7",))))["platform linux/arm/v7"]
    assert (check.status, check.code) == (FAIL, "engine-cannot-emulate")
    assert "docker run --privileged --rm tonistiigi/binfmt:qemu-v8.1.5 --install arm" in check.fix
    assert "colima start --arch arm" in check.fix and "--append" in check.fix
    assert "sudo mount" not in check.fix
    unknown = host(
        tmp_path, engine_answers(COLIMA, COLIMA_CONTEXT), client_os="darwin", root=tmp_path / "no-proc"
    )
    assert (
        by_name(readiness.check(unknown, Wanted(("linux/arm/v7",))))["platform linux/arm/v7"].status == WARN
    )


@pytest.mark.parametrize(("stderr", "finding", "fix"), [
    ('Failed to initialize: unable to resolve docker endpoint: context "nope": context not found: open x',
     "the docker context 'nope' does not exist", "`docker context ls`"),
    ("error during connect: Get \"http://docker.example/v1.45/version\": command [ssh -o ConnectTimeout=30 -- "
     "ssh://ci@build-box docker system dial-stdio] has exited with exit status 255",
     "the engine at ssh://ci@build-box does not answer", "ssh ci@build-box docker version"),
])  # fmt: skip
def test_a_context_or_endpoint_that_does_not_answer_is_named(
    tmp_path: Path, stderr: str, finding: str, fix: str
) -> None:
    answers = docker()
    answers[("docker", "version", "--format", "{{json .}}")] = (1, "", stderr)
    (check,) = readiness.check(host(tmp_path, answers), Wanted(("linux/amd64",))).checks
    assert check.status == FAIL and finding in check.finding and fix in check.fix


def test_the_lab_engine_is_here_and_uses_this_machines_binfmt(tmp_path: Path) -> None:
    checks = by_name(readiness.check(host(tmp_path), Wanted(("linux/arm64",))))
    assert checks["engine"].status == OK
    assert checks["engine"].finding.startswith("on this machine's kernel (context default")
    assert checks["platform linux/arm64"].finding.startswith("emulated by qemu-aarch64")


@pytest.mark.parametrize(("engine", "endpoint", "where"), [
    ({"OperatingSystem": "Docker Desktop"}, "unix:///var/run/docker.sock", "a Docker Desktop VM"),
    ({"OperatingSystem": "OrbStack"}, "", "an OrbStack VM"),
    ({"Name": "rancher-desktop", "OperatingSystem": "Rancher Desktop WSL Distribution"}, "", "a Rancher Desktop VM"),
    ({"Name": "lima-default", "OperatingSystem": "Ubuntu"}, "", "a lima VM"),
    ({"OperatingSystem": "Boot2Docker 19.03"}, "", "a boot2docker VM"),
    ({}, "unix:///Users/me/.docker/run/docker.sock", "a Docker Desktop VM"),
    ({}, "unix:///Users/me/.colima/default/docker.sock", "a colima VM"),
    ({}, "unix:///Users/me/.orbstack/run/docker.sock", "an OrbStack VM"),
    ({}, "unix:///Users/me/.rd/docker.sock", "a Rancher Desktop VM"),
    ({}, "unix:///Users/me/.lima/default/sock/docker.sock", "a lima VM"),
    ({}, "npipe:////./pipe/dockerDesktopLinuxEngine", "a Docker Desktop VM"),
    ({}, "tcp://10.0.0.5:2376", "another machine (tcp://10.0.0.5:2376)"),
    ({"Name": "builder-7"}, "unix:///var/run/docker.sock", "another machine (builder-7, this is vm)"),
    ({"KernelVersion": "5.15.0"}, "unix:///var/run/docker.sock", "another kernel (5.15.0, this one runs 6.18.44-fc-v1045)"),
])  # fmt: skip
def test_where_the_engine_runs_by_what_docker_says(
    tmp_path: Path, engine: dict[str, str], endpoint: str, where: str
) -> None:
    context = json.dumps({"Name": "ctx", "Endpoints": {"docker": {"Host": endpoint}}})
    answers = engine_answers({"OperatingSystem": "Debian", "Name": "vm", **engine}, context)
    found = locate(host(tmp_path, answers))
    assert (found.local, found.where) == (False, where)
    via = f"context ctx, {endpoint}" if endpoint else "context ctx"
    assert by_name(readiness.check(host(tmp_path / "c", answers), Wanted(("linux/amd64",))))["engine"] == readiness.Check(
        "engine", OK, f"{where}, kernel {found.kernel} ({via}); emulation judged on the engine's side")  # fmt: skip


@pytest.mark.parametrize(("client", "said"), [("darwin", "macOS"), ("win32", "Windows")])
def test_a_client_that_runs_no_linux_engine_itself(tmp_path: Path, client: str, said: str) -> None:
    found = locate(
        host(tmp_path, engine_answers({"OperatingSystem": "Debian"}, LAB_CONTEXT), client_os=client)
    )
    assert found.where == f"another machine or a VM ({said} runs no Linux engine itself)"


def test_what_docker_does_not_say_is_left_empty(tmp_path: Path) -> None:
    answers = docker()
    answers[INFO] = (0, "{}")
    answers[CONTEXT] = (0, "{}")
    found = locate(host(tmp_path, answers))
    assert found == readiness.location.Engine(True, "this machine", "default", "", "", "", "")
    assert readiness.location.check_engine(found) == readiness.Check(
        "engine", OK, "on this machine's kernel (context default): emulation judged by its binfmt_misc")  # fmt: skip


def test_an_engine_elsewhere_that_names_no_kernel() -> None:
    engine = readiness.location.Engine(
        False, "another machine (tcp://b:2375)", "ci", "tcp://b:2375", "", "", ""
    )
    assert readiness.location.check_engine(engine) == readiness.Check(
        "engine", OK, "another machine (tcp://b:2375) (context ci, tcp://b:2375); emulation judged on the engine's side")  # fmt: skip
