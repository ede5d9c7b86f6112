"""`mab-hook gc`: staging uploads no one needs any more, removed from the registry.

Every gated push uploads each built image to its staging repository (`<registry>/mab-staging/
<name>:mab-<input digest>`), and the publisher copies from there. An upload is kept while a
public tag names its image (the publisher tags unchanged images from it: a release tag on an
old image), while a publish that waits (or failed) will tag it, and while it is younger than
`--older-than` days; everything else goes. So do the `mab-` tags earlier versions put among the
public tags, by the same rules.

A registry deletes a manifest by digest (distribution, with deletion enabled), which takes
every tag naming it in that repository: that is done only when all of them go. Where only some
go, or the registry deletes only tags, tags are deleted one by one. The space comes back at the
registry's own garbage collection (`registry garbage-collect --delete-untagged`).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from mab_hook import changes, gitobjects, input_digest, pending, planning
from mab_hook.errors import FatalError
from mab_hook.images import Config, Image
from mab_hook.plan import Plan
from mab_hook.registry import Manifest, Registry

if TYPE_CHECKING:
    import git

DEFAULT_DAYS = 14.0
_RFC3339_RE = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.\d+)?(Z|z|[+-]\d\d:\d\d)?")
CONCURRENCY = 16  # registry round trips at once
UNSUPPORTED = (400, 405, 501)  # a registry that does not delete this way
DONE = (200, 202, 204, 404)  # deleted, or gone already
ENABLE_DELETE = (
    "distribution: storage.delete.enabled: true, or REGISTRY_STORAGE_DELETE_ENABLED=true; "
    "Harbor, GitLab: credentials that may delete there"
)


class Upload(NamedTuple):
    """A staging tag: the repository it is in, the tag, what image it names, when that was built."""

    repository: str
    tag: str
    digest: str
    created: datetime.datetime | None


class Rules(NamedTuple):
    """What keeps an upload: the input digests waiting publishes need, and an age."""

    waiting: Collection[str]
    now: datetime.datetime
    days: float


class Verdict(NamedTuple):
    upload: Upload
    remove: bool
    why: str


def needed_by_pending(
    repo: git.Repo, root: Path, env: Mapping[str, str], build_platform: str
) -> frozenset[str]:
    """The input digests of every image of the commits that waiting (or failed) publishes will
    tag: the publisher copies from their staging uploads. A commit the repository no longer
    has (history rewritten, objects pruned) can never be published, and keeps nothing."""
    known = gitobjects.known_commits(repo)
    commits = {
        ref.commit
        for _path, record in pending.every(root)
        if record.state in (pending.WAITING, pending.FAILED)
        for ref in record.refs
    }
    found: set[str] = set()
    for sha in sorted(filter(known, commits)):
        try:
            plan: Plan = planning.plan_at(
                repo,
                changes.Commit(sha, (), None, "gc"),
                env=env,
                build_platform=build_platform,
                digests=True,
            )
        except FatalError as e:
            raise FatalError(
                f"a waiting publish names commit {sha[:12]}, which cannot be planned ({e}); "
                "nothing was removed: run `mab-hook status`"
            ) from None
        found |= {planned.input_digest for planned in plan.affected}
    return frozenset(found)


class Judged(NamedTuple):
    """An image's staging tags judged, and the images (repository, digest) that its other tags
    name: those are never deleted by digest."""

    verdicts: list[Verdict]
    held: set[tuple[str, str]]


def judge_image(registry: Registry, config: Config, image: Image, rules: Rules) -> Judged:
    """What goes of one image's staging repository, and of the staging tags earlier versions
    put among its public ones (which nothing reads any more: their age and waiting publishes
    alone keep them)."""
    public, staging = config.reference(image), config.staging_repository(image)
    tags = [(public, tag) for tag in registry.tag_list(public) or ()]
    tags += [(staging, tag) for tag in registry.tag_list(staging) or ()]
    manifests = {(repository, tag): registry.manifest(f"{repository}:{tag}") for repository, tag in tags}
    digests = {key: found.digest for key, found in manifests.items() if found is not None}  # gone meanwhile
    named = {
        digest: tag
        for (repository, tag), digest in digests.items()
        if repository == public and not _staging(tag)
    }
    verdicts = [
        judge(upload(registry, repository, tag, found), named if repository == staging else {}, rules)
        for (repository, tag), found in manifests.items()
        if found is not None and _staging(tag)
    ]
    held = {(repository, digest) for (repository, tag), digest in digests.items() if not _staging(tag)}
    return Judged(verdicts, held)


def _staging(tag: str) -> bool:
    return tag.startswith(input_digest.TAG_PREFIX)


def upload(registry: Registry, repository: str, tag: str, top: Manifest) -> Upload:
    """A staging tag, and when its image was built."""
    return Upload(repository, tag, top.digest, _when(registry.created(repository, top)))


def _when(text: str | None) -> datetime.datetime | None:
    """An RFC 3339 time as BuildKit writes it (nanoseconds, `Z`), to the second; None when
    there is none. (Python before 3.11 reads neither nanoseconds nor `Z`.)"""
    found = _RFC3339_RE.fullmatch(text or "")
    if found is None:
        return None
    zone = "+00:00" if found.group(2) in ("Z", "z", None) else found.group(2)
    try:
        return datetime.datetime.fromisoformat(found.group(1) + zone)
    except ValueError:  # a 13th month, say
        return None


def judge(found: Upload, named: Mapping[str, str], rules: Rules) -> Verdict:
    """Whether one staging upload goes: never while a public tag names its image (`named`:
    digest -> tag) or a waiting publish needs its inputs, nor before it is `rules.days` old
    (nor when its age is unknown)."""
    if found.digest and found.digest in named:
        return Verdict(found, False, f"its image is published as {named[found.digest]}")
    if found.tag.removeprefix(input_digest.TAG_PREFIX)[:64] in rules.waiting:
        return Verdict(found, False, "a waiting publish needs it")
    if found.created is None:
        return Verdict(found, False, "its age is unknown (its image says no creation time)")
    age = (rules.now - found.created).total_seconds() / 86400
    if age < rules.days:
        return Verdict(found, False, f"{_days(age)} old")
    return Verdict(found, True, f"{_days(age)} old, and nothing needs it")


def _days(age: float) -> str:
    return f"{age:.0f} day{'s' if round(age) != 1 else ''}" if age >= 1 else f"{age * 24:.0f} h"


class Deletion(NamedTuple):
    """One request: a manifest by digest (every tag of it goes), or one tag."""

    repository: str
    target: str  # a digest, or a tag
    tags: tuple[str, ...]  # the tags it removes


def deletions(verdicts: Iterable[Verdict], held: Collection[tuple[str, str]]) -> list[Deletion]:
    """The requests that remove what goes: by digest where every tag naming that image in its
    repository goes, else tag by tag. `held`: (repository, digest) that other tags name."""
    groups: dict[tuple[str, str], list[Verdict]] = {}
    for verdict in verdicts:
        groups.setdefault((verdict.upload.repository, verdict.upload.digest), []).append(verdict)
    found = []
    for (repository, digest), group in groups.items():
        going = tuple(v.upload.tag for v in group if v.remove)
        if digest and going and len(going) == len(group) and (repository, digest) not in held:
            found.append(Deletion(repository, digest, going))
        else:
            found += [Deletion(repository, tag, (tag,)) for tag in going]
    return found


class Removal(NamedTuple):
    refused: list[tuple[Deletion, int]]  # with the registry's status
    shared: list[Deletion]  # tags a registry that deletes only whole images cannot take alone


def remove(registry: Registry, verdicts: Sequence[Verdict], held: Collection[tuple[str, str]]) -> Removal:
    """Deletes what goes. A refused delete by digest is tried again tag by tag (a registry that
    deletes tags only); a tag that shares its image with one that stays, on a registry that
    deletes only whole images, stays too: it goes with the image."""
    found = Removal([], [])
    for deletion in deletions(verdicts, held):
        status = registry.delete(_reference(deletion))
        if status in UNSUPPORTED and deletion.target.startswith("sha256:"):
            tags = [Deletion(deletion.repository, tag, (tag,)) for tag in deletion.tags]
            answers = [(one, registry.delete(_reference(one))) for one in tags]
            found.refused.extend((one, code) for one, code in answers if code not in DONE)
        elif status in UNSUPPORTED:
            found.shared.append(deletion)
        elif status not in DONE:
            found.refused.append((deletion, status))
    return found


def _reference(deletion: Deletion) -> str:
    glue = "@" if deletion.target.startswith("sha256:") else ":"
    return f"{deletion.repository}{glue}{deletion.target}"


def settled(verdicts: Sequence[Verdict], removal: Removal) -> list[Verdict]:
    """The verdicts as the registry carried them out: a tag it would not take alone is kept."""
    shared = {(d.repository, tag) for d in removal.shared for tag in d.tags}
    why = "the registry deletes only whole images, and a tag that stays names this one"
    return [
        v._replace(remove=False, why=why) if (v.upload.repository, v.upload.tag) in shared else v
        for v in verdicts
    ]
