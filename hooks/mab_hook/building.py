"""The build step every command that builds shares (the gate, `build`, `verify --build-missing`):
readiness asked once -> the registry decides what is built -> builds -> the report; then,
under a push, the hand-over to the publisher."""

from __future__ import annotations

import concurrent.futures
import os
import platform
import sys
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import git

from mab_hook import (
    __version__,
    changes,
    grants,
    input_digest,
    matrix,
    output,
    process,
    progress,
    state,
)
from mab_hook.errors import EXIT_FAIL, EXIT_OK, FatalError
from mab_hook.output import Printer
from mab_hook.plan import Plan, PlannedImage
from mab_hook.results import BuildResult, Failure

if TYPE_CHECKING:
    from mab_hook import coverage
    from mab_hook.coverage import Coverage
    from mab_hook.readiness import Verdict
    from mab_hook.registry import Insecure, Registry
    from mab_hook.slow_steps import Slow

SILENCE = "mab-hook.silence"  # git config: readiness warnings (by code) the gate no longer shows
ADVICE = 3  # slow emulated steps said after a build, slowest first (`mab-hook report` has them all)


def build(
    repo: git.Repo,
    plans: Sequence[Plan],
    env: Mapping[str, str],
    printer: Printer,
    *,
    json: bool,
    timeout: float | None,
    publishing: bool = True,
    remote: str | None = None,
) -> int:
    """Build what the plans affect and report it (`json`: the report as JSON on stdout;
    `timeout`: any image's build, over the configured one). `remote`: a pre-push gate's; what
    built waits (staged) for the remote to accept the push.

    Readiness is asked first, once: the registry gateway is made from what it learnt (the
    engine's insecure registries; the builder), then the registry decides what is built, and
    only when something really is does the verdict stop the push (a push of built content
    never waits on the host)."""
    from mab_hook import coverage, pipeline, readiness, routing, runs  # noqa: PLC0415 - only when something is to be built
    from mab_hook.registry import Registry  # noqa: PLC0415 - the same

    host = readiness.local_host(env, platform.machine(), readiness.probes_file(state.root(repo)))
    remember = (readiness.ready_file(state.root(repo)), readiness.fingerprint(env, host.binfmt_root))
    granted = grants.read(Path(repo.working_tree_dir or repo.git_dir), env)
    verdict, routes = routing.settle(
        plans, lambda asked: readiness.ask(host, asked, remember), granted.engines
    )
    builder = plans[0].config.builder if plans else None
    registry = Registry(env, insecure=verdict.insecure, builder=builder)
    known = coverage.Known.of(state.root(repo))
    lookup = coverage.local_sources(env, known, partial(readiness.docker_hub_mirrors, host.run, builder))
    quiet = silenced(Path(repo.working_tree_dir or repo.git_dir), env)
    with progress.progress_for(printer, env) as shown:
        events = runs.Events(
            progress=shown.message,
            build_line=printer.build_line,
            notice=printer.info,
            step=shown.step,
            done=shown.done,
            failed=shown.failed,
        )
        with runs.session(
            repo, plans, env, events, registry=registry, timeout=timeout, granted=granted
        ) as run:
            decided = pipeline.decisions(repo, plans, run)
            bases = coverage.Coverage(())
            if decided.building:
                try:
                    bases = ready_to_build(
                        decided.building,
                        verdict,
                        plans=plans,
                        registry=registry,
                        lookup=lookup,
                        printer=printer,
                        quiet=quiet,
                    )
                finally:  # what was learnt of the bases is kept, blocked or not
                    known.save()
            done = pipeline.build(repo, decided, run, bases.answers, publishing=publishing, routes=routes)
    code = finish(plans, done, printer, env, json=json, dry_run=False)
    if code == EXIT_OK and remote is not None:
        hand_over(repo, plans, remote, insecure=verdict.insecure, env=env, printer=printer)
    if any(r.failure is Failure.ENGINE for r in done):
        # The engine failed under a host found (or remembered) ready: ask again, and say so.
        readiness.forget(remember[0])
        try:
            again = routing.settle(plans, lambda asked: readiness.ask(host, asked), granted.engines)[0]
            enforce(again, printer, outcome="the builds above failed for it")
        except FatalError as e:
            printer.error(str(e))
    return code


