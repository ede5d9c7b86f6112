"""The registry gateway: its HTTP API path (with docker's credentials, Basic and token auth),
its buildx fallback, and both against real registries of the lab."""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import http.server
import json
import ssl
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest

from mab_hook import references, registry
from mab_hook.process import Completed
from mab_hook.registry import Registry
from tests.conftest import Lab, LabRegistry, free_port
from tests.engine import OciRegistry


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


class FakeRegistry(http.server.BaseHTTPRequestHandler):
    """The distribution API's shape (OCI distribution spec: /v2/, manifests, a Basic or a
    Bearer challenge with a token endpoint, as Docker Hub and Harbor answer). Answers as told in `status`, keeps what was put, and (with `auth`) wants credentials:
    "basic" for htpasswd's way, "bearer" for a token service's (Docker Hub, Harbor...)."""

    status: ClassVar[dict[str, int]] = {}
    put: ClassVar[dict[str, tuple[bytes, str]]] = {}
    auth: ClassVar[str] = ""
    seen: ClassVar[list[str]] = []  # Authorization headers, per request
    tokens: ClassVar[list[str]] = []  # the query of each token request

    def _authorized(self) -> bool:
        given = self.headers.get("Authorization", "")
        self.seen.append(given)
        good = "Basic " + base64.b64encode(b"team:pw").decode()
        if self.auth == "basic" and given != good:
            self._deny('Basic realm="lab"')
            return False
        if self.auth == "bearer" and given != "Bearer the-token":
            host = self.headers["Host"]
            self._deny(f'Bearer realm="http://{host}/token",service="fake"')
            return False
        return True

    def _deny(self, challenge: str) -> None:
        self.send_response(401)
        self.send_header("WWW-Authenticate", challenge)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _answer(self, body: bytes = b"") -> None:
        code = self.status.get(self.command, 200)
        self.send_response(code)
        self.send_header("Content-Type", "application/vnd.oci.image.index.v1+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        if self._authorized():
            self._answer()

    def do_GET(self) -> None:
        if self.path.startswith("/token"):
            self.tokens.append(self.path.partition("?")[2])
            good = self.headers.get("Authorization") == "Basic " + base64.b64encode(b"team:pw").decode()
            body = json.dumps({"token": "the-token"}).encode() if good else b"{}"
            self.send_response(200 if good else 401)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if self._authorized():
            self._answer(b'{"manifests": []}')

    def do_POST(self) -> None:
        if self._authorized():
            self._answer()

    def do_PUT(self) -> None:
        length = int(self.headers["Content-Length"])
        body = self.rfile.read(length)
        if self._authorized():
            self.put[self.path] = (body, self.headers["Content-Type"])
            self._answer()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake() -> Iterator[str]:
    FakeRegistry.status, FakeRegistry.put, FakeRegistry.auth, FakeRegistry.seen = {}, {}, "", []
    FakeRegistry.tokens = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeRegistry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


class NoBuildx:
    """A runner for the buildx fallback that records what it was asked and fails it."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, ...]] = []

    def __call__(self, cmd: tuple[str, ...], **kwargs: Any) -> Completed:
        self.asked.append(tuple(cmd))
        return Completed(tuple(cmd), 1, "", "no buildx here")


def gateway(tmp_path: Path, *, run: Any = None) -> Registry:
    """The gateway of someone who never ran `docker login`."""
    config = tmp_path / "docker"
    config.mkdir(exist_ok=True)
    (config / "config.json").write_text(json.dumps({"auths": {}}))
    return Registry({"DOCKER_CONFIG": str(config)}, run=run or NoBuildx())


def logged_in(tmp_path: Path, server: str) -> Registry:
    config = tmp_path / "docker"
    config.mkdir(exist_ok=True)
    auth = base64.b64encode(b"team:pw").decode()
    (config / "config.json").write_text(json.dumps({"auths": {server: {"auth": auth}}}))
    return Registry({"DOCKER_CONFIG": str(config)}, run=NoBuildx())


@pytest.mark.parametrize(
    ("code", "answer"), [(200, True), (404, False), (401, None), (403, None), (500, None)]
)
def test_the_api_says_none_when_the_registry_would_not_say(
    fake: str, tmp_path: Path, code: int, answer: bool | None
) -> None:
    FakeRegistry.status = {"HEAD": code}
    assert gateway(tmp_path).api_exists(f"{fake}/team/api:mab-1") is answer


def test_an_unreachable_registry_is_asked_through_buildx(tmp_path: Path) -> None:
    run = NoBuildx()
    found = gateway(tmp_path, run=run)
    assert found.exists("127.0.0.1:9/team/api:x") is False  # discard port: nothing listens
    tagged = found.tag("127.0.0.1:9/team/api:x", ["127.0.0.1:9/team/api:y"])
    assert (tagged.ok, tagged.published) == (False, ())
    assert [cmd[3] for cmd in run.asked] == ["inspect", "create"]


def test_tag_puts_the_very_manifest(fake: str, tmp_path: Path) -> None:
    tagged = gateway(tmp_path).tag(
        f"{fake}/team/api:mab-1", [f"{fake}/team/api:abc", f"{fake}/team/api:latest"]
    )
    assert tagged.ok and tagged.published == (f"{fake}/team/api:abc", f"{fake}/team/api:latest")
    assert FakeRegistry.put == {
        f"/v2/team/api/manifests/{tag}": (b'{"manifests": []}', "application/vnd.oci.image.index.v1+json")
        for tag in ("abc", "latest")
    }


@pytest.mark.parametrize("code", [401, 403, 500])
def test_tag_fails_when_the_registry_refuses(fake: str, tmp_path: Path, code: int) -> None:
    FakeRegistry.status = {"PUT": code}
    tagged = gateway(tmp_path).api_tag(f"{fake}/team/api:mab-1", [f"{fake}/team/api:abc"])
    assert (tagged.ok, tagged.published, tagged.detail) == (
        False,
        (),
        f"HTTP {code} tagging {fake}/team/api:abc",
    )


def test_tags_on_another_registry_are_left_to_buildx(fake: str, tmp_path: Path) -> None:
    run = NoBuildx()
    tagged = gateway(tmp_path, run=run).tag(f"{fake}/team/api:mab-1", ["127.0.0.9:5000/team/api:abc"])
    assert (tagged.ok, FakeRegistry.put) == (False, {})
    assert run.asked[-1][:7] == ("docker", "buildx", "imagetools", "create", "--tag",
                                 "127.0.0.9:5000/team/api:abc", f"{fake}/team/api:mab-1")  # fmt: skip


@pytest.fixture
def oci() -> Iterator[OciRegistry]:
    with OciRegistry() as found:
        yield found


def staged_upload(oci: OciRegistry) -> str:
    """An image of two platforms in a staging repository; its reference."""
    staged = f"{oci.host}/team/mab-staging/api:mab-1"
    oci.upload(staged, {"dev.mab-hook.input-digest": "1"}, ["linux/amd64", "linux/arm64"])
    return staged


def test_a_staging_upload_is_published_into_its_public_repository_by_mounts(
    oci: OciRegistry, tmp_path: Path
) -> None:
    staged = staged_upload(oci)
    tagged = gateway(tmp_path).tag(staged, [f"{oci.host}/team/api:abc", f"{oci.host}/team/api:main"])
    assert tagged == registry.Tagged(True, (f"{oci.host}/team/api:abc", f"{oci.host}/team/api:main"))
    assert oci.tags("team/api") == {"abc", "main"}  # and the staging tag only where it was
    assert oci.tags("team/mab-staging/api") == {"mab-1"}
    assert oci.digest(f"{oci.host}/team/api:main") == oci.digest(staged)  # the very index
    index = json.loads(oci.manifests[("team/api", "main")][0])
    for entry in index["manifests"]:  # every image, and every image's blobs, are in team/api now
        assert oci.lacks("team/api", oci.manifests[("team/api", entry["digest"])][0]) == []
    mounts = [path for method, path in oci.requests if method == "POST"]
    assert len(mounts) == 2  # one config per platform, each once: the second tag needs no carrying
    assert all("from=team%2Fmab-staging%2Fapi" in path for path in mounts)


def test_what_the_public_repository_holds_already_is_not_carried_again(
    oci: OciRegistry, tmp_path: Path
) -> None:
    staged = staged_upload(oci)
    assert gateway(tmp_path).tag(staged, [f"{oci.host}/team/api:abc"]).ok
    oci.requests.clear()
    assert gateway(tmp_path).tag(staged, [f"{oci.host}/team/api:v2"]).ok
    assert [m for m, _ in oci.requests] == ["GET", "HEAD", "PUT"]  # the index is there: only the tag


def test_an_index_the_run_read_from_the_public_repository_is_not_carried_again(
    oci: OciRegistry, tmp_path: Path
) -> None:
    """Read there by this run (the publisher reads what a tag names), it is held there: the
    new tag is one PUT, no platform carried."""
    staged = staged_upload(oci)
    assert gateway(tmp_path).tag(staged, [f"{oci.host}/team/api:abc"]).ok
    gateway_ = gateway(tmp_path)
    assert gateway_.manifest(f"{oci.host}/team/api:abc") is not None
    oci.requests.clear()
    assert gateway_.tag(
        f"{oci.host}/team/mab-staging/api@{oci.digest(staged)}", [f"{oci.host}/team/api:v2"]
    ).ok
    assert oci.requests[1:] == [("PUT", "/v2/team/api/manifests/v2")]  # after reading the source


def test_only_the_index_is_asked_for_in_the_public_repository(oci: OciRegistry, tmp_path: Path) -> None:
    """An image mab-hook built has platform manifests no repository holds yet (each config
    carries its commit): asking for each would cost a request and save none. One held (an
    interrupted carry) is put again, harmlessly."""
    staged = staged_upload(oci)
    index = json.loads(oci.manifests[("team/mab-staging/api", "mab-1")][0])
    held = index["manifests"][1]["digest"]
    oci.manifests[("team/api", held)] = oci.manifests[("team/mab-staging/api", held)]
    oci.requests.clear()
    assert gateway(tmp_path).tag(staged, [f"{oci.host}/team/api:abc"]).ok
    asked = [path.rsplit("/", 1)[-1] for method, path in oci.requests if method == "HEAD"]
    assert asked == [oci.digest(staged)]
    about = [(method, path.split("/")[3]) for method, path in oci.requests if held in path]
    assert about == [("GET", "mab-staging"), ("PUT", "api")]
    assert oci.digest(f"{oci.host}/team/api:abc") == oci.digest(staged)


def test_a_layer_the_platforms_share_is_mounted_once(oci: OciRegistry, tmp_path: Path) -> None:
    """The same COPY of sources is the same layer on every platform: one mount, which the
    other platforms' carries wait for before their manifests are put."""
    shared = b"the sources, copied alike on every platform"
    layers = {"linux/amd64": [shared, b"amd64's own"], "linux/arm64": [shared, b"arm64's own"]}
    staged = f"{oci.host}/team/mab-staging/api:mab-1"
    oci.upload(staged, {}, ["linux/amd64", "linux/arm64"], layers=layers)
    assert gateway(tmp_path).tag(staged, [f"{oci.host}/team/api:abc"]).ok
    mounts = [path for method, path in oci.requests if method == "POST"]
    shared_digest = "sha256%3A" + hashlib.sha256(shared).hexdigest()
    assert len(mounts) == 5 and sum(shared_digest in path for path in mounts) == 1  # 2 configs, 3 layers
    for entry in json.loads(oci.manifests[("team/api", "abc")][0])["manifests"]:
        assert oci.lacks("team/api", oci.manifests[("team/api", entry["digest"])][0]) == []


def test_an_index_of_one_platform_is_carried_too(oci: OciRegistry, tmp_path: Path) -> None:
    staged = f"{oci.host}/team/mab-staging/api:mab-1"
    oci.upload(staged, {}, ["linux/arm64"], layers={"linux/arm64": [b"arm64's own"]})
    assert gateway(tmp_path).tag(staged, [f"{oci.host}/team/api:abc"]).ok
    [entry] = json.loads(oci.manifests[("team/api", "abc")][0])["manifests"]
    assert oci.lacks("team/api", oci.manifests[("team/api", entry["digest"])][0]) == []


def test_an_indexs_platforms_are_carried_side_by_side(
    oci: OciRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each platform's carry waits for the other's to start: one after the other would never
    get past the first."""
    staged = staged_upload(oci)
    together = threading.Barrier(2, timeout=5)
    carry = Registry._carry_child

    def met(self: Registry, *args: Any, **kwargs: Any) -> None:
        together.wait()
        carry(self, *args, **kwargs)

    monkeypatch.setattr(Registry, "_carry_child", met)
    assert gateway(tmp_path).tag(staged, [f"{oci.host}/team/api:abc"]).ok
    assert oci.digest(f"{oci.host}/team/api:abc") == oci.digest(staged)


def test_the_first_requests_of_a_run_find_the_registrys_endpoint_once(
    fake: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every image's first request goes out at once: one finds how to speak to the registry
    (a TLS context, a TLS handshake tried), the others wait for its answer."""
    probes: list[str] = []
    speaks_tls = registry._speaks_tls

    def probed(host: str, context: ssl.SSLContext) -> bool:
        probes.append(host)
        time.sleep(0.1)  # the others arrive meanwhile
        return speaks_tls(host, context)

    monkeypatch.setattr(registry, "_speaks_tls", probed)
    gateway_ = gateway(tmp_path)
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda n: gateway_.api_exists(f"{fake}/team/app{n}:1"), range(8)))
    assert answers == [True] * 8 and probes == [fake]


