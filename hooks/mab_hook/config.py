"""`[tool.multiarch]` in pyproject.toml: parsed, validated, and turned into immutable records.

Images come from `[tool.multiarch.images.NAME]` tables, from compose and bake files (resolved by
buildx, see `definitions`), or, when the repository declares none, from buildx's default
definition files or its tracked Dockerfiles (see `discovery`). Every problem is collected and
reported at once, naming the file, the key path and what is allowed, so one edit fixes them all.
"""

from __future__ import annotations

import copy
import hashlib
import posixpath
import sys
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from typing import Any, NamedTuple

from mab_hook import discovery, file_images, patterns, references, schema
from mab_hook import platforms as platforms_table
from mab_hook import validation as fields
from mab_hook.builders import BuilderSpec, NodeSpec
from mab_hook.definitions import DEFAULT_FILES, Resolved, Source, project_name
from mab_hook.errors import FatalError
from mab_hook.images import (
    DEFAULT_BINFMT_IMAGE,
    DEFAULT_JOBS,
    DEFAULT_KEEP_LOGS,
    DEFAULT_PUBLISH_TAGS,
    DEFAULT_TAGS,
    ENGINE_NAME,
    Config,
    Defaults,
    Image,
    Said,
    assemble,
)
from mab_hook.paths import Tracked, Tree, is_tracked
from mab_hook.redact import redact
from mab_hook.validation import PYPROJECT, Problems

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


SNIPPET = """\
[tool.multiarch]
platforms = ["linux/amd64", "linux/arm64", "linux/arm/v7"]
# registry = "registry.internal:5000/team"
# push = false
# compose = "compose.yaml"      # or bake = "docker-bake.hcl": the images they define

# Without images tables or definition files, every tracked Dockerfile is an image.
# [tool.multiarch.images.api]
# context = "services/api\""""

TOP_KEYS = (*schema.names(schema.TOP), schema.IMAGES)
DEFINITION_KEYS = ("compose", "compose-projects", "bake")  # keys that name definition files
BUILDER_KEYS = schema.names(schema.BUILDER_KEYS)
NODE_KEYS = schema.names(schema.NODE)
IMAGE_KEYS = schema.names(schema.IMAGE)
KEEP_CONFIGS = 4  # validated configurations a cache keeps
CONFIGS = "configs"  # the cache's entry naming those it keeps, oldest first
Resolve = Callable[[Sequence[Source]], Resolved]


def load(
    text: str | bytes | None,
    *,
    source: str,
    tracked: Tracked | Iterable[str],
    root_name: str = "app",
    cache: MutableMapping[Hashable, Any] | None = None,
    resolve: Resolve | None = None,
    local_platform: str = "",
) -> Config:
    """Parse pyproject.toml text (None: the file is missing) against the commit's tracked files.
    `resolve` reads compose and bake files at the same commit.

    With a `cache`, a text validated before is not parsed again (a 1,000-image table costs
    some 70 ms): only the questions its validation asked of the tree are asked again, and the
    definition files it read resolved again (which their own cache answers while they are
    unchanged). `local_platform`: what a bake target's `platforms = ["local"]` builds for when
    [tool.multiarch] sets no `platforms` (the building machine's own).
    """
    if text is None:
        raise FatalError(f"{source}: no {PYPROJECT} in this commit. Add one with:\n\n{SNIPPET}")
    if isinstance(text, bytes):
        text = _decode(text, source)
    tree: Tracked = tracked if is_tracked(tracked) else Tree.of(tracked)  # type: ignore[assignment,arg-type]
    # Keyed by the text's digest: the text of 5,000 image tables (340 KB) as a key costs its
    # look-up a few ms, and each entry naming kept configurations as much again.
    key = (
        "config",
        hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest(),
        root_name,
        local_platform,
    )
    known = cache.get(key) if cache is not None else None
    probe = _Probe(tree, resolve)
    if cache is not None and known is not None and _holds(known[1], tree, cache.get(_where(key))):
        found: Config = known[0]
        sources, resolved_key = known[2]
        if not sources or probe.resolve(sources).key == resolved_key:
            _validated_at(cache, key, tree)
            return _named(found, source)
    config = _load(text, source, probe, (root_name, local_platform))
    if cache is not None and not probe.listed:
        kept = [old for old in cache.get(CONFIGS, ()) if old != key]
        for old in kept[: max(len(kept) + 1 - KEEP_CONFIGS, 0)]:
            cache.pop(old, None)  # each holds a whole configuration: keep the last few only
            cache.pop(_where(old), None)
        cache[CONFIGS] = (*kept, key)[-KEEP_CONFIGS:]
        config.by_reference, config.mentions_digest, config.where  # noqa: B018 - worked out now: kept with it
        cache[key] = (config, Asked.of(probe.asked), probe.definitions)
        _validated_at(cache, key, tree)
    return config


