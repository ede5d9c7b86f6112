"""Scheduling and decisions of the build phase, with builds faked; the lab tests run it for real."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from mab_hook import buildx, pipeline, process
from mab_hook.buildx import BUILT, FAILED, NOT_BUILT, PUSHED, SKIPPED, BuildResult, Buildx
from mab_hook.config import Image
from mab_hook.pipeline import Events, Job, Step
from mab_hook.plan import Base, PlannedImage

P = ("linux/amd64",)


def job(name: str, *bases: str, skip: str = "") -> Job:
    image = Image(name, name, f"{name}/Dockerfile", P)
    planned = PlannedImage(image, ("r",), (f"reg/{name}:1",), tuple(Base(b, f"reg/{b}") for b in bases))
    return Job(planned, name * 4, skip)


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
    results = pipeline.build_jobs([job("a"), job("b"), job("c")], step(tmp_path, []), limit=2)
    assert [r.status for r in results] == [BUILT, BUILT, BUILT]
    assert set(events[:2]) == {"start a", "start b"}  # two at once
    assert events.index("start c") > min(events.index("end a"), events.index("end b"))  # c waits for a slot


def test_dependants_wait_for_their_bases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events = fake_builds(monkeypatch)
    pipeline.build_jobs([job("base"), job("api", "base"), job("worker", "base"), job("lone")],
                        step(tmp_path, []), limit=4)  # fmt: skip
    assert events.index("start api") > events.index("end base")
    assert events.index("start worker") > events.index("end base")
    assert events.index("start lone") < events.index("end base")  # no base: starts at once


def test_a_failed_base_leaves_dependants_unbuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events = fake_builds(monkeypatch, fail=frozenset({"base"}))
    progress: list[str] = []
    results = pipeline.build_jobs([job("base"), job("api", "base")], step(tmp_path, progress), limit=2)
    assert [(r.name, r.status, r.detail) for r in results] == [
        ("base", FAILED, ""), ("api", NOT_BUILT, "base image base did not build")]  # fmt: skip
    assert "start api" not in events
    assert "api: not built, its base image base did not build" in progress


def test_skipped_images_are_not_built_and_their_dependants_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = fake_builds(monkeypatch)
    progress: list[str] = []
    results = pipeline.build_jobs([job("base", skip="built before"), job("api", "base")],
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
        pipeline.build_jobs([job("a")], s, limit=1)
    assert stopped == [True]


def test_a_failed_push_says_which_images_reached_the_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def push_one(planned: PlannedImage, *args: object, **kwargs: object) -> BuildResult:
        status = FAILED if planned.image.name == "api" else PUSHED
        return BuildResult(
            planned.image.name, status, 1.0, "push failed (exit 1)" if status == FAILED else "", None
        )

    monkeypatch.setattr(buildx, "push_one", push_one)
    jobs = [job("base"), job("api", "base")]
    built = [BuildResult(j.planned.image.name, BUILT, 2.0, "", None) for j in jobs]
    results = pipeline.publish(jobs, built, step(tmp_path, []))
    assert [(r.name, r.status, r.seconds) for r in results] == [("base", PUSHED, 3.0), ("api", FAILED, 3.0)]
