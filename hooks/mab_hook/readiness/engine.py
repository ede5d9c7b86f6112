"""Readiness of the engine and the builder: docker answers, buildx is new enough, the builder
exists, runs, and can build several platforms in one invocation."""

from __future__ import annotations

import re
from collections.abc import Callable

from mab_hook import builders, buildkitd, mirrors, process
from mab_hook.builders import Builder
from mab_hook.definitions import RELEASES
from mab_hook.process import Completed
from mab_hook.readiness.model import (
    BUILDX_VERSION,
    FAIL,
    INFO,
    LS,
    OK,
    VERSION,
    WARN,
    Check,
    Host,
    Wanted,
    parse_json,
)
from mab_hook.readiness.model import inspect as inspect_cmd
from mab_hook.registry import Insecure

MIN_BUILDX = (0, 13)


def check_docker(host: Host, buildx: tuple[int, int, int] | None = None) -> list[Check]:
    """`buildx`: the version the repository's definition files need, when known."""
    version = host.run(VERSION)
    if version.missing:
        return [
            Check(
                "docker",
                FAIL,
                "the docker CLI is not installed",
                "install Docker Engine and its CLI (https://docs.docker.com/engine/install/)",
                "docker-missing",
            )
        ]
    data = parse_json(version.stdout)
    client = (data.get("Client") or {}).get("Version", "?")
    server = (data.get("Server") or {}).get("Version")
    if version.returncode != 0 or not server:
        return [_unanswered(" ".join(process.tail_lines(version.stderr, 2)) or "no answer")]
    return [Check("docker", OK, f"client {client}, server {server}"), check_buildx(host, buildx)]


def _unanswered(tail: str) -> Check:
    """Why docker could not reach an engine, by what it said: no such context, an ssh or tcp
    endpoint that does not answer, or a local daemon that is not running."""
    context = re.search(r'context "([^"]+)"(?:: context not found| does not exist)', tail)
    if context:
        fix = (
            f"`docker context ls` shows the contexts there are; `docker context use NAME`, or unset "
            f"DOCKER_CONTEXT (it names {context.group(1)!r})"
        )
        return Check(
            "docker", FAIL, f"the docker context {context.group(1)!r} does not exist", fix, "context-missing"
        )
    endpoint = re.search(r"\b((?:ssh|tcp)://[^\s\"']+)", tail)
    if endpoint:
        where = endpoint.group(1).rstrip(".,:;")  # the end of docker's sentence is not the address
        ask = (
            f"ssh {where.removeprefix('ssh://')} docker version"
            if where.startswith("ssh://")
            else (f"docker -H {where} version")
        )
        fix = (
            f"check that {where} answers (`{ask}`), or point DOCKER_HOST / `docker context use` at an "
            "engine that runs"
        )
        return Check("docker", FAIL, f"the engine at {where} does not answer: {tail}", fix, "endpoint-down")
    fix = (
        "start it (`sudo systemctl start docker`), or point DOCKER_HOST / `docker context use` "
        "at a running engine"
    )
    return Check("docker", FAIL, f"the Docker daemon does not answer: {tail}", fix, "daemon-down")


def check_buildx(host: Host, needed: tuple[int, int, int] | None = None) -> Check:
    buildx = host.run(BUILDX_VERSION)
    found = re.search(r"\bv?(\d+)\.(\d+)(?:\.(\d+))?", buildx.stdout)
    install = (
        "install the buildx plugin (Debian/Ubuntu: `apt-get install docker-buildx`, or the "
        "docker-buildx binary in ~/.docker/cli-plugins/)"
    )
    if buildx.returncode != 0 or not found:
        return Check("buildx", FAIL, "docker buildx is not installed", install, "buildx-missing")
    if (int(found.group(1)), int(found.group(2))) < MIN_BUILDX:
        return Check("buildx", FAIL, f"buildx {found.group(0)} is older than 0.13", install, "buildx-old")
    have = tuple(int(part or 0) for part in found.groups())
    if needed is not None and have < needed:
        first, said = ".".join(map(str, needed)), found.group(0).lstrip("v")
        why = f"buildx {said} cannot read this repository's definition files (they need {first} or later)"
        return Check("buildx", FAIL, why, f"install buildx {first} or later ({RELEASES})", "buildx-old")
    return Check("buildx", OK, f"buildx {found.group(0).lstrip('v')}")


