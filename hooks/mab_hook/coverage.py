"""Base coverage: every image a build pulls from outside the repository has each platform it is
pulled for, checked before anything is built.

BuildKit builds on a base that is one plain image for any platform asked (docker/buildx#844):
the result is an "arm64" image of x86-64 programs. A base whose index lacks the platform fails
only mid-build. Both show in the base's manifest: in the engine's image store (where a build
with the docker driver takes a base it has), else in the registry (its API, with docker's
credentials). What a digest names never changes, so the answers are kept by digest: a usual push
pays one small request per base.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import tarfile
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import IO, Any, NamedTuple

from mab_hook import http_client, platforms, process, references, state
from mab_hook.inputs import Pull
from mab_hook.plan import PlannedImage
from mab_hook.readiness.location import engine_socket
from mab_hook.readiness.model import parse_json
from mab_hook.registry import INDEXES, Registry, images_of

ENGINE, REGISTRY = "the engine's image store", "the registry"
KEEP = 2000  # answers kept, by digest
SMALL = 4 << 20  # bytes: a manifest or config is far smaller; layers are skipped
LOOKUPS = 8  # bases looked up at once
SAVE_TIMEOUT = 300.0  # seconds `docker save` may take to get to a base's manifests
SAVE_LIMIT = 512 << 20  # bytes: a local-only image larger than this is not exported to be looked at


class Found(NamedTuple):
    """What a base reference names, as far as its platforms go."""

    digest: str  # of its index or manifest
    platforms: tuple[str, ...]  # an index's images' (attestations left out); one image's own
    plain: bool  # one image, not an index: BuildKit takes it for any platform
    where: str  # ENGINE or REGISTRY
    # Per platform, the layers (digests) of its image: an image built on it starts with them.
    layers: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def has(self, platform: str) -> bool:
        return any(platforms.serves(have, platform) for have in self.platforms)


class Gap(NamedTuple):
    image: str  # the image whose build pulls the base
    pull: Pull
    found: Found


class Coverage(NamedTuple):
    gaps: tuple[Gap, ...]
    unchecked: tuple[tuple[str, str], ...] = ()  # (reference, why it could not be checked)
    found: tuple[tuple[str, Found], ...] = ()  # (reference, what it names): the bases' layers, for later

    @property
    def answers(self) -> dict[str, Found]:
        return dict(self.found)


Lookup = Callable[[str], "Found | str"]  # a reference -> what it names, or why that is unknown


def check(planned: Sequence[PlannedImage], lookup: Lookup, *, workers: int = LOOKUPS) -> Coverage:
    """The bases each image's build pulls, against the platforms it pulls them for."""
    refs = tuple(dict.fromkeys(pull.ref for p in planned for pull in p.pulls))
    if not refs:
        return Coverage(())
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(workers, len(refs))) as pool:
        answers = dict(zip(refs, pool.map(lookup, refs), strict=True))
    gaps = tuple(
        Gap(p.image.name, pull, found)
        for p in planned
        for pull in p.pulls
        if isinstance(found := answers[pull.ref], Found) and not found.has(pull.wanted)
    )
    unchecked = tuple((ref, why) for ref, why in answers.items() if isinstance(why, str))
    known = tuple((ref, found) for ref, found in answers.items() if isinstance(found, Found))
    return Coverage(gaps, unchecked, known)


GAP_FIX = (
    "build on a base that has every platform (a multi-platform index: `docker buildx build --platform ... "
    "--push` for your own); take the platform out of the image's `platforms` in [tool.multiarch]; or, for a "
    "stage that only runs build tools, `FROM --platform=$BUILDPLATFORM`"
)


def blocked(gaps: Sequence[Gap]) -> str:
    """Why the push is blocked: per image and base, the platforms the base lacks, and the fixes."""
    return "\n".join(
        [
            "a base lacks a platform the push builds; nothing was built:",
            *gap_lines(gaps),
            f"Fix one of: {GAP_FIX}.",
        ]
    )


def gap_lines(gaps: Sequence[Gap]) -> list[str]:
    """Per image and base, the platforms the base lacks."""
    missing: dict[tuple[str, Pull], list[str]] = {}
    found: dict[tuple[str, Pull], Found] = {}
    for gap in gaps:
        key = (gap.image, gap.pull._replace(platform="", wanted=""))
        pull = gap.pull
        explicit = f" (for {pull.platform})" if pull.wanted != pull.platform else ""
        missing.setdefault(key, []).append(pull.wanted + explicit)
        found[key] = gap.found
    return [
        f"  {image}: {_base_text(pull, found[image, pull], tuple(dict.fromkeys(wanted)))}"
        for (image, pull), wanted in missing.items()
    ]


