"""A canned engine and an in-memory registry: the build phase without Docker, for fast tests of
its decisions (what is built, skipped, retried, uploaded and tagged).

`CannedEngine` stands where `process.Group` runs `docker buildx bake`: it reads the bake file
mab-hook wrote and the entries the command names, and answers in buildx 0.13's plain progress
(the shape of the lab's output recorded in tests/fixtures/buildx and tests/test_buildx.py:
`#N [entry linux/arm64 2/2] RUN ...`, `#N [entry] exporting to image`, `#N [entry] pushing REF
with docker`, BuildKit stopping the whole invocation at the first failing step). With `--push`
it uploads each image as BuildKit does: an index of one manifest per platform, each config
labelled as the definition says. Faults are told per image: a step failing on a platform, the
export or the upload failing the first n times.

`OciRegistry` is the distribution API's manifests and blobs, in memory, served over real HTTP
on 127.0.0.1, so that mab-hook's own registry client (proof of staging tags, tagging) talks to
it as to the lab's registry; it can refuse tags on demand.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import json
import re
import tarfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, NamedTuple

from mab_hook import bakefile, coverage, platforms, process
from mab_hook.coverage import Found

INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def program_layer(path: str, arch: str) -> bytes:
    """A layer (a gzip tar) holding one program for `arch`: its ELF header, as the kernel reads it."""
    header = platforms.ARCHES[arch].elf + bytes(44)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        info = tarfile.TarInfo(path)
        info.size, info.mode = len(header), 0o755
        archive.addfile(info, io.BytesIO(header))
    return gzip.compress(out.getvalue(), mtime=0)


class OciRegistry:
    """Repositories of manifests (by tag and by digest) and blobs, each repository holding its
    own, as distribution does: a manifest PUT is refused (400) unless what it names is in that
    repository, and a blob gets there by a cross-repository mount. `refuse`: "repository:tag"s
    whose PUT is answered 403 (an immutable tag, a quota), "repository:*" where no upload may
    start (pull-only); `no_mount`: answer mounts 202 (an
    upload opened instead); `deletes`: what DELETE removes ("digest", "tag", both, or neither:
    405); `page`: tags per page of a tag list; `requests`: (method, path) of each request."""

    def __init__(self) -> None:
        self.manifests: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.blobs: dict[tuple[str, str], bytes] = {}
        self.refuse: set[str] = set()
        self.no_mount = False
        self.deletes: set[str] = {"digest"}
        self.page = 100
        self.hang_up_on = ""  # a method whose requests get no answer: the connection is closed
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.server = _Server(self)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> OciRegistry:
        threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def put(self, repository: str, reference: str, body: bytes, media_type: str) -> str:
        digest = _digest(body)
        with self.lock:
            self.manifests[(repository, reference)] = (body, media_type)
            self.manifests[(repository, digest)] = (body, media_type)
        return digest

    def lacks(self, repository: str, body: bytes) -> list[str]:
        """What a manifest names that the repository does not hold."""
        data = json.loads(body)
        named = [("manifests", m["digest"]) for m in data.get("manifests") or ()]
        named += [("blobs", b["digest"]) for b in (data.get("config"), *(data.get("layers") or ())) if b]
        return [digest for kind, digest in named if self.get(repository, kind, digest) is None]

    def mount(self, repository: str, digest: str, source: str) -> bool:
        with self.lock:
            blob = None if self.no_mount else self.blobs.get((source, digest))
            if blob is not None:
                self.blobs[(repository, digest)] = blob
        return blob is not None

    def delete(self, repository: str, reference: str) -> bool:
        """A manifest by digest (with every tag naming it) or a tag, as `deletes` allows."""
        with self.lock:
            found = self.manifests.get((repository, reference))
            kind = "digest" if reference.startswith("sha256:") else "tag"
            if found is None or kind not in self.deletes:
                return False
            if kind == "tag":
                del self.manifests[(repository, reference)]
                return True
            for key in [k for k, v in self.manifests.items() if k[0] == repository and v == found]:
                del self.manifests[key]
        return True

    def upload(
        self,
        reference: str,
        labels: Mapping[str, str],
        platforms: Sequence[str],
        created: str | None = None,
        layers: Mapping[str, Sequence[bytes]] | None = None,
    ) -> str:
        """An image as BuildKit pushes it: an index of one manifest per platform, each config
        saying when it was built (`created`: now, as BuildKit writes it); the digest. `layers`:
        a platform's layers (gzip tars), when it has any."""
        if created is None:
            created = time.strftime("%Y-%m-%dT%H:%M:%S.123456789Z", time.gmtime())
        repository, tag = _split(reference)
        entries = []
        for platform in platforms:
            os_, arch, *variant = platform.split("/")
            config = json.dumps({"architecture": arch, "os": os_, "config": {"Labels": dict(labels)},
                                 **({"created": created} if created else {})}).encode()  # fmt: skip
            self.blobs[(repository, _digest(config))] = config
            own = []
            for layer in (layers or {}).get(platform, ()):
                self.blobs[(repository, _digest(layer))] = layer
                own.append({"mediaType": LAYER, "digest": _digest(layer), "size": len(layer)})
            manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST, "layers": own,
                                   "config": {"mediaType": CONFIG, "digest": _digest(config),
                                              "size": len(config)}}).encode()  # fmt: skip
            digest = self.put(repository, _digest(manifest), manifest, MANIFEST)
            described = {"os": os_, "architecture": arch, **({"variant": variant[0]} if variant else {})}
            entries.append(
                {"mediaType": MANIFEST, "digest": digest, "size": len(manifest), "platform": described}
            )
        index = json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": entries}).encode()
        return self.put(repository, tag, index, INDEX)

    def get(self, repository: str, kind: str, reference: str) -> tuple[bytes, str] | None:
        """A manifest (kind "manifests") or blob ("blobs"), and its media type."""
        with self.lock:
            if kind == "blobs":
                blob = self.blobs.get((repository, reference))
                return None if blob is None else (blob, "application/octet-stream")
            return self.manifests.get((repository, reference))

    def tags(self, repository: str) -> set[str]:
        """The tags of a repository (what its digests are not)."""
        with self.lock:
            return {
                ref for repo, ref in self.manifests if repo == repository and not ref.startswith("sha256:")
            }

    def repositories(self) -> set[str]:
        with self.lock:
            return {repo for repo, _ref in self.manifests}

    def digest(self, reference: str) -> str | None:
        with self.lock:
            found = self.manifests.get(_split(reference))
        return _digest(found[0]) if found else None