def ready_to_build(
    building: Sequence[PlannedImage],
    verdict: Verdict,
    *,
    plans: Sequence[Plan],
    registry: Registry,
    lookup: coverage.Lookup,
    printer: Printer,
    quiet: frozenset[str],
) -> Coverage:
    """Before anything is built: the verdict (its warnings said, its failures stop the push),
    push rights on every repository written to, and every base having each platform built on
    it (asked of the registries while the rest is: neither waits)."""
    from mab_hook import coverage  # noqa: PLC0415 - only when something is to be built

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        bases = pool.submit(coverage.check, building, lookup)
        enforce(verdict, printer, silenced=quiet)
        refused = push_refusals(registry, plans, building)
        found = bases.result()
    if refused:
        raise FatalError(push_refused_text(refused))
    for ref, why in found.unchecked:
        printer.warn(coverage.unchecked_text(ref, why))
    if found.gaps:
        raise FatalError(coverage.blocked(found.gaps))
    return found


def push_refusals(registry: Registry, plans: Sequence[Plan], building: Sequence[PlannedImage]) -> list[str]:
    """The repositories this push writes to that the registry would not take a push into (a
    token service's scopes: pull but not push), each asked once, before anything is built: the
    staging repository of every image built, and the public ones of those it publishes."""
    names = {planned.image.name for planned in building}
    repositories: dict[str, None] = {}
    for plan in plans:
        for planned in (p for p in plan.affected if plan.config.push and p.image.name in names):
            repositories[plan.config.staging_repository(planned.image)] = None
            if planned.tags:
                repositories.update(dict.fromkeys(plan.config.references(planned.image)))
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        found = pool.map(registry.push_refused, repositories)
        return [why for why in found if why is not None]


def push_refused_text(refused: Sequence[str]) -> str:
    return (
        "the push is blocked before any build: " + "; ".join(refused) + ". Ask for push rights on "
        "each (a robot account's scopes), or `docker login` as an account that has them"
    )


def hand_over(
    repo: git.Repo,
    plans: Sequence[Plan],
    remote: str,
    *,
    insecure: Insecure | None,
    env: Mapping[str, str],
    printer: Printer,
) -> None:
    """Everything built and staged: the pushed refs that publish are written down, and the
    publisher started, to tag every image of their commits once the remote holds them.
    `insecure`: the engine's plain-HTTP registries; None when nothing was built, so readiness
    never asked the engine (the publisher asks it then)."""
    from mab_hook import pending, policy, publisher  # noqa: PLC0415 - only under a push that publishes

    refs = {
        ref.full: pending.PushedRef(ref.full, ref.pushed, plan.commit.sha, ref.default)
        for plan in plans
        if plan.config.push
        for ref in plan.commit.refs
        if ref.full and ref.pushed and policy.templates(plan.config, ref)
    }
    if not refs:
        return
    record = pending.new(remote, list(refs.values()), insecure)
    root = state.root(repo)
    pending.write(root, record)
    names = ", ".join(changes.ref_name(full) or full for full in refs)
    after = publisher.push_process(os.getpid(), env)
    if after is None:  # not run by git (a test, a wrapper): nothing to wait for
        printer.info(
            f"the public tags of {names} wait for {remote} to accept the push: once it has, run "
            "`mab-hook publish --pending`"
        )
        return
    publisher.start(root, record, Path(repo.working_tree_dir or repo.git_dir), env, after)
    printer.info(
        f"the public tags of {names} move once {remote} accepts the push (`mab-hook status` shows them)"
    )


