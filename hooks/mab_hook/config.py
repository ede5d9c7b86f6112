"""`[tool.multiarch]` in pyproject.toml: parsed, validated, and turned into immutable records.

Every problem is collected and reported at once, naming the file, the key path and what is
allowed, so one edit fixes them all.
"""

from __future__ import annotations

import dataclasses
import posixpath
import re
import sys
from collections.abc import Hashable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from mab_hook import references, specs
from mab_hook import validation as fields
from mab_hook.builders import BuilderSpec, NodeSpec
from mab_hook.errors import FatalError
from mab_hook.paths import Tree
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

# Without [tool.multiarch.images.*] tables, every tracked Dockerfile is an image.
# [tool.multiarch.images.api]
# context = "services/api\""""

TOP_KEYS = (
    "platforms",
    "registry",
    "builder",
    "push",
    "tags",
    "jobs",
    "timeout",
    "cache-from",
    "cache-to",
    "secrets",
    "binfmt-image",
    "keep-logs",
    "images",
)
BUILDER_KEYS = ("name", "driver", "driver-opts", "nodes")
NODE_KEYS = ("name", "endpoint", "platforms")
# The emulator installer doctor suggests; pinned, since `latest` changes under a team's feet.
DEFAULT_BINFMT_IMAGE = "tonistiigi/binfmt:qemu-v8.1.5"
IMAGE_KEYS = (
    "context",
    "dockerfile",
    "platforms",
    "target",
    "build-args",
    "watch",
    "contexts",
    "timeout",
    "cache-from",
    "cache-to",
    "secrets",
)
DEFAULT_JOBS = 2
DEFAULT_KEEP_LOGS = 50
KEEP_CONFIGS = 4  # validated configurations a cache keeps
DEFAULT_TAGS = ("{short_sha}",)


@dataclass(frozen=True)
class Image:
    name: str
    context: str  # repository-relative POSIX path, "." for the root
    dockerfile: str  # repository-relative POSIX path
    platforms: tuple[str, ...]
    target: str | None = None
    build_args: tuple[tuple[str, str], ...] = ()
    watch: tuple[str, ...] = ()
    # Named build contexts: name -> repository directory, or a buildx source passed as is
    # (docker-image://..., oci-layout://..., https://...).
    contexts: tuple[tuple[str, str], ...] = ()
    cache_from: tuple[str, ...] = ()  # BuildKit cache sources, `{name}` already filled in
    cache_to: tuple[str, ...] = ()
    timeout: float | None = None  # seconds a build may take
    secrets: tuple[str, ...] = ()  # BuildKit secrets, "id=npm,env=NPM_TOKEN"

    @property
    def watches(self) -> tuple[str, ...]:
        """The `watch` globs, and the OCI layouts of the repository a named context reads."""
        layouts = tuple(
            f"{layout_path(value)}/**" for _name, value in self.contexts if value.startswith(OCI_LAYOUT)
        )
        return self.watch + layouts

    def context_dir(self, name: str) -> str | None:
        """The repository directory of a named context, or None (not one, or not local)."""
        value = dict(self.contexts).get(name)
        return None if value is None or is_external_context(value) else value


@dataclass(frozen=True)
class Config:
    source: str  # what to name in messages, e.g. "pyproject.toml at 1a2b3c4"
    platforms: tuple[str, ...]
    images: tuple[Image, ...]
    registry: str | None = None
    builder: str | None = None
    push: bool = False
    tags: tuple[str, ...] = DEFAULT_TAGS
    binfmt_image: str = DEFAULT_BINFMT_IMAGE
    jobs: int = DEFAULT_JOBS  # images built at once
    keep_logs: int = DEFAULT_KEEP_LOGS  # pushes whose logs .git/mab-hook keeps
    builder_spec: BuilderSpec | None = None  # how to create `builder` when it is missing

    def reference(self, image: Image) -> str:
        """The repository part of an image reference, without tag."""
        return f"{self.registry}/{image.name}" if self.registry else image.name


