"""Images of a repository that declares none: every tracked Dockerfile, named after where it is.

`services/api/Dockerfile` is `api`, `tools/Dockerfile.dev` is `tools-dev` and
`docker/worker.Dockerfile` is `docker-worker`. Where directory names repeat (`django/app`,
`flask/app`), each name takes as many directories as it needs to be unique: `django-app`,
`flask-app`. `Dockerfile.dockerignore` and `x.Dockerfile.dockerignore` are ignore files, not
Dockerfiles.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable

from mab_hook import references
from mab_hook.images import Defaults, Image, Said, assemble
from mab_hook.validation import Problems

KEY = "tool.multiarch"


def dockerfiles(paths: Iterable[str]) -> list[tuple[str, str]]:
    """(path, stem) of every Dockerfile: `Dockerfile`, `Dockerfile.<stem>`, `<stem>.Dockerfile`."""
    found = []
    for path in paths:
        base = posixpath.basename(path)
        if base.endswith(".dockerignore"):
            continue
        if base == "Dockerfile":
            found.append((path, ""))
        elif base.startswith("Dockerfile."):
            found.append((path, base[len("Dockerfile.") :]))
        elif base.endswith(".Dockerfile"):
            found.append((path, base[: -len(".Dockerfile")]))
    return found


def discover(
    paths: Iterable[str], defaults: Defaults, problems: Problems, root_name: str
) -> tuple[Image, ...]:
    found = dockerfiles(paths)
    if not found:
        problems.add(
            KEY,
            "no [tool.multiarch.images.*] tables, no compose or bake file and no tracked "
            "Dockerfile (Dockerfile, Dockerfile.*, *.Dockerfile) in this commit",
        )
        return ()
    names = unique_names(found, root_name)
    images: dict[str, Image] = {}
    for path, _stem in found:
        name = names[path]
        if not references.NAME_RE.match(name):
            problems.add(
                KEY,
                f"{path}: cannot derive an image name from it; declare it in a "
                "[tool.multiarch.images.NAME] table",
            )
            continue
        if name in images:
            problems.add(
                KEY,
                f"{path} and {images[name].dockerfile} would both be image {name!r}; "
                "declare them in [tool.multiarch.images.NAME] tables",
            )
            continue
        directory = posixpath.dirname(path)
        images[name] = assemble(name, Said(context=directory or ".", dockerfile=path), defaults)
    return tuple(images.values())


def unique_names(found: list[tuple[str, str]], root_name: str) -> dict[str, str]:
    """Each Dockerfile's name: its directory's name (and stem), with as many parent directories
    as it takes to tell it from the others."""
    depth = dict.fromkeys((path for path, _ in found), 1)
    stems = dict(found)
    while True:
        names = {path: _name(path, stems[path], depth[path], root_name) for path in depth}
        by_name: dict[str, list[str]] = {}
        for path, name in names.items():
            by_name.setdefault(name, []).append(path)
        clashing = [path for paths in by_name.values() if len(paths) > 1 for path in paths]
        deeper = [path for path in clashing if depth[path] < _levels(path)]
        if not deeper:
            return names  # unique, or as deep as the paths go (then the NAME_RE or a clash says so)
        for path in deeper:
            depth[path] += 1


def _levels(path: str) -> int:
    directory = posixpath.dirname(path)
    return len(directory.split("/")) if directory else 1


def _name(path: str, stem: str, depth: int, root_name: str) -> str:
    directory = posixpath.dirname(path)
    parts = directory.split("/")[-depth:] if directory else [root_name]
    return _sanitize("-".join(part for part in (*parts, stem) if part))


def _sanitize(name: str) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-._")
