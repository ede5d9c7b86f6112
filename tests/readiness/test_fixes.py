"""Readiness fixes: what `doctor --fix` does."""

from __future__ import annotations

from pathlib import Path

from mab_hook import readiness
from mab_hook.readiness import Wanted
from tests.readiness.recorded import docker, host


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