def manifest_requests(oci: OciRegistry) -> list[tuple[str, str]]:
    return [(method, path.rsplit("/", 1)[-1]) for method, path in oci.requests if "/manifests/" in path]


def test_a_manifest_is_read_once_by_digest_and_a_tag_every_time(oci: OciRegistry, tmp_path: Path) -> None:
    """Digests name content, tags move: what a run read by digest (or by a tag, under the digest
    of what came) is not asked for again; a tag is."""
    staged = staged_upload(oci)
    top_digest, child = oci.digest(staged), json.loads(oci.manifests[("team/mab-staging/api", "mab-1")][0])
    child_digest = child["manifests"][0]["digest"]
    gateway_ = gateway(tmp_path)
    oci.requests.clear()
    top = gateway_.manifest(staged)
    assert top is not None and top.digest == top_digest
    assert gateway_.manifest(staged) == top  # a tag: asked again
    assert gateway_.manifest(f"{oci.host}/team/mab-staging/api@{top_digest}") == top  # known by its digest
    body = gateway_.content(f"{oci.host}/team/mab-staging/api", "manifests", child_digest)
    assert gateway_.content(f"{oci.host}/team/mab-staging/api", "manifests", child_digest) == body
    assert manifest_requests(oci) == [("GET", "mab-1"), ("GET", "mab-1"), ("GET", child_digest)]
    oci.requests.clear()  # another repository holding the same content is asked, not assumed
    oci.manifests[("team/other", child_digest)] = oci.manifests[("team/mab-staging/api", child_digest)]
    assert gateway_.content(f"{oci.host}/team/other", "manifests", child_digest) == body
    assert manifest_requests(oci) == [("GET", child_digest)]


