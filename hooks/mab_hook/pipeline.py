"""The build phase: skip what is already built, build the rest concurrently (bases first),
publish only when every image of the push built, and record what was built.

Nothing is half-published. With `push`, each image is uploaded as it builds, under its
input-digest tag only (`mab-<digest>`), which no one reads as a public tag; once every image of
every commit of the push built, the registry gateway puts the public tags on those very
manifests (milliseconds each). A failed push leaves staging tags that the next run reuses
instead of building again, and no public tag moved.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime
import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import NamedTuple

import git

from mab_hook import (
    bakefile,
    buildlog,
    buildx,
    engine_builds,
    gitobjects,
    grants,
    input_digest,
    platform_check,
    process,
    references,
    routing,
    runs,
    slow_steps,
    state,
)
from mab_hook.buildx import Buildx
from mab_hook.checkout import checkout
from mab_hook.coverage import Found
from mab_hook.images import INPUT_DIGEST_LABEL, REVISION_LABEL
from mab_hook.plan import Plan, PlannedImage
from mab_hook.redact import redact
from mab_hook.registry import Registry
from mab_hook.results import BuildResult, Failure, Status
from mab_hook.routing import Engine, Routes
from mab_hook.state import KeptByDigest, State


class Job(NamedTuple):
    planned: PlannedImage
    skip: str = ""  # why it is not built: "" to build it
    staged: str = ""  # with push: the reference it is uploaded under (its input-digest tag)
    in_registry: bool = False  # skipped because the registry has it under `staged`
    distrusted: str = ""  # the registry has something under `staged` that is not what it claims
    manifest: str = ""  # with `in_registry`: the digest `staged` names


class Step(NamedTuple):
    """What the builds of one commit share."""

    bx: Buildx
    bake_file: Path
    logs: Path
    events: runs.Events
    timeout: float | None  # from the command line; else each image's own
    uploaded: Callable[[str], None] = lambda image: None  # an image's upload landed


class Decided(NamedTuple):
    """What the registry already holds decides what is built: each commit's jobs, and the
    images that will really be built (those not skipped, and the bases they build on): what
    readiness is asked about, and only when there are any."""

    work: tuple[tuple[Plan, tuple[Job, ...]], ...]
    building: tuple[PlannedImage, ...]


def decisions(repo: git.Repo, plans: Sequence[Plan], run: runs.Builds) -> Decided:
    """Which images the registry already holds, built from the same inputs (skipped), and
    which are built; what will be built must be granted what it asks of the pusher's machine."""
    known = gitobjects.known_commits(repo)
    work = tuple(
        (plan, tuple(decide_all(plan, run.state, run.registry, known))) for plan in plans if plan.affected
    )
    for job in (job for _plan, jobs in work for job in jobs if job.distrusted):
        again = f"{job.distrusted}: not trusted; building it again, to upload over it"
        runs.waiting(run.events, f"{job.planned.image.name}: {job.staged} is in the registry, but {again}")
    building = tuple(_to_build(work))
    if building:
        grants.check([planned.image for planned in building], run.granted)
    return Decided(work, building)


def build(
    repo: git.Repo,
    decided: Decided,
    run: runs.Builds,
    bases: Mapping[str, Found],
    *,
    publishing: bool,
    routes: Routes = routing.DIRECT,
) -> list[BuildResult]:
    """Build what was decided; `bases`: what readiness found of each base (its platforms,
    its layers), for the check of what was built; `routes`: the engines that build which
    platforms (readiness found them). Without `publishing`, what built stays under
    its staging tags (a CI job's share of a fan-out)."""
    kept = platform_check.kept_findings(run.state.root / "cache" / "uploads.json")
    with _EarlyChecks(run, bases, kept) as early:
        built: list[Built] = [
            (plan, jobs, _build_plan(repo, plan, jobs, run, early.of(plan, jobs), routes=routes))
            for plan, jobs in decided.work
        ]
        ok = all(r.ok for _plan, _jobs, results in built for r in results)
        if ok:  # what is about to be published is what it claims
            early.wait()
            built = _checked(built, run, bases, kept)
            ok = all(r.ok for _plan, _jobs, results in built for r in results)
    if ok:
        return _finish(built, run, publishing=publishing)
    if any(plan.config.push for plan, _jobs, _results in built):
        run.events.progress("no public tag moves: an image did not build")
    return [r for _plan, _jobs, results in built for r in results]