def _base_text(pull: Pull, found: Found, missing: Sequence[str]) -> str:
    has = ", ".join(found.platforms) or "no platform"
    where = " in the engine's image store" if found.where == ENGINE else ""
    base = f"base {pull.ref} ({pull.how}, line {pull.line})"
    if found.plain:
        return (
            f"{base} is a single {has} image{where}, no index: built for {', '.join(missing)} on it, the "
            f"image would hold {has} programs"
        )
    return f"{base} has {has}{where}, not {', '.join(missing)}"


def unchecked_text(ref: str, why: str) -> str:
    return f"could not check which platforms base {ref} has: {why}"


# --- where the answers come from ---------------------------------------------------------------


class Known:
    """Answers kept by digest (.git/mab-hook/cache/bases.json): a digest's content never changes."""

    def __init__(self, path: Path | None) -> None:
        self.kept = state.KeptByDigest(path, KEEP)

    @classmethod
    def of(cls, root: Path) -> Known:
        """The answers kept for a repository (`root`: its .git/mab-hook), for doctor and the gate."""
        return cls(root / "cache" / "bases.json")

    def get(self, digest: str, where: str) -> Found | None:
        entry = self.kept.get(digest)
        if not isinstance(entry, dict):
            return None
        said, kept = _strings(entry.get("platforms")), entry.get("layers") or []
        layers = tuple(_kept_layers(one) for one in kept) if isinstance(kept, list) else (None,)
        if said is None or not all(layers):
            return None  # a cache: whatever is wrong with an entry is a miss
        return Found(digest, said, bool(entry.get("plain")), where, tuple(one for one in layers if one))

    def put(self, found: Found) -> Found:
        layers = [[platform, list(digests)] for platform, digests in found.layers]  # as JSON reads back
        value = {"platforms": list(found.platforms), "plain": found.plain, "layers": layers}
        self.kept.put(found.digest, value)
        return found

    def save(self) -> None:
        self.kept.save()


Read = Callable[[str, str], "bytes | None"]  # ("manifests" or "blobs", digest) -> its bytes


class Described(NamedTuple):
    platforms: tuple[str, ...]
    plain: bool
    layers: tuple[tuple[str, tuple[str, ...]], ...]


def describe(body: bytes, media_type: str, read: Read) -> Described:
    """The platforms of an index or manifest, whether it is one plain image, and each
    platform's layers. `read`: an index entry's manifest, a manifest's config."""
    data = json.loads(body)
    if media_type not in INDEXES and "manifests" not in data:
        said = _config_platform(data, read)
        return Described((said,) if said else (), True, ((said, _layers(data)),) if said else ())
    found: dict[str, tuple[str, ...]] = {}
    for entry in images_of(data):
        child = read("manifests", str(entry.get("digest", "")))
        manifest = json.loads(child) if child else {}
        listed = entry.get("platform")
        if isinstance(listed, dict) and listed.get("architecture"):
            platform = platforms.of_oci(listed)
        else:  # an index that does not say: its image's config does
            platform = _config_platform(manifest, read) if manifest else ""
        if platform and platform not in found:
            found[platform] = _layers(manifest)
    return Described(tuple(found), False, tuple(found.items()))


def _config_platform(manifest: Mapping[str, Any], read: Read) -> str:
    config = manifest.get("config")
    digest = config.get("digest") if isinstance(config, dict) else None
    blob = read("blobs", str(digest)) if digest else None
    return platforms.of_oci(json.loads(blob)) if blob else ""


def _layers(manifest: Mapping[str, Any]) -> tuple[str, ...]:
    layers = manifest.get("layers") or ()
    return tuple(str(layer.get("digest", "")) for layer in layers if isinstance(layer, dict))