def test_content_other_than_its_digest_says_is_refused_every_time(oci: OciRegistry, tmp_path: Path) -> None:
    staged = staged_upload(oci)
    claimed = "sha256:" + "e" * 64
    oci.manifests[("team/mab-staging/api", claimed)] = oci.manifests[("team/mab-staging/api", "mab-1")]
    gateway_ = gateway(tmp_path)
    for _turn in range(2):
        with pytest.raises(registry.RegistryError, match="the registry sent other content"):
            gateway_.content(f"{oci.host}/team/mab-staging/api", "manifests", claimed)
    assert manifest_requests(oci) == [("GET", claimed), ("GET", claimed)]
    assert staged


def test_publishing_asks_nothing_the_run_read_or_put_already(oci: OciRegistry, tmp_path: Path) -> None:
    """The check read the upload (index and images) by the digest publishing then tags: the
    carry reads none of them again, and the moving tags, after the fixed ones, are one PUT each."""
    staged = staged_upload(oci)
    gateway_, top_digest = gateway(tmp_path), oci.digest(staged)
    index = json.loads(oci.manifests[("team/mab-staging/api", "mab-1")][0])
    assert gateway_.manifest(staged) is not None  # as the check reads: the tag, then each image
    for entry in index["manifests"]:
        gateway_.content(f"{oci.host}/team/mab-staging/api", "manifests", entry["digest"])
    oci.requests.clear()
    pinned = f"{oci.host}/team/mab-staging/api@{top_digest}"
    assert gateway_.tag(pinned, [f"{oci.host}/team/api:abc"]).ok
    assert not [r for r in manifest_requests(oci) if r[0] == "GET"]  # every manifest known
    assert oci.digest(f"{oci.host}/team/api:abc") == top_digest
    oci.requests.clear()
    assert gateway_.tag(pinned, [f"{oci.host}/team/api:main"]).ok
    assert oci.requests == [("PUT", "/v2/team/api/manifests/main")]  # put by this run: held


