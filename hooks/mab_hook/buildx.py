"""Driving `docker buildx bake`: one generated definition per pushed commit.

Each image is built by its own bake invocation of that definition, so that its log and its
result are its own; bases reach their dependants as named contexts (`target:<base>`), so a
dependant builds on the fresh base without pushing it first, and BuildKit's cache makes the
repeated base steps free. With `push`, the same invocation uploads the image under its
input-digest tag, which nobody reads as a public tag: the public tags are put on it later, by
the registry gateway, only once every image of the push built.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from mab_hook import process, specs, state
from mab_hook.config import LOCAL_PATH_KEYS, OCI_LAYOUT, is_external_context
from mab_hook.plan import Plan, PlannedImage
from mab_hook.rawprogress import Renderer
from mab_hook.results import BuildResult, Failure, Status

# "#12 [api linux/arm64 build 2/3] RUN make": vertex, then the bake entry, platform and stage
# (each there or not) and the step, then what runs.
_VERTEX_RE = re.compile(r"^#(\d+) \[([^\]]*)\] ?(.*)$")
_PLATFORM_RE = re.compile(r"^[a-z][a-z0-9]*/[a-z0-9_]+(?:/v[0-9]+)?$")
_STEP_RE = re.compile(r"^\d+/\d+$")
_ERROR_RE = re.compile(r"^#(\d+) ERROR: (.*)$")
# What BuildKit says when the registry, not the build, failed an upload.
_REGISTRY_ERROR_RE = re.compile(
    r"failed to push|unexpected status|401 Unauthorized|403 Forbidden|denied|unauthorized|"
    r"connection refused|no such host|i/o timeout|server gave HTTP response|failed to do request|"
    r"failed to authorize|x509:|tls:",
    re.IGNORECASE,
)

Listener = Callable[[str], None]
# Attempts after the first, by what failed: the engine's export once, a registry's upload twice.
RETRIES_OF = {Failure.ENGINE: 1, Failure.REGISTRY: 2}
RETRIES = max(RETRIES_OF.values())


class Buildx(NamedTuple):
    """How to call buildx: the environment, the builder, and the children of this run."""

    env: Mapping[str, str]
    builder: str | None
    group: process.Group

    def bake(self, definition: Path, *args: str) -> tuple[str, ...]:
        builder = ("--builder", self.builder) if self.builder else ()
        # rawjson: every step the moment it starts (rendered as plain progress for the log)
        return ("docker", "buildx", "bake", "--file", str(definition), "--progress=rawjson", *builder, *args)


_FOR, _AND = "_FOR_", "_AND_"  # a base's copy for other platforms: `base_FOR_linux_amd64_AND_linux_arm64`


def entry_name(image_name: str) -> str:
    """The bake target of an image. Bake allows [A-Za-z0-9_-] only, image names hold '.' and
    '/' too; image names have no capitals, so capitals spell those out and no two images
    share an entry: `team.api` is `team_DOT_api`, `team/api` `team_SLASH_api`."""
    return image_name.replace(".", "_DOT_").replace("/", "_SLASH_")


class Paths(NamedTuple):
    checkout: Path  # the pushed commit, as the builds read it
    repository: Path  # the repository itself (its work tree), where `type=local` caches live


def definition(
    plan: Plan, paths: Paths, labels: Mapping[str, Mapping[str, str]], push_refs: Mapping[str, str]
) -> dict[str, Any]:
    """The bake definition of a plan, with paths inside the checkout of its commit. An image in
    `push_refs` is tagged with that reference only (and pushed there); the others with their
    own tags (and kept in the engine's image store)."""
    by_name = {planned.image.name: planned for planned in (*plan.context_only, *plan.affected)}
    entries: dict[str, dict[str, Any]] = {}

    def add(planned: PlannedImage, platforms: tuple[str, ...]) -> str:
        # buildx refuses a `target:` context defined for other platforms than its user, so a
        # dependant with its own platform list gets an untagged copy of its base for them.
        own = platforms == planned.image.platforms
        name = entry_name(planned.image.name) + ("" if own else _FOR + _AND.join(platforms).replace("/", "_"))
        if name not in entries:
            contexts = {base.key: f"target:{add(by_name[base.name], platforms)}" for base in planned.bases}
            push_ref = push_refs.get(planned.image.name)
            tags = ((push_ref,) if push_ref else planned.tags) if own else ()
            spec = _entry(planned, paths, platforms, tags, contexts)
            spec["labels"] = dict(labels.get(planned.image.name, {}))
            entries[name] = spec
        return name

    default = [add(planned, planned.image.platforms) for planned in plan.affected]
    return {"group": {"default": {"targets": default}}, "target": entries}


def _entry(
    planned: PlannedImage,
    paths: Paths,
    platforms: tuple[str, ...],
    tags: tuple[str, ...],
    contexts: Mapping[str, str],
) -> dict[str, Any]:
    image, checkout = planned.image, paths.checkout
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
    named = {name: _context(value, checkout) for name, value in image.contexts}
    if named or contexts:
        spec["contexts"] = {**named, **contexts}
    if image.cache_from:
        spec["cache-from"] = [_cache(entry, paths.repository) for entry in image.cache_from]
    if image.cache_to:
        spec["cache-to"] = [_cache(entry, paths.repository) for entry in image.cache_to]
    if image.secrets:
        spec["secret"] = list(image.secrets)
    return spec


def _context(value: str, checkout: Path) -> str:
    if value.startswith(OCI_LAYOUT):  # a layout of the commit: the checkout's copy of it
        return OCI_LAYOUT + str(checkout / value[len(OCI_LAYOUT) :])
    return value if is_external_context(value) else str(checkout / value)


def _cache(entry: str, repository: Path) -> str:
    """A `type=local` cache's paths (checked to be inside the repository) made absolute there."""
    options = specs.parse(entry)
    if options.get("type") != "local":
        return entry
    for key in LOCAL_PATH_KEYS:
        if key in options:
            options[key] = str(repository / options[key])
    return specs.format(options)


def write_definition(path: Path, data: Mapping[str, Any]) -> Path:
    state.write_private(path, (json.dumps(data, indent=2) + "\n").encode())
    return path


def build_one(
    planned: PlannedImage,
    bake_file: Path,
    buildx: Buildx,
    logs: Path,
    *,
    on_line: Listener,
    timeout: float | None = None,
    push_ref: str | None = None,
) -> BuildResult:
    """Build one image for all its platforms (and with `push_ref`, upload it there); its log
    is kept whatever happens."""
    name = planned.image.name
    entry = entry_name(name)
    log_path = logs / f"{entry}.log"
    metadata = logs / f"{entry}.metadata.json"
    metadata.unlink(missing_ok=True)
    started = time.monotonic()
    command = buildx.bake(
        bake_file, "--metadata-file", str(metadata), *(("--push",) if push_ref else ()), entry
    )
    with state.open_private(log_path) as log:
        streamed = buildx.group.stream(command, env=buildx.env, log=log, on_line=on_line, timeout=timeout,
                                       render=Renderer().feed)  # fmt: skip
        attempt_log = log_path.read_text(errors="replace")
        for attempt in range(1, RETRIES + 1):
            kind = failure(attempt_log) if streamed.returncode else Failure.NONE
            if streamed.timed_out or attempt > RETRIES_OF.get(kind, 0):
                break
            # Every step is cached by now, so once more is cheap. Seen: "failed to commit ...
            # snapshot does not exist" from moby 26.1's BuildKit; distribution 2.8 answering 500
            # to reads racing the docker driver's second push of the same manifest.
            log.write(f"mab-hook: the {kind.value} failed while exporting the image; attempt {attempt + 1}\n")
            log.flush()
            time.sleep(attempt if kind is Failure.REGISTRY else 0)
            offset = log_path.stat().st_size
            streamed = buildx.group.stream(command, env=buildx.env, log=log, on_line=on_line, timeout=timeout,
                                           render=Renderer().feed)  # fmt: skip
            # Each attempt numbers its vertices afresh: read only its own part of the log.
            attempt_log = log_path.read_bytes()[offset:].decode("utf-8", errors="replace")
    seconds = time.monotonic() - started
    result = BuildResult(name, Status.BUILT, seconds, "", log_path, platforms=planned.image.platforms,
                         input_digest=planned.input_digest)  # fmt: skip
    if streamed.returncode == 0:
        published = (push_ref,) if push_ref else ()
        return result._replace(image_digest=image_digest(metadata, entry), published=published)
    return _failed(result, streamed, attempt_log, timeout)


def _failed(result: BuildResult, streamed: process.Streamed, log: str, timeout: float | None) -> BuildResult:
    failed = result._replace(status=Status.FAILED, tail=streamed.tail)
    if streamed.timed_out:
        detail = f"timed out after {timeout:g} s; the build was stopped"
        return failed._replace(status=Status.TIMED_OUT, detail=detail, failure=Failure.BUILD)
    kind = failure(log)
    if kind is Failure.ENGINE:
        detail = "the engine failed while exporting the image, twice; try `docker buildx prune` (build cache)"
        return failed._replace(detail=detail, failure=kind)
    if kind is Failure.REGISTRY:
        return failed._replace(
            detail=f"the upload to the registry failed: {registry_error(log)}", failure=kind
        )
    platforms = failed_platforms(log)
    where = f" on {', '.join(platforms)}" if platforms else ""
    return failed._replace(detail=f"build failed{where} (exit {streamed.returncode})", failure=Failure.BUILD)


def image_digest(metadata: Path, entry: str) -> str:
    """The pushed or exported manifest digest from buildx's --metadata-file, if it wrote one."""
    try:
        data = json.loads(metadata.read_text())
    except (OSError, ValueError):
        return ""
    found = data.get(entry, data) if isinstance(data, dict) else {}
    return str(found.get("containerimage.digest", "")) if isinstance(found, dict) else ""


def failure(log: str) -> Failure:
    """What failed a build, from its plain progress: a step (BUILD), the export of the result
    (ENGINE), or the upload of it (REGISTRY)."""
    names: dict[str, str] = {}
    found = Failure.BUILD
    for line in log.splitlines():
        if match := re.match(r"^#(\d+) (\[.*|exporting to .*|pushing .*)$", line):
            # "[api] exporting to image", "[api] pushing ... with docker": bake names its entry
            names.setdefault(
                match.group(1), re.sub(r"^\[[A-Za-z0-9_-]+\] (?=exporting |pushing )", "", match.group(2))
            )
        elif error := _ERROR_RE.match(line):
            vertex = names.get(error.group(1), "")
            if vertex.startswith(("exporting", "pushing")):
                found = Failure.REGISTRY if _REGISTRY_ERROR_RE.search(error.group(2)) else Failure.ENGINE
            elif vertex:
                return Failure.BUILD
    return found


def registry_error(log: str) -> str:
    """The registry's own words: the step's error line says more than buildx's summary after it."""
    lines = [e.group(2) for line in log.splitlines() if (e := _ERROR_RE.match(line))]
    lines += [line.removeprefix("ERROR: ") for line in log.splitlines() if line.startswith("ERROR: ")]
    errors = [line for line in lines if _REGISTRY_ERROR_RE.search(line)]
    return (errors[0] if errors else (lines[-1] if lines else "see the log"))[:300]


def failed_platforms(log: str) -> tuple[str, ...]:
    """The platforms whose steps errored, read from buildx's plain progress."""
    vertex_platform: dict[str, str] = {}
    failed: list[str] = []
    for line in log.splitlines():
        if (match := _VERTEX_RE.match(line)) and (platform := _platform_in(match.group(2))):
            vertex_platform[match.group(1)] = platform
        elif (error := _ERROR_RE.match(line)) and error.group(1) in vertex_platform:
            platform = vertex_platform[error.group(1)]
            if platform not in failed:
                failed.append(platform)
    return tuple(failed)


class Step(NamedTuple):
    """A build step starting, from a plain-progress line."""

    vertex: str
    platform: str  # "" for a single-platform build
    what: str  # "2/3 RUN make"


def _platform_in(label: str) -> str:
    return next((word for word in label.split() if _PLATFORM_RE.match(word)), "")


def step(line: str) -> Step | None:
    """The build step a plain-progress line starts, if it starts one."""
    match = _VERTEX_RE.match(line)
    words = match.group(2).split() if match else []
    if match is None or not words or not _STEP_RE.match(words[-1]):
        return None
    return Step(match.group(1), _platform_in(match.group(2)), f"{words[-1]} {match.group(3)}".strip())