def _to_build(work: Sequence[tuple[Plan, Sequence[Job]]]) -> list[PlannedImage]:
    """The images that will really be built: those not skipped, and the bases they build on."""
    found: list[PlannedImage] = []
    for plan, jobs in work:
        if any(not job.skip for job in jobs):
            found += plan.context_only
            found += [job.planned for job in jobs if not job.skip]
    return found


def _build_plan(
    repo: git.Repo,
    plan: Plan,
    jobs: Sequence[Job],
    run: runs.Builds,
    uploaded: Callable[[str], None],
    *,
    routes: Routes,
) -> list[BuildResult]:
    logs = run.state.logs(plan.commit.sha)
    bx = Buildx(run.env, plan.config.builder, run.group, plugin=run.plugin)
    step = Step(bx, logs / "bake.json", logs, run.events, run.timeout, uploaded)
    if any(not job.skip for job in jobs):  # a checkout and a bake file only when building
        planned = (*plan.context_only, *plan.affected)
        reads = [path for p in planned for path in p.materialized]
        for large in (p for p in planned if p.image.context not in p.materialized):
            context = large.image.context
            run.events.progress(
                f"{large.image.name}: {context} is large: only what the build reads is checked out"
            )
        submodules = tuple(dict.fromkeys(path for p in planned for path in p.submodules))
        tree = run.stack.enter_context(checkout(repo, plan.commit.sha, paths=reads, submodules=submodules))
        labels = {p.image.name: oci_labels(plan, repo, p.input_digest) for p in planned}
        staged = {job.planned.image.name: job.staged for job in jobs if job.staged}
        paths = bakefile.Paths(tree, Path(repo.working_tree_dir or repo.git_dir))
        definition = _Definition(paths, labels, run.granted)
        if routes.routed(plan):
            return _kept(_build_routed(_Commit(plan, step, definition, run, routes), jobs), logs)
        definition.write(plan, staged, step)
    built = build_jobs(jobs, step, plan.config.jobs, run.ledger)
    return _kept(_measured(built, routes.machine(routing.DEFAULT)), logs)


def _measured(results: Sequence[BuildResult], machine: str) -> list[BuildResult]:
    """Each build's steps and their times, read from its log (`machine`: the engine's CPU, which
    tells the platforms it ran natively from the emulated ones)."""
    return [_timed(result, machine) for result in results]


def _timed(result: BuildResult, machine: str) -> BuildResult:
    if result.log is None:  # skipped, or not built: nothing ran
        return result
    try:
        text = result.log.read_text(errors="replace")  # a step's output may be any bytes
    except OSError:
        return result
    return result._replace(steps=slow_steps.timings(text, machine, result.platforms))


def _kept(results: list[BuildResult], logs: Path) -> list[BuildResult]:
    """The step times written down beside the logs (`steps.json`), for `mab-hook report`."""
    measured = {r.name: [list(step) for step in r.steps] for r in results if r.steps}
    if measured:
        with contextlib.suppress(OSError):
            state.write_private(logs / "steps.json", json.dumps(measured).encode())
    return results


class _Definition(NamedTuple):
    """What a commit's bake definition is made of, but its plan and where it uploads."""

    paths: bakefile.Paths
    labels: Mapping[str, Mapping[str, str]]
    granted: grants.Grants

    def write(self, plan: Plan, staged: Mapping[str, str], step: Step) -> None:
        written = bakefile.definition(plan, self.paths, self.labels, staged, self.granted)
        bakefile.write_definition(step.bake_file, written)
        buildx.prove_literal(step.bake_file, written, step.bx)


