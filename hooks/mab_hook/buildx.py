"""Driving `docker buildx bake`: one generated definition per pushed commit.

Each image is built by its own bake invocation of that definition, in plan order, so that its
log and its result are its own; bases reach their dependants as named contexts
(`target:<base>`), so a dependant builds on the fresh base without pushing it first, and
BuildKit's cache makes the repeated base steps free. Pushing is a second bake over all targets
with `--push`, run only once everything built: it reuses the cache and only uploads.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, NamedTuple

from mab_hook import process
from mab_hook.config import is_external_context
from mab_hook.plan import Plan, PlannedImage

BUILT, PUSHED, FAILED, SKIPPED = "built", "pushed", "failed", "not built"
_VERTEX_RE = re.compile(r"^#(\d+) \[(?:[^\]\s]+ )?([a-z0-9]+/[a-z0-9_]+(?:/v[0-9]+)?) [^\]]*\]")
_ERROR_RE = re.compile(r"^#(\d+) ERROR: ")
PUSH_ATTEMPTS = 3


class Buildx(NamedTuple):
    """How to call buildx: the environment and the builder to use."""

    env: Mapping[str, str]
    builder: str | None = None
    progress: str = "plain"

    def bake(self, definition: Path, *args: str) -> tuple[str, ...]:
        builder = ("--builder", self.builder) if self.builder else ()
        return (
            "docker",
            "buildx",
            "bake",
            "--file",
            str(definition),
            f"--progress={self.progress}",
            *builder,
            *args,
        )


class BuildResult(NamedTuple):
    name: str
    status: str  # BUILT, PUSHED, FAILED or SKIPPED
    seconds: float
    detail: str  # one line: what failed, or why it was not built
    log: Path | None
    tail: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status in (BUILT, PUSHED)


Listener = Callable[[str], None]


def target_name(image_name: str) -> str:
    """Bake target names allow [a-zA-Z0-9_-] only; image names may hold '/' and '.'."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", image_name)


def definition(plan: Plan, checkout: Path) -> dict[str, Any]:
    """The bake definition of a plan, with paths inside the checkout of its commit."""
    by_name = {planned.image.name: planned for planned in (*plan.context_only, *plan.affected)}
    targets: dict[str, dict[str, Any]] = {}

    def add(planned: PlannedImage, platforms: tuple[str, ...]) -> str:
        # buildx refuses a `target:` context defined for other platforms than its user, so a
        # dependant with its own platform list gets an untagged copy of its base for them.
        own = platforms == planned.image.platforms
        name = target_name(planned.image.name) + ("" if own else "--" + target_name("-".join(platforms)))
        if name not in targets:
            contexts = {base.key: f"target:{add(by_name[base.name], platforms)}" for base in planned.bases}
            targets[name] = _target(planned, checkout, platforms, planned.tags if own else (), contexts)
        return name

    default = [add(planned, planned.image.platforms) for planned in plan.affected]
    return {"group": {"default": {"targets": default}}, "target": targets}


def _target(
    planned: PlannedImage,
    checkout: Path,
    platforms: tuple[str, ...],
    tags: tuple[str, ...],
    contexts: Mapping[str, str],
) -> dict[str, Any]:
    image = planned.image
    spec: dict[str, Any] = {
        "context": str(checkout / image.context),
        "dockerfile": str(checkout / image.dockerfile),
        "platforms": list(platforms),
        "tags": list(tags),
    }
    if image.build_args:
        spec["args"] = dict(image.build_args)
    if image.target:
        spec["target"] = image.target
    named = {
        name: value if is_external_context(value) else str(checkout / value) for name, value in image.contexts
    }
    if named or contexts:
        spec["contexts"] = {**named, **contexts}
    return spec


def write_definition(plan: Plan, checkout: Path, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(definition(plan, checkout), indent=2) + "\n")
    return path


def build_all(
    plan: Plan, bake_file: Path, buildx: Buildx, logs: Path, *, on_start: Listener, on_line: Listener
) -> tuple[BuildResult, ...]:
    """Build every affected image in order; a failed base leaves its dependants unbuilt."""
    results: dict[str, BuildResult] = {}
    for planned in plan.affected:
        name = planned.image.name
        # A base missing from the results is unaffected: built as a context, not on its own.
        broken = [base.name for base in planned.bases if base.name in results and not results[base.name].ok]
        if broken:
            results[name] = BuildResult(name, SKIPPED, 0.0, f"base image {broken[0]} did not build", None)
            continue
        on_start(name)
        results[name] = build_one(planned, bake_file, buildx, logs / f"{target_name(name)}.log", on_line)
    return tuple(results.values())