def check_builder(host: Host, wanted: Wanted) -> tuple[list[Check], Builder | None]:
    name = wanted.builder
    inspected = host.run(inspect_cmd(name))
    if inspected.returncode != 0:
        finding = f"builder {name!r} does not exist" if name else "no current builder"
        # Only a builder that is to become the current one gets `--use`: a named one is passed
        # as `--builder`, and the user's current builder stays theirs.
        create = wanted.new_builder(name or "multi-arch").command_text(use=not name)
        fix = f"create it: `{create}` (mab-hook doctor --fix does)"
        return [Check("builder", FAIL, finding, fix, "builder-missing")], None
    builder = builders.parse_inspect(inspected.stdout)
    listed = host.run(LS)
    if listed.returncode == 0:
        by_name = {b.name: b for b in builders.parse_ls_json(listed.stdout)}
        builder = by_name.get(builder.name, builder)
    return [builder_status(builder), check_driver(host, builder, wanted)], builder


def builder_status(builder: Builder) -> Check:
    nodes = len(builder.nodes)
    summary = f"{builder.name} ({builder.driver}, {nodes} node{'s' * (nodes != 1)})"
    if builder.running:
        return Check("builder", OK, f"{summary}, running")
    stopped = ", ".join(f"{n.name}: {n.status or 'unknown'}" for n in builder.nodes if n.status != "running")
    fix = f"start it: `docker buildx inspect --bootstrap {builder.name}` (mab-hook doctor --fix does)"
    return Check("builder", WARN, f"{summary} is not running ({stopped})", fix, "builder-stopped")


def check_driver(host: Host, builder: Builder, wanted: Wanted) -> Check:
    if builder.driver in builders.MULTI_PLATFORM_DRIVERS:
        return Check("driver", OK, f"the {builder.driver} driver builds several platforms at once")
    if builder.driver == "docker":
        status = parse_json(host.run(INFO).stdout).get("DriverStatus") or []
        if ["driver-type", "io.containerd.snapshotter.v1"] in status:
            return Check(
                "driver", OK, "the docker driver with the containerd image store builds several platforms"
            )
    if len(wanted.platforms) <= 1:  # a CI job of a fan-out builds one platform: any driver does that
        return Check("driver", OK, f"the {builder.driver} driver builds one platform at a time: enough here")
    create = wanted.new_builder("multi-arch").command_text()
    fix = (
        f'either create a docker-container builder (`{create}`, and set builder = "multi-arch"), or turn '
        'on the containerd image store (daemon.json: {"features": {"containerd-snapshotter": true}}, then '
        "restart dockerd)"
    )
    finding = f"the {builder.driver} driver of builder {builder.name} cannot build several platforms at once"
    return Check("driver", FAIL, finding, fix, "driver-single-platform")


def insecure_registries(host: Host, builder: Builder | None = None) -> Insecure:
    """The registries the builder speaks plain HTTP or unchecked TLS to: (names, CIDRs). The
    daemon's insecure-registries (`docker info`); for a builder whose BuildKit reads its own
    buildkitd.toml, those it sets `http` or `insecure` for."""
    if builder is not None and builder.driver in buildkitd.CONFIGURED_DRIVERS:
        return buildkitd.relaxed(dict(node.files) for node in builder.nodes), ()
    info = parse_json(host.run(INFO).stdout).get("RegistryConfig") or {}
    names = tuple(
        name for name, index in (info.get("IndexConfigs") or {}).items() if not index.get("Secure", True)
    )
    return names, tuple(info.get("InsecureRegistryCIDRs") or ())


def docker_hub_mirrors(run: Callable[[tuple[str, ...]], Completed], builder: str | None) -> tuple[str, ...]:
    """The mirrors the builder that will pull (None: the current one) tries before Docker Hub:
    the engine's registry-mirrors, or a docker-container builder's own; () when there are none
    or docker cannot say. Asked only when a base must be read from Docker Hub."""
    inspected = run(inspect_cmd(builder))
    if inspected.returncode != 0:
        return ()
    found = builders.parse_inspect(inspected.stdout)
    if found.driver in buildkitd.CONFIGURED_DRIVERS:
        listed = run(LS)
        by_name = {b.name: b for b in builders.parse_ls_json(listed.stdout)} if listed.returncode == 0 else {}
        return mirrors.from_builder(by_name.get(found.name, found))
    return mirrors.from_engine((parse_json(run(INFO).stdout).get("RegistryConfig") or {}).get("Mirrors"))
