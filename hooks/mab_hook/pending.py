"""Publishes that wait for the remote: what a pushed ref will tag, once the remote has it.

A pre-push hook runs before the remote decides, so the gate only builds and uploads under
staging tags, and writes here what each pushed ref would publish. The publisher
(`mab_hook.publisher`) tags only what the remote then holds. Records are private files
(`.git/mab-hook/publish/<id>.json`, 0600), read as data: one that cannot be read is said
and skipped, never run.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from mab_hook import state

WAITING, PUBLISHED, NOT_ACCEPTED, PARTLY, FAILED = "waiting", "published", "not accepted", "partly", "failed"
ENDED = (PUBLISHED, NOT_ACCEPTED, PARTLY, FAILED)
KEEP = 50  # records kept; older ones go when a new one is written


class PushedRef(NamedTuple):
    full: str  # the ref the remote was asked to update: refs/heads/main
    pushed: str  # the object id it was asked to point at (an annotated tag's own id)
    commit: str  # the commit that is: its images get the ref's tags
    default: bool = False  # the remote's default branch (the only one `latest` moves with)


class ToTag(NamedTuple):
    """One image: the reference it was uploaded under, and the tags it gets there."""

    name: str
    staged: str  # its input-digest reference: the tags go on what it holds
    tags: tuple[str, ...]
    moving: tuple[str, ...]  # those of the tags that move (latest, a branch's): put last


class Record(NamedTuple):
    id: str
    created: str
    remote: str  # what the push was given: a remote's name or a URL
    refs: tuple[PushedRef, ...]
    # The engine's plain-HTTP registries (names, CIDRs), as the gate found them; None: the gate
    # built nothing, so never asked docker (a push needing no engine), and the publisher asks.
    insecure: tuple[tuple[str, ...], tuple[str, ...]] | None = None
    state: str = WAITING
    said: tuple[str, ...] = ()  # what the publisher found and did, line by line


def directory(root: Path) -> Path:
    return root / "publish"


def new(
    remote: str, refs: Sequence[PushedRef], insecure: tuple[tuple[str, ...], tuple[str, ...]] | None
) -> Record:
    now = datetime.datetime.now(datetime.timezone.utc)
    ident = f"{now:%Y%m%dT%H%M%S%f}-{os.getpid()}"  # sorts as it was made
    return Record(ident, now.isoformat(timespec="seconds"), remote, tuple(refs), insecure)


def write(root: Path, record: Record) -> Path:
    path = directory(root) / f"{record.id}.json"
    state.write_private(path, json.dumps(record._asdict(), indent=1).encode())
    _prune(directory(root))
    return path


def read(path: Path) -> Record | None:
    """A record, or None for a file that is not one (damaged, or someone else's)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return _record(data)
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _record(data: dict[str, Any]) -> Record:
    refs = tuple(
        PushedRef(str(full), str(pushed), str(commit), bool(default))
        for full, pushed, commit, default in data["refs"]
    )
    insecure = data.get("insecure")
    return Record(
        str(data["id"]),
        str(data["created"]),
        str(data["remote"]),
        refs,
        None if insecure is None else (tuple(map(str, insecure[0])), tuple(map(str, insecure[1]))),
        str(data["state"]),
        tuple(map(str, data.get("said", ()))),
    )


def every(root: Path) -> list[tuple[Path, Record]]:
    """Every readable record, oldest first."""
    found = []
    with contextlib.suppress(OSError):
        for path in sorted(directory(root).glob("*.json")):
            record = read(path)
            if record is not None:
                found.append((path, record))
    return found


def _prune(where: Path) -> None:
    """The newest KEEP records stay; waiting ones stay whatever their age."""
    paths = sorted(where.glob("*.json"))
    for path in paths[: max(0, len(paths) - KEEP)]:
        record = read(path)
        if record is None or record.state in ENDED:
            with contextlib.suppress(OSError):
                path.unlink()
