"""Per-platform uploads merged by digest into one image index, as one multi-platform build
would have pushed it: the CI fan-out's `publish` and the gate's engines (`engines`) share it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from mab_hook import platforms
from mab_hook.registry import INDEXES, Manifest

INDEX = INDEXES[0]


def merged(manifests: Sequence[tuple[str, Manifest]]) -> Manifest:
    """One index of every platform's image (and its attestations): the very manifests, by
    digest, so no layer is uploaded again. Each upload is an index (its entries are taken as
    they are) or one platform's image (`platform` says which: a CI job's)."""
    entries: list[dict[str, Any]] = []
    for platform, manifest in manifests:
        if manifest.media_type in INDEXES:
            entries += json.loads(manifest.body).get("manifests", [])
            continue
        found = platforms.parse(platform)
        described = {
            "os": found.os,
            "architecture": found.arch,
            **({"variant": found.variant} if found.variant else {}),
        }
        entries.append(
            {
                "mediaType": manifest.media_type,
                "digest": manifest.digest,
                "size": len(manifest.body),
                "platform": described,
            }
        )
    body = json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": entries}, separators=(",", ":"))
    return Manifest(body.encode(), INDEX, digest_of(body.encode()))


def digest_of(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()
