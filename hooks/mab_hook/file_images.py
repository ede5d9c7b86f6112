"""Images from compose services and bake targets, as `docker buildx bake --print` resolved them.

Each resolved target becomes an `Image` checked like a `[tool.multiarch.images.NAME]` table: its
context and Dockerfile inside the repository (a remote context is refused: mab-hook builds what
the pushed commit holds), platforms Docker knows, local caches inside the repository. Tags and
outputs are mab-hook's own (`registry`, `tags`, `push`), secrets and SSH the pusher's grants
(`grants`); fields that change what is built (`network`, `shm-size`...) reach buildx as they are.
"""

from __future__ import annotations

import dataclasses
import json
import posixpath
import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from mab_hook import references, specs
from mab_hook import validation as fields
from mab_hook.definitions import Source, Target
from mab_hook.images import TARGET, Defaults, Image, Said, as_built, assemble
from mab_hook.validation import Problems

# Bake fields passed to buildx unchanged: they change what a build does.
PASSED = ("network", "shm-size", "ulimits", "extra-hosts")
# A remote build context: what buildx fetches, not what the pushed commit holds.
_REMOTE_RE = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|git@|github\.com/)")


class Tree(Protocol):
    def exists(self, path: str) -> bool: ...
    def has_dir(self, directory: str) -> bool: ...


def image_name(target: str) -> str:
    """An image's name from its target's: Docker's names have no capitals (`Web_App` is
    `web_app`); a compose service's dots are already underscores in its target's name."""
    return target.lower()


def images_of(
    targets: Sequence[Target],
    defaults: Defaults,
    tree: Tree,
    problems: Problems,
    *,
    local: tuple[str, ...] = (),
) -> dict[str, Image]:
    """Every target of the default groups, and the targets their `target:` contexts name.
    `local`: what a target's `platforms = ["local"]` (buildx's own default) builds for."""
    names = {(target.source, target.name): _named(target) for target in targets}
    found: dict[str, Image] = {}
    for target in targets:
        image = _image(target, names, defaults, tree=tree, problems=problems, local=local)
        if image is None:
            continue
        if image.name in found:
            other = found[image.name].defined_in
            fix = "give one project a `name:`" if target.source.project else "give one of them another name"
            problems.add(_key(target), f"is image {image.name!r}, as a target of {other} is; {fix}")
            continue
        found[image.name] = image
    return found


def one_build_each(images: Sequence[Image]) -> tuple[Image, ...]:
    """Images a definition file defines alike (compose services sharing one `build:` through an
    anchor or `extends`: 19 services of one sentry build in getsentry/self-hosted) are one build,
    published under every name: the first name (sorted) is the image, the others its `also`.
    Only what the build makes counts (`as_built`), not a cache named after each service."""
    groups: dict[object, list[Image]] = {}
    for image in images:
        alike = image.defined_in and not image.only_as_context
        key = ("build", as_built(image), image.foreign_binaries, image.timeout, image.defined_in)
        groups.setdefault(key if alike else ("name", image.name), []).append(image)
    merged: list[Image] = []
    renamed: dict[str, str] = {}
    for group in groups.values():
        first, *rest = sorted(group, key=lambda image: image.name)
        if rest:
            aliases = tuple(dict.fromkeys(alias for image in group for alias in image.aliases))
            first = dataclasses.replace(first, also=tuple(image.name for image in rest), aliases=aliases)
            renamed.update((image.name, first.name) for image in rest)
        merged.append(first)
    return tuple(_renamed_contexts(image, renamed) for image in merged)


def _renamed_contexts(image: Image, renamed: Mapping[str, str]) -> Image:
    """`target:` contexts that name another name of one build name the build."""
    contexts = tuple(
        (key, TARGET + renamed.get(named, named)) if value.startswith(TARGET) else (key, value)
        for key, value in image.contexts
        for named in (value[len(TARGET) :],)
    )
    return dataclasses.replace(image, contexts=contexts) if contexts != image.contexts else image


def _named(target: Target) -> str:
    """The image a target is: a compose project's service as compose names its image."""
    name = image_name(target.name)
    return f"{target.source.project}-{name}" if target.source.project else name


def _key(target: Target) -> str:
    return f"{target.source.label}: target {target.name!r}"


def _image(
    target: Target,
    names: Mapping[tuple[Source, str], str],
    defaults: Defaults,
    *,
    tree: Tree,
    problems: Problems,
    local: tuple[str, ...] = (),
) -> Image | None:
    spec, key, name = target.spec, _key(target), names[target.source, target.name]
    if not fields.image_name(name, key, problems):
        return None
    located = _located(spec, target.source.directory, key, tree, problems)
    if located is None:
        return None
    context, dockerfile = located
    said = Said(
        context=context,
        dockerfile=dockerfile,
        platforms=_platforms(spec.get("platforms"), local, f"{key}.platforms", problems),
        target=spec.get("target") or None,
        build_args=fields.build_args(_present(spec.get("args")), f"{key}.args", problems),
        contexts=_contexts(spec.get("contexts") or {}, names, target, tree, problems),
        cache_from=_caches(spec.get("cache-from"), f"{key}.cache-from", problems),
        cache_to=_caches(spec.get("cache-to"), f"{key}.cache-to", problems),
        labels=tuple(sorted(_present(spec.get("labels")).items())),
        extra=tuple((field, json.dumps(spec[field], sort_keys=True)) for field in PASSED if spec.get(field)),
        defined_in=target.source.label,
        only_as_context=not target.default or not _makes_an_image(spec),
        aliases=tuple(str(tag) for tag in spec.get("tags") or () if references.is_valid(str(tag))),
    )
    return assemble(name, said, defaults)


