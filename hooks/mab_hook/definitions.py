"""Compose and bake files as image sources, resolved the way Docker resolves them.

buildx reads compose files (interpolation, `.env`, profiles, `x-bake`) and bake files
(variables, functions, `inherits`, `matrix`) itself: `docker buildx bake --print` turns them
into plain bake targets without building anything (~0.1 s). mab-hook runs it on the files of
the pushed commit, never the work tree: they are written to a private directory, with the
files they include, and resolved there. The result is kept under the blob ids of every file
read, so a push that changes none of them pays nothing.

The resolver runs as its own binary with no environment at all, in a process group of its own
with a memory and time cap, and never reads a secret or SSH file: only what the commit holds
(`.env`, the files' own defaults) defines its images, the same on every machine.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import sys
from collections.abc import Callable, Hashable, Iterable, Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from mab_hook import links, process
from mab_hook.errors import FatalError

# buildx's own list and order, when no file is named (bake/bake.go, defaultFilenames).
COMPOSE_DEFAULTS = ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml")
BAKE_DEFAULTS = (
    "docker-bake.json",
    "docker-bake.override.json",
    "docker-bake.hcl",
    "docker-bake.override.hcl",
)
DEFAULT_FILES = COMPOSE_DEFAULTS + BAKE_DEFAULTS
ENV_FILE = ".env"  # read by the resolver from the directory it runs in
VERSION = 2  # of what the cache keeps
TIMEOUT = 60.0  # seconds; the resolver reads a few files
# what the Go runtime prints when the address-space limit stops it, wherever it was
EXHAUSTED = ("out of memory", "pthread_create failed", "cannot allocate memory")
MEMORY = 4 << 30  # bytes of address space the resolver may use (Go reserves ~1.5 GiB of it)
# buildx checks a target's secrets and SSH keys while it prints (it stats and parses the files
# they name, on this machine): a commit's are never used (`grants`), so they are never read.
NOT_READ = ("--set", "*.secrets=", "--set", "*.ssh=")
INSTALL_BUILDX = (
    "install Docker's CLI and the buildx plugin (Debian/Ubuntu: `apt-get install docker.io docker-buildx`; "
    "elsewhere https://docs.docker.com/engine/install/)"
)


class Source(NamedTuple):
    """Definition files resolved together, and where the resolver runs."""

    key: str  # the [tool.multiarch] key naming them ("compose", "bake"); "" for buildx's defaults
    files: tuple[str, ...]  # repository paths
    directory: str  # paths in what it resolves are relative to this repository directory
    groups: tuple[str, ...] = ("default",)  # the groups or targets whose targets are the images
    # A compose project of its own (`compose-projects`): its images are named `<project>-<service>`,
    # as `docker compose build` names them. "" for the files of `compose` and `bake`: `<service>`.
    project: str = ""

    @property
    def label(self) -> str:
        return ", ".join(self.files)


def project_name(name: str) -> str:
    """A compose project's name as compose normalizes it (compose-go's NormalizeProjectName):
    lowercase, only letters, digits, `-` and `_`, not starting with either of those."""
    return re.sub(r"[^a-z0-9_-]", "", name.lower()).lstrip("_-")


class Target(NamedTuple):
    """One resolved bake target."""

    name: str  # as the resolver names it (a matrix expanded: `tool-lite`)
    spec: Mapping[str, Any]  # its fields, as `docker buildx bake --print` prints them
    source: Source
    default: bool  # in the default group; False: only named by another's `target:` context


class Resolved(NamedTuple):
    targets: tuple[Target, ...]
    read: tuple[str, ...]  # every file the resolver reads or looks for, for change detection
    key: Hashable  # changes whenever what was resolved may have
    notes: tuple[str, ...] = ()  # what of the files does not reach the builds, and why


class CommitFiles(NamedTuple):
    """The files of the pushed commit, as the resolver needs them."""

    blob_id: Callable[[str], str | None]
    data: Callable[[str], bytes | None]
    commit: str  # for messages
    link: Callable[[str], str | None] = lambda path: None  # a symlink's target; None: no symlink


def fingerprint(env: Mapping[str, str]) -> tuple[Hashable, ...]:
    """Which buildx would resolve: a new buildx may resolve the same files anew. Some stat
    calls, no process."""
    plugin = buildx_plugin(env)
    return (str(plugin), _stat(str(plugin))) if plugin is not None else ()


def buildx_plugin(env: Mapping[str, str]) -> Path | None:
    """The buildx plugin docker would run, where docker looks for it (`MAB_HOOK_BUILDX` first):
    the resolver runs it directly, so that it starts with an environment of mab-hook's choosing."""
    import shutil  # noqa: PLC0415 - only where compose or bake files define images

    if env.get(BUILDX_ENV):
        named = Path(env[BUILDX_ENV])
        return named if named.is_file() else None
    config = Path(env.get("DOCKER_CONFIG") or Path(env.get("HOME") or Path.home()) / ".docker")
    places = [config / "cli-plugins", *(Path(p) for p in _extra_dirs(config)), *_plugin_dirs(env)]
    docker = shutil.which("docker", path=env.get("PATH"))
    if docker is not None:
        places.append(Path(docker).resolve().parent.parent / "libexec" / "docker" / "cli-plugins")
    for place in places:
        for name in ("docker-buildx", "docker-buildx.exe"):
            if os.access(place / name, os.X_OK) and (place / name).is_file():
                return place / name
    return None


