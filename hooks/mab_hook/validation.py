"""Checking the values of `[tool.multiarch]`: each checker returns the value, or records a
problem (naming the key path and what is allowed) and returns something harmless, so that
every problem of a file is reported at once."""

from __future__ import annotations

import difflib
import math
import posixpath
import re
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from mab_hook import budget, references, specs
from mab_hook import platforms as platform_table
from mab_hook import tags as tag_templates
from mab_hook.errors import FatalError
from mab_hook.images import LOCAL_PATH_KEYS, OCI_LAYOUT, is_external_context

PYPROJECT = "pyproject.toml"


class Problems:
    """Collects every problem of one file before failing."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[str] = []
        self.files: dict[str, None] = {}  # where the problems are: what to fix

    def add(self, key: str, message: str) -> None:
        self.items.append(f"[{key}] {message}" if key else message)
        # A compose or bake target's key names its files ("compose.yaml: target 'web'").
        self.files.setdefault(key.split(": target ", 1)[0] if ": target " in key else PYPROJECT)

    def raise_if_any(self) -> None:
        if self.items:
            listed = "\n".join(f"  - {item}" for item in self.items)
            raise FatalError(
                f"{self.source}: invalid configuration:\n{listed}\n"
                f"Fix {', '.join(self.files)} and run again; nothing was built."
            )


def platforms(value: Any, key: str, problems: Problems) -> tuple[str, ...] | None:
    if value is None:
        return None
    items = str_list(value, key, problems)
    if isinstance(value, list) and not value:
        problems.add(key, 'must list at least one platform, e.g. ["linux/amd64"]')
    for platform in items:
        problem = platform_table.problem(platform)
        if problem:
            problems.add(key, problem)
    if len(set(items)) != len(items):
        problems.add(key, "lists a platform twice")
    return items


def tags(value: Any, key: str, problems: Problems) -> tuple[str, ...]:
    templates = str_list(value, key, problems)
    if isinstance(value, list) and not value:
        problems.add(key, 'must list at least one tag template, e.g. ["{short_sha}"]')
    for template in templates:
        problem = tag_templates.problem(template)
        if problem:
            problems.add(key, problem)
    return templates


def seconds(value: Any, key: str, problems: Problems) -> float | None:
    """A positive, finite number of seconds, or None (when not set, or not valid)."""
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not 0 < value <= budget.MOST
    ):
        problems.add(
            key, f"must be a number of seconds above 0 and at most {budget.MOST:g}, not {describe(value)}"
        )
        return None
    return float(value)


def build_args(value: Any, key: str, problems: Problems) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        problems.add(key, f'must be a table of NAME = "value", not {type_name(value)}')
        return ()
    args = []
    for name, arg in value.items():
        if isinstance(arg, bool) or not isinstance(arg, (str, int, float)):
            problems.add(f"{key}.{toml_key(name)}", f"must be a string or number, not {type_name(arg)}")
            continue
        args.append((name, str(arg)))
    return tuple(sorted(args))


def str_list(value: Any, key: str, problems: Problems) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        problems.add(key, f"must be a list of strings, not {describe(value)}")
        return ()
    return tuple(value)


def optional_str(table: Mapping[str, Any], name: str, key: str, problems: Problems) -> str | None:
    value = table.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        problems.add(f"{key}.{name}", f"must be a non-empty string, not {describe(value)}")
        return None
    return value


def normalize(path: str, key: str, problems: Problems) -> str | None:
    """A repository-relative POSIX path, or None (recorded) when it leaves the repository."""
    norm = posixpath.normpath(path.replace("\\", "/"))
    if posixpath.isabs(norm) or norm == ".." or norm.startswith("../") or re.match(r"^[A-Za-z]:", norm):
        problems.add(key, f"{path!r} must be a path inside the repository, relative to its root")
        return None
    return norm


def image_name(name: str, key: str, problems: Problems) -> bool:
    """Whether `name` may name an image (a table's key, a compose service, a bake target); if
    not, the problem is said."""
    if references.NAME_RE.match(name) and len(name) <= 255:
        return True
    problems.add(
        key,
        f"{name!r} is not a valid image name: Docker allows lowercase letters, "
        "digits and separators (. _ __ -) inside '/'-separated parts, e.g. 'api' or 'team/api'",
    )
    return False


def unknown_keys(table: Mapping[str, Any], allowed: Iterable[str], key: str, problems: Problems) -> None:
    allowed = tuple(allowed)
    for name in table:
        if name not in allowed:
            close = difflib.get_close_matches(name.replace("_", "-"), allowed, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.add(f"{key}.{toml_key(name)}", f"unknown key{hint}; allowed: {', '.join(allowed)}")


def toml_key(name: str) -> str:
    return name if re.match(r"^[A-Za-z0-9_-]+$", name) else f'"{name}"'


def type_name(value: Any) -> str:
    names: Mapping[type, str] = {
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        list: "an array",
        dict: "a table",
    }
    return names.get(type(value), type(value).__name__)


def describe(value: Any) -> str:
    return f"{type_name(value)} ({value!r})" if not isinstance(value, (dict, list)) else type_name(value)


# --- build settings an image takes from a table, a compose service or a bake target ----------


class Directories(Protocol):
    def has_dir(self, directory: str) -> bool: ...


_LOCAL_HINT = (
    "must be a path inside the repository, relative to its root (e.g. '.git/mab-hook/buildkit-cache/{name}')"
    ": a pushed commit may not make builds read or write elsewhere on this machine"
)
_SECRET_ID_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def caches(value: Any, key: str, problems: Problems) -> tuple[str, ...]:
    """Cache specs; a `type=local` one's paths must stay inside the repository."""
    entries = str_list([value] if isinstance(value, str) else value, key, problems)
    kept = []
    for entry in entries:
        if not re.match(r"^(type=[a-z0-9-]+|[a-z0-9.-]+(:[0-9]+)?/)", entry):
            problems.add(
                key,
                f"{entry!r} is not a BuildKit cache spec, e.g. "
                "'type=registry,ref=registry.internal:5000/cache/{name}'",
            )
            continue
        options = specs.parse(entry)
        if options.get("type") == "local":
            for name in LOCAL_PATH_KEYS:
                if name in options:
                    path = normalize(options[name], key, Problems("")) if options[name] else None
                    if path is None:
                        problems.add(key, f"{entry!r}: {name}= {_LOCAL_HINT}")
                        continue
                    options[name] = path
            kept.append(specs.format(options))
            continue
        kept.append(entry)
    return tuple(kept)


def secrets(value: Any, key: str, problems: Problems) -> tuple[str, ...]:
    """The BuildKit secrets a build asks for: `id=npm,env=NPM_TOKEN`. The id is what counts:
    where a secret comes from is the pusher's to grant (`grants`), so a `src=` or `env=` of the
    commit is only a suggestion, never read."""
    kept = []
    for entry in str_list(value, key, problems):
        options = specs.parse(entry)
        problem = None
        if set(options) - {"id", "env", "src", "source", "type", "required"}:
            problem = "takes id=, and env= or src= (where you would take it from)"
        elif not _SECRET_ID_RE.match(options.get("id", "")):
            problem = "needs id=NAME (letters, digits, _ . -), the id RUN --mount=type=secret,id=NAME uses"
        elif options.get("env") is not None and not _ENV_NAME_RE.match(options["env"]):
            problem = "env= must name an environment variable"
        if problem:
            problems.add(key, f"{entry!r} {problem}, e.g. 'id=npm,env=NPM_TOKEN'")
            continue
        env = options.get("env") or ("" if options.get("src") or options.get("source") else options["id"])
        kept.append(specs.format({"id": options["id"], **({"env": env} if env else {})}))
    return tuple(kept)


def oci_layout(value: str, key: str, problems: Problems, directory: str = ".") -> str | None:
    """`oci-layout://path[:tag|@digest]` with the path inside the repository (it is read from
    the pushed commit), never elsewhere on the machine; `path` relative to `directory`."""
    rest = value[len(OCI_LAYOUT) :]
    path, at, digest = rest.partition("@")
    if not at:
        head, colon, tag = path.rpartition(":")
        path, suffix = (head, f":{tag}") if colon and "/" not in tag else (path, "")
    else:
        suffix = f"@{digest}"
    normalized = normalize(under(directory, path), key, Problems("")) if path else None
    if normalized is None:
        problems.add(key, f"{value!r}: the layout's path {_LOCAL_HINT}")
        return None
    return f"{OCI_LAYOUT}{normalized}{suffix}"


def contexts(
    value: Any, key: str, tree: Directories, problems: Problems, directory: str = "."
) -> tuple[tuple[str, str], ...]:
    """Named build contexts: a repository directory (relative to `directory`), an OCI layout of
    the repository, or a buildx source passed as is."""
    if not isinstance(value, dict):
        problems.add(key, f'must be a table of NAME = "path", not {type_name(value)}')
        return ()
    found = []
    for name, path in value.items():
        item = f"{key}.{toml_key(name)}"
        if not isinstance(path, str) or not path:
            problems.add(
                item, f"must be a repository directory or a buildx context source, not {describe(path)}"
            )
            continue
        if path.startswith(OCI_LAYOUT):
            layout = oci_layout(path, item, problems, directory)
            if layout is not None:
                found.append((name, layout))
            continue
        if is_external_context(path):
            found.append((name, path))
            continue
        normalized = normalize(under(directory, path.removeprefix("cwd://")), item, problems)
        if normalized is None:
            continue
        if not tree.has_dir(normalized):
            problems.add(item, f"directory {normalized!r} does not exist in this commit")
        found.append((name, normalized))
    return tuple(sorted(found))


def under(directory: str, path: str) -> str:
    """`path` as a repository path, when written relative to `directory` (where it was read)."""
    if directory in (".", "") or posixpath.isabs(path) or re.match(r"^[A-Za-z]:", path):
        return path
    return posixpath.join(directory, path)
