"""Driving `docker buildx bake`: one generated definition per pushed commit.

Each image is built by its own bake invocation of that definition, so that its log and its
result are its own; bases reach their dependants as named contexts (`target:<base>`), so a
dependant builds on the fresh base without pushing it first, and BuildKit's cache makes the
repeated base steps free. Pushing is another bake of the image with `--push`, run only once
everything built: it reuses the cache and only uploads.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from mab_hook import process
from mab_hook.config import is_external_context
from mab_hook.plan import Plan, PlannedImage

BUILT, PUSHED, SKIPPED, FAILED, TIMED_OUT, NOT_BUILT = (
    "built", "pushed", "skipped", "failed", "timed out", "not built")  # fmt: skip
_VERTEX_RE = re.compile(r"^#(\d+) \[(?:[^\]\s]+ )?([a-z0-9]+/[a-z0-9_]+(?:/v[0-9]+)?) ([^\]]*)\] ?(.*)$")
_ERROR_RE = re.compile(r"^#(\d+) ERROR: ")
PUSH_ATTEMPTS = 3


class Buildx(NamedTuple):
    """How to call buildx: the environment, the builder, and the children of this run."""

    env: Mapping[str, str]
    builder: str | None
    group: process.Group

    def bake(self, definition: Path, *args: str) -> tuple[str, ...]:
        builder = ("--builder", self.builder) if self.builder else ()
        return ("docker", "buildx", "bake", "--file", str(definition), "--progress=plain", *builder, *args)

    def imagetools(self, *args: str) -> tuple[str, ...]:
        builder = ("--builder", self.builder) if self.builder else ()
        return ("docker", "buildx", "imagetools", *args, *builder)


class BuildResult(NamedTuple):
    name: str
    status: str  # BUILT, PUSHED, SKIPPED, FAILED, TIMED_OUT or NOT_BUILT
    seconds: float
    detail: str  # one line: what failed, or why it was skipped or not built
    log: Path | None
    tail: tuple[str, ...] = ()
    platforms: tuple[str, ...] = ()
    digest: str = ""  # the input digest
    image_digest: str = ""  # the manifest (list) digest buildx reported

    @property
    def ok(self) -> bool:
        return self.status in (BUILT, PUSHED, SKIPPED)


Listener = Callable[[str], None]


def target_name(image_name: str) -> str:
    """Bake target names allow [a-zA-Z0-9_-] only; image names may hold '/' and '.'."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", image_name)


