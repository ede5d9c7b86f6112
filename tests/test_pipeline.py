"""The build phase: scheduling and decisions with builds faked, then against the real lab: skip
what is built, never half-publish, stop cleanly, take turns, share cache."""

from __future__ import annotations

import _thread
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from mab_hook import buildx, cli, pipeline, platform_check, process, runs
from mab_hook.analysis import Base
from mab_hook.buildx import Buildx
from mab_hook.images import Image
from mab_hook.pipeline import Job, Step
from mab_hook.plan import Plan, PlannedImage
from mab_hook.registry import Registry, Tagged
from mab_hook.results import BuildResult, Failure, Status, StepTime
from mab_hook.runs import Events, Ledger
from mab_hook.state import KeptByDigest
from tests.conftest import Engine, Lab, Repo, start_registry
from tests.engine import OciRegistry
from tests.test_executables import elf
from tests.test_platform_check import Upload, tar_layer

BUILT, FAILED, NOT_BUILT, PUSHED, SKIPPED = (Status.BUILT, Status.FAILED, Status.NOT_BUILT, Status.PUSHED,
                                             Status.SKIPPED)  # fmt: skip

P = ("linux/amd64",)


def job(name: str, *bases: str, skip: str = "") -> Job:
    image = Image(name, name, f"{name}/Dockerfile", P)
    bases_ = tuple(Base(b, f"reg/{b}") for b in bases)
    planned = PlannedImage(image, ("r",), (f"reg/{name}:1", f"reg/{name}:main"), bases_, input_digest=name * 4,
                           moving=(f"reg/{name}:main",))  # fmt: skip
    return Job(planned, skip, staged=f"reg/{name}:mab-{name * 4}")


def step(tmp_path: Path, progress: list[str]) -> Step:
    return Step(Buildx({}, None, process.Group()), tmp_path / "bake.json", tmp_path, Events(progress.append, print),
                None)  # fmt: skip


def fake_builds(
    monkeypatch: pytest.MonkeyPatch, fail: frozenset[str] = frozenset(), seconds: float = 0.2
) -> list[str]:
    """Replace real builds: each sleeps a little, and records when it starts and ends."""
    events: list[str] = []
    lock = threading.Lock()

    def build(job: Job, step: Step) -> BuildResult:
        name = job.planned.image.name
        with lock:
            events.append(f"start {name}")
        time.sleep(seconds)
        with lock:
            events.append(f"end {name}")
        return BuildResult(name, FAILED if name in fail else BUILT, seconds, "", None)

    monkeypatch.setattr(pipeline, "_build", build)
    return events


def test_independent_images_build_at_once_up_to_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = fake_builds(monkeypatch)
    results = pipeline.build_each([job("a"), job("b"), job("c")], step(tmp_path, []), limit=2)
    assert [r.status for r in results] == [BUILT, BUILT, BUILT]
    assert set(events[:2]) == {"start a", "start b"}  # two at once
    assert events.index("start c") > min(events.index("end a"), events.index("end b"))  # c waits for a slot


def test_dependants_wait_for_their_bases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events = fake_builds(monkeypatch)
    pipeline.build_each([job("base"), job("api", "base"), job("worker", "base"), job("lone")],
                        step(tmp_path, []), limit=4)  # fmt: skip
    assert events.index("start api") > events.index("end base")
    assert events.index("start worker") > events.index("end base")
    assert events.index("start lone") < events.index("end base")  # no base: starts at once


def test_a_failed_base_leaves_dependants_unbuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events = fake_builds(monkeypatch, fail=frozenset({"base"}))
    progress: list[str] = []
    results = pipeline.build_each([job("base"), job("api", "base")], step(tmp_path, progress), limit=2)
    assert [(r.name, r.status, r.detail) for r in results] == [
        ("base", FAILED, ""), ("api", NOT_BUILT, "base image base did not build")]  # fmt: skip
    assert "start api" not in events
    assert "api: not built, its base image base did not build" in progress


def test_skipped_images_are_not_built_and_their_dependants_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = fake_builds(monkeypatch)
    progress: list[str] = []
    results = pipeline.build_each([job("base", skip="built before"), job("api", "base")],
                                  step(tmp_path, progress), limit=2)  # fmt: skip
    assert [(r.name, r.status) for r in results] == [("base", SKIPPED), ("api", BUILT)]
    assert events == ["start api", "end api"]
    assert "base: skipped, built before" in progress


def test_interrupt_stops_everything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def build(job: Job, step: Step) -> BuildResult:
        raise KeyboardInterrupt

    stopped: list[bool] = []
    monkeypatch.setattr(pipeline, "_build", build)
    s = step(tmp_path, [])
    monkeypatch.setattr(s.bx.group, "terminate_all", lambda: stopped.append(True))
    with pytest.raises(KeyboardInterrupt):
        pipeline.build_each([job("a")], s, limit=1)
    assert stopped == [True]


def test_a_signal_handed_to_a_builds_thread_stops_everything_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel may hand the terminal's ^C to any thread of the process: the wait for the
    builds notices it within moments, not when a build ends."""
    ended = threading.Event()

    def build(job: Job, step: Step) -> BuildResult:
        time.sleep(0.5)  # the run is waiting for its builds by then
        signal.pthread_kill(threading.get_ident(), signal.SIGINT)
        ended.wait(10)  # a build runs until it is stopped
        return BuildResult(job.planned.image.name, BUILT, 0.0, "", None)

    monkeypatch.setattr(pipeline, "_build", build)
    s = step(tmp_path, [])
    monkeypatch.setattr(s.bx.group, "terminate_all", ended.set)
    began = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        pipeline.build_each([job("a")], s, limit=1)
    assert ended.is_set() and time.monotonic() - began < 5


class Checking:
    """platform_check.check, faked: what it was asked, and what it answers (or raises)."""

    def __init__(self, answer: platform_check.Checked | Exception) -> None:
        self.answer = answer
        self.asked: list[tuple[str, str]] = []

    def check(self, registry: object, staged: str, image: Image, **kwargs: Any) -> platform_check.Checked:
        self.asked.append((staged, kwargs["digest"]))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def checked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, answer: platform_check.Checked | Exception, *jobs: Job
) -> tuple[list[BuildResult], Checking, list[str]]:
    """What the check of what was built makes of each job's result (each built)."""
    fake, said = Checking(answer), []  # type: Checking, list[str]
    monkeypatch.setattr(platform_check, "check", fake.check)
    run = cast(runs.Builds, SimpleNamespace(
        registry=None, events=Events(said.append, print, notice=said.append), state=SimpleNamespace(root=tmp_path)
    ))  # fmt: skip
    results = [BuildResult(j.planned.image.name, BUILT, 1.0, "", None) for j in jobs]
    plan = cast(Plan, SimpleNamespace(config=SimpleNamespace(push=True)))
    [(_plan, _jobs, found)] = pipeline._checked([(plan, jobs, results)], run, {}, KeptByDigest(None, 1))
    return list(found), fake, said


