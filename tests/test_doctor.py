"""`mab-hook doctor` and the gate's readiness checks against the real lab host."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mab_hook import binfmt
from tests.conftest import Lab, Repo

ALL3 = ("linux/amd64", "linux/arm64", "linux/arm/v7")


def mab(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run((sys.executable, "-m", "mab_hook", *args), cwd=cwd, env=env, capture_output=True,
                          text=True, check=False)  # fmt: skip


def project(repo: Repo, lab: Lab, registry: str, push: bool = False) -> None:
    repo.commit({
        "pyproject.toml": f'[tool.multiarch]\nplatforms = {json.dumps(list(ALL3))}\nregistry = "{registry}"\n'
                          f"push = {'true' if push else 'false'}\n",
        "app/Dockerfile": f"FROM {lab.busybox}\nRUN uname -m > /arch\n",
    })  # fmt: skip


def test_probe_on_a_ready_host(lab: Lab, repo: Repo) -> None:
    project(repo, lab, lab.namespace())
    proc = mab(repo.path, lab.env, "doctor", "--probe", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    probes = {
        c["name"]: c["status"] for c in json.loads(proc.stdout)["checks"] if c["name"].startswith("probe")
    }
    assert probes == {f"probe {p}": "ok" for p in ALL3}


def test_a_ready_host(lab: Lab, repo: Repo) -> None:
    project(repo, lab, lab.namespace(), push=True)
    proc = mab(repo.path, lab.env, "doctor", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    assert {name: c["status"] for name, c in checks.items() if c["status"] == "fail"} == {}
    assert checks["platform linux/amd64"]["finding"] == f"native on this {platform.machine()} host"
    assert checks["platform linux/arm64"]["finding"].startswith("emulated by qemu-aarch64")
    assert checks["platform linux/arm/v7"]["status"] in ("ok", "warn")
    assert checks["registry"]["status"] == "ok"
    assert set(checks) == {
        "docker",
        "buildx",
        "builder",
        "driver",
        "registry",
        *(f"platform {p}" for p in ALL3),
    }


@pytest.fixture
def aarch64_disabled(lab: Lab) -> Iterator[Path]:
    """qemu-aarch64 switched off for the test, and always switched back on."""
    handler = binfmt.read().handler_for("arm64")
    assert handler is not None, "the lab registers an arm64 emulator"
    path = binfmt.DEFAULT_ROOT / handler.name
    path.write_text("0")
    try:
        yield path
    finally:
        path.write_text("1")
    assert binfmt.read().handler_for("arm64").enabled  # type: ignore[union-attr]


def test_a_disabled_emulator_fails_doctor_and_the_gate(lab: Lab, repo: Repo, aarch64_disabled: Path) -> None:
    project(repo, lab, lab.namespace())
    doctor = mab(repo.path, lab.env, "doctor")
    assert doctor.returncode == 1
    assert f"the arm64 emulator ({aarch64_disabled.name}) is registered but disabled" in doctor.stdout
    assert f"fix: `echo 1 | sudo tee {aarch64_disabled}`" in doctor.stdout
    probed = mab(
        repo.path, lab.env, "doctor", "--probe", "--platform", "linux/arm64", "--platform", "linux/arm/v7"
    )
    assert "fail  probe linux/arm64" in probed.stdout and "a linux/arm64 program did not run" in probed.stdout
    assert "ok    probe linux/arm/v7" in probed.stdout
    gate = mab(repo.path, lab.env, "--all")
    assert gate.returncode == 1
    assert "this host cannot build what the push needs; nothing was built" in gate.stdout
    assert "platform linux/arm64" in gate.stdout and f"echo 1 | sudo tee {aarch64_disabled}" in gate.stdout
    assert not (repo.path / ".git" / "mab-hook" / "logs").exists()  # nothing was built


def test_a_dead_docker_socket(lab: Lab, repo: Repo, tmp_path: Path) -> None:
    project(repo, lab, lab.namespace())
    env = {**lab.env, "DOCKER_HOST": f"unix://{tmp_path}/nothing.sock"}
    doctor = mab(repo.path, env, "doctor")
    assert doctor.returncode == 1
    assert "fail  docker" in doctor.stdout
    assert (
        f"the Docker daemon does not answer: Cannot connect to the Docker daemon at unix://{tmp_path}/nothing.sock"
        in doctor.stdout
    )
    gate = mab(repo.path, env, "--all")
    assert (gate.returncode, "nothing was built" in gate.stdout) == (1, True)


def test_a_registry_that_is_down_when_pushing(lab: Lab, repo: Repo) -> None:
    project(repo, lab, "127.0.0.1:5999/team", push=True)  # nothing listens there
    doctor = mab(repo.path, lab.env, "doctor")
    assert doctor.returncode == 1
    assert "fail  registry" in doctor.stdout
    assert "http://127.0.0.1:5999/v2/ does not answer" in doctor.stdout
    gate = mab(repo.path, lab.env, "--all")
    assert gate.returncode == 1
    assert "registry" in gate.stdout
    assert not (repo.path / ".git" / "mab-hook" / "logs").exists()


def test_fix_mounts_binfmt_misc(lab: Lab, repo: Repo) -> None:
    """In a private mount namespace, so the host's own mount is never touched."""
    project(repo, lab, lab.namespace())
    script = (f"umount {binfmt.DEFAULT_ROOT} && {sys.executable} -m mab_hook doctor --platform linux/arm64; "
              f"echo before=$?; {sys.executable} -m mab_hook doctor --fix --platform linux/arm64; echo after=$?")  # fmt: skip
    proc = subprocess.run(("unshare", "--mount", "--propagation", "private", "sh", "-c", script), cwd=repo.path,
                          env=lab.env, capture_output=True, text=True, check=False)  # fmt: skip
    out = proc.stdout
    assert "is not mounted" in out and "before=1" in out, out + proc.stderr
    assert f"fix: mount -t binfmt_misc binfmt_misc {binfmt.DEFAULT_ROOT}: done" in out
    assert "ok    platform linux/arm64  emulated by" in out
    assert out.rstrip().endswith("after=0")
