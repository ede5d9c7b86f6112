"""One commit's images across engines: what each engine is given, and how their results and
uploads become each image's one result and one index."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from mab_hook import engine_builds, input_digest
from mab_hook.registry import Registry
from mab_hook.results import BuildResult, Failure, Status
from mab_hook.routing import DEFAULT, Engine
from tests.conftest import Engine as LabEngine
from tests.conftest import Lab, Repo
from tests.engine import OciRegistry
from tests.test_plan import CONFIG, plan

ALL3 = ("linux/amd64", "linux/arm64", "linux/arm/v7")
ARM = Engine("arm-box", context=True)


def three_platforms(**platforms: tuple[str, ...]) -> object:
    images = tuple(dataclasses.replace(i, platforms=platforms.get(i.name, ALL3)) for i in CONFIG.images)
    return dataclasses.replace(CONFIG, images=images, push=True)


def test_an_engine_builds_only_its_platforms_and_an_image_with_none_of_them_is_only_a_base_there() -> None:
    cfg = three_platforms(api=("linux/amd64",))
    p = plan({"base/Dockerfile"}, cfg)  # type: ignore[arg-type]
    assert [x.image.name for x in p.affected] == ["base", "api", "worker"]
    arm = engine_builds.narrowed(p, ("linux/arm64", "linux/arm/v7"))
    assert [(x.image.name, x.image.platforms) for x in arm.affected] == [
        ("base", ("linux/arm64", "linux/arm/v7")),
        ("worker", ("linux/arm64", "linux/arm/v7")),
    ]
    assert [(x.image.name, x.image.platforms) for x in arm.context_only] == [("api", ())]
    assert [x.input_digest for x in arm.affected] == [p.affected[0].input_digest, p.affected[2].input_digest]
    amd = engine_builds.narrowed(p, ("linux/amd64",))
    assert [x.image.platforms for x in amd.affected] == [("linux/amd64",)] * 3 and amd.context_only == ()


def test_each_engine_uploads_beside_the_images_staging_tag_under_a_tag_naming_its_platforms() -> None:
    p = plan({"base/Dockerfile"}, three_platforms())  # type: ignore[arg-type]
    base = p.affected[0]._replace(input_digest="a" * 64)
    whole = input_digest.staged(p.config, base.image, base.input_digest)
    assert engine_builds.part_reference(p, base, ("linux/arm64",)) == f"{whole}-linux-arm64"  # a CI job's
    assert (
        engine_builds.part_reference(p, base, ("linux/arm64", "linux/arm/v7"))
        == f"{whole}-linux-arm64_linux-arm-v7"
    )
    many = ("linux/amd64", "linux/arm64", "linux/arm/v7", "linux/arm/v6", "linux/386", "linux/ppc64le")
    long = engine_builds.part_reference(p, base, many)
    tag = long.rpartition(":")[2]
    assert (
        len(tag) <= 128 and tag.startswith(whole.rpartition(":")[2] + "-p") and input_digest.is_staging(long)
    )
    assert long != engine_builds.part_reference(p, base, many[:-1])


def test_an_engines_name_is_safe_as_a_file_name() -> None:
    assert [engine_builds.slug(e) for e in (DEFAULT, ARM, Engine("pi+lab.2"))] == [
        "default",
        "arm-box",
        "pi-lab.2",
    ]


def result(status: Status = Status.BUILT, failure: Failure = Failure.NONE, detail: str = "", seconds: float = 1.0,
           published: tuple[str, ...] = ()) -> BuildResult:  # fmt: skip
    return BuildResult("api", status, seconds, detail, Path("api.log"), platforms=("linux/amd64",), input_digest="d",
                       image_digest="sha256:part", failure=failure, published=published)  # fmt: skip


def test_an_image_built_by_every_engine_is_built_with_the_merged_index_as_its_digest() -> None:
    planned = plan({"base/Dockerfile"}, three_platforms()).affected[0]  # type: ignore[arg-type]
    got = [((DEFAULT, ("linux/amd64",)), result(seconds=2.0, published=("r:amd",))),
           ((ARM, ("linux/arm64", "linux/arm/v7")), result(seconds=5.0, published=("r:arm",)))]  # fmt: skip
    merged = engine_builds.combined(planned, got, lambda: "sha256:merged")
    assert (merged.status, merged.image_digest, merged.seconds) == (Status.BUILT, "sha256:merged", 5.0)
    assert (merged.platforms, merged.published) == (ALL3, ("r:amd", "r:arm"))
    kept = engine_builds.combined(planned, got, None)  # no push: built where it ran, nothing merged
    assert (kept.status, kept.image_digest) == (Status.BUILT, "")


def test_an_image_one_engine_failed_is_that_failure_named_after_the_engine_not_another_ones_knock_on() -> (
    None
):
    planned = plan({"base/Dockerfile"}, three_platforms()).affected[0]  # type: ignore[arg-type]
    stopped = result(Status.NOT_BUILT, Failure.BASE, "base image base did not build")
    own = result(Status.FAILED, Failure.BUILD, "build failed on linux/arm64", published=())
    merges: list[str] = []

    def merge() -> str:
        merges.append("merged")
        return "sha256:merged"

    got = [((DEFAULT, ("linux/amd64",)), stopped), ((ARM, ("linux/arm64", "linux/riscv64")), own),
           ((Engine("pi"), ("linux/arm/v7",)), result(published=("r:v7",)))]  # fmt: skip
    failed = engine_builds.combined(planned, got, merge)
    assert (failed.status, failed.failure, failed.detail) == (
        Status.FAILED,
        Failure.BUILD,
        "on engine arm-box (linux/arm64, linux/riscv64): build failed on linux/arm64",
    )
    assert failed.published == ("r:v7",) and failed.platforms == ALL3 and merges == []
    only_stopped = engine_builds.combined(planned, got[:1], None)
    assert only_stopped.detail == "on the default engine (linux/amd64): base image base did not build"


def test_uploads_that_cannot_be_merged_fail_the_image_as_the_registrys_failure() -> None:
    planned = plan({"base/Dockerfile"}, three_platforms()).affected[0]  # type: ignore[arg-type]

    def refused() -> str:
        raise OSError("HTTP 500 putting reg/x:mab-d")

    failed = engine_builds.combined(
        planned, [((DEFAULT, ("linux/amd64",)), result(published=("r",)))], refused
    )
    assert (failed.status, failed.failure) == (Status.FAILED, Failure.REGISTRY)
    assert failed.detail == "the engines' uploads could not be merged: HTTP 500 putting reg/x:mab-d"


def test_the_uploads_are_merged_by_digest_into_one_index_under_the_staging_tag() -> None:
    with OciRegistry() as oci:
        registry = Registry({})
        host = oci.host
        amd = oci.upload(f"{host}/team/s/api:mab-d-linux-amd64", {}, ("linux/amd64",))
        arm = oci.upload(
            f"{host}/team/s/api:mab-d-linux-arm64_linux-arm-v7", {}, ("linux/arm64", "linux/arm/v7")
        )
        got = [((DEFAULT, ("linux/amd64",)), result(published=(f"{host}/team/s/api:mab-d-linux-amd64",))),
               ((ARM, ("linux/arm64", "linux/arm/v7")),
                result(published=(f"{host}/team/s/api:mab-d-linux-arm64_linux-arm-v7",)))]  # fmt: skip
        digest = engine_builds.merge_uploads(registry, f"{host}/team/s/api:mab-d", got)
        body, _media = oci.get("team/s/api", "manifests", "mab-d") or (b"", "")
        assert oci.digest(f"{host}/team/s/api:mab-d") == digest
        parts = [json.loads(oci.get("team/s/api", "manifests", d)[0])["manifests"] for d in (amd, arm)]  # type: ignore[index]
        assert json.loads(body)["manifests"] == parts[0] + parts[1]
        gone = [((DEFAULT, ("linux/amd64",)), result(published=(f"{host}/team/s/api:mab-gone",)))]
        with pytest.raises(OSError, match=rf"^{re.escape(host)}/team/s/api:mab-gone is not in the registry$"):
            engine_builds.merge_uploads(registry, f"{host}/team/s/api:mab-d2", gone)


# --- on the lab: a second engine (its own dockerd) as docker context arm-box ---------------------

LAB_PLATFORMS = ("linux/amd64", "linux/arm64", "linux/arm/v7")


def routed_project(
    lab: Lab, registry: str, salt: str, *, extra: str = "", api_run: str = "true"
) -> dict[str, str]:
    """base and api (built on base), amd64 on the lab's engine, both arm platforms on arm-box."""
    busybox = f"{lab.registry}/{lab.busybox}"  # arm-box has no local images: from the registry
    return {
        "pyproject.toml": f'[tool.multiarch]\nplatforms = {json.dumps(LAB_PLATFORMS)}\nregistry = "{registry}"\n'
                          f'push = true\ntags = ["{{short_sha}}"]\n{extra}'
                          '[tool.multiarch.engines]\n"linux/arm64" = "arm-box"\n"linux/arm/v7" = "arm-box"\n'
                          f'[tool.multiarch.images.base]\ncontext = "base"\n'
                          f'[tool.multiarch.images.api]\ncontext = "api"\n',
        "base/Dockerfile": f"FROM {busybox}\nRUN echo {salt} > /salt && uname -m > /machine\n",
        "api/Dockerfile": f"FROM {registry}/base\nRUN {api_run}\nCOPY app.txt /\n",
        "api/app.txt": f"{salt}\n",
    }  # fmt: skip