BUILDX_ENV = "MAB_HOOK_BUILDX"


def _plugin_dirs(env: Mapping[str, str]) -> list[Path]:
    """docker's own places for CLI plugins (cli-plugins/manager, defaultSystemPluginDirs)."""
    if sys.platform == "win32":
        roots = (env.get("ProgramData"), env.get("ProgramFiles"))
        return [Path(root) / "Docker" / "cli-plugins" for root in roots if root]
    return [
        Path(p)
        for p in (
            "/usr/local/lib/docker/cli-plugins",
            "/usr/local/libexec/docker/cli-plugins",
            "/usr/lib/docker/cli-plugins",
            "/usr/libexec/docker/cli-plugins",
        )
    ]


def _extra_dirs(config: Path) -> list[str]:
    """`cliPluginsExtraDirs` of docker's config.json (Homebrew's buildx is found this way)."""
    try:
        found = json.loads((config / "config.json").read_text()).get("cliPluginsExtraDirs") or []
    except (OSError, ValueError, AttributeError):
        return []
    return [str(item) for item in found] if isinstance(found, list) else []


def _stat(path: str | None) -> tuple[int, int] | None:
    try:
        found = os.stat(path) if path else None
    except OSError:
        return None
    return (found.st_size, found.st_mtime_ns) if found else None


