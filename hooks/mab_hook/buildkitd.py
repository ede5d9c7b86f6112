"""A builder's own BuildKit registry settings, from the buildkitd.toml buildx gave it.

A docker-container or kubernetes builder runs BuildKit in a container of its own: it ignores the
engine's certs.d and insecure-registries and reads `[registry."host:port"]` of its buildkitd.toml
(`http`, `insecure`, `ca`, `keypair`, `mirrors`). buildx copies that file, and the CA and key
files it names, into the builder at creation (`--buildkitd-config`), rewriting their paths to
/etc/buildkit/certs/...; `docker buildx ls --format json` lists them all, so what the builder
trusts can be read without the builder running.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

# The drivers whose BuildKit reads a buildkitd.toml from buildx rather than the engine's settings.
CONFIGURED_DRIVERS = ("docker-container", "kubernetes")
CONFIG = "buildkitd.toml"
PREFIX = "/etc/buildkit/"  # where buildx puts the files inside the builder


class RegistrySettings(NamedTuple):
    """`[registry."host"]` of one builder node, its files resolved to their contents."""

    http: bool | None = None  # None: unset (BuildKit then speaks plain HTTP to loopback only)
    insecure: bool = False  # TLS without checking the certificate
    authorities: tuple[bytes, ...] = ()  # PEM CAs trusted on top of the system's
    client: tuple[bytes, bytes] | None = None  # PEM certificate and key (mTLS)
    unread: tuple[str, ...] = ()  # files it names that buildx did not copy (in the image, say)
    mirrors: tuple[str, ...] = ()

    def schemes(self, loopback: bool) -> tuple[str, ...]:
        """How BuildKit speaks to the registry, in the order it tries: "https" (verified),
        "https-unverified", "http". Plain HTTP when `http = true`, or unset for a loopback
        address; `insecure = true` tries TLS unchecked first (BuildKit's resolver)."""
        plain = self.http is True or (self.http is None and loopback)
        if self.insecure:
            return ("https-unverified", "http") if plain else ("https-unverified",)
        return ("http",) if plain else ("https",)


def registry(files: Mapping[str, bytes], host: str) -> RegistrySettings:
    """What the node's buildkitd.toml says for `host` (`registry.internal:5000`, `docker.io`);
    an unreadable file says nothing, as BuildKit would refuse to start with it."""
    section = _sections(files.get(CONFIG, b"")).get(host)
    if not isinstance(section, dict):
        return RegistrySettings()
    unread: list[str] = []

    def read(path: Any) -> bytes | None:
        found = files.get(str(path).removeprefix(PREFIX)) if isinstance(path, str) else None
        if found is None:
            unread.append(str(path))
        return found

    authorities = tuple(ca for ca in map(read, _strings(section.get("ca"))) if ca is not None)
    client = None
    for pair in section.get("keypair") or ():
        if isinstance(pair, dict) and client is None:
            cert, key = read(pair.get("cert")), read(pair.get("key"))
            client = (cert, key) if cert is not None and key is not None else None
    http = section.get("http")
    return RegistrySettings(
        http if isinstance(http, bool) else None,
        section.get("insecure") is True,
        authorities,
        client,
        tuple(unread),
        _strings(section.get("mirrors")),
    )


def _sections(text: bytes) -> dict[str, Any]:
    try:
        data = tomllib.loads(text.decode("utf-8", "replace"))
    except tomllib.TOMLDecodeError:
        return {}
    found = data.get("registry")
    return found if isinstance(found, dict) else {}


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(item for item in value if isinstance(item, str)) if isinstance(value, list) else ()


def relaxed(nodes_files: Iterable[Mapping[str, bytes]]) -> tuple[str, ...]:
    """The registries some node's buildkitd.toml speaks plain HTTP or unchecked TLS to: what
    the engine's insecure-registries list is for the docker driver."""
    found = set()
    for files in nodes_files:
        for host, section in _sections(files.get(CONFIG, b"")).items():
            if isinstance(section, dict) and (section.get("http") is True or section.get("insecure") is True):
                found.add(host)
    return tuple(sorted(found))
