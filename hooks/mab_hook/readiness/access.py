"""Readiness of the registry images are pushed to: one authenticated request before any build."""

from __future__ import annotations

from mab_hook import references
from mab_hook.readiness.model import FAIL, OK, Check, Host
from mab_hook.registry import Insecure

FIXES = {
    "unreachable": "check the address in [tool.multiarch] registry and that the registry runs",
    "no-credentials": "`docker login {server}`",
    "refused": "`docker login {server}` with credentials that may push there",
    "error": "check the registry address and its health",
    "plain-http": "serve it over HTTPS, or add it to the engine's insecure registries: "
    '"insecure-registries": ["{server}"] in /etc/docker/daemon.json, then restart dockerd',
    "untrusted": "put the CA certificate that signed it in /etc/docker/certs.d/{server}/ca.crt (the engine, "
    "which uploads, reads it there) and in ~/.docker/certs.d/{server}/ca.crt, as Docker's docs say",
}


def check_registry(host: Host, repository: str, insecure: Insecure, *, engine_here: bool = False) -> Check:
    """`engine_here`: the engine runs on this machine, so what it trusts can be read here."""
    access = host.access(repository, insecure)
    server = references.parse(repository).domain
    distrust = host.engine_distrust(repository, insecure) if access.ok and engine_here else None
    if distrust is not None:
        fix = (f"put the CA certificate as ca.crt in /etc/docker/certs.d/{server}/ (the engine uploads, and "
               "reads it there; no restart needed)")  # fmt: skip
        return Check("registry", FAIL, distrust, fix, "registry-engine-untrusted")
    if access.ok:
        return Check("registry", OK, access.detail)
    fix = FIXES.get(access.code, FIXES["error"]).format(server=server)
    return Check("registry", FAIL, access.detail, fix, f"registry-{access.code}")
