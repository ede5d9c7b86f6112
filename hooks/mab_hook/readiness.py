"""Host readiness: can this machine build every platform asked for, and if not, what to run.

Every check has a status (ok, warn, fail), a one-line finding and a fix. Nothing here changes
the host; `apply_fixes` does the few fixes that are safe, and says what it did.
"""

from __future__ import annotations

import concurrent.futures
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple

from mab_hook import binfmt, builders, process
from mab_hook import probe as probes
from mab_hook.binfmt import Binfmt
from mab_hook.builders import Builder, BuilderSpec
from mab_hook.config import DEFAULT_BINFMT_IMAGE
from mab_hook.errors import FatalError
from mab_hook.process import Completed
from mab_hook.registry import plain_http

OK, WARN, FAIL = "ok", "warn", "fail"
MIN_BUILDX = (0, 13)


def http_status(url: str, timeout: float = 5.0) -> int:
    import urllib.error  # noqa: PLC0415 - only when a registry is checked: a faster start
    import urllib.request  # noqa: PLC0415

    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="GET"), timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


class Check(NamedTuple):
    name: str
    status: str
    finding: str
    fix: str = ""


class Host(NamedTuple):
    """Everything the checks look at, injectable: how to run docker, where binfmt_misc is..."""

    run: Callable[[tuple[str, ...]], Completed]  # a command, never raising for its exit code
    machine: str  # uname -m
    binfmt_root: Path = binfmt.DEFAULT_ROOT
    http_status: Callable[[str], int] = http_status
    docker_config: Path | None = None


class Wanted(NamedTuple):
    """What the host must be ready for."""

    platforms: tuple[str, ...]
    builder: str | None = None  # None: the current builder
    registry: str | None = None  # checked when images are to be pushed
    binfmt_image: str = DEFAULT_BINFMT_IMAGE
    builder_spec: BuilderSpec | None = None  # how to create the builder when it is missing


class Report(NamedTuple):
    checks: tuple[Check, ...]
    builder: Builder | None

    @property
    def ready(self) -> bool:
        return all(check.status != FAIL for check in self.checks)


