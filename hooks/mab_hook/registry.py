"""The two registry questions of a push whose images are already built, over the registry's
own HTTP API (the OCI distribution spec): is this tag there, and tag this manifest anew.

Each `docker buildx imagetools` call costs some 90 ms of Go start-up, and a repeat push asks
two per image. Straight HTTP answers in milliseconds, and a new tag is the very manifest (the
same digest). It is only the fast path: where the registry wants credentials or does not
answer as expected, the answer is None, and the caller asks buildx, which knows docker's
credentials, certificates and mirrors.
"""

from __future__ import annotations

import ipaddress
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import NamedTuple

MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)
TIMEOUT = 10.0


class Reference(NamedTuple):
    server: str  # host[:port]
    repository: str
    tag: str

    @classmethod
    def parse(cls, reference: str) -> Reference | None:
        """host[:port]/path:tag; None for anything else (Docker Hub's short names, digests)."""
        server, _, rest = reference.partition("/")
        repository, _, tag = rest.rpartition(":")
        # Docker's rule: the first part names a registry when it has a "." or ":" in it.
        names_registry = "." in server or ":" in server or server == "localhost"
        if not names_registry or not repository or "@" in reference:
            return None
        return cls(server, repository, tag)

    def url(self, tag: str | None = None) -> str:
        # Without `docker info` (as slow as buildx), the daemon's insecure registries are not
        # known: https fails for those, and the caller takes the slow path.
        scheme = "http" if plain_http(self.server) else "https"
        return f"{scheme}://{self.server}/v2/{self.repository}/manifests/{tag or self.tag}"


def exists(reference: str) -> bool | None:
    """Whether the registry has the tag; None when it would not say without credentials."""
    ref = Reference.parse(reference)
    if ref is None:
        return None
    try:
        _request(ref.url(), "HEAD")
    except urllib.error.HTTPError as e:
        return False if e.code == 404 else None
    except OSError:
        return None
    return True


def tag(source: str, tags: Sequence[str]) -> bool:
    """Put the manifest of `source` under every tag (in its repository); False when the
    registry did not let us (credentials wanted, say): then nothing may have been tagged."""
    ref = Reference.parse(source)
    targets = [target for t in tags if (target := Reference.parse(t)) is not None]
    if ref is None or len(targets) != len(tags) or any(t[:2] != ref[:2] for t in targets):
        return False
    try:
        body, media_type = _request(ref.url(), "GET")
        for target in targets:
            _request(target.url(), "PUT", body, media_type)
    except OSError:  # HTTPError included
        return False
    return True


def _request(url: str, method: str, body: bytes | None = None, media_type: str = "") -> tuple[bytes, str]:
    headers = {"Content-Type": media_type} if body is not None else {"Accept": MANIFEST_TYPES}
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        return response.read(), response.headers.get("Content-Type", "")


def plain_http(server: str, insecure: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())) -> bool:
    """Whether dockerd talks plain http to a registry: loopback addresses (127.0.0.0/8, ::1,
    localhost), and the daemon's insecure-registries (names, and CIDRs of addresses), which
    only `docker info` knows."""
    names, cidrs = insecure
    if server in names:
        return True
    host = server[1:].split("]", maxsplit=1)[0] if server.startswith("[") else server.rsplit(":", 1)[0]
    if host == "localhost" or host in names:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or any(address in ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)
