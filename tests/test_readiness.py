"""Every readiness check's ok / warn / fail paths, on fixture /proc trees and recorded CLI output."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping
from pathlib import Path

import git as gitpython
import pytest

from mab_hook import builders, changes, hook, planning, readiness
from mab_hook.errors import FatalError
from mab_hook.output import Printer
from mab_hook.process import Completed
from mab_hook.readiness import FAIL, OK, WARN, Check, Host, Wanted
from mab_hook.registry import Access, Insecure
from tests.conftest import Repo
from tests.test_binfmt import AARCH64, ARM, proc

FIXTURES = Path(__file__).parent / "fixtures" / "buildx"
VERSION = (FIXTURES / "version.json").read_text()
LS_DOCKER = (FIXTURES / "ls-docker-driver.json").read_text()
INSPECT_DOCKER = (FIXTURES / "inspect-docker-driver.txt").read_text()
LS_MULTI = (FIXTURES / "ls-multi-node.json").read_text()
CONTAINERD = '[["driver-type","io.containerd.snapshotter.v1"]]'
REGISTRY_CONFIG = json.dumps({
    "InsecureRegistryCIDRs": ["127.0.0.0/8", "10.20.0.0/16"],
    "IndexConfigs": {"docker.io": {"Name": "docker.io", "Secure": True},
                     "plain.internal:5000": {"Name": "plain.internal:5000", "Secure": False}},
})  # fmt: skip


def info(driver_status: str) -> str:
    """`docker info --format '{{json .}}'`, the parts the checks read."""
    return json.dumps(
        {"DriverStatus": json.loads(driver_status), "RegistryConfig": json.loads(REGISTRY_CONFIG)}
    )


def fake_run(
    answers: Mapping[tuple[str, ...], tuple[int, str] | tuple[int, str, str]],
) -> Callable[[tuple[str, ...]], Completed]:
    """A docker that answers from recordings; anything unrecorded fails the test."""
    calls: list[tuple[str, ...]] = []

    def run(cmd: tuple[str, ...]) -> Completed:
        calls.append(cmd)
        if cmd not in answers:
            raise AssertionError(f"unexpected command {cmd}")
        code, out, *err = answers[cmd]
        return Completed(cmd, code, out, err[0] if err else "")

    return run


Answer = tuple[int, str] | tuple[int, str, str]
Answers = dict[tuple[str, ...], Answer]


def docker() -> Answers:
    """What the lab's docker answers (recorded)."""
    return {
        ("docker", "version", "--format", "{{json .}}"): (0, VERSION),
        ("docker", "buildx", "version"): (0, "github.com/docker/buildx 0.13.1+ds1 0.13.1+ds1-3\n"),
        ("docker", "buildx", "inspect"): (0, INSPECT_DOCKER),
        ("docker", "buildx", "ls", "--format", "json"): (0, LS_DOCKER),
        ("docker", "info", "--format", "{{json .}}"): (0, info(CONTAINERD)),
    }


ANSWERS = Access(True, "anonymous", "answers")


def host(
    tmp_path: Path,
    answers: Answers | None = None,
    *,
    machine: str = "x86_64",
    root: Path | None = None,
    access: Access = ANSWERS,
    asked: list[tuple[str, Insecure]] | None = None,
) -> Host:
    def answer(reference: str, insecure: Insecure) -> Access:
        if asked is not None:
            asked.append((reference, insecure))
        return access

    binfmt_root = root if root is not None else proc(tmp_path, qemu_aarch64=AARCH64, qemu_arm=ARM)
    return Host(fake_run(answers or docker()), machine, binfmt_root, answer)


def by_name(report: readiness.Report) -> dict[str, Check]:
    return {check.name: check for check in report.checks}


ALL3 = ("linux/amd64", "linux/arm64", "linux/arm/v7")


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


def test_multi_node_builder_serves_platforms_natively(tmp_path: Path) -> None:
    """A native arm64 node over ssh needs no emulation here, even with binfmt_misc unmounted."""
    answers = docker()
    answers[("docker", "buildx", "inspect", "fleet")] = (
        0,
        (FIXTURES / "inspect-multi-node-old-label.txt").read_text(),
    )
    answers[("docker", "buildx", "ls", "--format", "json")] = (0, LS_MULTI)
    report = readiness.check(host(tmp_path, answers, root=tmp_path / "unmounted"),
                             Wanted(("linux/amd64", "linux/386", "linux/arm64", "linux/arm/v7"), builder="fleet"))  # fmt: skip
    checks = by_name(report)
    assert report.ready
    assert checks["platform linux/arm64"].finding == "served by node fleet1 (ssh://builder@arm-box.internal)"
    assert checks["platform linux/arm/v7"].finding == "served by node fleet1 (ssh://builder@arm-box.internal)"
    assert checks["platform linux/386"].finding == "native on this x86_64 host"


