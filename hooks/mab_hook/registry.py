"""The registry gateway: is this image there, tag it anew, can we push here.

Straight over the registry's HTTP API (the OCI distribution spec) with docker's credentials:
answers in milliseconds, where each `docker buildx imagetools` call costs some 90 ms of Go
start-up, and a new tag is the very manifest (the same digest). Where the API cannot answer
(a registry behind a TLS setup only docker knows, say), the gateway asks buildx instead, which
knows docker's certificates and mirrors too.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
import threading
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

from mab_hook import credentials, http_client, process, references
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


class RegistryError(OSError):
    """The registry answered, and refused."""


class Proof(NamedTuple):
    """What a staging reference holds, as far as its images' own labels tell."""

    found: bool  # the registry has the reference
    trusted: bool  # every image under it is labelled as built from the inputs asked about
    detail: str  # what was checked, or why it is not trusted


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
    ) -> None:
        self.env, self.insecure, self.builder, self.timeout = env, insecure, builder, timeout
        self.run = run or process.run
        self._lock = threading.Lock()
        self._tokens: dict[tuple[str, str], str] = {}
        self._credentials: dict[str, Credentials | None] = {}

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
            answer = self._call(ref, "pull", "HEAD", f"manifests/{ref.tag or 'latest'}",
                                headers={"Accept": MANIFEST_TYPES})  # fmt: skip
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
        try:
            configs = self._configs(reference)
        except OSError:
            configs = self._configs_by_buildx(reference)
        if configs is None:
            return Proof(False, False, "not in the registry")
        if not configs:
            return Proof(True, False, "holds no image")
        for labels in configs:
            said = labels.get(INPUT_DIGEST_LABEL, "")
            revision = labels.get(REVISION_LABEL, "")
            if said != digest:
                return Proof(True, False, f"an image under it is labelled with inputs {said[:12] or 'none'}")
            if not revision or not known(revision):
                return Proof(True, False, f"an image under it names revision {revision[:12] or 'none'}, "
                             "which is no commit of this repository")  # fmt: skip
        return Proof(
            True, True, f"{len(configs)} image(s) labelled with these inputs, built from {revision[:12]}"
        )

    def _configs(self, reference: str) -> list[Mapping[str, str]] | None:
        """The labels of every image under a reference (attestations left out); None: absent."""
        top = self.manifest(reference)
        if top is None:
            return None
        repository = references.parse(reference).repository
        data = json.loads(top.body)
        if top.media_type not in INDEXES:
            return [self._labels(repository, data)]
        found = []
        for entry in data.get("manifests") or ():
            if entry.get("annotations", {}).get("vnd.docker.reference.type") == "attestation-manifest":
                continue
            image = self.manifest(f"{repository}@{entry.get('digest', '')}")
            if image is None:
                raise RegistryError(f"{reference} names an image the registry does not have")
            found.append(self._labels(repository, json.loads(image.body)))
        return found

    def _labels(self, repository: str, manifest: Mapping[str, object]) -> Mapping[str, str]:
        config = manifest.get("config")
        digest = config.get("digest") if isinstance(config, dict) else None
        got = self._call(references.parse(f"{repository}@{digest}"), "pull", "GET", f"blobs/{digest}")
        if not got.ok:
            raise RegistryError(f"HTTP {got.status} for the config of {repository}")
        return _labels_of(json.loads(got.body))

    def _configs_by_buildx(self, reference: str) -> list[Mapping[str, str]] | None:
        inspect = self.run(self._imagetools("inspect", "--format", "{{json .Image}}", reference),
                           env=self.env, check=False, timeout=120)  # fmt: skip
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
        """Put the manifest of `source` under every tag (in its repository), in order: its API,
        else buildx. Once `stop` is set, no further tag is put."""
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
        ref = references.parse(source)
        targets = [references.parse(tag) for tag in tags]
        if any(t.repository != ref.repository for t in targets):
            return Tagged(False, (), "tags in another repository")
        published: list[str] = []
        try:
            got = self._call(ref, "pull,push", "GET", f"manifests/{ref.tag or ref.digest}",
                             headers={"Accept": MANIFEST_TYPES})  # fmt: skip
            if not got.ok:
                return Tagged(False, (), f"HTTP {got.status} for {source}")
            media_type = got.headers.get("content-type", "")
            for target, tag in zip(targets, tags, strict=True):
                if stop is not None and stop.is_set():
                    return Tagged(False, tuple(published), "stopped before " + tag)
                put = self._call(target, "pull,push", "PUT", f"manifests/{target.tag}",
                                 headers={"Content-Type": media_type}, body=got.body)  # fmt: skip
                if not put.ok:
                    return Tagged(False, tuple(published), f"HTTP {put.status} tagging {tag}")
                published.append(tag)
        except OSError as e:
            return Tagged(False, tuple(published), f"{_reason(e)}")
        return Tagged(True, tuple(published))

    def manifest(self, reference: str) -> Manifest | None:
        """A manifest (or index) as the registry has it; None when it has none under that name.
        Raises OSError when the registry gives no answer, RegistryError on another refusal."""
        ref = references.parse(reference)
        got = self._call(
            ref, "pull", "GET", f"manifests/{ref.tag or ref.digest}", headers={"Accept": MANIFEST_TYPES}
        )
        if got.status == 404:
            return None
        if not got.ok:
            raise RegistryError(f"HTTP {got.status} for {reference}")
        return Manifest(
            got.body, got.headers.get("content-type", ""), got.headers.get("docker-content-digest", "")
        )

    def put_manifest(self, reference: str, manifest: Manifest) -> None:
        ref = references.parse(reference)
        put = self._call(ref, "pull,push", "PUT", f"manifests/{ref.tag}",
                         headers={"Content-Type": manifest.media_type}, body=manifest.body)  # fmt: skip
        if not put.ok:
            raise RegistryError(f"HTTP {put.status} putting {reference}")

    def access(self, reference: str, *, push: bool = True) -> Access:
        """One authenticated request for a repository (a reference without tag will do)."""
        ref = references.parse(reference)
        url = self._url(ref.api_host, "")
        try:
            answer = self._call(ref, "pull,push" if push else "pull", "GET", None)
        except OSError as e:
            return Access(False, "unreachable", f"{url} does not answer ({_reason(e)})")
        if answer.ok:
            creds = self._creds(ref.domain)
            if creds is None:
                return Access(True, "anonymous", f"{url} answers")
            return Access(True, "authenticated", f"{url} accepts docker's credentials for {ref.domain}")
        if answer.status == 401:
            if self._creds(ref.domain) is None:
                return Access(False, "no-credentials",
                              f"{url} wants credentials and docker has none for {ref.domain}")  # fmt: skip
            return Access(False, "refused", f"{url} refuses docker's credentials for {ref.domain} (HTTP 401)")
        return Access(False, "error", f"{url} answered HTTP {answer.status}")

    # --- the API ------------------------------------------------------------------------------

    def _url(self, host: str, path: str) -> str:
        scheme = "http" if plain_http(host, self.insecure) else "https"
        return f"{scheme}://{host}/v2/{path}"

    def _call(
        self,
        ref: Reference,
        actions: str,
        method: str,
        path: str | None,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> Response:
        """A request under /v2/ (`path` None: /v2/ itself), answering an auth challenge once."""
        url = self._url(ref.api_host, f"{ref.path}/{path}" if path is not None else "")
        scope = f"repository:{ref.path}:{actions}"
        key = (ref.api_host, scope)
        with self._lock:  # Basic credentials serve every scope; a token serves its own
            known = self._tokens.get(key) or self._tokens.get((ref.api_host, "*"))
        answer = http_client.request(
            url, method=method, headers=headers, body=body, authorization=known, timeout=self.timeout
        )
        if answer.status != 401:
            return answer
        authorization = self._authorize(ref, answer.headers.get("www-authenticate", ""), scope)
        if authorization is None:
            return answer
        with self._lock:
            self._tokens[(ref.api_host, "*") if authorization.startswith("Basic ") else key] = authorization
        return http_client.request(
            url, method=method, headers=headers, body=body, authorization=authorization, timeout=self.timeout
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
        query = urllib.parse.urlencode({k: v for k, v in (("service", fields.get("service")),
                                                          ("scope", scope)) if v})  # fmt: skip
        basic = "Basic " + _basic(creds) if creds is not None else None
        answer = http_client.request(f"{fields['realm']}?{query}", authorization=basic, timeout=self.timeout)
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
        builder = ("--builder", self.builder) if self.builder else ()
        return ("docker", "buildx", "imagetools", *args, *builder)


def _labels_of(config: object) -> Mapping[str, str]:
    """An image config's labels (`config.Labels`), whatever the config holds."""
    inner = config.get("config") if isinstance(config, dict) else None
    labels = inner.get("Labels") if isinstance(inner, dict) else None
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}


def _basic(creds: Credentials) -> str:
    return base64.b64encode(f"{creds.username}:{creds.secret}".encode()).decode()


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
