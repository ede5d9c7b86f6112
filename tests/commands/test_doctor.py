"""`mab-hook doctor` and the gate's readiness checks against the real lab host."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from mab_hook import binfmt
from tests.conftest import Lab, LabRegistry, Repo, engine_without, in_namespace
from tests.test_coverage import base_image, web_project

ALL3 = ("linux/amd64", "linux/arm64", "linux/arm/v7")
pytestmark = pytest.mark.lab


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
    # Seen on the lab: the docker driver does not list arm/v7, though its RUN steps run.
    assert checks["platform linux/arm/v7"]["code"] == "platform-unlisted"
    assert checks["registry"]["status"] == "ok"
    found = json.loads(proc.stdout)
    assert found["version"] and found["kept"]["path"].endswith(".git/mab-hook")
    assert set(checks) == {
        "docker",
        "buildx",
        "engine",
        "builder",
        "driver",
        "registry",
        "mirror",
        *(f"platform {p}" for p in ALL3),
    }
    # The lab's engine has no registry-mirrors: Docker Hub is pulled from directly.
    assert checks["mirror"]["finding"] == "Docker Hub directly: no mirror is set up for it"


def test_a_bake_file_for_a_newer_buildx_fails_the_buildx_check_naming_the_version(
    lab: Lab, repo: Repo
) -> None:
    """buildkit's own bake file once did not resolve on buildx 0.13, and doctor called 0.13 enough."""
    repo.commit({
        "pyproject.toml": f'[tool.multiarch]\nplatforms = {json.dumps(list(ALL3))}\nbake = "docker-bake.hcl"\n',
        "docker-bake.hcl": 'variable "V" {\n  default = "1"\n  validation {\n    condition = V != ""\n  }\n}\n'
                           'target "default" {\n  context = "app"\n}\n',
        "app/Dockerfile": f"FROM {lab.busybox}\n",
    })  # fmt: skip
    said = mab(repo.path, lab.env, "doctor", "--json")
    version = lab.docker("buildx", "version").stdout.split()[1].lstrip("v").split("+")[0]
    assert tuple(int(n) for n in version.split(".")) < (0, 19), "the lab's buildx reads validation blocks"
    assert said.returncode == 1, said.stdout + said.stderr
    buildx = {c["name"]: c for c in json.loads(said.stdout)["checks"]}["buildx"]
    assert (buildx["status"], buildx["code"]) == ("fail", "buildx-old")
    assert "cannot read this repository's definition files (they need 0.19.0 or later)" in buildx["finding"]
    assert (
        "docker-bake.hcl uses a variable's validation block, which buildx 0.19.0 and later read"
        in said.stderr
    )


def test_a_disabled_emulator_fails_doctor_and_the_gate(lab: Lab, repo: Repo) -> None:
    """qemu-aarch64 switched off in a binfmt_misc of the test's own (a private user and mount
    namespace): the machine's handlers are never touched."""
    project(repo, lab, lab.namespace())
    handler = binfmt.read().handler_for("arm64")
    assert handler is not None, "the lab registers an arm64 emulator"
    path = binfmt.DEFAULT_ROOT / handler.name
    doctor = in_namespace((sys.executable, "-m", "mab_hook", "doctor"), cwd=repo.path, env=lab.env,
                          disable=(handler.name,))  # fmt: skip
    assert doctor.returncode == 1, doctor.stdout + doctor.stderr
    assert f"the arm64 emulator ({handler.name}) is registered but disabled" in doctor.stdout
    assert f"fix: `echo 1 | sudo tee {path}`" in doctor.stdout
    gate = in_namespace((sys.executable, "-m", "mab_hook", "--all", "--publish"), cwd=repo.path, env=lab.env,
                        disable=(handler.name,))  # fmt: skip
    assert gate.returncode == 1
    assert "this host cannot build what the push needs; nothing was built" in gate.stderr
    assert "platform linux/arm64" in gate.stderr and f"echo 1 | sudo tee {path}" in gate.stderr
    assert not (repo.path / ".git" / "mab-hook" / "logs").exists()  # nothing was built
    assert binfmt.read().handler_for("arm64").enabled  # type: ignore[union-attr]


