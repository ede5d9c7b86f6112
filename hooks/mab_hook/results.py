"""What became of each image: the result model every later phase reads."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import NamedTuple


class Status(str, enum.Enum):
    BUILT = "built"
    PUSHED = "pushed"
    SKIPPED = "skipped"
    FAILED = "failed"
    TIMED_OUT = "timed out"
    NOT_BUILT = "not built"

    def __str__(self) -> str:
        return self.value

    @property
    def ok(self) -> bool:
        return self in (Status.BUILT, Status.PUSHED, Status.SKIPPED)


class Failure(str, enum.Enum):
    """What failed, for the advice: a build is fixed in the repository, a registry is not."""

    NONE = ""
    BUILD = "build"  # a step of the Dockerfile
    ENGINE = "engine"  # the engine itself (exporting, say)
    REGISTRY = "registry"  # pushing or tagging: the registry, the network, credentials
    BASE = "base"  # an in-repo base image did not build
    PLATFORM = "platform"  # built, but an image is not the platform it claims


class StepTime(NamedTuple):
    """How long one build step took for one platform, and whether that ran natively."""

    platform: str
    what: str  # "2/3 RUN make"
    seconds: float
    native: bool


class BuildResult(NamedTuple):
    name: str
    status: Status
    seconds: float
    detail: str  # one line: what failed, or why it was skipped or not built
    log: Path | None
    tail: tuple[str, ...] = ()
    platforms: tuple[str, ...] = ()
    input_digest: str = ""
    image_digest: str = ""  # the manifest (list) digest buildx or the registry reported
    failure: Failure = Failure.NONE
    published: tuple[str, ...] = ()  # references that reached the registry
    steps: tuple[StepTime, ...] = ()  # the build steps that ran, from its log(s)

    @property
    def ok(self) -> bool:
        return self.status.ok


class Interrupted(KeyboardInterrupt):
    """^C, SIGTERM or SIGHUP while building: every build was stopped. Carries what reached
    the registry before that, for the report."""

    def __init__(self, published: tuple[str, ...] = (), signal_name: str = "") -> None:
        super().__init__(signal_name)
        self.published = published
        self.signal_name = signal_name