class Resolver:
    """Resolves definition files at one commit; results kept in `cache` by blob ids."""

    def __init__(
        self, files: CommitFiles, env: Mapping[str, str], cache: MutableMapping[Hashable, Any] | None
    ) -> None:
        self.files, self.env, self.cache = files, env, cache

    def __call__(self, sources: Sequence[Source]) -> Resolved:
        found = [self.resolve(source) for source in sources]
        targets = tuple(t for r in found for t in r.targets)
        read = tuple(dict.fromkeys(path for r in found for path in r.read))
        notes = tuple(dict.fromkeys(note for r in found for note in r.notes))
        return Resolved(targets, read, tuple(r.key for r in found), notes)

    def resolve(self, source: Source) -> Resolved:
        roots = (*source.files, posixpath.normpath(posixpath.join(source.directory, ENV_FILE)))
        key = ("definitions", VERSION, source, tuple(self._ids(roots)), fingerprint(self.env))
        kept = self.cache.get(key) if self.cache is not None else None
        if kept is not None and all(self.files.blob_id(path) == blob for path, blob in kept[1]):
            targets, others, notes = kept
            return Resolved(targets, (*roots, *(path for path, _ in others)), (key, others), notes)
        contents, read, documents = self._contents(source, roots)
        targets = _run(source, contents, self.env, self.files.commit)
        named = _named_project(source, documents.get(source.files[0]))
        targets = tuple(target._replace(source=named) for target in targets) if named != source else targets
        notes = unused(documents, targets)
        others = tuple((path, self.files.blob_id(path)) for path in read if path not in roots)
        if self.cache is not None:
            self.cache[key] = (targets, others, notes)
        return Resolved(targets, (*roots, *(path for path, _ in others)), (key, others), notes)

    def _ids(self, paths: Iterable[str]) -> Iterable[tuple[str, str | None]]:
        return ((path, self.files.blob_id(path)) for path in paths)

    def _contents(
        self, source: Source, roots: Sequence[str]
    ) -> tuple[dict[str, bytes], list[str], dict[str, Any]]:
        """Every file the resolver will read: the definition files, `.env`, and the files
        compose files include, extend or take variables from, transitively (a file a compose
        file includes or extends is a compose file, whatever its name); the repository paths
        read for them, symlinks followed; and the compose files as read."""
        contents: dict[str, bytes] = {}
        documents: dict[str, Any] = {}
        read: list[str] = []
        todo = [(path, _is_compose(source, path)) for path in roots]
        while todo:
            path, compose = todo.pop(0)
            if path in contents:
                continue
            data = self._data(path, read)
            if data is None:
                if path in source.files:
                    raise FatalError(
                        f"{path}: no such file in commit {self.files.commit[:12]} (named in [tool.multiarch])"
                    )
                continue
            contents[path] = data
            if compose:
                documents[path] = _document(path, data)
                todo += _referenced(path, documents[path])
        return contents, read, documents

    def _data(self, path: str, read: list[str]) -> bytes | None:
        """A file of the commit, through the symlinks of the commit (inside it only); each
        path on the way noted in `read`."""
        try:
            on_way = links.followed(path, self.files.link)
        except links.Escape as e:
            if not e.target:
                raise FatalError(f"{e.path}: symlinks go round in circles") from None
            raise FatalError(f"{e.path}: a symlink to {e.target!r} {_ONLY_THE_COMMIT}") from None
        read += on_way
        return self.files.data(on_way[-1])


def _named_project(source: Source, document: Any) -> Source:
    """A compose project's source with the project's name its file gives (`name:`), as compose
    takes it over the directory's; a name interpolation would decide is left to the directory."""
    said = document.get("name") if source.project and isinstance(document, dict) else None
    if not isinstance(said, str) or "$" in said or not project_name(said):
        return source
    return source._replace(project=project_name(said))


# Compose build fields that reach no build: buildx 0.13 does not print them, or mab-hook gives
# builds the pusher's grants instead (`grants`). Each with what to do.
_UNUSED = {
    "platforms": "list them in [tool.multiarch] (platforms, or images.{name}.platforms)",
    "network": "buildx 0.13 does not read it from compose files",
    "ssh": "builds get the SSH agents and keys you grant: git config --add mab-hook.ssh default",
    "secrets": "builds get the secrets you grant: git config --add mab-hook.secret id=NAME,env=VAR",
}


def unused(documents: Mapping[str, Any], targets: Sequence[Target]) -> tuple[str, ...]:
    """What compose files set on a build that does not reach it, said once per file and field."""
    printed = {target.name: target.spec for target in targets}
    notes = []
    for path, document in documents.items():
        services = document.get("services") if isinstance(document, dict) else None
        for name, service in services.items() if isinstance(services, dict) else ():
            build = service.get("build") if isinstance(service, dict) else None
            for field, advice in _UNUSED.items():
                spec = printed.get(str(name).replace(".", "_"), {})
                if isinstance(build, dict) and build.get(field) and not spec.get(field):
                    notes.append(
                        f"{path}: build.{field} of {name} reaches no build: {advice.format(name=name)}"
                    )
    return tuple(dict.fromkeys(notes))


def _is_compose(source: Source, path: str) -> bool:
    return source.key == "compose" or path.endswith((".yml", ".yaml"))


MAX_NODES = 1_000_000  # values a compose file may expand to through YAML aliases
# What a compose file makes the resolver read: (where, the key naming a file, is it a compose file).
_INCLUDE_KEYS = (("path", True), ("env_file", False), ("project_directory", None))