def with_context(lab: Lab, tmp_path: Path, name: str, host: str) -> dict[str, str]:
    """The lab's environment with a docker config of the test's own, holding context `name`
    for the engine at `host`: the machine's docker config is left as it is."""
    config = tmp_path / "docker-config"
    shutil.copytree(lab.env["DOCKER_CONFIG"], config, symlinks=True)
    env = {**lab.env, "DOCKER_CONFIG": str(config)}
    made = subprocess.run(("docker", "context", "create", name, "--docker", f"host={host}"), env=env,
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert made.returncode == 0, made.stderr
    return env


def arm_box(lab: Lab, repo: Repo, tmp_path: Path, host: str) -> tuple[str, str, dict[str, str]]:
    """A test's registry prefix and salt, and an environment whose docker context arm-box is
    the engine at `host`, which the pusher lets the repository's builds run on."""
    env = with_context(lab, tmp_path, "arm-box", host)
    repo.git("config", "mab-hook.engine", "arm-box")
    return lab.namespace(), uuid.uuid4().hex, env


def run_mab(repo: Repo, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run((sys.executable, "-m", "mab_hook", *args), cwd=repo.path, env=env, capture_output=True,
                          text=True, check=False)  # fmt: skip


def stored(env: dict[str, str], *context: str) -> set[str]:
    """The tagged images an engine's store holds (`context`: that docker context's)."""
    listed = subprocess.run(("docker", *context, "image", "ls", "--format", "{{.Repository}}:{{.Tag}}"), env=env,
                            capture_output=True, text=True, check=True)  # fmt: skip
    return set(listed.stdout.split())


@pytest.mark.lab
def test_each_engine_builds_its_platforms_and_the_merged_image_holds_every_platform(
    lab: Lab, repo: Repo, second_engine: LabEngine, tmp_path: Path
) -> None:
    registry, salt, env = arm_box(lab, repo, tmp_path, second_engine.env["DOCKER_HOST"])
    sha = repo.commit(routed_project(lab, registry, salt))
    done = run_mab(repo, env, "--all", "--publish")
    assert done.returncode == 0, done.stdout + done.stderr
    for name in ("base", "api"):
        assert lab.platforms(f"{registry}/{name}:{sha[:7]}") == set(LAB_PLATFORMS)
        staged = {t for t in lab.tags(f"{registry}/mab-staging/{name}") if t.startswith("mab-")}
        arm = next(t for t in staged if t.endswith("-linux-arm64_linux-arm-v7"))
        digest = arm.removesuffix("-linux-arm64_linux-arm-v7")
        assert staged == {digest, f"{digest}-linux-amd64", arm}
        # Each engine built, and holds, only its own platforms' upload.
        assert f"{registry}/mab-staging/{name}:{arm}" in stored(env, "--context", "arm-box")
        assert f"{registry}/mab-staging/{name}:{digest}-linux-amd64" not in stored(
            env, "--context", "arm-box"
        )
        assert f"{registry}/mab-staging/{name}:{digest}-linux-amd64" in stored(env)
        assert f"{registry}/mab-staging/{name}:{arm}" not in stored(env)
    # Each platform's image is that platform's (the check of what was built passed), and runs.
    for platform, machine in (
        ("linux/arm64", "aarch64"),
        ("linux/arm/v7", "armv7l"),
        ("linux/amd64", "x86_64"),
    ):
        ran = lab.docker(
            "run", "--rm", "--platform", platform, f"{registry}/api:{sha[:7]}", "cat", "/machine", "/salt"
        )
        assert ran.stdout.split() == [machine, salt], ran
    again = run_mab(repo, env, "--all", "--publish")
    assert again.returncode == 0 and "skipped" in again.stdout, again.stdout + again.stderr


@pytest.mark.lab
def test_an_engine_failing_its_build_blocks_the_push_and_publishes_nothing(
    lab: Lab, repo: Repo, second_engine: LabEngine, tmp_path: Path
) -> None:
    registry, salt, env = arm_box(lab, repo, tmp_path, second_engine.env["DOCKER_HOST"])
    repo.commit(routed_project(lab, registry, salt, api_run='test "$(uname -m)" != aarch64'))
    done = run_mab(repo, env, "--all", "--publish")
    assert done.returncode == 1, done.stdout + done.stderr
    said = done.stdout + done.stderr
    assert re.search(r"^  api .* failed .* on engine arm-box \(linux/arm64, linux/arm/v7\): build failed on linux/arm64: "
                     r'RUN test "\$\(uname -m\)" != aarch64 \(exit 1\)$', said, re.MULTILINE), said  # fmt: skip
    assert lab.pushed(registry, ("base", "api")) == set()  # base built everywhere, yet nothing is public
    assert not {t for t in lab.tags(f"{registry}/mab-staging/api") if "-linux-" not in t}  # never merged


@pytest.mark.lab
def test_an_engine_that_cannot_be_reached_is_named_by_doctor_and_the_gate_or_is_emulated_when_allowed(
    lab: Lab, repo: Repo, tmp_path: Path
) -> None:
    registry, salt, env = arm_box(lab, repo, tmp_path, f"unix://{tmp_path}/nothing-listens.sock")
    files = routed_project(lab, registry, salt)
    repo.commit(files)
    doctor = run_mab(repo, env, "doctor")
    assert doctor.returncode == 1, doctor.stdout + doctor.stderr
    assert re.search(r"arm-box/docker\b.*nothing-listens\.sock", doctor.stdout + doctor.stderr), doctor.stdout
    gated = run_mab(repo, env, "--all", "--publish")
    assert gated.returncode == 1 and "arm-box/docker" in gated.stdout + gated.stderr
    assert lab.staged(registry, ("base", "api")) == set()  # nothing was built
    emulate = files["pyproject.toml"].replace("push = true\n", 'push = true\nengine-down = "emulate"\n')
    sha = repo.commit({"pyproject.toml": emulate})
    done = run_mab(repo, env, "--all", "--publish")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "engine arm-box is not ready" in done.stdout + done.stderr
    assert lab.platforms(f"{registry}/api:{sha[:7]}") == set(LAB_PLATFORMS)


def test_an_interruption_stops_every_engines_build_before_waiting_for_them() -> None:
    started, stopped = threading.Barrier(3), threading.Event()

    def build(part: engine_builds.Part) -> list[BuildResult]:
        started.wait(5)
        if not stopped.wait(10):  # a build runs until it is stopped
            raise AssertionError("never stopped")
        return []

    def interrupt() -> None:
        started.wait(5)
        time.sleep(0.5)  # the run is waiting for the engines by then
        # The terminal's ^C, handed (as the kernel may) to a thread other than the one waiting.
        signal.pthread_kill(threading.get_ident(), signal.SIGINT)

    threading.Thread(target=interrupt).start()
    began = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        engine_builds.build_parts([(DEFAULT, ("linux/amd64",)), (ARM, ("linux/arm64",))], build, stopped.set)
    assert stopped.is_set() and time.monotonic() - began < 5


@pytest.mark.lab
def test_a_signal_while_both_engines_build_stops_both_and_leaves_nothing_behind(
    lab: Lab, repo: Repo, second_engine: LabEngine, tmp_path: Path
) -> None:
    registry, salt, env = arm_box(lab, repo, tmp_path, second_engine.env["DOCKER_HOST"])
    repo.commit(routed_project(lab, registry, salt, api_run=f"echo started-{salt}-$(uname -m) && sleep 60"))
    proc = subprocess.Popen((sys.executable, "-m", "mab_hook", "--all", "--publish", "-v"), cwd=repo.path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    assert proc.stdout is not None
    seen, machines = [], set()
    for line in proc.stdout:  # until the slow step runs on both engines
        seen.append(line)
        machines |= set(re.findall(rf"started-{salt}-(\w+)", line))
        if {"x86_64", "aarch64"} <= machines:
            break
    proc.send_signal(signal.SIGTERM)
    rest = proc.stdout.read()
    assert proc.wait(timeout=60) == 130, "".join(seen) + rest
    assert "no tag was published" in rest
    left = subprocess.run(("pgrep", "-f", f"{repo.path}/.git/mab-hook"), capture_output=True, check=False)
    assert left.stdout == b""  # no buildx left running, on either engine
    assert repo.git("worktree", "list").count("\n") == 0
    assert lab.pushed(registry, ("base", "api")) == set()