def finish(
    plans: Sequence[Plan],
    done: Sequence[BuildResult],
    printer: Printer,
    env: Mapping[str, str] | None = None,
    *,
    json: bool,
    dry_run: bool,
) -> int:
    """The report: the CI matrix, the JSON (`dry_run`: the plan alone) and the summary."""
    ok = all(r.ok for r in done)
    slow = slow_steps_of(done)
    matrix.write_github_output(plans, env or {})
    if (env or {}).get("GITHUB_OUTPUT") and (why := matrix.too_big(plans)):
        printer.warn(why)
    if json:
        data = {"version": __version__, **output.plan_json(plans), "matrix": matrix.matrix(plans)}
        if not dry_run:
            data["results"] = output.results_json(done)
            data["slow_steps"] = [{**found._asdict(), "fix": found.advice} for found in slow]
        output.dump_json(data, sys.stdout)
    if done:
        printer.line(output.summary(done, printer))
        for found in slow[:ADVICE]:
            printer.info(found.said)
        if not ok:
            printer.error(blocked(done))
    return EXIT_OK if ok else EXIT_FAIL


def slow_steps_of(done: Sequence[BuildResult]) -> list[Slow]:
    """The emulated steps worth advice, slowest first; none without builds (a dry run)."""
    if not done:
        return []
    from mab_hook import slow_steps  # noqa: PLC0415 - only after builds

    return slow_steps.of_results(done)


def blocked(done: Sequence[BuildResult]) -> str:
    """Why the push is blocked, what reached the registry, and what to do about it."""
    public = [ref for r in done for ref in r.published if not input_digest.is_staging(ref)]
    staged = [ref for r in done for ref in r.published if input_digest.is_staging(ref)]
    what = f"these tags reached the registry: {', '.join(public)}" if public else "no tag was published"
    if staged:
        what += f" (uploaded to staging, which the next push reuses: {', '.join(staged)})"
    # An image not built because another failed follows from that failure: the advice is the other's.
    failures = {r.failure for r in done if not r.ok and r.failure is not Failure.BASE} or {Failure.BUILD}
    if failures == {Failure.PLATFORM}:
        advice = (
            "an image is not the platform it claims (see above): build each platform's programs for it (a "
            "`FROM --platform=$BUILDPLATFORM` stage must cross-compile: GOARCH=$TARGETARCH, say), or list "
            "the paths of programs it carries on purpose in its `foreign-binaries`; push again"
        )
    elif failures <= {Failure.REGISTRY}:
        advice = (
            "the registry failed (see above): check that it runs and that `docker login` works for it, "
            "then push again; what was built is reused"
        )
    elif Failure.REGISTRY in failures:
        advice = "fix the failed build(s) and the registry problem above, commit, and push again"
    else:
        advice = "fix the failed build(s) above, commit, and push again"
    return f"the push is blocked and {what}: {advice}"


def enforce(
    verdict: Verdict,
    printer: Printer,
    *,
    outcome: str = "nothing was built",
    silenced: frozenset[str] = frozenset(),
) -> None:
    """The verdict for what is about to be built: its warnings said briefly (`silenced`: the
    codes the pusher has heard enough of; `doctor` still shows them), and a host that cannot
    build stops the push before any build time is spent."""
    from mab_hook import readiness  # noqa: PLC0415 - only when something is to be built

    for check in verdict.checks(readiness.WARN):
        if check.code not in silenced:  # the gist; doctor has the rest
            gist = check.finding.rsplit("; ", 1)[-1]
            printer.warn(
                f"{check.name}: {gist} (`mab-hook doctor` says more; "
                f"`git config --add {SILENCE} {check.code}` stops this warning)"
            )
    failed = verdict.checks(readiness.FAIL)
    if failed:
        raise FatalError(
            f"this host cannot build what the push needs; {outcome}:\n"
            + output.checks_text(failed, printer)
            + "\nFix the above (`mab-hook doctor` shows every check, `mab-hook doctor --fix` applies "
            "the safe fixes), then push again."
        )


def silenced(repository: Path, env: Mapping[str, str]) -> frozenset[str]:
    """The readiness warnings the pusher silenced for the gate: `git config mab-hook.silence CODE`
    (any level; several values)."""
    done = process.run(
        ("git", "-C", str(repository), "config", "--get-all", SILENCE), env=env, check=False, timeout=30
    )
    return frozenset(done.stdout.split()) if done.returncode == 0 else frozenset()
