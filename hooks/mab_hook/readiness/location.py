"""Where the engine runs: on this machine's kernel, in a VM (Docker Desktop, colima, Rancher
Desktop, OrbStack), or on another machine (`DOCKER_HOST=ssh://...`, `tcp://...`, a docker
context). Only an engine on this kernel is helped or hurt by this machine's binfmt_misc;
elsewhere, emulation is judged on the engine's side.

Decided from what docker says (the current context's endpoint, `docker info`) against this
machine (`sys.platform`, its host name, its kernel release).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import NamedTuple

from mab_hook import credentials
from mab_hook.readiness.model import CONTEXT, INFO, OK, Check, Host, parse_json

# What `docker info` calls the operating system of engines that run in a VM of their own.
VM_SYSTEMS = {
    "Docker Desktop": "a Docker Desktop VM",
    "OrbStack": "an OrbStack VM",
    "Rancher Desktop": "a Rancher Desktop VM",
    "colima": "a colima VM",
    "lima": "a lima VM",
    "Boot2Docker": "a boot2docker VM",
}
# Sockets that VM engines forward to the client machine.
VM_SOCKETS = {
    "/.docker/run/docker.sock": "a Docker Desktop VM",
    "/.colima/": "a colima VM",
    "/.orbstack/": "an OrbStack VM",
    "/.rd/": "a Rancher Desktop VM",
    "/.lima/": "a lima VM",
    "dockerDesktopLinuxEngine": "a Docker Desktop VM",  # npipe:////./pipe/dockerDesktopLinuxEngine
}
CLIENTS = {"darwin": "macOS", "win32": "Windows"}
LOCAL_SCHEMES = ("unix://",)
DEFAULT_SOCKET = "/var/run/docker.sock"


class Engine(NamedTuple):
    local: bool  # shares this machine's kernel: its binfmt_misc is this machine's
    where: str  # "this machine", "a Docker Desktop VM", "another machine (ssh://...)"
    context: str
    endpoint: str
    kernel: str
    architecture: str  # `uname -m` of the engine's machine
    id: str  # the engine's ID, what probe results are remembered by


def locate(host: Host) -> Engine:
    context = parse_json(host.run(CONTEXT).stdout)
    endpoint = str(((context.get("Endpoints") or {}).get("docker") or {}).get("Host", ""))
    name = str(context.get("Name", "default"))
    info = parse_json(host.run(INFO).stdout)
    kernel, arch = str(info.get("KernelVersion", "")), str(info.get("Architecture", ""))
    where = _where(host, endpoint, info)
    found = Engine(
        where is None, where or "this machine", name, endpoint, kernel, arch, str(info.get("ID", ""))
    )
    return found


def _where(host: Host, endpoint: str, info: dict[str, object]) -> str | None:
    """Where the engine is, when not on this machine's kernel; None when it is."""
    system, name = str(info.get("OperatingSystem", "")), str(info.get("Name", ""))
    vm = next(
        (what for marker, what in VM_SYSTEMS.items() if marker.lower() in f"{system} {name}".lower()), None
    )
    if vm is None:
        vm = next((what for marker, what in VM_SOCKETS.items() if marker in endpoint), None)
    if vm is not None:
        return vm
    if host.client_os in CLIENTS:
        return f"another machine or a VM ({CLIENTS[host.client_os]} runs no Linux engine itself)"
    if endpoint and not endpoint.startswith(LOCAL_SCHEMES):
        return f"another machine ({endpoint})"
    if name and host.hostname and name != host.hostname:
        return f"another machine ({name}, this is {host.hostname})"
    if info.get("KernelVersion") and host.kernel and info.get("KernelVersion") != host.kernel:
        return f"another kernel ({info.get('KernelVersion')}, this one runs {host.kernel})"
    return None


def engine_socket(env: Mapping[str, str]) -> str | None:
    """The unix socket docker itself talks to the engine on, when it is one: `DOCKER_HOST`'s, or
    the default socket when neither `DOCKER_CONTEXT` nor docker's config names a context
    (a context, ssh or tcp: None; ask the docker CLI)."""
    host = env.get("DOCKER_HOST", "")
    if host:
        return host.removeprefix("unix://") if host.startswith("unix://") else None
    context = env.get("DOCKER_CONTEXT") or str(credentials.load_config(env).get("currentContext") or "")
    if context not in ("", "default") or not os.path.exists(DEFAULT_SOCKET):
        return None
    return DEFAULT_SOCKET


def check_engine(engine: Engine) -> Check:
    via = f"context {engine.context}" + (f", {engine.endpoint}" if engine.endpoint else "")
    kernel = f", kernel {engine.kernel}" if engine.kernel else ""
    if engine.local:
        return Check("engine", OK, f"on this machine's kernel ({via}): emulation judged by its binfmt_misc")
    return Check("engine", OK, f"{engine.where}{kernel} ({via}); emulation judged on the engine's side")
