"""What an image's build really reads from the repository, and why a path counts or not.

From the Dockerfile at the pushed commit: the stages the configured target builds, their
COPY/ADD sources and bind mounts (ARGs expanded for every platform of the image), read from the
main build context or from named contexts, minus what the ignore file in use leaves out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Iterable, Mapping, MutableMapping, Sequence
from typing import Any, NamedTuple, TypeVar

from mab_hook import budget, dockerfile, ignore, links, patterns
from mab_hook.budget import Deadline
from mab_hook.dockerfile import Dockerfile, Source, Stage
from mab_hook.errors import FatalError
from mab_hook.ignore import Ignore
from mab_hook.images import DOCKER_IMAGE, OCI_LAYOUT, TARGET, Image, layout_path
from mab_hook.paths import Tracked, Tree, join, relative_to, shown

T = TypeVar("T")
IGNORE_KEY = ("text",)  # what the cache keeps of an ignore file: its text


class Files(NamedTuple):
    """The files of one commit: its tree, a reader, and what earlier runs worked out from them.

    `entry` gives a file's mode and blob id ("100644 1a2b..."). `memo` keeps results about a
    file (a parsed Dockerfile, say) under it, so a file unchanged since an earlier run is
    neither read nor parsed again.
    """

    tree: Tracked
    read: Callable[[str], str | None]
    entry: Callable[[str], str | None] = lambda path: None
    cache: MutableMapping[Hashable, Any] | None = None
    fetch: Callable[[Iterable[str]], None] = lambda paths: None  # reads many files ahead of `read`
    gitlinks: tuple[str, ...] = ()  # the submodules of the commit, by path
    symlinks: frozenset[str] = frozenset()  # the symlinks of the commit, by path

    def prefetch(self, wanted: Iterable[tuple[str, tuple[Hashable, ...]]]) -> None:
        """Read in one go the files `memo` will need for these keys (it holds the others)."""
        self.fetch(path for path, key in wanted if not self._known(path, key))

    def _known(self, path: str, key: tuple[Hashable, ...]) -> bool:
        blob = self.entry(path)
        return blob is not None and self.cache is not None and (blob, *key) in self.cache

    def memo(self, path: str, key: tuple[Hashable, ...], make: Callable[[], T]) -> T:
        blob = self.entry(path)
        if blob is None or self.cache is None:
            return make()
        full = (blob, *key)
        if full not in self.cache:
            self.cache[full] = make()
        return self.cache[full]  # type: ignore[no-any-return]

    @classmethod
    def of(cls, contents: Mapping[str, str]) -> Files:
        return cls(Tree.of(contents), contents.get)

    def exists(self, path: str) -> bool:
        return self.tree.exists(path)

    def followed(self, path: str, what: str) -> str:
        """A file buildx reads itself on the pushing machine (a Dockerfile, an ignore file),
        through the commit's symlinks: where they lead inside the repository. One that leads
        out of it would have buildx read a file of that machine: an error."""
        if path not in self.symlinks:  # the usual commit has none
            return path
        try:
            return links.followed(path, lambda p: (self.read(p) or "") if p in self.symlinks else None)[-1]
        except links.Escape as e:
            if not e.target:
                raise FatalError(f"{what} {e.path}: its symlinks go round in circles") from None
            raise FatalError(
                f"{what} {e.path} is a symlink to {e.target!r}, outside the repository: buildx would read "
                "that file of the machine that pushes. Make it a file, or a link inside the repository"
            ) from None

    def under(self, directory: str) -> Sequence[str]:
        return self.tree.under(directory)


class Rule(NamedTuple):
    """One way a build reads repository files: a COPY/ADD source, a bind mount, a context."""

    source: Source  # kind "COPY", "ADD", "bind mount", or "FROM" for a named context as base
    context: str  # the repository directory of the context it reads from ("." for the root)
    context_name: str | None  # None: the main build context
    stage: str  # "stage 'build'" or "stage 2", for explanations
    reachable: bool  # run by a build of the configured target
    ignore: Ignore  # the ignore file of that context
    link: str = ""  # read through this symlink (the source, or a directory on its way)

    def reads(self, path: str) -> bool:
        return self.why_not(path) is None

    def reads_into(self, path: str) -> bool:
        """Whether the rule reads something inside `path` (a submodule, whose files the commit's
        own tree does not list): `COPY vendor/lib/src /x` reads into the submodule vendor/lib."""
        relative = relative_to(path, self.context)
        if not relative:
            return False
        pattern = patterns.clean(self.source.pattern).split("/")
        depth = len(relative.split("/"))
        if len(pattern) <= depth or self.ignore.excludes(relative):
            return False
        return patterns.matched_root("/".join(pattern[:depth]), relative) == relative

    def why_not(self, path: str) -> str | None:
        """None when the rule reads `path`; otherwise what stops it."""
        relative = relative_to(path, self.context)
        if relative is None:
            return "outside its context"
        source = self.source
        root = patterns.matched_root(source.pattern, relative, parents=source.parents)
        if root is None:
            return "not matched"
        if self.ignore.excludes(relative):  # after the cheaper pattern test
            return f"excluded by {self.ignore.path}"
        if patterns.excluded_by(source.excludes, root, relative):
            return f"excluded by --exclude={','.join(source.excludes)} of {self.describe()}"
        return None

    def candidates(self, tree: Tracked) -> Sequence[str]:
        """The only files the rule can read: the file or directory a literal source names, or
        what lies under the literal directories a wildcard source starts with."""
        pattern = patterns.clean(self.source.pattern)
        if patterns.has_wildcard(pattern):
            return tree.under(join(self.context, patterns.literal_prefix(pattern)))
        path = join(self.context, pattern)
        return (path,) if tree.exists(path) else tree.under(path)

    def describe(self) -> str:
        source = self.source
        where = f" from context {self.context_name!r}" if self.context_name else ""
        trigger = f"ONBUILD of {source.trigger}, " if source.trigger else ""
        link = f", through symlink {shown(self.link)!r}" if self.link else ""
        return f"{source.kind} {shown(source.pattern)!r}{where} ({trigger}line {source.line}{link})"


class Inputs(NamedTuple):
    image: Image
    ignore: Ignore  # the ignore file in use for the main context
    target: str  # the stage built, for explanations
    rules: tuple[Rule, ...]  # of every stage; `reachable` tells which ones count
    bases: tuple[str, ...]  # image references the built stages read (FROM, --from)
    # The ONBUILD triggers the image carries: what a build FROM it reads of its own context.
    onbuild: tuple[Source, ...] = ()
    followed: tuple[str, ...] = ()  # where a symlinked Dockerfile or ignore file leads
    blank: tuple[int, ...] = ()  # lines of built stages whose FROM expands to nothing

    @property
    def ignore_file(self) -> str | None:
        return self.ignore.path

    def contexts(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(rule.context for rule in self.rules if rule.reachable))

    def submodules(self, gitlinks: Sequence[str]) -> tuple[str, ...]:
        """The submodules the build reads, whole or in part."""
        return tuple(
            path
            for path in gitlinks
            if any(rule.reachable and (rule.reads(path) or rule.reads_into(path)) for rule in self.rules)
        )

    def materialized(self) -> tuple[str, ...]:
        """What of the repository a build of the image needs on disk: its Dockerfile, the
        ignore file, its build context and the named contexts that are repository directories."""
        image = self.image
        wanted = [image.dockerfile, *([self.ignore_file] if self.ignore_file else []), image.context]
        wanted += [path for name, path in image.contexts if image.context_dir(name) is not None]
        wanted += [layout_path(value) for _name, value in image.contexts if value.startswith(OCI_LAYOUT)]
        return tuple(dict.fromkeys(wanted))

    def reason(self, path: str) -> str | None:
        """Why a changed path makes the image affected, or None."""
        if path == self.image.dockerfile:
            return f"Dockerfile changed: {shown(path)}"
        if path in self.followed:
            return f"what its Dockerfile or ignore file links to changed: {shown(path)}"
        if path == self.ignore_file:
            return f"ignore file changed: {shown(path)}"
        for rule in self.rules:
            if rule.reachable and (rule.reads(path) or rule.reads_into(path)):
                return f"{rule.describe()} reads: {shown(path)}"
        return None

    def explain(self, path: str) -> str:
        """Why a path counts for this image or not, in one line."""
        reason = self.reason(path)
        if reason is not None:
            return f"counts: {reason}"
        relative = [rule for rule in self.rules if relative_to(path, rule.context) is not None]
        in_main = relative_to(path, self.image.context)
        if not relative and in_main is None:
            return "does not count: outside every build context of the image"
        if in_main is not None and self.ignore.excludes(in_main):
            return f"does not count: excluded by {self.ignore.path}"
        for rule in relative:
            if rule.ignore.excludes(relative_to(path, rule.context) or ""):
                return f"does not count: excluded by {rule.ignore.path}"
        unreachable = [rule for rule in relative if not rule.reachable and rule.reads(path)]
        if unreachable:
            rule = unreachable[0]
            return (
                f"does not count: only {rule.describe()} in {rule.stage} reads it, and the "
                f"build of {self.target} does not run that stage"
            )
        for rule in relative:
            why = rule.why_not(path)
            if rule.reachable and why and why.startswith("excluded by --exclude"):
                return f"does not count: {why}"
        return "does not count: in the build context, but no COPY, ADD or bind mount reads it"


def reads_needed(image: Image, files: Files, build_platform: str) -> list[tuple[str, tuple[Hashable, ...]]]:
    """The files `compute` reads for an image, with their memo keys: to fetch them at once."""
    if not files.symlinks:  # the usual commit: every file is where it is named
        wanted = [(image.dockerfile, _parse_key(image, build_platform))]
        return wanted + [
            (path, IGNORE_KEY) for path in _ignore_files(image, files).values() if path is not None
        ]
    wanted = [
        (
            files.followed(image.dockerfile, f"image {image.name}: its Dockerfile"),
            _parse_key(image, build_platform),
        )
    ]
    for path in _ignore_files(image, files).values():
        if path is not None:
            wanted.append((files.followed(path, "ignore file"), IGNORE_KEY))
    return wanted


def _parse_key(image: Image, build_platform: str) -> tuple[Hashable, ...]:
    return ("parsed", image.build_args, image.platforms, build_platform, image.dockerfile)


def _ignore_files(image: Image, files: Files) -> dict[str, str | None]:
    """The ignore file of each local context directory (None: it has none), main one first."""
    found = {image.context: ignore.ignore_file(image.context, image.dockerfile, files.exists)}
    for name, directory in image.contexts:
        if image.context_dir(name) is not None and directory not in found:
            found[directory] = ignore.ignore_file(directory, None, files.exists)
    return found


Triggers = Callable[[str], tuple[Source, ...]]


def _no_triggers(ref: str) -> tuple[Source, ...]:
    return ()


def compute(image: Image, files: Files, *, build_platform: str, triggers: Triggers = _no_triggers) -> Inputs:
    """What the image's build reads. `triggers`: the ONBUILD triggers of the in-repo image a
    FROM reference names (they read this build's context)."""
    if not files.exists(image.dockerfile):
        raise FatalError(f"image {image.name}: {image.dockerfile} is missing")
    ignores = {directory: _ignore(path, files) for directory, path in _ignore_files(image, files).items()}
    main_ignore = ignores[image.context]
    rules: dict[Rule, None] = {}
    bases: dict[str, None] = {}
    onbuild: dict[Source, None] = {}
    blank: dict[int, None] = {}
    target = ""
    key = _parse_key(image, build_platform)
    read = files.followed(image.dockerfile, f"image {image.name}: its Dockerfile")
    models = files.memo(read, key, lambda: _parse_for_platforms(image, files, build_platform, read))
    for parsed in models:
        built = parsed.target(image.target, source=image.dockerfile)
        target = _label(built)
        onbuild.update(dict.fromkeys(built.image_onbuild))
        reachable = {stage.number for stage in parsed.reachable(built)}
        for stage in parsed.stages:
            for rule in _rules(parsed, stage, image, ignores, stage.number in reachable, triggers=triggers):
                rules.setdefault(rule)
        # Named contexts that are directories, or other images (`target:`), are no image to pull.
        local = {
            name for name, value in image.contexts if image.context_dir(name) or value.startswith(TARGET)
        }
        for ref in parsed.external(s for s in parsed.stages if s.number in reachable):
            if ref not in local and ref:
                bases.setdefault(ref)
        blank.update(dict.fromkeys(s.line for s in parsed.stages if s.number in reachable and not s.base))
    found = (*rules, *(linked for rule in rules for linked in _followed(rule, files)))
    ignore_paths = [found.path for found in ignores.values() if found.path]
    targets = (read, *(files.followed(path, "ignore file") for path in ignore_paths))
    followed = tuple(dict.fromkeys(t for t in targets if t not in (image.dockerfile, *ignore_paths)))
    return Inputs(
        image,
        main_ignore,
        target,
        tuple(dict.fromkeys(found)),
        tuple(bases),
        tuple(onbuild),
        followed,
        tuple(blank),
    )


class Pull(NamedTuple):
    """An image from outside the repository that a build for `platform` pulls, for `wanted`."""

    platform: str  # the platform the image is built for
    ref: str  # the reference as written (after ARG expansion), or a named context's image
    wanted: str  # the platform it is pulled for: `platform`, or a `FROM --platform` value
    how: str  # "FROM", "COPY --from", "named context 'x'"
    line: int
    root: bool = False  # the image's filesystem starts from it: the FROM its built stage descends from


def pulls(image: Image, files: Files, *, build_platform: str, platforms: Sequence[str]) -> tuple[Pull, ...]:
    """What a build of the image for each of `platforms` pulls from outside the repository (in-repo
    images included: the plan tells them apart). FROM honours `--platform`; `COPY --from` and
    mounts of an image take the platform built, as BuildKit does."""
    read = files.followed(image.dockerfile, f"image {image.name}: its Dockerfile")
    as_built = dataclasses.replace(image, platforms=tuple(platforms))
    key = _parse_key(as_built, build_platform)  # the same parse as `compute`'s for its own platforms
    models = files.memo(read, key, lambda: _parse_for_platforms(as_built, files, build_platform, read))
    if len(models) == 1:  # no platform ARG: one parse serves every platform
        models = models * len(platforms)
    found: dict[Pull, None] = {}
    for platform, parsed in zip(platforms, models, strict=False):
        built = parsed.target(image.target, source=image.dockerfile)
        root = built
        while (parent := parsed.resolve(root.base, root)) is not None:
            root = parent
        for stage in parsed.reachable(built):
            for ref, how in ((stage.base, "FROM"), *((used, "--from") for used in stage.uses)):
                pull = _pull(parsed, stage, image, (ref, how), platform)
                if pull is not None:
                    found.setdefault(pull._replace(root=how == "FROM" and stage.number == root.number))
    return tuple(found)


def _pull(
    parsed: Dockerfile, stage: Stage, image: Image, named: tuple[str, str], platform: str
) -> Pull | None:
    ref, how = named
    if ref in ("scratch", "") or parsed.resolve(ref, stage) is not None:
        return None  # "": a FROM that expands to nothing, which the plan warns of
    wanted = (stage.platform or platform) if how == "FROM" else platform
    context = dict(image.contexts).get(ref)
    if context is None:
        return Pull(platform, ref, wanted, how, stage.line)
    if context.startswith(DOCKER_IMAGE):
        return Pull(platform, context[len(DOCKER_IMAGE) :], wanted, f"named context {ref!r}", stage.line)
    return None  # a directory, another image of the repository, a layout or a URL


def _followed(rule: Rule, files: Files) -> list[Rule]:
    """What a rule reads through symlinks: its source's literal path resolved through the links
    on its way, and each of its matches that is itself a link (BuildKit follows both)."""
    if not files.symlinks:  # the usual commit: nothing to follow, nothing to look up
        return []
    pattern = patterns.clean(rule.source.pattern)
    wildcard = patterns.has_wildcard(pattern)
    literal = patterns.literal_prefix(pattern) if wildcard else pattern
    found = []
    resolved = links.resolve(rule.context, literal, files.symlinks.__contains__, files.read)
    if resolved is not None:  # the wildcards after the links stay wildcards
        found.append(_through(rule, patterns.escape(resolved.path) + pattern[len(literal) :], resolved.link))
    if wildcard:
        for path in rule.candidates(files.tree):
            relative = relative_to(path, rule.context)
            if relative and path in files.symlinks and rule.reads(path):
                target = links.resolve(rule.context, relative, files.symlinks.__contains__, files.read)
                if target is not None:
                    found.append(_through(rule, patterns.escape(target.path), relative))
    return found


def _through(rule: Rule, pattern: str, link: str) -> Rule:
    source = rule.source._replace(pattern=pattern)
    return rule._replace(source=source, link=join(rule.context, link))


def _ignore(path: str | None, files: Files) -> Ignore:
    if path is None:
        return ignore.NO_IGNORE
    read = files.followed(path, "ignore file")
    return ignore.load(path, files.memo(read, IGNORE_KEY, lambda: files.read(read)))


def _parse_for_platforms(
    image: Image, files: Files, build_platform: str, read: str
) -> tuple[Dockerfile, ...]:
    """One parse per platform when the Dockerfile uses platform ARGs, else a single one.
    `read`: where the Dockerfile's content is (itself, or where its symlinks lead)."""
    text = files.read(read) or ""
    args = dict(image.build_args)
    uses_platform = any(arg in text for arg in dockerfile.PLATFORM_ARGS)
    platforms = image.platforms if uses_platform else image.platforms[:1]
    return tuple(
        dockerfile.parse(
            text, args, platform=platform, build_platform=build_platform, source=image.dockerfile
        )
        for platform in platforms or (build_platform,)
    )


def _rules(
    parsed: Dockerfile,
    stage: Stage,
    image: Image,
    ignores: Mapping[str, Ignore],
    reachable: bool,
    *,
    triggers: Triggers,
) -> Iterable[Rule]:
    label = _label(stage)
    external = parsed.resolve(stage.base, stage) is None
    base_dir = image.context_dir(stage.base) if external else None
    if base_dir is not None:  # FROM a named context that is a directory: all of it
        whole = Source("FROM", stage.base, ".", (), stage.line)
        yield Rule(whole, base_dir, stage.base, label, reachable, ignores[base_dir])
    inherited = triggers(stage.base) if external and base_dir is None else ()
    for source in (*inherited, *stage.sources):
        located = _locate(parsed, stage, image, source)
        if located is not None:
            directory, name = located
            yield Rule(source, directory, name, label, reachable, ignores[directory])


def _locate(parsed: Dockerfile, stage: Stage, image: Image, source: Source) -> tuple[str, str | None] | None:
    """The repository directory a source reads from, or None (a stage's or an image's files)."""
    if source.origin is None:
        return image.context, None
    if parsed.resolve(source.origin, stage) is not None:
        return None
    directory = image.context_dir(source.origin)
    return (directory, source.origin) if directory is not None else None


def _label(stage: Stage) -> str:
    return f"stage {stage.name!r}" if stage.name else f"stage {stage.number}"


def unmatched(inputs: Inputs, files: Files, *, deadline: Deadline = budget.NONE) -> tuple[str, ...]:
    """Warnings for sources of the built stages that match no file of the commit, and for FROM
    lines that expand to nothing."""
    image = inputs.image
    warnings = [
        f"{image.name}: FROM (line {line} of {image.dockerfile}) expands to nothing, which BuildKit refuses: "
        f"an ARG without a value? Set it in build-args of [tool.multiarch.images.{image.name}]"
        for line in inputs.blank
    ]
    for rule in inputs.rules:
        deadline.check()
        if rule.reachable and not any(rule.reads(path) for path in rule.candidates(files.tree)):
            context = f"context {rule.context_name!r}" if rule.context_name else "the build context"
            warnings.append(
                f"{inputs.image.name}: {rule.describe()} matches no file in {context} ({rule.context})"
            )
    return tuple(warnings)