def test_a_platforms_manifest_the_public_repository_refuses_stops_the_tag(
    oci: OciRegistry, tmp_path: Path
) -> None:
    """A child put refused (a quota, a policy on what may be pushed): no tag names an index whose
    images are not all there, and the refusal is said."""
    staged = staged_upload(oci)
    child = json.loads(oci.manifests[("team/mab-staging/api", "mab-1")][0])["manifests"][1]["digest"]
    oci.refuse.add(f"team/api:{child}")
    tagged = gateway(tmp_path, run=NoBuildx()).tag(staged, [f"{oci.host}/team/api:abc"])
    assert not tagged.ok and tagged.published == ()
    assert oci.tags("team/api") == set()
    assert ("PUT", "/v2/team/api/manifests/abc") not in oci.requests  # the carry stopped: no tag tried


def test_a_manifest_the_run_put_is_not_read_back(oci: OciRegistry, tmp_path: Path) -> None:
    """A merged index (engines, a CI fan-out) put under its staging tag, then published by digest."""
    staged = staged_upload(oci)
    gateway_ = gateway(tmp_path)
    top = gateway_.manifest(staged)
    assert top is not None
    fresh = gateway(tmp_path)
    fresh.put_manifest(f"{oci.host}/team/mab-staging/api:mab-2", top)
    oci.requests.clear()
    assert fresh.manifest(f"{oci.host}/team/mab-staging/api@{top.digest}") == top
    assert oci.requests == []