class _Commit(NamedTuple):
    """One commit's builds: its plan, what they share, how its definition is written."""

    plan: Plan
    step: Step
    definition: _Definition
    run: runs.Builds
    routes: Routes


def _build_routed(commit: _Commit, jobs: Sequence[Job]) -> list[BuildResult]:
    """The commit's images built on the engines their platforms are routed to, all at once;
    each image's uploads merged into one, under its staging tag, once every engine built it."""
    events, run = commit.step.events, commit.run
    results = {job.planned.image.name: r for job in jobs if (r := _immediate(job, {}, events)) is not None}
    todo = [job for job in jobs if job.planned.image.name not in results]
    platforms = tuple(dict.fromkeys(p for job in todo for p in job.planned.image.platforms))
    parts = commit.routes.slices(commit.plan.config, platforms)
    if len(parts) == 1:  # one engine builds every platform: it is the builder; nothing to merge
        step = commit.step._replace(bx=_on_engine(commit.step.bx, parts[0][0]))
        commit.definition.write(
            commit.plan, {job.planned.image.name: job.staged for job in jobs if job.staged}, step
        )
        alone = build_jobs(jobs, step, commit.plan.config.jobs, run.ledger)
        return _measured(alone, commit.routes.machine(parts[0][0]))
    stop = commit.step.bx.group.terminate_all
    built = engine_builds.build_parts(parts, partial(_build_part, commit, todo), stop)
    for job in todo:
        name = job.planned.image.name
        got = [(part, r) for part, found in zip(parts, built, strict=True) for r in found if r.name == name]
        merge = partial(engine_builds.merge_uploads, run.registry, job.staged, got) if job.staged else None
        results[name] = result = engine_builds.combined(job.planned, got, merge)
        events.done(name)
        if result.ok and job.staged:
            run.ledger.add((job.staged,))
            commit.step.uploaded(name)
        how = f"on {len(got)} engines" + (", merged" if merge is not None and result.ok else "")
        events.progress(f"{name}: {result.status} {how} ({result.seconds:.1f} s)")
    return [results[job.planned.image.name] for job in jobs]


def _build_part(commit: _Commit, jobs: Sequence[Job], part: engine_builds.Part) -> list[BuildResult]:
    """One engine's share: its platforms of every image, from a definition of its own."""
    engine, platforms = part
    plan, step = commit.plan, commit.step
    narrowed = engine_builds.narrowed(plan, platforms)
    by_name = {p.image.name: p for p in narrowed.affected}
    mine = [
        _narrowed_job(job, plan, by_name[job.planned.image.name])
        for job in jobs
        if job.planned.image.name in by_name
    ]
    logs = state.private_dir(step.logs / f"engine-{engine_builds.slug(engine)}")
    bx = _on_engine(step.bx, engine)
    events = step.events._replace(
        progress=lambda text: step.events.progress(f"{engine.label}: {text}"), done=lambda name: None
    )
    own = step._replace(
        bx=bx, bake_file=logs / "bake.json", logs=logs, events=events, uploaded=lambda n: None
    )
    commit.definition.write(narrowed, {job.planned.image.name: job.staged for job in mine if job.staged}, own)
    return _measured(
        build_jobs(mine, own, plan.config.jobs, commit.run.ledger), commit.routes.machine(engine)
    )


def _on_engine(bx: Buildx, engine: Engine) -> Buildx:
    """buildx driving an engine of `engines` (a docker context's own builder, or a builder)."""
    if not engine.name:
        return bx
    return bx._replace(builder=engine.name, context=engine.name if engine.context else "")


def _narrowed_job(job: Job, plan: Plan, planned: PlannedImage) -> Job:
    """A job as one engine does it: its platforms, uploaded beside the image's staging tag."""
    staged = engine_builds.part_reference(plan, job.planned, planned.image.platforms) if job.staged else ""
    return job._replace(planned=planned, staged=staged)


Built = tuple[Plan, Sequence[Job], Sequence[BuildResult]]
CHECKS = 4  # uploads checked at once


