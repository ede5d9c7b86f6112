"""Readiness fixes: what `doctor --fix` does."""

from __future__ import annotations

from pathlib import Path

from mab_hook import readiness
from mab_hook.builders import BuilderSpec, NodeSpec
from mab_hook.readiness import FAIL, WARN, Check, Report, Wanted
from tests.readiness.recorded import docker, host


def test_fixes(tmp_path: Path) -> None:
    answers = docker()
    answers[("docker", "buildx", "inspect", "multi-arch")] = (1, "", "no builder")
    answers[("mount", "-t", "binfmt_misc", "binfmt_misc", str(tmp_path / "none"))] = (0, "")
    create = ("docker", "buildx", "create", "--name", "multi-arch", "--node", "multi-arch0", "--driver",
              "docker-container")  # fmt: skip  # named: passed as --builder, never made current
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


def test_a_failed_create_stops_the_fixes_there_and_says_what_docker_said(tmp_path: Path) -> None:
    """The builder's first node cannot be created: neither its next node nor the bootstrap is
    tried. Without a builder to bootstrap, a stopped one is not started either."""
    answers = docker()
    first = (
        "docker",
        "buildx",
        "create",
        "--name",
        "fleet",
        "--node",
        "fleet0",
        "--driver",
        "docker-container",
    )
    answers[first] = (1, "", "line one\nline two\nERROR: cannot reach ssh://b\n")
    h = host(tmp_path, answers)
    wanted = Wanted(("linux/arm64",), builder="fleet")
    missing = Report(
        (Check("builder", FAIL, "builder 'fleet' does not exist", "create it", "builder-missing"),), None
    )
    assert readiness.apply_fixes(h, missing, wanted) == [
        f"{' '.join(first)}: failed (exit 1): line two ERROR: cannot reach ssh://b"]  # fmt: skip
    stopped = Report((Check("builder", WARN, "fleet is not running", "start it", "builder-stopped"),), None)
    assert readiness.apply_fixes(h, stopped, wanted) == []
    spec = BuilderSpec(
        "fleet", "docker-container", nodes=(NodeSpec("fleet0", "", ()), NodeSpec("fleet1", "ssh://b", ()))
    )
    answers[first] = (0, "fleet\n")
    answers[("docker", "buildx", "create", "--name", "fleet", "--node", "fleet1", "--append", "ssh://b")] = (
        1,
        "",
        "no",
    )
    done = readiness.apply_fixes(host(tmp_path / "2", answers), missing, wanted._replace(builder_spec=spec))
    assert done == [f"{' '.join(first)}: done",
                    "docker buildx create --name fleet --node fleet1 --append ssh://b: failed (exit 1): no"]  # fmt: skip


def test_a_missing_builder_no_one_named_is_created_as_multi_arch(tmp_path: Path) -> None:
    answers = docker()
    create = ("docker", "buildx", "create", "--name", "multi-arch", "--node", "multi-arch0", "--driver",
              "docker-container", "--use")  # fmt: skip
    answers[create] = (0, "multi-arch\n")
    answers[("docker", "buildx", "inspect", "--bootstrap", "multi-arch")] = (0, "")
    missing = Report((Check("builder", FAIL, "no current builder", "create it", "builder-missing"),), None)
    assert readiness.apply_fixes(host(tmp_path, answers), missing, Wanted(("linux/arm64",))) == [
        f"{' '.join(create)}: done", "docker buildx inspect --bootstrap multi-arch: done"]  # fmt: skip


def test_a_builder_made_offline_runs_the_mirrors_buildkit(tmp_path: Path) -> None:
    """`buildkit-image`: the builder doctor --fix creates, and the one its fix text shows, runs
    BuildKit from the team's mirror, never Docker Hub; driver options that name one win."""
    answers = docker()
    answers[("docker", "buildx", "inspect", "multi-arch")] = (1, "", "no builder")
    create = ("docker", "buildx", "create", "--name", "multi-arch", "--node", "multi-arch0", "--driver",
              "docker-container", "--driver-opt", "image=mirror.internal/moby/buildkit:v0.16.0")  # fmt: skip
    answers[create] = (0, "multi-arch\n")
    answers[("docker", "buildx", "inspect", "--bootstrap", "multi-arch")] = (0, "")
    h = host(tmp_path, answers)
    wanted = Wanted(
        ("linux/arm64",), builder="multi-arch", buildkit_image="mirror.internal/moby/buildkit:v0.16.0"
    )
    report = readiness.check(h, wanted)
    assert {c.name: c for c in report.checks}["builder"].fix == (
        "create it: `docker buildx create --name multi-arch --driver docker-container --driver-opt "
        "image=mirror.internal/moby/buildkit:v0.16.0 --bootstrap` (mab-hook doctor --fix does)"
    )
    assert readiness.apply_fixes(h, report, wanted)[0] == f"{' '.join(create)}: done"
    own = BuilderSpec("multi-arch", "docker-container", (("image", "own/buildkit:v1"),))
    assert own.with_image("mirror.internal/moby/buildkit:v0.16.0") == own
    assert BuilderSpec("k", "kubernetes").with_image("mirror/buildkit:v1") == BuilderSpec("k", "kubernetes")
