"""Readiness of each platform: builder nodes, the machine itself, QEMU through binfmt_misc."""

from __future__ import annotations

from pathlib import Path

import pytest

from mab_hook import binfmt, readiness
from mab_hook import probe as probes
from mab_hook.builders import Builder, Node
from mab_hook.readiness import FAIL, OK, WARN, Check, Wanted
from mab_hook.readiness.emulation import Scope, check_platform
from mab_hook.readiness.location import Engine
from tests.readiness.recorded import FIXTURES, LS_MULTI, by_name, docker, host
from tests.test_binfmt import AARCH64, proc


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
    # A node elsewhere may be another CPU: which steps ran natively cannot be told by the engine's.
    assert report.architecture == ""
    lab = readiness.check(host(tmp_path, docker()), Wanted(("linux/amd64", "linux/arm64")))
    assert lab.architecture == "x86_64"


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


def test_another_operating_system_needs_a_node_of_its_own(tmp_path: Path) -> None:
    """`windows/amd64` on a Linux engine: QEMU emulates CPUs, not operating systems."""
    check = by_name(readiness.check(host(tmp_path), Wanted(("windows/amd64",))))["platform windows/amd64"]
    assert (check.status, check.code) == (FAIL, "no-node")
    assert "windows images need a windows node" in check.finding


IMAGE = "tonistiigi/binfmt:qemu-v8.1.5"
LOCAL = Builder("default", "docker", (Node("default", "default", "running", ("linux/amd64", "linux/386")),))
CONTAINER = Builder(
    "multi", "docker-container", (Node("multi0", "unix:///var/run/docker.sock", "running", ()),)
)


def scope(tmp_path: Path, builder: Builder, handler: str = AARCH64, engine: Engine | None = None,
          probe: bool | None = None) -> Scope:  # fmt: skip
    machine = host(tmp_path, root=proc(tmp_path, qemu_aarch64=handler), probe=lambda p, b, e: probe)
    return Scope(machine, builder, binfmt.read(machine.binfmt_root), Wanted(("linux/arm64",)), engine)


def test_an_emulator_without_the_f_flag_is_a_warning_that_says_why(tmp_path: Path) -> None:
    without_f = AARCH64.replace("flags: PF", "flags: P").replace(
        "/usr/libexec/qemu-binfmt/aarch64-binfmt-P", "/bin/sh"
    )
    assert check_platform(scope(tmp_path, CONTAINER, without_f), "linux/arm64") == Check(
        "platform:linux/arm64", WARN,
        "emulated by qemu-aarch64 (/bin/sh, flags P): without the F flag RUN steps in linux/arm64 containers fail, "
        "because the kernel looks the interpreter up inside each container, where it does not exist",
        f"install the emulator: `docker run --privileged --rm {IMAGE} --install arm64` (or Debian's "
        "qemu-user-static), then run `mab-hook doctor` again", "emulator-without-f")  # fmt: skip


@pytest.mark.parametrize(("builder", "fix"), [
    (LOCAL, "if builds fail with 'runtime execution on platform linux/arm64 not supported', use a docker-container "
            "builder: `docker buildx create --name multi-arch --driver docker-container --bootstrap`, and set "
            'builder = "multi-arch" in [tool.multiarch]'),
    (CONTAINER._replace(nodes=(CONTAINER.nodes[0]._replace(platforms=("linux/amd64",)),)),
     "if builds fail with 'runtime execution on platform linux/arm64 not supported', recreate the builder so that "
     "it sees the emulators: `docker buildx rm multi && docker buildx create --name multi --driver "
     "docker-container --use --bootstrap`"),
])  # fmt: skip
def test_a_platform_the_builder_does_not_list_is_a_warning_with_its_fix(
    tmp_path: Path, builder: Builder, fix: str
) -> None:
    how = "emulated by qemu-aarch64 (/usr/libexec/qemu-binfmt/aarch64-binfmt-P, flags PF)"
    assert check_platform(scope(tmp_path, builder), "linux/arm64") == Check(
        "platform:linux/arm64", WARN, f"{how}; builder {builder.name} does not list linux/arm64, but BuildKit runs "
        "it this way", fix, "platform-unlisted")  # fmt: skip
    listed = builder._replace(nodes=(builder.nodes[0]._replace(platforms=("linux/arm64",)),))
    assert check_platform(scope(tmp_path / "2", listed), "linux/arm64") == Check(
        "platform:linux/arm64", OK, how
    )
    configured = scope(tmp_path / "3", builder)._replace(
        wanted=Wanted(("linux/arm64",), builder=builder.name)
    )
    assert check_platform(configured, "linux/arm64").fix == fix.replace(" --use", "")  # passed as --builder