def _split(reference: str) -> tuple[str, str]:
    """("team/web", "v1") from "127.0.0.1:5000/team/web:v1" (the host is this registry)."""
    path = reference.split("/", 1)[1]
    repository, _, tag = path.rpartition(":")
    return repository, tag


_API_RE = re.compile(r"^/v2/(.+)/(manifests|blobs)/([^/?]+)$")
_UPLOAD_RE = re.compile(r"^/v2/(.+)/blobs/uploads/(?:\?(.*))?$")
_TAGS_RE = re.compile(r"^/v2/(.+)/tags/list(?:\?(.*))?$")


class _Server(http.server.ThreadingHTTPServer):
    def __init__(self, registry: OciRegistry) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.registry = registry


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def _send(
        self, code: int, body: bytes = b"", media_type: str = "application/json", **headers: str
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", media_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        if body:
            self.send_header("Docker-Content-Digest", _digest(body))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _heard(self) -> re.Match[str] | None:
        with self.server.registry.lock:
            self.server.registry.requests.append((self.command, self.path))
        return _API_RE.match(self.path)

    def handle_one_request(self) -> None:
        """As the base class, but a request of `hang_up_on`'s method is never answered."""
        self.raw_requestline = self.rfile.readline(65537)
        if not self.raw_requestline or not self.parse_request():
            self.close_connection = True
            return
        if self.command == self.server.registry.hang_up_on:
            self.close_connection = True
            return
        getattr(self, f"do_{self.command}")()
        self.wfile.flush()

    def _get(self) -> None:
        match = self._heard()
        if (listing := _TAGS_RE.match(self.path)) is not None:
            return self._tag_list(listing.group(1), urllib.parse.parse_qs(listing.group(2) or ""))
        found = self.server.registry.get(*match.groups()) if match else None
        if self.path == "/v2/":
            self._send(200, b"{}")
        elif found is None:
            self._send(404)
        else:
            self._send(200, *found)
        return None

    do_GET = do_HEAD = _get

    def _tag_list(self, repository: str, query: dict[str, list[str]]) -> None:
        """A page of tags in lexical order, and a Link to the next, as distribution pages them."""
        names = sorted(self.server.registry.tags(repository))
        if not names and repository not in self.server.registry.repositories():
            return self._send(404, b'{"errors": [{"code": "NAME_UNKNOWN"}]}')
        last = query.get("last", [""])[0]
        page = [name for name in names if name > last][: self.server.registry.page]
        link = {}
        if page and page[-1] != names[-1]:
            link["Link"] = f'</v2/{repository}/tags/list?n={len(page)}&last={page[-1]}>; rel="next"'
        return self._send(200, json.dumps({"name": repository, "tags": page}).encode(), **link)

    def do_POST(self) -> None:
        self._heard()
        upload = _UPLOAD_RE.match(self.path)
        if upload is None:
            return self._send(404)
        repository, query = upload.group(1), urllib.parse.parse_qs(upload.group(2) or "")
        if f"{repository}:*" in self.server.registry.refuse:  # no push at all there
            return self._send(403, b'{"errors": [{"code": "DENIED"}]}')
        if "mount" in query and self.server.registry.mount(repository, query["mount"][0], query["from"][0]):
            return self._send(201, Location=f"/v2/{repository}/blobs/{query['mount'][0]}")
        return self._send(202, Location=f"/v2/{repository}/blobs/uploads/some-upload")

    def do_DELETE(self) -> None:
        match = self._heard()
        if match is None or match.group(2) != "manifests":
            return self._send(404)
        repository, _, reference = match.groups()
        if self.server.registry.get(repository, "manifests", reference) is None:
            return self._send(404)
        if not self.server.registry.delete(repository, reference):
            return self._send(405, b'{"errors": [{"code": "UNSUPPORTED"}]}')
        return self._send(202)

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        match = self._heard()
        if match is None or match.group(2) != "manifests":
            return self._send(404)
        repository, _, tag = match.groups()
        if f"{repository}:{tag}" in self.server.registry.refuse:
            return self._send(403, b'{"errors": [{"code": "DENIED"}]}')
        if self.server.registry.lacks(repository, body):
            return self._send(400, b'{"errors": [{"code": "MANIFEST_BLOB_UNKNOWN"}]}')
        self.server.registry.put(repository, tag, body, self.headers["Content-Type"])
        return self._send(201)

    def log_message(self, *args: object) -> None:
        pass


class Fault(NamedTuple):
    """What goes wrong building one image."""

    step_fails_on: str = ""  # a platform whose RUN step fails
    export_fails: int = 0  # times the engine fails exporting it (then it does not)
    upload_fails: int = 0  # times the registry answers 500 to its upload
    foreign_on: str = ""  # a platform whose image gets an x86-64 program (/usr/local/bin/app)


class _Invocation:
    """One invocation's progress: its lines, what its metadata file gets, the entries whose
    steps ran."""

    def __init__(self, definition: Mapping[str, Any], push: bool) -> None:
        self.definition, self.push = definition, push
        self.lines: list[str] = []
        self.written: dict[str, Any] = {}
        self.stepped: set[str] = set()
        self.vertices = 0

    def vertex(self, label: str, *then: str) -> None:
        self.vertices += 1
        self.lines += [f"#{self.vertices} [{label}", *(f"#{self.vertices} {line}" for line in then)]


class CannedEngine(process.Group):
    """`docker buildx bake` answered from the definition: see the module's docstring.
    `invocations`: the entries each invocation built."""

    def __init__(self, registry: OciRegistry, faults: Mapping[str, Fault] | None = None) -> None:
        super().__init__()
        self.registry, self.faults = registry, dict(faults or {})
        self.invocations: list[tuple[str, ...]] = []
        self.commands: list[tuple[str, ...]] = []  # each invocation's command line
        self.engines: list[str] = []  # the engine each invocation built on ("": the default one)
        self.definitions: list[dict[str, Any]] = []  # each invocation's bake file, as buildx read it
        self.contexts: dict[str, list[str]] = {}  # entry -> the files its context held when it was built
        self.timeouts: list[float | None] = []  # each invocation's time limit
        self.most_at_once = 0  # invocations running at the same time, at most
        self._streams = 0  # (process.Group keeps its own `_running`)
        self._failed: dict[tuple[str, str], int] = {}  # (image, "export"/"upload") -> times failed
        self.before: Callable[[], None] = lambda: None  # runs as an invocation starts

    def stream(
        self,
        cmd: Sequence[str],
        *,
        env: Mapping[str, str],
        log: IO[str],
        on_line: Callable[[str], None] = lambda line: None,
        timeout: float | None = None,
        render: Callable[[str], list[str]] | None = None,
    ) -> process.Streamed:
        with self._lock:
            self._streams += 1
            self.most_at_once = max(self.most_at_once, self._streams)
            self.timeouts.append(timeout)
        try:
            return self._stream(cmd, log, on_line)
        finally:
            with self._lock:
                self._streams -= 1

    def _stream(self, cmd: Sequence[str], log: IO[str], on_line: Callable[[str], None]) -> process.Streamed:
        self.before()
        time.sleep(0.05)  # long enough for builds allowed at once to overlap
        args = list(cmd)
        read = json.loads(Path(args[args.index("--file") + 1]).read_text())
        with self._lock:  # invocations at once: what each read and where it ran, side by side
            self.commands.append(tuple(cmd))
            self.definitions.append(read)
            self.engines.append(_engine_of(args))
        definition = read["target"]
        for entry, spec in definition.items():
            root = Path(spec["context"])
            self.contexts[entry] = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
        metadata = Path(args[args.index("--metadata-file") + 1])
        entries = tuple(arg for arg in args[args.index(metadata.as_posix()) + 1 :] if arg != "--push")
        self.invocations.append(entries)
        lines, code, written = self._bake(definition, entries, "--push" in args)
        metadata.write_text(json.dumps(written))
        shown = []
        for line in lines:
            log.write(line + "\n")
            on_line(line)
            shown.append(line)
        log.flush()
        return process.Streamed(code, False, tuple(shown[-process.TAIL_LINES :]))

    def _bake(
        self, definition: Mapping[str, Any], entries: Sequence[str], push: bool
    ) -> tuple[list[str], int, dict[str, Any]]:
        run = _Invocation(definition, push)
        for entry in entries:
            failed = self._steps(entry, run) or self._export(entry, run)
            if failed:  # BuildKit stops the invocation at the first failure
                return [*run.lines, f"ERROR: failed to solve: {failed}"], 1, run.written
        return run.lines, 0, run.written

    def _steps(self, entry: str, run: _Invocation) -> str:
        """An entry's steps, after those of the bases it reads (`target:` contexts), each once
        per invocation; what failed, or ""."""
        if entry in run.stepped:
            return ""
        run.stepped.add(entry)
        spec = run.definition[entry]
        for context in (spec.get("contexts") or {}).values():
            if context.startswith("target:") and (
                failed := self._steps(context.removeprefix("target:"), run)
            ):
                return failed
        fails_on = self.faults.get(bakefile.image_of(entry), Fault()).step_fails_on
        for platform in spec["platforms"]:
            if platform == fails_on:
                error = 'process "/bin/sh -c make" did not complete successfully: exit code: 2'
                run.vertex(f"{entry} {platform} 2/2] RUN make", f"ERROR: {error}")
                return error
            run.vertex(f"{entry} {platform} 2/2] RUN make", "DONE 0.1s")
        return ""

    def _export(self, entry: str, run: _Invocation) -> str:
        """An entry's export, and with --push its upload; what failed, or ""."""
        name, spec = bakefile.image_of(entry), run.definition[entry]
        fault = self.faults.get(name, Fault())
        if self._fails(name, "export", fault.export_fails):
            error = (
                "failed to commit m3p52 to eajbw during finalize: snapshot m3p52 does not exist: not found"
            )
            run.vertex(f"{entry}] exporting to image", f"ERROR: {error}")
            return error
        run.vertex(f"{entry}] exporting to image", "DONE 0.1s")
        reference = spec["tags"][0] if spec["tags"] else ""
        if not (run.push and reference):
            run.written[entry] = {"containerimage.digest": _digest(json.dumps(spec, sort_keys=True).encode())}
            return ""
        if self._fails(name, "upload", fault.upload_fails):
            error = (f"unexpected status from HEAD request to http://{self.registry.host}/v2/: "
                     "500 Internal Server Error")  # fmt: skip
            run.vertex(f"{entry}] pushing {reference} with docker", f"ERROR: {error}")
            return error
        layers = {fault.foreign_on: [program_layer("usr/local/bin/app", "amd64")]} if fault.foreign_on else {}
        digest = self.registry.upload(reference, spec.get("labels", {}), spec["platforms"], layers=layers)
        run.vertex(f"{entry}] pushing {reference} with docker", "DONE 0.1s")
        run.written[entry] = {"containerimage.digest": digest}
        return ""

    def _fails(self, name: str, what: str, times: int) -> bool:
        done = self._failed.get((name, what), 0)
        self._failed[(name, what)] = done + 1
        return done < times

    def built(self) -> Iterator[str]:
        """Every image an invocation built, in order."""
        for entries in self.invocations:
            yield from (bakefile.image_of(entry) for entry in entries)


def _engine_of(args: Sequence[str]) -> str:
    """The engine a buildx command builds on: the docker context, else the builder it names."""
    for flag in ("--context", "--builder"):
        if flag in args:
            return args[args.index(flag) + 1]
    return ""


EVERY_PLATFORM = ("linux/amd64", "linux/arm64", "linux/arm/v7", "linux/arm/v6", "linux/386", "linux/riscv64",
                  "linux/ppc64le", "linux/s390x")  # fmt: skip


def canned_sources(bases: Mapping[str, Found | str]) -> Callable[[str], Found | str]:
    """Base coverage's lookup, canned: `bases` says, anything else is a multi-platform index."""

    def lookup(ref: str) -> Found | str:
        return bases.get(ref) or Found("sha256:" + "0" * 64, EVERY_PLATFORM, False, coverage.REGISTRY)

    return lookup


class Canned(NamedTuple):
    """mab-hook's commands run in-process against the canned engine and the in-memory registry,
    on a host whose docker answers are the lab's, recorded (tests/readiness/recorded.py)."""

    registry: OciRegistry
    engine: CannedEngine
    binfmt: Path  # the host's binfmt_misc, a directory of the test's own
    # What base coverage finds for a base reference; a base not in it has every platform.
    bases: dict[str, Found | str]

    def image(self, name: str, tag: str) -> str:
        return f"{self.registry.host}/team/{name}:{tag}"

    def tags(self, name: str) -> set[str]:
        """The tags of an image's public repository."""
        return self.registry.tags(f"team/{name}")

    def staged(self, name: str) -> set[str]:
        """The tags of its staging repository."""
        return self.registry.tags(f"team/mab-staging/{name}")