class _EarlyChecks:
    """Each upload read back for the check as soon as it lands, while the rest of the push
    builds: the check after the build finds it judged under the digest the build reports (kept
    by digest), at no request. What an early read finds is only kept: the check decides."""

    def __init__(self, run: runs.Builds, bases: Mapping[str, Found], kept: KeptByDigest) -> None:
        self.run, self.bases, self.kept = run, bases, kept
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=CHECKS)
        self.started: dict[str, concurrent.futures.Future[None]] = {}
        self.lock = threading.Lock()

    def __enter__(self) -> _EarlyChecks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.shutdown(wait=exc[0] is None, cancel_futures=True)

    def of(self, plan: Plan, jobs: Sequence[Job]) -> Callable[[str], None]:
        """What to call when an image of `plan` has been uploaded."""
        pushed = plan.config.push
        checked = {job.planned.image.name: job for job in jobs if pushed and not job.skip}

        def uploaded(name: str) -> None:
            job = checked.get(name)
            with self.lock:
                if job is not None and name not in self.started:
                    self.started[name] = self.pool.submit(self._read, job)

        return uploaded

    def _read(self, job: Job) -> None:
        layers = platform_check.base_layers(job.planned.roots, self.bases)
        with contextlib.suppress(OSError, ValueError):  # the check after the build reads it again
            platform_check.check(
                self.run.registry, job.staged, job.planned.image, base_layers=layers, kept=self.kept
            )

    def wait(self) -> None:
        with self.lock:
            started = list(self.started.values())
        concurrent.futures.wait(started)


def _checked(
    built: Sequence[Built], run: runs.Builds, bases: Mapping[str, Found], kept: KeptByDigest
) -> list[Built]:
    """Each staging upload about to be published (built now, or reused) holds, for each of its
    platforms, an image of that platform (platform_check); one that does not fails, and so the
    push publishes nothing. Findings are kept by manifest digest: a reused upload, or one read
    back as it landed, costs nothing."""
    found: list[Built] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=CHECKS) as pool:
        for plan, jobs, results in built:
            if not plan.config.push:
                found.append((plan, jobs, results))
                continue
            checks = pool.map(
                partial(_check, run=run, bases=bases, kept=kept), zip(jobs, results, strict=True)
            )
            found.append((plan, jobs, list(checks)))
    kept.save()
    return found


def _check(
    pair: tuple[Job, BuildResult], run: runs.Builds, bases: Mapping[str, Found], kept: KeptByDigest
) -> BuildResult:
    job, result = pair
    if not result.ok or not job.staged or (job.skip and not job.in_registry):
        return result
    name = job.planned.image.name
    layers = platform_check.base_layers(job.planned.roots, bases)
    try:
        image = job.planned.image
        digest = result.image_digest or job.manifest  # what the build uploaded, or what was there
        checked = platform_check.check(
            run.registry, job.staged, image, base_layers=layers, kept=kept, digest=digest
        )
    except (OSError, ValueError) as e:
        detail = f"could not read {job.staged} back to check what it holds: {e}"
        return result._replace(status=Status.FAILED, detail=detail, failure=Failure.REGISTRY)
    for layer in checked.unread:
        run.events.notice(
            f"{name}: layer {layer[:19]} is compressed in a way mab-hook cannot read (zstd?): "
            "its programs were not checked"
        )
    if not checked.findings:
        return result
    first, more = checked.findings[0], len(checked.findings) - 1
    detail = f"not the platform it claims: {first}" + (f" (and {more} more)" if more else "")
    return result._replace(
        status=Status.FAILED,
        detail=detail,
        failure=Failure.PLATFORM,
        tail=tuple(str(f) for f in checked.findings[: process.TAIL_LINES]),
    )


