"""The bake definition mab-hook writes for a pushed commit: one entry per image (named so that
no two images share one), its context and Dockerfile confined to the checkout of the commit,
bases reaching their dependants as named contexts, and every string of the commit escaped so
that buildx reads it as written, never as a template."""

from __future__ import annotations

import json
import os
import posixpath
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from mab_hook import grants, specs, state
from mab_hook.errors import FatalError
from mab_hook.grants import Grants
from mab_hook.images import LOCAL_PATH_KEYS, OCI_LAYOUT, TARGET, Image, is_external_context, layout_path
from mab_hook.plan import Plan, PlannedImage

# A base's copy for dependants of other platforms: `base_AS_CONTEXT_linux_amd64_AND_linux_arm64`.
AS_CONTEXT, _AND = "_AS_CONTEXT_", "_AND_"


def entry_name(image_name: str) -> str:
    """The bake target of an image. Bake allows [A-Za-z0-9_-] only, image names hold '.' and
    '/' too; image names have no capitals, so capitals spell those out and no two images
    share an entry: `team.api` is `team_DOT_api`, `team/api` `team_SLASH_api`."""
    return image_name.replace(".", "_DOT_").replace("/", "_SLASH_")


def image_of(entry: str) -> str:
    """The image an entry (or a base's context copy) builds: the inverse of entry_name."""
    return entry.split(AS_CONTEXT, 1)[0].replace("_SLASH_", "/").replace("_DOT_", ".")


class Paths(NamedTuple):
    checkout: Path  # the pushed commit, as the builds read it; relative: where bake will run
    repository: Path  # the repository itself (its work tree), where `type=local` caches live

    def dockerfile(self, image: Image) -> str:
        if self.checkout.is_absolute():
            return self.of_commit(image.dockerfile, f"image {image.name}: its Dockerfile")
        # Bake finds a relative Dockerfile in the image's context, not where it runs.
        return posixpath.relpath(image.dockerfile, image.context)

    def of_commit(self, path: str, what: str) -> str:
        """A path of the pushed commit, as builds read it."""
        return _confined(self.checkout, path, what, "the pushed commit")

    def of_repository(self, path: str, what: str) -> str:
        """A path of the repository's work tree (a local cache), as builds read or write it."""
        return _confined(self.repository, path, what, "the repository")


def _confined(root: Path, path: str, what: str, where: str) -> str:
    """`path` under `root`, refused when a symlink of the commit takes it elsewhere: a build
    reads and writes only inside what it was given. (A relative root is a definition for a
    user's own `bake -f -`, run where they choose.)"""
    joined = root / path
    if not root.is_absolute():
        return str(joined)
    real, top = os.path.realpath(joined), os.path.realpath(root)
    if real != top and not real.startswith(top.rstrip(os.sep) + os.sep):
        raise FatalError(
            f"{what} {path!r} leads out of {where} through a symlink (to {real}); nothing was built. A "
            "build reads and writes only inside the repository: replace the symlink, commit, and push again"
        )
    return str(joined)


def definition(
    plan: Plan,
    paths: Paths,
    labels: Mapping[str, Mapping[str, str]],
    push_refs: Mapping[str, str],
    granted: Grants = grants.NONE,
) -> dict[str, Any]:
    """The bake definition of a plan, with paths inside the checkout of its commit. An image in
    `push_refs` is tagged with that reference only (and pushed there); the others with their
    own tags (and kept in the engine's image store). Secrets, SSH and the host's network only
    as `granted`.

    Bases reach their dependants as `target:` contexts even when the registry has them from the
    same inputs: on the image from the registry (`docker-image://`), BuildKit's cache keys of
    the dependants' steps would differ from those of the push that built base and dependants
    together, and each dependant would rebuild from scratch on its next change."""
    by_name = {planned.image.name: planned for planned in (*plan.context_only, *plan.affected)}
    entries: dict[str, dict[str, Any]] = {}

    def add(planned: PlannedImage, platforms: tuple[str, ...]) -> str:
        # buildx refuses a `target:` context defined for other platforms than its user, so a
        # dependant with its own platform list gets an untagged copy of its base for them.
        own = platforms == planned.image.platforms
        name = entry_name(planned.image.name)
        if not own:
            name += AS_CONTEXT + _AND.join(platforms).replace("/", "_").replace("-", "_")
        if name not in entries:
            contexts = {base.key: f"target:{add(by_name[base.name], platforms)}" for base in planned.bases}
            push_ref = push_refs.get(planned.image.name)
            tags = ((push_ref,) if push_ref else planned.tags) if own else ()
            spec = _entry(planned, paths, platforms, tags, contexts, granted=granted)
            found = {**labels.get(planned.image.name, {}), **dict(planned.image.labels)}
            if found:
                spec["labels"] = found
            entries[name] = spec
        return name

    default = [add(planned, planned.image.platforms) for planned in plan.affected]
    written: dict[str, Any] = literal({"group": {"default": {"targets": default}}, "target": entries})
    return written


