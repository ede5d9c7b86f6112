"""Driving `docker buildx bake`: one generated definition per pushed commit.

Each image is built by its own bake invocation of that definition, so that its log and its
result are its own; bases reach their dependants as named contexts (`target:<base>`), so a
dependant builds on the fresh base without pushing it first, and BuildKit's cache makes the
repeated base steps free. With `push`, the same invocation uploads the image under its
input-digest tag, which nobody reads as a public tag: the public tags are put on it later, by
the registry gateway, only once every image of the push built.
"""

from __future__ import annotations

import collections
import contextlib
import io
import json
import os
import posixpath
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, NamedTuple

from mab_hook import builders, grants, process, specs, state
from mab_hook.errors import FatalError
from mab_hook.grants import Grants
from mab_hook.images import LOCAL_PATH_KEYS, OCI_LAYOUT, TARGET, Image, is_external_context, layout_path
from mab_hook.plan import Plan, PlannedImage
from mab_hook.rawprogress import Renderer
from mab_hook.results import BuildResult, Failure, Status

# "#12 [api linux/arm64 build 2/3] RUN make": vertex, then the bake entry, platform and stage
# (each there or not) and the step, then what runs.
_VERTEX_RE = re.compile(r"^#(\d+) \[([^\]]*)\] ?(.*)$")
_PLATFORM_RE = re.compile(r"^[a-z][a-z0-9]*/[a-z0-9_]+(?:/v[0-9]+)?$")
_STEP_RE = re.compile(r"^\d+/\d+$")
_ERROR_RE = re.compile(r"^#(\d+) ERROR: (.*)$")
_EXIT_CODE_RE = re.compile(r"exit code: (\d+)")
_METADATA = "load metadata for "  # BuildKit resolving a base for a platform
_NO_PLATFORM = "no match for platform in manifest"
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
BACKOFF = 1.0  # seconds before the registry is tried again, times the attempt


class Buildx(NamedTuple):
    """How to call buildx: the environment, the builder, and the children of this run."""

    env: Mapping[str, str]
    builder: str | None
    group: process.Group

    def bake(self, definition: Path, *args: str) -> tuple[str, ...]:
        builder = builders.flag(self.builder)
        # rawjson: every step the moment it starts (rendered as plain progress for the log)
        return ("docker", "buildx", "bake", "--file", str(definition), "--progress=rawjson", *builder, *args)

    @property
    def run_env(self) -> dict[str, str]:
        """What buildx runs with. Its own look at the checkout's git (four processes, some 0.1 s)
        would describe a temporary worktree, and put the remote's URL in the image as it is:
        mab-hook labels the revision and the source itself, with credentials removed."""
        return {"BUILDX_GIT_INFO": "false", **self.env}


# A base's copy for dependants of other platforms: `base_AS_CONTEXT_linux_amd64_AND_linux_arm64`.
_AS_CONTEXT, _AND = "_AS_CONTEXT_", "_AND_"


def entry_name(image_name: str) -> str:
    """The bake target of an image. Bake allows [A-Za-z0-9_-] only, image names hold '.' and
    '/' too; image names have no capitals, so capitals spell those out and no two images
    share an entry: `team.api` is `team_DOT_api`, `team/api` `team_SLASH_api`."""
    return image_name.replace(".", "_DOT_").replace("/", "_SLASH_")


class Paths(NamedTuple):
    checkout: Path  # the pushed commit, as the builds read it; relative: where bake will run
    repository: Path  # the repository itself (its work tree), where `type=local` caches live

    def dockerfile(self, image: Image) -> str:
        if self.checkout.is_absolute():
            return self.of_commit(image.dockerfile, f"image {image.name}: its Dockerfile")
        # Bake finds a relative Dockerfile in the image's context, not where it runs.
        return posixpath.relpath(image.dockerfile, image.context)

    def of_commit(self, path: str, what: str) -> str:
        """A path of the pushed commit, as builds read it."""
        return _confined(self.checkout, path, what, "the pushed commit")

    def of_repository(self, path: str, what: str) -> str:
        """A path of the repository's work tree (a local cache), as builds read or write it."""
        return _confined(self.repository, path, what, "the repository")


