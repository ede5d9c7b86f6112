"""Generate a large monorepo for the planning benchmarks, deterministically from a seed.

    python bench/generate.py DIR [--images 1000] [--files 100000] [--commits 50] [--touched 500]

Writes a git repository at DIR with one base commit (the images, their Dockerfiles, sources
and `.dockerignore` files) and a branch `push` of COMMITS commits on top that touch TOUCHED
files, through `git fast-import` (seconds, where `git add` of 100,000 files takes minutes).
Prints the base and tip commits. The same seed always gives the same repository and commits.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

PLATFORMS = '["linux/amd64", "linux/arm64", "linux/arm/v7"]'
REGISTRY = "registry.internal:5000/bench"


def images(rng: random.Random, count: int) -> list[tuple[str, str, str | None]]:
    """(name, directory, in-repo base or None): a tenth are base images the rest build on."""
    bases = [(f"base-{i:03d}", f"bases/base-{i:03d}", None) for i in range(max(1, count // 10))]
    services = []
    for i in range(count - len(bases)):
        base = rng.choice(bases)[0] if rng.random() < 0.7 else None
        services.append((f"svc-{i:04d}", f"services/svc-{i:04d}", base))
    return bases + services


def dockerfile(rng: random.Random, base: str | None) -> str:
    origin = f"{REGISTRY}/{base}:latest" if base else "python:3.12-slim"
    kind = rng.randrange(3)
    if kind == 0:  # single stage
        return (
            f"FROM {origin}\nCOPY src/ /app/src/\nCOPY requirements.txt /app/\n"
            "RUN pip install -r /app/requirements.txt\n"
        )
    if kind == 1:  # builder + test + runtime; tests only in the unreachable test stage
        return (
            f"ARG BASE={origin}\nFROM ${{BASE}} AS build\n"
            "COPY requirements.txt /\nRUN pip wheel -r /requirements.txt\n"
            "COPY src/ /src/\nFROM build AS test\nCOPY tests/ /tests/\nRUN pytest /tests\n"
            f"FROM {origin} AS runtime\nCOPY --from=build /src /app/src\n"
        )
    return (
        f"FROM {origin}\nRUN --mount=type=bind,source=requirements.txt,target=/r.txt pip install -r /r.txt\n"
        "COPY --exclude=*.md . /app/\n"
    )


def tree(
    rng: random.Random, count: int, files: int
) -> tuple[dict[str, str], list[tuple[str, str, str | None]]]:
    found = images(rng, count)
    contents: dict[str, str] = {}
    per_image = max(4, (files - 2000) // len(found))
    for name, directory, base in found:
        contents[f"{directory}/Dockerfile"] = dockerfile(rng, base)
        contents[f"{directory}/requirements.txt"] = f"requests=={rng.randrange(20, 32)}.0\n"
        if rng.random() < 0.5:
            contents[f"{directory}/.dockerignore"] = "*.md\n**/__pycache__\n!README.md\n"
        for j in range(per_image - 3):
            kind = rng.choices(("src", "tests", "docs"), weights=(6, 3, 1))[0]
            ext = "md" if kind == "docs" else "py"
            contents[f"{directory}/{kind}/m{j // 10:02d}/f{j:03d}.{ext}"] = f"# {name} {kind} {j}\n"
    i = 0
    while len(contents) < files - 1:
        area = ("proto", "docs", "tools", "scripts")[i % 4]
        contents[f"{area}/d{i // 50:03d}/f{i:05d}.txt"] = f"shared {i}\n"
        i += 1
    contents["pyproject.toml"] = pyproject(found, rng)
    return contents, found


def pyproject(found: list[tuple[str, str, str | None]], rng: random.Random) -> str:
    lines = ["[tool.multiarch]", f"platforms = {PLATFORMS}", f'registry = "{REGISTRY}"', ""]
    for name, directory, _base in found:
        lines += [f"[tool.multiarch.images.{name}]", f'context = "{directory}"']
        if rng.random() < 0.1:
            lines.append('watch = ["proto/**"]')
        lines.append("")
    return "\n".join(lines)


def commits(
    rng: random.Random, contents: dict[str, str], count: int, touched: int
) -> Iterator[dict[str, str]]:
    """Each commit changes touched/count existing files (sources mostly, some docs and Dockerfiles)."""
    paths = sorted(contents)
    for n in range(count):
        changed = {}
        for path in rng.sample(paths, touched // count):
            changed[path] = contents[path] + f"# change {n}\n"
        yield changed


def fast_import(contents: dict[str, str], pushes: Iterator[dict[str, str]]) -> Iterator[bytes]:
    stamp = 1_700_000_000

    def commit(
        ref: str, mark: int, parent: int | None, files: dict[str, str], message: str
    ) -> Iterator[bytes]:
        author = f"Bench <bench@example.invalid> {stamp + mark} +0000"
        yield f"commit {ref}\nmark :{mark}\ncommitter {author}\n".encode()
        data = message.encode()
        yield b"data %d\n%s\n" % (len(data), data)
        if parent is not None:
            yield f"from :{parent}\n".encode()
        for path, text in files.items():
            blob = text.encode()
            yield b'M 100644 inline "%s"\ndata %d\n%s\n' % (path.encode(), len(blob), blob)

    yield from commit("refs/heads/main", 1, None, contents, "base")
    mark = 1
    for n, changed in enumerate(pushes):
        yield from commit("refs/heads/push", mark + 1, mark, changed, f"change {n}")
        mark += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dir", type=Path)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--commits", type=int, default=50)
    parser.add_argument("--touched", type=int, default=500)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    contents, _found = tree(rng, args.images, args.files)
    args.dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(("git", "init", "-q", "-b", "main", str(args.dir)), check=True)
    importer = subprocess.Popen(("git", "fast-import", "--quiet"), cwd=args.dir, stdin=subprocess.PIPE)
    assert importer.stdin is not None
    for chunk in fast_import(contents, commits(rng, contents, args.commits, args.touched)):
        importer.stdin.write(chunk)
    importer.stdin.close()
    if importer.wait() != 0:
        return 1
    base = subprocess.run(
        ("git", "rev-parse", "main"), cwd=args.dir, capture_output=True, text=True, check=True
    )
    tip = subprocess.run(
        ("git", "rev-parse", "push"), cwd=args.dir, capture_output=True, text=True, check=True
    )
    print(f"{base.stdout.strip()} {tip.stdout.strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
