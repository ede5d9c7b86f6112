"""Readiness of each platform: a builder node that serves it, the machine itself, or QEMU
through binfmt_misc, and what a real probe build says."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from mab_hook import builders, platforms
from mab_hook import probe as probes
from mab_hook.binfmt import Binfmt
from mab_hook.builders import Builder, Node
from mab_hook.readiness.location import Engine
from mab_hook.readiness.model import FAIL, OK, WARN, Check, Host, Wanted


class Scope(NamedTuple):
    """What every platform is checked against."""

    host: Host
    builder: Builder
    state: Binfmt  # this machine's binfmt_misc
    wanted: Wanted
    engine: Engine | None = None  # None: not located (the engine is taken to be here)


def check_platform(scope: Scope, platform: str) -> Check:
    host, builder, state, wanted, engine = scope
    key = f"platform:{platform}"
    remote = [
        node
        for node in builder.nodes
        if not builder.node_is_local(node) and builders.lists(node.platforms, platform)
    ]
    if remote:
        node = remote[0]
        return Check(key, OK, f"served by node {node.name} ({node.endpoint})")
    local = [node for node in builder.nodes if builder.node_is_local(node)]
    if not local or platforms.parse(platform).os != "linux":
        return _no_node(key, builder, platform)
    if engine is not None and not engine.local:
        return engine_side(scope._replace(engine=engine), local, platform)
    if platforms.runs_natively(host.machine, platform):
        return Check(key, OK, f"native on this {host.machine} host")
    problem = emulation_problem(state, platform, wanted.binfmt_image)
    if problem is not None:
        return problem._replace(id=key)
    handler = state.handler_for(platforms.arch_of(platform))
    assert handler is not None  # emulation_problem said there is one
    how = f"emulated by {handler.name} ({handler.interpreter}, flags {handler.flags})"
    if "F" not in handler.flags:
        finding = (
            f"{how}: without the F flag RUN steps in {platform} containers fail, because "
            "the kernel looks the interpreter up inside each container, where it does not exist"
        )
        return Check(key, WARN, finding, install_fix(wanted.binfmt_image, platform), "emulator-without-f")
    if not all(builders.lists(node.platforms, platform) for node in local if node.platforms):
        finding = f"{how}; builder {builder.name} does not list {platform}, but BuildKit runs it this way"
        return Check(key, WARN, finding, _unlisted_fix(builder, platform, wanted), "platform-unlisted")
    return Check(key, OK, how)


def engine_side(scope: Scope, nodes: list[Node], platform: str) -> Check:
    """A platform judged where the engine runs: its own machine, the platforms its builder
    lists (BuildKit derives them from the engine's kernel), else a probe build, remembered."""
    host, builder, _state, wanted, engine = scope
    assert engine is not None
    key = f"platform:{platform}"
    side = "emulation judged on the engine's side"
    if platforms.runs_natively(engine.architecture, platform):
        return Check(key, OK, f"native on the engine's {engine.architecture} machine")
    if all(builders.lists(node.platforms, platform) for node in nodes if node.platforms) and any(
        node.platforms for node in nodes
    ):
        return Check(key, OK, f"builder {builder.name} lists it ({side})")
    ran = host.probe(platform, builder.name, engine.id)
    if ran:
        return Check(key, OK, f"a {platform} program ran in a build on {builder.name} ({side}, by a probe)")
    fix = engine_fix(wanted.binfmt_image, platform, builder, engine)
    if ran is None:
        finding = f"builder {builder.name} does not list {platform}, and no probe program can tell ({side})"
        return Check(key, WARN, finding, fix, "engine-unknown")
    finding = f"the engine ({engine.where}) cannot run {platform} programs: a probe build failed"
    return Check(key, FAIL, finding, fix, "engine-cannot-emulate")


def engine_fix(image: str, platform: str, builder: Builder, engine: Engine) -> str:
    """What installs emulation where the engine runs, not on this machine."""
    arch = platforms.ARCHES.get(platforms.arch_of(platform))
    name = arch.installer if arch is not None else platforms.arch_of(platform)
    install = f"docker run --privileged --rm {image} --install {name}"
    fixes = [
        f"install the emulator where the engine runs: `{install}` (it runs on the engine's machine or VM)"
    ]
    if "Docker Desktop" in engine.where:
        fixes.append(
            'Docker Desktop: turn on "Use containerd for pulling and storing images" for '
            "multi-platform builds"
        )
    if "colima" in engine.where or "lima" in engine.where:
        fixes.append(
            f"colima: `colima start --arch {name}` (a VM of that architecture), or `colima start "
            "--vm-type vz --vz-rosetta` for amd64 on Apple silicon"
        )
    fixes.append(
        f"or a native node: `docker buildx create --append --name {builder.name} --platform "
        f"{platform} <endpoint>`"
    )
    return "; ".join(fixes)


def _no_node(key: str, builder: Builder, platform: str) -> Check:
    os_name = platforms.parse(platform).os
    finding = f"no node of builder {builder.name} can build {platform}"
    if os_name != "linux":
        finding += f" (QEMU emulates CPUs, not operating systems: {os_name} images need a {os_name} node)"
    node = f"--platform {platform} <endpoint>`"
    if builder.driver == "docker":  # the engine's own builder takes no other node
        add = (
            f"create a builder with a node for it: `docker buildx create --name multi-arch {node}, "
            'and set builder = "multi-arch" in [tool.multiarch]'
        )
    else:
        add = f"add a node for it: `docker buildx create --append --name {builder.name} {node}"
    # Emulators help with another CPU only; another operating system needs a node of its own.
    fix = add if os_name != "linux" else f"{add}, or install emulators where the builder runs"
    return Check(key, FAIL, finding, fix, "no-node")


def _unlisted_fix(builder: Builder, platform: str, wanted: Wanted) -> str:
    """Recreated, the user's current builder (none is configured) must be current again; a
    configured one is passed as `--builder` and needs no `--use`. Its driver options are kept."""
    symptom = f"if builds fail with 'runtime execution on platform {platform} not supported'"
    if builder.driver == "docker":  # the engine's own builder cannot be recreated
        create = wanted.new_builder("multi-arch").command_text()
        configure = 'and set builder = "multi-arch" in [tool.multiarch]'
        return f"{symptom}, use a docker-container builder: `{create}`, {configure}"
    again = builder.recreate_text(use=wanted.builder is None)
    return f"{symptom}, recreate the builder so that it sees the emulators: `{again}`"


def emulation_problem(state: Binfmt, platform: str, image: str) -> Check | None:
    """Why QEMU through binfmt_misc cannot run `platform` programs here, or None."""
    arch = platforms.arch_of(platform)
    if not state.mounted:
        finding = f"{state.root} is not mounted, so no emulator can run {platform} programs"
        fix = f"`sudo mount -t binfmt_misc binfmt_misc {state.root}` (mab-hook doctor --fix does)"
        return Check("", FAIL, finding, fix, "binfmt-unmounted")
    if not state.enabled:
        fix = f"`echo 1 | sudo tee {state.root}/status`"
        return Check("", FAIL, "binfmt_misc is disabled as a whole", fix, "binfmt-disabled")
    handler = state.handler_for(arch)
    if handler is None:
        finding = f"no emulator is registered for {arch} ELF programs"
        return Check("", FAIL, finding, install_fix(image, platform), "emulator-missing")
    if not handler.enabled:
        finding = f"the {arch} emulator ({handler.name}) is registered but disabled"
        return Check(
            "", FAIL, finding, f"`echo 1 | sudo tee {state.root}/{handler.name}`", "emulator-disabled"
        )
    if "F" not in handler.flags and not Path(handler.interpreter).exists():
        finding = f"{handler.name}'s interpreter {handler.interpreter} does not exist"
        return Check("", FAIL, finding, install_fix(image, platform), "interpreter-missing")
    return None


def install_fix(image: str, platform: str) -> str:
    arch = platforms.ARCHES.get(platforms.arch_of(platform))
    name = arch.installer if arch is not None else platforms.arch_of(platform)
    return (
        f"install the emulator: `docker run --privileged --rm {image} --install {name}` (or Debian's "
        "qemu-user-static), then run `mab-hook doctor` again"
    )


def probe(host: Host, builder: Builder, wanted: Wanted) -> list[Check]:
    """Run a program of each platform in a real (uncached, unexported) build on the builder."""
    checks = []
    for platform in wanted.platforms:
        key = f"probe:{platform}"
        if not probes.supported(platform):
            checks.append(Check(key, WARN, f"no probe program for {platform}; its checks above stand alone"))
            continue
        result = probes.build_probe(platform, builder.name, host.run)
        if result.returncode == 0:
            checks.append(Check(key, OK, f"a {platform} program ran in a build on {builder.name}"))
            continue
        finding = f"a {platform} program did not run: {probes.summary(result)}"
        fix = f"fix the platform {platform} check above, or recreate the builder"
        checks.append(Check(key, FAIL, finding, fix, "probe-failed"))
    return checks
