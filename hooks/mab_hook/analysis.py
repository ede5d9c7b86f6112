"""What planning reads of images, each part once and only when it is needed: the inputs of a
build (its files, its bases, what it pulls), and which other images of the repository it builds on."""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import partial
from typing import NamedTuple

from mab_hook import inputs, references
from mab_hook.budget import Deadline
from mab_hook.dockerfile import Source
from mab_hook.errors import FatalError
from mab_hook.images import Config, Image
from mab_hook.inputs import Files, Inputs


class Base(NamedTuple):
    """An in-repo image another image is built on."""

    name: str  # the base image's name in the config
    key: str  # the reference as written, as buildx's named-context key


class Analysis:
    """Inputs and in-repo bases of images, each computed once, and only when needed.

    Reading every Dockerfile of a large monorepo through BuildKit's parser costs more than the
    rest of the plan, so only images a changed path could touch are read, and then the images
    that may build on an affected one: those whose Dockerfile or build args name it.
    """

    def __init__(self, config: Config, files: Files, build_platform: str, deadline: Deadline) -> None:
        self.config, self.files, self.build_platform = config, files, build_platform
        self.deadline = deadline
        self.by_name = {image.name: image for image in config.images}
        self.names = config.by_reference
        self.named: dict[str, Base | None] = {}  # reference -> the image it names (FROM lines repeat)
        self.inputs: dict[str, Inputs] = {}
        self.bases: dict[str, tuple[Base, ...]] = {}
        self.mentions: dict[str, set[str]] | None = None  # word -> images whose Dockerfile has it
        self.computing: set[str] = set()  # images whose inputs are being worked out

    def inputs_of(self, name: str) -> Inputs:
        if name not in self.by_name:
            known = ", ".join(self.by_name) or "none"
            raise FatalError(f"{self.config.source}: no image named {name!r} (images: {known})")
        if name not in self.inputs:
            self.deadline.check()
            image = self.by_name[name]
            self.computing.add(name)
            try:
                found = inputs.compute(
                    image,
                    self.files,
                    build_platform=self.build_platform,
                    triggers=partial(self._triggers, name),
                )
            finally:
                self.computing.discard(name)
            self.inputs[name] = found
            named = tuple(Base(other, key) for key, other in image.image_contexts)  # `target:` contexts
            bases = (self.in_repo(name, ref) for ref in found.bases)
            self.bases[name] = named + tuple(base for base in bases if base is not None)
        return self.inputs[name]

    def in_repo(self, name: str, ref: str) -> Base | None:
        """The other image of the repository that a reference in image `name`'s build names."""
        if ref not in self.named:
            self.named[ref] = in_repo(self.names, ref)
        found = self.named[ref]
        return found if found is not None and found.name != name else None

    def _triggers(self, name: str, ref: str) -> tuple[Source, ...]:
        """The ONBUILD triggers of the in-repo image `ref` names in image `name`'s Dockerfile:
        they run in `name`'s build, and read its context."""
        named = dict(self.by_name[name].image_contexts).get(ref)
        found = self.in_repo(name, ref)
        base = named or (found.name if found is not None else None)
        if base is None or base in self.computing:  # not ours, or a cycle (build_order names it)
            return ()
        whose = f"base image {base} ({self.by_name[base].dockerfile})"
        return tuple(source._replace(trigger=whose) for source in self.inputs_of(base).onbuild)

    def bases_of(self, name: str) -> tuple[Base, ...]:
        self.inputs_of(name)
        return self.bases[name]

    def may_build_on(self, base: str) -> set[str]:
        """Images whose Dockerfile or build args name `base`: the only ones that can build on it."""
        if self.mentions is None:
            self.mentions = self._mentions()
        found: set[str] = set()
        for word in self.config.naming(self.by_name[base]):
            found |= self.mentions.get(word, set())
        return found - {base}

    def _mentions(self) -> dict[str, set[str]]:
        """Word -> the images whose Dockerfile or build args have it, for the words that name an
        image (a Dockerfile has many more: only these are ever looked up). What an earlier run
        made is kept with where it held: for the same configuration, over the same kept
        listing, only the images whose Dockerfile changed from it then, or now, are put in
        afresh; otherwise every image is (its Dockerfile's words cached by blob)."""
        cache, images = self.files.cache, self.config.images
        made_of = self.config.mentions_digest
        now = self.files.tree.difference()
        entry = cache.get(MENTIONS_KEY) if cache is not None else None
        held = now is not None and isinstance(entry, tuple) and entry[:2] == (made_of, now.base)
        kept = entry if held else None
        found: dict[str, set[str]] = {}
        stale = list(images)
        if kept is not None and now is not None:
            since, found = kept[2] | now.changed, kept[3]
            stale = [image for image in images if image.dockerfile in since]
            gone = {image.name for image in stale}
            for named in found.values() if gone else ():
                named.difference_update(gone)
        self.files.prefetch((image.dockerfile, WORDS_KEY) for image in stale)
        for image in stale:
            for word in self._mentioned(image):
                found.setdefault(word, set()).add(image.name)
        # Written when made or changed: a run that reads no Dockerfile leaves it as it was, and
        # the next one reads what changed since it was made (no Dockerfile of an image, then).
        if cache is not None and now is not None and stale:
            cache[MENTIONS_KEY] = (made_of, now.base, now.changed, found)
        return found

    def _mentioned(self, image: Image) -> set[str]:
        """The words naming an image that this image's Dockerfile, build args and `target:`
        contexts have."""
        naming = self.config.naming_words
        mentioned = set(self._named_in(image.dockerfile, naming))
        if image.build_args:
            mentioned |= reference_words(" ".join(v for _k, v in image.build_args)) & naming
        mentioned.update(other for _key, other in image.image_contexts)
        return mentioned

    def _named_in(self, path: str, naming: frozenset[str]) -> frozenset[str]:
        return self.files.memo(path, WORDS_KEY, partial(self._words_in, path)) & naming

    def _words_in(self, path: str) -> frozenset[str]:
        return reference_words(self.files.read(path) or "")


# The cache's entry of which image mentions which (`_mentions`), with what it was made from
# and where it held.
MENTIONS_KEY = "mentions-index"
WORDS_KEY = ("words",)  # what the cache keeps of a Dockerfile for this: the names it mentions
_WORD_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@-]*")


def reference_words(text: str) -> frozenset[str]:
    """Everything in a text that could name an image: each word without its tag or digest, and
    every '/'-suffix of it (`${REGISTRY}/team/api:1` names `team/api` and `api`)."""
    words: set[str] = set()
    for word in _WORD_RE.findall(text):
        name, _tag = references.split(word)
        parts = name.split("/")
        words.update("/".join(parts[i:]) for i in range(len(parts)))
    return frozenset(words)


def in_repo(names: Mapping[str, str], ref: str) -> Base | None:
    """The image of the repository a reference names, if any."""
    parsed = references.parse(ref)
    base_name = names.get(parsed.repository) or names.get(references.split(ref)[0])
    return Base(base_name, parsed.context_key) if base_name is not None else None