def _named(found: Config, source: str) -> Config:
    """A cached configuration as read at this commit: what planning worked out from it kept
    (`dataclasses.replace` would make it anew, without them)."""
    named = copy.copy(found)
    object.__setattr__(named, "source", source)  # a copy of a frozen record, not yet shared
    return named


def _where(key: tuple[str, ...]) -> str:
    """The key of what a cached configuration was last found valid against: its own entry,
    small, so that noting it does not write the whole configuration again."""
    return "config-at:" + hashlib.sha256("\0".join(key).encode("utf-8", "surrogateescape")).hexdigest()


def _validated_at(cache: MutableMapping[Hashable, Any], key: tuple[str, ...], tree: Tracked) -> None:
    found = tree.difference()
    where = (found.base, found.moved) if found is not None else None
    if cache.get(_where(key)) != where:
        cache[_where(key)] = where


def _holds(asked: object, tree: Tracked, where: Any) -> bool:
    """Whether validation's questions get the answers they got. A tree laid over the same kept
    listing as the one validation last held against differs from it only in the paths either
    moved (added or deleted) from it: only questions about those are asked again."""
    if not isinstance(asked, Asked):
        return False  # kept by an older mab-hook: validated afresh
    now = tree.difference()
    same_base = (
        now is not None
        and isinstance(where, tuple)
        and where[:1] == (now.base,)
        and isinstance(where[1], frozenset)
    )
    questions = asked.near(now.moved | where[1]) if same_base and now is not None else asked.every()
    return all(_asked(tree, question, path) == answer for question, path, answer in questions)


class Asked(NamedTuple):
    """Validation's questions of a tree with their answers, filed by the paths that can change
    them: an `exists` by its path, a `has_dir` by its directory, a `matching` (and `has_dir`
    of the whole tree) by the directory a moved path must be inside ("" for the whole tree). A
    push that moves a few paths looks up those few, not each of 10,000 questions (5,000 images);
    the usual two kinds are plain maps, which load faster than a tuple for each question."""

    exists: dict[str, object]
    dirs: dict[str, object]
    inside: dict[str, tuple[tuple[str, str, object], ...]]

    @classmethod
    def of(cls, asked: Iterable[tuple[str, str, object]]) -> Asked:
        exists: dict[str, object] = {}
        dirs: dict[str, object] = {}
        inside: dict[str, list[tuple[str, str, object]]] = {}
        for question, path, answer in asked:
            if question in ("exists", "has_dir") and path not in (".", ""):
                (exists if question == "exists" else dirs)[path] = answer
                continue
            directory = patterns.literal_prefix(path) if question == "matching" else path
            inside.setdefault("" if directory == "." else directory, []).append((question, path, answer))
        return cls(exists, dirs, {directory: tuple(questions) for directory, questions in inside.items()})

    def every(self) -> Iterator[tuple[str, str, object]]:
        yield from (("exists", path, answer) for path, answer in self.exists.items())
        yield from (("has_dir", path, answer) for path, answer in self.dirs.items())
        for questions in self.inside.values():
            yield from questions

    def near(self, moved: Iterable[str]) -> Iterator[tuple[str, str, object]]:
        """The questions whose answer may differ where only the `moved` paths differ."""
        directories: set[str] = set()
        for path in moved:
            if path in self.exists:
                yield ("exists", path, self.exists[path])
            parts = path.split("/")
            directories.update("/".join(parts[:i]) for i in range(len(parts)))  # "" first: the tree
        for directory in directories:
            if directory in self.dirs:
                yield ("has_dir", directory, self.dirs[directory])
            yield from self.inside.get(directory, ())