def test_kubernetes_and_remote_drivers(tmp_path: Path) -> None:
    answers = docker()
    answers[("docker", "buildx", "ls", "--format", "json")] = (0, LS_MULTI)
    answers[("docker", "buildx", "inspect", "k8s")] = (0, "Name: k8s\nDriver: kubernetes\n")
    answers[("docker", "buildx", "inspect", "remote-bk")] = (0, "Name: remote-bk\nDriver: remote\n")
    k8s = by_name(
        readiness.check(host(tmp_path, answers), Wanted(("linux/arm64", "linux/s390x"), builder="k8s"))
    )
    assert k8s["driver"].status == OK
    assert k8s["platform linux/arm64"].finding.startswith("served by node k8s-arm64")
    # No node serves s390x and the local kernel's emulators do not help a remote builder.
    assert k8s["platform linux/s390x"].status == FAIL
    assert (
        "docker buildx create --append --name k8s --platform linux/s390x" in k8s["platform linux/s390x"].fix
    )
    remote = by_name(
        readiness.check(host(tmp_path / "r", answers), Wanted(("linux/riscv64",), builder="remote-bk"))
    )
    assert (
        remote["platform linux/riscv64"].finding
        == "served by node remote-bk0 (tcp://buildkitd.internal:1234)"
    )


@pytest.mark.parametrize(("handlers", "status", "finding", "fix"), [
    ({}, FAIL, "no emulator is registered for arm64 ELF programs",
     "docker run --privileged --rm tonistiigi/binfmt:qemu-v8.1.5 --install arm64"),
    ({"qemu_aarch64": AARCH64.replace("enabled", "disabled", 1)}, FAIL,
     "the arm64 emulator (qemu-aarch64) is registered but disabled", "echo 1 | sudo tee "),
    ({"qemu_aarch64": AARCH64.replace("flags: PF", "flags: ").replace("/usr/libexec", "/nonexistent")}, FAIL,
     "qemu-aarch64's interpreter /nonexistent/qemu-binfmt/aarch64-binfmt-P does not exist", "--install arm64"),
    ({"qemu_aarch64": AARCH64.replace("flags: PF", "flags: P").replace("/usr/libexec/qemu-binfmt/aarch64-binfmt-P", "/bin/sh")},
     WARN, "without the F flag RUN steps in linux/arm64 containers fail", "--install arm64"),
])  # fmt: skip
def test_emulation_problems(
    tmp_path: Path, handlers: dict[str, str], status: str, finding: str, fix: str
) -> None:
    report = readiness.check(host(tmp_path, root=proc(tmp_path, **handlers)), Wanted(("linux/arm64",)))
    check = by_name(report)["platform linux/arm64"]
    assert check.status == status
    assert finding in check.finding
    assert fix in check.fix


def test_binfmt_not_mounted_or_disabled(tmp_path: Path) -> None:
    unmounted = by_name(readiness.check(host(tmp_path, root=tmp_path / "none"), Wanted(("linux/arm64",))))
    check = unmounted["platform linux/arm64"]
    assert check.status == FAIL
    assert "is not mounted" in check.finding
    assert "sudo mount -t binfmt_misc binfmt_misc" in check.fix
    disabled = by_name(readiness.check(host(tmp_path, root=proc(tmp_path, "disabled", qemu_aarch64=AARCH64)),
                                       Wanted(("linux/arm64",))))  # fmt: skip
    assert disabled["platform linux/arm64"].finding == "binfmt_misc is disabled as a whole"


def test_a_custom_binfmt_image_is_suggested(tmp_path: Path) -> None:
    report = readiness.check(host(tmp_path, root=proc(tmp_path)),
                             Wanted(("linux/arm/v7",), binfmt_image="mirror.internal/binfmt:qemu-v8.1.5"))  # fmt: skip
    assert (
        "docker run --privileged --rm mirror.internal/binfmt:qemu-v8.1.5 --install arm"
        in by_name(report)["platform linux/arm/v7"].fix
    )


def test_the_registry_is_asked_with_the_daemons_insecure_registries(tmp_path: Path) -> None:
    asked: list[tuple[str, Insecure]] = []
    report = readiness.check(
        host(tmp_path, asked=asked), Wanted(("linux/amd64",), registry="plain.internal:5000/t/api")
    )
    assert by_name(report)["registry"] == Check("registry", OK, "answers")
    assert asked == [
        ("plain.internal:5000/t/api", (("plain.internal:5000",), ("127.0.0.0/8", "10.20.0.0/16")))
    ]
    assert report.insecure == asked[0][1]  # handed on to the builds' registry gateway


