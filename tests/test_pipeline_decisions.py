"""The build phase's decisions, fast: real repositories and plans, mab-hook's own registry client
over HTTP, and a canned engine in place of `docker buildx bake` (tests/engine.py). What is
built, skipped, retried, uploaded under staging tags and published; never half of a push."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from mab_hook import bakefile, buildx, changes, grants, input_digest, pipeline, planning, process, runs
from mab_hook import plan as plan_module
from mab_hook.checkout import LOCK_REASON
from mab_hook.coverage import Coverage
from mab_hook.errors import FatalError
from mab_hook.plan import Plan, PlannedImage
from mab_hook.process import Completed
from mab_hook.registry import Registry
from mab_hook.repository import open_repo
from mab_hook.results import BuildResult, Failure, Interrupted, Status
from mab_hook.runs import Events
from tests.conftest import Repo
from tests.engine import CannedEngine, Fault, OciRegistry

PLATFORMS = ["linux/amd64", "linux/arm64"]


def project(host: str, *, push: bool = True, extra: str = "") -> dict[str, str]:
    """base, two images built on it, and one on its own."""
    images = "".join(f'[tool.multiarch.images.{name}]\ncontext = "{name}"\n' for name in ("base", "api", "worker",
                                                                                        "lone"))  # fmt: skip
    return {
        "pyproject.toml": f'[tool.multiarch]\nplatforms = {json.dumps(PLATFORMS)}\nregistry = "{host}/team"\n'
        f'push = {str(push).lower()}\ntags = ["{{short_sha}}"]\n{extra}\n{images}',
        "base/Dockerfile": "FROM busybox\nRUN make\n",
        "api/Dockerfile": f"FROM {host}/team/base\nCOPY app.txt /\n",
        "api/app.txt": "v1\n",
        "worker/Dockerfile": f"FROM {host}/team/base\nRUN make\n",
        "lone/Dockerfile": "FROM busybox\nRUN make\n",
    }


class Run:
    """One push's build phase: what happened, what was said, whether readiness was asked."""

    def __init__(self, results: list[BuildResult], said: list[str], asked: int) -> None:
        self.results, self.said, self.asked = results, said, asked

    @property
    def status(self) -> dict[str, Status]:
        return {r.name: r.status for r in self.results}


@pytest.fixture
def registry() -> Iterator[OciRegistry]:
    with OciRegistry() as found:
        yield found


def plans(repo: Repo, rev: str = "HEAD", *, all_images: bool = False) -> list[Plan]:
    handle = open_repo(repo.path)
    if all_images:
        commit = changes.for_all(handle, rev, "main", "--all")
    else:
        commit = changes.for_range(handle, f"{rev}^", rev, "main")
    return [planning.plan_at(handle, commit, env={}, build_platform="linux/amd64", digests=True)]


def build(
    repo: Repo,
    engine: CannedEngine,
    monkeypatch: pytest.MonkeyPatch,
    *,
    found: Sequence[Plan] | None = None,
    publishing: bool = True,
) -> Run:
    asked: list[bool] = []

    def ready(building: Sequence[PlannedImage]) -> Coverage:
        asked.append(True)
        return Coverage(())

    results, said, _steps = build_with(
        repo, engine, monkeypatch, found or plans(repo), ready=ready, publishing=publishing
    )
    return Run(results, said, len(asked))


def _refusing(cmd: Sequence[str], **kwargs: object) -> Completed:
    """buildx, asked where the API refused (`imagetools create`): refused too."""
    return Completed(tuple(cmd), 1, "", "ERROR: unexpected status: 403 Forbidden\n")


def staged(plan: Plan, name: str) -> str:
    planned = next(p for p in plan.affected if p.image.name == name)
    return pipeline.digest_reference(plan, planned)


