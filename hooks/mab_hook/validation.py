"""Checking the values of `[tool.multiarch]`: each checker returns the value, or records a
problem (naming the key path and what is allowed) and returns something harmless, so that
every problem of a file is reported at once."""

from __future__ import annotations

import difflib
import math
import posixpath
import re
from collections.abc import Iterable, Mapping
from typing import Any

from mab_hook import platforms as platform_table
from mab_hook import tags as tag_templates
from mab_hook.errors import FatalError

PYPROJECT = "pyproject.toml"


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
        or value <= 0
    ):
        problems.add(key, f"must be a number of seconds above 0, not {describe(value)}")
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