@pytest.mark.parametrize(("code", "fix"), [
    ("no-credentials", "`docker login registry.internal`"),
    ("refused", "`docker login registry.internal` with credentials that may push there"),
    ("unreachable", "check the address in [tool.multiarch] registry and that the registry runs"),
    ("error", "check the registry address and its health"),
])  # fmt: skip
def test_registry_problems_and_their_fixes(tmp_path: Path, code: str, fix: str) -> None:
    found = host(tmp_path, access=Access(False, code, f"it said {code}"))
    check = by_name(readiness.check(found, Wanted(("linux/amd64",), registry="registry.internal/team/api")))[
        "registry"
    ]
    assert check == Check("registry", FAIL, f"it said {code}", fix, f"registry-{code}")


def test_parse_ls_json_deduplicates() -> None:
    found = builders.parse_ls_json(LS_DOCKER)
    assert [b.name for b in found] == ["default"]
    assert "linux/arm64" in found[0].nodes[0].platforms


def test_parse_inspect_old_and_new_labels() -> None:
    new = builders.parse_inspect(INSPECT_DOCKER)
    assert (new.name, new.driver, new.nodes[0].buildkit, new.nodes[0].status) == (
        "default",
        "docker",
        "v0.0.0+unknown",
        "running",
    )
    old = builders.parse_inspect((FIXTURES / "inspect-multi-node-old-label.txt").read_text())
    assert [(n.name, n.buildkit, n.platforms[0]) for n in old.nodes] == [
        ("fleet0", "v0.11.6", "linux/amd64"), ("fleet1", "v0.11.6", "linux/arm64")]  # fmt: skip


def test_fixes(tmp_path: Path) -> None:
    answers = docker()
    answers[("docker", "buildx", "inspect", "multi-arch")] = (1, "", "no builder")
    answers[("mount", "-t", "binfmt_misc", "binfmt_misc", str(tmp_path / "none"))] = (0, "")
    create = ("docker", "buildx", "create", "--name", "multi-arch", "--node", "multi-arch0", "--driver",
              "docker-container", "--use")  # fmt: skip
    answers[create] = (0, "multi-arch\n")
    answers[("docker", "buildx", "inspect", "--bootstrap", "multi-arch")] = (1, "", "boom: cannot start")
    h = host(tmp_path, answers, root=tmp_path / "none")
    wanted = Wanted(("linux/arm64",), builder="multi-arch")
    report = readiness.check(h, wanted)
    assert readiness.apply_fixes(h, report, wanted) == [
        f"{' '.join(create)}: done",
        "docker buildx inspect --bootstrap multi-arch: failed (exit 1): boom: cannot start",
    ]
    # With the builder there, the unmounted binfmt_misc is what gets fixed, then the bootstrap.
    answers[("docker", "buildx", "inspect", "multi-arch")] = (
        0,
        "Name: multi-arch\nDriver: docker-container\n\nNodes:\nName: m0\nEndpoint: unix:///var/run/docker.sock\nStatus: inactive\n",
    )
    report = readiness.check(h, wanted)
    assert readiness.apply_fixes(h, report, wanted) == [
        f"mount -t binfmt_misc binfmt_misc {tmp_path / 'none'}: done",
        "docker buildx inspect --bootstrap multi-arch: failed (exit 1): boom: cannot start",
    ]


def test_a_configured_builder_is_created_node_by_node() -> None:
    spec = builders.BuilderSpec(
        "fleet", "docker-container", (("network", "host"),),
        (builders.NodeSpec("local", "", ("linux/amd64",)),
         builders.NodeSpec("arm", "ssh://builder@arm-box.internal", ("linux/arm64", "linux/arm/v7"))),
    )  # fmt: skip
    assert spec.create_commands() == [
        ("docker", "buildx", "create", "--name", "fleet", "--node", "local", "--driver", "docker-container",
         "--driver-opt", "network=host", "--platform", "linux/amd64", "--use"),
        ("docker", "buildx", "create", "--name", "fleet", "--node", "arm", "--append", "--platform",
         "linux/arm64,linux/arm/v7", "ssh://builder@arm-box.internal"),
        ("docker", "buildx", "inspect", "--bootstrap", "fleet"),
    ]  # fmt: skip


def test_the_gate_shows_warnings_briefly_and_stops_on_failures(
    tmp_path: Path, repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.commit({"pyproject.toml": '[tool.multiarch]\nplatforms = ["linux/arm/v7", "linux/s390x"]\n',
                 "app/Dockerfile": "FROM busybox\n"})  # fmt: skip
    handle = gitpython.Repo(repo.path)
    plans = [
        planning.plan_at(handle, changes.for_all(handle, "HEAD", None, "t"), build_platform="linux/amd64")
    ]
    stream = io.StringIO()
    with pytest.raises(FatalError) as info:
        hook.ensure_ready(plans, host(tmp_path), Printer(stream, color=False))
    assert stream.getvalue() == (
        "mab-hook: warning: platform linux/arm/v7: builder default does not list linux/arm/v7, but BuildKit "
        "runs it this way (`mab-hook doctor` says more)\n"
    )
    assert "this host cannot build what the push needs; nothing was built" in str(info.value)
    assert "no emulator is registered for s390x ELF programs" in str(info.value)
