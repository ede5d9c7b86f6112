"""`lab/demo` on a machine whose Docker already runs: the lab's engine plays the user's engine,
with a docker config directory of the user's own. The demo must show the pushes and leave the
machine as it found it."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.conftest import Lab


def tree(directory: Path) -> dict[str, str]:
    """Every entry below a directory: a file's content hash, a link's target."""
    found = {}
    for path in sorted(directory.rglob("*")):
        name = str(path.relative_to(directory))
        if path.is_symlink():
            found[name] = f"-> {os.readlink(path)}"
        elif path.is_file():
            found[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


class Machine(NamedTuple):
    binfmt: dict[str, str]
    images: set[str]
    cache: set[str]  # the build cache's records
    builders: str
    containers: str
    catalog: list[str]  # the lab registry's repositories
    docker_config: dict[str, str]


def machine(lab: Lab, docker_config: Path) -> Machine:
    """What the demo must leave as it was: binfmt_misc, the engine's images and build cache,
    the builders, the lab's registry, the user's docker config."""
    binfmt = Path("/proc/sys/fs/binfmt_misc")
    env = {**lab.env, "DOCKER_CONFIG": str(docker_config)}

    def run(*args: str) -> str:
        return subprocess.run(args, env=env, capture_output=True, text=True, check=True).stdout

    return Machine(
        binfmt={p.name: p.read_text() for p in sorted(binfmt.iterdir()) if p.name != "register"},
        images=set(run("docker", "image", "ls", "-a", "-q", "--no-trunc").split()),
        cache=set(re.findall(r"^ID:\s*(\S+)", run("docker", "buildx", "du", "--verbose"), re.M)),
        builders=run("docker", "buildx", "ls"),
        containers=run("docker", "ps", "-a", "-q", "--no-trunc"),
        catalog=catalog(lab.registry),
        docker_config=tree(docker_config),
    )


def catalog(registry: str) -> list[str]:
    """Every repository of a registry, page by page (docker-registry serves 1,000 a page)."""
    found: list[str] = []
    url: str | None = f"http://{registry}/v2/_catalog?n=1000"
    while url:
        with urllib.request.urlopen(url, timeout=10) as response:
            found += json.load(response)["repositories"] or []
            link = re.match(r"<([^>]+)>", response.headers.get("Link", ""))
        url = f"http://{registry}{link.group(1)}" if link else None
    return found


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5):
            return True
    except (urllib.error.URLError, OSError):
        return False


@pytest.mark.lab
def test_the_demo_uses_the_running_engine_and_leaves_the_machine_as_it_found_it(
    lab: Lab, hook_repo: tuple[Path, str], pre_commit_home: Path, tmp_path: Path
) -> None:
    checkout, _ = hook_repo
    docker_config = tmp_path / "user-docker"
    (docker_config / "cli-plugins").mkdir(parents=True)
    plugin = Path(lab.env["DOCKER_CONFIG"]) / "cli-plugins" / "docker-buildx"
    (docker_config / "cli-plugins" / "docker-buildx").symlink_to(plugin.resolve())
    (docker_config / "config.json").write_text('{"auths": {}}\n')
    (tmp_path / "tmp").mkdir()
    env = {
        **lab.env,
        "DOCKER_CONFIG": str(docker_config),
        "TMPDIR": str(tmp_path / "tmp"),
        "PRE_COMMIT_HOME": str(pre_commit_home),
        "MAB_DEMO_VENV": sys.prefix,  # mab-hook and pre-commit, as the demo would install them
        "MAB_DEMO_BUSYBOX": f"{lab.registry}/{lab.busybox}",  # a base the engine can pull here
        # windows/amd64: a platform no engine here builds, left out and said, not a failure
        "MAB_DEMO_PLATFORMS": "linux/amd64 linux/arm64 windows/amd64",
    }
    env.pop("MAB_DEMO_ENGINE", None)
    before = machine(lab, docker_config)

    demo = subprocess.run(("bash", str(checkout / "lab" / "demo")), env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, check=False, timeout=600)  # fmt: skip

    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "using the Docker engine that answers here" in demo.stderr
    registry = re.search(r"a throwaway registry on (127\.0\.0\.1:\d+), removed at the end", demo.stderr)
    assert registry is not None and registry.group(1) != lab.registry, demo.stderr
    assert "leaving windows/amd64 out: no node of builder default can build windows/amd64" in demo.stderr
    assert "MAB_DEMO_BINFMT=install" not in demo.stderr  # an emulator would not help windows
    # what the user came to see: only what each push affects, for every platform the engine builds
    assert re.search(r"linux/amd64 +base built on x86_64", demo.stdout), demo.stdout
    assert re.search(r"linux/arm64 +base built on aarch64", demo.stdout), demo.stdout
    assert "unaffected: base, worker" in demo.stdout
    assert re.search(r'"tags":\[[^]]*"latest"', demo.stdout)  # public tags moved after the pushes
    # ... and the machine as it was
    after = machine(lab, docker_config)
    assert after.cache >= before.cache  # nothing pruned; the demo's own steps stay cached
    assert after._replace(cache=before.cache) == before
    assert not answers(f"http://{registry.group(1)}/v2/")
    work = next((tmp_path / "tmp").iterdir())
    assert sorted(p.name for p in work.iterdir()) == ["remote.git", "sample"]  # the repository to read


@pytest.mark.lab
def test_where_no_engine_answers_the_demo_brings_the_lab_up_and_uses_it(
    lab: Lab, hook_repo: tuple[Path, str], pre_commit_home: Path, tmp_path: Path
) -> None:
    """A machine without Docker: `lab/up` (here it finds the lab running and reuses it), then
    the lab's engine and registry, every platform of the sample."""
    checkout, _ = hook_repo
    (tmp_path / "tmp").mkdir()
    env = {
        **lab.env,
        "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock",  # nothing answers there
        "TMPDIR": str(tmp_path / "tmp"),
        "PRE_COMMIT_HOME": str(pre_commit_home),
        "MAB_DEMO_VENV": sys.prefix,
    }
    demo = subprocess.run(("bash", str(checkout / "lab" / "demo")), env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, check=False, timeout=600)  # fmt: skip

    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "no Docker engine answers here: bringing the lab up" in demo.stderr
    assert "lab: ready" in demo.stderr
    for platform, machine_name in (
        ("linux/amd64", "x86_64"),
        ("linux/arm64", "aarch64"),
        ("linux/arm/v7", "armv7l"),
    ):
        assert re.search(rf"{platform} +base built on {machine_name}", demo.stdout), demo.stdout
    assert f"{lab.registry}/sample/api:latest" in demo.stdout
