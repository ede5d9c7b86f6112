"""Recorded docker answers (the lab's docker 26.1.5 and buildx 0.13.1, in tests/fixtures/buildx)
and a host to check them on: what the readiness tests share."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path

from mab_hook import readiness
from mab_hook.process import Completed
from mab_hook.readiness import Check, Host
from mab_hook.registry import Access, Insecure
from tests.test_binfmt import AARCH64, ARM, proc

FIXTURES = Path(__file__).parent.parent / "fixtures" / "buildx"


VERSION = (FIXTURES / "version.json").read_text()


LS_DOCKER = (FIXTURES / "ls-docker-driver.json").read_text()


INSPECT_DOCKER = (FIXTURES / "inspect-docker-driver.txt").read_text()


LS_MULTI = (FIXTURES / "ls-multi-node.json").read_text()


# A docker-container builder `intranet` made with `--driver-opt image=...` and a buildkitd.toml
# (a CA for registry.internal:5000, plain HTTP to plain.internal:5000), never started.
LS_CONTAINER = (FIXTURES / "ls-docker-container.json").read_text()


INSPECT_CONTAINER = (FIXTURES / "inspect-docker-container.txt").read_text()


CONTAINERD = '[["driver-type","io.containerd.snapshotter.v1"]]'


REGISTRY_CONFIG = json.dumps({
    "InsecureRegistryCIDRs": ["127.0.0.0/8", "10.20.0.0/16"],
    "IndexConfigs": {"docker.io": {"Name": "docker.io", "Secure": True},
                     "plain.internal:5000": {"Name": "plain.internal:5000", "Secure": False}},
})  # fmt: skip


# The lab's engine, from `docker info --format '{{json .}}'` there; `uname -n` and `uname -r`
# of the lab machine beside it.
LAB_ENGINE = {"OperatingSystem": "Debian GNU/Linux 12 (bookworm)", "KernelVersion": "6.18.44-fc-v1045",
              "Name": "vm", "ID": "d8beb5c0-f891-4dd6-a4e9-c38cf5e63336", "Architecture": "x86_64", "OSType": "linux"}  # fmt: skip
LAB_HOSTNAME, LAB_KERNEL = "vm", "6.18.44-fc-v1045"
LAB_CONTEXT = json.dumps({"Name": "default", "Metadata": {},
                          "Endpoints": {"docker": {"Host": "unix:///var/tmp/mab-lab/docker.sock", "SkipTLSVerify": False}}})  # fmt: skip


def info(driver_status: str, **engine: str) -> str:
    """`docker info --format '{{json .}}'`, the parts the checks read."""
    return json.dumps({"DriverStatus": json.loads(driver_status), "RegistryConfig": json.loads(REGISTRY_CONFIG),
                       **LAB_ENGINE, **engine})  # fmt: skip


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
        ("docker", "context", "inspect", "--format", "{{json .}}"): (0, LAB_CONTEXT),
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
    client_os: str = "linux",
    hostname: str = LAB_HOSTNAME,
    probe: Callable[[str, str | None, str], bool | None] | None = None,
) -> Host:
    def answer(reference: str, insecure: Insecure) -> Access:
        if asked is not None:
            asked.append((reference, insecure))
        return access

    binfmt_root = root if root is not None else proc(tmp_path, qemu_aarch64=AARCH64, qemu_arm=ARM)
    probed = probe or (lambda platform, builder, engine: None)
    return Host(fake_run(answers or docker()), machine, binfmt_root, answer, client_os=client_os, hostname=hostname,
                kernel=LAB_KERNEL, probe=probed)  # fmt: skip


def by_name(report: readiness.Report) -> dict[str, Check]:
    return {check.name: check for check in report.checks}


ALL3 = ("linux/amd64", "linux/arm64", "linux/arm/v7")


def through_context(name: str, answers: Answers | None = None) -> Answers:
    """What docker answers through context `name` (`docker --context NAME ...`, its builder
    asked by name): the recordings given, else the lab's; and that the context exists."""
    found: Answers = {("docker", "context", "inspect", "--format", "{{.Name}}", name): (0, f"{name}\n")}
    for cmd, answer in (answers or docker()).items():
        asked = ("docker", "buildx", "inspect", name) if cmd == ("docker", "buildx", "inspect") else cmd
        found[readiness.in_context(asked, name)] = answer
    return found


ARM_CONTEXT = json.dumps(
    {"Name": "arm-box", "Metadata": {}, "Endpoints": {"docker": {"Host": "ssh://builder@arm-box"}}}
)


def arm_engine() -> Answers:
    """An arm64 machine's engine, as docker context arm-box (over ssh) answers."""
    engine = docker()
    engine[("docker", "info", "--format", "{{json .}}")] = (
        0, info(CONTAINERD, Architecture="aarch64", Name="arm-box", ID="arm-box-id"),
    )  # fmt: skip
    engine[("docker", "context", "inspect", "--format", "{{json .}}")] = (0, ARM_CONTEXT)
    return engine
