"""`mab-hook verify`: was a commit gated? Against the lab's registry, one that wants
credentials, and with no Docker engine at all."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import Hooked, Lab, LabRegistry, Repo, free_port, mab, project_files


def without_engine(env: dict[str, str]) -> dict[str, str]:
    """A CI runner with git and nothing of Docker: no engine to reach, no docker on PATH."""
    return {**env, "DOCKER_HOST": "unix:///nonexistent/docker.sock", "PATH": "/usr/bin:/bin"}


@pytest.mark.lab
def test_a_gated_push_verifies_without_an_engine(hooked: Hooked) -> None:
    sha = hooked.repo.commit({"services/api/app.txt": "api v2\n"})
    assert hooked.push("main").code == 0
    proc = mab(hooked.repo.path, without_engine(hooked.env), "verify", "--from", "HEAD^", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    found = json.loads(proc.stdout)
    assert found["ok"] is True and found["missing"] == []
    assert [(f["name"], f["commit"]) for f in found["present"]] == [("api", sha)]
    assert (
        found["present"][0]["reference"]
        == f"{hooked.registry}/mab-staging/api:mab-{found['present'][0]['input_digest']}"
    )
    text = mab(hooked.repo.path, without_engine(hooked.env), "verify", "--from", "HEAD^")
    assert "every affected image (1) is in the registry, built from exactly these inputs" in text.stdout


@pytest.mark.lab
def test_a_push_without_the_gate_fails_naming_exactly_the_affected_images(hooked: Hooked) -> None:
    sha = hooked.repo.commit({"services/worker/Dockerfile": f"FROM {hooked.registry}/base\nRUN echo w2 > /w\n",
                              "docs/index.md": "# skipped\n"})  # fmt: skip
    assert hooked.push("--no-verify", "main").code == 0
    proc = mab(hooked.repo.path, without_engine(hooked.env), "verify", "--from", "HEAD^", "--json")
    assert proc.returncode == 1
    found = json.loads(proc.stdout)
    assert found["ok"] is False and found["present"] == []
    assert [(f["name"], f["commit"]) for f in found["missing"]] == [("worker", sha)]
    digest = found["missing"][0]["input_digest"]
    text = mab(hooked.repo.path, without_engine(hooked.env), "verify", "--from", "HEAD^")
    assert text.returncode == 1
    assert f"  missing  worker  (commit {sha[:12]}, inputs {digest[:12]}; not in the registry)" in text.stdout
    assert "not built by the gate from these inputs: worker (" in text.stderr
    assert "run `mab-hook verify --build-missing` with the same range" in text.stderr
    assert "api" not in text.stdout and "base" not in text.stdout


@pytest.mark.lab
def test_build_missing_publishes_what_was_skipped_and_then_verifies(hooked_unbuilt: Hooked, lab: Lab) -> None:
    hooked = hooked_unbuilt
    # The fixture pushed its first commit with --no-verify: nothing of it is in the registry.
    first = mab(hooked.repo.path, hooked.env, "verify", "--all")
    assert first.returncode == 1
    assert "not built by the gate from these inputs: base, api, worker" in first.stderr
    built = mab(hooked.repo.path, hooked.env, "verify", "--all", "--build-missing")
    assert built.returncode == 0, built.stdout + built.stderr
    assert "building what is missing: api, base, worker" in built.stderr
    assert "every affected image (3) is in the registry" in built.stdout
    sha = hooked.repo.head()
    assert lab.pushed(hooked.registry) == {"base", "api", "worker"}
    assert lab.public_tags(f"{hooked.registry}/api") == {sha[:7], "latest"}
    assert lab.platforms(f"{hooked.registry}/api:latest") == {"linux/amd64", "linux/arm64", "linux/arm/v7"}
    again = mab(hooked.repo.path, without_engine(hooked.env), "verify", "--all")
    assert again.returncode == 0, again.stdout + again.stderr


@pytest.mark.lab
def test_a_registry_wanting_credentials_with_and_without_docker_login(
    lab: Lab, repo: Repo, auth_registry: LabRegistry, tmp_path: Path
) -> None:
    registry = f"{auth_registry.address}/t{os.urandom(4).hex()}"
    repo.commit({
        "pyproject.toml": f'[tool.multiarch]\nplatforms = ["linux/amd64", "linux/arm64"]\nregistry = "{registry}"\n'
                          f'push = true\n[tool.multiarch.images.base]\ncontext = "base"\nbuild-args = {{ BUSYBOX = "{lab.busybox}" }}\n',
        "base/Dockerfile": project_files(lab, registry)["base/Dockerfile"],
    })  # fmt: skip
    without = without_engine(auth_registry.docker_config(lab, tmp_path / "out", logged_in=False))
    denied = mab(repo.path, without, "verify", "--all")
    assert denied.returncode == 1
    assert f"run `docker login {auth_registry.address}` (or set up its credential helper)" in denied.stderr
    assert "Traceback" not in denied.stdout + denied.stderr
    with_login = auth_registry.docker_config(lab, tmp_path / "in", logged_in=True)
    before = mab(repo.path, without_engine(with_login), "verify", "--all")
    assert before.returncode == 1 and "  missing  base  " in before.stdout
    gate = mab(repo.path, with_login, "--all")
    assert gate.returncode == 0, gate.stdout + gate.stderr
    after = mab(repo.path, without_engine(with_login), "verify", "--all")
    assert after.returncode == 0, after.stdout + after.stderr
    assert auth_registry.password not in after.stdout + after.stderr


def test_an_unpushed_config_cannot_be_verified(repo: Repo) -> None:
    repo.commit({"pyproject.toml": '[tool.multiarch]\nplatforms = ["linux/amd64"]\nregistry = "reg.invalid/t"\n',
                 "app/Dockerfile": "FROM scratch\n"})  # fmt: skip
    proc = mab(repo.path, os.environ, "verify", "--all")
    assert proc.returncode == 1
    assert "push = false, so no image is in a registry to verify" in proc.stderr
    assert "set push = true in [tool.multiarch]" in proc.stderr


def test_an_unreachable_registry_is_said_once(repo: Repo) -> None:
    registry = f"127.0.0.1:{free_port()}/team"
    repo.commit({"pyproject.toml": f'[tool.multiarch]\nplatforms = ["linux/amd64"]\nregistry = "{registry}"\n'
                                   "push = true\n",
                 "app/Dockerfile": "FROM scratch\n", "web/Dockerfile": "FROM scratch\n"})  # fmt: skip
    proc = mab(repo.path, os.environ, "verify", "--all")
    assert proc.returncode == 1
    assert proc.stderr.count("cannot verify") == 1
    assert f"check that {registry.partition('/')[0]} is reachable from this runner" in proc.stderr


def test_verify_needs_a_range(repo: Repo) -> None:
    repo.commit({"pyproject.toml": "[tool.multiarch]\n", "app/Dockerfile": "FROM scratch\n"})
    proc = mab(repo.path, os.environ, "verify")
    assert proc.returncode == 1
    assert "say what to verify: --all (every image of --to, default HEAD) or --from REF" in proc.stderr
