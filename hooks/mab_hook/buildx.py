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
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, NamedTuple

from mab_hook import bakefile, builders, buildlog, process, state
from mab_hook.errors import FatalError
from mab_hook.plan import PlannedImage
from mab_hook.rawprogress import Renderer
from mab_hook.results import BuildResult, Failure, Status

Listener = Callable[[str], None]


# Attempts after the first, by what failed: the engine's export once, a registry's upload twice.
RETRIES_OF = {Failure.ENGINE: 1, Failure.REGISTRY: 2}


BACKOFF = 1.0  # seconds before the registry is tried again, times the attempt


def again(kind: Failure, tried: int) -> float | None:
    """The one retry policy of every invocation: seconds to wait before trying again after
    `kind` failed for the `tried`th time, or None: give up. The engine's export is tried once
    more at once, a registry's upload twice more after a growing wait, a build never."""
    if tried > RETRIES_OF.get(kind, 0):
        return None
    return tried * BACKOFF if kind is Failure.REGISTRY else 0.0


class Buildx(NamedTuple):
    """How to call buildx: the environment, the builder, and the children of this run."""

    env: Mapping[str, str]
    builder: str | None
    group: process.Group
    context: str = ""  # a docker context to build on (an engine of `engines`): its own builder
    plugin: str = ""  # the buildx plugin docker would run (definitions.buildx_plugin); "": docker's

    @property
    def docker(self) -> tuple[str, ...]:
        """docker, talking to the engine: a context's wins over DOCKER_HOST, and buildx builds
        with that engine's own builder only when docker talks to it."""
        return ("docker", "--context", self.context) if self.context else ("docker",)

    @property
    def command(self) -> tuple[str, ...]:
        """buildx: the plugin itself where it is known (what `docker buildx` runs, less the
        docker CLI's start and its look at the plugin's metadata: some 40 ms a push), docker's
        `buildx` on a context's engine."""
        return (self.plugin,) if self.plugin and not self.context else (*self.docker, "buildx")

    def bake(self, definition: Path, *args: str) -> tuple[str, ...]:
        builder = builders.flag(self.builder)
        # rawjson: every step the moment it starts (rendered as plain progress for the log)
        return (
            *self.command,
            "bake",
            "--file",
            str(definition),
            "--progress=rawjson",
            *builder,
            *args,
        )

    @property
    def run_env(self) -> dict[str, str]:
        """What buildx runs with. Its own look at the checkout's git (four processes, some 0.1 s)
        would describe a temporary worktree, and put the remote's URL in the image as it is:
        mab-hook labels the revision and the source itself, with credentials removed."""
        return {"BUILDX_GIT_INFO": "false", **self.env}