def _confined(root: Path, path: str, what: str, where: str) -> str:
    """`path` under `root`, refused when a symlink of the commit takes it elsewhere: a build
    reads and writes only inside what it was given. (A relative root is a definition for a
    user's own `bake -f -`, run where they choose.)"""
    joined = root / path
    if not root.is_absolute():
        return str(joined)
    real, top = os.path.realpath(joined), os.path.realpath(root)
    if real != top and not real.startswith(top.rstrip(os.sep) + os.sep):
        raise FatalError(
            f"{what} {path!r} leads out of {where} through a symlink (to {real}); nothing was built. A "
            "build reads and writes only inside the repository: replace the symlink, commit, and push again"
        )
    return str(joined)


def definition(
    plan: Plan,
    paths: Paths,
    labels: Mapping[str, Mapping[str, str]],
    push_refs: Mapping[str, str],
    granted: Grants = grants.NONE,
) -> dict[str, Any]:
    """The bake definition of a plan, with paths inside the checkout of its commit. An image in
    `push_refs` is tagged with that reference only (and pushed there); the others with their
    own tags (and kept in the engine's image store). Secrets, SSH and the host's network only
    as `granted`.

    Bases reach their dependants as `target:` contexts even when the registry has them from the
    same inputs: on the image from the registry (`docker-image://`), BuildKit's cache keys of
    the dependants' steps would differ from those of the push that built base and dependants
    together, and each dependant would rebuild from scratch on its next change."""
    by_name = {planned.image.name: planned for planned in (*plan.context_only, *plan.affected)}
    entries: dict[str, dict[str, Any]] = {}

    def add(planned: PlannedImage, platforms: tuple[str, ...]) -> str:
        # buildx refuses a `target:` context defined for other platforms than its user, so a
        # dependant with its own platform list gets an untagged copy of its base for them.
        own = platforms == planned.image.platforms
        name = entry_name(planned.image.name)
        if not own:
            name += _AS_CONTEXT + _AND.join(platforms).replace("/", "_").replace("-", "_")
        if name not in entries:
            contexts = {base.key: f"target:{add(by_name[base.name], platforms)}" for base in planned.bases}
            push_ref = push_refs.get(planned.image.name)
            tags = ((push_ref,) if push_ref else planned.tags) if own else ()
            spec = _entry(planned, paths, platforms, tags, contexts, granted=granted)
            found = {**labels.get(planned.image.name, {}), **dict(planned.image.labels)}
            if found:
                spec["labels"] = found
            entries[name] = spec
        return name

    default = [add(planned, planned.image.platforms) for planned in plan.affected]
    written: dict[str, Any] = literal({"group": {"default": {"targets": default}}, "target": entries})
    return written


# buildx reads every string of a bake file, keys included, as an HCL template: `${...}` calls
# functions (`${replace(...)}` once made a host directory a build context) and `%{...}` runs
# directives. A run of n `$` or `%` before `{` reads back as n - 1 of them (tried on buildx
# 0.13), so each such run gets one more: what mab-hook writes is data, whatever a commit holds.
_TEMPLATE_RE = re.compile(r"(\$+|%+)(?=\{)")


def literal(value: Any) -> Any:
    """A bake definition whose strings buildx reads as they are, never as templates."""
    return _each_string(value, lambda text: _TEMPLATE_RE.sub(lambda m: m.group(1) + m.group(1)[0], text))


def unliteral(value: Any) -> Any:
    """What buildx makes of a `literal` definition: the strings as they were."""
    return _each_string(value, lambda text: _TEMPLATE_RE.sub(lambda m: m.group(1)[1:], text))


