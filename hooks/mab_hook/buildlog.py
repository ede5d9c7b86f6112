"""Reading buildx's progress: which image and step a line is about, what the first failing
step said, and whether a failure was the build's, the engine's or the registry's."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from mab_hook import process
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


def classified(
    result: BuildResult, streamed: process.Streamed, log: str, timeout: float | None
) -> BuildResult:
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
