"""The one HTTP helper: a request, its answer as data, whatever the status.

urllib raises for every status above 399; registries answer 401 and 404 as a matter of
course, so those come back as answers, and only a request that got none raises (OSError:
refused, unknown host, TLS, timeout).

With `Connections`, requests to a server reuse the connections earlier ones left open (HTTP/1.1
keep-alive): a push asks a registry hundreds of times, and over TLS each new connection is a
handshake. What a proxy carries, and wherever a redirect leads, goes through urllib as before.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import IO, NamedTuple

TIMEOUT = 10.0
USER_AGENT = f"Python-urllib/{sys.version_info[0]}.{sys.version_info[1]}"  # as urllib says it
KEEP = 16  # idle connections kept per server (requests run at most 16 at once)
REDIRECTS = frozenset({301, 302, 303, 307, 308})


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
    connections: Connections | None = None,
) -> Response:
    """One request. `authorization` is never sent on to where a redirect leads (a registry
    may redirect to blob storage on another host). `consume`: reads a successful answer's body
    as it streams (a layer of gigabytes), instead of it being held. `context`: the TLS trust of
    an https URL (a registry's CA, its client certificate); None: the system's. `connections`:
    where open connections are kept for the next request (None: one connection a request)."""
    if connections is not None and connections.direct(url):
        asked = _Asked(url, method, headers or {}, body, authorization, timeout, consume, context)
        return _kept_alive(connections, asked)
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


class Connections:
    """Connections to servers left open by one request for the next (keep-alive), per server
    and TLS context; each serves one request at a time. Thread-safe."""

    def __init__(self, keep: int = KEEP) -> None:
        self.keep = keep
        self._lock = threading.Lock()
        self._idle: dict[tuple[str, str, ssl.SSLContext | None], list[http.client.HTTPConnection]] = {}
        self._proxies = urllib.request.getproxies()  # what urllib would send through a proxy

    def direct(self, url: str) -> bool:
        """Whether urllib would connect to the URL's server itself (no proxy for it)."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https"):
            return False
        return parts.scheme not in self._proxies or bool(urllib.request.proxy_bypass(parts.hostname or ""))

    def take(
        self, scheme: str, netloc: str, context: ssl.SSLContext | None, timeout: float
    ) -> tuple[http.client.HTTPConnection, bool]:
        """An open connection to the server if one is idle (and True), else a new one."""
        with self._lock:
            idle = self._idle.get(_server(scheme, netloc, context))
            connection = idle.pop() if idle else None
        if connection is not None:
            connection.timeout = timeout
            if connection.sock is not None:
                connection.sock.settimeout(timeout)
            return connection, True
        if scheme == "https":
            return http.client.HTTPSConnection(netloc, timeout=timeout, context=context), False
        return http.client.HTTPConnection(netloc, timeout=timeout), False

    def give_back(self, scheme: str, netloc: str, context: ssl.SSLContext | None,
                  connection: http.client.HTTPConnection) -> None:  # fmt: skip
        with self._lock:
            idle = self._idle.setdefault(_server(scheme, netloc, context), [])
            if len(idle) < self.keep:
                idle.append(connection)
                return
        connection.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = [c for kept in self._idle.values() for c in kept], {}
        for connection in idle:
            connection.close()

    def __del__(self) -> None:
        self.close()


def _server(
    scheme: str, netloc: str, context: ssl.SSLContext | None
) -> tuple[str, str, ssl.SSLContext | None]:
    """What a kept connection serves: a server, and over TLS the trust it was made with."""
    return scheme, netloc, context if scheme == "https" else None


class _Asked(NamedTuple):
    url: str
    method: str
    headers: Mapping[str, str]
    body: bytes | None
    authorization: str | None
    timeout: float
    consume: Callable[[IO[bytes]], object] | None
    context: ssl.SSLContext | None


def _kept_alive(connections: Connections, asked: _Asked) -> Response:
    """`request` on a kept connection. A connection the server closed while it was idle is
    found on its first use (no answer at all): the request goes once more on a new one."""
    parts = urllib.parse.urlsplit(asked.url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    auth = {"Authorization": asked.authorization} if asked.authorization else {}
    sent = {"User-Agent": USER_AGENT, **asked.headers, **auth}
    while True:
        connection, reused = connections.take(parts.scheme, parts.netloc, asked.context, asked.timeout)
        try:
            connection.request(asked.method, target, body=asked.body, headers=sent)
            answer = connection.getresponse()
        except (ConnectionResetError, BrokenPipeError) as e:  # RemoteDisconnected is one
            connection.close()
            if reused:
                continue
            raise urllib.error.URLError(e) from e
        except OSError as e:  # as urllib raises it: the reason is what went wrong (TLS, refused)
            connection.close()
            raise urllib.error.URLError(e) from e
        except BaseException:
            connection.close()
            raise
        break
    try:
        found = _answer(answer, asked.consume)
    except BaseException:
        connection.close()
        raise
    if answer.isclosed() and not answer.will_close:
        connections.give_back(parts.scheme, parts.netloc, asked.context, connection)
    else:  # the server closes it, or what consumed the answer left some of it unread
        connection.close()
    return _redirected(asked, found) if found.status in REDIRECTS else found


def _answer(answer: http.client.HTTPResponse, consume: Callable[[IO[bytes]], object] | None) -> Response:
    headers = _headers(answer.getheaders())
    if consume is not None and 200 <= answer.status < 300:
        return Response(answer.status, headers, b"", consume(answer))
    return Response(answer.status, headers, answer.read())


def _redirected(asked: _Asked, found: Response) -> Response:
    """Where a redirect leads, as urllib follows it: a GET or HEAD goes on there, a POST that
    a 301, 302 or 303 sends on becomes a GET without its body, others are the answer; never
    with the Authorization the first request carried (blob storage is another server)."""
    location = found.headers.get("location") or found.headers.get("uri")
    if not location:
        return found
    if asked.method in ("GET", "HEAD"):
        method, headers = asked.method, dict(asked.headers)
    elif asked.method == "POST" and found.status in (301, 302, 303):
        method = "GET"
        headers = {
            k: v for k, v in asked.headers.items() if k.lower() not in ("content-length", "content-type")
        }
    else:
        return found
    return request(
        urllib.parse.urljoin(asked.url, location),
        method=method,
        headers=headers,
        timeout=asked.timeout,
        consume=asked.consume,
        context=asked.context,
    )


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
        return _answer(connection.getresponse(), consume)
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