def load(
    text: str | bytes | None,
    *,
    source: str,
    tracked: Tree | Iterable[str],
    root_name: str = "app",
    cache: MutableMapping[Hashable, Any] | None = None,
) -> Config:
    """Parse pyproject.toml text (None: the file is missing) against the commit's tracked files.

    With a `cache`, a text validated before is not parsed again (a 1,000-image table costs
    some 70 ms): only the questions its validation asked of the tree are asked again.
    """
    if text is None:
        raise FatalError(f"{source}: no {PYPROJECT} in this commit. Add one with:\n\n{SNIPPET}")
    if isinstance(text, bytes):
        text = _decode(text, source)
    tree = tracked if isinstance(tracked, Tree) else Tree.of(tracked)
    key = ("config", text, root_name)
    known = cache.get(key) if cache is not None else None
    if known is not None and all(getattr(tree, q)(path) == answer for q, path, answer in known[1]):
        found: Config = known[0]
        return dataclasses.replace(found, source=source)
    probe = _Probe(tree)
    config = _load(text, source, probe, root_name)
    if cache is not None and not probe.listed:
        kept = [k for k in cache if isinstance(k, tuple) and k[0] == "config"]
        for old in kept[: max(len(kept) + 1 - KEEP_CONFIGS, 0)]:
            del cache[old]  # each holds a whole configuration: keep the last few only
        cache[key] = (config, tuple(probe.asked))
    return config


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
    """The tree, as validation sees it, noting what it asked (for the cache to ask again)."""

    def __init__(self, tree: Tree) -> None:
        self.tree = tree
        self.asked: list[tuple[str, str, bool]] = []
        self.listed = False  # it looked at every path (image discovery): not cacheable

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


def _load(text: str, source: str, tree: _Probe, root_name: str) -> Config:
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
    config = _parse(table, problems, tree, source, root_name)
    problems.raise_if_any()
    assert config is not None
    return config


def _parse(table: Any, problems: Problems, tree: _Probe, source: str, root_name: str) -> Config | None:
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
    images = _images(table, platforms, tree, problems, root_name)
    if platforms is None and any(not image.platforms for image in images):
        problems.add(
            f"{key}.platforms",
            'is required (e.g. platforms = ["linux/amd64", "linux/arm64"]) unless every image sets its own',
        )
    return Config(
        source=source,
        platforms=platforms or (),
        images=images,
        registry=_registry(table, key, problems),
        builder=builder,
        push=_boolean(table, "push", key, problems),
        tags=fields.tags(table.get("tags", list(DEFAULT_TAGS)), f"{key}.tags", problems),
        binfmt_image=_binfmt_image(table, key, problems),
        jobs=_whole(table, "jobs", DEFAULT_JOBS, key, problems),
        keep_logs=_whole(table, "keep-logs", DEFAULT_KEEP_LOGS, key, problems),
        builder_spec=builder_spec,
    )


def _registry(table: Mapping[str, Any], key: str, problems: Problems) -> str | None:
    registry = fields.optional_str(table, "registry", key, problems)
    if registry is None:
        return None
    registry = registry.rstrip("/")
    if not references.REPOSITORY_PREFIX_RE.match(registry):
        problems.add(
            f"{key}.registry",
            f"{redact(registry)!r} is not a registry reference "
            "(host[:port][/path], path in lowercase, no credentials), e.g. 'registry.internal:5000/team'",
        )
    return registry


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


def _binfmt_image(table: Mapping[str, Any], key: str, problems: Problems) -> str:
    binfmt_image = fields.optional_str(table, "binfmt-image", key, problems) or DEFAULT_BINFMT_IMAGE
    tag = references.parse(binfmt_image).tag
    if tag in (None, "latest"):
        problems.add(
            f"{key}.binfmt-image",
            f"{binfmt_image!r} must name a pinned tag (not latest), "
            f"e.g. {DEFAULT_BINFMT_IMAGE!r} or your mirror's copy of it",
        )
    return binfmt_image


def _images(
    table: Mapping[str, Any],
    platforms: tuple[str, ...] | None,
    tree: _Probe,
    problems: Problems,
    root_name: str,
) -> tuple[Image, ...]:
    key = "tool.multiarch"
    settings = _settings(table, key, problems, Settings())
    images_table = table.get("images")
    if images_table is None:
        return _discover(tree, platforms, problems, root_name)
    if not isinstance(images_table, dict):
        problems.add(f"{key}.images", f"must be a table of images, not {fields.type_name(images_table)}")
        return ()
    images = tuple(
        image
        for name, spec in images_table.items()
        if (image := _image(name, spec, platforms, settings, tree=tree, problems=problems)) is not None
    )
    if not images:
        problems.add(
            f"{key}.images",
            "is empty; add [tool.multiarch.images.NAME] tables, "
            "or remove it to build every tracked Dockerfile",
        )
    return images