def test_a_probe_fails_where_the_engine_cannot_run_the_platform(lab: Lab, repo: Repo) -> None:
    """An engine whose binfmt_misc lacks qemu-aarch64 (in a namespace of its own)."""
    project(repo, lab, lab.namespace())
    with engine_without(lab, ("qemu-aarch64",)) as engine:
        probed = mab(repo.path, engine.env, "doctor", "--probe", "--platform", "linux/arm64",
                     "--platform", "linux/arm/v7")  # fmt: skip
    assert "fail  probe linux/arm64" in probed.stdout and "a linux/arm64 program did not run" in probed.stdout
    assert "ok    probe linux/arm/v7" in probed.stdout


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
    gate = mab(repo.path, env, "--all", "--publish")
    assert (gate.returncode, "nothing was built" in gate.stderr) == (1, True)


def test_a_registry_that_is_down_when_pushing(lab: Lab, repo: Repo) -> None:
    project(repo, lab, "127.0.0.1:5999/team", push=True)  # nothing listens there
    doctor = mab(repo.path, lab.env, "doctor")
    assert doctor.returncode == 1
    assert "fail  registry" in doctor.stdout
    assert "http://127.0.0.1:5999/v2/ does not answer" in doctor.stdout
    gate = mab(repo.path, lab.env, "--all", "--publish")
    assert gate.returncode == 1
    assert "registry" in gate.stderr
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
    assert f"fix: mount -t binfmt_misc binfmt_misc {binfmt.DEFAULT_ROOT}: done" in proc.stderr
    assert "ok    platform linux/arm64  emulated by" in out
    assert out.rstrip().endswith("after=0")


def test_a_registry_wanting_credentials_is_checked_before_any_build(
    lab: Lab, repo: Repo, auth_registry: LabRegistry, tmp_path: Path
) -> None:
    """push = true: one authenticated request proves docker's credentials before build time is spent."""
    project(repo, lab, f"{auth_registry.address}/team", push=True)
    without = auth_registry.docker_config(lab, tmp_path / "out", logged_in=False)
    doctor = mab(repo.path, without, "doctor")
    assert doctor.returncode == 1
    assert f"wants credentials and docker has none for {auth_registry.address}" in doctor.stdout
    assert f"fix: `docker login {auth_registry.address}`" in doctor.stdout
    gate = mab(repo.path, without, "--all", "--publish")
    assert gate.returncode == 1 and "nothing was built" in gate.stderr
    assert not (repo.path / ".git" / "mab-hook" / "logs").exists()
    with_login = auth_registry.docker_config(lab, tmp_path / "in", logged_in=True)
    doctor = mab(repo.path, with_login, "doctor", "--json")
    registry = next(c for c in json.loads(doctor.stdout)["checks"] if c["id"] == "registry")
    assert (registry["status"], registry["finding"]) == (
        "ok", f"http://{auth_registry.address}/v2/ accepts docker's credentials for {auth_registry.address}")  # fmt: skip