FINDINGS = tuple(
    platform_check.Finding("linux/arm64", "ELF 64-bit LSB, machine 0x3e (amd64)", f"/bin/tool{i}")
    for i in range(30)
)


def test_an_upload_holding_another_platforms_programs_fails_with_the_first_and_how_many_more(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    found, fake, _said = checked(monkeypatch, tmp_path, platform_check.Checked(FINDINGS[:3]), job("api"))
    assert (found[0].status, found[0].failure) == (FAILED, Failure.PLATFORM)
    assert found[0].detail == (
        "not the platform it claims: linux/arm64: /bin/tool0 is ELF 64-bit LSB, machine 0x3e (amd64) (and 2 more)"
    )
    assert found[0].tail == tuple(str(f) for f in FINDINGS[:3])
    assert fake.asked == [("reg/api:mab-apiapiapiapi", "")]
    found, _fake, _said = checked(monkeypatch, tmp_path, platform_check.Checked(FINDINGS), job("api"))
    assert found[0].detail.endswith("(and 29 more)") and len(found[0].tail) == process.TAIL_LINES
    found, _fake, _said = checked(monkeypatch, tmp_path, platform_check.Checked(FINDINGS[:1]), job("api"))
    assert found[0].detail == "not the platform it claims: " + str(FINDINGS[0])  # no "(and 0 more)"


def test_layers_that_cannot_be_read_are_said_and_an_upload_that_cannot_be_read_fails_as_the_registrys(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    layer = "sha256:" + "ab" * 32
    found, _fake, said = checked(monkeypatch, tmp_path, platform_check.Checked((), (layer,)), job("api"))
    assert found[0].status is BUILT  # what could be read is each platform's
    assert said == [
        "api: layer sha256:abababababab is compressed in a way mab-hook cannot read (zstd?): its programs were "
        "not checked"
    ]
    found, _fake, _said = checked(monkeypatch, tmp_path, OSError("connection reset"), job("api"))
    assert (found[0].status, found[0].failure) == (FAILED, Failure.REGISTRY)
    assert (
        found[0].detail
        == "could not read reg/api:mab-apiapiapiapi back to check what it holds: connection reset"
    )


def test_only_what_built_and_was_uploaded_is_checked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    unstaged = job("local")._replace(staged="")
    reused = job("reused", skip="already in the registry")._replace(
        in_registry=True, manifest="sha256:" + "c" * 64
    )
    skipped = job("skipped", skip="built before")
    fake = Checking(platform_check.Checked(()))
    monkeypatch.setattr(platform_check, "check", fake.check)
    run = cast(runs.Builds, SimpleNamespace(registry=None, events=Events(print, print), state=SimpleNamespace(
        root=tmp_path)))  # fmt: skip
    jobs = (job("api"), job("failed"), unstaged, reused, skipped)
    results = [
        BuildResult(j.planned.image.name, FAILED if j is jobs[1] else BUILT, 1.0, "", None) for j in jobs
    ]
    plan = cast(Plan, SimpleNamespace(config=SimpleNamespace(push=True)))
    results[0] = results[0]._replace(image_digest="sha256:" + "d" * 64)  # what the build reported uploading
    [(_plan, _jobs, found)] = pipeline._checked([(plan, jobs, results)], run, {}, KeptByDigest(None, 1))
    assert list(found) == results
    assert fake.asked == [
        ("reg/api:mab-apiapiapiapi", "sha256:" + "d" * 64),
        (reused.staged, reused.manifest),
    ]


def early_run(registry: OciRegistry) -> runs.Builds:
    return cast(runs.Builds, SimpleNamespace(registry=Registry({"DOCKER_CONFIG": os.devnull}),
                                             events=Events(print, print)))  # fmt: skip


def uploaded_job(registry: OciRegistry, name: str, programs: str, tag: str = "") -> tuple[Job, str]:
    """A job whose upload is in the registry (its own programs built for `programs`), and its digest."""
    up = Upload(registry, f"team/mab-staging/{name}")
    staged = up.index(tag or f"mab-{name}", up.image("linux/arm64", [tar_layer({"app": elf(programs)})]))
    image = Image(name, name, f"{name}/Dockerfile", ("linux/arm64",))
    digest = Registry({"DOCKER_CONFIG": os.devnull}).manifest(staged)
    assert digest is not None
    return Job(PlannedImage(image, (), (), (), input_digest=name * 4), staged=staged), digest.digest


def test_an_upload_is_read_back_once_as_it_lands_and_the_check_after_the_build_reads_nothing(
    tmp_path: Path,
) -> None:
    """The check after the build judges each upload by the digest the build reported; one read
    back as it landed (while the others built) is judged from what that read kept."""
    with OciRegistry() as registry:
        api, api_digest = uploaded_job(registry, "api", "arm64")
        wrong, wrong_digest = uploaded_job(registry, "wrong", "amd64")  # x86-64 programs in "arm64"
        skipped = uploaded_job(registry, "skipped", "arm64")[0]._replace(skip="built before")
        unstaged = uploaded_job(registry, "unstaged", "arm64")[0]._replace(staged="")
        plan = cast(Plan, SimpleNamespace(config=SimpleNamespace(push=True)))
        kept = KeptByDigest(None, 10)
        run = early_run(registry)
        registry.requests.clear()
        with pipeline._EarlyChecks(run, {}, kept) as early:
            uploaded = early.of(plan, [api, wrong, skipped, unstaged])
            for name in (
                "api",
                "api",
                "wrong",
                "skipped",
                "unstaged",
                "unknown",
            ):  # a second word of one: once
                uploaded(name)
            early.wait()
        read = [path for _method, path in registry.requests]
        assert read.count("/v2/team/mab-staging/api/manifests/mab-api") == 1
        assert read.count("/v2/team/mab-staging/wrong/manifests/mab-wrong") == 1
        assert not any("skipped" in path or "unstaged" in path for path in read)
        registry.requests.clear()
        results = [BuildResult("api", BUILT, 1.0, "", None, image_digest=api_digest),
                   BuildResult("wrong", BUILT, 1.0, "", None, image_digest=wrong_digest)]  # fmt: skip
        [(_plan, _jobs, found)] = pipeline._checked([(plan, (api, wrong), results)], run, {}, kept)
        assert registry.requests == []
        assert found[0] == results[0]  # judged, and passed
        assert (found[1].status, found[1].failure) == (FAILED, Failure.PLATFORM)  # what the read found counts
        assert found[1].detail.startswith("not the platform it claims: linux/arm64: /app is ELF 64-bit")


def test_an_upload_that_changed_after_it_was_read_back_is_read_again(tmp_path: Path) -> None:
    """The early read is only kept: what the build reports uploading is what the check judges."""
    with OciRegistry() as registry:
        api, _first = uploaded_job(registry, "api", "amd64")
        plan = cast(Plan, SimpleNamespace(config=SimpleNamespace(push=True)))
        kept, run = KeptByDigest(None, 10), early_run(registry)
        with pipeline._EarlyChecks(run, {}, kept) as early:
            early.of(plan, [api])("api")
            early.wait()
        _again, digest = uploaded_job(registry, "api", "arm64")  # the same tag, another upload
        registry.requests.clear()
        result = BuildResult("api", BUILT, 1.0, "", None, image_digest=digest)
        [(_plan, _jobs, found)] = pipeline._checked([(plan, (api,), [result])], run, {}, kept)
        assert found[0] == result and "/v2/team/mab-staging/api/manifests/mab-api" in [
            path for _method, path in registry.requests
        ]


def test_public_tags_go_on_what_the_check_judged_though_the_staging_tag_moved_since() -> None:
    """Publishing tags the digest the check judged, not whatever its staging tag names by then
    (another push of the same inputs, a hand): and it asks the registry for none of the
    manifests the check read."""
    with OciRegistry() as registry:
        api, judged = uploaded_job(registry, "api", "arm64")
        public = (f"{registry.host}/team/api:1", f"{registry.host}/team/api:main")
        api = api._replace(planned=api.planned._replace(tags=public, moving=public[1:]))
        plan = cast(Plan, SimpleNamespace(config=SimpleNamespace(push=True)))
        run = early_run(registry)
        result = BuildResult("api", BUILT, 1.0, "", None, image_digest=judged)
        [(_plan, _jobs, [checked])] = pipeline._checked(
            [(plan, (api,), [result])], run, {}, KeptByDigest(None, 10)
        )
        assert checked == result
        _moved, other = uploaded_job(registry, "api", "amd64")  # the staging tag names x86-64 programs now
        assert other != judged
        registry.requests.clear()
        [published] = pipeline.publish([api], [checked], run.registry, run.events, Ledger())
        assert published.status is PUSHED and published.published == public
        assert registry.digest(public[0]) == judged and registry.digest(public[1]) == judged
        assert not [path for method, path in registry.requests if method == "GET" and "manifests" in path]


def test_nothing_is_read_back_early_for_a_commit_that_does_not_push(tmp_path: Path) -> None:
    with OciRegistry() as registry:
        api, _digest = uploaded_job(registry, "api", "arm64")
        plan = cast(Plan, SimpleNamespace(config=SimpleNamespace(push=False)))
        registry.requests.clear()
        with pipeline._EarlyChecks(early_run(registry), {}, KeptByDigest(None, 10)) as early:
            early.of(plan, [api])("api")
            early.wait()
        assert registry.requests == []


def test_what_the_check_learns_is_kept_in_the_runs_uploads_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    asked: list[Path | None] = []

    def kept_findings(path: Path | None) -> KeptByDigest:
        asked.append(path)
        return KeptByDigest(None, 1)

    monkeypatch.setattr(platform_check, "kept_findings", kept_findings)
    run = cast(runs.Builds, SimpleNamespace(registry=None, events=Events(print, print), ledger=Ledger(),
                                            state=SimpleNamespace(root=tmp_path)))  # fmt: skip
    decided = cast(pipeline.Decided, SimpleNamespace(work=[]))
    assert pipeline.build(cast(Any, None), decided, run, {}, publishing=True) == []
    assert asked == [tmp_path / "cache" / "uploads.json"]


def test_an_interrupted_run_waits_for_no_early_read_and_starts_none_of_those_queued(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """^C (or a failure) while uploads are read back: the reads under way are left to end on
    their own (each a request with its timeout), those not begun never start."""
    release, started = threading.Event(), []  # type: threading.Event, list[str]

    def check(registry: object, staged: str, *args: Any, **kwargs: Any) -> platform_check.Checked:
        started.append(staged)
        release.wait(10)
        return platform_check.Checked(())

    monkeypatch.setattr(platform_check, "check", check)
    plan = cast(Plan, SimpleNamespace(config=SimpleNamespace(push=True)))
    jobs = [job(f"i{n}") for n in range(pipeline.CHECKS + 3)]
    run = cast(runs.Builds, SimpleNamespace(registry=None, events=Events(print, print)))
    began = time.monotonic()
    with pytest.raises(KeyboardInterrupt), pipeline._EarlyChecks(run, {}, KeptByDigest(None, 1)) as early:
        uploaded = early.of(plan, jobs)
        for j in jobs:
            uploaded(j.planned.image.name)
        while len(started) < pipeline.CHECKS:
            time.sleep(0.01)
        raise KeyboardInterrupt
    assert time.monotonic() - began < 5  # not held by the reads under way
    release.set()
    time.sleep(0.3)
    assert len(started) == pipeline.CHECKS  # the queued ones were never read


def test_a_build_that_ends_well_says_its_upload_landed_and_one_that_failed_does_not(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    landed: list[str] = []
    monkeypatch.setattr(pipeline, "_build", lambda job, step: BuildResult(
        job.planned.image.name, FAILED if job.planned.image.name == "bad" else PUSHED, 1.0, "", None))  # fmt: skip
    s = step(tmp_path, [])._replace(uploaded=landed.append)
    pipeline.build_each([job("api"), job("bad"), job("web")], s, limit=2)
    assert sorted(landed) == ["api", "web"]

    def build_together(
        wanted: Any, bake_file: Path, bx: Buildx, logs: Path, watch: buildx.Watch
    ) -> list[BuildResult]:
        watch.done("api")  # its export ended: uploaded
        return [BuildResult(w.planned.image.name, PUSHED, 1.0, "", None) for w in wanted]

    monkeypatch.setattr(buildx, "build_together", build_together)
    landed.clear()
    done: list[str] = []
    s = Step(s.bx, s.bake_file, s.logs, Events(print, print, done=done.append), None, landed.append)
    pipeline.build_together([job("api"), job("web")], s)
    assert landed == ["api"] and sorted(done) == ["api", "api", "web"]  # done: also as bake ended


def test_what_each_build_uploads_reaches_the_ledger_as_it_ends(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def build_together(wanted: Any, *args: Any) -> list[BuildResult]:
        return [
            BuildResult(w.planned.image.name, PUSHED, 1.0, "", None, published=(w.push_ref,)) for w in wanted
        ]

    monkeypatch.setattr(buildx, "build_together", build_together)
    ledger = Ledger()
    pipeline.build_together([job("api"), job("web")], step(tmp_path, []), ledger)
    assert ledger.published == ("reg/api:mab-apiapiapiapi", "reg/web:mab-webwebwebweb")
    pipeline.build_together([job("api")], step(tmp_path, []))  # without one: nothing to note


class HalfRegistry:
    """A registry that refuses `api`'s tags (immutable tags, a quota: a fault the lab shows too,
    a registry dying mid-push, here without timing); records what it was asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, ...]] = []

    def tag(self, source: str, tags: list[str], stop: threading.Event | None = None) -> Tagged:
        self.asked.append(tuple(tags))
        if source.startswith("reg/api:"):
            return Tagged(False, (), f"HTTP 403 tagging {tags[0]}")
        return Tagged(True, tuple(tags))


def built_results(jobs: list[Job]) -> list[BuildResult]:
    return [BuildResult(j.planned.image.name, BUILT, 2.0, "", None, published=(j.staged,)) for j in jobs]


def test_tags_naming_the_commit_go_first_and_moving_ones_only_once_all_of_those_landed() -> None:
    jobs = [job("base"), job("web")]
    registry, ledger = HalfRegistry(), Ledger()
    results = pipeline.publish(jobs, built_results(jobs), registry, Events(lambda t: None, print), ledger)  # type: ignore[arg-type]
    assert [(r.name, r.status) for r in results] == [("base", PUSHED), ("web", PUSHED)]
    assert registry.asked[:2] in ([("reg/base:1",), ("reg/web:1",)], [("reg/web:1",), ("reg/base:1",)])
    assert sorted(registry.asked[2:]) == [("reg/base:main",), ("reg/web:main",)]
    assert results[0].published == ("reg/base:mab-basebasebasebase", "reg/base:1", "reg/base:main")


def test_a_refused_tag_moves_no_moving_tag_anywhere(tmp_path: Path) -> None:
    jobs = [job("base"), job("api", "base")]
    registry, ledger = HalfRegistry(), Ledger()
    results = pipeline.publish(jobs, built_results(jobs), registry, Events(lambda t: None, print), ledger)  # type: ignore[arg-type]
    assert [(r.name, r.status, r.failure) for r in results] == [
        ("base", FAILED, Failure.REGISTRY), ("api", FAILED, Failure.REGISTRY)]  # fmt: skip
    assert results[0].published == ("reg/base:mab-basebasebasebase", "reg/base:1")
    assert (
        results[0].detail
        == "not tagged yet: reg/base:main (another image's tags failed; push again to put them)"
    )
    assert results[1].published == ("reg/api:mab-apiapiapiapi",)
    assert (
        results[1].detail
        == "tagging in the registry failed: HTTP 403 tagging reg/api:1; not tagged yet: reg/api:1"
    )
    assert set(ledger.published) == {"reg/base:1"}
    assert ("reg/base:main",) not in registry.asked


def test_each_tag_step_says_its_tags_and_a_refusal_those_not_yet_put() -> None:
    api = job("api")
    api = api._replace(planned=api.planned._replace(tags=("reg/api:1", "reg/api:1a2b3c"), moving=()))
    said: list[str] = []
    registry = cast(Registry, HalfRegistry())
    results = pipeline.publish([api], built_results([api]), registry, Events(said.append, print), Ledger())
    assert said == ["api: tagging reg/api:1, reg/api:1a2b3c"]
    assert results[0].detail == (
        "tagging in the registry failed: HTTP 403 tagging reg/api:1; not tagged yet: reg/api:1, reg/api:1a2b3c"
    )


def test_what_needs_no_build_is_said_and_reported_as_taking_no_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_builds(monkeypatch, fail=frozenset({"base"}), seconds=0.01)
    said: list[str] = []
    jobs = [job("base"), job("api", "base"), job("lone", skip="built before from the same inputs")]
    results = pipeline.build_each(jobs, step(tmp_path, said), limit=2)
    image = jobs[1].planned.image
    assert results[1:] == [
        BuildResult("api", NOT_BUILT, 0.0, "base image base did not build", None, platforms=image.platforms,
                    input_digest="apiapiapiapi", failure=Failure.BASE),
        BuildResult("lone", SKIPPED, 0.0, "built before from the same inputs", None, platforms=image.platforms,
                    input_digest="lonelonelonelone"),
    ]  # fmt: skip
    assert said == [
        "lone: skipped, built before from the same inputs",
        "api: not built, its base image base did not build",
    ]


def test_a_build_on_its_own_says_what_it_builds_each_step_once_and_its_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    long = "RUN " + "x" * 200
    lines = [f"#5 [linux/arm64 2/3] {long}", f"#5 [linux/arm64 2/3] {long}", "#6 [linux/amd64 2/3] RUN make"]

    def build_one(planned: PlannedImage, *args: Any, on_line: Any, **kwargs: Any) -> BuildResult:
        for line in lines:
            on_line(line)
        status = FAILED if planned.image.name == "bad" else BUILT
        return BuildResult(planned.image.name, status, 1.0, "", None, tail=("the error",))

    monkeypatch.setattr(buildx, "build_one", build_one)
    said: list[str] = []
    steps: list[tuple[str, str, str]] = []
    failed: list[tuple[str, Sequence[str]]] = []
    events = Events(said.append, print, step=lambda *started: steps.append(started),
                    failed=lambda name, tail: failed.append((name, tail)))  # fmt: skip
    two = job("api")
    image = Image("api", "api", "api/Dockerfile", ("linux/amd64", "linux/arm64"))
    two = two._replace(planned=two.planned._replace(image=image, input_digest="0123456789abcdef" * 4))
    the_step = step(tmp_path, [])._replace(events=events)
    pipeline._build(two, the_step)
    assert said[0] == "api: building for linux/amd64, linux/arm64 (inputs 0123456789ab)"
    assert steps == [("api", "linux/arm64", f"2/3 {long}"[:100]), ("api", "linux/amd64", "2/3 RUN make")]
    assert failed == []
    pipeline._build(job("bad"), the_step)
    assert failed == [("bad", ("the error",))]


def test_an_interruption_waits_for_every_tag_request_under_way() -> None:
    requests = pipeline._Requests()
    first, second = requests.one(), requests.one()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    waiting = threading.Thread(target=requests.wait_idle)
    waiting.start()
    waiting.join(0.3)
    assert waiting.is_alive()  # one is still under way
    second.__exit__(None, None, None)
    waiting.join(5)
    assert not waiting.is_alive()


class SlowRegistry:
    """A registry that answers each tag in 0.3 s; the first request sends the run a ^C."""

    def __init__(self) -> None:
        self.put: list[str] = []

    def tag(self, source: str, tags: list[str], stop: threading.Event | None = None) -> Tagged:
        done: list[str] = []
        for tag in tags:
            if stop is not None and stop.is_set():
                return Tagged(False, tuple(done), "stopped")
            if not self.put:
                _thread.interrupt_main()  # as the terminal's ^C reaches the run
            time.sleep(0.3)
            self.put.append(tag)
            done.append(tag)
        return Tagged(True, tuple(done))


def test_interrupting_the_tag_step_stops_it_and_says_what_landed() -> None:
    jobs = [job(name) for name in ("a", "b", "c", "d", "e", "f", "g", "h", "i", "j")]
    registry, ledger = SlowRegistry(), Ledger()
    with pytest.raises(KeyboardInterrupt):
        pipeline.publish(jobs, built_results(jobs), registry, Events(lambda t: None, print), ledger)  # type: ignore[arg-type]
    landed = list(registry.put)  # the requests under way ended before the interruption went on
    time.sleep(0.5)
    assert registry.put == landed and set(ledger.published) == set(landed)
    assert registry.put and not any(
        tag.endswith(":main") for tag in registry.put
    )  # the moving ones never started


# --- against the lab --------------------------------------------------------------------------

PLATFORMS = ["linux/amd64", "linux/arm64", "linux/arm/v7"]


def pyproject(lab: Lab, registry: str, *, push: bool, extra: str = "", base_arg: str = "v1") -> str:
    return f"""\
[tool.multiarch]
platforms = {json.dumps(PLATFORMS)}
registry = "{registry}"
push = {str(push).lower()}
tags = ["{{short_sha}}"]
{extra}
[tool.multiarch.images.base]
context = "base"
build-args = {{ BUSYBOX = "{lab.busybox}", FLAVOR = "{base_arg}" }}

[tool.multiarch.images.api]
context = "api"
"""


def files(lab: Lab, registry: str, *, push: bool = False, extra: str = "") -> dict[str, str]:
    return {
        "pyproject.toml": pyproject(lab, registry, push=push, extra=extra),
        "base/Dockerfile": 'ARG BUSYBOX\nFROM ${BUSYBOX}\nARG FLAVOR\nRUN echo "base $FLAVOR" > /base\n',
        "api/Dockerfile": f"FROM {registry}/base\nCOPY app.txt /\nRUN cat /base /app.txt > /report\n",
        "api/app.txt": "v1\n",
        "docs/x.md": "x\n",
    }


def mab(repo: Repo, lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run((sys.executable, "-m", "mab_hook", *args), cwd=repo.path, env=lab.env,
                          capture_output=True, text=True, check=False)  # fmt: skip


def results(output: str) -> dict[str, str]:
    rows = re.findall(r"^  (\S+)\s{2,}linux/\S.*?\s{2,}(built|pushed|skipped|failed|timed out|not built)\s",
                      output, re.MULTILINE)  # fmt: skip
    return dict(rows)


@pytest.mark.lab
def test_unchanged_content_is_not_built_again(lab: Lab, repo: Repo) -> None:
    registry = lab.namespace()
    first = repo.commit(files(lab, registry))
    built = mab(repo, lab, "--all", "--publish", "--json")
    data = json.loads(built.stdout)
    assert [(r["name"], r["status"]) for r in data["results"]] == [("base", "built"), ("api", "built")]
    labels = json.loads(lab.docker("image", "inspect", "--format", "{{json .Config.Labels}}",
                                   f"{registry}/api:{first[:7]}").stdout)  # fmt: skip
    assert labels["org.opencontainers.image.revision"] == first
    assert labels["org.opencontainers.image.source"] == str(repo.remote)
    assert labels["org.opencontainers.image.created"].startswith("20")
    assert labels["dev.mab-hook.input-digest"] == data["results"][1]["input_digest"]
    # The same content again: an amended message, another branch. Nothing is built.
    repo.git("commit", "-q", "--amend", "-m", "same content, new message")
    assert repo.head() != first
    again = mab(repo, lab, "--all", "--publish", "--json")
    data = json.loads(again.stdout)
    assert [(r["name"], r["status"]) for r in data["results"]] == [("base", "skipped"), ("api", "skipped")]
    assert data["results"][0]["detail"].startswith("built before from the same inputs (digest ")
    assert len(data["results"][0]["input_digest"]) == 64


@pytest.mark.lab
def test_changing_only_a_build_arg_rebuilds(lab: Lab, repo: Repo) -> None:
    registry = lab.namespace()
    repo.commit(files(lab, registry))
    assert mab(repo, lab, "--all", "--publish").returncode == 0
    before = repo.head()
    repo.commit({"pyproject.toml": pyproject(lab, registry, push=False, base_arg="v2")})
    rebuilt = mab(repo, lab, "--publish", "--from", before)
    assert results(rebuilt.stdout) == {"base": "built", "api": "built"}, rebuilt.stdout
    assert "its [tool.multiarch] settings changed (pyproject.toml)" in rebuilt.stdout
    report = lab.docker("run", "--rm", "--platform", "linux/arm/v7", f"{registry}/api:{repo.head()[:7]}", "cat",
                        "/report").stdout  # fmt: skip
    assert report == "base v2\nv1\n"


@pytest.mark.lab
def test_an_image_in_the_registry_under_its_digest_is_only_tagged(lab: Lab, repo: Repo) -> None:
    registry = lab.namespace()
    repo.commit(files(lab, registry, push=True))
    first = mab(repo, lab, "--all", "--publish", "--json")
    assert [r["status"] for r in json.loads(first.stdout)["results"]] == ["pushed", "pushed"], first.stderr
    api_digest = json.loads(first.stdout)["results"][1]["input_digest"]
    assert f"mab-{api_digest}" in lab.tags(f"{registry}/mab-staging/api")
    repo.git("commit", "-q", "--amend", "-m", "same content")
    second = mab(repo, lab, "--all", "--publish")
    assert results(second.stdout) == {"base": "skipped", "api": "skipped"}, second.stdout
    assert "already in the registry" in second.stdout
    logs = repo.path / ".git" / "mab-hook" / "logs" / repo.head()[:12]
    assert not (logs / "api.log").exists()  # no build ran
    assert not (logs / "api.push.log").exists()  # nor buildx: the registry's API did it all
    assert repo.head()[:7] in lab.tags(f"{registry}/api")  # the new tag is there
    assert lab.platforms(f"{registry}/api:{repo.head()[:7]}") == set(PLATFORMS)
    # the very manifest, tagged over the registry's API (buildx imagetools would write anew)
    assert lab.manifest(f"{registry}/api:{repo.head()[:7]}") == lab.manifest(
        f"{registry}/mab-staging/api:mab-{api_digest}"
    )


@pytest.mark.lab
def test_a_registry_wanting_credentials_is_asked_through_buildx(
    lab: Lab, repo: Repo, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Where the registry's API will not answer without credentials, `docker buildx imagetools`
    (which has docker's) asks and tags instead. The lab's registry answers anyone, so the API
    path is told to give up, as it does on a 401."""
    registry = lab.namespace()
    repo.commit(files(lab, registry, push=True))
    assert mab(repo, lab, "--all", "--publish").returncode == 0
    repo.git("commit", "-q", "--amend", "-m", "same content")
    for key, value in lab.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(repo.path)
    monkeypatch.setattr(Registry, "_configs", lambda self, reference: (_ for _ in ()).throw(OSError("401")))
    monkeypatch.setattr(
        Registry, "api_tag", lambda self, source, tags, stop=None: Tagged(False, (), "HTTP 401")
    )
    asked: list[tuple[str, ...]] = []
    real_run = process.run

    def run(cmd: tuple[str, ...], **kwargs: Any) -> process.Completed:
        asked.append(tuple(cmd))
        return real_run(cmd, **kwargs)

    monkeypatch.setattr(process, "run", run)
    assert cli.main(["--all", "--publish"]) == 0
    out = capsys.readouterr().out
    assert results(out) == {"base": "skipped", "api": "skipped"}, out
    assert "already in the registry" in out
    assert lab.platforms(f"{registry}/api:{repo.head()[:7]}") == set(PLATFORMS)
    assert [cmd[3] for cmd in asked if cmd[:3] == ("docker", "buildx", "imagetools")] == [
        "inspect", "inspect", "create", "create"]  # fmt: skip
    logs = repo.path / ".git" / "mab-hook" / "logs" / repo.head()[:12]
    assert not (logs / "api.log").exists()  # no build ran


@pytest.mark.lab
def test_an_image_failing_only_on_arm_v7_is_reported_so_and_nothing_is_pushed(lab: Lab, repo: Repo) -> None:
    registry = lab.namespace()
    contents = files(lab, registry, push=True)
    contents["api/Dockerfile"] = f'FROM {registry}/base\nRUN [ "$(uname -m)" != armv7l ]\n'
    repo.commit(contents)
    run = mab(repo, lab, "--all", "--publish")
    assert run.returncode == 1
    found = results(run.stdout)
    # One invocation builds both: the base is stopped by the failure, or done just before it.
    assert found["api"] == "failed" and found["base"] in ("built", "not built"), run.stdout
    assert 'build failed on linux/arm/v7: RUN [ "$(uname -m)" != armv7l ] (exit 1)' in run.stdout
    assert "full log: " in run.stdout
    assert "the push is blocked and no tag was published" in run.stderr
    assert lab.pushed(registry, ("base", "api")) == set()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.lab
def test_stopping_mid_build_leaves_nothing_behind(lab: Lab, repo: Repo, sig: signal.Signals) -> None:
    registry = lab.namespace()
    contents = files(lab, registry)
    seconds = 60 + int(sig)
    contents["api/Dockerfile"] = f"FROM {lab.busybox}\nRUN echo started && sleep {seconds}\n"
    repo.commit(contents)
    proc = subprocess.Popen((sys.executable, "-m", "mab_hook", "--all", "--publish", "-v"), cwd=repo.path, env=lab.env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    assert proc.stdout is not None
    for line in proc.stdout:
        if "started" in line and "#" in line:
            break
    proc.send_signal(sig)
    rest = proc.stdout.read()
    assert proc.wait(timeout=60) == 130, rest
    assert re.search(r"interrupted( by SIGTERM)?: builds stopped, no tag was published", rest), rest
    leftover = subprocess.run(("pgrep", "-f", f"{repo.path}/.git/mab-hook"), capture_output=True, check=False)
    assert leftover.stdout == b""
    assert repo.git("worktree", "list").count("\n") == 0
    assert not list((repo.path / ".git" / "mab-hook").glob("built/*"))  # nothing recorded as built
    # Whether the engine then stops the RUN step it was running is BuildKit's affair: seen here,
    # moby 26.1 at times leaves an emulated (QEMU) step running until it ends by itself.


@pytest.mark.lab
def test_two_runs_take_turns(lab: Lab, repo: Repo) -> None:
    registry = lab.namespace()
    contents = files(lab, registry)
    contents["api/Dockerfile"] = (
        f"FROM {lab.busybox}\nRUN sleep 4 # {uuid.uuid4().hex}\n"  # never a cache hit
    )
    repo.commit(contents)
    first = subprocess.Popen((sys.executable, "-m", "mab_hook", "--all", "--publish"), cwd=repo.path, env=lab.env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    deadline = time.monotonic() + 30
    while not (repo.path / ".git" / "mab-hook" / "lock").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1)
    second = subprocess.run((sys.executable, "-m", "mab_hook", "--all", "--publish", "--timeout", "600"), cwd=repo.path,
                            env={**lab.env, "PRE_COMMIT": "1"}, capture_output=True, text=True, check=False)  # fmt: skip
    out, _ = first.communicate(timeout=120)
    assert first.returncode == 0, out
    assert second.returncode == 0, second.stdout
    # The second run waited for the first, said so, then found everything built.
    assert f"another mab-hook run (pid {first.pid}) is building in this repository" in second.stderr
    assert results(second.stdout) == {"base": "skipped", "api": "skipped"}


ENGINE_CACHE_IMPORT = (
    "moby 26.1's own BuildKit (the docker driver, containerd image store) imports the cache manifest "
    "on an engine that did not build it, but matches only part of it (which platforms, differs from "
    "run to run; the daemon logs 'reference for unknown type: application/vnd.buildkit.cacheconfig.v0'). "
    "Seen for plain `docker buildx build --cache-from type=registry` too: the engine's, not mab-hook's."
)


@pytest.mark.lab
@pytest.mark.parametrize("trial", range(2))
def test_a_registry_cache_serves_a_second_machine_on_every_platform(
    lab: Lab, repo: Repo, second_engine: Engine, tmp_path: Path, trial: int
) -> None:
    """The team cache: this machine builds and exports cache to the registry; a second machine
    (its own engine: no images, an empty build cache; a fresh clone) rebuilds the image after a
    change to its last layer and runs none of the unchanged steps again, on any platform. Each
    trial's steps are its own (a random value), so no other run's cache can answer for them."""
    registry = lab.namespace()
    cache = (f'cache-from = "type=registry,ref={registry}/cache/{{name}}"\n'
             f'cache-to = "type=registry,ref={registry}/cache/{{name}},mode=max"\n')  # fmt: skip
    contents = files(lab, registry, extra=cache)
    salt = uuid.uuid4().hex
    base = f"{lab.registry}/{lab.busybox}"  # the second engine has no local images: from the registry
    contents["api/Dockerfile"] = f"FROM {base}\nRUN echo slow-{salt} > /slow && sleep 1\nCOPY app.txt /\n"
    repo.commit(contents)
    assert mab(repo, lab, "--all", "--publish").returncode == 0
    assert lab.tags(f"{registry}/cache/api")  # the cache was written to the registry
    repo.git("push", "-q", "origin", "main")
    before = repo.head()
    clone = tmp_path / "clone"
    subprocess.run(("git", "clone", "-q", str(repo.remote), str(clone)), check=True)
    (clone / "api" / "app.txt").write_text(f"v2 {trial}\n")
    subprocess.run(("git", "commit", "-qam", "v2"), cwd=clone, check=True, env=lab.env)
    again = subprocess.run((sys.executable, "-m", "mab_hook", "--publish", "--from", before), cwd=clone, env=second_engine.env,
                           capture_output=True, text=True, check=False)  # fmt: skip
    assert again.returncode == 0, again.stdout + again.stderr
    assert results(again.stdout) == {"api": "built"}
    log = (
        clone / ".git" / "mab-hook" / "logs" / again.stdout.split("commit ")[1][:12] / "api.log"
    ).read_text()
    assert f"importing cache manifest from {registry}/cache/api" in log
    ran = []
    for platform in PLATFORMS:
        step = re.findall(rf"^#(\d+) \[(?:api )?{platform} 2/3\] RUN echo slow-{salt}", log, re.MULTILINE)
        assert step, log
        if f"#{step[0]} CACHED" not in log:
            ran.append(platform)
    if ran:  # everything above holds; the engine's part does not (yet)
        pytest.xfail(f"{ENGINE_CACHE_IMPORT} Ran again on: {', '.join(ran)}")


@pytest.mark.lab
def test_images_whose_names_differ_only_in_separators_stay_distinct(lab: Lab, repo: Repo) -> None:
    registry = lab.namespace()
    salt = uuid.uuid4().hex
    repo.commit({
        "pyproject.toml": f'[tool.multiarch]\nplatforms = ["linux/amd64", "linux/arm64"]\nregistry = "{registry}"\n'
                          'push = true\n[tool.multiarch.images."team.api"]\ncontext = "dot"\n'
                          '[tool.multiarch.images.team_api]\ncontext = "underscore"\n',
        "dot/Dockerfile": f"FROM {lab.busybox}\nRUN echo dot-{salt} > /which\n",
        "underscore/Dockerfile": f"FROM {lab.busybox}\nRUN echo underscore-{salt} > /which\n",
    })  # fmt: skip
    run = mab(repo, lab, "--all", "--publish", "--json")
    assert run.returncode == 0, run.stdout + run.stderr
    found = {r["name"]: r for r in json.loads(run.stdout)["results"]}
    assert {name: r["status"] for name, r in found.items()} == {"team.api": "pushed", "team_api": "pushed"}
    assert found["team.api"]["input_digest"] != found["team_api"]["input_digest"]
    logs = repo.path / ".git" / "mab-hook" / "logs" / repo.head()[:12]
    assert {p.name for p in logs.glob("*.log")} == {"team_DOT_api.log", "team_api.log"}
    for name, which in (("team.api", "dot"), ("team_api", "underscore")):
        ran = lab.docker("run", "--rm", "--platform", "linux/arm64", f"{registry}/{name}:{repo.head()[:7]}",
                         "cat", "/which").stdout  # fmt: skip
        assert ran == f"{which}-{salt}\n"
        assert f"mab-{found[name]['input_digest']}" in lab.tags(f"{registry}/mab-staging/{name}")


@pytest.mark.lab
def test_a_submodule_reaches_the_build_and_its_change_rebuilds(lab: Lab, repo: Repo, tmp_path: Path) -> None:
    env = {**lab.env, "GIT_CONFIG_GLOBAL": str(tmp_path / "gitconfig")}
    (tmp_path / "gitconfig").write_text('[protocol "file"]\n\tallow = always\n')
    lib = tmp_path / "lib"
    subprocess.run(("git", "init", "-q", "-b", "main", str(lib)), check=True, env=env)
    (lib / "data.txt").write_text("lib v1\n")
    subprocess.run(("git", "add", "-A"), cwd=lib, check=True, env=env)
    subprocess.run(("git", "commit", "-qm", "v1"), cwd=lib, check=True, env=env)
    subprocess.run(
        ("git", "submodule", "add", "-q", str(lib), "app/vendor/lib"), cwd=repo.path, check=True, env=env
    )
    registry = lab.namespace()
    repo.commit({
        "pyproject.toml": f'[tool.multiarch]\nplatforms = ["linux/amd64", "linux/arm64"]\nregistry = "{registry}"\n'
                          '[tool.multiarch.images.app]\ncontext = "app"\n',
        "app/Dockerfile": f"FROM {lab.busybox}\nCOPY vendor/lib/data.txt /data.txt\n",
    })  # fmt: skip

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run((sys.executable, "-m", "mab_hook", *args), cwd=repo.path, env=env, capture_output=True,
                              text=True, check=False)  # fmt: skip

    built = run("--all", "--publish")
    assert built.returncode == 0, built.stdout + built.stderr
    assert "submodules it reads: app/vendor/lib (checked out for the build)" in built.stdout
    image = f"{registry}/app:{repo.head()[:7]}"
    assert lab.docker("run", "--rm", image, "cat", "/data.txt").stdout == "lib v1\n"
    before = repo.head()
    (lib / "data.txt").write_text("lib v2\n")
    subprocess.run(("git", "commit", "-qam", "v2"), cwd=lib, check=True, env=env)
    subprocess.run(
        ("git", "submodule", "update", "-q", "--remote", "app/vendor/lib"), cwd=repo.path, check=True, env=env
    )
    repo.commit({}, "lib v2")
    again = run("--publish", "--from", before)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "reads: app/vendor/lib" in again.stdout  # the submodule's new commit makes it affected
    assert (
        lab.docker("run", "--rm", f"{registry}/app:{repo.head()[:7]}", "cat", "/data.txt").stdout
        == "lib v2\n"
    )


@pytest.mark.lab
def test_a_run_killed_with_sigkill_leaves_no_build_running(lab: Lab, repo: Repo) -> None:
    """SIGKILL cannot be caught: the watchdog stops the builds, and the next run removes the
    worktree that was left."""
    registry = lab.namespace()
    contents = files(lab, registry)
    contents["api/Dockerfile"] = f"FROM {lab.busybox}\nRUN echo started && sleep 90 # {uuid.uuid4().hex}\n"
    repo.commit(contents)
    proc = subprocess.Popen((sys.executable, "-m", "mab_hook", "--all", "--publish", "-v"), cwd=repo.path, env=lab.env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    assert proc.stdout is not None
    for line in proc.stdout:
        if "started" in line and "#" in line:
            break
    proc.kill()
    proc.wait(timeout=30)
    logs = repo.path / ".git" / "mab-hook"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        left = subprocess.run(("pgrep", "-f", f"{logs}/logs"), capture_output=True, check=False).stdout
        if not left:
            break
        time.sleep(0.2)
    assert left == b"", "buildx outlived the run"
    assert "locked mab-hook run" in repo.git("worktree", "list", "--porcelain")
    contents["api/Dockerfile"] = f"FROM {lab.busybox}\nRUN true\n"
    repo.commit(contents)
    after = mab(repo, lab, "--all", "--publish")
    assert after.returncode == 0, after.stdout
    assert "removed the worktree an earlier run left behind" in after.stderr
    assert repo.git("worktree", "list").count("\n") == 0


@pytest.mark.lab
def test_a_registry_dying_mid_push_is_reported_as_the_registrys_with_what_reached_it(
    lab: Lab, repo: Repo, tmp_path: Path
) -> None:
    registry = start_registry(tmp_path / "registry")
    try:
        contents = files(lab, f"{registry.address}/team", push=True)
        contents["api/Dockerfile"] = (f"FROM {registry.address}/team/base\n"
                                      f"RUN echo started-api && sleep 3 # {uuid.uuid4().hex}\n")  # fmt: skip
        repo.commit(contents)
        proc = subprocess.Popen((sys.executable, "-m", "mab_hook", "--all", "--publish", "-v"), cwd=repo.path, env=lab.env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:
            seen.append(line)
            if "started-api" in line and "#" in line:
                registry.stop()  # the registry dies while api builds; base is uploaded already
                break
        seen.append(proc.stdout.read())
        out = "".join(seen)
        assert proc.wait(timeout=120) == 1, out
    finally:
        registry.stop()
    # Every image is built in one bake invocation; uploads come at its end, when the registry is
    # gone: the base's upload fails (tried again), and api, built on it, is not pushed either.
    assert results(out)["base"] == "failed", out
    assert "the upload to the registry failed: failed to push" in out and "connection refused" in out
    log = (repo.path / ".git" / "mab-hook" / "logs" / repo.head()[:12] / "base.log").read_text()
    assert "the engine or the registry failed while exporting; once more" in log  # tried again
    assert "the push is blocked and no tag was published" in out
    assert "the registry failed (see above): check that it runs and that `docker login` works for it" in out
    revived = start_registry(tmp_path / "registry", address=registry.address)  # the same data: what is there?
    try:
        assert lab.public_tags(f"{registry.address}/team/base") == set()
        assert lab.public_tags(f"{registry.address}/team/api") == set()
    finally:
        revived.stop()


@pytest.mark.lab
def test_interrupted_while_uploading_no_public_tag_moves(lab: Lab, repo: Repo) -> None:
    registry = lab.namespace()
    contents = files(lab, registry, push=True)
    contents["api/Dockerfile"] = f"FROM {registry}/base\nRUN echo started && sleep 60 # {uuid.uuid4().hex}\n"
    repo.commit(contents)
    proc = subprocess.Popen((sys.executable, "-m", "mab_hook", "--all", "--publish", "-v"), cwd=repo.path, env=lab.env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    assert proc.stdout is not None
    for line in proc.stdout:
        if "started" in line and "#" in line:
            break
    proc.send_signal(signal.SIGINT)
    rest = proc.stdout.read()
    assert proc.wait(timeout=120) == 130, rest
    assert "interrupted: builds stopped, no tag was published" in rest
    assert lab.pushed(registry, ("base", "api")) == set()  # uploads there may be; no public tag


@pytest.mark.lab
def test_a_partial_checkout_holds_what_the_build_reads_outside_its_context(lab: Lab, repo: Repo) -> None:
    """Only what the builds read is checked out: a Dockerfile and its ignore file outside the
    context, a named context elsewhere in the repository; a watched path rebuilds too."""
    registry = lab.namespace(local=True)  # the engine's store only: push = false
    repo.commit({
        "pyproject.toml": '[tool.multiarch]\nplatforms = ["linux/amd64", "linux/arm64"]\n'
                          f'registry = "{registry}"\n[tool.multiarch.images.api]\ncontext = "api"\n'
                          'dockerfile = "docker/api.Dockerfile"\ncontexts = { proto = "shared/proto" }\n'
                          'watch = ["schema/**"]\n',
        "docker/api.Dockerfile": f"FROM {lab.busybox}\nCOPY --from=proto api.proto /proto/\nCOPY . /app/\n"
                                 "RUN cat /proto/api.proto /app/app.txt > /report\n",
        "docker/api.Dockerfile.dockerignore": "*.tmp\n",
        "api/app.txt": "app v1\n", "api/scratch.tmp": "ignored\n",
        "shared/proto/api.proto": "proto v1\n", "schema/v1.json": "{}\n", "other/big.bin": "b" * 100_000,
    })  # fmt: skip
    first = mab(repo, lab, "--all", "--publish")
    assert first.returncode == 0, first.stdout + first.stderr
    sha = repo.commit({"shared/proto/api.proto": "proto v2\n"})
    again = mab(repo, lab, "--publish", "--from", "HEAD^")
    assert results(again.stdout) == {"api": "built"}, again.stdout
    report = lab.docker(
        "run", "--rm", "--platform", "linux/arm64", f"{registry}/api:{sha[:7]}", "cat", "/report"
    )
    assert report.stdout == "proto v2\napp v1\n"
    listing = lab.docker("run", "--rm", f"{registry}/api:{sha[:7]}", "ls", "/app").stdout.split()
    assert listing == ["app.txt"]  # the ignore file beside the Dockerfile was there too
    repo.commit({"schema/v2.json": "{}\n"})
    watched = mab(repo, lab, "--publish", "--from", "HEAD^")
    assert results(watched.stdout) == {"api": "built"}, watched.stdout
    assert "watch 'schema/**' matched: schema/v2.json" in watched.stdout


@pytest.mark.lab
def test_a_base_without_one_of_the_platforms_is_named_with_it(lab: Lab, repo: Repo) -> None:
    """The only image of a push, FROM an index that has no linux/arm64 image: its own failure,
    the base and the platform in the summary (not "stopped by another image")."""
    registry = lab.namespace()
    base = f"{registry}/amd64-only:1"
    pushed = lab.build(base, f"FROM {lab.busybox}\nRUN echo {uuid.uuid4().hex} > /salt\n")
    assert pushed.returncode == 0, pushed.stderr
    repo.commit({
        "pyproject.toml": '[tool.multiarch]\nplatforms = ["linux/amd64", "linux/arm64"]\n'
                          '[tool.multiarch.images.web]\ncontext = "web"\n',
        "web/Dockerfile": f"FROM {base}\nRUN echo web\n",
    })  # fmt: skip
    # Base coverage blocks such a push before building (test_coverage.py); told otherwise, as by
    # a kept answer, BuildKit's own failure is what the pusher must see.
    digest = lab.docker("image", "inspect", "--format", "{{.Id}}", base).stdout.strip()
    kept = repo.path / ".git" / "mab-hook" / "cache" / "bases.json"
    kept.parent.mkdir(parents=True)
    kept.write_text(json.dumps({digest: {"platforms": ["linux/amd64", "linux/arm64"], "plain": False}}))
    run = mab(repo, lab, "--all", "--color", "never")
    assert run.returncode == 1, run.stdout + run.stderr
    assert results(run.stdout) == {"web": "failed"}, run.stdout
    said = f"base {base} has no linux/arm64 image (no match for platform in manifest)"
    assert f"  {said}\n" in run.stdout and f"--- web: {said}" in run.stdout, run.stdout


def test_events_made_with_only_their_lines_say_nothing_of_the_rest() -> None:
    said: list[str] = []
    events = Events(said.append, said.append)
    events.notice("waiting for another run")
    events.step("api", "linux/arm64", "2/3 RUN make")
    events.done("api")
    events.failed("api", ("the error",))
    assert said == []


def test_each_build_is_timed_from_its_own_log_whatever_bytes_it_holds(tmp_path: Path) -> None:
    log = tmp_path / "api.log"
    log.write_bytes(b"#7 [api linux/arm64 2/2] RUN make\n#7 0.1 \xff\xfe not UTF-8\n#7 DONE 12.5s\n")
    built = BuildResult("api", BUILT, 13.0, "", log, platforms=("linux/amd64", "linux/arm64"))
    assert pipeline._measured([built], "x86_64")[0].steps == (
        StepTime("linux/arm64", "2/2 RUN make", 12.5, False),
    )
    gone = built._replace(log=tmp_path / "gone.log")  # removed since: nothing measured, nothing fails
    skipped = BuildResult("web", SKIPPED, 0.0, "built before", None)
    assert pipeline._measured([gone, skipped], "x86_64") == [gone, skipped]