def has_template(value: Any) -> bool:
    """Whether buildx would read some string of a (plain) definition as a template. (JSON puts
    nothing between a string's characters, and a quote after its last: `${` is inside one.)"""
    text = json.dumps(value)
    return "${" in text or "%{" in text


def _each_string(value: Any, change: Callable[[str], str]) -> Any:
    """`value` (JSON data) with `change` applied to every string in it, keys included."""
    if isinstance(value, str):
        return change(value)
    if isinstance(value, dict):
        return {_each_string(key, change): _each_string(item, change) for key, item in value.items()}
    if isinstance(value, list):
        return [_each_string(item, change) for item in value]
    return value


def _entry(
    planned: PlannedImage,
    paths: Paths,
    platforms: tuple[str, ...],
    tags: tuple[str, ...],
    contexts: Mapping[str, str],
    *,
    granted: Grants,
) -> dict[str, Any]:
    image = planned.image
    spec: dict[str, Any] = {
        "context": paths.of_commit(image.context, f"image {image.name}: its context"),
        "dockerfile": paths.dockerfile(image),
        "platforms": list(platforms),
        "tags": list(tags),
    }
    if image.build_args:
        spec["args"] = dict(image.build_args)
    if image.target:
        spec["target"] = image.target
    # A `target:` context is another image: it reaches the build as a base (`contexts`).
    named = {
        name: _context(value, paths, f"image {image.name}: its context {name!r}")
        for name, value in image.contexts
        if not value.startswith(TARGET)
    }
    if named or contexts:
        spec["contexts"] = {**named, **contexts}
    if image.cache_from:
        spec["cache-from"] = [
            _cache(entry, paths, f"image {image.name}: its cache") for entry in image.cache_from
        ]
    if image.cache_to:
        spec["cache-to"] = [
            _cache(entry, paths, f"image {image.name}: its cache") for entry in image.cache_to
        ]
    # What the pusher granted, never what the commit names (`grants`).
    if granted.secrets:
        spec["secret"] = list(granted.secrets.values())
    if granted.ssh:
        spec["ssh"] = list(granted.ssh.values())
    for field, value in image.extra:  # from a compose or bake file, as it said them
        if field != "network" or grants.allows_network(image, granted):
            spec[field] = json.loads(value)
    return spec


def _context(value: str, paths: Paths, what: str) -> str:
    if value.startswith(OCI_LAYOUT):  # a layout of the commit: the checkout's copy of it
        rest = value[len(OCI_LAYOUT) :]
        layout = layout_path(value)
        return OCI_LAYOUT + paths.of_commit(layout, what) + rest[len(layout) :]
    return value if is_external_context(value) else paths.of_commit(value, what)


def _cache(entry: str, paths: Paths, what: str) -> str:
    """A `type=local` cache's paths (checked to be inside the repository) made absolute there."""
    options = specs.parse(entry)
    if options.get("type") != "local":
        return entry
    for key in LOCAL_PATH_KEYS:
        if key in options:
            options[key] = paths.of_repository(options[key], f"{what} {key}=")
    return specs.format(options)


def export(plans: Sequence[Plan], granted: Grants = grants.NONE) -> dict[str, Any]:
    """The affected images of the plans as one bake definition for `docker buildx bake -f -`,
    run at the repository's root: paths relative to it, the images' public tags, bases as
    `target:` contexts, secrets and SSH as `granted`. What a user would run by hand, or a CI job."""
    here = Paths(Path("."), Path("."))
    merged: dict[str, Any] = {"group": {"default": {"targets": []}}, "target": {}}
    for plan in plans:
        found = definition(plan, here, {}, {}, granted)
        merged["target"].update(found["target"])
        default = merged["group"]["default"]["targets"]
        default += [name for name in found["group"]["default"]["targets"] if name not in default]
    return merged