ELSEWHERE = Engine(False, "another machine (ssh://ci@box)", "box", "ssh://ci@box", "6.1", "x86_64", "E1")
DESKTOP = ELSEWHERE._replace(where="a Docker Desktop VM (desktop-linux)")
COLIMA = ELSEWHERE._replace(where="a colima VM (colima)")
NATIVE_NODE = (
    "or a native node: `docker buildx create --append --name default --platform linux/arm64 <endpoint>`"
)
INSTALL = (f"install the emulator where the engine runs: `docker run --privileged --rm {IMAGE} --install arm64` "
           "(it runs on the engine's machine or VM)")  # fmt: skip


@pytest.mark.parametrize(("engine", "probe", "expected"), [
    (ELSEWHERE, True, Check("platform:linux/arm64", OK, "a linux/arm64 program ran in a build on default "
                            "(emulation judged on the engine's side, by a probe)")),
    (ELSEWHERE, None, Check("platform:linux/arm64", WARN, "builder default does not list linux/arm64, and no "
                            "probe program can tell (emulation judged on the engine's side)",
                            f"{INSTALL}; {NATIVE_NODE}", "engine-unknown")),
    (ELSEWHERE, False, Check("platform:linux/arm64", FAIL, "the engine (another machine (ssh://ci@box)) cannot run "
                             "linux/arm64 programs: a probe build failed", f"{INSTALL}; {NATIVE_NODE}",
                             "engine-cannot-emulate")),
    (DESKTOP, False, Check("platform:linux/arm64", FAIL, "the engine (a Docker Desktop VM (desktop-linux)) cannot "
                           "run linux/arm64 programs: a probe build failed",
                           f'{INSTALL}; Docker Desktop: turn on "Use containerd for pulling and storing images" for '
                           f"multi-platform builds; {NATIVE_NODE}", "engine-cannot-emulate")),
    (COLIMA, False, Check("platform:linux/arm64", FAIL, "the engine (a colima VM (colima)) cannot run linux/arm64 "
                          "programs: a probe build failed", f"{INSTALL}; colima: `colima start --arch arm64` (a VM of "
                          "that architecture), or `colima start --vm-type vz --vz-rosetta` for amd64 on Apple "
                          f"silicon; {NATIVE_NODE}", "engine-cannot-emulate")),
    (ELSEWHERE._replace(architecture="aarch64"), None,
     Check("platform:linux/arm64", OK, "native on the engine's aarch64 machine")),
])  # fmt: skip
def test_a_platform_judged_where_the_engine_runs(
    tmp_path: Path, engine: Engine, probe: bool | None, expected: Check
) -> None:
    assert check_platform(scope(tmp_path, LOCAL, engine=engine, probe=probe), "linux/arm64") == expected


ROOT_FIX = "install the emulator: `docker run --privileged --rm tonistiigi/binfmt:qemu-v8.1.5 --install {name}` (or Debian's qemu-user-static), then run `mab-hook doctor` again"


def test_every_emulation_problem_whole(tmp_path: Path) -> None:
    from mab_hook.readiness.emulation import emulation_problem  # noqa: PLC0415

    def problem(root: Path, platform: str = "linux/arm64") -> Check | None:
        return emulation_problem(binfmt.read(root), platform, IMAGE)

    none = tmp_path / "none"
    assert problem(none) == Check("", FAIL, f"{none} is not mounted, so no emulator can run linux/arm64 programs",
                                  f"`sudo mount -t binfmt_misc binfmt_misc {none}` (mab-hook doctor --fix does)",
                                  "binfmt-unmounted")  # fmt: skip
    off = proc(tmp_path / "off", "disabled", qemu_aarch64=AARCH64)
    assert problem(off) == Check("", FAIL, "binfmt_misc is disabled as a whole", f"`echo 1 | sudo tee {off}/status`",
                                 "binfmt-disabled")  # fmt: skip
    empty = proc(tmp_path / "empty")
    assert problem(empty) == Check("", FAIL, "no emulator is registered for arm64 ELF programs",
                                   ROOT_FIX.format(name="arm64"), "emulator-missing")  # fmt: skip
    assert problem(empty, "linux/arm/v7") == Check("", FAIL, "no emulator is registered for arm ELF programs",
                                                   ROOT_FIX.format(name="arm"), "emulator-missing")  # fmt: skip
    assert problem(empty, "linux/loong64") == Check("", FAIL, "no emulator is registered for loong64 ELF programs",
                                                    ROOT_FIX.format(name="loong64"), "emulator-missing")  # fmt: skip
    disabled = proc(tmp_path / "dis", qemu_aarch64=AARCH64.replace("enabled", "disabled", 1))
    assert problem(disabled) == Check("", FAIL, "the arm64 emulator (qemu-aarch64) is registered but disabled",
                                      f"`echo 1 | sudo tee {disabled}/qemu-aarch64`", "emulator-disabled")  # fmt: skip
    gone = proc(
        tmp_path / "gone", qemu_aarch64=AARCH64.replace("flags: PF", "flags: P").replace("/usr/libexec", "/x")
    )
    assert problem(gone) == Check("", FAIL, "qemu-aarch64's interpreter /x/qemu-binfmt/aarch64-binfmt-P does not exist",
                                  ROOT_FIX.format(name="arm64"), "interpreter-missing")  # fmt: skip
    fixed = proc(
        tmp_path / "fixed", qemu_aarch64=AARCH64.replace("/usr/libexec", "/x")
    )  # F: opened when registered
    assert problem(fixed) is None