def _caches(value: object, key: str, problems: Problems) -> tuple[str, ...] | None:
    """A target's cache sources or destinations; None when it sets none ([tool.multiarch]'s hold)."""
    return fields.caches(_specs(value), key, problems) if value else None


def _platforms(value: object, local: tuple[str, ...], key: str, problems: Problems) -> tuple[str, ...] | None:
    """A target's platforms; `local` (the platform of the machine that builds, buildx's default)
    stands for the [tool.multiarch] platforms, else this machine's."""
    if not value:
        return None
    if isinstance(value, list) and "local" in value:
        value = list(dict.fromkeys(p for item in value for p in (local if item == "local" else (item,))))
        if not value:
            problems.add(key, '"local" is the machine that builds: set `platforms` in [tool.multiarch]')
            return None
    return fields.platforms(value, key, problems)


NOT_IMAGES = ("local", "tar", "cacheonly")  # bake outputs that are files, or nothing: no image to publish


def _makes_an_image(spec: Mapping[str, Any]) -> bool:
    """Whether a target's outputs are an image (none said: one, as mab-hook builds it); a target
    that writes files (`type=local`, `type=tar`) or nothing is built only as another's context."""
    outputs = spec.get("output") or ()
    kinds = [str(fields_of(out).get("type", "")) for out in outputs]
    return not kinds or any(kind not in NOT_IMAGES for kind in kinds)


def fields_of(output: object) -> Mapping[str, str]:
    """A bake output, as bake --print gives it: `type=local,dest=bin` or a table."""
    if isinstance(output, dict):
        return {str(k): str(v) for k, v in output.items()}
    return specs.parse(str(output))


def _located(
    spec: Mapping[str, Any], directory: str, key: str, tree: Tree, problems: Problems
) -> tuple[str, str] | None:
    """The context and the Dockerfile as repository paths, as buildx finds them: a Dockerfile
    relative to its context (or to where bake runs, with `cwd://`)."""
    value = str(spec.get("context") or ".")
    if _REMOTE_RE.match(value) and not value.startswith("cwd://"):
        problems.add(
            f"{key}.context",
            f"{value!r} is a remote context: mab-hook builds what the pushed "
            "commit holds, so a context must be a directory of the repository",
        )
        return None
    context = fields.normalize(
        fields.under(directory, value.removeprefix("cwd://")), f"{key}.context", problems
    )
    if context is None:
        return None
    if not tree.has_dir(context):
        problems.add(f"{key}.context", f"directory {context!r} does not exist in this commit")
    if spec.get("dockerfile-inline"):
        problems.add(
            f"{key}.dockerfile-inline",
            "is not supported: mab-hook reads what a build reads from the Dockerfile in the "
            "repository; move it into a file named by `dockerfile`",
        )
        return None
    written = str(spec.get("dockerfile") or "Dockerfile")
    if written.startswith("cwd://"):
        path = fields.under(directory, written.removeprefix("cwd://"))
    else:
        path = written if posixpath.isabs(written) else fields.under(context, written)
    dockerfile = fields.normalize(path, f"{key}.dockerfile", problems)
    if dockerfile is None:
        return None
    if not tree.exists(dockerfile):
        problems.add(f"{key}.dockerfile", f"{dockerfile!r} is not a tracked file in this commit")
    return context, dockerfile


def _contexts(
    value: Mapping[str, Any],
    names: Mapping[tuple[Source, str], str],
    target: Target,
    tree: Tree,
    problems: Problems,
) -> tuple[tuple[str, str], ...]:
    """Named contexts; `target:NAME` (bake) and `service:NAME` (compose) name another image."""
    key = f"{_key(target)}.contexts"
    plain, images = {}, []
    for name, context in value.items():
        other = re.match(r"^(?:target|service):(.+)$", str(context))
        if other is None:
            plain[name] = context
            continue
        named = (target.source, other.group(1).replace(".", "_"))  # a compose service as bake names it
        if named not in names:
            problems.add(f"{key}.{name}", f"{context!r} names no target of {target.source.label}")
            continue
        images.append((name, TARGET + names[named]))
    return tuple(sorted((*fields.contexts(plain, key, tree, problems, target.source.directory), *images)))


def _specs(value: Any) -> Any:
    """Cache and secret specs as strings: newer buildx prints them as objects."""
    if isinstance(value, list):
        return [
            specs.format({str(k): str(v) for k, v in item.items()}) if isinstance(item, dict) else item
            for item in value
        ]
    return value


def _present(value: Any) -> dict[str, Any]:
    """A table without the entries bake prints as null (an arg declared without a value)."""
    return {k: v for k, v in value.items() if v is not None} if isinstance(value, dict) else {}
