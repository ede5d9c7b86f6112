"""mab-hook's commands end to end in-process, fast: a real repository, mab-hook's own registry
client over HTTP to an in-memory registry, and the canned engine in place of Docker
(tests/engine.py). What each command prints and returns, and what the registry then holds.
The same behaviours against the real lab: test_e2e.py, commands/test_verify.py,
commands/test_build.py, commands/test_doctor.py."""

from __future__ import annotations

import hashlib
import io
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import git
import pytest

from mab_hook import cli, pending, pipeline, readiness, runs
from mab_hook.commands import COMMANDS
from mab_hook.coverage import REGISTRY, Found
from mab_hook.plan import Plan
from mab_hook.process import Completed
from mab_hook.registry import Registry
from tests.conftest import Repo
from tests.engine import Canned, Fault, program_layer
from tests.readiness import recorded
from tests.test_binfmt import AARCH64

IMAGES = ("base", "api", "worker", "lone")


def project(host: str, **settings: str) -> dict[str, str]:
    table = "".join(f"{key} = {value}\n" for key, value in settings.items())
    images = "".join(f'[tool.multiarch.images.{name}]\ncontext = "{name}"\n' for name in IMAGES)
    return {
        "pyproject.toml": f'[tool.multiarch]\nplatforms = ["linux/amd64", "linux/arm64"]\n'
                          f'registry = "{host}/team"\npush = true\ntags = ["{{short_sha}}"]\n{table}{images}',
        "base/Dockerfile": "FROM busybox\nRUN make\n",
        "api/Dockerfile": f"FROM {host}/team/base\nCOPY app.txt /\n",
        "api/app.txt": "v1\n",
        "worker/Dockerfile": f"FROM {host}/team/base\nRUN make\n",
        "lone/Dockerfile": "FROM busybox\nRUN make\n",
    }  # fmt: skip


