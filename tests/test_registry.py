from __future__ import annotations

import http.server
import subprocess
import threading
from collections.abc import Iterator
from typing import ClassVar

import pytest

from mab_hook import registry
from mab_hook.registry import Reference
from tests.conftest import Lab


@pytest.mark.parametrize(("server", "plain"), [
    ("127.0.0.1:5000", True), ("127.1.2.3", True), ("localhost:5000", True), ("[::1]:5000", True),
    ("10.0.0.1:5000", False), ("registry.internal", False),
])  # fmt: skip
def test_plain_http(server: str, plain: bool) -> None:
    assert registry.plain_http(server) is plain


def test_plain_http_to_the_daemons_insecure_registries() -> None:
    insecure = (("registry.internal:5000",), ("10.0.0.0/8",))
    assert registry.plain_http("registry.internal:5000", insecure)
    assert registry.plain_http("10.1.2.3:5000", insecure)
    assert not registry.plain_http("192.168.0.1:5000", insecure)


@pytest.mark.parametrize(("reference", "parsed"), [
    ("registry.internal:5000/team/api:mab-1a2b", Reference("registry.internal:5000", "team/api", "mab-1a2b")),
    ("localhost/api:1", Reference("localhost", "api", "1")),
    ("team/api:1", None),  # Docker Hub: not by this path
    ("api:1", None),
    ("registry.internal/api", None),  # no tag
    ("registry.internal/api@sha256:00", None),
])  # fmt: skip
def test_reference(reference: str, parsed: Reference | None) -> None:
    assert Reference.parse(reference) == parsed


class FakeRegistry(http.server.BaseHTTPRequestHandler):
    """Answers as told in `status`; keeps what was put."""

    status: ClassVar[dict[str, int]] = {}
    put: ClassVar[dict[str, tuple[bytes, str]]] = {}

    def _answer(self, body: bytes = b"") -> None:
        code = self.status.get(self.command, 200)
        self.send_response(code)
        self.send_header("Content-Type", "application/vnd.oci.image.index.v1+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self._answer()

    def do_GET(self) -> None:
        self._answer(b'{"manifests": []}')

    def do_PUT(self) -> None:
        length = int(self.headers["Content-Length"])
        self.put[self.path] = (self.rfile.read(length), self.headers["Content-Type"])
        self._answer()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake() -> Iterator[str]:
    FakeRegistry.status, FakeRegistry.put = {}, {}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeRegistry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.parametrize(
    ("code", "answer"), [(200, True), (404, False), (401, None), (403, None), (500, None)]
)
def test_exists_says_none_when_the_registry_would_not_say(fake: str, code: int, answer: bool | None) -> None:
    FakeRegistry.status = {"HEAD": code}
    assert registry.exists(f"{fake}/team/api:mab-1") is answer


def test_an_unreachable_registry_is_left_to_buildx() -> None:
    assert registry.exists("127.0.0.1:9/team/api:x") is None  # discard port: nothing listens
    assert registry.tag("127.0.0.1:9/team/api:x", ["127.0.0.1:9/team/api:y"]) is False


def test_tag_puts_the_very_manifest(fake: str) -> None:
    assert registry.tag(f"{fake}/team/api:mab-1", [f"{fake}/team/api:abc", f"{fake}/team/api:latest"])
    assert FakeRegistry.put == {
        f"/v2/team/api/manifests/{tag}": (b'{"manifests": []}', "application/vnd.oci.image.index.v1+json")
        for tag in ("abc", "latest")
    }


@pytest.mark.parametrize("code", [401, 403, 500])
def test_tag_fails_when_the_registry_refuses(fake: str, code: int) -> None:
    FakeRegistry.status = {"PUT": code}
    assert not registry.tag(f"{fake}/team/api:mab-1", [f"{fake}/team/api:abc"])


def test_tag_stays_in_its_repository(fake: str) -> None:
    assert not registry.tag(f"{fake}/team/api:mab-1", [f"{fake}/team/other:abc"])
    assert FakeRegistry.put == {}


def test_against_the_lab_registry(lab: Lab) -> None:
    image = f"{lab.namespace()}/img"
    build = (
        "docker",
        "buildx",
        "build",
        "--platform",
        "linux/amd64,linux/arm64",
        "--push",
        "-t",
        f"{image}:src",
        "-",
    )
    pushed = subprocess.run(build, input=f"FROM {lab.busybox}\nRUN true\n", env=lab.env, capture_output=True,
                            text=True, check=False)  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr
    assert registry.exists(f"{image}:src") is True
    assert registry.exists(f"{image}:nope") is False
    assert registry.exists(f"{image}-unknown:src") is False  # a repository never pushed
    assert registry.tag(f"{image}:src", [f"{image}:a", f"{image}:b"])
    assert lab.manifest(f"{image}:a") == lab.manifest(f"{image}:b") == lab.manifest(f"{image}:src")
    assert lab.platforms(f"{image}:a") == {"linux/amd64", "linux/arm64"}