def write_definition(path: Path, data: Mapping[str, Any]) -> Path:
    state.write_private(path, (json.dumps(data, indent=2) + "\n").encode())
    return path


def prove_literal(bake_file: Path, data: Mapping[str, Any], buildx: Buildx) -> None:
    """Where some string of a definition would read as a template, buildx is asked what it
    reads (`bake --print`, some 0.1 s): a build starts only when every such string reads back
    as written. Nothing is asked of the usual definition, which has none."""
    plain = unliteral(data)
    if not has_template(plain):
        return
    names = tuple(plain["target"])
    builder = builders.flag(buildx.builder)
    command = ("docker", "buildx", "bake", "--file", str(bake_file), "--print", "--progress=quiet")
    done = process.run((*command, *builder, *names), env=buildx.run_env, check=False, timeout=60)
    try:
        printed = json.loads(done.stdout)["target"]
    except (ValueError, KeyError, TypeError):
        printed = {}
    for name, spec in plain["target"].items():
        for field, value in spec.items():
            if has_template(value) and printed.get(name, {}).get(field) != value:
                raise FatalError(
                    f"image {image_of(name)}: buildx would read its {field} {json.dumps(value)[:200]} as a "
                    "template rather than as written; nothing was built. Rename what holds `${` or `%{` "
                    "(a path, an argument or a label of the pushed commit), commit, and push again"
                )


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
        streamed = buildx.group.stream(
            command, env=buildx.run_env, log=log, on_line=on_line, timeout=timeout, render=Renderer().feed
        )
        attempt_log = log_path.read_text(errors="replace")
        tries: collections.Counter[Failure] = collections.Counter()
        while streamed.returncode and not streamed.timed_out:
            kind = failure(attempt_log)
            tries[kind] += 1
            if tries[kind] > RETRIES_OF.get(kind, 0):
                break
            # Every step is cached by now, so once more is cheap. Seen: "failed to commit ...
            # snapshot does not exist" from moby 26.1's BuildKit; distribution 2.8 answering 500
            # to reads racing the docker driver's second push of the same manifest.
            attempt = sum(tries.values()) + 1
            log.write(f"mab-hook: the {kind.value} failed while exporting the image; attempt {attempt}\n")
            log.flush()
            time.sleep(tries[kind] * BACKOFF if kind is Failure.REGISTRY else 0)
            offset = log_path.stat().st_size
            streamed = buildx.group.stream(
                command, env=buildx.run_env, log=log, on_line=on_line, timeout=timeout, render=Renderer().feed
            )
            # Each attempt numbers its vertices afresh: read only its own part of the log.
            attempt_log = log_path.read_bytes()[offset:].decode("utf-8", errors="replace")
    seconds = time.monotonic() - started
    result = BuildResult(
        name,
        Status.BUILT,
        seconds,
        "",
        log_path,
        platforms=planned.image.platforms,
        input_digest=planned.input_digest,
    )
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
    said = invocation_error(log.splitlines())
    if said:
        return failed._replace(
            detail=f"buildx failed before building anything: {said}", failure=Failure.ENGINE
        )
    if kind is Failure.ENGINE:
        detail = "the engine failed while exporting the image, twice; try `docker buildx prune` (build cache)"
        return failed._replace(detail=detail, failure=kind)
    if kind is Failure.REGISTRY:
        return failed._replace(
            detail=f"the upload to the registry failed: {registry_error(log)}", failure=kind
        )
    platforms = failed_platforms(log)
    where = f" on {', '.join(platforms)}" if platforms else ""
    detail = step_failure(log, where) or f"build failed{where} (exit {streamed.returncode})"
    return failed._replace(detail=detail, failure=Failure.BUILD)