# buildx reads every string of a bake file, keys included, as an HCL template: `${...}` calls
# functions (`${replace(...)}` once made a host directory a build context) and `%{...}` runs
# directives. A run of n `$` or `%` before `{` reads back as n - 1 of them (tried on buildx
# 0.13), so each such run gets one more: what mab-hook writes is data, whatever a commit holds.
_TEMPLATE_RE = re.compile(r"(\$+|%+)(?=\{)")


def literal(value: Any) -> Any:
    """A bake definition whose strings buildx reads as they are, never as templates."""
    return _each_string(value, lambda text: _TEMPLATE_RE.sub(lambda m: m.group(1) + m.group(1)[0], text))


def unliteral(value: Any) -> Any:
    """What buildx makes of a `literal` definition: the strings as they were."""
    return _each_string(value, lambda text: _TEMPLATE_RE.sub(lambda m: m.group(1)[1:], text))


def has_template(value: Any) -> bool:
    """Whether buildx would read some string of a (plain) definition as a template. (JSON puts
    nothing between a string's characters, and a quote after its last: `${` is inside one.)"""
    text = json.dumps(value)
    return "${" in text or "%{" in text


def _each_string(value: Any, change: Callable[[str], str]) -> Any:
    """`value` (JSON data) with `change` applied to every string in it, keys included."""
    if isinstance(value, str):
        return change(value)
    if isinstance(value, dict):
        return {_each_string(key, change): _each_string(item, change) for key, item in value.items()}
    if isinstance(value, list):
        return [_each_string(item, change) for item in value]
    return value


def _entry(
    planned: PlannedImage,
    paths: Paths,
    platforms: tuple[str, ...],
    tags: tuple[str, ...],
    contexts: Mapping[str, str],
    *,
    granted: Grants,
) -> dict[str, Any]:
    image = planned.image
    spec: dict[str, Any] = {
        "context": paths.of_commit(image.context, f"image {image.name}: its context"),
        "dockerfile": paths.dockerfile(image),
        "platforms": list(platforms),
        "tags": list(tags),
    }
    if image.build_args:
        spec["args"] = dict(image.build_args)
    if image.target:
        spec["target"] = image.target
    # A `target:` context is another image: it reaches the build as a base (`contexts`).
    named = {
        name: _context(value, paths, f"image {image.name}: its context {name!r}")
        for name, value in image.contexts
        if not value.startswith(TARGET)
    }
    if named or contexts:
        spec["contexts"] = {**named, **contexts}
    if image.cache_from:
        spec["cache-from"] = [
            _cache(entry, paths, f"image {image.name}: its cache") for entry in image.cache_from
        ]
    if image.cache_to:
        spec["cache-to"] = [
            _cache(entry, paths, f"image {image.name}: its cache") for entry in image.cache_to
        ]
    # What the pusher granted, never what the commit names (`grants`).
    if granted.secrets:
        spec["secret"] = list(granted.secrets.values())
    if granted.ssh:
        spec["ssh"] = list(granted.ssh.values())
    for field, value in image.extra:  # from a compose or bake file, as it said them
        if field != "network" or grants.allows_network(image, granted):
            spec[field] = json.loads(value)
    return spec


def _context(value: str, paths: Paths, what: str) -> str:
    if value.startswith(OCI_LAYOUT):  # a layout of the commit: the checkout's copy of it
        rest = value[len(OCI_LAYOUT) :]
        layout = layout_path(value)
        return OCI_LAYOUT + paths.of_commit(layout, what) + rest[len(layout) :]
    return value if is_external_context(value) else paths.of_commit(value, what)


def _cache(entry: str, paths: Paths, what: str) -> str:
    """A `type=local` cache's paths (checked to be inside the repository) made absolute there."""
    options = specs.parse(entry)
    if options.get("type") != "local":
        return entry
    for key in LOCAL_PATH_KEYS:
        if key in options:
            options[key] = paths.of_repository(options[key], f"{what} {key}=")
    return specs.format(options)


def export(plans: Sequence[Plan], granted: Grants = grants.NONE) -> dict[str, Any]:
    """The affected images of the plans as one bake definition for `docker buildx bake -f -`,
    run at the repository's root: paths relative to it, the images' public tags, bases as
    `target:` contexts, secrets and SSH as `granted`. What a user would run by hand, or a CI job."""
    here = Paths(Path("."), Path("."))
    merged: dict[str, Any] = {"group": {"default": {"targets": []}}, "target": {}}
    for plan in plans:
        found = definition(plan, here, {}, {}, granted)
        merged["target"].update(found["target"])
        default = merged["group"]["default"]["targets"]
        default += [name for name in found["group"]["default"]["targets"] if name not in default]
    return merged


def write_definition(path: Path, data: Mapping[str, Any]) -> Path:
    state.write_private(path, (json.dumps(data, indent=2) + "\n").encode())
    return path