def definition(plan: Plan, checkout: Path, labels: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
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
            spec = _target(planned, checkout, platforms, planned.tags if own else (), contexts)
            spec["labels"] = dict(labels.get(planned.image.name, {}))
            targets[name] = spec
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
    if image.cache_from:
        spec["cache-from"] = list(image.cache_from)
    if image.cache_to:
        spec["cache-to"] = list(image.cache_to)
    return spec


def write_definition(plan: Plan, checkout: Path, path: Path, labels: Mapping[str, Mapping[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(definition(plan, checkout, labels), indent=2) + "\n")
    return path


def build_one(
    planned: PlannedImage,
    bake_file: Path,
    buildx: Buildx,
    logs: Path,
    *,
    on_line: Listener,
    timeout: float | None = None,
) -> BuildResult:
    """Build one image for all its platforms; its log is kept whatever happens."""
    name = planned.image.name
    log_path = logs / f"{target_name(name)}.log"
    metadata = logs / f"{target_name(name)}.metadata.json"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    metadata.unlink(missing_ok=True)
    started = time.monotonic()
    command = buildx.bake(bake_file, "--metadata-file", str(metadata), target_name(name))
    with log_path.open("w") as log:
        streamed = buildx.group.stream(command, env=buildx.env, log=log, on_line=on_line, timeout=timeout)
        if streamed.returncode != 0 and not streamed.timed_out and export_failed(log_path.read_text()):
            # The engine, not the Dockerfile, failed (seen: "failed to commit ... snapshot does
            # not exist" from moby 26.1's BuildKit); every step is cached, so once more is cheap.
            log.write("mab-hook: the engine failed while exporting the image; building it once more\n")
            streamed = buildx.group.stream(command, env=buildx.env, log=log, on_line=on_line, timeout=timeout)
    seconds = time.monotonic() - started
    text = log_path.read_text(errors="replace")
    result = BuildResult(name, BUILT, seconds, "", log_path, platforms=planned.image.platforms)
    if streamed.returncode == 0:
        return result._replace(image_digest=image_digest(metadata, target_name(name)))
    tail = tuple(process.tail_lines(text))
    if streamed.timed_out:
        detail = f"timed out after {timeout:g} s; the build was stopped"
        return result._replace(status=TIMED_OUT, detail=detail, tail=tail)
    if export_failed(text):
        detail = "the engine failed while exporting the image, twice; try `docker buildx prune` (build cache)"
        return result._replace(status=FAILED, detail=detail, tail=tail)
    platforms = failed_platforms(text)
    where = f" on {', '.join(platforms)}" if platforms else ""
    return result._replace(
        status=FAILED, detail=f"build failed{where} (exit {streamed.returncode})", tail=tail
    )


def image_digest(metadata: Path, target: str) -> str:
    """The pushed or exported manifest digest from buildx's --metadata-file, if it wrote one."""
    try:
        data = json.loads(metadata.read_text())
    except (OSError, ValueError):
        return ""
    entry = data.get(target, data) if isinstance(data, dict) else {}
    return str(entry.get("containerimage.digest", "")) if isinstance(entry, dict) else ""


def export_failed(log: str) -> bool:
    """Whether a build failed in exporting its result rather than in any of its steps."""
    names: dict[str, str] = {}
    for line in log.splitlines():
        if match := re.match(r"^#(\d+) (\[.*|exporting to .*)$", line):
            names.setdefault(match.group(1), match.group(2))
        elif (error := _ERROR_RE.match(line)) and names.get(error.group(1), "").startswith("exporting"):
            return True
    return False


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


def step(line: str) -> tuple[str, str, str] | None:
    """(vertex, platform, 'k/n INSTRUCTION') when a plain-progress line starts a build step."""
    match = _VERTEX_RE.match(line)
    if match is None or "internal" in match.group(3):
        return None
    return match.group(1), match.group(2), f"{match.group(3)} {match.group(4)}".strip()


def push_one(
    planned: PlannedImage, bake_file: Path, buildx: Buildx, logs: Path, digest_tag: str, *, on_line: Listener
) -> BuildResult:
    """Push one built image (from the cache: only uploads), then add its other tags and, last,
    the tag of its input digest, whose presence then means the image is wholly published."""
    name = planned.image.name
    log_path = logs / f"{target_name(name)}.push.log"
    metadata = logs / f"{target_name(name)}.push.metadata.json"
    started = time.monotonic()
    first, *others = planned.tags
    # One tag per export: the docker driver also pushes each tag through dockerd, and
    # distribution 2.8 answers 500 ("invalid checksum digest format") to reads racing those
    # writes; `imagetools create` adds tags registry-side without uploading again.
    target = target_name(name)
    commands = [
        buildx.bake(
            bake_file, "--push", "--metadata-file", str(metadata), "--set", f"{target}.tags={first}", target
        ),
        buildx.imagetools("create", *(arg for tag in (*others, digest_tag) for arg in ("--tag", tag)), first),
    ]
    with log_path.open("w") as log:
        for command in commands:
            code = _with_retries(command, buildx, log, on_line)
            if code != 0:
                tail = tuple(process.tail_lines(log_path.read_text(errors="replace")))
                return BuildResult(name, FAILED, time.monotonic() - started, f"push failed (exit {code})",
                                   log_path, tail, planned.image.platforms)  # fmt: skip
    return BuildResult(name, PUSHED, time.monotonic() - started, "", log_path, (), planned.image.platforms,
                       image_digest=image_digest(metadata, target_name(name)))  # fmt: skip


def retag(reference: str, tags: tuple[str, ...], buildx: Buildx, logs: Path, name: str) -> BuildResult:
    """Give an image that is already in the registry (under its input digest) its new tags."""
    log_path = logs / f"{target_name(name)}.push.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    command = buildx.imagetools("create", *(arg for tag in tags for arg in ("--tag", tag)), reference)
    with log_path.open("w") as log:
        code = _with_retries(command, buildx, log, lambda line: None)
    if code != 0:
        tail = tuple(process.tail_lines(log_path.read_text(errors="replace")))
        return BuildResult(
            name, FAILED, time.monotonic() - started, f"tagging failed (exit {code})", log_path, tail
        )
    return BuildResult(name, PUSHED, time.monotonic() - started, "", log_path)


def _with_retries(command: tuple[str, ...], buildx: Buildx, log: Any, on_line: Listener) -> int:
    """Pushing is idempotent, and registries fail transiently, so try again a few times."""
    code = 0
    for attempt in range(1, PUSH_ATTEMPTS + 1):
        if attempt > 1:
            log.write(f"mab-hook: failed (exit {code}); attempt {attempt} of {PUSH_ATTEMPTS}\n")
            time.sleep(attempt)
        code = buildx.group.stream(command, env=buildx.env, log=log, on_line=on_line).returncode
        if code == 0:
            break
    return code
