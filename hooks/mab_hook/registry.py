"""The registry gateway: is this image there, tag it anew (across repositories), list and
delete tags, can we push here.

Straight over the registry's HTTP API (the OCI distribution spec) with docker's credentials:
answers in milliseconds, where each `docker buildx imagetools` call costs some 90 ms of Go
start-up, and a new tag is the very manifest (the same digest). Where the API cannot answer
(a registry behind a TLS setup only docker knows, say), the gateway asks buildx instead, which
knows docker's certificates and mirrors too.
"""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import ipaddress
import json
import re
import ssl
import threading
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, NamedTuple, TypeVar

from mab_hook import builders, credentials, http_client, process, references, trust
from mab_hook.buildkitd import RegistrySettings
from mab_hook.credentials import Credentials
from mab_hook.http_client import Response
from mab_hook.images import INPUT_DIGEST_LABEL, REVISION_LABEL
from mab_hook.process import Completed
from mab_hook.references import Reference

INDEXES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
MANIFEST_TYPES = ", ".join(
    (
        *INDEXES,
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)
REFERENCE_TYPE = "vnd.docker.reference.type"  # BuildKit's annotation of an attestation manifest
MAX_NESTING = 4  # indexes within indexes that `carry` follows
CARRIED_AT_ONCE = 8  # an index's manifests carried side by side
TAGS_PAGE, MAX_PAGES = 1000, 1000  # a tag list is read 1,000 at a time, a million at most
KNOWN = 20_000  # manifests a run keeps by digest (a few KB each)
_CHALLENGE_RE = re.compile(r'(\w+)="([^"]*)"')
Insecure = tuple[tuple[str, ...], tuple[str, ...]]  # the daemon's insecure registries: names, CIDRs


class Access(NamedTuple):
    """Whether we may push to a registry, as one authenticated request found."""

    ok: bool
    code: str  # "anonymous", "authenticated", "unreachable", "no-credentials", "refused", "error"
    detail: str


class Manifest(NamedTuple):
    body: bytes
    media_type: str
    digest: str  # what the registry says it is (Docker-Content-Digest)


_T = TypeVar("_T")
_K = TypeVar("_K")


class RegistryError(OSError):
    """The registry answered, and refused."""


class Proof(NamedTuple):
    """What a staging reference holds, as far as its images' own labels tell."""

    found: bool  # the registry has the reference
    trusted: bool  # every image under it is labelled as built from the inputs asked about
    detail: str  # what was checked, or why it is not trusted
    manifest: str = ""  # the digest of what it names, when the API told
    unread: str = ""  # why neither the API nor buildx could ask the registry ("" when it answered)


class Tagged(NamedTuple):
    ok: bool
    published: tuple[str, ...]  # the references that now name the image
    detail: str = ""


class Registry:
    """One run's way to registries: credentials looked up once per registry, tokens kept."""

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        insecure: Insecure = ((), ()),
        run: Callable[..., Completed] | None = None,  # process.run
        builder: str | None = None,
        timeout: float = http_client.TIMEOUT,
        certs: Sequence[Path] | None = None,  # Docker's certs.d directories (trust.certs_dirs)
        engine_certs: Sequence[Path] | None = None,  # those an engine here reads (trust.daemon_dirs)
        # Docker Hub's mirrors (`https://mirror.internal:5000`), or what finds them when first needed.
        mirrors: Sequence[str] | Callable[[], Sequence[str]] = (),
    ) -> None:
        self.env, self.insecure, self.builder, self.timeout = env, insecure, builder, timeout
        self.run = run or process.run
        self.certs = tuple(certs) if certs is not None else trust.certs_dirs(env)
        self.engine_certs = tuple(engine_certs) if engine_certs is not None else trust.daemon_dirs(env)
        self._lock = threading.Lock()
        self._tokens: dict[tuple[str, str], str] = {}
        self._connections = http_client.Connections()  # kept open between requests
        self._credentials: dict[str, Credentials | None] = {}
        # How to speak to a registry, found once a run (the first requests go out together).
        self._endpoints: dict[
            tuple[str, bool], concurrent.futures.Future[tuple[str, ssl.SSLContext | None]]
        ] = {}
        self._mirrors, self._mirrors_found = mirrors, None if callable(mirrors) else tuple(mirrors)
        # Manifests are content-addressed: one read or put by this run is not asked for again
        # (the check and publishing read the same ones; publishing puts what it then asks about).
        self._known: dict[tuple[str, str], Manifest] = {}  # (repository, digest) it holds -> manifest
        # A blob mounted into a repository by this run (an index's platforms often share layers:
        # the same COPY of sources): mounted once.
        self._mounts: dict[tuple[str, str], concurrent.futures.Future[None]] = {}

    # --- what callers ask ---------------------------------------------------------------------

    def exists(self, reference: str) -> bool:
        """Whether the registry has the reference: its API, else buildx."""
        found = self.api_exists(reference)
        if found is not None:
            return found
        inspect = self.run(self._imagetools("inspect", reference), env=self.env, check=False, timeout=120)
        return inspect.returncode == 0

    def api_exists(self, reference: str) -> bool | None:
        """The API's answer; None when it gave none (then buildx is asked)."""
        ref = references.parse(reference)
        try:
            answer = self._call(
                ref, "pull", "HEAD", f"manifests/{ref.tag or 'latest'}", headers={"Accept": MANIFEST_TYPES}
            )
        except OSError:
            return None
        if answer.status == 404:
            return False
        return True if answer.ok else None

    def proof(self, reference: str, digest: str, known: Callable[[str], bool]) -> Proof:
        """Whether a staging reference holds what it claims: each of its images' configs is
        labelled with input digest `digest` and a revision `known` to the repository. Its API
        (an index, each image's manifest, each config), else buildx. Anyone who can push to the
        registry can write such labels: this catches mistakes and planted images that do not
        bother, not a forger with push access (keep that as narrow as the repository's)."""
        manifest, unread = "", ""
        try:
            manifest, configs = self._configs(reference)
        except OSError as error:
            configs = self._configs_by_buildx(reference)
            unread = str(error) if configs is None else ""
        if configs is None:
            return Proof(False, False, "not in the registry", unread=unread)
        if not configs:
            return Proof(True, False, "holds no image")
        for labels in configs:
            said = labels.get(INPUT_DIGEST_LABEL, "")
            revision = labels.get(REVISION_LABEL, "")
            if said != digest:
                return Proof(True, False, f"an image under it is labelled with inputs {said[:12] or 'none'}")
            if not revision or not known(revision):
                return Proof(
                    True,
                    False,
                    f"an image under it names revision {revision[:12] or 'none'}, "
                    "which is no commit of this repository",
                )
        said = f"{len(configs)} image(s) labelled with these inputs, built from {revision[:12]}"
        return Proof(True, True, said, manifest)

    def _configs(self, reference: str) -> tuple[str, list[Mapping[str, str]] | None]:
        """The digest a reference names, and the labels of each of its images (attestations
        left out); ("", None): absent."""
        top = self.manifest(reference)
        if top is None:
            return "", None
        repository = references.parse(reference).repository
        data = json.loads(top.body)
        if top.media_type not in INDEXES:
            return top.digest, [self._labels(repository, data)]
        found = []
        for entry in images_of(data):
            image = self.manifest(f"{repository}@{entry.get('digest', '')}")
            if image is None:
                raise RegistryError(f"{reference} names an image the registry does not have")
            found.append(self._labels(repository, json.loads(image.body)))
        return top.digest, found

    def _labels(self, repository: str, manifest: Mapping[str, object]) -> Mapping[str, str]:
        config = manifest.get("config")
        digest = config.get("digest") if isinstance(config, dict) else None
        got = self._call(references.parse(f"{repository}@{digest}"), "pull", "GET", f"blobs/{digest}")
        if not got.ok:
            raise RegistryError(f"HTTP {got.status} for the config of {repository}")
        return _labels_of(json.loads(got.body))

    def _configs_by_buildx(self, reference: str) -> list[Mapping[str, str]] | None:
        inspect = self.run(
            self._imagetools("inspect", "--format", "{{json .Image}}", reference),
            env=self.env,
            check=False,
            timeout=120,
        )
        if inspect.returncode != 0:
            return None
        try:
            data = json.loads(inspect.stdout)
        except ValueError:
            return None
        if isinstance(data, dict) and "config" not in data and "rootfs" not in data:
            return [_labels_of(config) for config in data.values()]  # an index: platform -> config
        return [_labels_of(data)]

    def tag(self, source: str, tags: Sequence[str], stop: threading.Event | None = None) -> Tagged:
        """Put the manifest of `source` under every tag (a staging upload's tags are in the
        public repository: what it names is carried there first), in order: its API, else
        buildx. Once `stop` is set, no further tag is put."""
        tagged = self.api_tag(source, tags, stop)
        if tagged.ok or (stop is not None and stop.is_set()):
            return tagged
        args = (arg for tag in tags for arg in ("--tag", tag))
        created = self.run(self._imagetools("create", *args, source), env=self.env, check=False, timeout=300)
        if created.returncode == 0:
            return Tagged(True, tuple(tags))
        tail = " ".join(process.tail_lines(created.stderr + created.stdout, 2))
        return Tagged(False, tagged.published, tail or tagged.detail)

    def api_tag(self, source: str, tags: Sequence[str], stop: threading.Event | None = None) -> Tagged:
        """Tags in the source's repository are a manifest PUT; in another repository of the same
        registry (a staging upload published), what the manifest names is carried there first:
        blobs mounted, child manifests put by digest (`carry`)."""
        ref = references.parse(source)
        targets = [references.parse(tag) for tag in tags]
        if any(t.api_host != ref.api_host for t in targets):
            return Tagged(False, (), "tags on another registry")
        published: list[str] = []
        try:
            top = self._read(ref, ref.tag or ref.digest or "")
            if isinstance(top, int):
                return Tagged(False, (), f"HTTP {top} for {source}")
            carried = {ref.path}
            for target, tag in zip(targets, tags, strict=True):
                if stop is not None and stop.is_set():
                    return Tagged(False, tuple(published), "stopped before " + tag)
                if target.path not in carried:
                    self.carry(ref, target, top.body, top.media_type)
                    carried.add(target.path)
                status = self._put(target, target.tag or "", top)
                if status:
                    return Tagged(False, tuple(published), f"HTTP {status} tagging {tag}")
                published.append(tag)
        except OSError as e:
            return Tagged(False, tuple(published), f"{_reason(e)}")
        return Tagged(True, tuple(published))

    def carry(self, source: Reference, to: Reference, body: bytes, media_type: str, depth: int = 0) -> None:
        """Make repository `to` hold everything the manifest `body` (of `source`'s repository)
        names, so that it can be put there: nothing when `to` has it already (a registry keeps
        no manifest whose content it lacks), else its blobs mounted from `source` and an index's
        manifests put by digest. Raises RegistryError where the registry will not mount (then
        buildx copies instead)."""
        if not self._held(to, "sha256:" + hashlib.sha256(body).hexdigest()):
            self._carry_content(source, to, body, media_type, depth)

    def _knows(self, repository: Reference, digest: str) -> bool:
        """Whether this run read or put the manifest there (no request)."""
        with self._lock:
            return (repository.repository, digest) in self._known

    def _held(self, repository: Reference, digest: str) -> bool:
        """Whether a repository has a manifest (a registry keeps none whose content it lacks)."""
        if self._knows(repository, digest):
            return True
        held = self._call(
            repository, "pull,push", "HEAD", f"manifests/{digest}", headers={"Accept": MANIFEST_TYPES}
        )
        return held.ok

    def _carry_content(
        self, source: Reference, to: Reference, body: bytes, media_type: str, depth: int
    ) -> None:
        data = json.loads(body)
        if media_type in INDEXES and depth < MAX_NESTING:
            digests = [str(entry.get("digest", "")) for entry in data.get("manifests") or ()]
            _each(lambda digest: self._carry_child(source, to, digest, depth), digests)
            return
        blobs = [data.get("config"), *(data.get("layers") or ())]
        for digest in dict.fromkeys(str(blob.get("digest", "")) for blob in blobs if isinstance(blob, dict)):
            self._mount(source, to, digest)

    def _carry_child(self, source: Reference, to: Reference, digest: str, depth: int) -> None:
        # Not asked first (the index was): an image built by mab-hook has platform manifests no
        # repository holds yet (each config carries its commit), so asking cost a request per
        # manifest and saved none; one the run knows is held is skipped, one held is put again.
        if self._knows(to, digest):
            return
        got = self._read(source, digest)
        if isinstance(got, int):
            raise RegistryError(f"HTTP {got} for {source.repository}@{digest}")
        self._carry_content(source, to, got.body, got.media_type, depth + 1)
        status = self._put(to, digest, got)
        if status:
            raise RegistryError(f"HTTP {status} putting {to.repository}@{digest}")

    def _mount(self, source: Reference, to: Reference, digest: str) -> None:
        """A blob mounted into `to` once a run."""
        self._once(self._mounts, (to.repository, digest), lambda: self._mount_once(source, to, digest))

    def _once(self, found: dict[_K, concurrent.futures.Future[_T]], key: _K, work: Callable[[], _T]) -> _T:
        """What `work` gives for `key`, worked out once a run: a second asker while it is under
        way waits for it and shares its answer or failure; a failure is forgotten, so that
        the next asker tries again."""
        with self._lock:
            first = key not in found
            answer = found.setdefault(key, concurrent.futures.Future())
        if not first:
            return answer.result()
        try:
            result = work()
        except BaseException as e:  # ^C too: those waiting fail, a later asker tries again
            with self._lock:
                found.pop(key, None)
            answer.set_exception(e if isinstance(e, Exception) else RegistryError("stopped"))
            raise
        answer.set_result(result)
        return result

    def _mount_once(self, source: Reference, to: Reference, digest: str) -> None:
        query = urllib.parse.urlencode({"mount": digest, "from": source.path})
        answer = self._call(to, "pull,push", "POST", f"blobs/uploads/?{query}", also=source.path)
        if answer.status == 201:
            return
        # 202: the registry opened an upload instead (it may not mount across these
        # repositories); left to expire, since buildx copies the bytes from here.
        raise RegistryError(
            f"HTTP {answer.status} mounting {digest} from {source.repository} into {to.repository}"
        )

    def manifest(self, reference: str) -> Manifest | None:
        """A manifest (or index) as the registry has it; None when it has none under that name.
        Raises OSError when the registry gives no answer, RegistryError on another refusal."""
        return self._mirrored(references.parse(reference), self._manifest)

    def _manifest(self, ref: Reference) -> Manifest | None:
        got = self._read(ref, ref.tag or ref.digest or "")
        if got == 404:
            return None
        if isinstance(got, int):
            raise RegistryError(f"HTTP {got} for {ref.repository}:{ref.tag or ref.digest}")
        return got

    def _read(self, ref: Reference, name: str) -> Manifest | int:
        """A manifest of a repository by tag or digest (one known by digest costs no request),
        or the status the registry refused it with."""
        with self._lock:
            known = self._known.get((ref.repository, name))
        if known is not None:
            return known
        got = self._call(ref, "pull", "GET", f"manifests/{name}", headers={"Accept": MANIFEST_TYPES})
        if not got.ok:
            return got.status
        said = got.headers.get("docker-content-digest")
        manifest = self._remember(ref, got.body, got.headers.get("content-type", ""))
        return manifest._replace(digest=said) if said else manifest

    def _remember(self, repository: Reference, body: bytes, media_type: str) -> Manifest:
        """A manifest the registry just sent or took: kept under the digest of its bytes."""
        manifest = Manifest(body, media_type, "sha256:" + hashlib.sha256(body).hexdigest())
        with self._lock:
            if len(self._known) < KNOWN:
                self._known[(repository.repository, manifest.digest)] = manifest
        return manifest

    def content(self, repository: str, kind: str, digest: str) -> bytes | None:
        """A manifest (`kind` "manifests") or blob ("blobs") of a repository by digest, checked
        against it; None when the registry has none."""

        def read(ref: Reference) -> bytes | None:
            if kind == "manifests":
                got = self._read(ref, digest)
                status, body = (got, b"") if isinstance(got, int) else (200, got.body)
            else:
                answer = self._call(ref, "pull", "GET", f"{kind}/{digest}")
                status, body = answer.status, answer.body
            if status == 404:
                return None
            if not 200 <= status < 300:
                raise RegistryError(f"HTTP {status} for {ref.repository}@{digest}")
            if digest != "sha256:" + hashlib.sha256(body).hexdigest():
                raise RegistryError(f"{ref.repository}@{digest}: the registry sent other content")
            return body

        return self._mirrored(references.parse(f"{repository}@{digest}"), read)

    def read_blob(self, repository: str, digest: str, consume: Callable[[IO[bytes]], object]) -> object:
        """What `consume` makes of a blob as it streams (never held whole)."""

        def read(ref: Reference) -> object:
            got = self._call(ref, "pull", "GET", f"blobs/{digest}", consume=consume)
            if not got.ok:
                raise RegistryError(f"HTTP {got.status} for {ref.repository}@{digest}")
            return got.consumed

        return self._mirrored(references.parse(f"{repository}@{digest}"), read)

    def put_manifest(self, reference: str, manifest: Manifest) -> None:
        ref = references.parse(reference)
        status = self._put(ref, ref.tag or "", manifest)
        if status:
            raise RegistryError(f"HTTP {status} putting {reference}")

    def _put(self, repository: Reference, name: str, manifest: Manifest) -> int:
        """A manifest put under a tag or its digest (then known to be held): 0, else the status
        the registry refused it with."""
        put = self._call(
            repository,
            "pull,push",
            "PUT",
            f"manifests/{name}",
            headers={"Content-Type": manifest.media_type},
            body=manifest.body,
        )
        if not put.ok:
            return put.status
        self._remember(repository, manifest.body, manifest.media_type)
        return 0

    def tag_list(self, repository: str) -> list[str] | None:
        """Every tag of a repository, page by page as the registry links them; None: the
        registry has no such repository."""
        ref = references.parse(repository)
        found: list[str] = []
        page: str | None = f"tags/list?n={TAGS_PAGE}"
        for _turn in range(MAX_PAGES):
            if page is None:
                break
            got = self._call(ref, "pull", "GET", page)
            if got.status == 404:
                return None
            if not got.ok:
                raise RegistryError(f"HTTP {got.status} listing the tags of {repository}")
            found += [str(tag) for tag in json.loads(got.body).get("tags") or ()]
            page = _next_page(got.headers.get("link", ""), ref.path)
        return found

    def delete(self, reference: str) -> int:
        """DELETE a manifest by digest (it and every tag naming it, in its repository) or a tag
        (registries that delete tags); the status: 202 done, 404 gone already, 400/405/501
        not done this way."""
        ref = references.parse(reference)
        with self._lock:  # whatever a tag named may be gone with it
            self._known = {key: known for key, known in self._known.items() if key[0] != ref.repository}
        answer = self._call(ref, "pull,push,delete", "DELETE", f"manifests/{ref.digest or ref.tag}")
        return answer.status

    def created(self, repository: str, top: Manifest) -> str | None:
        """When the image of a manifest (of `repository`) was built, as its config says
        (`created`: BuildKit writes the build's time, or SOURCE_DATE_EPOCH's); of an index,
        its first image's."""
        data = json.loads(top.body)
        if top.media_type in INDEXES:
            entries = images_of(data)
            child = self.manifest(f"{repository}@{entries[0].get('digest', '')}") if entries else None
            if child is None:
                return None
            data = json.loads(child.body)
        config = data.get("config")
        digest = config.get("digest") if isinstance(config, dict) else None
        got = self._call(references.parse(f"{repository}@{digest}"), "pull", "GET", f"blobs/{digest}")
        if not got.ok:
            raise RegistryError(f"HTTP {got.status} for the config of {repository}@{top.digest}")
        value = json.loads(got.body).get("created")
        return str(value) if value else None

    def access(self, reference: str, *, push: bool = True) -> Access:
        """One authenticated request for a repository (a reference without tag will do)."""
        ref = references.parse(reference)
        url = self._url(ref.api_host, "")
        try:
            answer = self._call(ref, "pull,push" if push else "pull", "GET", None)
        except OSError as e:
            reason = getattr(e, "reason", e)
            if isinstance(reason, ssl.SSLCertVerificationError):
                return Access(
                    False, "untrusted", f"{url}: its certificate is not trusted here ({_reason(e)})"
                )
            if isinstance(reason, ssl.SSLError) and _speaks_http(ref.api_host, self.timeout):
                why = f"{ref.api_host} speaks plain HTTP only, and the engine's insecure registries lack it"
                return Access(False, "plain-http", why)
            return Access(False, "unreachable", f"{url} does not answer ({_reason(e)})")
        if answer.ok:
            creds = self._creds(ref.domain)
            if creds is None:
                return Access(True, "anonymous", f"{url} answers")
            return Access(True, "authenticated", f"{url} accepts docker's credentials for {ref.domain}")
        if answer.status == 401:
            if self._creds(ref.domain) is None:
                return Access(
                    False, "no-credentials", f"{url} wants credentials and docker has none for {ref.domain}"
                )
            return Access(False, "refused", f"{url} refuses docker's credentials for {ref.domain} (HTTP 401)")
        return Access(False, "error", f"{url} answered HTTP {answer.status}")

    def push_refused(self, repository: str) -> str | None:
        """Why the registry would not take a push to `repository` (`host/path`), asked as a push
        begins: an upload started, then cancelled. None when it would, or when it answers
        otherwise (the push itself will say). A token service granting pull but not push on one
        repository (a robot account's scopes) is found here, before anything is built."""
        ref = references.parse(repository)
        try:
            started = self._call(ref, "pull,push", "POST", "blobs/uploads/")
            if started.status == 202 and started.headers.get("location"):
                where = urllib.parse.urljoin(self._url(ref.api_host, ""), started.headers["location"])
                self._call(ref, "pull,push", "DELETE", None, url=where)
        except OSError:
            return None
        if started.status in (401, 403):
            return f"{ref.repository}: these credentials may not push there (HTTP {started.status})"
        return None

    def engine_distrust(self, reference: str) -> str | None:
        """Why an engine on this machine would refuse a registry's certificate that this client
        trusts: the engine, which uploads, reads only the daemon's certs.d and the system's CAs
        (a CA placed in ~/.docker/certs.d alone satisfies the CLI, not the engine). None: no
        such problem, or not a verified HTTPS registry."""
        host = references.parse(reference).api_host
        if plain_http(host, self.insecure) or self._endpoint(host)[0] != "https":
            return None
        refused = self._tls_refusal(host, trust.context(trust.for_host(host, self.engine_certs), verify=True))
        if refused is None:
            return None
        where = " or ".join(str(d / host) for d in self.engine_certs)
        return (
            f"the engine here would not trust {host}'s certificate, which the client does "
            f"({refused}): it reads its CAs from {where}"
        )

    def builder_distrust(
        self, reference: str, settings: RegistrySettings, builder: str
    ) -> tuple[str, str] | None:
        """Why a builder whose BuildKit reads its own buildkitd.toml (`settings`, for this
        registry) would fail to speak to a registry this client reaches, and the buildkitd.toml
        entry that mends it: plain HTTP one side and TLS the other, or a certificate its CAs do
        not verify. None: it would not fail, or its buildkitd.toml names files that are not
        here to read, so nothing can be said."""
        host = references.parse(reference).api_host
        schemes = settings.schemes(loopback=plain_http(host))
        if self._endpoint(host)[0] == "http":
            if "http" in schemes:
                return None
            return (
                f"{host} speaks plain HTTP only, and builder {builder}'s BuildKit would speak HTTPS to it",
                "http = true",
            )
        if "https-unverified" in schemes or settings.unread:
            return None
        if schemes == ("http",):
            return (
                f"builder {builder}'s BuildKit would speak plain HTTP to {host} (a loopback address, or "
                f"`http = true`), which speaks TLS",
                "insecure = true",
            )
        refused = self._tls_refusal(host, trust.pem_context(settings.authorities, settings.client))
        if refused is None:
            return None
        entry = f'ca = ["/etc/docker/certs.d/{host}/ca.crt"] (and a [[registry."{host}".keypair]] for mTLS)'
        finding = (
            f"builder {builder}'s BuildKit would not trust {host}'s certificate ({refused}): it runs in a "
            "container of its own and reads CAs from its buildkitd.toml, not certs.d"
        )
        return finding, entry

    def _tls_refusal(self, host: str, context: ssl.SSLContext) -> str | None:
        """Why a request to the registry with this trust fails, asked only of a registry the
        client has just reached: its certificate, or the client certificate it wants. With TLS
        1.3 a refused client certificate comes after the handshake, as an SSL error or a
        connection closed, by Python version: any failure here is the trust's."""
        try:
            http_client.request(f"https://{host}/v2/", timeout=self.timeout, context=context)
        except OSError as e:
            return _reason(e)
        return None

    # --- Docker Hub through its mirrors --------------------------------------------------------

    def _mirrored(self, ref: Reference, read: Callable[[Reference], _T]) -> _T:
        """A read of Docker Hub tried through each mirror first, as the engine pulls: a mirror
        that lacks it or fails hands over to the next, and Docker Hub comes last. When that
        fails too, the error says what each mirror said."""
        if ref.domain != references.DEFAULT_DOMAIN:
            return read(ref)
        said = []
        for mirror in self.mirrors():
            host = mirror.split("://", 1)[-1]
            try:
                found = read(ref._replace(domain=host))
            except OSError as e:
                said.append(f"mirror {mirror}: {_reason(e)}")
                continue
            if found is not None:
                return found
            said.append(f"mirror {mirror}: not there")
        try:
            return read(ref)
        except OSError as e:
            if not said:
                raise
            raise RegistryError(f"{'; '.join(said)}; Docker Hub: {_reason(e)}") from None

    def mirrors(self) -> tuple[str, ...]:
        """Docker Hub's mirrors, found once (the callable given may ask docker)."""
        with self._lock:
            if self._mirrors_found is None:
                assert callable(self._mirrors)
                self._mirrors_found = tuple(self._mirrors())
            return self._mirrors_found

    # --- the API ------------------------------------------------------------------------------

    def _url(self, host: str, path: str) -> str:
        return f"{self._endpoint(host)[0]}://{host}/v2/{path}"

    def _endpoint(self, host: str) -> tuple[str, ssl.SSLContext | None]:
        """How Docker speaks to a registry: HTTPS, trusting what its certs.d holds for it; an
        insecure registry (the daemon's list, loopback) over HTTPS unverified when it speaks TLS,
        else plain HTTP (asked once a run)."""
        insecure = plain_http(host, self.insecure) or f"http://{host}" in (self._mirrors_found or ())
        # keyed by both: the daemon's insecure list may arrive after a first request
        return self._once(self._endpoints, (host, insecure), lambda: self._find_endpoint(host, insecure))

    def _find_endpoint(self, host: str, insecure: bool) -> tuple[str, ssl.SSLContext | None]:
        context = trust.context(trust.for_host(host, self.certs), verify=not insecure)
        return ("http", None) if insecure and not _speaks_tls(host, context) else ("https", context)

    def _call(
        self,
        ref: Reference,
        actions: str,
        method: str,
        path: str | None,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        also: str = "",
        consume: Callable[[IO[bytes]], object] | None = None,
        url: str = "",
    ) -> Response:
        """A request under /v2/ (`path` None: /v2/ itself), answering an auth challenge once.
        `also`: another repository the request reads from (a blob mount's source); `url`: where
        the registry said to go instead (an upload's location)."""
        url = url or self._url(ref.api_host, f"{ref.path}/{path}" if path is not None else "")
        context = self._endpoint(ref.api_host)[1]
        scope = f"repository:{ref.path}:{actions}" + (f" repository:{also}:pull" if also else "")
        key = (ref.api_host, scope)
        with self._lock:  # Basic credentials serve every scope; a token serves its own
            known = self._tokens.get(key) or self._tokens.get((ref.api_host, "*"))
        answer = http_client.request(
            url,
            method=method,
            headers=headers,
            body=body,
            authorization=known,
            timeout=self.timeout,
            consume=consume,
            context=context,
            connections=self._connections,
        )
        if answer.status != 401:
            return answer
        authorization = self._authorize(ref, answer.headers.get("www-authenticate", ""), scope)
        if authorization is None:
            return answer
        with self._lock:
            self._tokens[(ref.api_host, "*") if authorization.startswith("Basic ") else key] = authorization
        return http_client.request(
            url,
            method=method,
            headers=headers,
            body=body,
            authorization=authorization,
            timeout=self.timeout,
            consume=consume,
            context=context,
            connections=self._connections,
        )

    def _authorize(self, ref: Reference, challenge: str, scope: str) -> str | None:
        scheme, _, params = challenge.partition(" ")
        creds = self._creds(ref.domain)
        if scheme.lower() == "basic":
            return None if creds is None else "Basic " + _basic(creds)
        if scheme.lower() != "bearer":
            return None
        fields = dict(_CHALLENGE_RE.findall(params))
        if "realm" not in fields:
            return None
        service = [("service", fields["service"])] if fields.get("service") else []
        query = urllib.parse.urlencode([*service, *(("scope", one) for one in scope.split())])
        basic = "Basic " + _basic(creds) if creds is not None else None
        realm = urllib.parse.urlsplit(fields["realm"])
        context = self._endpoint(realm.netloc)[1] if realm.scheme == "https" else None  # the same CA, often
        answer = http_client.request(
            f"{fields['realm']}?{query}",
            authorization=basic,
            timeout=self.timeout,
            context=context,
            connections=self._connections,
        )
        if not answer.ok:
            return None
        try:
            data = json.loads(answer.body)
        except ValueError:
            return None
        token = data.get("token") or data.get("access_token") if isinstance(data, dict) else None
        return f"Bearer {token}" if token else None

    def _creds(self, domain: str) -> Credentials | None:
        with self._lock:
            if domain in self._credentials:
                return self._credentials[domain]
        found = credentials.lookup(domain, self.env, self.run)
        with self._lock:
            self._credentials[domain] = found
        return found

    def _imagetools(self, *args: str) -> tuple[str, ...]:
        builder = builders.flag(self.builder)
        return ("docker", "buildx", "imagetools", *args, *builder)