class Sources:
    """The engine's image store first (a docker-driver build takes a base it has from there),
    then the registry; the answers kept by digest in `known`. `socket`: the engine's unix
    socket, when docker talks to it on one."""

    def __init__(
        self,
        env: Mapping[str, str],
        registry: Registry,
        known: Known,
        *,
        run: Callable[..., process.Completed] = process.run,
        read_stream: Callable[..., Any] = process.read_stream,
        socket: str | None = None,
    ) -> None:
        self.env, self.registry, self.known = env, registry, known
        self.run, self.read_stream = run, read_stream
        self.socket = socket

    def __call__(self, ref: str) -> Found | str:
        pinned = references.parse(ref).digest
        if pinned:
            for where in (ENGINE, REGISTRY):
                found = self.known.get(pinned, where)
                if found is not None:
                    return found
        return self.engine(ref) or self.from_registry(ref)

    def engine(self, ref: str) -> Found | None:
        """What the engine's store has under `ref` (None: nothing, or nothing it can show)."""
        inspected = self._inspect(ref)
        digest = str(inspected.get("Id", ""))
        if not digest:
            return None
        known = self.known.get(digest, ENGINE)
        if known is not None:
            return known
        # What came from a registry is there by the same digest: a few small requests, where an
        # export of the image would stream every layer of it.
        for pulled in _strings(inspected.get("RepoDigests")) or ():
            name, _, same = pulled.partition("@")
            found = self.from_registry(f"{name}@{same}") if same == digest else None
            if isinstance(found, Found):
                return self.known.put(found._replace(where=ENGINE))
        size = inspected.get("Size")
        if not isinstance(size, int) or size > SAVE_LIMIT:
            return None  # too large to export for its manifests: the registry may tell
        return self._from_save(ref, digest)

    def _from_save(self, ref: str, digest: str) -> Found | None:
        blobs = self._saved(ref)
        if not blobs or "index.json" not in blobs:
            return None  # an engine before Docker 25 saves no OCI layout: the registry may tell
        top = images_of(json.loads(blobs["index.json"]))
        body = blobs.get(_blob_path(str(top[0].get("digest", "")))) if top else None
        if body is None:
            return None
        said = describe(body, str(top[0].get("mediaType", "")), lambda _kind, d: blobs.get(_blob_path(d)))
        return self.known.put(Found(digest, said.platforms, said.plain, ENGINE, said.layers))

    def _inspect(self, ref: str) -> dict[str, Any]:
        """The engine's inspect of an image ({}: it has none); its Id is its index or manifest
        digest with the containerd store. Over the engine's socket where docker uses one
        (milliseconds), else the docker CLI."""
        if self.socket is not None:
            with contextlib.suppress(OSError):
                answer = http_client.local(self.socket, f"/images/{urllib.parse.quote(ref, safe='/:@')}/json")
                if answer.status == 404:
                    return {}
                if answer.ok:
                    return parse_json(answer.body)
        inspected = self.run(
            ("docker", "image", "inspect", "--format", "{{json .}}", ref),
            env=self.env,
            check=False,
            timeout=60,
        )
        return parse_json(inspected.stdout) if inspected.returncode == 0 else {}

    def _saved(self, ref: str) -> dict[str, bytes] | None:
        """The small files of the image as the engine saves it (an OCI layout since Docker 25),
        read as the save streams: over the engine's socket, else `docker image save`."""
        if self.socket is not None:
            with contextlib.suppress(OSError):
                path = f"/images/{urllib.parse.quote(ref, safe='/:@')}/get"
                answer = http_client.local(self.socket, path, timeout=SAVE_TIMEOUT, consume=_small_files)
                if answer.ok and isinstance(answer.consumed, dict):
                    return answer.consumed
        found, _done = self.read_stream(
            ("docker", "image", "save", ref), _small_files, env=self.env, timeout=SAVE_TIMEOUT
        )
        return found if isinstance(found, dict) else None

    def from_registry(self, ref: str) -> Found | str:
        try:
            top = self.registry.manifest(ref)
        except OSError as e:
            return f"neither the engine's image store nor the registry has it ({e})"
        if top is None:
            return "neither the engine's image store nor the registry has it"
        known = self.known.get(top.digest, REGISTRY)
        if known is not None:
            return known
        repository = references.parse(ref).repository
        try:
            said = describe(top.body, top.media_type, partial(self.registry.content, repository))
        except (OSError, ValueError) as e:
            return f"the registry's answer for it could not be read ({e})"
        return self.known.put(Found(top.digest, said.platforms, said.plain, REGISTRY, said.layers))


BASE_TIMEOUT = 5.0  # seconds a registry has to answer about a base: the push waits on it


def local_sources(
    env: Mapping[str, str], known: Known, mirrors: Callable[[], Sequence[str]] = tuple
) -> Lookup:
    """This machine's engine and docker's registries, as `docker build` reaches them: Docker
    Hub through `mirrors` (asked only when a base must be read from Docker Hub)."""
    registry = Registry(env, timeout=BASE_TIMEOUT, mirrors=mirrors)
    return Sources(env, registry, known, socket=engine_socket(env))


def _kept_layers(kept: object) -> tuple[str, tuple[str, ...]] | None:
    """One platform's layers as `Known.put` wrote them: [platform, [digest, ...]]."""
    if not (isinstance(kept, list) and len(kept) == 2 and isinstance(kept[0], str)):
        return None
    digests = _strings(kept[1])
    return None if digests is None else (kept[0], digests)


def _strings(value: object) -> tuple[str, ...] | None:
    """A JSON list of strings as it is; None for anything else."""
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    return None


def _blob_path(digest: str) -> str:
    return "blobs/" + digest.replace(":", "/", 1)


def _small_files(stream: IO[bytes]) -> dict[str, bytes]:
    """The small files of a tar stream (an OCI layout's index, manifests and configs), layers
    skipped as they pass."""
    found: dict[str, bytes] = {}
    with contextlib.suppress(tarfile.TarError), tarfile.open(fileobj=stream, mode="r|") as archive:
        for member in archive:
            if member.isfile() and member.size <= SMALL:
                extracted = archive.extractfile(member)
                if extracted is not None:
                    found[member.name] = extracted.read()
    return found
