"""What readiness checks say: checks with stable ids and codes, and what they look at."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from mab_hook import binfmt
from mab_hook.builders import Builder, BuilderSpec
from mab_hook.buildkitd import RegistrySettings
from mab_hook.images import DEFAULT_BINFMT_IMAGE
from mab_hook.process import Completed
from mab_hook.registry import Access, Insecure

OK, WARN, FAIL = "ok", "warn", "fail"


class Check(NamedTuple):
    id: str  # stable: "docker", "builder", "platform:linux/arm64", "registry", ...
    status: str  # OK, WARN or FAIL
    finding: str  # one line: what was found
    fix: str = ""  # what to run, when not OK
    code: str = ""  # stable: what is wrong ("binfmt-unmounted", ...), for fixes and JSON

    @property
    def name(self) -> str:
        """How people read the id: "platform linux/arm64"."""
        return self.id.replace(":", " ", 1)


def _no_registry(reference: str, insecure: Insecure) -> Access:
    return Access(False, "error", "no registry client")


def _no_probe(platform: str, builder: str | None, engine: str) -> bool | None:
    return None


def _no_distrust(reference: str, insecure: Insecure) -> str | None:
    return None


def _no_builder_distrust(
    reference: str, insecure: Insecure, settings: RegistrySettings, builder: str
) -> tuple[str, str] | None:
    return None


class Host(NamedTuple):
    """Everything the checks look at, injectable: how to run docker, where binfmt_misc is..."""

    run: Callable[[tuple[str, ...]], Completed]  # a command, never raising for its exit code
    machine: str  # uname -m
    binfmt_root: Path = binfmt.DEFAULT_ROOT
    access: Callable[[str, Insecure], Access] = _no_registry  # one authenticated registry request
    client_os: str = sys.platform  # "linux", "darwin", "win32"
    hostname: str = ""  # this machine's, to tell the engine's apart
    kernel: str = ""  # this machine's kernel release (`uname -r`)
    # Whether a program of a platform runs in a build on the builder (None: no probe program),
    # remembered per engine: (platform, builder, engine id).
    probe: Callable[[str, str | None, str], bool | None] = _no_probe
    # Why an engine on this machine would refuse the registry's certificate (Registry.engine_distrust).
    engine_distrust: Callable[[str, Insecure], str | None] = _no_distrust
    # Why a builder reading its own buildkitd.toml would fail with the registry (Registry.builder_distrust).
    builder_distrust: Callable[[str, Insecure, RegistrySettings, str], tuple[str, str] | None] = (
        _no_builder_distrust
    )
    # The same host with docker talking to a docker context's engine; None: its `run` with
    # `docker --context NAME`.
    on_context: Callable[[str], Host] | None = None

    def with_context(self, name: str) -> Host:
        """The host as seen through docker context `name` (`docker --context NAME ...`)."""
        if self.on_context is not None:
            return self.on_context(name)
        run = self.run
        return self._replace(run=lambda cmd: run(in_context(cmd, name)))


def in_context(cmd: tuple[str, ...], name: str) -> tuple[str, ...]:
    """A docker command run against context `name` (which wins over DOCKER_HOST)."""
    return ("docker", "--context", name, *cmd[1:]) if cmd[:1] == ("docker",) and name else cmd


class Wanted(NamedTuple):
    """What the host must be ready for."""

    platforms: tuple[str, ...]
    builder: str | None = None  # None: the current builder
    registry: str | None = None  # a repository pushed to (checked when images are to be pushed)
    binfmt_image: str = DEFAULT_BINFMT_IMAGE
    builder_spec: BuilderSpec | None = None  # how to create the builder when it is missing
    # The buildx the repository's definition files need, when newer than mab-hook's own minimum.
    buildx: tuple[int, int, int] | None = None
    buildkit_image: str | None = None  # what a docker-container builder made by a fix runs
    # Another engine than the default the platforms are routed to (`engines`): a docker context
    # or a buildx builder; "" for the default engine.
    engine: str = ""

    def new_builder(self, name: str) -> BuilderSpec:
        """The builder a fix creates: the configured one, else a docker-container builder."""
        return (self.builder_spec or BuilderSpec(name, "docker-container")).with_image(self.buildkit_image)


class Report(NamedTuple):
    checks: tuple[Check, ...]
    builder: Builder | None
    insecure: Insecure = ((), ())  # the daemon's insecure registries, for the registry gateway
    engine: str = ""  # the routed engine asked about ("": the default engine)
    context: str = ""  # the docker context that engine is ("": a buildx builder, or the default)
    architecture: str = ""  # `uname -m` of the engine's machine ("": unknown)

    @property
    def ready(self) -> bool:
        return all(check.status != FAIL for check in self.checks)


class Verdict(NamedTuple):
    """Readiness as the gate asks it, once a push: a report for each builder the push uses.
    What it learnt of the engine (its insecure registries) builds the registry gateway; its
    failures stop the push only when something is really built."""

    reports: tuple[Report, ...]

    @property
    def ready(self) -> bool:
        return all(report.ready for report in self.reports)

    @property
    def insecure(self) -> Insecure:
        names = (name for report in self.reports for name in report.insecure[0])
        cidrs = (cidr for report in self.reports for cidr in report.insecure[1])
        return tuple(dict.fromkeys(names)), tuple(dict.fromkeys(cidrs))

    def checks(self, status: str) -> tuple[Check, ...]:
        return tuple(check for report in self.reports for check in report.checks if check.status == status)


def parse_json(text: str | bytes) -> dict[str, Any]:
    """A JSON object as docker or the engine's API answers it; {} for anything else."""
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


VERSION = ("docker", "version", "--format", "{{json .}}")
BUILDX_VERSION = ("docker", "buildx", "version")
INFO = ("docker", "info", "--format", "{{json .}}")
LS = ("docker", "buildx", "ls", "--format", "json")
CONTEXT = ("docker", "context", "inspect", "--format", "{{json .}}")


def inspect(builder: str | None) -> tuple[str, ...]:
    return ("docker", "buildx", "inspect", *([builder] if builder else []))