def referenced(path: str, data: bytes) -> list[tuple[str, bool]]:
    """The repository files a compose file makes the resolver read, and whether each is a compose
    file: `include` (and its `env_file` and `project_directory`), `extends: file`, `env_file`
    and `label_file`, relative to the compose file's directory. A path that leaves the repository
    or that interpolation would decide is refused: a pushed commit may not make the resolver
    read elsewhere on this machine. A file that expands past MAX_NODES values through YAML
    aliases (a "billion laughs") is refused before the resolver sees it."""
    return _referenced(path, _document(path, data))


def _referenced(path: str, document: Any) -> list[tuple[str, bool]]:
    if not isinstance(document, dict):
        return []
    named: list[tuple[object, bool | None]] = []
    for entry in _as_list(document.get("include")):
        if not isinstance(entry, dict):
            named.append((entry, True))
            continue
        for key, compose in _INCLUDE_KEYS:
            named += [(name, compose) for name in _as_list(entry.get(key))]
    services = document.get("services")
    for service in services.values() if isinstance(services, dict) else ():
        if not isinstance(service, dict):
            continue
        extends = service.get("extends")
        if isinstance(extends, dict):
            named += [(name, True) for name in _as_list(extends.get("file"))]
        for key in ("env_file", "label_file"):
            for item in _as_list(service.get(key)):
                named.append((item.get("path") if isinstance(item, dict) else item, False))
    found = [(_inside(path, str(name)), compose) for name, compose in named if isinstance(name, str)]
    return [(file, compose) for file, compose in found if compose is not None]  # a directory: checked only


def _document(path: str, data: bytes) -> Any:
    import yaml  # noqa: PLC0415 - some 20 ms, only for a commit's compose files

    loader = yaml.SafeLoader(data)  # composed once: its nodes are measured, then constructed
    try:
        node = loader.get_single_node()
        if node is not None and _expanded(node) > MAX_NODES:
            raise FatalError(
                f'{path}: expands to more than {MAX_NODES:,} values through YAML aliases (a "billion '
                'laughs"); mab-hook does not resolve it. Write the values out, or use fewer nested aliases'
            )
        return loader.construct_document(node) if node is not None else None
    except yaml.YAMLError:
        return None  # the resolver says what is wrong, better than this
    except RecursionError:
        raise FatalError(f"{path}: YAML nested too deeply to read; flatten it") from None
    finally:
        loader.dispose()


def _expanded(root: Any) -> int:
    """How many values a YAML node stands for once its aliases are expanded, counted without
    expanding them (each node once); past MAX_NODES counting stops. An alias inside the node it
    names (a recursive structure) counts as too many."""
    sizes: dict[int, int] = {}
    visiting: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            visiting.discard(key)
            sizes[key] = min(1 + sum(sizes[id(child)] for child in _children(node)), MAX_NODES + 1)
            continue
        if key in sizes:
            continue
        if key in visiting:
            return MAX_NODES + 1
        visiting.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in visiting:
                return MAX_NODES + 1
            if id(child) not in sizes:
                stack.append((child, False))
    return sizes[id(root)]


def _children(node: Any) -> list[Any]:
    import yaml  # noqa: PLC0415 - only a repository with compose files pays for yaml

    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [item for pair in node.value for item in pair]
    return []


def _as_list(value: object) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _inside(path: str, name: str) -> str:
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(path), name.replace("\\", "/")))
    leaves = joined == ".." or joined.startswith("../")
    if "$" in name or posixpath.isabs(name) or re.match(r"^[A-Za-z]:", name) or leaves:
        raise FatalError(f"{path}: {name!r} {_ONLY_THE_COMMIT}")
    return joined


_ONLY_THE_COMMIT = (
    "must name a file of the repository by a plain relative path: mab-hook resolves compose files "
    "from the pushed commit, and reads nothing else of this machine"
)


