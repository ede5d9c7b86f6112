"""The configuration as records: `Config` and its `Image`s, whichever file said what.

An image comes from a `[tool.multiarch.images.NAME]` table, from a compose service or bake
target (with the table's settings on top), or from a tracked Dockerfile; past this point
nothing tells them apart but `defined_in`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

from mab_hook import references
from mab_hook.builders import BuilderSpec
from mab_hook.patterns import literal_prefix

# The emulator installer doctor suggests; pinned, since `latest` changes under a team's feet.
DEFAULT_BINFMT_IMAGE = "tonistiigi/binfmt:qemu-v8.1.5"
DEFAULT_JOBS = 2
STAGING = "mab-staging"  # under the registry prefix: where uploads wait unless `staging` says
DEFAULT_KEEP_LOGS = 50
DEFAULT_TAGS = ("{short_sha}",)
# Git tags that publish: release tags (v1.2.3, 1.2.3). Branches: the remote's default one.
DEFAULT_PUBLISH_TAGS = ("v[0-9]*", "[0-9]*")
LOCAL_PATH_KEYS = ("src", "dest")  # what a `type=local` cache reads from or writes to
OCI_LAYOUT = "oci-layout://"
DOCKER_IMAGE = "docker-image://"
TARGET = "target:"  # a named context that is another image, built from the same commit
# Labels of every image mab-hook builds: what a staging reference is checked by.
INPUT_DIGEST_LABEL = "dev.mab-hook.input-digest"
REVISION_LABEL = "org.opencontainers.image.revision"


@dataclass(frozen=True)
class Image:
    name: str
    context: str  # repository-relative POSIX path, "." for the root
    dockerfile: str  # repository-relative POSIX path
    platforms: tuple[str, ...]
    target: str | None = None
    build_args: tuple[tuple[str, str], ...] = ()
    watch: tuple[str, ...] = ()
    # Named build contexts: name -> repository directory, `target:<image>` (another image of
    # the repository), or a buildx source passed as is (docker-image://, oci-layout://, https://).
    contexts: tuple[tuple[str, str], ...] = ()
    cache_from: tuple[str, ...] = ()  # BuildKit cache sources, `{name}` already filled in
    cache_to: tuple[str, ...] = ()
    timeout: float | None = None  # seconds a build may take
    # BuildKit secrets the build asks for, "id=npm,env=NPM_TOKEN": only the id counts; where
    # the secret comes from is the pusher's grant (`grants`), never the commit's.
    secrets: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()  # image labels a compose or bake file sets
    # Bake fields of a compose service or bake target passed to buildx as they are (`network`,
    # `ssh`, `shm-size`...): name -> the value as JSON.
    extra: tuple[tuple[str, str], ...] = ()
    defined_in: str = ""  # the compose or bake file(s) it comes from; "" for pyproject.toml
    # A bake target outside the default group that another's `target:` context names: built
    # only as that context, never tagged or pushed.
    only_as_context: bool = False
    # Paths in the image (Docker patterns) of programs for another CPU it carries on purpose
    # (an emulator, a cross toolchain): the check of what was built lets them be.
    foreign_binaries: tuple[str, ...] = ()
    # The references a compose `image:` or bake `tags` give it: what a FROM line of another
    # image of the repository names it by (the in-repo base it is).
    aliases: tuple[str, ...] = ()
    # The other names of this very build: compose services that share one `build:` (an anchor,
    # `extends`) are built once and published under each name.
    also: tuple[str, ...] = ()

    def __getstate__(self) -> dict[str, object]:
        """Pickled without the fields left at their defaults, which the class holds: most are,
        and a kept configuration of 5,000 images loads a third faster for it."""
        return {k: v for k, v in self.__dict__.items() if k in _FIELDS and not _is_default(k, v)}

    @property
    def names(self) -> tuple[str, ...]:
        """Its name, then the other names of its build."""
        return (self.name, *self.also)

    @property
    def network(self) -> str | None:
        """The network its RUN steps use, when a compose or bake file sets one."""
        value = dict(self.extra).get("network")
        return str(json.loads(value)) if value is not None else None

    @property
    def watches(self) -> tuple[str, ...]:
        """The `watch` globs, and the OCI layouts of the repository a named context reads."""
        layouts = tuple(
            f"{layout_path(value)}/**" for _name, value in self.contexts if value.startswith(OCI_LAYOUT)
        )
        return self.watch + layouts

    def directories(self) -> tuple[str, ...]:
        """The repository directories its build reads as contexts: its own, and each named
        context's (a named context that is not local reads the main context's)."""
        named = (self.context_dir(name) or self.context for name, _value in self.contexts)
        return tuple(dict.fromkeys((self.context, *named)))

    def context_dir(self, name: str) -> str | None:
        """The repository directory of a named context, or None (not one, or not local)."""
        value = dict(self.contexts).get(name)
        return None if value is None or is_external_context(value) else value

    @functools.cached_property
    def image_contexts(self) -> tuple[tuple[str, str], ...]:
        """(context name, image name) for each named context that is another image. Kept once
        worked out: planning asks each affected image several times (7,400 at 5,000 images)."""
        return tuple((key, value[len(TARGET) :]) for key, value in self.contexts if value.startswith(TARGET))


_FIELDS = frozenset(f.name for f in dataclasses.fields(Image))  # not what a cached property keeps
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Image) if f.default is not dataclasses.MISSING}


def _is_default(name: str, value: object) -> bool:
    return bool(_DEFAULTS.get(name, dataclasses.MISSING) == value)


@dataclass(frozen=True)
class Defaults:
    """What [tool.multiarch] gives every image that does not say otherwise."""

    platforms: tuple[str, ...] = ()
    cache_from: tuple[str, ...] = ()  # `{name}` not yet filled in: each image fills its own
    cache_to: tuple[str, ...] = ()
    timeout: float | None = None
    secrets: tuple[str, ...] = ()


@dataclass(frozen=True)
class Said:
    """What one source says of an image: a `[tool.multiarch.images.NAME]` table, a compose service
    or bake target, a tracked Dockerfile. None (or empty) says nothing: what lies under it holds,
    and tables, maps and lists add to it (a table's build args over its compose service's)."""

    context: str
    dockerfile: str
    platforms: tuple[str, ...] | None = None
    target: str | None = None
    build_args: tuple[tuple[str, str], ...] = ()
    watch: tuple[str, ...] = ()
    contexts: tuple[tuple[str, str], ...] = ()
    cache_from: tuple[str, ...] | None = None
    cache_to: tuple[str, ...] | None = None
    timeout: float | None = None
    secrets: tuple[str, ...] | None = None
    labels: tuple[tuple[str, str], ...] = ()
    extra: tuple[tuple[str, str], ...] = ()
    defined_in: str = ""
    only_as_context: bool = False
    foreign_binaries: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()


def assemble(name: str, said: Said, under: Image | Defaults) -> Image:
    """The one way an `Image` is made: what a source says, over what lies under it (the image a
    compose or bake file defines under that name, or [tool.multiarch]'s defaults)."""
    below = under if isinstance(under, Image) else _blank(name, said, under)
    return Image(
        name=name,
        context=said.context,
        dockerfile=said.dockerfile,
        platforms=below.platforms if said.platforms is None else said.platforms,
        target=said.target or below.target,
        build_args=_merged(below.build_args, said.build_args),
        watch=below.watch + said.watch,
        contexts=_merged(below.contexts, said.contexts),
        cache_from=_filled(below.cache_from if said.cache_from is None else said.cache_from, name),
        cache_to=_filled(below.cache_to if said.cache_to is None else said.cache_to, name),
        timeout=below.timeout if said.timeout is None else said.timeout,
        secrets=below.secrets if said.secrets is None else said.secrets,
        labels=_merged(below.labels, said.labels),
        extra=said.extra or below.extra,  # in the order buildx is given them
        defined_in=said.defined_in or below.defined_in,
        only_as_context=said.only_as_context or below.only_as_context,
        foreign_binaries=below.foreign_binaries + said.foreign_binaries,
        aliases=tuple(dict.fromkeys(below.aliases + said.aliases)),
        also=below.also,
    )


def _blank(name: str, said: Said, defaults: Defaults) -> Image:
    return Image(
        name=name,
        context=said.context,
        dockerfile=said.dockerfile,
        platforms=defaults.platforms,
        cache_from=defaults.cache_from,
        cache_to=defaults.cache_to,
        timeout=defaults.timeout,
        secrets=defaults.secrets,
    )


def _merged(
    below: tuple[tuple[str, str], ...], said: tuple[tuple[str, str], ...]
) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({**dict(below), **dict(said)}.items()))