def test_a_manifest_deleted_by_the_run_is_asked_for_again(oci: OciRegistry, tmp_path: Path) -> None:
    staged = staged_upload(oci)
    gateway_, top_digest = gateway(tmp_path), oci.digest(staged)
    assert gateway_.manifest(staged) is not None
    assert gateway_.delete(f"{oci.host}/team/mab-staging/api@{top_digest}") == 202
    assert gateway_.manifest(f"{oci.host}/team/mab-staging/api@{top_digest}") is None
    tagged = gateway_.tag(f"{oci.host}/team/mab-staging/api@{top_digest}", [f"{oci.host}/team/api:abc"])
    assert not tagged.ok and oci.tags("team/api") == set()


def test_whether_a_push_may_go_somewhere_is_asked_by_starting_an_upload_and_cancelling_it(
    oci: OciRegistry, tmp_path: Path
) -> None:
    oci.refuse.add("team/frozen:*")
    asked = gateway(tmp_path)
    assert asked.push_refused(f"{oci.host}/team/api") is None
    assert (
        asked.push_refused(f"{oci.host}/team/frozen")
        == f"{oci.host}/team/frozen: these credentials may not push there (HTTP 403)"
    )
    assert [(m, p) for m, p in oci.requests if "api" in p] == [
        ("POST", "/v2/team/api/blobs/uploads/"),
        ("DELETE", "/v2/team/api/blobs/uploads/some-upload"),
    ]  # the upload started is cancelled: nothing left behind
    assert gateway(tmp_path).push_refused("127.0.0.1:9/team/api") is None  # no answer: the push will say


