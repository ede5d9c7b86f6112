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
    "untrusted": "put the CA certificate that signed it in /etc/docker/certs.d/{server}/ca.crt (the engine, "
    "which uploads, reads it there) and in ~/.docker/certs.d/{server}/ca.crt, as Docker's docs say",
}


def check_registry(host: Host, repository: str, insecure: Insecure) -> Check:
    access = host.access(repository, insecure)
    if access.ok:
        return Check("registry", OK, access.detail)
    server = references.parse(repository).domain
    fix = FIXES.get(access.code, FIXES["error"]).format(server=server)
    return Check("registry", FAIL, access.detail, fix, f"registry-{access.code}")