def _filled(entries: tuple[str, ...], name: str) -> tuple[str, ...]:
    return tuple(entry.replace("{name}", name) for entry in entries)


# The fields of an image that decide what its build makes, which its input digest covers; the
# others say where it goes and how it is built (cache, time limit, which file said it).
BUILD_FIELDS = (
    "context",
    "dockerfile",
    "platforms",
    "target",
    "build_args",
    "watch",
    "contexts",
    "secrets",
    "labels",
    "extra",
)


def as_built(image: Image) -> tuple[object, ...]:
    """What of an image's settings decides what is built, and whether it is published at all."""
    return (*(getattr(image, field) for field in BUILD_FIELDS), image.only_as_context)


class Where(NamedTuple):
    """The images of a configuration by the paths that come near them (`Config.where`). A name
    alone where one image is there (most paths): a kept configuration of 5,000 images loads
    faster without 10,000 one-name tuples."""

    # A Dockerfile -> image names; its own ignore file (`<Dockerfile>.dockerignore`) is asked by it.
    files: Mapping[str, str | tuple[str, ...]]
    directories: Mapping[str, str | tuple[str, ...]]  # a context's directory -> image names
    # A `watches` glob's leading literal directory -> (image, glob): asked only where a change is
    watching: Mapping[str, tuple[tuple[str, str], ...]]

    def at_file(self, path: str) -> tuple[str, ...]:
        return _names(self.files.get(path, ()))

    def at_directory(self, directory: str) -> tuple[str, ...]:
        return _names(self.directories.get(directory, ()))


