"""Readiness of the registry images are pushed to: one authenticated request before any build."""

from __future__ import annotations

from mab_hook import buildkitd, mirrors, references
from mab_hook.builders import Builder
from mab_hook.readiness.model import FAIL, INFO, OK, WARN, Check, Host, parse_json
from mab_hook.registry import Insecure, plain_http

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


def check_registry(
    host: Host,
    repository: str,
    insecure: Insecure,
    *,
    engine_here: bool = False,
    builder: Builder | None = None,
) -> Check:
    """`engine_here`: the engine runs on this machine, so what it trusts can be read here;
    `builder`: the one that uploads (a docker-container builder trusts what its own
    buildkitd.toml says, not the engine)."""
    access = host.access(repository, insecure)
    server = references.parse(repository).domain
    if not access.ok:
        fix = FIXES.get(access.code, FIXES["error"]).format(server=server)
        return Check("registry", FAIL, access.detail, fix, f"registry-{access.code}")
    if builder is not None and builder.driver in buildkitd.CONFIGURED_DRIVERS:
        return _builder_check(host, repository, insecure, builder) or Check("registry", OK, access.detail)
    distrust = host.engine_distrust(repository, insecure) if engine_here else None
    if distrust is not None:
        fix = (
            f"put the CA certificate as ca.crt in /etc/docker/certs.d/{server}/ (the engine uploads, and "
            "reads it there; no restart needed)"
        )
        return Check("registry", FAIL, distrust, fix, "registry-engine-untrusted")
    return Check("registry", OK, access.detail)


def _builder_check(host: Host, repository: str, insecure: Insecure, builder: Builder) -> Check | None:
    """What each node of a builder with a BuildKit of its own would make of the registry."""
    server = references.parse(repository).api_host
    for node in builder.nodes:
        if plain_http(server) and node.driver_opt("network") != "host":
            finding = (
                f"builder {builder.name}'s BuildKit runs in a container of its own, where {server} "
                "is that container, not this machine"
            )
            fix = _recreate(builder, ("network", "host"))
            return Check("registry", FAIL, finding, fix, "registry-builder-loopback")
        settings = buildkitd.registry(dict(node.files), server)
        said = host.builder_distrust(repository, insecure, settings, builder.name)
        if said is not None:
            finding, entry = said
            fix = f'add [registry."{server}"] {entry} to a buildkitd.toml, then ' + _recreate(builder)
            return Check("registry", FAIL, finding, fix, "registry-builder-untrusted")
    return None


def _recreate(builder: Builder, option: tuple[str, str] | None = None) -> str:
    """With `option` among its driver options, or else with a buildkitd.toml."""
    return f"recreate it: `{builder.recreate_text(option=option, config='' if option else 'buildkitd.toml')}`"


def check_mirror(host: Host, builder: Builder, insecure: Insecure) -> Check:
    """Which mirror serves Docker Hub to the builds (the engine's registry-mirrors, or the
    builder's own buildkitd.toml), and whether it answers: on an intranet a base from Docker
    Hub can be pulled through it only."""
    if builder.driver in buildkitd.CONFIGURED_DRIVERS:
        found, whose = mirrors.from_builder(builder), f"builder {builder.name}'s buildkitd.toml"
    else:
        info = parse_json(host.run(INFO).stdout).get("RegistryConfig") or {}
        found, whose = mirrors.from_engine(info.get("Mirrors")), "the engine's registry-mirrors"
    if not found:
        return Check("mirror", OK, "Docker Hub directly: no mirror is set up for it")
    answers = []
    for mirror in found:
        scheme, _, server = mirror.partition("://")
        relaxed = ((*insecure[0], server), insecure[1]) if scheme == "http" else insecure
        access = host.access(f"{server}/library/busybox", relaxed)
        if access.ok:
            return Check("mirror", OK, f"Docker Hub through {mirror} ({whose}): {access.detail}")
        answers.append(access.detail)
    fix = (
        f"check that {found[0]} runs and that docker is logged in to it if it wants credentials; or "
        f"take it out of {whose}"
    )
    finding = f"Docker Hub's mirror ({whose}) does not answer: {'; '.join(answers)}"
    return Check("mirror", WARN, finding, fix, "mirror-down")