def step_failure(log: str, where: str) -> str:
    """What the first failing step says, as the summary tells it: the step and its own exit
    code (`RUN make (exit 2)`; buildx itself always exits 1), or its error; a base without the
    platform named as such. "" when no step failed."""
    labels: dict[str, tuple[str, str]] = {}
    for line in log.splitlines():
        if match := _VERTEX_RE.match(line):
            labels[match.group(1)] = (_platform_in(match.group(2)), match.group(3))
        elif (error := _ERROR_RE.match(line)) and error.group(1) in labels:
            platform, what = labels[error.group(1)]
            said = error.group(2)
            if what.startswith(_METADATA) and _NO_PLATFORM in said:
                base = what.removeprefix(_METADATA)
                return f"base {base} has no {platform or 'matching'} image ({_NO_PLATFORM})"
            code = _EXIT_CODE_RE.search(said)
            return f"build failed{where}: {what[:100]} " + (
                f"(exit {code.group(1)})" if code else f"({said[:200]})"
            )
    return ""


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
    found = Failure.ENGINE if invocation_error(log.splitlines()) else Failure.BUILD
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


def invocation_error(lines: Sequence[str]) -> str:
    """buildx's own error when it failed before any step ran (no engine, no builder, a
    definition it refuses): its last `ERROR:` line, when no step is in the output."""
    if any(re.match(r"^#\d+ ", line) for line in lines):
        return ""
    errors = [line.removeprefix("ERROR: ") for line in lines if line.startswith("ERROR: ")]
    return errors[-1][:300] if errors else ""


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


# --- several images in one invocation ----------------------------------------------------------


class Wanted(NamedTuple):
    """An image to build in a shared invocation, and where to upload it (None: nowhere)."""

    planned: PlannedImage
    push_ref: str | None = None


class Watch(NamedTuple):
    """What a shared invocation reports as it goes."""

    line: Listener = lambda line: None  # every rendered line (for --verbose)
    step: Callable[[str, str, str], None] = lambda image, platform, what: None
    done: Callable[[str], None] = lambda image: None  # an image's export ended


def image_of(entry: str) -> str:
    """The image an entry (or a base's context copy) builds: the inverse of entry_name."""
    return entry.split(_AS_CONTEXT, 1)[0].replace("_SLASH_", "/").replace("_DOT_", ".")