def test_fix_creates_the_configured_builder(lab: Lab, repo: Repo, tmp_path: Path) -> None:
    """In a docker config of the test's own, so the machine's builders are never touched. The
    docker-container driver needs a BuildKit image the lab cannot pull: bootstrapping it fails,
    and doctor says so rather than pretending."""
    env = {**lab.env, "DOCKER_CONFIG": str(tmp_path / "docker")}
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "cli-plugins").symlink_to(Path(lab.env["DOCKER_CONFIG"]) / "cli-plugins")
    repo.commit({
        "pyproject.toml": '[tool.multiarch]\nplatforms = ["linux/amd64"]\n\n[tool.multiarch.builder]\n'
                          'name = "mab-test-fleet"\ndriver = "docker-container"\n',
        "app/Dockerfile": f"FROM {lab.busybox}\n",
    })  # fmt: skip
    before = mab(repo.path, env, "doctor", "--json")
    builder = next(c for c in json.loads(before.stdout)["checks"] if c["id"] == "builder")
    assert (builder["status"], builder["code"]) == ("fail", "builder-missing")
    fixed = mab(repo.path, env, "doctor", "--fix")
    assert ("fix: docker buildx create --name mab-test-fleet --node mab-test-fleet0 --driver docker-container: "
            "done") in fixed.stderr  # fmt: skip  # a configured builder is passed as --builder: no --use
    assert "fix: docker buildx inspect --bootstrap mab-test-fleet: failed (exit 1)" in fixed.stderr
    listed = subprocess.run(("docker", "buildx", "ls", "--format", "json"), env=env, capture_output=True,
                            text=True, check=True)  # fmt: skip
    assert "mab-test-fleet" in {json.loads(line)["Name"] for line in listed.stdout.splitlines()}
    machine = subprocess.run(
        ("docker", "buildx", "ls"), env=lab.env, capture_output=True, text=True, check=True
    )
    assert "mab-test-fleet" not in machine.stdout  # the lab's own docker config has no such builder