def _asked(tree: Tracked, question: str, path: str) -> object:
    """A question validation asked of a tree (`_Probe`), asked of another."""
    if question == "matching":
        return patterns.watched_in(path, tree)
    answer: object = getattr(tree, question)(path)
    return answer


def _decode(data: bytes, source: str) -> str:
    """TOML is UTF-8; other bytes are an error, not something to guess around."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise FatalError(
            f"{source}: not valid TOML: byte {data[e.start : e.start + 1]!r} on line {line} is not UTF-8 "
            "(TOML files are UTF-8; save it as UTF-8)"
        ) from None


class _Probe:
    """The tree, as validation sees it, noting what it asked (for the cache to ask again), and
    the definition files it had resolved."""

    def __init__(self, tree: Tracked, resolver: Resolve | None) -> None:
        self.tree, self.resolver = tree, resolver
        self.asked: list[tuple[str, str, object]] = []
        self.listed = False  # it looked at every path (image discovery): not cacheable
        self.resolved: dict[tuple[Source, ...], Resolved] = {}

    @property
    def paths(self) -> Sequence[str]:
        self.listed = True
        return self.tree.paths

    def exists(self, path: str) -> bool:
        answer = self.tree.exists(path)
        self.asked.append(("exists", path, answer))
        return answer

    def has_dir(self, directory: str) -> bool:
        answer = self.tree.has_dir(directory)
        self.asked.append(("has_dir", directory, answer))
        return answer

    def matching(self, glob: str) -> list[str]:
        """The tracked files a glob (Docker's pattern syntax) names."""
        answer = patterns.watched_in(glob, self.tree)
        self.asked.append(("matching", glob, answer))
        return answer

    def resolve(self, sources: Sequence[Source]) -> Resolved:
        wanted = tuple(sources)
        if wanted not in self.resolved:
            if self.resolver is None:  # a caller that plans no commit: nothing to resolve with
                raise FatalError(f"{', '.join(s.label for s in wanted)}: cannot be resolved here")
            self.resolved[wanted] = self.resolver(wanted)
        return self.resolved[wanted]

    @property
    def definitions(self) -> tuple[tuple[Source, ...], Hashable]:
        """The sources resolved, and what their resolution depended on."""
        if not self.resolved:
            return (), None
        sources, resolved = next(iter(self.resolved.items()))
        return sources, resolved.key


def _load(text: str, source: str, tree: _Probe, machine: tuple[str, str]) -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise FatalError(f"{source}: not valid TOML: {e}") from None
    except RecursionError:
        raise FatalError(f"{source}: not valid TOML: values nested too deeply") from None
    table = data.get("tool", {}).get("multiarch") if isinstance(data.get("tool"), dict) else None
    if table is None:
        raise FatalError(f"{source}: no [tool.multiarch] table. Add, for example:\n\n{SNIPPET}")
    problems = Problems(source)
    config = _parse(table, problems, tree, source, machine)
    problems.raise_if_any()
    assert config is not None
    return config


def _parse(
    table: Any, problems: Problems, tree: _Probe, source: str, machine: tuple[str, str]
) -> Config | None:
    key = "tool.multiarch"
    if not isinstance(table, dict):
        problems.add(key, f"must be a table, not {fields.type_name(table)}")
        return None
    fields.unknown_keys(table, TOP_KEYS, key, problems)
    platforms = fields.platforms(table.get("platforms"), f"{key}.platforms", problems)
    builder_spec = _builder_spec(table.get("builder"), f"{key}.builder", problems)
    if builder_spec is not None or isinstance(table.get("builder"), dict):
        builder = builder_spec.name if builder_spec else None
    else:
        builder = fields.optional_str(table, "builder", key, problems)
    images, definitions, notes = _images(table, platforms, tree, problems, machine)
    if platforms is None and any(not image.platforms for image in images):
        problems.add(
            f"{key}.platforms",
            'is required (e.g. platforms = ["linux/amd64", "linux/arm64"]) unless every image sets its own',
        )
    return Config(
        source=source,
        platforms=platforms or (),
        images=images,
        registry=_registry(table, "registry", key, problems),
        staging=_registry(table, "staging", key, problems),
        builder=builder,
        push=_boolean(table, "push", key, problems),
        tags=fields.tags(table.get("tags", list(DEFAULT_TAGS)), f"{key}.tags", problems),
        publish_branches=_ref_patterns(table, "publish-branches", None, key, problems),
        publish_tags=_ref_patterns(table, "publish-tags", DEFAULT_PUBLISH_TAGS, key, problems) or (),
        binfmt_image=_pinned_image(table, "binfmt-image", key, problems) or DEFAULT_BINFMT_IMAGE,
        buildkit_image=_pinned_image(table, "buildkit-image", key, problems),
        jobs=_whole(table, "jobs", DEFAULT_JOBS, key, problems),
        keep_logs=_whole(table, "keep-logs", DEFAULT_KEEP_LOGS, key, problems),
        builder_spec=builder_spec,
        engines=_engines(table.get("engines"), f"{key}.engines", problems),
        engine_down=_engine_down(table, key, problems),
        definitions=definitions,
        notes=notes,
    )


def _ref_patterns(
    table: Mapping[str, Any], name: str, default: tuple[str, ...] | None, key: str, problems: Problems
) -> tuple[str, ...] | None:
    """Glob patterns of branch or tag names (`main`, `release/*`, `v[0-9]*`); [] for none."""
    if name not in table:
        return default
    patterns = fields.str_list(table[name], f"{key}.{name}", problems)
    for pattern in patterns:
        if not pattern.strip() or pattern.startswith("refs/"):
            problems.add(
                f"{key}.{name}",
                f"{pattern!r} is not a name pattern: write short names, e.g. 'main', 'release/*', 'v[0-9]*'",
            )
    return patterns


def _registry(table: Mapping[str, Any], name: str, key: str, problems: Problems) -> str | None:
    """A repository prefix (`registry`, `staging`): host[:port][/path]."""
    registry = fields.optional_str(table, name, key, problems)
    if registry is None:
        return None
    registry = registry.rstrip("/")
    if not references.REPOSITORY_PREFIX_RE.match(registry):
        problems.add(
            f"{key}.{name}",
            f"{redact(registry)!r} is not a registry reference "
            "(host[:port][/path], path in lowercase, no credentials), e.g. 'registry.internal:5000/team'",
        )
    return registry


def _engines(value: Any, key: str, problems: Problems) -> tuple[tuple[str, str], ...]:
    """`engines`: platform -> the docker context or buildx builder that builds it natively."""
    if value is None:
        return ()
    if not isinstance(value, dict):
        problems.add(key, f'must be a table of platform = engine, e.g. {{ "linux/arm64" = "arm-box" }}, '
                     f"not {fields.type_name(value)}")  # fmt: skip
        return ()
    found = []
    for platform, engine in value.items():
        problem = platforms_table.problem(platform)
        if problem:
            problems.add(f"{key}.{platform}", problem)
        elif not isinstance(engine, str) or not ENGINE_NAME.fullmatch(engine):
            problems.add(
                f"{key}.{platform}",
                f"must name a docker context or a buildx builder (letters, digits, `_.+-`), not "
                f"{fields.describe(engine)}",
            )
        else:
            found.append((platform, engine))
    return tuple(found)


def _engine_down(table: Mapping[str, Any], key: str, problems: Problems) -> str:
    value = table.get("engine-down", "fail")
    if value not in ("fail", "emulate"):
        problems.add(f"{key}.engine-down", f'must be "fail" or "emulate", not {fields.describe(value)}')
        return "fail"
    return str(value)


def _boolean(table: Mapping[str, Any], name: str, key: str, problems: Problems) -> bool:
    value = table.get(name, False)
    if not isinstance(value, bool):
        problems.add(f"{key}.{name}", f"must be true or false, not {fields.type_name(value)}")
        return False
    return value


def _whole(table: Mapping[str, Any], name: str, default: int, key: str, problems: Problems) -> int:
    value = table.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        problems.add(f"{key}.{name}", f"must be a whole number of at least 1, not {fields.describe(value)}")
        return default
    return value


PINNED_EXAMPLES = {"binfmt-image": DEFAULT_BINFMT_IMAGE, "buildkit-image": "moby/buildkit:v0.16.0"}


def _pinned_image(table: Mapping[str, Any], name: str, key: str, problems: Problems) -> str | None:
    """An image a fix runs with privileges (the emulator installer, a builder's BuildKit): by
    a pinned tag or digest, so what runs does not change under the team."""
    image = fields.optional_str(table, name, key, problems)
    if image is None:
        return None
    # Validated whole: it reaches a buildx option (`--driver-opt image=...`) that buildx splits at commas.
    ref = references.parse(image) if references.is_valid(image) else None
    if ref is None or (ref.tag in (None, "latest") and ref.digest is None):
        problems.add(
            f"{key}.{name}",
            f"{redact(image)!r} must name a pinned tag (not latest) or a digest, "
            f"e.g. {PINNED_EXAMPLES[name]!r} or your mirror's copy of it",
        )
    return image


# --- images ----------------------------------------------------------------------------------


def _images(
    table: Mapping[str, Any],
    platforms: tuple[str, ...] | None,
    tree: _Probe,
    problems: Problems,
    machine: tuple[str, str],
) -> tuple[tuple[Image, ...], tuple[str, ...], tuple[str, ...]]:
    """The images, the definition files they were resolved from, and what of those files
    reaches no build. `machine`: what a root Dockerfile is named after, and the platform `local`
    stands for."""
    root_name, local_platform = machine
    key = "tool.multiarch"
    defaults = _defaults(table, platforms, key, problems)
    tables = table.get("images")
    if tables is not None and not isinstance(tables, dict):
        problems.add(f"{key}.images", f"must be a table of images, not {fields.type_name(tables)}")
        return (), (), ()
    sources = definition_sources(table, tree, problems, discovering=tables is None, root_name=root_name)
    if not sources and any(name in table for name in DEFINITION_KEYS):
        return (), (), ()  # what they name is missing or unreadable: said, and nothing else
    from_files: dict[str, Image] = {}
    read: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    if sources:
        resolved = tree.resolve(sources)
        read, notes = resolved.read, resolved.notes
        local = platforms or ((local_platform,) if local_platform else ())
        from_files = file_images.images_of(resolved.targets, defaults, tree, problems, local=local)
    if tables is None and not any(not image.only_as_context for image in from_files.values()):
        if any(source.key for source in sources):
            named = ", ".join(s.label for s in sources)
            problems.add(
                key,
                f"{named}: no image to build (no service with a build section, no bake "
                "target in the default group)",
            )
            return (), read, notes
        # No definition file, or only compose files of ready-made images: the Dockerfiles.
        return discovery.discover(tree.paths, defaults, problems, root_name), read, notes
    tables = tables or {}
    if not tables and not from_files:
        problems.add(
            f"{key}.images",
            "is empty; add [tool.multiarch.images.NAME] tables, "
            "or remove it to build every tracked Dockerfile",
        )
    images = dict(from_files)
    for name, spec in tables.items():
        image = _image(name, spec, defaults, tree=tree, problems=problems, base=from_files.get(name))
        if image is not None:
            images[name] = image
        else:
            images.pop(name, None)
    return file_images.one_build_each(list(images.values())), read, notes


def definition_sources(
    table: Mapping[str, Any], tree: _Probe, problems: Problems, *, discovering: bool, root_name: str = ""
) -> tuple[Source, ...]:
    """The compose and bake files that define images: those `compose` and `bake` name, each
    compose project `compose-projects` finds; when discovering (no images tables either),
    buildx's default files at the root, if any."""
    found = []
    for name in ("compose", "bake"):
        if name not in table:
            continue
        files = _files(table[name], f"tool.multiarch.{name}", tree, problems)
        if files:
            # Compose paths are relative to the (first) compose file, as `docker compose` has
            # them; bake paths to where `docker buildx bake` runs, the repository's root.
            directory = (posixpath.dirname(files[0]) or ".") if name == "compose" else "."
            found.append(Source(name, files, directory))
    found += _projects(table.get("compose-projects"), tree, problems, root_name)
    chosen = table.get("bake-targets")
    groups = fields.str_list(chosen, "tool.multiarch.bake-targets", problems) if chosen is not None else ()
    groups = groups or ("default",)
    found = [source._replace(groups=groups) if source.key == "bake" else source for source in found]
    configured = any(name in table for name in DEFINITION_KEYS)
    if not found and discovering and not configured:  # a configured file that is missing is that error
        present = tuple(path for path in DEFAULT_FILES if tree.exists(path))
        if present:
            found.append(Source("", present, ".", groups))
    return tuple(found)


def _projects(value: Any, tree: _Probe, problems: Problems, root_name: str) -> list[Source]:
    """Each compose file the globs name, a project of its own as `docker compose -f FILE` has it:
    resolved from its directory (its `.env` beside it), its images named `<project>-<service>`
    (the project: the directory's name, or the file's `name:`)."""
    if value is None:
        return []
    key = "tool.multiarch.compose-projects"
    globs = fields.str_list([value] if isinstance(value, str) else value, key, problems)
    if isinstance(value, list) and not value:
        problems.add(key, 'must name at least one glob, e.g. "*/compose.yaml"')
    found: dict[str, None] = {}
    for glob in globs:
        matched = tree.matching(glob) if patterns.clean(glob) else []
        if not matched:
            problems.add(key, f"{glob!r} names no tracked file in this commit")
        found.update(dict.fromkeys(matched))
    sources = []
    for path in found:
        directory = posixpath.dirname(path) or "."
        project = project_name(posixpath.basename(directory) if directory != "." else root_name)
        sources.append(Source("compose", (path,), directory, project=project or "default"))
    return sources


def _files(value: Any, key: str, tree: _Probe | Tracked, problems: Problems) -> tuple[str, ...]:
    listed = fields.str_list([value] if isinstance(value, str) else value, key, problems)
    if isinstance(value, list) and not value:
        problems.add(key, 'must name at least one file, e.g. "compose.yaml"')
    files = []
    for item in listed:
        path = fields.normalize(item, key, problems)
        if path is None:
            continue
        if not tree.exists(path):
            problems.add(key, f"{path!r} is not a tracked file in this commit")
            continue
        files.append(path)
    return tuple(dict.fromkeys(files))


def _image(
    name: str,
    spec: Any,
    defaults: Defaults,
    *,
    tree: _Probe,
    problems: Problems,
    base: Image | None = None,
) -> Image | None:
    """An image from its table; with `base` (the image a compose or bake file defines under
    that name), the table's settings on top of the file's."""
    key = f"tool.multiarch.images.{fields.toml_key(name)}"
    fields.image_name(name, key, problems)
    if not isinstance(spec, dict):
        problems.add(key, f"must be a table with at least 'context', not {fields.type_name(spec)}")
        return None
    fields.unknown_keys(spec, IMAGE_KEYS, key, problems)
    located = _located(spec, key, tree, problems, base)
    if located is None:
        return None
    context, dockerfile = located
    settings = _settings(spec, key, problems)
    said = Said(
        context=context,
        dockerfile=dockerfile,
        platforms=fields.platforms(spec["platforms"], f"{key}.platforms", problems)
        if "platforms" in spec
        else None,
        target=fields.optional_str(spec, "target", key, problems),
        build_args=fields.build_args(spec.get("build-args", {}), f"{key}.build-args", problems),
        watch=fields.str_list(spec.get("watch", []), f"{key}.watch", problems),
        contexts=fields.contexts(spec.get("contexts", {}), f"{key}.contexts", tree, problems),
        cache_from=settings.cache_from,
        cache_to=settings.cache_to,
        timeout=settings.timeout,
        secrets=settings.secrets,
        foreign_binaries=fields.str_list(
            spec.get("foreign-binaries", []), f"{key}.foreign-binaries", problems
        ),
    )
    return assemble(name, said, base or defaults)


def _located(
    spec: Mapping[str, Any], key: str, tree: _Probe, problems: Problems, base: Image | None
) -> tuple[str, str] | None:
    """The context and the Dockerfile: the table's, else the file's; a table of its own needs
    a context, and its Dockerfile defaults to <context>/Dockerfile."""
    context = fields.optional_str(spec, "context", key, problems)
    if context is None:
        if base is not None and "context" not in spec:
            context = base.context
        else:
            if "context" not in spec:
                problems.add(
                    f"{key}.context", "is required: the build context, relative to the repository root"
                )
            return None
    else:
        context = fields.normalize(context, f"{key}.context", problems)
        if context is not None and not tree.has_dir(context):
            problems.add(f"{key}.context", f"directory {context!r} does not exist in this commit")
    dockerfile = fields.optional_str(spec, "dockerfile", key, problems)
    dockerfile = fields.normalize(dockerfile, f"{key}.dockerfile", problems) if dockerfile else None
    if dockerfile is None and base is not None and "context" not in spec:
        dockerfile = base.dockerfile
    dockerfile = dockerfile or posixpath.normpath(posixpath.join(context or ".", "Dockerfile"))
    if context is not None and not tree.exists(dockerfile):
        problems.add(f"{key}.dockerfile", f"{dockerfile!r} is not a tracked file in this commit")
    return context or ".", dockerfile


class Settings(NamedTuple):
    """The build settings a table sets; None where it sets none (what lies under it holds)."""

    cache_from: tuple[str, ...] | None
    cache_to: tuple[str, ...] | None
    timeout: float | None
    secrets: tuple[str, ...] | None


def _settings(table: Mapping[str, Any], key: str, problems: Problems) -> Settings:
    caches = (
        fields.caches(table[name], f"{key}.{name}", problems) if table.get(name) is not None else None
        for name in ("cache-from", "cache-to")
    )
    cache_from, cache_to = caches
    timeout = fields.seconds(table.get("timeout"), f"{key}.timeout", problems) if "timeout" in table else None
    secrets = fields.secrets(table["secrets"], f"{key}.secrets", problems) if "secrets" in table else None
    return Settings(cache_from, cache_to, timeout, secrets)


def _defaults(
    table: Mapping[str, Any], platforms: tuple[str, ...] | None, key: str, problems: Problems
) -> Defaults:
    """What [tool.multiarch] gives every image that does not say otherwise."""
    own = _settings(table, key, problems)
    return Defaults(platforms or (), own.cache_from or (), own.cache_to or (), own.timeout, own.secrets or ())


def _builder_spec(value: Any, key: str, problems: Problems) -> BuilderSpec | None:
    """`builder` as a table: a builder mab-hook doctor --fix creates when it is missing."""
    if not isinstance(value, dict):
        return None
    fields.unknown_keys(value, BUILDER_KEYS, key, problems)
    name = fields.optional_str(value, "name", key, problems)
    if name is None:
        problems.add(f"{key}.name", "is required: the buildx builder's name")
        return None
    driver = fields.optional_str(value, "driver", key, problems) or "docker-container"
    if driver not in ("docker-container", "kubernetes", "remote"):
        problems.add(
            f"{key}.driver", f"{driver!r}: mab-hook creates docker-container, kubernetes or remote builders"
        )
    options = value.get("driver-opts", {})
    if not isinstance(options, dict) or not all(isinstance(v, (str, int, bool)) for v in options.values()):
        problems.add(f"{key}.driver-opts", 'must be a table of option = "value"')
        options = {}
    nodes = []
    for index, node in enumerate(value.get("nodes", []) if isinstance(value.get("nodes", []), list) else []):
        node_key = f"{key}.nodes[{index}]"
        if not isinstance(node, dict):
            problems.add(node_key, "must be a table with an endpoint")
            continue
        fields.unknown_keys(node, NODE_KEYS, node_key, problems)
        endpoint = fields.optional_str(node, "endpoint", node_key, problems)
        if endpoint is None:
            problems.add(
                f"{node_key}.endpoint", "is required, e.g. 'ssh://builder@arm-box' or a docker context"
            )
            continue
        node_platforms = fields.platforms(node.get("platforms", []), f"{node_key}.platforms", problems) or ()
        node_name = fields.optional_str(node, "name", node_key, problems) or f"{name}{index}"
        nodes.append(NodeSpec(node_name, endpoint, node_platforms))
    opts = tuple(sorted((k, str(v).lower() if isinstance(v, bool) else str(v)) for k, v in options.items()))
    return BuilderSpec(name, driver, opts, tuple(nodes))
