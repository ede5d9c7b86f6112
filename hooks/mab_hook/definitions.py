"""Compose and bake files as image sources, resolved the way Docker resolves them.

buildx reads compose files (interpolation, `.env`, profiles, `x-bake`) and bake files
(variables, functions, `inherits`, `matrix`) itself: `docker buildx bake --print` turns them
into plain bake targets without building anything (~0.1 s). mab-hook runs it on the files of
the pushed commit, never the work tree: they are written to a private directory, with the
files they include, and resolved there. The result is kept under the blob ids of every file
read, so a push that changes none of them pays nothing.

Your shell's variables do not reach the resolver, only what the commit holds (`.env`, the
files' own defaults): a commit plans the same images on every machine.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
from collections.abc import Callable, Hashable, Iterable, Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from mab_hook import process
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
VERSION = 1  # of what the cache keeps
TIMEOUT = 60.0  # seconds; the resolver reads a few files
# What the resolver may see of the environment: enough for docker to run and find buildx.
PASSED_ENV = ("PATH", "DOCKER_CONFIG", "BUILDX_CONFIG", "SystemRoot", "PATHEXT", "TMPDIR", "TEMP", "TMP")
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

    @property
    def label(self) -> str:
        return ", ".join(self.files)


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


class CommitFiles(NamedTuple):
    """The files of the pushed commit, as the resolver needs them."""

    blob_id: Callable[[str], str | None]
    data: Callable[[str], bytes | None]
    commit: str  # for messages


def fingerprint(env: Mapping[str, str]) -> tuple[Hashable, ...]:
    """Which docker and buildx would resolve: a new buildx may resolve the same files anew.
    Some stat calls, no process."""
    import shutil  # noqa: PLC0415 - only where compose or bake files define images

    docker = shutil.which("docker", path=env.get("PATH"))
    config = Path(env.get("DOCKER_CONFIG") or Path.home() / ".docker")
    places = [config / "cli-plugins", *(Path(p) for p in _PLUGIN_DIRS)]
    if docker is not None:
        places.append(Path(docker).resolve().parent.parent / "libexec" / "docker" / "cli-plugins")
    found: list[Hashable] = [_stat(docker)]
    for place in places:
        for name in ("docker-buildx", "docker-buildx.exe"):
            stat = _stat(str(place / name))
            if stat is not None:
                found.append((str(place / name), stat))
    return tuple(found)


_PLUGIN_DIRS = (
    "/usr/local/lib/docker/cli-plugins",
    "/usr/local/libexec/docker/cli-plugins",
    "/usr/lib/docker/cli-plugins",
    "/usr/libexec/docker/cli-plugins",
)


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
        return Resolved(targets, read, tuple(r.key for r in found))

    def resolve(self, source: Source) -> Resolved:
        roots = (*source.files, posixpath.normpath(posixpath.join(source.directory, ENV_FILE)))
        key = ("definitions", VERSION, source, tuple(self._ids(roots)), fingerprint(self.env))
        kept = self.cache.get(key) if self.cache is not None else None
        if kept is not None and all(self.files.blob_id(path) == blob for path, blob in kept[1]):
            targets, others = kept
            return Resolved(targets, (*roots, *(path for path, _ in others)), (key, others))
        contents = self._contents(source, roots)
        targets = _run(source, contents, self.env, self.files.commit)
        others = tuple((path, self.files.blob_id(path)) for path in contents if path not in roots)
        if self.cache is not None:
            self.cache[key] = (targets, others)
        return Resolved(targets, (*roots, *(path for path, _ in others)), (key, others))

    def _ids(self, paths: Iterable[str]) -> Iterable[tuple[str, str | None]]:
        return ((path, self.files.blob_id(path)) for path in paths)

    def _contents(self, source: Source, roots: Sequence[str]) -> dict[str, bytes]:
        """Every file the resolver will read: the definition files, `.env`, and the files
        compose files include, extend or take variables from, transitively."""
        contents: dict[str, bytes] = {}
        todo = list(roots)
        while todo:
            path = todo.pop(0)
            if path in contents:
                continue
            data = self.files.data(path)
            if data is None:
                if path in source.files:
                    raise FatalError(f"{path}: no such file in commit {self.files.commit[:12]} "
                                     "(named in [tool.multiarch])")  # fmt: skip
                continue
            contents[path] = data
            if path.endswith((".yml", ".yaml")) or (source.key == "compose" and path in source.files):
                todo += referenced(path, data)
        return contents


def referenced(path: str, data: bytes) -> list[str]:
    """The repository files a compose file makes the resolver read: `include`, `extends: file`
    and `env_file`, relative to the compose file's directory. A path that leaves the repository
    or that interpolation would decide is refused: a pushed commit may not make the resolver
    read elsewhere on this machine."""
    import yaml  # noqa: PLC0415 - some 20 ms, only for a commit's compose files

    try:
        document = yaml.safe_load(data)
    except yaml.YAMLError:
        return []  # the resolver says what is wrong, better than this
    if not isinstance(document, dict):
        return []
    named: list[str] = []
    for entry in _as_list(document.get("include")):
        named += _as_list(entry.get("path") if isinstance(entry, dict) else entry)
        named += _as_list(entry.get("env_file")) if isinstance(entry, dict) else []
    services = document.get("services")
    for service in services.values() if isinstance(services, dict) else ():
        if not isinstance(service, dict):
            continue
        extends = service.get("extends")
        if isinstance(extends, dict):
            named += _as_list(extends.get("file"))
        for env_file in _as_list(service.get("env_file")):
            named += _as_list(env_file.get("path") if isinstance(env_file, dict) else env_file)
    return [_inside(path, str(name)) for name in named if isinstance(name, str)]


def _as_list(value: object) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _inside(path: str, name: str) -> str:
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(path), name.replace("\\", "/")))
    if "$" in name or posixpath.isabs(name) or re.match(r"^[A-Za-z]:", name) or joined.startswith("../"):
        raise FatalError(
            f"{path}: {name!r} must name a file of the repository by a plain relative path: mab-hook "
            "resolves compose files from the pushed commit, and reads nothing else of this machine"
        )
    return joined


def _run(
    source: Source, contents: Mapping[str, bytes], env: Mapping[str, str], commit: str
) -> tuple[Target, ...]:
    import tempfile  # noqa: PLC0415 - only when the files changed

    with tempfile.TemporaryDirectory(prefix="mab-hook-definitions-") as scratch:
        root = Path(scratch)
        for path, data in contents.items():
            target = root / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        cwd = root / source.directory
        cwd.mkdir(parents=True, exist_ok=True)
        names = [posixpath.relpath(path, source.directory) for path in source.files] if source.key else []
        files = [arg for name in names for arg in ("--file", name)]
        command = ("docker", "buildx", "bake", "--print", "--progress=quiet", *NOT_READ, *files)
        done = process.run(command, env=resolver_env(env, root), cwd=cwd, check=False, timeout=TIMEOUT)
        said = " ".join((done.stderr or done.stdout).replace(str(cwd) + os.sep, "").split())
    if done.missing or _NO_BUILDX_RE.search(said):
        raise FatalError(f"resolving {source.label} needs docker buildx (`docker buildx bake --print` reads "
                         f"them as Docker does): {INSTALL_BUILDX}")  # fmt: skip
    if done.returncode != 0:
        what = said.removeprefix("ERROR: ")[:600] or f"exit {done.returncode}"
        raise FatalError(
            f"{source.label} at {commit[:12]}: docker buildx bake cannot read it: {what}. "
            f"Fix {source.label} (`docker buildx bake --print` shows what buildx makes of it)"
        )
    return targets_of(source, done.stdout)


# What docker says without the buildx plugin: it takes `buildx` for a command it lacks, or
# (docker 26) reads bake's flags as its own.
_NO_BUILDX_RE = re.compile(
    r"'buildx' is not a docker command|unknown command|unknown flag: --(?:print|progress)"
)


def resolver_env(env: Mapping[str, str], home: Path) -> dict[str, str]:
    """Only what docker needs to run: a variable of the user's shell would change the images a
    commit defines (bake variables and compose interpolation read the environment)."""
    passed = {name: env[name] for name in PASSED_ENV if name in env}
    passed.setdefault("DOCKER_CONFIG", str(Path(env.get("HOME") or Path.home()) / ".docker"))
    return {**passed, "HOME": str(home)}


def targets_of(source: Source, printed: str) -> tuple[Target, ...]:
    """The targets of the default group (groups and matrices expanded), then the targets they
    name as `target:` contexts; each in name order (compose services come in no set order)."""
    try:
        definition = json.loads(printed)
        groups: Mapping[str, Any] = definition.get("group") or {}
        targets: Mapping[str, Any] = definition.get("target") or {}
    except (ValueError, AttributeError):
        raise FatalError(f"{source.label}: `docker buildx bake --print` printed no bake definition") from None
    default = set(_expand("default", groups, targets))
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
