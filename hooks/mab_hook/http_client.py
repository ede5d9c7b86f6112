"""The one HTTP helper: a request, its answer as data, whatever the status.

urllib raises for every status above 399; registries answer 401 and 404 as a matter of
course, so those come back as answers, and only a request that got none raises (OSError:
refused, unknown host, TLS, timeout).
"""

from __future__ import annotations

import http.client
import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import IO, NamedTuple

TIMEOUT = 10.0


class Response(NamedTuple):
    status: int
    headers: Mapping[str, str]  # names lowercased
    body: bytes  # b"" when a successful answer's body went to `consume`
    consumed: object = None  # what `consume` made of the body

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def request(
    url: str,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    authorization: str | None = None,
    timeout: float = TIMEOUT,
    consume: Callable[[IO[bytes]], object] | None = None,
    context: ssl.SSLContext | None = None,
) -> Response:
    """One request. `authorization` is never sent on to where a redirect leads (a registry
    may redirect to blob storage on another host). `consume`: reads a successful answer's body
    as it streams (a layer of gigabytes), instead of it being held. `context`: the TLS trust of
    an https URL (a registry's CA, its client certificate); None: the system's."""
    req = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    if authorization:
        req.add_unredirected_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as answer:
            headers = _headers(answer.headers.items())
            if consume is not None:
                return Response(answer.status, headers, b"", consume(answer))
            return Response(answer.status, headers, answer.read())
    except urllib.error.HTTPError as e:
        with e:
            return Response(e.code, _headers(e.headers.items()), e.read())


def local(
    socket_path: str,
    path: str,
    *,
    timeout: float = TIMEOUT,
    consume: Callable[[IO[bytes]], object] | None = None,
) -> Response:
    """A GET to a server on a unix socket: the Docker engine's API, where each docker CLI call
    costs a start-up of 0.1 to 0.2 s. `consume` as for `request`."""
    connection = _UnixConnection(socket_path, timeout)
    try:
        connection.request("GET", path, headers={"Host": "docker"})
        answer = connection.getresponse()
        headers = _headers(answer.getheaders())
        if consume is not None and 200 <= answer.status < 300:
            return Response(answer.status, headers, b"", consume(answer))
        return Response(answer.status, headers, answer.read())
    finally:
        connection.close()


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, socket_path: str, timeout: float) -> None:
        super().__init__("docker", timeout=timeout)
        self.socket_path = socket_path

    def connect(self) -> None:
        connected = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # type: ignore[attr-defined,unused-ignore]
        connected.settimeout(self.timeout)
        try:
            connected.connect(self.socket_path)
        except OSError:
            connected.close()
            raise
        self.sock = connected


def _headers(items: object) -> dict[str, str]:
    return {str(name).lower(): str(value) for name, value in items}  # type: ignore[attr-defined]
