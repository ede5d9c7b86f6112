"""The build phase: skip what is already built, build the rest concurrently (bases first),
push only when every image of the push built, and record what was built.

Nothing is half-published: images are built into the build cache first, and pushed only when
all of them built for every platform. A push that fails part-way says which images reached the
registry; the next run finds those by their input-digest tag and only finishes the rest.
"""

from __future__ import annotations

import concurrent.futures
import datetime
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import NamedTuple

import git

from mab_hook import buildx, digest, process, registry
from mab_hook.buildx import NOT_BUILT, SKIPPED, BuildResult, Buildx
from mab_hook.checkout import checkout
from mab_hook.plan import Plan, PlannedImage, watched
from mab_hook.state import State, lock, root


class Job(NamedTuple):
    planned: PlannedImage
    digest: str
    skip: str = ""  # why it is not built: "" to build it
    in_registry: str = ""  # the reference it is in the registry under, when skipped for that


class Events(NamedTuple):
    """Where a run reports as it goes (the summary comes after)."""

    progress: Callable[[str], None]  # one line per image or platform event
    build_line: Callable[[str], None]  # buildx's own output, for --verbose
    notice: Callable[[str], None] = lambda text: None  # what the output must keep (a wait, say)


class Step(NamedTuple):
    """What the builds of one commit share."""

    bx: Buildx
    bake_file: Path
    logs: Path
    events: Events
    timeout: float | None  # from the command line; else each image's own


def run(
    repo: git.Repo,
    plans: Sequence[Plan],
    env: Mapping[str, str],
    events: Events,
    *,
    ready: Callable[[], None] = lambda: None,
    timeout: float | None = None,
) -> list[BuildResult]:
    """`ready()` runs the readiness checks (raising when the host is not ready); it is called
    only when something will really be built, so a push of built content skips them."""
    state = State(root(repo))
    group = process.Group()
    records: list[tuple[str, str, dict[str, str]]] = []
    results: list[BuildResult] = []

    def waiting(text: str) -> None:  # on the terminal now, and in the output for later
        events.progress(text)
        events.notice(text)

    with lock(state.root, waiting), ExitStack() as stack:
        try:
            work = []
            for plan in (p for p in plans if p.affected):
                logs = state.logs(plan.target.sha)
                step = Step(
                    Buildx(env, plan.config.builder, group), logs / "bake.json", logs, events, timeout
                )
                work.append((plan, step, *decide_all(plan, state, step.bx)))
            if any(not job.skip for _plan, _step, jobs, _digests in work for job in jobs):
                ready()
            for plan, step, jobs, digests in work:
                results += _run_plan(repo, plan, (jobs, digests), stack, step, records=records)
        except BaseException:
            group.terminate_all()  # ^C, SIGTERM or a bug: no buildx process outlives the run
            raise
        # Only a run that got this far records anything as built.
        for name, value, details in records:
            state.record(name, value, details)
    return results


def _run_plan(
    repo: git.Repo,
    plan: Plan,
    decided: tuple[Sequence[Job], Mapping[str, str]],
    stack: ExitStack,
    step: Step,
    *,
    records: list[tuple[str, str, dict[str, str]]],
) -> list[BuildResult]:
    jobs, digests = decided
    if any(not job.skip for job in jobs):  # a checkout and a bake file only when building
        tree = stack.enter_context(checkout(repo, plan.target.sha))
        labels = {name: oci_labels(plan, repo, value) for name, value in digests.items()}
        buildx.write_definition(plan, tree, step.bake_file, labels)
    results = build_jobs(jobs, step, plan.config.jobs)
    if not plan.config.push:
        records += [
            (r.name, r.digest, {"commit": plan.target.sha}) for r in results if r.status == buildx.BUILT
        ]
        return results
    if not all(r.ok for r in results):
        step.events.progress("not pushing anything: an image did not build")
        return results
    pushed = publish(jobs, results, step)
    records += [(r.name, r.digest, {"commit": plan.target.sha, "pushed": "yes"}) for r in pushed if r.ok]
    return pushed


def decide_all(plan: Plan, state: State, bx: Buildx) -> tuple[list[Job], dict[str, str]]:
    """Every affected image's fate, the registry asked about all of them at once; and the
    input digests of every image the plan's bake file holds."""
    digests = input_digests(plan)
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        jobs = list(pool.map(lambda p: decide(p, digests[p.image.name], plan, state, bx), plan.affected))
    return jobs, digests


def input_digests(plan: Plan) -> dict[str, str]:
    """The input digest of every image the plan builds, bases' digests folded into dependants'."""
    assert plan.inputs_of is not None and plan.files is not None
    files_of = plan.files
    paths = files_of.tree.paths
    planned = {p.image.name: p for p in (*plan.context_only, *plan.affected)}
    found: dict[str, str] = {}

    def of(name: str) -> str:
        if name not in found:
            inputs = plan.inputs_of(name)  # type: ignore[misc]
            files = digest.input_files(inputs, paths, watched)
            bases = {base.name: of(base.name) for base in planned[name].bases}
            blobs = {path: entry for path in files if (entry := files_of.entry(path)) is not None}
            found[name] = digest.compute(inputs, blobs, bases)
        return found[name]

    for name in planned:
        of(name)
    return found


def decide(planned: PlannedImage, value: str, plan: Plan, state: State, bx: Buildx) -> Job:
    """Build it, or skip it: pushed before (the registry has its digest tag), or built before."""
    image = planned.image
    if plan.config.push:
        reference = f"{plan.config.reference(image)}:{digest.tag(value)}"
        found = registry.exists(reference)
        if found is None:  # the registry wants credentials: buildx has them
            inspect = bx.imagetools("inspect", reference)
            found = process.run(inspect, env=bx.env, check=False, timeout=120).returncode == 0
        if found:
            return Job(planned, value, f"already in the registry (inputs {value[:12]})", reference)
        return Job(planned, value)
    if state.built(image.name, value):
        return Job(planned, value, f"built before from the same inputs (digest {value[:12]})")
    return Job(planned, value)