def test_a_registry_that_will_not_mount_leaves_the_copy_to_buildx_and_puts_no_tag(
    oci: OciRegistry, tmp_path: Path
) -> None:
    staged = staged_upload(oci)
    oci.no_mount = True
    run = NoBuildx()
    tagged = gateway(tmp_path, run=run).tag(staged, [f"{oci.host}/team/api:abc"])
    assert not tagged.ok and tagged.published == ()
    assert oci.tags("team/api") == set()
    assert ("PUT", "/v2/team/api/manifests/abc") not in oci.requests  # the carry stopped: no tag tried
    assert run.asked[-1][3:] == ("create", "--tag", f"{oci.host}/team/api:abc", staged)
    detail = gateway(tmp_path).api_tag(staged, [f"{oci.host}/team/api:abc"]).detail
    assert detail.startswith("HTTP 202 mounting sha256:") and "into " in detail


def test_a_mount_asks_the_token_service_for_both_repositories(fake: str, tmp_path: Path) -> None:
    FakeRegistry.auth, FakeRegistry.status = "bearer", {"POST": 201}
    gateway = logged_in(tmp_path, fake)
    source, to = references.parse(f"{fake}/team/mab-staging/api"), references.parse(f"{fake}/team/api")
    gateway._mount(source, to, "sha256:" + "a" * 64)
    assert FakeRegistry.tokens[-1] == (
        "service=fake&scope=repository%3Ateam%2Fapi%3Apull%2Cpush&scope=repository%3Ateam%2Fmab-staging%2Fapi%3Apull"
    )


@pytest.mark.parametrize("scheme", ["basic", "bearer"])
def test_docker_credentials_answer_the_registrys_challenge(fake: str, tmp_path: Path, scheme: str) -> None:
    FakeRegistry.auth = scheme
    assert gateway(tmp_path).api_exists(f"{fake}/team/api:mab-1") is None  # none: it would not say
    found = logged_in(tmp_path, fake)
    assert found.api_exists(f"{fake}/team/api:mab-1") is True
    assert found.api_tag(f"{fake}/team/api:mab-1", [f"{fake}/team/api:v1"]).ok
    # The authorization is kept: Basic for every request, a token for its scope (pull, then
    # pull and push), so later requests do not meet the challenge again.
    assert FakeRegistry.seen.count("") == (2 if scheme == "basic" else 3)
    found.api_tag(f"{fake}/team/api:mab-1", [f"{fake}/team/api:v2"])
    assert FakeRegistry.seen.count("") == (2 if scheme == "basic" else 3)


@pytest.mark.parametrize(("auth", "logged", "expected"), [
    ("", False, (True, "anonymous")), ("basic", True, (True, "authenticated")),
    ("bearer", True, (True, "authenticated")), ("basic", False, (False, "no-credentials")),
])  # fmt: skip
def test_access(fake: str, tmp_path: Path, auth: str, logged: bool, expected: tuple[bool, str]) -> None:
    FakeRegistry.auth = auth
    found = (logged_in(tmp_path, fake) if logged else gateway(tmp_path)).access(f"{fake}/team/api")
    assert (found.ok, found.code) == expected, found


def test_access_says_when_credentials_are_refused(fake: str, tmp_path: Path) -> None:
    FakeRegistry.auth = "basic"
    config = tmp_path / "wrong"
    config.mkdir()
    wrong = base64.b64encode(b"team:nope").decode()
    (config / "config.json").write_text(json.dumps({"auths": {fake: {"auth": wrong}}}))
    found = Registry({"DOCKER_CONFIG": str(config)}, run=NoBuildx()).access(f"{fake}/team/api")
    assert (found.ok, found.code) == (False, "refused")
    assert "refuses docker's credentials" in found.detail