def _image(
    name: str,
    spec: Any,
    default_platforms: tuple[str, ...] | None,
    defaults: Settings,
    *,
    tree: _Probe,
    problems: Problems,
) -> Image | None:
    key = f"tool.multiarch.images.{fields.toml_key(name)}"
    if not references.NAME_RE.match(name) or len(name) > 255:
        problems.add(
            key,
            f"{name!r} is not a valid image name: Docker allows lowercase letters, "
            "digits and separators (. _ __ -) inside '/'-separated parts, e.g. 'api' or 'team/api'",
        )
    if not isinstance(spec, dict):
        problems.add(key, f"must be a table with at least 'context', not {fields.type_name(spec)}")
        return None
    fields.unknown_keys(spec, IMAGE_KEYS, key, problems)
    context = fields.optional_str(spec, "context", key, problems)
    if context is None:
        if "context" not in spec:
            problems.add(f"{key}.context", "is required: the build context, relative to the repository root")
        return None
    context = fields.normalize(context, f"{key}.context", problems)
    if context is not None and not tree.has_dir(context):
        problems.add(f"{key}.context", f"directory {context!r} does not exist in this commit")
    default_dockerfile = posixpath.join(context or ".", "Dockerfile")
    dockerfile = fields.optional_str(spec, "dockerfile", key, problems)
    dockerfile = fields.normalize(dockerfile, f"{key}.dockerfile", problems) if dockerfile else None
    dockerfile = dockerfile or posixpath.normpath(default_dockerfile)
    if context is not None and not tree.exists(dockerfile):
        problems.add(f"{key}.dockerfile", f"{dockerfile!r} is not a tracked file in this commit")
    platforms = (
        fields.platforms(spec["platforms"], f"{key}.platforms", problems)
        if "platforms" in spec
        else default_platforms
    )
    target = fields.optional_str(spec, "target", key, problems)
    build_args = fields.build_args(spec.get("build-args", {}), f"{key}.build-args", problems)
    watch = fields.str_list(spec.get("watch", []), f"{key}.watch", problems)
    contexts = _contexts(spec.get("contexts", {}), f"{key}.contexts", tree, problems)
    settings = _settings(spec, key, problems, defaults)
    return Image(
        name=name,
        context=context or ".",
        dockerfile=dockerfile,
        platforms=platforms or (),
        target=target,
        build_args=build_args,
        watch=watch,
        contexts=contexts,
        cache_from=tuple(entry.replace("{name}", name) for entry in settings.cache_from),
        cache_to=tuple(entry.replace("{name}", name) for entry in settings.cache_to),
        timeout=settings.timeout,
        secrets=settings.secrets,
    )


class Settings(NamedTuple):
    """Build settings an image takes from [tool.multiarch] unless it sets its own."""

    cache_from: tuple[str, ...] = ()
    cache_to: tuple[str, ...] = ()
    timeout: float | None = None
    secrets: tuple[str, ...] = ()


def _settings(table: Mapping[str, Any], key: str, problems: Problems, inherited: Settings) -> Settings:
    found = {}
    for name in ("cache-from", "cache-to"):
        value = table.get(name)
        found[name] = (
            _caches(value, f"{key}.{name}", problems)
            if value is not None
            else getattr(inherited, _attr(name))
        )
    timeout = fields.seconds(table.get("timeout"), f"{key}.timeout", problems) if "timeout" in table else None
    secrets = (
        _secrets(table["secrets"], f"{key}.secrets", problems) if "secrets" in table else inherited.secrets
    )
    return Settings(
        found["cache-from"], found["cache-to"], inherited.timeout if timeout is None else timeout, secrets
    )


def _attr(name: str) -> str:
    return name.replace("-", "_")


LOCAL_PATH_KEYS = ("src", "dest")  # what a `type=local` cache reads from or writes to
_LOCAL_HINT = (
    "must be a path inside the repository, relative to its root (e.g. '.git/mab-hook/buildkit-cache/{name}')"
    ": a pushed commit may not make builds read or write elsewhere on this machine"
)


def _caches(value: Any, key: str, problems: Problems) -> tuple[str, ...]:
    """Cache specs; a `type=local` one's paths must stay inside the repository."""
    entries = fields.str_list([value] if isinstance(value, str) else value, key, problems)
    kept = []
    for entry in entries:
        if not re.match(r"^(type=[a-z0-9-]+|[a-z0-9.-]+(:[0-9]+)?/)", entry):
            problems.add(key, f"{entry!r} is not a BuildKit cache spec, e.g. "
                         "'type=registry,ref=registry.internal:5000/cache/{name}'")  # fmt: skip
            continue
        options = specs.parse(entry)
        if options.get("type") == "local":
            for name in LOCAL_PATH_KEYS:
                if name in options:
                    path = fields.normalize(options[name], key, Problems("")) if options[name] else None
                    if path is None:
                        problems.add(key, f"{entry!r}: {name}= {_LOCAL_HINT}")
                        continue
                    options[name] = path
            kept.append(specs.format(options))
            continue
        kept.append(entry)
    return tuple(kept)