def _run(
    source: Source, contents: Mapping[str, bytes], env: Mapping[str, str], commit: str
) -> tuple[Target, ...]:
    import tempfile  # noqa: PLC0415 - only when the files changed

    _deterministic(source, contents)
    plugin = buildx_plugin(env)
    if plugin is None:
        raise FatalError(
            f"resolving {source.label} needs docker buildx (`docker buildx bake --print` reads them as "
            f"Docker does): {INSTALL_BUILDX}; or name its binary in {BUILDX_ENV}"
        )
    with tempfile.TemporaryDirectory(prefix="mab-hook-definitions-") as scratch:
        root = Path(scratch)
        for path, data in contents.items():
            target = root / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        cwd = root / source.directory
        cwd.mkdir(parents=True, exist_ok=True)
        # A compose file of comments only defines nothing (buildx 0.13 refuses it: "empty compose file").
        named = [path for path in source.files if not (_is_compose(source, path) and blank(contents[path]))]
        if not named:
            return ()
        explicit = source.key or len(named) < len(source.files)  # buildx's defaults, less a blank one
        names = [posixpath.relpath(path, source.directory) for path in named] if explicit else []
        files = [arg for name in names for arg in ("--file", name)]
        command = (str(plugin), "bake", "--print", "--progress=quiet", *NOT_READ, *files)
        done = process.run(
            command,
            env=resolver_env(env),
            cwd=cwd,
            check=False,
            timeout=TIMEOUT,
            contained=True,
            memory=MEMORY,
        )
        said = " ".join((done.stderr or done.stdout).replace(str(cwd) + os.sep, "").split())
        refused = done.returncode != 0 and not (done.missing or done.timed_out or exhausted(said))
        newer = _newer_needed(source, contents, plugin, cwd) if refused else None
    if done.missing:
        raise FatalError(f"resolving {source.label}: {plugin} cannot be run; {INSTALL_BUILDX}")
    if done.timed_out or (done.returncode != 0 and exhausted(said)):
        spent = f"in {TIMEOUT:g} s" if done.timed_out else f"within {MEMORY >> 30} GiB of memory"
        raise FatalError(
            f"{source.label} at {commit[:12]}: docker buildx bake did not resolve it {spent} and was "
            "stopped. Make it smaller (a matrix, or YAML aliases?)"
        )
    if done.returncode != 0:
        what = f"{source.label} at {commit[:12]}: docker buildx bake cannot read it: "
        what += (said.removeprefix("ERROR: ")[:600] or f"exit {done.returncode}") + ". "
        if newer is not None:
            raise NewerBuildxNeeded(what + newer.advice, newer.since)
        raise FatalError(
            what + f"Fix {source.label} (`docker buildx bake --print` shows what buildx makes of it)"
        )
    return targets_of(source, done.stdout)


class NewerBuildxNeeded(FatalError):
    """Definition files written for a newer buildx than the one installed: `since` is the first
    release that reads them (doctor holds the installed buildx to it)."""

    def __init__(self, message: str, since: tuple[int, int, int]) -> None:
        super().__init__(message)
        self.since = since


class _Newer(NamedTuple):
    since: tuple[int, int, int]
    advice: str


# What bake files may use that the oldest buildx mab-hook takes (0.13) cannot read, by the first
# release that reads it (docker/buildx's release notes): such a file fails to resolve there.
NEWER = (
    (re.compile(rb"\bvalidation\s*\{"), (0, 19, 0), "a variable's validation block"),
    (re.compile(rb"\bvariable\s+\"[^\"]*\"\s*\{[^{}]*\btype\s*="), (0, 24, 0), "a typed variable"),
)
_VERSION_RE = re.compile(r"\bv?(\d+)\.(\d+)\.(\d+)")