def test_access_to_a_registry_that_does_not_answer(tmp_path: Path) -> None:
    found = gateway(tmp_path).access("127.0.0.1:9/team/api")
    assert (found.ok, found.code) == (False, "unreachable")
    assert found.detail.startswith("http://127.0.0.1:9/v2/ does not answer (")


# --- against the lab ----------------------------------------------------------------------------


def push_image(lab: Lab, image: str) -> None:
    """An image pushed by hand, as the test's starting point."""
    pushed = lab.build(image, f"FROM {lab.busybox}\nRUN true\n", platforms="linux/amd64,linux/arm64")
    assert pushed.returncode == 0, pushed.stderr


@pytest.mark.lab
def test_against_the_lab_registry(lab: Lab, tmp_path: Path) -> None:
    image = f"{lab.namespace()}/img"
    push_image(lab, f"{image}:src")
    found = Registry(lab.env, run=NoBuildx())
    assert found.exists(f"{image}:src") is True
    assert found.exists(f"{image}:nope") is False
    assert found.exists(f"{image}-unknown:src") is False  # a repository never pushed
    assert found.tag(f"{image}:src", [f"{image}:a", f"{image}:b"]).ok
    assert lab.manifest(f"{image}:a") == lab.manifest(f"{image}:b") == lab.manifest(f"{image}:src")
    assert lab.platforms(f"{image}:a") == {"linux/amd64", "linux/arm64"}
    assert found.access(image).code == "anonymous"


@pytest.mark.lab
def test_a_registry_wanting_credentials_with_and_without_docker_login(
    lab: Lab, auth_registry: LabRegistry, tmp_path: Path
) -> None:
    with_login = auth_registry.docker_config(lab, tmp_path / "in", logged_in=True)
    without = auth_registry.docker_config(lab, tmp_path / "out", logged_in=False)
    image = f"{auth_registry.address}/team/img"
    push_image(lab._replace(env=with_login), f"{image}:src")
    anonymous = Registry(without)
    assert anonymous.access(image).code == "no-credentials"
    assert anonymous.exists(f"{image}:src") is False  # neither the API nor buildx may look
    assert not anonymous.tag(f"{image}:src", [f"{image}:x"]).ok
    logged = Registry(with_login, run=NoBuildx())  # the API alone: buildx is never asked
    assert logged.access(image).code == "authenticated"
    assert logged.exists(f"{image}:src") is True
    assert logged.tag(f"{image}:src", [f"{image}:v1"]).ok
    assert logged.api_exists(f"{image}:v1") is True


class Canned(Registry):
    """A registry whose images carry the labels given (None: the reference is not there)."""

    def __init__(self, configs: list[dict[str, str]] | None) -> None:
        super().__init__({}, run=NoBuildx())
        self.configs = configs

    def _configs(self, reference: str) -> tuple[str, list[Mapping[str, str]] | None]:
        return ("sha256:" + "e" * 64, list(self.configs)) if self.configs is not None else ("", None)


GOOD = {"dev.mab-hook.input-digest": "d" * 64, "org.opencontainers.image.revision": "c" * 40}


@pytest.mark.parametrize(("configs", "trusted", "detail"), [
    (None, False, "not in the registry"),
    ([], False, "holds no image"),
    ([GOOD, GOOD], True, "2 image(s) labelled with these inputs, built from cccccccccccc"),
    ([GOOD, {**GOOD, "dev.mab-hook.input-digest": "e" * 64}], False, "an image under it is labelled with inputs eeeeeeeeeeee"),
    ([{}], False, "an image under it is labelled with inputs none"),
    ([{**GOOD, "org.opencontainers.image.revision": "b" * 40}], False, "names revision bbbbbbbbbbbb, which is no commit of this repository"),
    ([{**GOOD, "org.opencontainers.image.revision": ""}], False, "names revision none"),
])  # fmt: skip
def test_a_staging_reference_is_trusted_only_for_what_its_labels_say(
    configs: list[dict[str, str]] | None, trusted: bool, detail: str
) -> None:
    proof = Canned(configs).proof("reg/team/web:mab-x", "d" * 64, lambda sha: sha == "c" * 40)
    assert (proof.found, proof.trusted) == (configs is not None, trusted)
    assert detail in proof.detail