def prefetched(host: Host, commands: list[tuple[str, ...]]) -> Host:
    """The host with the answers to `commands` fetched concurrently and remembered."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(commands)) as pool:
        answers = dict(zip(commands, pool.map(host.run, commands), strict=True))
    return host._replace(run=lambda cmd: answers[cmd] if cmd in answers else host.run(cmd))


def local_host(env: Mapping[str, str], machine: str) -> Host:
    config = (
        Path(env["DOCKER_CONFIG"]) if env.get("DOCKER_CONFIG") else Path(env.get("HOME", "/root")) / ".docker"
    )

    def run(cmd: tuple[str, ...]) -> Completed:
        try:
            return process.run(cmd, env=env, check=False, timeout=120)
        except FatalError as e:  # not installed, or timed out
            return Completed(cmd, 127, "", str(e))

    return Host(run=run, machine=machine, docker_config=config)


INFO = ("docker", "info", "--format", "{{json .}}")


def check(host: Host, wanted: Wanted) -> Report:
    # The docker CLI takes 0.1 to 0.3 s a call here: ask everything at once, then read answers.
    host = prefetched(host, [
        ("docker", "version", "--format", "{{json .}}"),
        ("docker", "buildx", "version"),
        ("docker", "buildx", "inspect", *([wanted.builder] if wanted.builder else [])),
        ("docker", "buildx", "ls", "--format", "json"),
        INFO,
    ])  # fmt: skip
    checks = [*check_docker(host)]
    if any(c.status == FAIL for c in checks):
        return Report(tuple(checks), None)
    builder_checks, builder = check_builder(host, wanted)
    checks += builder_checks
    state = binfmt.read(host.binfmt_root)
    if builder is not None:
        checks += [check_platform(host, builder, state, platform, wanted) for platform in wanted.platforms]
    if wanted.registry:
        checks.append(check_registry(host, wanted.registry))
    return Report(tuple(checks), builder)


# --- docker and buildx -----------------------------------------------------------------------


def check_docker(host: Host) -> list[Check]:
    version = host.run(("docker", "version", "--format", "{{json .}}"))
    if version.returncode == 127 or "not found on PATH" in version.stderr:
        return [
            Check(
                "docker",
                FAIL,
                "the docker CLI is not installed",
                "install Docker Engine and its CLI (https://docs.docker.com/engine/install/)",
            )
        ]
    data = _json(version.stdout)
    client = data.get("Client", {}).get("Version", "?")
    server = (data.get("Server") or {}).get("Version")
    if version.returncode != 0 or not server:
        tail = " ".join(process.tail_lines(version.stderr, 2)) or "no answer"
        return [
            Check(
                "docker",
                FAIL,
                f"the Docker daemon does not answer: {tail}",
                "start it (`sudo systemctl start docker`), or point DOCKER_HOST / `docker context use` "
                "at a running engine",
            )
        ]
    checks = [Check("docker", OK, f"client {client}, server {server}")]
    buildx = host.run(("docker", "buildx", "version"))
    found = re.search(r"\bv?(\d+)\.(\d+)(?:\.(\d+))?", buildx.stdout)
    install = (
        "install the buildx plugin (Debian/Ubuntu: `apt-get install docker-buildx`, or the "
        "docker-buildx binary in ~/.docker/cli-plugins/)"
    )
    if buildx.returncode != 0 or not found:
        checks.append(Check("buildx", FAIL, "docker buildx is not installed", install))
    elif (int(found.group(1)), int(found.group(2))) < MIN_BUILDX:
        checks.append(Check("buildx", FAIL, f"buildx {found.group(0)} is older than 0.13", install))
    else:
        checks.append(Check("buildx", OK, f"buildx {found.group(0).lstrip('v')}"))
    return checks


def check_builder(host: Host, wanted: Wanted) -> tuple[list[Check], Builder | None]:
    name = wanted.builder
    inspect = host.run(("docker", "buildx", "inspect", *([name] if name else [])))
    if inspect.returncode != 0:
        create = (
            f"docker buildx create --name {name or 'multi-arch'} --driver docker-container --use --bootstrap"
        )
        return [
            Check(
                "builder",
                FAIL,
                f"builder {name!r} does not exist" if name else "no current builder",
                f"create it: `{create}` (mab-hook doctor --fix does)",
            )
        ], None
    builder = builders.parse_inspect(inspect.stdout)
    listed = host.run(("docker", "buildx", "ls", "--format", "json"))
    if listed.returncode == 0:
        by_name = {b.name: b for b in builders.parse_ls_json(listed.stdout)}
        builder = by_name.get(builder.name, builder)
    checks = [_builder_status(builder), _driver(host, builder)]
    return checks, builder


def _builder_status(builder: Builder) -> Check:
    summary = f"{builder.name} ({builder.driver}, {len(builder.nodes)} node{'s' * (len(builder.nodes) != 1)})"
    if builder.running:
        return Check("builder", OK, f"{summary}, running")
    stopped = ", ".join(f"{n.name}: {n.status or 'unknown'}" for n in builder.nodes if n.status != "running")
    return Check(
        "builder",
        WARN,
        f"{summary} is not running ({stopped})",
        f"start it: `docker buildx inspect --bootstrap {builder.name}` (mab-hook doctor --fix does)",
    )


def _driver(host: Host, builder: Builder) -> Check:
    if builder.driver in builders.MULTI_PLATFORM_DRIVERS:
        return Check("driver", OK, f"the {builder.driver} driver builds several platforms at once")
    if builder.driver == "docker":
        status = _json(host.run(INFO).stdout).get("DriverStatus") or []
        if ["driver-type", "io.containerd.snapshotter.v1"] in status:
            return Check(
                "driver", OK, "the docker driver with the containerd image store builds several platforms"
            )
    return Check(
        "driver",
        FAIL,
        f"the {builder.driver} driver of builder {builder.name} cannot build several platforms at once",
        "either create a docker-container builder (`docker buildx create --name multi-arch --driver "
        'docker-container --use --bootstrap`, and set builder = "multi-arch"), or turn on the containerd '
        'image store (daemon.json: {"features": {"containerd-snapshotter": true}}, then restart dockerd)',
    )


# --- platforms -------------------------------------------------------------------------------


def check_platform(host: Host, builder: Builder, state: Binfmt, platform: str, wanted: Wanted) -> Check:
    name = f"platform {platform}"
    remote = [
        node
        for node in builder.nodes
        if not builder.node_is_local(node) and builders.lists(node.platforms, platform)
    ]
    if remote:
        node = remote[0]
        return Check(name, OK, f"served by node {node.name} ({node.endpoint})")
    local = [node for node in builder.nodes if builder.node_is_local(node)]
    if not local:
        return Check(
            name,
            FAIL,
            f"no node of builder {builder.name} can build {platform}",
            f"add a node for it: `docker buildx create --append --name {builder.name} --platform "
            f"{platform} <endpoint>`, or install emulators where the builder runs",
        )
    if binfmt.native(host.machine, platform):
        return Check(name, OK, f"native on this {host.machine} host")
    problem = emulation_problem(state, platform, wanted.binfmt_image)
    if problem is not None:
        return problem._replace(name=name)
    handler = state.handler_for(binfmt.arch_of(platform))
    assert handler is not None
    how = f"emulated by {handler.name} ({handler.interpreter}, flags {handler.flags})"
    if "F" not in handler.flags:
        return Check(
            name,
            WARN,
            f"{how}: without the F flag RUN steps in {platform} containers fail, because "
            "the kernel looks the interpreter up inside each container, where it does not exist",
            _install(wanted.binfmt_image, platform),
        )
    if not all(builders.lists(node.platforms, platform) for node in local if node.platforms):
        finding = f"{how}; builder {builder.name} does not list {platform}, but BuildKit runs it this way"
        return Check(name, WARN, finding, _unlisted_fix(builder, platform))
    return Check(name, OK, how)


def _unlisted_fix(builder: Builder, platform: str) -> str:
    symptom = f"if builds fail with 'runtime execution on platform {platform} not supported'"
    if builder.driver == "docker":  # the engine's own builder cannot be recreated
        return (
            f"{symptom}, use a docker-container builder: `docker buildx create --name multi-arch --driver "
            'docker-container --use --bootstrap`, and set builder = "multi-arch" in [tool.multiarch]'
        )
    return (
        f"{symptom}, recreate the builder so that it sees the emulators: `docker buildx rm {builder.name} "
        f"&& docker buildx create --name {builder.name} --driver {builder.driver} --use --bootstrap`"
    )


def emulation_problem(state: Binfmt, platform: str, image: str) -> Check | None:
    """Why QEMU through binfmt_misc cannot run `platform` programs here, or None."""
    arch = binfmt.arch_of(platform)
    if not state.mounted:
        return Check(
            "",
            FAIL,
            f"{state.root} is not mounted, so no emulator can run {platform} programs",
            f"`sudo mount -t binfmt_misc binfmt_misc {state.root}` (mab-hook doctor --fix does)",
        )
    if not state.enabled:
        return Check(
            "", FAIL, "binfmt_misc is disabled as a whole", f"`echo 1 | sudo tee {state.root}/status`"
        )
    handler = state.handler_for(arch)
    if handler is None:
        return Check(
            "", FAIL, f"no emulator is registered for {arch} ELF programs", _install(image, platform)
        )
    if not handler.enabled:
        return Check(
            "",
            FAIL,
            f"the {arch} emulator ({handler.name}) is registered but disabled",
            f"`echo 1 | sudo tee {state.root}/{handler.name}`",
        )
    if "F" not in handler.flags and not Path(handler.interpreter).exists():
        return Check(
            "",
            FAIL,
            f"{handler.name}'s interpreter {handler.interpreter} does not exist",
            _install(image, platform),
        )
    return None


def _install(image: str, platform: str) -> str:
    arch = binfmt.INSTALL_NAMES.get(binfmt.arch_of(platform), binfmt.arch_of(platform))
    return (
        f"install the emulator: `docker run --privileged --rm {image} --install {arch}` (or Debian's "
        "qemu-user-static), then run `mab-hook doctor` again"
    )


def probe(host: Host, builder: Builder, wanted: Wanted) -> list[Check]:
    """Run a program of each platform in a real (uncached, unexported) build on the builder."""
    checks = []
    for platform in wanted.platforms:
        name = f"probe {platform}"
        if not probes.supported(platform):
            checks.append(Check(name, WARN, f"no probe program for {platform}; its checks above stand alone"))
            continue
        result = probes.run(platform, builder.name, host.run)
        if result.returncode == 0:
            checks.append(Check(name, OK, f"a {platform} program ran in a build on {builder.name}"))
        else:
            finding = f"a {platform} program did not run: {probes.summary(result)}"
            checks.append(
                Check(
                    name, FAIL, finding, f"fix the platform {platform} check above, or recreate the builder"
                )
            )
    return checks


# --- registry --------------------------------------------------------------------------------


def check_registry(host: Host, registry: str) -> Check:
    server = registry.split("/", 1)[0]
    scheme = "http" if plain_http(server, insecure_registries(host)) else "https"
    url = f"{scheme}://{server}/v2/"
    try:
        status = host.http_status(url)
    except OSError as e:
        reason = getattr(e, "reason", e)
        return Check(
            "registry",
            FAIL,
            f"{url} does not answer ({reason})",
            "check the address in [tool.multiarch] registry and that the registry runs",
        )
    if status == 200:
        return Check("registry", OK, f"{url} answers")
    if status == 401:
        if _has_credentials(host.docker_config, server):
            return Check("registry", OK, f"{url} wants authentication; docker has credentials for {server}")
        return Check(
            "registry",
            FAIL,
            f"{url} wants authentication and docker has no credentials for {server}",
            f"`docker login {server}`",
        )
    return Check(
        "registry", FAIL, f"{url} answered HTTP {status}", "check the registry address and its health"
    )


def insecure_registries(host: Host) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The daemon's insecure registries: (names, CIDRs), from `docker info`."""
    info = _json(host.run(INFO).stdout).get("RegistryConfig") or {}
    names = tuple(
        name for name, index in (info.get("IndexConfigs") or {}).items() if not index.get("Secure", True)
    )
    return names, tuple(info.get("InsecureRegistryCIDRs") or ())


