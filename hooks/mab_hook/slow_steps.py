"""Steps emulation made slow: each build step's time, read from the build's own log (BuildKit's
`#12 DONE 48.2s`), is set against the same step of the same image built natively; an emulated
step much slower than that gets advice: the fix that fits it (cross-compile it in a
`--platform=$BUILDPLATFORM` stage, or build its platform on a native engine). Only where the
saving is worth it: never noise.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from mab_hook import buildlog, platforms
from mab_hook.results import BuildResult, StepTime

RATIO = 3.0  # an emulated step at least this many times its native time...
SAVING = 10.0  # ...and at least this many seconds longer is worth saying

_DONE_RE = re.compile(r"^#(\d+) DONE (\d+(?:\.\d+)?)s$")

# Steps a cross-compiling stage can take over: compilers and build tools, which write the
# target's programs from the build platform. Package installs run the target's own programs.
_COMPILES_RE = re.compile(
    r"\b(go (build|install)|cargo (build|install)|rustc|gcc|g\+\+|clang|cc|make|cmake|ninja|meson|mvn|gradle|"
    r"dotnet (build|publish)|tsc|npm run build|yarn build|zig build)\b"
)


def timings(log: str, machine: str, built_for: Sequence[str]) -> tuple[StepTime, ...]:
    """Every step of a build's plain-progress log that ran (not cached), with its time and
    whether its platform ran natively on the engine's `machine` (`uname -m`; "" unknown).
    `built_for`: the build's platforms (BuildKit names none in a step of a one-platform build)."""
    started: dict[str, buildlog.Step] = {}
    alone = built_for[0] if len(built_for) == 1 else ""
    found = []
    for line in log.splitlines():
        step = buildlog.step(line)
        if step is not None and (step.platform or alone):
            started.setdefault(step.vertex, step._replace(platform=step.platform or alone))
            continue
        done = _DONE_RE.match(line)
        if done and done.group(1) in started:
            step = started.pop(done.group(1))
            native = bool(machine) and platforms.runs_natively(machine, step.platform)
            found.append(StepTime(step.platform, step.what, float(done.group(2)), native))
    return tuple(found)


class Slow(NamedTuple):
    """An emulated step much slower than the same step natively."""

    image: str
    what: str  # "2/3 RUN make"
    platform: str  # where it was emulated
    seconds: float
    native: str  # the platform it ran natively for
    native_seconds: float

    @property
    def saving(self) -> float:
        return self.seconds - self.native_seconds

    @property
    def advice(self) -> str:
        """The fix that fits it."""
        return fix(self)

    @property
    def said(self) -> str:
        """It as one line: the step, both times, the fix."""
        return line(self)


def slow(image: str, steps: Iterable[StepTime]) -> list[Slow]:
    """The image's emulated steps worth advice, slowest first: each against the quickest native
    run of the same step (the same Dockerfile line, so the same `k/n` and text)."""
    native: dict[str, StepTime] = {}
    emulated: list[StepTime] = []
    for step in steps:
        if step.native:
            if step.what not in native or step.seconds < native[step.what].seconds:
                native[step.what] = step
        else:
            emulated.append(step)
    found = [
        Slow(image, step.what, step.platform, step.seconds, mine.platform, mine.seconds)
        for step in emulated
        if (mine := native.get(step.what)) is not None and worth(step.seconds, mine.seconds)
    ]
    return sorted(found, key=lambda s: -s.saving)


def worth(emulated: float, native: float) -> bool:
    return emulated >= RATIO * native and emulated - native >= SAVING


def of_results(results: Sequence[BuildResult]) -> list[Slow]:
    """Every built image's slow emulated steps, slowest first."""
    found = [s for r in results if r.steps for s in slow(r.name, r.steps)]
    return sorted(found, key=lambda s: -s.saving)


def fix(found: Slow) -> str:
    """The fix that fits the step."""
    engine = f"build {found.platform} on a native engine (`engines`: a machine of that CPU)"
    if _COMPILES_RE.search(found.what):
        return (
            f"compile it in a `FROM --platform=$BUILDPLATFORM` stage for $TARGETPLATFORM and COPY the "
            f"result (natively for every platform), or {engine}"
        )
    return engine


def line(found: Slow) -> str:
    """One piece of advice: the step, both times, the fix."""
    return (
        f"{found.image}: `{found.what[:80]}` took {found.seconds:.1f} s under emulation for "
        f"{found.platform}, {found.native_seconds:.1f} s natively for {found.native}: {fix(found)}"
    )
