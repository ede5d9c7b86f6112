"""Which mirrors serve Docker Hub to the builds, as the builder that pulls sees them.

The `docker` driver pulls through the engine, which tries its `registry-mirrors` (daemon.json,
`docker info`) before docker.io; a docker-container or kubernetes builder pulls itself and tries
the `mirrors` of `[registry."docker.io"]` in its own buildkitd.toml. On an intranet the mirror
is often the only way to Docker Hub, so base images are looked up through it too.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from mab_hook import buildkitd
from mab_hook.builders import Builder
from mab_hook.registry import plain_http


def from_engine(listed: Any) -> tuple[str, ...]:
    """The engine's registry-mirrors (URLs, `https://mirror.internal:5000/`), as
    `scheme://host[:port]`; one with a path, which the engine refuses, is left out."""
    found = []
    for url in listed if isinstance(listed, list) else ():
        parts = urllib.parse.urlsplit(str(url))
        if parts.scheme in ("http", "https") and parts.netloc and parts.path in ("", "/"):
            found.append(f"{parts.scheme}://{parts.netloc}")
    return tuple(found)


def from_builder(builder: Builder) -> tuple[str, ...]:
    """A builder's buildkitd.toml mirrors (`host[:port]`), each spoken to as its own section
    says (plain HTTP when `http = true`, or for a loopback mirror unless told otherwise)."""
    found: list[str] = []
    for node in builder.nodes:  # each node its own config (`--append --buildkitd-config`)
        files = dict(node.files)
        for host in buildkitd.registry(files, "docker.io").mirrors:
            if "/" in host:
                continue  # a path after the host: not a registry root we can ask
            plain = buildkitd.registry(files, host).schemes(loopback=plain_http(host)) == ("http",)
            found.append(f"{'http' if plain else 'https'}://{host}")
    return tuple(dict.fromkeys(found))