def build_jobs(jobs: Sequence[Job], step: Step, limit: int) -> list[BuildResult]:
    """Independent images build at once (at most `limit`); dependants wait for their bases."""
    results: dict[str, BuildResult] = {}
    by_name = {job.planned.image.name: job for job in jobs}
    pending = list(jobs)
    with concurrent.futures.ThreadPoolExecutor(max_workers=limit) as pool:
        running: dict[concurrent.futures.Future[BuildResult], str] = {}
        try:
            while pending or running:
                for job in list(pending):
                    waiting = [
                        b.name for b in job.planned.bases if b.name in by_name and b.name not in results
                    ]
                    if waiting:
                        continue
                    pending.remove(job)
                    result = _immediate(job, results, step.events)
                    if result is not None:
                        results[job.planned.image.name] = result
                    elif len(running) < limit:
                        running[pool.submit(_build, job, step)] = job.planned.image.name
                    else:
                        pending.insert(0, job)
                        break
                if running:
                    done, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
                    for future in done:
                        results[running.pop(future)] = future.result()
        except BaseException:
            step.bx.group.terminate_all()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return [results[job.planned.image.name] for job in jobs]


def _immediate(job: Job, results: Mapping[str, BuildResult], events: Events) -> BuildResult | None:
    """The result of a job that needs no build: skipped, or blocked by a base that failed."""
    name = job.planned.image.name
    broken = [b.name for b in job.planned.bases if b.name in results and not results[b.name].ok]
    if broken:
        events.progress(f"{name}: not built, its base image {broken[0]} did not build")
        return BuildResult(
            name,
            NOT_BUILT,
            0.0,
            f"base image {broken[0]} did not build",
            None,
            platforms=job.planned.image.platforms,
            digest=job.digest,
        )
    if job.skip:
        events.progress(f"{name}: skipped, {job.skip}")
        return BuildResult(
            name, SKIPPED, 0.0, job.skip, None, platforms=job.planned.image.platforms, digest=job.digest
        )
    return None


def _build(job: Job, step: Step) -> BuildResult:
    image, events = job.planned.image, step.events
    events.progress(f"{image.name}: building for {', '.join(image.platforms)} (inputs {job.digest[:12]})")
    seen: set[str] = set()

    def on_line(line: str) -> None:
        events.build_line(line)
        started = buildx.step(line)
        if started is not None and started[0] not in seen:
            seen.add(started[0])
            events.progress(f"{image.name} {started[1]}: {started[2][:100]}")

    result = buildx.build_one(
        job.planned,
        step.bake_file,
        step.bx,
        step.logs,
        on_line=on_line,
        timeout=step.timeout or image.timeout,
    )
    events.progress(
        f"{image.name}: {result.status}"
        + (f", {result.detail}" if result.detail else "")
        + f" ({result.seconds:.1f} s)"
    )
    return result._replace(digest=job.digest)


def publish(jobs: Sequence[Job], results: Sequence[BuildResult], step: Step) -> list[BuildResult]:
    """Push what was built, one image after the other (concurrent pushes into one registry
    race, see buildx.push_one), and tag what the registry already had, all at once."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        tagged = {
            job.planned.image.name: pool.submit(_retag, job, result, step)
            for job, result in zip(jobs, results, strict=True)
            if job.in_registry
        }
        pushed = {
            job.planned.image.name: _push(job, result, step)
            for job, result in zip(jobs, results, strict=True)
            if not job.in_registry
        }
        return [tagged[r.name].result() if r.name in tagged else pushed[r.name] for r in results]


def _retag(job: Job, result: BuildResult, step: Step) -> BuildResult:
    name = job.planned.image.name
    step.events.progress(f"{name}: tagging {', '.join(job.planned.tags)} in the registry")
    if registry.tag(job.in_registry, job.planned.tags):
        return result
    tagged = buildx.retag(job.in_registry, job.planned.tags, step.bx, step.logs, name)
    if tagged.ok:
        return result
    return result._replace(
        status=tagged.status, detail=f"{result.detail}; {tagged.detail}", tail=tagged.tail, log=tagged.log
    )


def _push(job: Job, result: BuildResult, step: Step) -> BuildResult:
    step.events.progress(f"{job.planned.image.name}: pushing {', '.join(job.planned.tags)}")
    pushed = buildx.push_one(
        job.planned, step.bake_file, step.bx, step.logs, _digest_ref(job), on_line=step.events.build_line
    )
    return pushed._replace(
        seconds=result.seconds + pushed.seconds,
        digest=job.digest,
        image_digest=pushed.image_digest or result.image_digest,
    )


def _digest_ref(job: Job) -> str:
    repository = job.planned.tags[0].rsplit(":", 1)[0]
    return f"{repository}:{digest.tag(job.digest)}"


def oci_labels(plan: Plan, repo: git.Repo, value: str) -> dict[str, str]:
    return {
        "org.opencontainers.image.revision": plan.target.sha,
        "org.opencontainers.image.source": process.redact(_source(repo)),
        "org.opencontainers.image.created": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        ),
        "dev.mab-hook.input-digest": value,
    }


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _source(repo: git.Repo) -> str:
    for remote in _remotes(repo):
        return remote
    return str(repo.working_tree_dir or repo.git_dir)


def _remotes(repo: git.Repo) -> Iterator[str]:
    for remote in repo.remotes:
        yield from remote.urls