def test_a_platform_no_node_can_build_whole(tmp_path: Path) -> None:
    """Another operating system needs a node of its own (never "install emulators"), and the
    engine's own builder takes no other node (a builder of its own does)."""
    assert check_platform(scope(tmp_path, LOCAL), "windows/amd64") == Check(
        "platform:windows/amd64", FAIL, "no node of builder default can build windows/amd64 (QEMU emulates CPUs, not "
        "operating systems: windows images need a windows node)", "create a builder with a node for it: `docker "
        'buildx create --name multi-arch --platform windows/amd64 <endpoint>`, and set builder = "multi-arch" in '
        "[tool.multiarch]", "no-node")  # fmt: skip
    remote = Builder("k8s", "kubernetes", (Node("k8s0", "kubernetes:///", "running", ("linux/amd64",)),))
    assert check_platform(scope(tmp_path / "2", remote), "linux/s390x") == Check(
        "platform:linux/s390x", FAIL, "no node of builder k8s can build linux/s390x",
        "add a node for it: `docker buildx create --append --name k8s --platform linux/s390x <endpoint>`, or install "
        "emulators where the builder runs", "no-node")  # fmt: skip
    assert check_platform(scope(tmp_path / "3", remote), "windows/amd64").fix == (
        "add a node for it: `docker buildx create --append --name k8s --platform windows/amd64 <endpoint>`"
    )


def test_every_probe_verdict(tmp_path: Path) -> None:
    from mab_hook.process import Completed  # noqa: PLC0415
    from mab_hook.readiness.emulation import probe  # noqa: PLC0415

    outcomes = {"linux/amd64": 0, "linux/arm64": 1}

    def run(cmd: tuple[str, ...]) -> Completed:
        platform = cmd[cmd.index("--platform") + 1]
        code = outcomes[platform]
        return Completed(
            cmd, code, "", "" if code == 0 else "#5 0.1 exec /probe: exec format error\nERROR: failed\n"
        )

    machine = host(tmp_path)._replace(run=run)
    checks = probe(machine, LOCAL, Wanted(("linux/amd64", "linux/mips64le", "linux/arm64")))
    assert checks == [
        Check("probe:linux/amd64", OK, "a linux/amd64 program ran in a build on default"),
        Check("probe:linux/mips64le", WARN, "no probe program for linux/mips64le; its checks above stand alone"),
        Check("probe:linux/arm64", FAIL, f"a linux/arm64 program did not run: {probes.summary(run(('x', '--platform', 'linux/arm64')))}",
              "fix the platform linux/arm64 check above, or recreate the builder", "probe-failed"),
    ]  # fmt: skip


def test_statuses_are_said_as_they_are_documented(tmp_path: Path) -> None:
    assert (OK, WARN, FAIL) == ("ok", "warn", "fail")  # in `doctor --json` and the README's table


def test_an_architecture_mab_hook_does_not_know_is_installed_by_its_own_name(tmp_path: Path) -> None:
    from mab_hook.readiness.emulation import engine_fix, install_fix  # noqa: PLC0415

    assert install_fix(IMAGE, "linux/sparc64") == ROOT_FIX.format(name="sparc64")
    assert engine_fix(IMAGE, "linux/sparc64", LOCAL, ELSEWHERE).startswith(
        f"install the emulator where the engine runs: `docker run --privileged --rm {IMAGE} --install sparc64`")  # fmt: skip


def test_a_lima_engine_gets_the_colima_and_lima_fix(tmp_path: Path) -> None:
    lima = ELSEWHERE._replace(where="a lima VM")
    check = check_platform(scope(tmp_path, LOCAL, engine=lima, probe=False), "linux/arm64")
    assert "colima: `colima start --arch arm64`" in check.fix
    assert (
        "colima"
        not in check_platform(scope(tmp_path / "2", LOCAL, engine=ELSEWHERE, probe=False), "linux/arm64").fix
    )
