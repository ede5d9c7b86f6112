"""Checking the values of `[tool.multiarch]`: each checker returns the value, or records a
problem (naming the key path and what is allowed) and returns something harmless, so that
every problem of a file is reported at once."""

from __future__ import annotations

import difflib
import posixpath
import re
from collections.abc import Iterable, Mapping
from typing import Any

from mab_hook.errors import FatalError

PYPROJECT = "pyproject.toml"
TAG_FIELDS = ("sha", "short_sha", "branch")

KNOWN_OS = ("linux", "windows", "freebsd")
KNOWN_ARCH = (
    "amd64",
    "arm64",
    "arm",
    "386",
    "ppc64le",
    "ppc64",
    "s390x",
    "riscv64",
    "mips64le",
    "mips64",
    "loong64",
)
# What people write instead of Docker's names (uname -m, Debian arch names).
ARCH_ALIASES = {
    "x86_64": "amd64",
    "x86-64": "amd64",
    "aarch64": "arm64",
    "armhf": "arm/v7",
    "armv7": "arm/v7",
    "armv7l": "arm/v7",
    "armel": "arm/v6",
    "armv6": "arm/v6",
    "i386": "386",
    "i686": "386",
    "x86": "386",
}


def native_platform(machine: str) -> str:
    """The Docker platform of a machine, from `uname -m` (the BUILDPLATFORM of its builds)."""
    arch = ARCH_ALIASES.get(machine, machine)
    return f"linux/{arch}"


_PLATFORM_RE = re.compile(r"^([a-z0-9]+)/([a-z0-9_]+)(?:/(v[0-9]+))?$")

# distribution/reference grammar: path components of lowercase alphanumerics joined by
# one of `.`, `_`, `__` or runs of `-`; a registry host may carry a port.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_HOST = rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9a-fA-F:]+\])"
REGISTRY_RE = re.compile(rf"^{_HOST}(?::[0-9]+)?(?:/{_COMPONENT})*$")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_TEMPLATE_FIELD_RE = re.compile(r"\{([^{}]*)\}")


class Problems:
    """Collects every problem of one file before failing."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[str] = []

    def add(self, key: str, message: str) -> None:
        self.items.append(f"[{key}] {message}" if key else message)

    def raise_if_any(self) -> None:
        if self.items:
            listed = "\n".join(f"  - {item}" for item in self.items)
            raise FatalError(
                f"{self.source}: invalid configuration:\n{listed}\n"
                f"Fix {PYPROJECT} and run again; nothing was built."
            )


def platforms(value: Any, key: str, problems: Problems) -> tuple[str, ...] | None:
    if value is None:
        return None
    items = str_list(value, key, problems)
    if isinstance(value, list) and not value:
        problems.add(key, 'must list at least one platform, e.g. ["linux/amd64"]')
    for platform in items:
        problem = platform_problem(platform)
        if problem:
            problems.add(key, problem)
    if len(set(items)) != len(items):
        problems.add(key, "lists a platform twice")
    return items


def platform_problem(platform: str) -> str | None:
    """Why `platform` is not an os/arch[/variant] Docker accepts, with a suggestion; or None."""
    match = _PLATFORM_RE.match(platform)
    parts = platform.split("/")
    guess = ARCH_ALIASES.get(parts[-1]) or ARCH_ALIASES.get(parts[0])
    hint = f" (did you mean 'linux/{guess}'?)" if guess else ""
    if not match:
        return (
            f"{platform!r} is not a platform: expected os/arch[/variant] such as "
            f"'linux/amd64', 'linux/arm64' or 'linux/arm/v7'{hint}"
        )
    os_name, arch, _variant = match.groups()
    if os_name not in KNOWN_OS:
        return f"{platform!r}: unknown OS {os_name!r}; allowed: {', '.join(KNOWN_OS)}"
    if arch not in KNOWN_ARCH:
        return f"{platform!r}: unknown architecture {arch!r}{hint}; allowed: {', '.join(KNOWN_ARCH)}"
    return None


def tags(value: Any, key: str, problems: Problems) -> tuple[str, ...]:
    tags = str_list(value, key, problems)
    sample = {"sha": "0" * 40, "short_sha": "0" * 7, "branch": "main"}
    for template in tags:
        unknown = [f for f in _TEMPLATE_FIELD_RE.findall(template) if f not in TAG_FIELDS]
        if unknown:
            problems.add(
                key,
                f"{template!r} uses unknown field {{{unknown[0]}}}; allowed: "
                + ", ".join(f"{{{f}}}" for f in TAG_FIELDS),
            )
        elif not TAG_RE.match(template.format(**sample)):
            problems.add(
                key,
                f"{template!r} does not make a valid tag "
                "(letters, digits, _ . -, at most 128, not starting with . or -)",
            )
    return tags


def render_tag(template: str, *, sha: str, branch: str | None) -> str:
    """A tag from its template; a branch is made tag-safe (feature/x -> feature-x)."""
    safe_branch = re.sub(r"[^A-Za-z0-9_.-]+", "-", branch or "detached").lstrip(".-") or "detached"
    return template.format(sha=sha, short_sha=sha[:7], branch=safe_branch)[:128]


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
    norm = posixpath.normpath(path.replace("\\", "/"))
    if posixpath.isabs(norm) or norm == ".." or norm.startswith("../"):
        problems.add(key, f"{path!r} must be a path inside the repository, relative to its root")
        return None
    return norm


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