def _has_credentials(config_dir: Path | None, server: str) -> bool:
    if config_dir is None:
        return False
    config = _json((config_dir / "config.json").read_text() if (config_dir / "config.json").exists() else "")
    if not isinstance(config, dict):
        return False
    return (
        server in (config.get("auths") or {})
        or server in (config.get("credHelpers") or {})
        or bool(config.get("credsStore"))
    )


def _json(text: str) -> dict:  # type: ignore[type-arg]
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data  # type: ignore[no-any-return]


# --- fixes -----------------------------------------------------------------------------------


def apply_fixes(host: Host, report: Report, wanted: Wanted) -> list[str]:
    """The safe fixes: mount binfmt_misc, create and select a builder, bootstrap a stopped one.

    Emulators are not installed here: that runs a privileged container, so it is printed as a
    command, and checked afterwards by reading /proc, never by the installer's exit code.
    """
    done: list[str] = []
    failing = {check.name: check for check in report.checks if check.status != OK}
    if any("is not mounted" in check.finding for check in failing.values()):
        _do(host, ("mount", "-t", "binfmt_misc", "binfmt_misc", str(host.binfmt_root)), done)
    if "builder" in failing and report.builder is None:
        spec = wanted.builder_spec or BuilderSpec(wanted.builder or "multi-arch", "docker-container")
        for cmd in spec.create_commands():
            if not _do(host, cmd, done):
                break
    elif "builder" in failing and report.builder is not None:
        _do(host, ("docker", "buildx", "inspect", "--bootstrap", report.builder.name), done)
    return done


def _do(host: Host, cmd: tuple[str, ...], done: list[str]) -> bool:
    result = host.run(cmd)
    if result.returncode == 0:
        done.append(f"{' '.join(cmd)}: done")
        return True
    tail = " ".join(process.tail_lines(result.stderr + result.stdout, 2))
    done.append(f"{' '.join(cmd)}: failed (exit {result.returncode}): {tail}")
    return False