def test_every_affected_image_is_built_uploaded_under_its_staging_tag_then_tagged(
    repo: Repo, registry: OciRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    sha = repo.commit(project(registry.host))
    found = plans(repo, all_images=True)
    engine = CannedEngine(registry)
    run = build(repo, engine, monkeypatch, found=found)
    assert run.status == dict.fromkeys(("base", "api", "worker", "lone"), Status.PUSHED)
    assert (run.asked, [set(e) for e in engine.invocations]) == (
        1,
        [{"base", "api", "worker", "lone"}],
    )  # one bake
    for name in ("base", "api", "worker", "lone"):
        stage = staged(found[0], name)
        assert input_digest.is_staging(stage)
        assert stage.startswith(f"{registry.host}/team/mab-staging/{name}:mab-")
        assert registry.tags(f"team/mab-staging/{name}") == {stage.rsplit(":", 1)[1]}
        assert registry.tags(f"team/{name}") == {sha[:7]}  # the staging tag out of sight
        assert registry.digest(f"{registry.host}/team/{name}:{sha[:7]}") == registry.digest(
            stage
        )  # the same image
    by_name = {r.name: r for r in run.results}
    assert by_name["api"].published == (staged(found[0], "api"), f"{registry.host}/team/api:{sha[:7]}")
    assert by_name["api"].image_digest == registry.digest(staged(found[0], "api"))


def test_the_build_runs_the_buildx_plugin_docker_would_run_and_docker_without_one(
    repo: Repo, registry: OciRegistry, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`docker buildx bake` less the docker CLI: the plugin itself, found as the resolver finds
    it (where docker looks, tests/test_definitions.py; here named in MAB_HOOK_BUILDX)."""
    repo.commit(project(registry.host))
    plugin = tmp_path / "docker-buildx"
    plugin.write_text("#!/bin/sh\n")
    plugin.chmod(0o755)
    engine = CannedEngine(registry)
    env = {"PATH": os.environ["PATH"], "MAB_HOOK_BUILDX": str(plugin)}
    build_with(repo, engine, monkeypatch, plans(repo, all_images=True), env=env)
    assert [command[:2] for command in engine.commands] == [(str(plugin), "bake")]
    plugin.unlink()  # none: docker's `buildx`, which finds it, or says what is missing
    repo.commit({"api/app.txt": "v2\n"})
    build_with(repo, engine, monkeypatch, plans(repo), env=env)
    assert engine.commands[1][:3] == ("docker", "buildx", "bake") and set(engine.invocations[1]) == {"api"}


def test_everything_a_build_leaves_under_git_mab_hook_is_private(
    repo: Repo, registry: OciRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """buildx's metadata file too: it writes it 0644, whatever mab-hook made before."""
    repo.commit(project(registry.host))
    build(repo, CannedEngine(registry), monkeypatch, found=plans(repo, all_images=True))
    root = repo.path / ".git" / "mab-hook"
    modes = {str(p.relative_to(root)): p.stat().st_mode & 0o777 for p in root.rglob("*")}
    assert any(name.endswith("bake.metadata.json") for name in modes)
    assert {name: mode for name, mode in modes.items() if mode not in (0o600, 0o700)} == {}


def test_a_push_of_what_the_registry_has_builds_nothing_and_asks_no_readiness(
    repo: Repo, registry: OciRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.commit(project(registry.host))
    build(repo, CannedEngine(registry), monkeypatch, found=plans(repo, all_images=True))
    sha = repo.commit({"docs.md": "only docs\n", "lone/Dockerfile": "FROM busybox\nRUN make\n"})
    again = CannedEngine(registry)
    run = build(repo, again, monkeypatch, found=plans(repo, all_images=True))
    assert run.status == dict.fromkeys(("base", "api", "worker", "lone"), Status.SKIPPED)
    assert (run.asked, again.invocations) == (0, [])
    assert all(sha[:7] in registry.tags(f"team/{name}") for name in ("base", "api", "worker", "lone"))
    assert "lone: skipped, already in the registry (inputs " in "\n".join(run.said)


def test_only_what_the_change_affects_is_built_and_its_dependants_with_it(
    repo: Repo, registry: OciRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.commit(project(registry.host))
    build(repo, CannedEngine(registry), monkeypatch, found=plans(repo, all_images=True))
    repo.commit({"base/Dockerfile": "FROM busybox\nRUN make && make install\n"})
    engine = CannedEngine(registry)
    run = build(repo, engine, monkeypatch)
    assert run.status == dict.fromkeys(("base", "api", "worker"), Status.PUSHED)
    assert [set(e) for e in engine.invocations] == [{"base", "api", "worker"}]
    repo.commit({"api/app.txt": "v2\n"})
    engine = CannedEngine(registry)
    assert build(repo, engine, monkeypatch).status == {"api": Status.PUSHED}
    assert engine.invocations == [("api",)]


def test_one_failing_image_publishes_nothing_and_its_dependants_are_not_built(
    repo: Repo, registry: OciRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    sha = repo.commit(project(registry.host))
    found = plans(repo, all_images=True)
    run = build(repo, CannedEngine(registry, {"base": Fault(step_fails_on="linux/arm64")}), monkeypatch,
                found=found)  # fmt: skip
    assert run.status["base"] is Status.FAILED
    assert {run.status[name] for name in ("api", "worker")} == {Status.NOT_BUILT}
    assert "no public tag moves: an image did not build" in run.said
    assert not any(sha[:7] in registry.tags(f"team/{name}") for name in ("base", "api", "worker", "lone"))
    assert not any(method == "PUT" for method, _path in registry.requests)  # not one tag put
    base = next(r for r in run.results if r.name == "base")
    assert (base.failure, base.detail) == (Failure.BUILD, "build failed on linux/arm64: RUN make (exit 2)")


def test_a_second_push_reuses_what_the_first_uploaded_and_builds_only_what_failed(
    repo: Repo, registry: OciRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first push uploaded the others before `worker` failed (BuildKit stops at the first
    failing step); pushing again builds worker alone, trusts the others' staging tags, and tags
    all of them."""
    repo.commit(project(registry.host))
    failing = {"worker": Fault(step_fails_on="linux/amd64")}
    first = build(repo, CannedEngine(registry, failing), monkeypatch, found=plans(repo, all_images=True))
    assert first.status["worker"] is Status.FAILED
    engine = CannedEngine(registry)
    again = build(repo, engine, monkeypatch, found=plans(repo, all_images=True))
    assert set(engine.built()) == {"worker"}
    assert again.status == {"base": Status.SKIPPED, "api": Status.SKIPPED, "worker": Status.PUSHED,
                            "lone": Status.SKIPPED}  # fmt: skip


def test_an_upload_the_registry_fails_is_tried_again_and_an_export_once(
    repo: Repo, registry: OciRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.commit(project(registry.host))
    engine = CannedEngine(registry, {"lone": Fault(upload_fails=2), "api": Fault(export_fails=1)})
    run = build(repo, engine, monkeypatch, found=plans(repo, all_images=True))
    assert set(run.status.values()) == {Status.PUSHED}
    assert set(engine.invocations[0]) == {"base", "api", "worker", "lone"}
    # lone's upload failed twice and api's export once: each tried again as often as its cause is
    assert len(engine.invocations) == 4


@pytest.mark.parametrize("case", [
    (Fault(upload_fails=3), Failure.REGISTRY, "the upload to the registry failed: unexpected status from HEAD"),
    (Fault(export_fails=2), Failure.ENGINE, "the engine failed while exporting the image, twice"),
])  # fmt: skip
def test_a_fault_outlasting_its_retries_fails_the_push(
    repo: Repo, registry: OciRegistry, monkeypatch: pytest.MonkeyPatch, case: tuple[Fault, Failure, str]
) -> None:
    fault, failure, said = case
    repo.commit(project(registry.host))
    engine = CannedEngine(registry, {"lone": fault})
    run = build(repo, engine, monkeypatch, found=plans(repo, all_images=True))
    lone = next(r for r in run.results if r.name == "lone")
    assert (lone.status, lone.failure) == (Status.FAILED, failure)
    assert lone.detail.startswith(said)
    assert len(engine.invocations) == 1 + buildx.RETRIES_OF[failure]
    assert "no public tag moves: an image did not build" in run.said


def test_a_refused_tag_leaves_every_moving_tag_unmoved(
    repo: Repo, registry: OciRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The registry refuses api's commit tag: the others' commit tags land, `latest` moves
    nowhere (no consumer sees a `latest` set that api does not have)."""
    files = project(registry.host)
    files["pyproject.toml"] = files["pyproject.toml"].replace(
        'tags = ["{short_sha}"]', 'tags = ["{short_sha}", "latest", "{branch}"]'
    )
    sha = repo.commit(files)
    found = plans(repo, all_images=True)
    short = found[0].affected[0].tags[0].rsplit(":", 1)[1]
    assert sha.startswith(short)
    registry.refuse.add(f"team/api:{short}")
    run = build(repo, CannedEngine(registry), monkeypatch, found=found)
    assert set(run.status.values()) == {Status.FAILED}
    assert not any("latest" in registry.tags(f"team/{name}") for name in ("base", "api", "worker", "lone"))
    assert all(short in registry.tags(f"team/{name}") for name in ("base", "worker", "lone"))
    api = next(r for r in run.results if r.name == "api")
    assert (api.failure, api.detail) == (
        Failure.REGISTRY,
        f"tagging in the registry failed: ERROR: unexpected status: 403 Forbidden; not tagged yet: "
        f"{registry.host}/team/api:{short}",
    )
    lone = next(r for r in run.results if r.name == "lone")
    assert lone.detail == (f"not tagged yet: {registry.host}/team/lone:latest, {registry.host}/team/lone:main "
                           "(another image's tags failed; push again to put them)")  # fmt: skip

    registry.refuse.clear()  # the registry takes it now: the same push again finishes the tag step
    again = build(repo, CannedEngine(registry), monkeypatch, found=plans(repo, all_images=True))
    assert set(again.status.values()) <= {Status.PUSHED, Status.SKIPPED}, again.status
    for name in ("base", "api", "worker", "lone"):
        assert {short, "latest", "main"} <= set(registry.tags(f"team/{name}")), name


def test_without_publishing_only_staging_tags_are_put(
    repo: Repo, registry: OciRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CI job's share of a fan-out: uploaded under its staging tag, no public tag."""
    repo.commit(project(registry.host))
    run = build(
        repo, CannedEngine(registry), monkeypatch, found=plans(repo, all_images=True), publishing=False
    )
    assert set(run.status.values()) == {Status.BUILT}
    assert all(registry.tags(f"team/mab-staging/{name}") and not registry.tags(f"team/{name}")
               for name in ("base", "api", "worker", "lone"))  # fmt: skip
    assert not any("no public tag moves" in line for line in run.said)  # nothing failed


def test_a_failure_without_push_says_nothing_of_tags(
    repo: Repo, registry: OciRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.commit(project(registry.host, push=False))
    run = build(repo, CannedEngine(registry, {"lone": Fault(step_fails_on="linux/arm64")}), monkeypatch,
                found=plans(repo, all_images=True))  # fmt: skip
    assert run.status["lone"] is Status.FAILED
    assert not any("tag" in line for line in run.said)


def test_without_push_what_built_is_recorded_and_not_built_again(
    repo: Repo, registry: OciRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.commit(project(registry.host, push=False))
    first = CannedEngine(registry)
    assert set(build(repo, first, monkeypatch, found=plans(repo, all_images=True)).status.values()) == {
        Status.BUILT
    }
    again = CannedEngine(registry)
    run = build(repo, again, monkeypatch, found=plans(repo, all_images=True))
    assert (set(run.status.values()), again.invocations, run.asked) == ({Status.SKIPPED}, [], 0)
    assert registry.requests == []  # nothing asked of a registry without push
    repo.commit({"lone/Dockerfile": "FROM busybox\nRUN make all\n"})
    third = CannedEngine(registry)
    assert build(repo, third, monkeypatch).status == {"lone": Status.BUILT}


def test_a_staging_tag_holding_other_inputs_is_built_again_and_said(
    repo: Repo, registry: OciRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.commit(project(registry.host))
    found = plans(repo, all_images=True)
    planted = staged(found[0], "lone")
    registry.upload(planted, {"dev.mab-hook.input-digest": "0" * 64}, PLATFORMS)
    engine = CannedEngine(registry)
    run = build(repo, engine, monkeypatch, found=found)
    assert "lone" in set(engine.built()) and run.status["lone"] is Status.PUSHED
    assert any(line.startswith(f"lone: {planted} is in the registry, but an image under it is labelled with "
                               "inputs 000000000000: not trusted") for line in run.said)  # fmt: skip


def test_a_secret_the_configuration_asks_for_and_no_one_granted_stops_before_any_build(
    repo: Repo, registry: OciRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = project(registry.host)
    files["pyproject.toml"] = files["pyproject.toml"].replace(
        "[tool.multiarch.images.lone]\n", '[tool.multiarch.images.lone]\nsecrets = ["id=npm,env=NPM_TOKEN"]\n'
    )
    repo.commit(files)
    engine = CannedEngine(registry)
    with pytest.raises(FatalError, match=r"git config --add mab-hook\.secret"):
        build(repo, engine, monkeypatch, found=plans(repo, all_images=True))
    assert engine.invocations == []
    assert grants.read(repo.path, {}) == grants.NONE


def test_with_a_time_limit_each_image_builds_alone_and_a_failed_base_stops_its_dependants(
    repo: Repo, registry: OciRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build that may be stopped gets an invocation of its own, so that stopping it stops
    nothing else; a dependant waits for its base and is not built when the base failed."""
    files = project(registry.host, extra="timeout = 600")
    repo.commit(files)
    engine = CannedEngine(registry, {"base": Fault(export_fails=2), "lone": Fault(upload_fails=1)})
    run = build(repo, engine, monkeypatch, found=plans(repo, all_images=True))
    assert sorted(engine.invocations) == [("base",), ("base",), ("lone",), ("lone",)]
    assert run.status == {"base": Status.FAILED, "api": Status.NOT_BUILT, "worker": Status.NOT_BUILT,
                          "lone": Status.BUILT}  # fmt: skip
    assert "api: not built, its base image base did not build" in run.said
    lone = next(r for r in run.results if r.name == "lone")
    assert lone.published == (staged(plans(repo, all_images=True)[0], "lone"),)  # uploaded, not tagged
    assert not any(tag for name in ("base", "api", "worker") for tag in registry.tags(f"team/{name}"))


def test_every_commit_of_a_push_is_built_and_published_together(
    repo: Repo, registry: OciRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two commits (a push of two refs): each commit's images built from its own files, every
    result reported, the tags of both put."""
    first = repo.commit(project(registry.host))
    found = plans(repo, all_images=True)
    second = repo.commit({"lone/Dockerfile": "FROM busybox\nRUN make lone\n"})
    found += plans(repo)
    run = build(repo, CannedEngine(registry), monkeypatch, found=found)
    assert [(r.name, r.status) for r in run.results] == [
        *((p.image.name, Status.PUSHED) for p in found[0].affected), ("lone", Status.PUSHED)]  # fmt: skip
    assert {first[:7], second[:7]} <= canned_tags(registry, "lone")
    assert first[:7] in canned_tags(registry, "api") and second[:7] not in canned_tags(registry, "api")


def canned_tags(registry: OciRegistry, name: str) -> set[str]:
    return registry.tags(f"team/{name}")


def test_what_each_job_says_names_its_inputs(
    repo: Repo, registry: OciRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.commit(project(registry.host))
    found = plans(repo, all_images=True)
    build(repo, CannedEngine(registry), monkeypatch, found=found)
    run = build(repo, CannedEngine(registry), monkeypatch, found=found)
    for planned in found[0].affected:
        result = next(r for r in run.results if r.name == planned.image.name)
        assert result.detail == f"already in the registry (inputs {planned.input_digest[:12]})"
        assert f"{planned.image.name}: skipped, {result.detail}" in run.said
    assert not any("not trusted" in line or "no public tag moves" in line for line in run.said)


def test_without_push_the_record_names_the_commit_and_the_bake_file_is_kept(
    repo: Repo, registry: OciRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    sha = repo.commit(project(registry.host, push=False))
    found = plans(repo, all_images=True)
    assert set(build(repo, CannedEngine(registry), monkeypatch, found=found).status.values()) == {
        Status.BUILT
    }
    state = repo.path / ".git" / "mab-hook"
    planned = next(p for p in found[0].affected if p.image.name == "lone")
    record = json.loads((state / "built" / f"lone-{planned.input_digest}.json").read_text())
    assert (record["entry"], record["digest"], record["commit"]) == ("lone", planned.input_digest, sha)
    kept = json.loads((state / "logs" / sha[:12] / "bake.json").read_text())
    assert set(kept["target"]) == {"base", "api", "worker", "lone"}
    run = build(repo, CannedEngine(registry), monkeypatch, found=found)
    lone = next(r for r in run.results if r.name == "lone")
    assert lone.detail == f"built before from the same inputs (digest {planned.input_digest[:12]})"
    assert not any("not trusted" in line or "no public tag moves" in line for line in run.said)


def test_the_logs_of_as_many_pushes_as_configured_are_kept(
    repo: Repo, registry: OciRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.commit(project(registry.host, push=False, extra="keep-logs = 1"))
    build(repo, CannedEngine(registry), monkeypatch, found=plans(repo, all_images=True))
    sha = repo.commit({"lone/Dockerfile": "FROM busybox\nRUN make lone\n"})
    build(repo, CannedEngine(registry), monkeypatch)
    assert [p.name for p in (repo.path / ".git" / "mab-hook" / "logs").iterdir()] == [sha[:12]]


@pytest.mark.parametrize("asking", ["lone", "base"])
def test_a_secret_asked_for_by_any_commit_of_the_push_or_by_a_base_is_checked(
    repo: Repo, registry: OciRegistry, monkeypatch: pytest.MonkeyPatch, asking: str
) -> None:
    """The push's first commit builds everything; its second changes api alone, so base is only
    api's context there. Whichever image asks for a secret no one granted, nothing is built."""
    files = project(registry.host)
    files["pyproject.toml"] = files["pyproject.toml"].replace(
        f"[tool.multiarch.images.{asking}]\n",
        f'[tool.multiarch.images.{asking}]\nsecrets = ["id=npm,env=NPM_TOKEN"]\n',
    )
    repo.commit(files)
    first = plans(repo, all_images=True)
    repo.commit({"api/app.txt": "v2\n"})
    second = plans(repo)
    assert [p.image.name for p in second[0].context_only] == ["base"]
    engine = CannedEngine(registry)
    with pytest.raises(
        FatalError, match=rf"\n  {asking}: git config --add mab-hook\.secret id=npm,env=NPM_TOKEN\n"
    ):
        build(repo, engine, monkeypatch, found=[*first, *second] if asking == "lone" else second)
    assert engine.invocations == []


def test_a_worktree_a_killed_run_left_behind_is_removed_and_said(
    repo: Repo, registry: OciRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.commit(project(registry.host))
    left = repo.path.parent / "mab-hook-left" / "tree"
    repo.git("worktree", "add", "--detach", "--lock", "--reason", f"{LOCK_REASON} 12345", str(left), "HEAD")
    run = build(repo, CannedEngine(registry), monkeypatch, found=plans(repo, all_images=True))
    assert f"removed the worktree an earlier run left behind: {left}" in run.said
    assert not left.exists() and str(left) not in repo.git("worktree", "list")


def test_a_large_context_is_said_and_checked_out_only_as_far_as_the_build_reads(
    repo: Repo, registry: OciRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(plan_module, "LARGE_CONTEXT", 3)
    files = project(registry.host)
    files.update({f"lone/data/{n}.txt": f"{n}\n" for n in range(5)})
    files["lone/Dockerfile"] = "FROM busybox\nCOPY data/1.txt /\n"
    repo.commit(files)
    engine = CannedEngine(registry)
    run = build(repo, engine, monkeypatch, found=plans(repo, all_images=True))
    assert [line for line in run.said if "is large" in line] == [
        "lone: lone is large: only what the build reads is checked out"]  # fmt: skip
    assert engine.contexts["lone"] == ["Dockerfile", "data/1.txt"]  # not data/0, 2, 3, 4
    assert engine.contexts["api"] == ["Dockerfile", "app.txt"]  # a small context: whole


def test_a_local_cache_is_read_from_the_repository_not_the_checkout(
    repo: Repo, registry: OciRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = project(registry.host)
    files["pyproject.toml"] = files["pyproject.toml"].replace(
        "[tool.multiarch.images.lone]\n",
        '[tool.multiarch.images.lone]\ncache-from = ["type=local,src=.cache/lone"]\n',
    )
    repo.commit(files)
    engine = CannedEngine(registry)
    build(repo, engine, monkeypatch, found=plans(repo, all_images=True))
    (definition,) = engine.definitions
    assert definition["target"]["lone"]["cache-from"] == [f"type=local,src={repo.path / '.cache' / 'lone'}"]
    assert definition["target"]["lone"]["context"] != str(repo.path / "lone")  # a checkout of the commit


def test_two_commits_built_without_push_are_both_recorded_and_reported(
    repo: Repo, registry: OciRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.commit(project(registry.host, push=False))
    found = plans(repo, all_images=True)
    repo.commit({"lone/Dockerfile": "FROM busybox\nRUN make lone\n"})
    found += plans(repo)
    run = build(repo, CannedEngine(registry), monkeypatch, found=found)
    assert [r.name for r in run.results] == [*(p.image.name for p in found[0].affected), "lone"]
    assert set(run.status.values()) == {Status.BUILT}


def test_what_a_first_build_says(repo: Repo, registry: OciRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    repo.commit(project(registry.host))
    found = plans(repo, all_images=True)
    run = build(repo, CannedEngine(registry), monkeypatch, found=found)
    for planned in found[0].affected:
        assert (f"{planned.image.name}: building for linux/amd64, linux/arm64 (inputs {planned.input_digest[:12]})"
                in run.said)  # fmt: skip
    assert not any("not trusted" in line for line in run.said)  # nothing was there to distrust


def test_a_submodule_the_build_reads_is_checked_out_for_it(
    repo: Repo, registry: OciRegistry, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for key, value in (("GIT_CONFIG_COUNT", "1"), ("GIT_CONFIG_KEY_0", "protocol.file.allow"),
                       ("GIT_CONFIG_VALUE_0", "always")):  # fmt: skip
        monkeypatch.setenv(key, value)  # a local path as a submodule's URL, as in the tests only
    lib = tmp_path / "lib"
    subprocess.run(("git", "init", "-q", "-b", "main", str(lib)), check=True)
    (lib / "data.txt").write_text("lib v1\n")
    subprocess.run(("git", "add", "-A"), cwd=lib, check=True)
    subprocess.run(("git", "commit", "-qm", "v1"), cwd=lib, check=True)
    subprocess.run(("git", "submodule", "add", "-q", str(lib), "lone/vendor/lib"), cwd=repo.path, check=True)
    files = project(registry.host)
    files["lone/Dockerfile"] = "FROM busybox\nCOPY vendor/lib/data.txt /\n"
    repo.commit(files)
    found = plans(repo, all_images=True)
    assert next(p for p in found[0].affected if p.image.name == "lone").submodules == ("lone/vendor/lib",)
    engine = CannedEngine(registry)
    build(repo, engine, monkeypatch, found=found)
    assert "vendor/lib/data.txt" in engine.contexts["lone"]
    assert not any(path.startswith("vendor/") for path in engine.contexts["api"])


def build_with(
    repo: Repo,
    engine: CannedEngine,
    monkeypatch: pytest.MonkeyPatch,
    found: Sequence[Plan],
    *,
    ready: Callable[[Sequence[PlannedImage]], Coverage] | None = None,
    publishing: bool = True,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[list[BuildResult], list[str], list[tuple[str, str, str]]]:
    """The build phase as the gate runs it, with every event kept: progress lines and the steps
    as they start. `ready`: readiness, asked only when something is really built."""
    monkeypatch.setattr(process, "Group", lambda env=None: engine)
    monkeypatch.setattr(buildx, "BACKOFF", 0.0)
    said: list[str] = []
    steps: list[tuple[str, str, str]] = []
    events = Events(said.append, lambda line: None, notice=said.append, step=lambda *step: steps.append(step))
    handle = open_repo(repo.path)
    registry = Registry({}, run=_refusing)
    with runs.session(handle, found, env or {}, events, registry=registry, timeout=timeout) as run:
        decided = pipeline.decisions(handle, found, run)
        bases = ready(decided.building).answers if ready is not None and decided.building else {}
        results = pipeline.build(handle, decided, run, bases, publishing=publishing)
    return results, said, steps


@pytest.mark.parametrize("each", [False, True])
def test_what_each_build_says_as_it_goes(
    repo: Repo, registry: OciRegistry, monkeypatch: pytest.MonkeyPatch, each: bool
) -> None:
    """Together in one bake, or each on its own (a time limit): a line as each build ends, with
    its outcome, and every step as it starts, once."""
    repo.commit(project(registry.host, extra="timeout = 600" if each else ""))
    engine = CannedEngine(registry, {"worker": Fault(step_fails_on="linux/arm64")})
    results, said, steps = build_with(repo, engine, monkeypatch, plans(repo, all_images=True))
    ends = [line for line in said if re.match(r"^\w+: (built|failed|not built)", line)]
    assert any(re.fullmatch(r"lone: built \(\d+\.\d s\)", line) for line in ends), ends
    assert any(re.fullmatch(r"worker: failed, build failed on linux/arm64: RUN make \(exit 2\) \(\d+\.\d s\)", line)
               for line in ends), ends  # fmt: skip
    assert ("lone", "linux/amd64", "2/2 RUN make") in steps and (
        "lone",
        "linux/arm64",
        "2/2 RUN make",
    ) in steps
    if (
        not each
    ):  # one invocation: each step once (built alone, a base's steps come again in each dependant's)
        assert len(steps) == len(set(steps))
    skipped_or_blocked = [r for r in results if r.status in (Status.SKIPPED, Status.NOT_BUILT) and not r.log]
    assert all(r.seconds == 0.0 for r in skipped_or_blocked)


def test_a_time_limit_reaches_each_build_and_the_command_lines_wins(
    repo: Repo, registry: OciRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.commit(project(registry.host, push=False, extra="timeout = 600"))
    engine = CannedEngine(registry)
    build_with(repo, engine, monkeypatch, plans(repo, all_images=True))
    assert set(engine.timeouts) == {600.0}
    shutil.rmtree(repo.path / ".git" / "mab-hook" / "built")  # built before: forgotten, so built again
    again = CannedEngine(registry)
    build_with(repo, again, monkeypatch, plans(repo, all_images=True), timeout=30.0)
    assert set(again.timeouts) == {30.0}


@pytest.mark.parametrize("jobs", [1, 2])
def test_no_more_builds_run_at_once_than_configured(
    repo: Repo, registry: OciRegistry, monkeypatch: pytest.MonkeyPatch, jobs: int
) -> None:
    repo.commit(project(registry.host, extra=f"timeout = 600\njobs = {jobs}"))
    engine = CannedEngine(registry)
    build_with(repo, engine, monkeypatch, plans(repo, all_images=True))
    assert engine.most_at_once == jobs
    assert sorted(engine.built()) == ["api", "base", "lone", "worker"]


def test_an_interrupted_push_says_what_reached_the_registry(
    repo: Repo, registry: OciRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.commit(project(registry.host, extra="timeout = 600\njobs = 1"))
    found = plans(repo, all_images=True)
    engine = CannedEngine(registry)
    started = [0]

    def interrupt_the_second() -> None:
        started[0] += 1
        if started[0] == 2:
            raise KeyboardInterrupt

    engine.before = interrupt_the_second
    with pytest.raises(Interrupted) as info:
        build_with(repo, engine, monkeypatch, found)
    first = engine.invocations[0][0]
    assert info.value.published == (staged(found[0], bakefile.image_of(first)),)


def test_no_tag_step_runs_for_an_image_without_tags_of_its_kind(
    repo: Repo, registry: OciRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only {short_sha}: nothing moves, so the second (moving) round tags nothing."""
    repo.commit(project(registry.host))
    _results, said, _steps = build_with(
        repo, CannedEngine(registry), monkeypatch, plans(repo, all_images=True)
    )
    tagging = [line for line in said if ": tagging" in line]
    assert len(tagging) == 4 and all(re.fullmatch(r"\w+: tagging \S+:[0-9a-f]{7}", line) for line in tagging)


def test_every_image_is_labelled_with_its_commit_its_inputs_its_source_and_when(
    repo: Repo, registry: OciRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    sha = repo.commit(project(registry.host))
    found = plans(repo, all_images=True)
    engine = CannedEngine(registry)
    build(repo, engine, monkeypatch, found=found)
    labels = engine.definitions[0]["target"]["lone"]["labels"]
    planned = next(p for p in found[0].affected if p.image.name == "lone")
    assert set(labels) == {"org.opencontainers.image.revision", "org.opencontainers.image.created",
                           "dev.mab-hook.input-digest", "org.opencontainers.image.source"}  # fmt: skip
    assert (labels["org.opencontainers.image.revision"], labels["dev.mab-hook.input-digest"]) == (
        sha, planned.input_digest)  # fmt: skip
    assert labels["org.opencontainers.image.source"] == str(repo.remote)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", labels["org.opencontainers.image.created"])
    repo.git("remote", "remove", "origin")  # a repository without a remote publishes no path of a disk
    repo.commit({"lone/Dockerfile": "FROM busybox\nRUN make lone\n"})
    engine = CannedEngine(registry)
    build(repo, engine, monkeypatch, found=plans(repo))
    assert "org.opencontainers.image.source" not in engine.definitions[0]["target"]["lone"].get("labels", {})