def _labels_of(config: object) -> Mapping[str, str]:
    """An image config's labels (`config.Labels`), whatever the config holds."""
    inner = config.get("config") if isinstance(config, dict) else None
    labels = inner.get("Labels") if isinstance(inner, dict) else None
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}


def _each(carry: Callable[[str], None], digests: Sequence[str]) -> None:
    """`carry` of every digest, side by side; the first failure raised once all have ended."""
    if len(digests) <= 1:
        for digest in digests:
            carry(digest)
        return
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(len(digests), CARRIED_AT_ONCE)) as pool:
        futures = [pool.submit(carry, digest) for digest in digests]
    for future in futures:
        future.result()


def images_of(index: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """An index's images, its attestation manifests left out."""
    entries = index.get("manifests") or ()
    return [e for e in entries if e.get("annotations", {}).get(REFERENCE_TYPE) != "attestation-manifest"]


def _next_page(link: str, path: str) -> str | None:
    """The next page of a tag list from its Link header (`</v2/NAME/tags/list?n=..&last=..>;
    rel="next"`), relative to the repository; None when there is none (or it points elsewhere)."""
    match = re.match(r"\s*<([^>]*)>\s*;\s*rel=\"?next\"?", link)
    if match is None:
        return None
    target = urllib.parse.urlsplit(match.group(1))
    prefix = f"/v2/{path}/"
    if not target.path.startswith(prefix):
        return None
    return target.path[len(prefix) :] + (f"?{target.query}" if target.query else "")


def _basic(creds: Credentials) -> str:
    return base64.b64encode(f"{creds.username}:{creds.secret}".encode()).decode()


def _speaks_http(host: str, timeout: float) -> bool:
    """Whether a registry that refused a TLS handshake answers plain HTTP (any answer will do)."""
    try:
        http_client.request(f"http://{host}/v2/", timeout=timeout)
    except OSError:
        return False
    return True


def _speaks_tls(host: str, context: ssl.SSLContext) -> bool:
    """Whether an insecure registry answers over HTTPS, as Docker tries it first; anything else
    (no TLS, or no answer at all) and Docker falls back to plain HTTP."""
    try:
        http_client.request(f"https://{host}/v2/", timeout=5, context=context)
    except OSError:
        return False
    return True


def _reason(error: OSError) -> str:
    return str(getattr(error, "reason", None) or error)


def plain_http(server: str, insecure: Insecure = ((), ())) -> bool:
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