def elsewhere(repo: Repo, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """mab-hook as on a client whose kernel is not the engine's: a private mount and UTS
    namespace where binfmt_misc is not mounted and the host name differs."""
    return in_namespace((sys.executable, "-m", "mab_hook", *args), cwd=repo.path, env=env,
                        binfmt="unmounted", hostname="laptop")  # fmt: skip


def test_an_engine_elsewhere_is_judged_on_its_side_and_builds(lab: Lab, repo: Repo) -> None:
    registry = lab.namespace()
    project(repo, lab, registry, push=True)
    doctor = elsewhere(repo, lab.env, "doctor", "--json")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    checks = {c["id"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert checks["engine"]["finding"].startswith("another machine (vm, this is laptop)")
    assert "emulation judged on the engine's side" in checks["engine"]["finding"]
    assert (
        checks["platform:linux/arm64"]["finding"]
        == "builder default lists it (emulation judged on the engine's side)"
    )
    assert (
        "by a probe" in checks["platform:linux/arm/v7"]["finding"]
    )  # the docker driver does not list arm/v7
    built = elsewhere(repo, lab.env, "--all", "--publish")
    assert built.returncode == 0, built.stdout + built.stderr
    assert lab.platforms(f"{registry}/app:{repo.head()[:7]}") == set(ALL3)
    probes = json.loads((repo.path / ".git" / "mab-hook" / "cache" / "probes.json").read_text())
    assert list(probes.values()) == [True]  # probed once, remembered for this engine


def test_an_engine_elsewhere_that_cannot_run_a_platform_builds_nothing(lab: Lab, repo: Repo) -> None:
    """The engine's binfmt_misc lacks qemu-arm (a namespace of its own): found by a probe."""
    project(repo, lab, lab.namespace())
    with engine_without(lab, ("qemu-arm",)) as engine:
        doctor = elsewhere(repo, engine.env, "doctor", "--json")
        assert doctor.returncode == 1, doctor.stdout + doctor.stderr
        check = next(c for c in json.loads(doctor.stdout)["checks"] if c["id"] == "platform:linux/arm/v7")
        assert (check["status"], check["code"]) == ("fail", "engine-cannot-emulate")
        assert "docker run --privileged --rm tonistiigi/binfmt:qemu-v8.1.5 --install arm" in check["fix"]
        gate = elsewhere(repo, engine.env, "--all", "--publish")
    assert gate.returncode == 1 and "nothing was built" in gate.stderr
    assert not (repo.path / ".git" / "mab-hook" / "logs").exists()


def test_a_docker_context_is_followed(lab: Lab, repo: Repo, tmp_path: Path) -> None:
    """DOCKER_HOST unset: the current context of a docker config of the test's own says where."""
    config = tmp_path / "docker"
    config.mkdir()
    (config / "cli-plugins").symlink_to(Path(lab.env["DOCKER_CONFIG"]) / "cli-plugins")
    env = {k: v for k, v in lab.env.items() if k != "DOCKER_HOST"} | {"DOCKER_CONFIG": str(config)}
    for args in (
        ("context", "create", "lab", "--docker", f"host={lab.env['DOCKER_HOST']}"),
        ("context", "use", "lab"),
    ):
        subprocess.run(("docker", *args), env=env, check=True, capture_output=True)
    registry = lab.namespace()
    project(repo, lab, registry, push=True)
    doctor = mab(repo.path, env, "doctor", "--json")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    engine = next(c for c in json.loads(doctor.stdout)["checks"] if c["id"] == "engine")
    assert engine["finding"].startswith(f"on this machine's kernel (context lab, {lab.env['DOCKER_HOST']})")
    assert mab(repo.path, env, "--all", "--publish").returncode == 0
    assert lab.platforms(f"{registry}/app:{repo.head()[:7]}") == set(ALL3)
    nowhere = mab(repo.path, {**env, "DOCKER_CONTEXT": "nope"}, "doctor")
    assert nowhere.returncode == 1 and "the docker context 'nope' does not exist" in nowhere.stdout


def _bases(repo: Repo, env: dict[str, str], *more: str) -> dict[str, str]:
    doctor = mab(repo.path, env, "doctor", "--json", "--bases", *more)
    checks = {check["name"]: check for check in json.loads(doctor.stdout)["checks"]}
    assert "bases" in checks, doctor.stdout + doctor.stderr
    return dict(checks["bases"])


@pytest.mark.lab
def test_doctor_looks_up_every_base_of_the_images_at_head(lab: Lab, repo: Repo) -> None:
    """As the gate does before a build, on demand: a plain amd64 base for an arm64 build fails."""
    registry = lab.namespace()
    base = f"{registry}/plain:1"
    base_image(lab, base, "linux/amd64", plain=True)
    lab.docker("image", "rm", base)  # only the registry has it
    repo.commit(web_project(registry, f"FROM {base}\n"))
    plain = _bases(repo, lab.env)
    assert (plain["status"], plain["code"]) == ("fail", "bases-platform-missing"), plain
    assert f"  web: base {base} (FROM, line 1) is a single linux/amd64 image, no index" in plain["finding"]
    repo.commit(web_project(registry, f"FROM {lab.busybox}\n"))
    assert (
        _bases(repo, lab.env)["finding"] == "1 base(s) of 1 image(s) have every platform they are built for"
    )


@pytest.mark.lab
def test_a_docker_hub_base_is_looked_up_through_the_builders_mirror(
    lab: Lab, repo: Repo, tmp_path: Path
) -> None:
    """A Docker Hub name no engine store holds, which only the mirror (the lab's registry, named in
    a docker-container builder's buildkitd.toml) has: found there, never asked of Docker Hub."""
    hub_name = f"mabmirror{uuid.uuid4().hex[:8]}/base:1"
    base_image(lab, f"{lab.registry}/{hub_name}", "linux/amd64,linux/arm64")
    config = tmp_path / "docker"  # the builder is made in a docker config of the test's own
    config.mkdir()
    (config / "cli-plugins").symlink_to(Path(lab.env["DOCKER_CONFIG"]) / "cli-plugins")
    env = {**lab.env, "DOCKER_CONFIG": str(config)}
    (tmp_path / "buildkitd.toml").write_text(f'[registry."docker.io"]\n  mirrors = ["{lab.registry}"]\n')
    created = subprocess.run(("docker", "buildx", "create", "--name", "mirrored", "--driver", "docker-container",
                              "--buildkitd-config", str(tmp_path / "buildkitd.toml")), env=env, capture_output=True,
                             text=True, check=False)  # fmt: skip
    assert created.returncode == 0, created.stderr
    repo.commit(web_project(lab.namespace(), f"FROM {hub_name}\n"))
    found = _bases(repo, env, "--builder", "mirrored")
    lab.docker("image", "rm", f"{lab.registry}/{hub_name}", check=False)  # what this test put in the store
    assert found["finding"] == "1 base(s) of 1 image(s) have every platform they are built for", found
