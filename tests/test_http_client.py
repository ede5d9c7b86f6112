"""The one HTTP helper with kept connections: real HTTP/1.1 servers on loopback count the
connections and see what each request carried; then the lab's registry (distribution), which is
what a push talks to hundreds of times."""

from __future__ import annotations

import http.client
import http.server
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any

import pytest

from mab_hook import http_client
from mab_hook.http_client import Connections
from mab_hook.registry import Registry
from tests.conftest import Lab


class Seen:
    """What a server was asked: each request's line and headers, and the connections made."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.connections = 0
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []


Answer = Callable[[http.server.BaseHTTPRequestHandler], tuple[int, dict[str, str], bytes]]


def ok(handler: http.server.BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
    return (
        (404 if handler.path.endswith("/missing") else 200),
        {"X-Path": handler.path},
        b"body of " + handler.path.encode(),
    )


class Server:
    """An HTTP/1.1 server (keep-alive) on a free loopback port; `answer` makes each answer;
    `close_after`: it closes each connection after answering without saying so (as a server
    closes a connection left idle too long)."""

    def __init__(self, answer: Answer = ok, *, close_after: bool = False) -> None:
        seen = self.seen = Seen()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with seen.lock:
                    seen.connections += 1

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with seen.lock:
                    seen.requests.append((self.command, self.path, dict(self.headers.items()), body))
                status, headers, data = answer(self)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                self.close_connection = close_after

            do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _any

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    found = Server()
    yield found
    found.close()


@pytest.fixture
def connections() -> Iterator[Connections]:
    kept = Connections()
    yield kept
    kept.close()


def test_requests_to_one_server_share_a_kept_connection_and_answers_are_as_before(
    server: Server, connections: Connections
) -> None:
    for path in ("/v2/", "/v2/a", "/v2/missing"):
        kept = http_client.request(server.url + path, connections=connections)
        fresh = http_client.request(server.url + path)
        assert (kept.status, kept.body, kept.headers["x-path"]) == (fresh.status, fresh.body, path)
    assert http_client.request(server.url + "/v2/missing", connections=connections).status == 404  # an answer
    head = http_client.request(server.url + "/v2/a", method="HEAD", connections=connections)
    put = http_client.request(server.url + "/v2/b?x=1", method="PUT", body=b"data", connections=connections,
                              headers={"Content-Type": "text/plain"}, authorization="Bearer t")  # fmt: skip
    assert (head.status, head.body, put.status) == (200, b"", 200)
    # Three requests went each on a connection of their own; the seven others on one.
    assert server.seen.connections == 1 + 3
    method, path, headers, body = server.seen.requests[-1]
    assert (method, path, body, headers["Authorization"], headers["Content-Type"]) == (
        "PUT", "/v2/b?x=1", b"data", "Bearer t", "text/plain"
    )  # fmt: skip
    assert headers["User-Agent"] == http_client.USER_AGENT == server.seen.requests[1][2]["User-Agent"]


def test_a_connection_the_server_closed_while_idle_is_found_and_the_request_goes_on_a_new_one(
    connections: Connections,
) -> None:
    server = Server(close_after=True)
    try:
        answers = [http_client.request(f"{server.url}/v2/{n}", connections=connections) for n in range(3)]
        posted = http_client.request(f"{server.url}/v2/up", method="POST", connections=connections)
    finally:
        server.close()
    assert [a.body for a in answers] == [b"body of /v2/0", b"body of /v2/1", b"body of /v2/2"]
    assert posted.status == 200
    assert [(m, p) for m, p, _h, _b in server.seen.requests] == [
        ("GET", "/v2/0"), ("GET", "/v2/1"), ("GET", "/v2/2"), ("POST", "/v2/up")
    ]  # fmt: skip  # each once: a stale connection never got the request
    assert server.seen.connections == 4


def test_a_server_that_cannot_be_reached_raises_as_urllib_does_with_the_reason(
    connections: Connections,
) -> None:
    unused = Server()
    url = unused.url
    unused.close()
    with pytest.raises(urllib.error.URLError) as kept:
        http_client.request(url + "/v2/", connections=connections)
    with pytest.raises(urllib.error.URLError) as fresh:
        http_client.request(url + "/v2/")
    assert isinstance(kept.value.reason, ConnectionRefusedError)
    assert type(kept.value.reason) is type(fresh.value.reason)


def redirecting(to: str, status: int = 302) -> Answer:
    def answer(handler: http.server.BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        if handler.path.startswith("/v2/blobs/"):
            return status, {"Location": to + handler.path.replace("/v2/blobs/", "/storage/")}, b""
        return ok(handler)

    return answer


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_get_or_head_goes_where_a_redirect_leads_without_the_authorization(
    server: Server, connections: Connections, status: int
) -> None:
    registry = Server(redirecting(server.url, status))
    try:
        got = http_client.request(f"{registry.url}/v2/blobs/sha256:1", authorization="Bearer secret",
                                  headers={"Accept": "x/y"}, connections=connections)  # fmt: skip
        head = http_client.request(f"{registry.url}/v2/blobs/sha256:2", method="HEAD", authorization="Bearer secret",
                                   connections=connections)  # fmt: skip
    finally:
        registry.close()
    assert (got.status, got.body, head.status) == (200, b"body of /storage/sha256:1", 200)
    assert registry.seen.requests[0][2]["Authorization"] == "Bearer secret"
    [(m1, p1, h1, _b1), (m2, p2, h2, _b2)] = server.seen.requests
    assert (m1, p1, h1["Accept"], m2, p2) == ("GET", "/storage/sha256:1", "x/y", "HEAD", "/storage/sha256:2")
    assert "Authorization" not in h1 and "Authorization" not in h2


def test_a_post_sent_on_by_303_becomes_a_get_and_a_put_sent_on_by_307_is_the_answer(
    server: Server, connections: Connections
) -> None:
    registry = Server(redirecting(server.url, 303))
    strict = Server(redirecting(server.url, 307))
    try:
        posted = http_client.request(f"{registry.url}/v2/blobs/x", method="POST", body=b"data",
                                     headers={"Content-Type": "a/b"}, connections=connections)  # fmt: skip
        put = http_client.request(
            f"{strict.url}/v2/blobs/y", method="PUT", body=b"data", connections=connections
        )
        fresh = http_client.request(f"{strict.url}/v2/blobs/y", method="PUT", body=b"data")
        kept_post = http_client.request(f"{strict.url}/v2/blobs/z", method="POST", connections=connections)
    finally:
        registry.close()
        strict.close()
    assert posted.status == 200
    [(method, path, headers, body)] = server.seen.requests
    assert (method, path, body, "Content-Type" in headers) == ("GET", "/storage/x", b"", False)
    assert kept_post.status == 307  # urllib follows a POST only for 301, 302, 303
    assert (put.status, put.headers["location"]) == (307, server.url + "/storage/y") == (
        fresh.status, fresh.headers["location"]
    )  # fmt: skip


def test_an_answer_consumed_in_part_is_not_reused_and_one_read_to_its_end_is(
    server: Server, connections: Connections
) -> None:
    def first_bytes(stream: IO[bytes]) -> bytes:
        return stream.read(4)

    def everything(stream: IO[bytes]) -> bytes:
        return stream.read()

    part = http_client.request(server.url + "/v2/long", consume=first_bytes, connections=connections)
    whole = [http_client.request(server.url + "/v2/long", consume=everything, connections=connections)
             for _ in range(2)]  # fmt: skip
    assert (part.consumed, part.body) == (b"body", b"")
    assert [w.consumed for w in whole] == [b"body of /v2/long"] * 2
    assert server.seen.connections == 2  # the part's was closed; the whole ones shared one


def test_many_threads_share_the_kept_connections_each_request_on_one_of_its_own(
    server: Server, connections: Connections
) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda n: http_client.request(f"{server.url}/v2/{n}", connections=connections),
                                range(200)))  # fmt: skip
    assert [a.body for a in answers] == [f"body of /v2/{n}".encode() for n in range(200)]
    assert server.seen.connections <= 8


def test_what_a_proxy_carries_goes_through_urllib_and_what_it_does_not_is_kept(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = Server()
    try:
        monkeypatch.setenv("http_proxy", proxy.url)
        monkeypatch.setenv("no_proxy", "registry.internal")
        monkeypatch.setattr(urllib.request, "_opener", None)  # urllib reads proxies as it makes its opener
        through = Connections()
        assert not through.direct(server.url + "/v2/") and through.direct("http://registry.internal/v2/")
        assert through.direct("https://elsewhere.example/v2/")  # no proxy for https
        answer = http_client.request(server.url + "/v2/x", connections=through)
        assert answer.status == 200 and server.seen.requests == []
        [(method, path, _h, _b)] = proxy.seen.requests
        assert (method, path) == ("GET", server.url + "/v2/x")  # as a proxy is asked: the whole URL
    finally:
        proxy.close()


def test_kept_connections_are_closed_with_the_pool(server: Server) -> None:
    kept = Connections()
    http_client.request(server.url + "/v2/", connections=kept)
    [[connection]] = list(kept._idle.values())
    assert connection.sock is not None
    kept.close()
    assert connection.sock is None and kept._idle == {}


@pytest.mark.lab
def test_lab_the_registry_answers_a_runs_requests_on_kept_connections(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """distribution keeps HTTP/1.1 connections open: a run's requests to it need few."""
    made: list[str] = []
    connect = http.client.HTTPConnection.connect

    def counted(self: http.client.HTTPConnection) -> None:
        made.append(self.host)
        connect(self)

    monkeypatch.setattr(http.client.HTTPConnection, "connect", counted)
    registry = Registry(lab.env)
    base = f"{lab.registry}/{lab.busybox}"  # the lab keeps its base image in its registry
    found = [registry.manifest(base) for _ in range(20)]
    assert None not in found and len({f.digest for f in found if f is not None}) == 1
    assert registry.api_exists(f"{lab.registry}/mab-test/none-such:1") is False
    assert 1 <= len(made) <= 2, made