_SECRET_ID_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _secrets(value: Any, key: str, problems: Problems) -> tuple[str, ...]:
    """BuildKit secrets from the environment of whoever pushes: `id=npm,env=NPM_TOKEN`. Files
    (`src=`) are refused: a pushed commit may not read the machine's files into a build."""
    kept = []
    for entry in fields.str_list(value, key, problems):
        options = specs.parse(entry)
        problem = None
        if set(options) - {"id", "env", "type"} or options.get("type", "env") != "env":
            problem = "takes id= and env= only (a secret from the environment; src= files are not allowed)"
        elif not _SECRET_ID_RE.match(options.get("id", "")):
            problem = "needs id=NAME (letters, digits, _ . -), the id RUN --mount=type=secret,id=NAME uses"
        elif not _ENV_NAME_RE.match(options.setdefault("env", options["id"])):
            problem = "env= must name an environment variable"
        if problem:
            problems.add(key, f"{entry!r} {problem}, e.g. 'id=npm,env=NPM_TOKEN'")
            continue
        kept.append(specs.format({"id": options["id"], "env": options["env"]}))
    return tuple(kept)


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


def _discover(
    tree: _Probe, platforms: tuple[str, ...] | None, problems: Problems, root_name: str
) -> tuple[Image, ...]:
    """Every tracked Dockerfile, Dockerfile.* and *.Dockerfile, named after its directory."""
    found: dict[str, Image] = {}
    for path in tree.paths:
        directory, base = posixpath.split(path)
        if base == "Dockerfile":
            stem = ""
        elif base.startswith("Dockerfile."):
            stem = base[len("Dockerfile.") :]
        elif base.endswith(".Dockerfile"):
            stem = base[: -len(".Dockerfile")]
        else:
            continue
        dir_name = posixpath.basename(directory) or root_name
        name = _sanitize("-".join(part for part in (dir_name, stem) if part))
        if not references.NAME_RE.match(name):
            problems.add(
                "tool.multiarch",
                f"{path}: cannot derive an image name from {dir_name!r}; "
                "declare it in a [tool.multiarch.images.NAME] table",
            )
            continue
        if name in found:
            problems.add(
                "tool.multiarch",
                f"{path} and {found[name].dockerfile} would both be image "
                f"{name!r}; declare them in [tool.multiarch.images.NAME] tables",
            )
            continue
        found[name] = Image(name=name, context=directory or ".", dockerfile=path, platforms=platforms or ())
    if not found:
        problems.add(
            "tool.multiarch",
            "no [tool.multiarch.images.*] tables and no tracked Dockerfile "
            "(Dockerfile, Dockerfile.*, *.Dockerfile) in this commit",
        )
    return tuple(found.values())


def _sanitize(name: str) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-._")


def is_external_context(value: str) -> bool:
    return "://" in value or value.startswith("target:")


OCI_LAYOUT = "oci-layout://"


def layout_path(value: str) -> str:
    """The repository path of an `oci-layout://path[:tag|@digest]` context."""
    path = value[len(OCI_LAYOUT) :].partition("@")[0]
    head, colon, tag = path.rpartition(":")
    return head if colon and "/" not in tag else path


def _oci_layout(value: str, key: str, problems: Problems) -> str | None:
    """`oci-layout://path[:tag|@digest]` with the path inside the repository (it is read from
    the pushed commit), never elsewhere on the machine."""
    rest = value[len(OCI_LAYOUT) :]
    path, at, digest = rest.partition("@")
    if not at:
        head, colon, tag = path.rpartition(":")
        path, suffix = (head, f":{tag}") if colon and "/" not in tag else (path, "")
    else:
        suffix = f"@{digest}"
    normalized = fields.normalize(path, key, Problems("")) if path else None
    if normalized is None:
        problems.add(key, f"{value!r}: the layout's path {_LOCAL_HINT}")
        return None
    return f"{OCI_LAYOUT}{normalized}{suffix}"


def _contexts(value: Any, key: str, tree: _Probe, problems: Problems) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        problems.add(key, f'must be a table of NAME = "path", not {fields.type_name(value)}')
        return ()
    contexts = []
    for name, path in value.items():
        item = f"{key}.{fields.toml_key(name)}"
        if not isinstance(path, str) or not path:
            problems.add(
                item,
                f"must be a repository directory or a buildx context source, not {fields.describe(path)}",
            )
            continue
        if path.startswith(OCI_LAYOUT):
            layout = _oci_layout(path, item, problems)
            if layout is not None:
                contexts.append((name, layout))
            continue
        if is_external_context(path):
            contexts.append((name, path))
            continue
        normalized = fields.normalize(path, item, problems)
        if normalized is None:
            continue
        if not tree.has_dir(normalized):
            problems.add(item, f"directory {normalized!r} does not exist in this commit")
        contexts.append((name, normalized))
    return tuple(sorted(contexts))