def test_buildx_reads_the_labels_where_the_api_cannot(tmp_path: Path) -> None:
    index = {"linux/amd64": {"config": {"Labels": GOOD}}, "linux/arm64": {"config": {"Labels": GOOD}}}
    for printed, count in ((index, 2), ({"config": {"Labels": GOOD}, "rootfs": {}}, 1)):
        answers = Completed(("docker",), 0, json.dumps(printed), "")
        found = gateway(tmp_path, run=lambda cmd, answers=answers, **kw: answers).proof(
            "127.0.0.1:9/t/web:mab-x", "d" * 64, bool
        )
        assert (found.trusted, found.detail.split()[0]) == (True, str(count))


def test_a_registry_neither_the_api_nor_buildx_can_read_is_said_unread_not_absent(tmp_path: Path) -> None:
    """Nothing listens on port 9: that is no answer about the upload, and is said as such."""
    unread = gateway(tmp_path).proof("127.0.0.1:9/t/web:mab-x", "d" * 64, bool)
    assert (unread.found, unread.trusted) == (False, False)
    assert "refused" in unread.unread.lower(), unread
    absent = Canned(None).proof("reg/team/web:mab-x", "d" * 64, bool)
    assert (absent.found, absent.unread) == (False, "")  # the API answered: not there


def test_docker_hub_is_read_through_its_mirrors_found_once_when_first_needed(tmp_path: Path) -> None:
    """As the engine pulls: each mirror first (one that does not answer hands over), Docker Hub
    last; the mirrors are looked up only when Docker Hub is first read, and once."""
    env = {"DOCKER_CONFIG": str(tmp_path)}
    with OciRegistry() as mirror, OciRegistry() as team:
        digest = mirror.put(
            "library/busybox", "1.36", b'{"schemaVersion": 2}', "application/vnd.oci.image.index.v1+json"
        )
        team.put("team/api", "1", b'{"schemaVersion": 2, "x": 1}', "application/vnd.oci.image.index.v1+json")
        looked_up: list[int] = []

        def mirrors() -> tuple[str, ...]:
            looked_up.append(1)
            return (f"http://127.0.0.1:{free_port()}", f"http://{mirror.host}")  # the first is down

        gateway = Registry(env, mirrors=mirrors, timeout=2)
        assert gateway.manifest(f"{team.host}/team/api:1") is not None and looked_up == []
        found = gateway.manifest("busybox:1.36")
        assert found is not None and found.digest == digest
        assert gateway.content("docker.io/library/busybox", "manifests", digest) == b'{"schemaVersion": 2}'
        assert looked_up == [1]
        assert ("GET", "/v2/library/busybox/manifests/1.36") in mirror.requests


def test_docker_hub_comes_last_and_its_failure_says_what_each_mirror_said() -> None:
    gateway = Registry({}, mirrors=("https://a.internal", "http://b.internal"))
    tried: list[str] = []

    def read(ref: references.Reference) -> bytes | None:
        tried.append(ref.domain)
        if ref.domain == "a.internal":
            raise OSError("connection refused")
        if ref.domain == "b.internal":
            return None
        raise OSError("no route to host")

    with pytest.raises(registry.RegistryError) as info:
        gateway._mirrored(references.parse("busybox:1"), read)
    assert tried == ["a.internal", "b.internal", "docker.io"]
    assert str(info.value) == ("mirror https://a.internal: connection refused; mirror http://b.internal: not "
                               "there; Docker Hub: no route to host")  # fmt: skip
    tried.clear()
    with pytest.raises(OSError, match="no route"):  # not Docker Hub's: no mirror is asked
        gateway._mirrored(references.parse("registry.internal/team/api:1"), read)
    assert tried == ["registry.internal"]