def _finish(built: Sequence[Built], run: runs.Builds, *, publishing: bool) -> list[BuildResult]:
    """Everything built: publish what is pushed (every commit's images at once; with
    `publishing`, else it stays staged), and record what is built without pushing."""
    pushed = [
        (job, r)
        for plan, jobs, results in built
        if plan.config.push and publishing
        for job, r in zip(jobs, results, strict=True)
    ]
    published = iter(
        publish([j for j, _ in pushed], [r for _, r in pushed], run.registry, run.events, run.ledger)
    )
    found: list[BuildResult] = []
    for plan, jobs, results in built:
        if plan.config.push:
            found += [next(published) for _job in jobs] if publishing else results
            continue
        for job, result in zip(jobs, results, strict=True):
            if result.status is Status.BUILT:
                entry = bakefile.entry_name(job.planned.image.name)
                run.state.record(entry, job.planned.input_digest, {"commit": plan.commit.sha})
        found += results
    return found


def digest_reference(plan: Plan, planned: PlannedImage) -> str:
    """The reference an image built from its inputs is pushed under, out of sight of its
    public tags until it is published."""
    return input_digest.staged(plan.config, planned.image, planned.input_digest, planned.one_platform)


def decide_all(plan: Plan, state: State, registry: Registry, known: Callable[[str], bool]) -> list[Job]:
    """Every affected image's fate, the registry asked about all of them at once. `known`:
    whether a commit id is one of the repository's."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(lambda p: decide(p, plan, state, registry, known), plan.affected))


def decide(
    planned: PlannedImage, plan: Plan, state: State, registry: Registry, known: Callable[[str], bool]
) -> Job:
    """Build it, or skip it: uploaded before (the registry has its digest tag, and what it holds
    is labelled as built from these inputs, from a commit of ours), or built before."""
    image, value = planned.image, planned.input_digest
    if plan.config.push:
        staged = digest_reference(plan, planned)
        proof = registry.proof(staged, value, known)
        if proof.trusted:
            return Job(
                planned,
                f"already in the registry (inputs {value[:12]})",
                staged,
                in_registry=True,
                manifest=proof.manifest,
            )
        return Job(planned, staged=staged, distrusted=proof.detail if proof.found else "")
    if state.built(bakefile.entry_name(image.name), value):
        return Job(planned, f"built before from the same inputs (digest {value[:12]})")
    return Job(planned)


def build_jobs(
    jobs: Sequence[Job], step: Step, limit: int, ledger: runs.Ledger | None = None
) -> list[BuildResult]:
    """The images of one commit: all in one bake invocation, as `docker buildx bake` would
    build them; but where a build may be stopped by a timeout, each in one of its own, so that
    stopping it stops nothing else."""
    if step.timeout is None and not any(job.planned.image.timeout for job in jobs):
        return build_together(jobs, step, ledger)
    return build_each(jobs, step, limit, ledger)


def build_together(jobs: Sequence[Job], step: Step, ledger: runs.Ledger | None = None) -> list[BuildResult]:
    events = step.events
    results = {job.planned.image.name: r for job in jobs if (r := _immediate(job, {}, events)) is not None}
    todo = [job for job in jobs if job.planned.image.name not in results]
    for job in todo:
        image = job.planned.image
        events.progress(
            f"{image.name}: building for {', '.join(image.platforms)} "
            f"(inputs {job.planned.input_digest[:12]})"
        )
    if todo:
        watch = buildx.Watch(events.build_line, events.step, partial(_exported, step))
        wanted = [buildx.Wanted(job.planned, job.staged or None) for job in todo]
        try:
            built = buildx.build_together(wanted, step.bake_file, step.bx, step.logs, watch)
        finally:
            for job in todo:
                events.done(job.planned.image.name)
        for result in built:
            _ended(events, result)
            results[result.name] = result
            if ledger is not None:
                ledger.add(result.published)
    return [results[job.planned.image.name] for job in jobs]


def _exported(step: Step, image: str) -> None:
    step.events.done(image)
    step.uploaded(image)


def build_each(
    jobs: Sequence[Job], step: Step, limit: int, ledger: runs.Ledger | None = None
) -> list[BuildResult]:
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
                    _ended_builds(running, results, step, ledger)
        except BaseException:
            step.bx.group.terminate_all()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return [results[job.planned.image.name] for job in jobs]


def _ended_builds(
    running: dict[concurrent.futures.Future[BuildResult], str],
    results: dict[str, BuildResult],
    step: Step,
    ledger: runs.Ledger | None,
) -> None:
    """Waits for a build of those running to end; what ended is taken out and its result kept."""
    done: set[concurrent.futures.Future[BuildResult]] = set()
    while not done:  # in short spells: a signal handed to another thread is acted on here
        done, _ = concurrent.futures.wait(
            running, timeout=engine_builds.WAKE, return_when=concurrent.futures.FIRST_COMPLETED
        )
    for future in done:
        result = future.result()
        results[running.pop(future)] = result
        if result.ok:
            step.uploaded(result.name)
        if ledger is not None:
            ledger.add(result.published)


def _immediate(job: Job, results: Mapping[str, BuildResult], events: runs.Events) -> BuildResult | None:
    """The result of a job that needs no build: skipped, or blocked by a base that failed."""
    planned = job.planned
    name = planned.image.name
    broken = [b.name for b in planned.bases if b.name in results and not results[b.name].ok]
    if broken:
        events.progress(f"{name}: not built, its base image {broken[0]} did not build")
        return BuildResult(
            name,
            Status.NOT_BUILT,
            0.0,
            f"base image {broken[0]} did not build",
            None,
            platforms=planned.image.platforms,
            input_digest=planned.input_digest,
            failure=Failure.BASE,
        )
    if job.skip:
        events.progress(f"{name}: skipped, {job.skip}")
        return BuildResult(
            name,
            Status.SKIPPED,
            0.0,
            job.skip,
            None,
            platforms=planned.image.platforms,
            input_digest=planned.input_digest,
        )
    return None


def _build(job: Job, step: Step) -> BuildResult:
    image, events = job.planned.image, step.events
    events.progress(
        f"{image.name}: building for {', '.join(image.platforms)} (inputs {job.planned.input_digest[:12]})"
    )
    seen: set[str] = set()

    def on_line(line: str) -> None:
        events.build_line(line)
        started = buildlog.step(line)
        if started is not None and started.vertex not in seen:
            seen.add(started.vertex)
            events.step(image.name, started.platform, started.what[:100])

    try:
        timeout = step.timeout or image.timeout
        result = buildx.build_one(
            job.planned,
            step.bake_file,
            step.bx,
            step.logs,
            on_line=on_line,
            timeout=timeout,
            push_ref=job.staged or None,
        )
    finally:
        events.done(image.name)
    _ended(events, result)
    return result


def _ended(events: runs.Events, result: BuildResult) -> None:
    detail = f", {result.detail}" if result.detail else ""
    events.progress(f"{result.name}: {result.status}{detail} ({result.seconds:.1f} s)")
    if result.status in (Status.FAILED, Status.TIMED_OUT):
        events.failed(result.name, result.tail)


def publish(
    jobs: Sequence[Job],
    results: Sequence[BuildResult],
    registry: Registry,
    events: runs.Events,
    ledger: runs.Ledger,
) -> list[BuildResult]:
    """Put every image's public tags on the manifest uploaded under its digest tag: first the
    tags that name a commit (`{sha}`) of every image, then, only once all of those landed, the
    tags that move (`latest`, a branch's), so that a refusal or a ^C leaves no moving tag on
    what the others do not have. ^C stops between requests; what landed is what the registry
    answered (in `ledger`), and pushing again puts the rest, building nothing."""
    to = _Tagging(registry, events, ledger, threading.Event(), _Requests())
    done = list(results)
    for moving in (False, True):
        wanted = [
            (i, [t for t in jobs[i].planned.tags if (t in jobs[i].planned.moving) == moving])
            for i in range(len(jobs))
        ]
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            futures: dict[int, concurrent.futures.Future[BuildResult]] = {}
            try:
                for i, tags in wanted:
                    if tags and done[i].status is not Status.FAILED:
                        futures[i] = pool.submit(_tag, jobs[i], done[i], tags, to)
                for i, future in futures.items():
                    done[i] = future.result()
            except KeyboardInterrupt:  # wherever it lands, a thread's start included
                to.stop.set()
                to.requests.wait_idle()
                raise
        if any(r.status is Status.FAILED for r in done):
            return [_untagged(job, r) for job, r in zip(jobs, done, strict=True)]
    return [_tagged(job, r) for job, r in zip(jobs, done, strict=True)]


class _Requests:
    """The tag requests under way. On ^C (or SIGTERM, SIGHUP) no further one starts and those
    under way end (milliseconds; a second ^C does not cut them short), so that what reached the
    registry is in the ledger before the interruption goes on."""

    def __init__(self) -> None:
        self._idle = threading.Condition()
        self._count = 0

    @contextlib.contextmanager
    def one(self) -> Iterator[None]:
        with self._idle:
            self._count += 1
        try:
            yield
        finally:
            with self._idle:
                self._count -= 1
                self._idle.notify_all()

    def wait_idle(self) -> None:
        while True:
            with contextlib.suppress(KeyboardInterrupt), self._idle:
                self._idle.wait_for(lambda: self._count == 0)
                return


class _Tagging(NamedTuple):
    registry: Registry
    events: runs.Events
    ledger: runs.Ledger
    stop: threading.Event  # set: no further tag is put
    requests: _Requests


def _tag(job: Job, result: BuildResult, tags: Sequence[str], to: _Tagging) -> BuildResult:
    to.events.progress(f"{job.planned.image.name}: tagging {', '.join(tags)}")
    with to.requests.one():  # counted before the stop is looked at: see `_Requests`
        tagged = to.registry.tag(pinned(job.staged, result.image_digest or job.manifest), tags, to.stop)
        to.ledger.add(tagged.published)
    published = tuple(
        dict.fromkeys((*result.published, *((job.staged,) if job.in_registry else ()), *tagged.published))
    )
    if tagged.ok:
        return result._replace(published=published)
    left = [tag for tag in tags if tag not in tagged.published]
    detail = f"tagging in the registry failed: {tagged.detail}; not tagged yet: {', '.join(left)}"
    return result._replace(status=Status.FAILED, detail=detail, failure=Failure.REGISTRY, published=published)


def pinned(staged: str, digest: str) -> str:
    """What a public tag is put on: the manifest the check judged (by its digest, which a
    staging tag moved meanwhile does not change), or, when no digest is known, the staging tag."""
    return f"{references.parse(staged).repository}@{digest}" if digest else staged


def _tagged(job: Job, result: BuildResult) -> BuildResult:
    """An image the registry had stays "skipped": nothing was built or uploaded."""
    return result._replace(status=Status.SKIPPED if job.in_registry else Status.PUSHED)


def _untagged(job: Job, result: BuildResult) -> BuildResult:
    """After a refusal: an image whose own tags all landed still misses its moving ones."""
    if result.status is Status.FAILED:
        return result
    left = [tag for tag in job.planned.tags if tag not in result.published]
    if not left:
        return _tagged(job, result)
    detail = f"not tagged yet: {', '.join(left)} (another image's tags failed; push again to put them)"
    return result._replace(status=Status.FAILED, detail=detail, failure=Failure.REGISTRY)


def oci_labels(plan: Plan, repo: git.Repo, value: str) -> dict[str, str]:
    labels = {
        REVISION_LABEL: plan.commit.sha,
        "org.opencontainers.image.created": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        ),
        INPUT_DIGEST_LABEL: value,
    }
    source = source_url(repo)
    if source is not None:
        labels["org.opencontainers.image.source"] = source
    return labels


def source_url(repo: git.Repo) -> str | None:
    """Where the source is published: the first remote's URL, credentials removed. A
    repository without a remote publishes nothing (not the path of someone's disk)."""
    for remote in repo.remotes:
        for url in remote.urls:
            return redact(url)
    return None