def mab(
    repo: Repo, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str
) -> tuple[int, str]:
    monkeypatch.chdir(repo.path)
    command = args[:1] if args[0] in COMMANDS else ()
    code = cli.main([*command, "--color", "never", *args[len(command) :]])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_the_gate_builds_publishes_and_verify_finds_it_all(
    repo: Repo, canned: Canned, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sha = repo.commit(project(canned.registry.host))
    code, out = mab(repo, capsys, monkeypatch, "--all", "--publish")
    assert code == 0, out
    assert all(sha[:7] in canned.tags(name) for name in IMAGES)
    pushed = re.findall(r"^  (\w+)\s+linux/amd64, linux/arm64\s+pushed\s", out, re.MULTILINE)
    assert sorted(pushed) == sorted(IMAGES)
    code, out = mab(repo, capsys, monkeypatch, "verify", "--all")
    assert code == 0, out
    assert "every affected image (4) is in the registry, built from exactly these inputs" in out
    rows = [line for line in out.splitlines() if line.startswith("  ok ")]
    assert len(rows) == 4 and len({row.index("(commit") for row in rows}) == 1, out  # one column
    assert any(row.startswith("  ok       api     (commit ") for row in rows), out
    code, out = mab(repo, capsys, monkeypatch, "verify", "--all", "--json")
    assert code == 0 and json.loads(out[: out.rindex("}") + 1])["ok"] is True
    code, out = mab(repo, capsys, monkeypatch, "--all", "--publish", "--json")
    report = json.loads(out[out.index("{") : out.rindex("}") + 1])
    assert code == 0 and {(r["name"], r["status"]) for r in report["results"]} == {
        (n, "skipped") for n in IMAGES
    }


def test_by_hand_images_built_and_not_pushed_are_not_said_to_be_in_staging(
    repo: Repo, canned: Canned, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    files = project(canned.registry.host)
    repo.commit({**files, "pyproject.toml": files["pyproject.toml"].replace("push = true", "push = false")})
    code, out = mab(repo, capsys, monkeypatch, "--all")
    assert code == 0, out
    assert "staging" not in out  # built and kept in the engine: nothing was uploaded
    assert not any(canned.staged(name) for name in IMAGES)


def test_by_hand_images_go_to_staging_only_unless_asked_and_a_feature_branch_never_publishes(
    repo: Repo, canned: Canned, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sha = repo.commit(project(canned.registry.host))
    code, out = mab(repo, capsys, monkeypatch, "--all")
    assert code == 0, out
    said = "mab-hook: by hand: uploaded under staging tags only; `--publish` also moves the public tags"
    assert said in out.splitlines()  # the whole line
    assert all(canned.staged(name) and not canned.tags(name) for name in IMAGES)
    repo.git("checkout", "-q", "-b", "feature/x")
    code, out = mab(repo, capsys, monkeypatch, "--all", "--publish")
    assert code == 0, out
    assert ("feature/x publishes nothing: feature/x is not the remote's default branch (publish-branches); "
            "its images go to staging tags only") in out  # fmt: skip
    assert not any(sha[:7] in canned.tags(name) for name in IMAGES)
    repo.git("checkout", "-q", "main")
    code, out = mab(repo, capsys, monkeypatch, "--all", "--publish")
    assert code == 0, out
    assert all(sha[:7] in canned.tags(name) for name in IMAGES)


def test_verify_names_what_the_gate_did_not_build_and_build_missing_builds_only_that(
    repo: Repo, canned: Canned, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.commit(project(canned.registry.host))
    assert mab(repo, capsys, monkeypatch, "--all")[0] == 0
    repo.commit({"api/app.txt": "v2\n"})  # pushed with --no-verify: no gate ran
    code, out = mab(repo, capsys, monkeypatch, "verify", "--from", "HEAD~1")
    assert code == 1
    assert "not built by the gate from these inputs: api (pushed with --no-verify" in out
    assert "mab-hook verify --build-missing" in out
    before = len(canned.engine.invocations)
    code, out = mab(repo, capsys, monkeypatch, "verify", "--from", "HEAD~1", "--build-missing")
    assert code == 0, out
    assert "building what is missing: api" in out
    assert [entries for entries in canned.engine.invocations[before:]] == [("api",)]
    assert repo.head()[:7] in canned.tags("api")


def test_a_failing_image_blocks_the_push_and_moves_no_tag(
    repo: Repo, canned: Canned, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sha = repo.commit(project(canned.registry.host))
    canned.engine.faults["worker"] = Fault(step_fails_on="linux/arm64")
    code, out = mab(repo, capsys, monkeypatch, "--all")
    assert code == 1
    assert "build failed on linux/arm64" in out
    assert not any(sha[:7] in canned.tags(name) for name in IMAGES)
    blocked = next(line for line in out.splitlines() if "the push is blocked" in line)
    staged = [
        f"{canned.registry.host}/team/mab-staging/{name}:{tag}"
        for name in IMAGES
        for tag in canned.staged(name)
    ]
    assert staged and blocked == (f"mab-hook: error: the push is blocked and no tag was published (uploaded to staging, "
                                  f"which the next push reuses: {', '.join(sorted(staged, key=blocked.find))}): fix the "
                                  "failed build(s) above, commit, and push again")  # fmt: skip
    canned.engine.faults.clear()
    code, out = mab(repo, capsys, monkeypatch, "--all", "--publish")
    assert code == 0, out
    assert set(canned.engine.invocations[-1]) == {"worker"}  # the others were uploaded the first time
    assert all(sha[:7] in canned.tags(name) for name in IMAGES)


def test_the_ci_fan_out_publishes_only_once_every_platform_is_there(
    repo: Repo, canned: Canned, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sha = repo.commit(project(canned.registry.host))
    for name in IMAGES:
        code, out = mab(repo, capsys, monkeypatch, "build", "--image", name, "--platform", "linux/amd64",
                        "--push-by-digest", "--all")  # fmt: skip
        assert code == 0, out
    code, out = mab(repo, capsys, monkeypatch, "publish", "--all")
    assert code == 1
    assert "not every platform was built, so nothing was published: missing base linux/arm64" in out
    assert not any(sha[:7] in canned.tags(name) for name in IMAGES)
    for name in IMAGES:
        assert mab(repo, capsys, monkeypatch, "build", "--image", name, "--platform", "linux/arm64",
                   "--push-by-digest", "--all")[0] == 0  # fmt: skip
    code, out = mab(repo, capsys, monkeypatch, "publish", "--all")
    assert code == 0, out
    assert "api: published " in out and "(merged 2 platforms)" in out
    index = json.loads(canned.registry.get("team/api", "manifests", sha[:7])[0])  # type: ignore[index]
    assert sorted(m["platform"]["architecture"] for m in index["manifests"]) == ["amd64", "arm64"]
    code, out = mab(repo, capsys, monkeypatch, "build", "--image", "api", "--platform", "linux/arm64",
                    "--push-by-digest", "--all")  # fmt: skip
    assert (code, "already published from these inputs" in out) == (0, True)
    code, out = mab(repo, capsys, monkeypatch, "verify", "--all")
    assert code == 0, out


def test_ci_build_refuses_an_unknown_image_or_platform(
    repo: Repo, canned: Canned, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.commit(project(canned.registry.host))
    code, out = mab(
        repo, capsys, monkeypatch, "build", "--image", "web", "--platform", "linux/amd64", "--all"
    )
    assert code == 1 and "no affected image named 'web'" in out and "images: base, api, worker, lone" in out
    code, out = mab(
        repo, capsys, monkeypatch, "build", "--image", "api", "--platform", "linux/s390x", "--all"
    )
    assert (
        code == 1 and "image api is not built for linux/s390x; its platforms: linux/amd64, linux/arm64" in out
    )


def test_doctor_on_a_ready_host_and_on_one_whose_emulator_is_off(
    repo: Repo, canned: Canned, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.commit(project(canned.registry.host))
    code, out = mab(repo, capsys, monkeypatch, "doctor")
    assert code == 0, out
    assert "host readiness for linux/amd64, linux/arm64" in out
    assert "kept in " in out
    (canned.binfmt / "qemu-aarch64").write_text(AARCH64.replace("enabled", "disabled", 1))
    code, out = mab(repo, capsys, monkeypatch, "doctor", "--json")
    assert code == 1
    checks = {c["id"]: c for c in json.loads(out[: out.rindex("}") + 1])["checks"]}
    assert checks["platform:linux/arm64"]["status"] == "fail"
    assert f"echo 1 | sudo tee {canned.binfmt / 'qemu-aarch64'}" in checks["platform:linux/arm64"]["fix"]
    code, out = mab(repo, capsys, monkeypatch, "--all")
    assert code == 1 and "this host cannot build what the push needs; nothing was built" in out
    assert canned.engine.invocations == []


def test_a_base_without_a_platform_blocks_the_push_before_anything_is_built_and_an_unknown_one_is_said(
    repo: Repo, canned: Canned, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.commit(project(canned.registry.host))
    canned.bases["busybox"] = Found("sha256:" + "1" * 64, ("linux/amd64",), True, REGISTRY)
    code, out = mab(repo, capsys, monkeypatch, "--all", "--publish")
    assert code == 1, out
    assert ("  base: base busybox (FROM, line 1) is a single linux/amd64 image, no index: built for linux/arm64 "
            "on it, the image would hold linux/amd64 programs") in out  # fmt: skip
    assert "  lone: base busybox (FROM, line 1)" in out
    assert canned.engine.invocations == [] and not canned.registry.repositories()  # nothing built or pushed
    canned.bases["busybox"] = "neither the engine's image store nor the registry has it"
    code, out = mab(repo, capsys, monkeypatch, "--all", "--publish")
    assert code == 0, out  # the build says what is wrong with a base no one has
    assert ("could not check which platforms base busybox has: neither the engine's image store nor the "
            "registry has it") in out  # fmt: skip


def test_an_image_that_is_not_the_platform_it_claims_publishes_nothing_and_is_judged_again_for_free(
    repo: Repo, canned: Canned, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sha = repo.commit(project(canned.registry.host))
    canned.engine.faults["api"] = Fault(foreign_on="linux/arm64")
    code, out = mab(repo, capsys, monkeypatch, "--all", "--publish")
    assert code == 1, out
    said = "--- api: not the platform it claims: linux/arm64: /usr/local/bin/app is ELF 64-bit LSB, machine 0x3e (amd64)"
    assert said in out and "`foreign-binaries`" in out, out
    assert not any(sha[:7] in canned.tags(name) for name in IMAGES)  # no public tag, of any image
    assert canned.staged("api")  # the upload stays: judged, it is not published
    canned.registry.requests.clear()
    code, out = mab(repo, capsys, monkeypatch, "--all", "--publish")
    assert code == 1 and said in out, out  # nothing built; the upload judged as before, with no layer read
    layer = "sha256:" + hashlib.sha256(program_layer("usr/local/bin/app", "amd64")).hexdigest()
    assert not any(path.endswith(f"/blobs/{layer}") for _method, path in canned.registry.requests)
    repo.commit({"pyproject.toml": project(canned.registry.host)["pyproject.toml"].replace(
        '[tool.multiarch.images.api]\ncontext = "api"\n',
        '[tool.multiarch.images.api]\ncontext = "api"\nforeign-binaries = ["/usr/local/bin/app"]\n')})  # fmt: skip
    code, out = mab(repo, capsys, monkeypatch, "--all", "--publish")
    assert code == 0, out


def test_to_names_the_ref_whose_tags_go_on_the_images_not_the_branch_checked_out(
    repo: Repo, canned: Canned, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    files = project(canned.registry.host, **{"publish-branches": '["*"]'})
    files["pyproject.toml"] = files["pyproject.toml"].replace('tags = ["{short_sha}"]', 'tags = ["{branch}"]')
    release = repo.commit(files)
    repo.git("branch", "release")
    repo.commit({"api/app.txt": "v2\n"})  # main moves on
    code, out = mab(repo, capsys, monkeypatch, "--all", "--to", "release", "--publish")
    assert code == 0, out
    assert all(canned.tags(name) == {"release"} for name in IMAGES), out
    code, out = mab(repo, capsys, monkeypatch, "--all", "--to", release, "--publish")
    assert code == 0, out
    assert f"--to {release[:12]} names no branch or tag: it publishes nothing" in out
    assert all(canned.tags(name) == {"release"} for name in IMAGES)  # no `main`, no other tag


def push(
    repo: Repo,
    sha: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    branch: str = "main",
) -> tuple[int, str]:
    """The gate as git's pre-push hook runs it: a new branch at `sha` pushed to origin."""
    line = f"refs/heads/{branch} {sha} refs/heads/{branch} {'0' * 40}\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(line))
    return mab(repo, capsys, monkeypatch, "origin", str(repo.remote))


def test_readiness_is_asked_first_so_the_gateway_and_the_publisher_know_the_engines_insecure_registries(
    repo: Repo,
    canned: Canned,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """A push of built content builds nothing and is never stopped by the host, yet the
    registry gateway that decides it (and the publisher after it) speaks to each registry as
    the engine does: the daemon's insecure registries, and the configured builder for buildx."""
    sha = repo.commit(project(canned.registry.host, builder='"fleet"'))
    answers = {**recorded.docker(), ("docker", "buildx", "inspect", "fleet"): (0, recorded.INSPECT_DOCKER)}
    fleet = recorded.host(tmp_path / "fleet", answers)
    monkeypatch.setattr(readiness, "local_host", lambda env, machine, probes=None: fleet)
    code, out = mab(repo, capsys, monkeypatch, "--all")  # built and staged
    assert code == 0, out
    built = len(canned.engine.invocations)
    gateways: list[Registry] = []
    deciding = pipeline.decisions

    def decisions(repo_: git.Repo, plans: Sequence[Plan], run: runs.Builds) -> pipeline.Decided:
        gateways.append(run.registry)
        return deciding(repo_, plans, run)

    monkeypatch.setattr(pipeline, "decisions", decisions)
    code, out = push(repo, sha, capsys, monkeypatch)
    assert code == 0, out
    assert len(canned.engine.invocations) == built  # nothing built again
    insecure = (("plain.internal:5000",), ("127.0.0.0/8", "10.20.0.0/16"))  # the recorded `docker info`
    assert [(g.insecure, g.builder) for g in gateways] == [(insecure, "fleet")]
    [(_path, record)] = pending.every(repo.path / ".git" / "mab-hook")
    assert record.insecure == insecure


def test_a_host_found_ready_is_remembered_between_pushes_in_the_repositorys_cache(
    repo: Repo,
    canned: Canned,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Readiness costs some 0.5 s of docker calls: a second push asking the same question
    (platforms, builder, staging repository) within READY_FOR asks docker nothing, from
    .git/mab-hook/cache/ready.json (private, as everything mab-hook keeps)."""
    asked: list[tuple[str, ...]] = []
    found = recorded.host(tmp_path / "asked")

    def run(cmd: tuple[str, ...]) -> Completed:
        asked.append(cmd)
        return found.run(cmd)

    monkeypatch.setattr(readiness, "local_host", lambda env, machine, probes=None: found._replace(run=run))
    repo.commit(project(canned.registry.host))
    code, out = mab(repo, capsys, monkeypatch, "--all")
    assert code == 0, out
    assert ("docker", "info", "--format", "{{json .}}") in asked
    remembered = repo.path / ".git" / "mab-hook" / "cache" / "ready.json"
    assert remembered.stat().st_mode & 0o777 == 0o600
    asked.clear()
    repo.commit({"base/Dockerfile": "FROM busybox\nRUN make two\n"})  # the same question: every image
    code, out = mab(repo, capsys, monkeypatch, "--from", "HEAD~1")
    assert code == 0, out
    assert "  1. base" in out and asked == []


def test_a_failing_push_hands_nothing_to_the_publisher_and_a_passing_one_does(
    repo: Repo, canned: Canned, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Public tags wait for the remote, and only for a push whose images all built."""
    sha = repo.commit(project(canned.registry.host))
    canned.engine.faults["worker"] = Fault(step_fails_on="linux/arm64")
    code, out = push(repo, sha, capsys, monkeypatch)
    assert code == 1, out
    assert pending.every(repo.path / ".git" / "mab-hook") == []
    canned.engine.faults.clear()
    code, out = push(repo, sha, capsys, monkeypatch)
    assert code == 0, out
    [(_path, record)] = pending.every(repo.path / ".git" / "mab-hook")
    assert [ref.full for ref in record.refs] == ["refs/heads/main"]


def test_a_repository_the_credentials_may_not_push_to_blocks_the_push_before_any_build(
    repo: Repo, canned: Canned, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.commit(project(canned.registry.host))
    canned.registry.refuse.update({"team/mab-staging/api:*", "team/mab-staging/worker:*"})
    code, out = mab(repo, capsys, monkeypatch, "--all")
    assert code == 1, out
    refused = [f"{canned.registry.host}/team/mab-staging/{name}: these credentials may not push there (HTTP 403)"
               for name in ("api", "worker")]  # fmt: skip
    assert (
        f"mab-hook: error: the push is blocked before any build: {'; '.join(refused)}. Ask for push rights on "
        "each (a robot account's scopes), or `docker login` as an account that has them\n"
    ) in out
    assert canned.engine.invocations == []


def test_an_engine_failure_forgets_the_host_found_ready_and_a_build_failure_does_not(
    repo: Repo, canned: Canned, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine failing under a host remembered as ready: the next push asks docker again."""
    remembered = repo.path / ".git" / "mab-hook" / "cache" / "ready.json"
    repo.commit(project(canned.registry.host))
    canned.engine.faults["worker"] = Fault(step_fails_on="linux/arm64")
    code, out = mab(repo, capsys, monkeypatch, "--all")
    assert code == 1 and remembered.exists(), out
    canned.engine.faults["worker"] = Fault(export_fails=5)
    code, out = mab(repo, capsys, monkeypatch, "--all")
    assert code == 1 and "the engine failed while exporting" in out, out
    assert not remembered.exists()


def test_a_warning_the_pusher_silenced_is_not_said_again_by_the_gate(
    repo: Repo, canned: Canned, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    files = project(canned.registry.host)
    files["pyproject.toml"] = files["pyproject.toml"].replace(
        '"linux/arm64"]', '"linux/arm64", "linux/arm/v7"]'
    )
    repo.commit(files)
    code, out = mab(repo, capsys, monkeypatch, "--all")
    said = "`git config --add mab-hook.silence platform-unlisted` stops this warning"
    assert code == 0 and said in out, out
    repo.git("config", "--add", "mab-hook.silence", "platform-unlisted")
    repo.commit({"base/Dockerfile": "FROM busybox\nRUN make two\n"})
    code, out = mab(repo, capsys, monkeypatch, "--from", "HEAD~1")
    assert code == 0 and "platform-unlisted" not in out and "base: built" in out, out


def test_a_push_of_a_branch_that_publishes_nothing_hands_nothing_over(
    repo: Repo, canned: Canned, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sha = repo.commit(project(canned.registry.host))
    code, out = push(repo, sha, capsys, monkeypatch, branch="feature/x")
    assert code == 0 and "publishes nothing" in out, out
    assert pending.every(repo.path / ".git" / "mab-hook") == []


def test_an_engine_that_fails_and_then_does_not_answer_is_said_after_the_builds(
    repo: Repo,
    canned: Canned,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Asked again after an engine failure, a host that is no longer ready is said, as the
    cause of the failed builds."""
    found = recorded.host(tmp_path / "dying")
    asked = {"version": 0}

    def run(cmd: tuple[str, ...]) -> Completed:
        if cmd[:2] == ("docker", "version"):
            asked["version"] += 1
            if asked["version"] > 1:  # the engine is gone after the first question
                return Completed(
                    cmd, 1, "", "Cannot connect to the Docker daemon at unix:///var/run/docker.sock\n"
                )
        return found.run(cmd)

    monkeypatch.setattr(readiness, "local_host", lambda env, machine, probes=None: found._replace(run=run))
    repo.commit(project(canned.registry.host))
    canned.engine.faults["worker"] = Fault(export_fails=5)
    code, out = mab(repo, capsys, monkeypatch, "--all")
    assert code == 1, out
    assert (
        "mab-hook: error: this host cannot build what the push needs; the builds above failed for it:" in out
    )


# --- platforms routed to engines of their own (`engines`) ---------------------------------------

ROUTED = '{ "linux/arm64" = "arm-box" }'


def with_arm_box(
    repo: Repo, canned: Canned, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *, up: bool = True
) -> None:
    """The host has docker context arm-box: an arm64 machine's engine (`up`: it answers), which
    the pusher lets the repository's builds run on."""
    repo.git("config", "--add", "mab-hook.engine", "arm-box")
    engine = recorded.arm_engine()
    if not up:
        engine[("docker", "version", "--format", "{{json .}}")] = (
            1, "", "error during connect: ssh: connect to host arm-box port 22: Connection refused\n"
        )  # fmt: skip
    answers = {**recorded.docker(), **recorded.through_context("arm-box", engine)}
    found = recorded.host(tmp_path / "routed-host", answers, root=canned.binfmt)
    monkeypatch.setattr(readiness, "local_host", lambda env, machine, probes=None: found)


def index_of(canned: Canned, repository: str, tag: str) -> dict[str, object]:
    got = canned.registry.get(repository, "manifests", tag)
    assert got is not None, (repository, tag)
    found: dict[str, object] = json.loads(got[0])
    return found


def test_platforms_routed_to_an_engine_build_there_at_once_and_publish_as_one_image(
    repo: Repo,
    canned: Canned,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    with_arm_box(repo, canned, monkeypatch, tmp_path)
    sha = repo.commit(project(canned.registry.host, engines=ROUTED))
    code, out = mab(repo, capsys, monkeypatch, "--all", "--publish")
    assert code == 0, out
    # One invocation per engine, at the same time, each building its own platform of every image.
    assert sorted(canned.engine.engines) == ["", "arm-box"] and canned.engine.most_at_once == 2
    platforms = {engine: {tuple(spec["platforms"]) for spec in definition["target"].values()}
                 for engine, definition in zip(canned.engine.engines, canned.engine.definitions, strict=True)}  # fmt: skip
    assert platforms == {"": {("linux/amd64",)}, "arm-box": {("linux/arm64",)}}
    assert "api: built on 2 engines, merged" in out and "engine arm-box: api: built" in out
    # Each engine's upload waits beside the image's staging tag; the public tag names their merge.
    for name in IMAGES:
        digest = next(t for t in canned.staged(name) if t.endswith("-linux-arm64")).removesuffix(
            "-linux-arm64"
        )
        assert canned.staged(name) == {digest, f"{digest}-linux-amd64", f"{digest}-linux-arm64"}
        index = index_of(canned, f"team/{name}", sha[:7])
        parts = [index_of(canned, f"team/mab-staging/{name}", f"{digest}-{p}")["manifests"]
                 for p in ("linux-amd64", "linux-arm64")]  # fmt: skip
        assert index["manifests"] == [m for part in parts for m in cast(list[object], part)]
    code, out = mab(repo, capsys, monkeypatch, "verify", "--all")
    assert code == 0, out
    # Each engine's steps were timed, each native on its own CPU (the arm64 machine's for arm64).
    kept = json.loads((repo.path / ".git" / "mab-hook" / "logs" / sha[:12] / "steps.json").read_text())
    assert {(p, native) for p, _what, _seconds, native in kept["api"]} == {
        ("linux/amd64", True),
        ("linux/arm64", True),
    }


def test_an_engine_whose_build_fails_blocks_the_push_named_and_nothing_is_published(
    repo: Repo,
    canned: Canned,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    with_arm_box(repo, canned, monkeypatch, tmp_path)
    sha = repo.commit(project(canned.registry.host, engines=ROUTED))
    canned.engine.faults["worker"] = Fault(step_fails_on="linux/arm64")
    code, out = mab(repo, capsys, monkeypatch, "--all", "--publish")
    assert code == 1
    assert "on engine arm-box (linux/arm64): build failed on linux/arm64" in out
    assert not any(sha[:7] in canned.tags(name) for name in IMAGES)
    assert not any(t.startswith("mab-") and "-linux-" not in t for t in canned.staged("worker"))  # no merge


def test_an_engine_that_is_down_blocks_the_push_before_any_build_or_is_emulated_when_the_config_says_so(
    repo: Repo,
    canned: Canned,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    with_arm_box(repo, canned, monkeypatch, tmp_path, up=False)
    files = project(canned.registry.host, engines=ROUTED)
    repo.commit(files)
    code, out = mab(repo, capsys, monkeypatch, "--all", "--publish")
    assert code == 1 and canned.engine.invocations == []
    assert "arm-box/docker" in out and "arm-box port 22: Connection refused" in out
    sha = repo.commit(
        {
            "pyproject.toml": files["pyproject.toml"].replace(
                "push = true", 'push = true\nengine-down = "emulate"'
            )
        }
    )
    code, out = mab(repo, capsys, monkeypatch, "--all", "--publish")
    assert code == 0, out
    assert canned.engine.engines == [""]  # all on the default engine, under emulation
    assert (
        "engine arm-box is not ready" in out
        and "linux/arm64 built under emulation on the default engine" in out
    )
    index = index_of(canned, "team/api", sha[:7])
    assert sorted(m["platform"]["architecture"] for m in index["manifests"]) == ["amd64", "arm64"]  # type: ignore[attr-defined]


def test_doctor_checks_each_engine_where_it_runs_and_names_one_that_cannot_be_reached(
    repo: Repo,
    canned: Canned,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    repo.commit(project(canned.registry.host, engines=ROUTED))
    with_arm_box(repo, canned, monkeypatch, tmp_path)
    code, out = mab(repo, capsys, monkeypatch, "doctor", "--json")
    assert code == 0, out
    checks = {c["id"]: c for c in json.loads(out[: out.rindex("}") + 1])["checks"]}
    assert "platform:linux/arm64" not in checks and checks["platform:linux/amd64"]["status"] == "ok"
    assert checks["arm-box/platform:linux/arm64"]["status"] == "ok"
    assert "native" in checks["arm-box/platform:linux/arm64"]["finding"]
    with_arm_box(repo, canned, monkeypatch, tmp_path, up=False)
    code, out = mab(repo, capsys, monkeypatch, "doctor")
    assert code == 1
    assert "host readiness for linux/amd64, linux/arm64" in out
    assert "arm-box/docker" in out and "arm-box port 22: Connection refused" in out


def test_one_engine_for_every_platform_is_the_builder_and_a_ci_job_builds_on_its_platforms_engine(
    repo: Repo,
    canned: Canned,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    with_arm_box(repo, canned, monkeypatch, tmp_path)
    sha = repo.commit(
        project(canned.registry.host, engines='{ "linux/arm64" = "arm-box", "linux/amd64" = "arm-box" }')
    )
    code, out = mab(repo, capsys, monkeypatch, "--all", "--publish")
    assert code == 0, out
    assert canned.engine.engines == ["arm-box"]  # one invocation, nothing to merge
    assert all(not any("-linux-" in t for t in canned.staged(name)) for name in IMAGES)
    assert all(sha[:7] in canned.tags(name) for name in IMAGES)
    repo.commit(project(canned.registry.host, engines=ROUTED))
    repo.commit({"api/app.txt": "v2\n"})
    code, out = mab(repo, capsys, monkeypatch, "build", "--image", "api", "--platform", "linux/arm64",
                    "--push-by-digest", "--from", "HEAD~1")  # fmt: skip
    assert code == 0, out
    assert canned.engine.engines[-1] == "arm-box" and canned.engine.definitions[-1]["target"]["api"][
        "platforms"
    ] == ["linux/arm64"]


def test_images_routed_but_not_pushed_are_built_on_each_engine_and_nothing_is_uploaded(
    repo: Repo,
    canned: Canned,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    with_arm_box(repo, canned, monkeypatch, tmp_path)
    files = project(canned.registry.host, engines=ROUTED)
    repo.commit({**files, "pyproject.toml": files["pyproject.toml"].replace("push = true", "push = false")})
    code, out = mab(repo, capsys, monkeypatch, "--all")
    assert code == 0, out
    assert sorted(canned.engine.engines) == ["", "arm-box"]
    assert "api: built on 2 engines (" in out and "merged" not in out
    assert not any(canned.staged(name) for name in IMAGES)


def test_an_engine_the_pusher_did_not_grant_blocks_the_push_before_any_build_and_doctor_says_how(
    repo: Repo,
    canned: Canned,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    with_arm_box(repo, canned, monkeypatch, tmp_path)
    repo.git("config", "--unset-all", "mab-hook.engine")
    repo.commit(project(canned.registry.host, engines=ROUTED))
    code, out = mab(repo, capsys, monkeypatch, "--all", "--publish")
    assert code == 1 and canned.engine.invocations == []
    assert "arm-box/engine" in out and "engine arm-box is not granted" in out
    assert "git config --add mab-hook.engine arm-box" in out
    code, out = mab(repo, capsys, monkeypatch, "doctor")
    assert code == 1 and "git config --add mab-hook.engine arm-box" in out
    repo.git("config", "--add", "mab-hook.engine", "arm-box")
    code, out = mab(repo, capsys, monkeypatch, "--all", "--publish")
    assert code == 0, out
    assert sorted(canned.engine.engines) == ["", "arm-box"]
