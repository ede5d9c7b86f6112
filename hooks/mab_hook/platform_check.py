"""What was built is each platform it claims, checked on the staging upload before any public tag.

Each platform's image must say that platform in its config, and the programs its own layers add
(the layers after its base's) must be for that platform's CPU: the classic cross-compiling
mistake (a `FROM --platform=$BUILDPLATFORM` stage without `GOARCH=$TARGETARCH`) builds, runs
under every test on the build machine, and puts x86-64 programs into the arm64 image. Layers are
read as they stream from the registry, a few header bytes per file; a manifest's findings are
kept by its digest, so an upload is read once, whoever pushes it again.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any, NamedTuple

from mab_hook import executables, platforms, references
from mab_hook.coverage import Found
from mab_hook.executables import Foreign
from mab_hook.images import Image
from mab_hook.inputs import Pull
from mab_hook.registry import INDEXES, Registry, RegistryError, images_of
from mab_hook.state import KeptByDigest

KEEP = 5000  # manifests whose findings are kept
READERS = 4  # layers read at once (decompression runs outside the GIL)


class Finding(NamedTuple):
    platform: str
    what: str  # "its config says linux/amd64", "ELF 64-bit LSB, machine 0x3e (amd64)"
    path: str = ""  # the program's path in the image; "" for the image as a whole

    def __str__(self) -> str:
        return f"{self.platform}: " + (f"{self.path} is {self.what}" if self.path else self.what)


class Checked(NamedTuple):
    findings: tuple[Finding, ...]
    unread: tuple[str, ...] = ()  # layers in a compression mab-hook cannot read (zstd)


def check(
    registry: Registry,
    staged: str,
    image: Image,
    *,
    base_layers: Mapping[str, Sequence[str]],
    kept: KeptByDigest,
    digest: str = "",
) -> Checked:
    """The images under a staging reference against the platforms `image` is built for.
    `base_layers`: per platform, the layers its base has (they are the base's, not checked).
    `digest`: what the reference names, when known: an upload judged before costs no request."""
    remembered = kept.get(f"{digest}|{','.join(image.platforms)}") if digest else None
    if isinstance(remembered, dict):
        with contextlib.suppress(TypeError, ValueError):
            return _allowed(image, [Finding(*f) for f in remembered["findings"]], remembered["unread"])
    raw = _read(registry, staged, image, base_layers, kept)
    stored = {"findings": [list(f) for f in raw.findings], "unread": list(raw.unread)}
    kept.put(f"{raw.digest}|{','.join(image.platforms)}", stored)
    return _allowed(image, raw.findings, raw.unread)


def _allowed(image: Image, findings: Sequence[Finding], unread: Sequence[str]) -> Checked:
    """Findings about programs the image carries on purpose (`foreign-binaries`) left out."""
    kept = tuple(f for f in findings if not (f.path and executables.allowed(f.path, image.foreign_binaries)))
    return Checked(kept, tuple(unread))


class _Read(NamedTuple):
    digest: str
    findings: tuple[Finding, ...]
    unread: tuple[str, ...]


def _read(
    registry: Registry,
    staged: str,
    image: Image,
    base_layers: Mapping[str, Sequence[str]],
    kept: KeptByDigest,
) -> _Read:
    top = registry.manifest(staged)
    if top is None:
        raise RegistryError(f"{staged} is not in the registry")
    repository = references.parse(staged).repository
    data = json.loads(top.body)
    if top.media_type in INDEXES or "manifests" in data:
        listed = images_of(data)
        entries = [_Entry(platforms.of_oci(e.get("platform")), str(e.get("digest", ""))) for e in listed]
    else:  # one image, no index: its config says which platform it is (read once, here)
        entries = [_Entry(_config_said(registry, repository, data) or "", top.digest, data)]
    found = [Finding(p, "the upload has no image for it") for p in image.platforms if not _listed(p, entries)]
    claimed = [_Entry(wanted, "") for wanted in image.platforms]
    found += [
        Finding(e.platform, f"not one of the image's platforms ({', '.join(image.platforms)})")
        for e in entries
        if not _listed(e.platform, claimed)
    ]
    mine = [entry for entry in entries if _listed(entry.platform, claimed)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(mine))) as pool:
        results = list(pool.map(lambda entry: _one(registry, repository, entry, base_layers, kept), mine))
    found += [finding for raw, _unread in results for finding in raw]
    return _Read(top.digest, tuple(found), tuple(layer for _raw, unread in results for layer in unread))


class _Entry(NamedTuple):
    platform: str
    digest: str
    manifest: Mapping[str, Any] | None = None  # a plain upload's, its config already matched


def _listed(platform: str, entries: Sequence[_Entry]) -> bool:
    return any(
        platforms.serves(e.platform, platform) and platforms.serves(platform, e.platform) for e in entries
    )


def _one(
    registry: Registry,
    repository: str,
    entry: _Entry,
    base_layers: Mapping[str, Sequence[str]],
    kept: KeptByDigest,
) -> tuple[list[Finding], list[str]]:
    """One platform's image: its config, and its own layers' programs (kept by its digest)."""
    platform, digest, manifest = entry
    remembered = kept.get(digest)
    if isinstance(remembered, dict) and isinstance(remembered.get("findings"), list):
        return [Finding(*f) for f in remembered["findings"]], list(remembered.get("unread") or ())
    findings: list[Finding] = []
    if manifest is None:
        body = registry.content(repository, "manifests", digest)
        if body is None:
            raise RegistryError(f"{repository}@{digest} is not in the registry")
        manifest = json.loads(body)
        findings = _config(registry, repository, manifest, platform)
    unread: list[str] = []
    layers = [layer for layer in manifest.get("layers") or () if isinstance(layer, dict)]
    own = layers[_common(layers, base_layers.get(platform, ())) :]
    with concurrent.futures.ThreadPoolExecutor(max_workers=READERS) as pool:
        scans = list(pool.map(lambda layer: _scan(registry, repository, layer, platform), own))
    for layer, scanned in zip(own, scans, strict=True):
        if scanned is None:
            unread.append(str(layer.get("digest", "")))
        else:
            findings += [Finding(platform, f.program.described, f.path) for f in scanned]
    kept.put(digest, {"findings": [list(f) for f in findings], "unread": unread})
    return findings, unread


def _config_said(registry: Registry, repository: str, manifest: Mapping[str, Any]) -> str | None:
    """The platform an image's config says (None: the registry has no such config)."""
    config = manifest.get("config")
    digest = config.get("digest") if isinstance(config, dict) else None
    blob = registry.content(repository, "blobs", str(digest)) if digest else None
    return None if blob is None else platforms.of_oci(json.loads(blob))


def _config(registry: Registry, repository: str, manifest: Mapping[str, Any], platform: str) -> list[Finding]:
    said = _config_said(registry, repository, manifest)
    if said is None:
        return [Finding(platform, "its config is not in the registry")]
    if not (platforms.serves(said, platform) and platforms.serves(platform, said)):
        return [Finding(platform, f"its config says {said or 'no platform'}")]
    return []


def _common(layers: Sequence[Mapping[str, Any]], base: Sequence[str]) -> int:
    """How many of the image's first layers are its base's (the very blobs, in order)."""
    count = 0
    for layer, base_digest in zip(layers, base, strict=False):
        if layer.get("digest") != base_digest:
            break
        count += 1
    return count


def _scan(
    registry: Registry, repository: str, layer: Mapping[str, Any], platform: str
) -> tuple[Foreign, ...] | None:
    media_type = str(layer.get("mediaType", ""))

    def consume(stream: IO[bytes]) -> tuple[Foreign, ...] | None:
        return executables.scan_layer(stream, media_type, platform)

    if media_type not in (*executables.GZIP_TYPES, *executables.TAR_TYPES):
        return None
    found = registry.read_blob(repository, str(layer.get("digest", "")), consume)
    return found if isinstance(found, tuple) else None


def base_layers(roots: Sequence[Pull], answers: Mapping[str, Found]) -> dict[str, tuple[str, ...]]:
    """Per platform an image is built for, the layers of the base its filesystem starts from,
    as base coverage found it (none known: every layer is checked)."""
    found = {}
    for root in roots:
        answer = answers.get(root.ref)
        if answer is None:
            continue
        for platform, layers in answer.layers:
            if platforms.serves(platform, root.wanted):
                found[root.platform] = layers
                break
    return found


def kept_findings(path: Path | None) -> KeptByDigest:
    return KeptByDigest(path, KEEP)