def prove_literal(bake_file: Path, data: Mapping[str, Any], buildx: Buildx) -> None:
    """Where some string of a definition would read as a template, buildx is asked what it
    reads (`bake --print`, some 0.1 s): a build starts only when every such string reads back
    as written. Nothing is asked of the usual definition, which has none."""
    plain = bakefile.unliteral(data)
    if not bakefile.has_template(plain):
        return
    names = tuple(plain["target"])
    builder = builders.flag(buildx.builder)
    command = (*buildx.command, "bake", "--file", str(bake_file), "--print", "--progress=quiet")
    done = process.run((*command, *builder, *names), env=buildx.run_env, check=False, timeout=60)
    try:
        printed = json.loads(done.stdout)["target"]
    except (ValueError, KeyError, TypeError):
        printed = {}
    for name, spec in plain["target"].items():
        for field, value in spec.items():
            if bakefile.has_template(value) and printed.get(name, {}).get(field) != value:
                what = f"its {field} {json.dumps(value)[:200]}"
                raise FatalError(
                    f"image {bakefile.image_of(name)}: buildx would read {what} as a "
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
    entry = bakefile.entry_name(name)
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
            kind = buildlog.failure(attempt_log)
            tries[kind] += 1
            wait = again(kind, tries[kind])
            if wait is None:
                break
            # Every step is cached by now, so once more is cheap. Seen: "failed to commit ...
            # snapshot does not exist" from moby 26.1's BuildKit; distribution 2.8 answering 500
            # to reads racing the docker driver's second push of the same manifest.
            attempt = sum(tries.values()) + 1
            log.write(f"mab-hook: the {kind.value} failed while exporting the image; attempt {attempt}\n")
            log.flush()
            time.sleep(wait)
            offset = log_path.stat().st_size
            streamed = buildx.group.stream(
                command, env=buildx.run_env, log=log, on_line=on_line, timeout=timeout, render=Renderer().feed
            )
            # Each attempt numbers its vertices afresh: read only its own part of the log.
            attempt_log = log_path.read_bytes()[offset:].decode("utf-8", errors="replace")
    state.made_private(metadata)
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
        return result._replace(image_digest=buildlog.image_digest(metadata, entry), published=published)
    return buildlog.classified(result, streamed, attempt_log, timeout)


class Wanted(NamedTuple):
    """An image to build in a shared invocation, and where to upload it (None: nowhere)."""

    planned: PlannedImage
    push_ref: str | None = None


class Watch(NamedTuple):
    """What a shared invocation reports as it goes."""

    line: Listener = lambda line: None  # every rendered line (for --verbose)
    step: Callable[[str, str, str], None] = lambda image, platform, what: None
    done: Callable[[str], None] = lambda image: None  # an image's export ended


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
        self.unexported: dict[str, set[str]] = {}  # image -> its bases whose copy's export failed
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
                    self._started(vertex, bakefile.entry_name(next(iter(self.names))), rest)
            owners = self.owners.get(vertex) or set(self.logs)
            self._ended(vertex, rest)
        for owner in owners:
            self.logs[owner].write(line + "\n")
            self.tails[owner].append(line)

    def _started(self, vertex: str, label: str, what: str) -> None:
        first = label.split(" ", 1)[0]
        entries = self.names.union(*self.bases.values())
        if (
            len(self.names) == 1
            and bakefile.image_of(first) not in entries
            and bakefile.AS_CONTEXT not in first
        ):
            # Bake names no entry when it builds only one: `[linux/arm64 2/3]`, `[internal]`.
            label = f"{bakefile.entry_name(next(iter(self.names)))} {label}"
            first = label.split(" ", 1)[0]
        image = bakefile.image_of(first)
        copy = bakefile.AS_CONTEXT in first
        owners = {image} & self.names
        if copy:  # a base's copy: the images built on it read it
            owners |= {name for name, bases in self.bases.items() if image in bases}
        self.owners[vertex], self.labels[vertex] = owners, image
        found = buildlog.step(f"#{vertex} [{label}] {what}")
        if image in self.names and not copy:
            if found is not None:
                self.watch.step(image, found.platform, found.what[:100])
            if what.startswith("exporting to image"):
                self.exports[vertex] = image
        if (copy or image in self.names) and what.startswith(("exporting", "pushing")):
            self.uploads.add(vertex)  # an image's, or a base's copy's (its error is no step's)

    def _ended(self, vertex: str, rest: str) -> None:
        if rest.startswith("ERROR: "):
            image = self.labels.get(vertex)
            for owner in self.owners.get(vertex, ()):
                if owner == image:
                    (self.export_errors if vertex in self.uploads else self.own_errors).add(owner)
                elif image is not None:  # a base's copy: a step of the base, or its export
                    found = self.unexported if vertex in self.uploads else self.failed_bases
                    found.setdefault(owner, set()).add(image)
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
        waits = [again(r.failure, tries[(r.name, r.failure)]) for r in failed]
        if not failed or None in waits:
            break
        time.sleep(max(wait for wait in waits if wait is not None))
        todo = [w for w, r in zip(todo, found, strict=True) if not r.ok]
    return [results[w.planned.image.name] for w in wanted]


def _bake_once(
    wanted: Sequence[Wanted], bake_file: Path, buildx: Buildx, logs: Path, watch: Watch, *, appending: bool
) -> list[BuildResult]:
    names = [w.planned.image.name for w in wanted]
    metadata = logs / "bake.metadata.json"
    metadata.unlink(missing_ok=True)
    push = ("--push",) if any(w.push_ref for w in wanted) else ()
    command = buildx.bake(
        bake_file, "--metadata-file", str(metadata), *push, *(bakefile.entry_name(n) for n in names)
    )
    paths = {name: logs / f"{bakefile.entry_name(name)}.log" for name in names}
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
        state.made_private(metadata)
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
        return result._replace(
            image_digest=buildlog.image_digest(run.metadata, bakefile.entry_name(name)), published=published
        )
    if name in demux.own_errors:
        tail = run.streamed._replace(tail=tuple(demux.tails[name]))
        text = log.read_bytes()[run.offsets.get(name, 0) :].decode("utf-8", errors="replace")
        return buildlog.classified(result, tail, text, None)
    if name in demux.export_errors and not demux.own_errors:  # its export or upload failed by itself
        tail = run.streamed._replace(tail=tuple(demux.tails[name]))
        text = log.read_bytes()[run.offsets.get(name, 0) :].decode("utf-8", errors="replace")
        return buildlog.classified(result, tail, text, None)
    said = buildlog.invocation_error(run.streamed.tail)
    if said and not (demux.own_errors or demux.export_errors or demux.failed_bases or demux.unexported):
        detail = f"buildx failed before building anything: {said}"
        return result._replace(
            status=Status.FAILED, detail=detail, failure=Failure.ENGINE, tail=run.streamed.tail
        )
    # A base's copy whose export ended in an error while another image's step failed was
    # stopped by it (BuildKit ends the whole invocation): its dependants were stopped too.
    unexported = set() if demux.own_errors else demux.unexported.get(name, set())
    broken = sorted(demux.failed_bases.get(name) or unexported)
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