def _names(found: str | tuple[str, ...]) -> tuple[str, ...]:
    return (found,) if isinstance(found, str) else found


def _one_or_all(names: list[str]) -> str | tuple[str, ...]:
    return names[0] if len(names) == 1 else tuple(names)


# What docker accepts as a context's name (and buildx as a builder's): never an option.
ENGINE_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.+-]*")


@dataclass(frozen=True)
class Config:
    source: str  # what to name in messages, e.g. "pyproject.toml at 1a2b3c4"
    platforms: tuple[str, ...]
    images: tuple[Image, ...]
    registry: str | None = None
    # Where uploads wait to be published (a repository prefix); None: `<registry>/mab-staging`.
    staging: str | None = None
    builder: str | None = None
    push: bool = False
    tags: tuple[str, ...] = DEFAULT_TAGS
    # The refs whose pushes move public tags (glob patterns of short names); None: the
    # remote's default branch. Other pushes build and upload under staging tags only.
    publish_branches: tuple[str, ...] | None = None
    publish_tags: tuple[str, ...] = DEFAULT_PUBLISH_TAGS
    binfmt_image: str = DEFAULT_BINFMT_IMAGE
    buildkit_image: str | None = None  # what a docker-container builder made by doctor --fix runs
    jobs: int = DEFAULT_JOBS  # images built at once
    keep_logs: int = DEFAULT_KEEP_LOGS  # pushes whose logs .git/mab-hook keeps
    builder_spec: BuilderSpec | None = None  # how to create `builder` when it is missing
    # Platforms built on an engine of their own (a docker context or a buildx builder), natively;
    # the others on `builder`. `engine_down`: "fail" or "emulate" (on `builder`) when one is not ready.
    engines: tuple[tuple[str, str], ...] = ()
    engine_down: str = "fail"
    # The files the images were resolved from (compose, bake, `.env`, what they include): a
    # change to one may change images without any Dockerfile change.
    definitions: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # what those files set that reaches no build, and what to do

    def reference(self, image: Image) -> str:
        """The repository part of an image reference, without tag."""
        return self._repository(image.name)

    def references(self, image: Image) -> tuple[str, ...]:
        """Every repository an image is published to: its name's, then each of its `also`."""
        return tuple(self._repository(name) for name in image.names)

    # What planning works out from the images alone. Worked out once: a cached configuration
    # keeps them (`config.load`), since 5,000 images cost some 50 ms each run.

    @functools.cached_property
    def by_reference(self) -> dict[str, str]:
        """Every way a FROM line can name an image of this repository: its full reference,
        normalized, its bare name, or what its compose or bake definition tags it (the first
        image that says so; a name or reference of our own wins)."""
        names: dict[str, str] = {}
        for image in self.images:
            for alias in image.aliases:  # a compose `image:`, a bake tag
                names.setdefault(references.parse(alias).repository, image.name)
        for image in self.images:
            for name, reference in zip(image.names, self.references(image), strict=True):
                names[name] = image.name
                names[references.parse(reference).repository] = image.name
        return names

    def naming(self, image: Image) -> tuple[str, ...]:
        """The words that name an image where another's Dockerfile or build args mention it."""
        found = [word for pair in zip(image.names, self.references(image), strict=True) for word in pair]
        return (*found, *(references.split(alias)[0] for alias in image.aliases))

    @functools.cached_property
    def where(self) -> Where:
        """Which images a changed path can come near, by the path: planning asks this of each
        changed path, not each image of each changed path."""
        files: dict[str, list[str]] = {}
        directories: dict[str, list[str]] = {}
        for image in self.images:
            files.setdefault(image.dockerfile, []).append(image.name)  # and its own ignore file
            for directory in image.directories():
                directories.setdefault(directory, []).append(image.name)
        watching: dict[str, list[tuple[str, str]]] = {}
        for image in self.images:
            for glob in image.watches:
                watching.setdefault(literal_prefix(glob), []).append((image.name, glob))
        return Where(
            {k: _one_or_all(v) for k, v in files.items()},
            {k: _one_or_all(v) for k, v in directories.items()},
            {k: tuple(v) for k, v in watching.items()},
        )

    @functools.cached_property
    def naming_words(self) -> frozenset[str]:
        """The words that name any image of the repository."""
        return frozenset(word for image in self.images for word in self.naming(image))

    @functools.cached_property
    def naming_digest(self) -> str:
        """What the naming words are, in a line: what a record of them is kept under."""
        words = "\0".join(sorted(self.naming_words))
        return hashlib.sha256(words.encode("utf-8", "surrogateescape")).hexdigest()

    @functools.cached_property
    def mentions_digest(self) -> str:
        """What the index of which image mentions which is made from, besides the Dockerfiles:
        the naming words, and each image's Dockerfile, build args and `target:` contexts."""
        made = [(i.name, i.dockerfile, i.build_args, i.image_contexts) for i in self.images]
        text = repr((self.naming_digest, made))
        return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()

    def _repository(self, name: str) -> str:
        return f"{self.registry}/{name}" if self.registry else name

    def staging_repository(self, image: Image) -> str:
        """The repository an image's uploads wait in, out of sight of its public tags: one per
        image, under the staging prefix, so that blobs mount across on publish."""
        prefix = self.staging or (f"{self.registry}/{STAGING}" if self.registry else STAGING)
        return f"{prefix}/{image.name}"

    @property
    def published(self) -> tuple[Image, ...]:
        """The images that are built, tagged and pushed on their own."""
        return tuple(image for image in self.images if not image.only_as_context)


def is_external_context(value: str) -> bool:
    return "://" in value or value.startswith(TARGET)


def layout_path(value: str) -> str:
    """The repository path of an `oci-layout://path[:tag|@digest]` context."""
    path = value[len(OCI_LAYOUT) :].partition("@")[0]
    head, colon, tag = path.rpartition(":")
    return head if colon and "/" not in tag else path