class _Demux:
    """Rendered plain progress of one invocation, sorted into each image's own log: a vertex
    belongs to the image its label names, a base's context copy to the base and the images
    built on it; lines that name none go to every log."""

    def __init__(self, wanted: Sequence[Wanted], logs: Mapping[str, IO[str]], watch: Watch) -> None:
        self.names = {w.planned.image.name for w in wanted}
        self.bases = {w.planned.image.name: {b.name for b in w.planned.bases} for w in wanted}
        self.logs, self.watch = logs, watch
        self.owners: dict[str, set[str]] = {}
        self.labels: dict[str, str] = {}  # vertex -> the image its label names
        self.exports: dict[str, str] = {}  # vertex -> image, for "exporting to image"
        self.own_errors: set[str] = set()  # images a step of their own failed
        self.export_errors: set[str] = set()  # images whose export or upload ended in an error
        self.uploads: set[str] = set()  # vertices that export or upload an image
        self.failed_bases: dict[str, set[str]] = {}  # image -> its bases whose steps failed
        self.tails = {name: collections.deque[str](maxlen=process.TAIL_LINES) for name in logs}
        self.started = time.monotonic()
        self.seconds: dict[str, float] = {}

    def line(self, line: str) -> None:
        self.watch.line(line)
        match = re.match(r"^#(\d+) (.*)$", line)
        owners = set(self.logs)
        if match:
            vertex, rest = match.groups()
            header = re.match(r"^\[([^\]]*)\] ?(.*)$", rest)
            if vertex not in self.owners:
                if header:
                    self._started(vertex, header.group(1), header.group(2))
                elif len(self.names) == 1:  # bake names no entry when it builds only one
                    self._started(vertex, entry_name(next(iter(self.names))), rest)
            owners = self.owners.get(vertex) or set(self.logs)
            self._ended(vertex, rest)
        for owner in owners:
            self.logs[owner].write(line + "\n")
            self.tails[owner].append(line)

    def _started(self, vertex: str, label: str, what: str) -> None:
        first = label.split(" ", 1)[0]
        entries = self.names.union(*self.bases.values())
        if len(self.names) == 1 and image_of(first) not in entries and _AS_CONTEXT not in first:
            # Bake names no entry when it builds only one: `[linux/arm64 2/3]`, `[internal]`.
            label = f"{entry_name(next(iter(self.names)))} {label}"
            first = label.split(" ", 1)[0]
        image = image_of(first)
        copy = _AS_CONTEXT in first
        owners = {image} & self.names
        if copy:  # a base's copy: the images built on it read it
            owners |= {name for name, bases in self.bases.items() if image in bases}
        self.owners[vertex], self.labels[vertex] = owners, image
        found = step(f"#{vertex} [{label}] {what}")
        if image in self.names and not copy:
            if found is not None:
                self.watch.step(image, found.platform, found.what[:100])
            if what.startswith("exporting to image"):
                self.exports[vertex] = image
            if what.startswith(("exporting", "pushing")):
                self.uploads.add(vertex)

    def _ended(self, vertex: str, rest: str) -> None:
        if rest.startswith("ERROR: "):
            image = self.labels.get(vertex)
            for owner in self.owners.get(vertex, ()):
                if owner == image:
                    (self.export_errors if vertex in self.uploads else self.own_errors).add(owner)
                elif image is not None:
                    self.failed_bases.setdefault(owner, set()).add(image)
        elif rest.startswith("DONE") and vertex in self.exports:
            image = self.exports.pop(vertex)
            self.seconds[image] = time.monotonic() - self.started
            self.watch.done(image)


class _Run(NamedTuple):
    demux: _Demux
    streamed: process.Streamed
    metadata: Path
    seconds: float
    offsets: Mapping[str, int]  # where each image's log of this attempt starts


def build_together(
    wanted: Sequence[Wanted], bake_file: Path, buildx: Buildx, logs: Path, watch: Watch
) -> list[BuildResult]:
    """Build several images in one bake invocation, as `docker buildx bake` of them would: a
    base once for all the images built on it, every image's steps side by side. Each image
    still gets its own log and result; a failure of the engine or the registry is tried again
    for the images it failed."""
    results: dict[str, BuildResult] = {}
    tries: collections.Counter[tuple[str, Failure]] = collections.Counter()  # per image and cause
    todo = list(wanted)
    while todo:
        found = _bake_once(todo, bake_file, buildx, logs, watch, appending=bool(results))
        results.update({r.name: r for r in found})
        # Tried again when the engine or the registry failed an image, at most as often as
        # that cause is retried for it, with the images that failure stopped (a failing step
        # of the push is final).
        failed = [r for r in found if not r.ok and r.failure is not Failure.BASE]
        tries.update((r.name, r.failure) for r in failed)
        if not failed or any(tries[(r.name, r.failure)] > RETRIES_OF.get(r.failure, 0) for r in failed):
            break
        registry = [tries[(r.name, r.failure)] for r in failed if r.failure is Failure.REGISTRY]
        time.sleep(max(registry, default=0) * BACKOFF)
        todo = [w for w, r in zip(todo, found, strict=True) if not r.ok]
    return [results[w.planned.image.name] for w in wanted]