def build_one(
    planned: PlannedImage, bake_file: Path, buildx: Buildx, log_path: Path, on_line: Listener
) -> BuildResult:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with log_path.open("w") as log:
        code = process.stream(
            buildx.bake(bake_file, target_name(planned.image.name)), env=buildx.env, log=log, on_line=on_line
        )
    seconds = time.monotonic() - started
    text = log_path.read_text(errors="replace")
    if code == 0:
        return BuildResult(planned.image.name, BUILT, seconds, "", log_path)
    platforms = failed_platforms(text)
    where = f" on {', '.join(platforms)}" if platforms else ""
    return BuildResult(
        planned.image.name,
        FAILED,
        seconds,
        f"build failed{where} (exit {code})",
        log_path,
        tuple(process.tail_lines(text)),
    )


def failed_platforms(log: str) -> tuple[str, ...]:
    """The platforms whose steps errored, read from buildx's plain progress."""
    vertex_platform: dict[str, str] = {}
    failed: list[str] = []
    for line in log.splitlines():
        if match := _VERTEX_RE.match(line):
            vertex_platform[match.group(1)] = match.group(2)
        elif (error := _ERROR_RE.match(line)) and error.group(1) in vertex_platform:
            platform = vertex_platform[error.group(1)]
            if platform not in failed:
                failed.append(platform)
    return tuple(failed)


def push_all(
    plans: Sequence[tuple[Plan, Path]], env: Mapping[str, str], logs: Path, on_line: Listener
) -> BuildResult:
    """Push every built image; called only when all of them built. Reuses the build cache."""
    log_path = logs / "push.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    code = 0
    with log_path.open("w") as log:
        for command in push_commands(plans, env):
            code = _push_with_retries(command, env, log, on_line)
            if code != 0:
                break
    text = log_path.read_text(errors="replace")
    status, detail = (PUSHED, "") if code == 0 else (FAILED, f"push failed (exit {code})")
    return BuildResult(
        "push",
        status,
        time.monotonic() - started,
        detail,
        log_path,
        tuple(process.tail_lines(text)) if code else (),
    )


def _push_with_retries(
    command: tuple[str, ...], env: Mapping[str, str], log: IO[str], on_line: Listener
) -> int:
    """Pushing is idempotent, and registries fail transiently (seen here: distribution 2.8
    answering 500 while dockerd PUTs one tag for several manifests at once), so try again."""
    code = 0
    for attempt in range(1, PUSH_ATTEMPTS + 1):
        if attempt > 1:
            log.write(f"mab-hook: push failed (exit {code}); attempt {attempt} of {PUSH_ATTEMPTS}\n")
            time.sleep(attempt)
        code = process.stream(command, env=env, log=log, on_line=on_line)
        if code == 0:
            break
    return code


def push_commands(plans: Sequence[tuple[Plan, Path]], env: Mapping[str, str]) -> list[tuple[str, ...]]:
    """One bake per commit that pushes each image under its first tag, then registry-side tags.

    Fewer concurrent writes to one repository: the docker driver pushes every tag through
    dockerd as well as through BuildKit, and distribution 2.8 answers 500 ("invalid checksum
    digest format") to reads racing those writes. `imagetools create` adds the other tags to
    the pushed manifest list without uploading anything again.
    """
    commands: list[tuple[str, ...]] = []
    retags: list[tuple[str, ...]] = []
    for plan, bake_file in plans:
        buildx = Buildx(env, plan.config.builder)
        first_tags = [f"{target_name(p.image.name)}.tags={p.tags[0]}" for p in plan.affected]
        targets = [target_name(p.image.name) for p in plan.affected]
        commands.append(buildx.bake(bake_file, "--push", *_sets(first_tags), *targets))
        builder = ("--builder", plan.config.builder) if plan.config.builder else ()
        retags += [
            ("docker", "buildx", "imagetools", "create", *builder, "--tag", tag, p.tags[0])
            for p in plan.affected
            for tag in p.tags[1:]
        ]
    return commands + retags


def _sets(assignments: Sequence[str]) -> tuple[str, ...]:
    return tuple(arg for assignment in assignments for arg in ("--set", assignment))