def _newer_needed(source: Source, contents: Mapping[str, bytes], plugin: Path, cwd: Path) -> _Newer | None:
    """When the files use what a newer buildx than this one reads: which, and since when."""
    uses = [
        (since, path, what)
        for path in source.files
        if not _is_compose(source, path)
        for pattern, since, what in NEWER
        if pattern.search(contents.get(path, b""))
    ]
    if not uses:
        return None
    since, path, what = max(uses)
    asked = process.run((str(plugin), "version"), env=resolver_env({}), cwd=cwd, check=False, timeout=TIMEOUT)
    found = _VERSION_RE.search(asked.stdout)
    installed = tuple(int(part) for part in found.groups()) if found else None
    if installed is not None and installed >= since:
        return None  # not what stops it
    have = f"this one is {'.'.join(map(str, installed))}" if installed else "this one may be older"
    first = ".".join(map(str, since))
    return _Newer(
        since,
        f"{path} uses {what}, which buildx {first} and later read ({have}): install a "
        f"newer buildx ({RELEASES}), or name its binary in {BUILDX_ENV}",
    )


RELEASES = "Docker's packages, or https://github.com/docker/buildx/releases"


def blank(data: bytes) -> bool:
    """A YAML file with no document: nothing but blank lines, comments and markers."""
    lines = (line.strip() for line in data.decode("utf-8", errors="replace").splitlines())
    return all(not line or line.startswith("#") or line in ("---", "...") for line in lines)


def exhausted(said: str) -> bool:
    """Whether buildx died of the address-space limit. The Go runtime fails where the limit
    finds it: allocating the heap ("out of memory") or a thread's stack (cgo's pthread_create,
    an mmap), so each of those is the limit speaking, not the definition."""
    return any(sign in said for sign in EXHAUSTED)


def resolver_env(env: Mapping[str, str]) -> dict[str, str]:
    """Nothing of the pusher's: bake variables and compose interpolation read the environment,
    and a commit must define the same images on every machine. (buildx runs as its own binary,
    so it needs no PATH, HOME or DOCKER_CONFIG; Windows programs need SystemRoot.)"""
    return {"SystemRoot": env.get("SYSTEMROOT", "C:\\Windows")} if sys.platform == "win32" else {}


# Values that differ from run to run or machine to machine: a commit would define other images
# elsewhere (and `verify` would never find them).
_UNSTABLE_RE = re.compile(r"\b(?:timestamp|uuidv4)\s*\(|\bBAKE_LOCAL_PLATFORM\b")


def _deterministic(source: Source, contents: Mapping[str, bytes]) -> None:
    for path in source.files:
        if _is_compose(source, path):
            continue  # compose has no functions, and only the commit's .env to interpolate from
        found = _UNSTABLE_RE.search(contents.get(path, b"").decode("utf-8", errors="replace"))
        if found:
            raise FatalError(
                f"{path}: {found.group(0).rstrip('( ')} gives another value on each run or machine, so the "
                "same commit would define other images elsewhere; write the value out (platforms: list them)"
            )


def targets_of(source: Source, printed: str) -> tuple[Target, ...]:
    """The targets of the default group, or of the groups and targets the source names (groups
    and matrices expanded), then the targets they name as `target:` contexts; each in name order
    (compose services come in no set order)."""
    try:
        definition = json.loads(printed)
        groups: Mapping[str, Any] = definition.get("group") or {}
        targets: Mapping[str, Any] = definition.get("target") or {}
    except (ValueError, AttributeError, RecursionError):
        raise FatalError(f"{source.label}: `docker buildx bake --print` printed no bake definition") from None
    unknown = [name for name in source.groups if name != "default" and name not in (*groups, *targets)]
    if unknown:
        raise FatalError(
            f"{source.label}: bake-targets names {', '.join(unknown)}, no group or target of it (groups: "
            f"{', '.join(sorted(groups)) or 'none'}; targets: {', '.join(sorted(targets)) or 'none'})"
        )
    default = {name for group in source.groups for name in _expand(group, groups, targets)}
    return tuple(
        Target(name, spec, source, name in default)
        for name, spec in sorted(targets.items())
        if isinstance(spec, dict)
    )


def _expand(
    name: str, groups: Mapping[str, Any], targets: Mapping[str, Any], seen: frozenset[str] = frozenset()
) -> list[str]:
    if name in seen:
        return []
    group = groups.get(name)
    if not isinstance(group, dict):
        return [name] if name in targets else []
    found = []
    for member in group.get("targets") or ():
        found += _expand(str(member), groups, targets, seen | {name})
    return found