def _bake_once(
    wanted: Sequence[Wanted], bake_file: Path, buildx: Buildx, logs: Path, watch: Watch, *, appending: bool
) -> list[BuildResult]:
    names = [w.planned.image.name for w in wanted]
    metadata = logs / "bake.metadata.json"
    metadata.unlink(missing_ok=True)
    push = ("--push",) if any(w.push_ref for w in wanted) else ()
    command = buildx.bake(bake_file, "--metadata-file", str(metadata), *push, *(entry_name(n) for n in names))
    paths = {name: logs / f"{entry_name(name)}.log" for name in names}
    # Each attempt numbers its vertices afresh: its results are read from its own part of a log.
    offsets = {
        name: path.stat().st_size if appending and path.exists() else 0 for name, path in paths.items()
    }
    with contextlib.ExitStack() as stack:
        files = {
            name: stack.enter_context(state.open_private(path, "a" if appending else "w"))
            for name, path in paths.items()
        }
        if appending:
            for log in files.values():
                log.write("mab-hook: the engine or the registry failed while exporting; once more\n")
        demux = _Demux(wanted, files, watch)
        streamed = buildx.group.stream(
            command, env=buildx.run_env, log=_Discard(), on_line=demux.line, render=Renderer().feed
        )
    run = _Run(demux, streamed, metadata, time.monotonic() - demux.started, offsets)
    return [_result(w, paths[w.planned.image.name], run) for w in wanted]


def _result(wanted: Wanted, log: Path, run: _Run) -> BuildResult:
    planned, name, demux = wanted.planned, wanted.planned.image.name, run.demux
    published = (wanted.push_ref,) if wanted.push_ref else ()
    result = BuildResult(
        name,
        Status.BUILT,
        demux.seconds.get(name, run.seconds),
        "",
        log,
        platforms=planned.image.platforms,
        input_digest=planned.input_digest,
    )
    if run.streamed.returncode == 0:
        return result._replace(image_digest=image_digest(run.metadata, entry_name(name)), published=published)
    if name in demux.own_errors:
        tail = run.streamed._replace(tail=tuple(demux.tails[name]))
        text = log.read_bytes()[run.offsets.get(name, 0) :].decode("utf-8", errors="replace")
        return _failed(result, tail, text, None)
    if name in demux.export_errors and not demux.own_errors:  # its export or upload failed by itself
        tail = run.streamed._replace(tail=tuple(demux.tails[name]))
        text = log.read_bytes()[run.offsets.get(name, 0) :].decode("utf-8", errors="replace")
        return _failed(result, tail, text, None)
    said = invocation_error(run.streamed.tail)
    if said and not (demux.own_errors or demux.export_errors or demux.failed_bases):
        detail = f"buildx failed before building anything: {said}"
        return result._replace(
            status=Status.FAILED, detail=detail, failure=Failure.ENGINE, tail=run.streamed.tail
        )
    broken = sorted(demux.failed_bases.get(name, ()))
    if broken:
        detail = f"base image {broken[0]} did not build"
        return result._replace(status=Status.NOT_BUILT, detail=detail, failure=Failure.BASE)
    # A step of another image failed: BuildKit stops the whole invocation, and an upload under
    # way ends with that step's error. Exported before, and no upload stopped: it is built.
    if name in demux.seconds and name not in demux.export_errors:
        return result._replace(published=published)
    if not (demux.own_errors or demux.export_errors):
        return _unattributed(result, run.streamed)
    detail = "stopped: another image of the push failed"
    return result._replace(status=Status.NOT_BUILT, detail=detail, failure=Failure.BASE)


def _unattributed(result: BuildResult, streamed: process.Streamed) -> BuildResult:
    """An invocation that failed with no image's step failing: not "stopped by another image",
    but buildx's own last words."""
    errors = [line.removeprefix("ERROR: ") for line in streamed.tail if line.startswith("ERROR: ")]
    said = errors[-1][:300] if errors else f"buildx exited {streamed.returncode}"
    return result._replace(
        status=Status.FAILED, detail=f"the build failed: {said}", failure=Failure.BUILD, tail=streamed.tail
    )


class _Discard(io.StringIO):
    """The combined log is not kept: every line is in the logs of the images it concerns."""

    def write(self, text: str) -> int:
        return len(text)
