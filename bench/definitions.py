"""Benchmark: planning a push in a repository whose images a compose file defines.

    python bench/definitions.py [--services 200] [--runs 9]       (needs the lab's docker CLI)

Two repositories of the same SERVICES images, generated once: one whose compose.yaml (with
.env, root contexts for half of the services) defines them, one that lists them as
[tool.multiarch.images.*] tables. Three pushes from `main`: one that changes a service's source
file, one that changes a service's build args in compose.yaml, one that changes a value in
.env that every root-context service takes as a build arg. Each `mab-hook --dry-run --from main
--to <push>`, a fresh process, with the planning cache as earlier pushes leave it (or without
one: the first run), in turns. Prints Markdown.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

from common import WORK, as_installed, fresh, git, lab_env, mab, measure, ms


def write(repo: Path, services: int, compose: bool) -> None:
    files = {".env": "VERSION=1.0\n"}
    lines = ["services:"]
    tables = []
    for n in range(services):
        name, directory = f"svc{n:03d}", f"services/svc{n:03d}"
        files[f"{directory}/main.py"] = f"print({n})\n"
        files[f"{directory}/requirements.txt"] = "requests\n"
        if n % 2:  # written for the repository root as context, its version from .env
            files[f"{directory}/Dockerfile"] = f"FROM python:3.12\nARG VERSION\nCOPY {directory}/ /app/\n"
            dockerfile = f"{directory}/Dockerfile"
            lines += [f"  {name}:", "    build:", "      context: .", f"      dockerfile: {dockerfile}",
                      "      args: [VERSION]"]  # fmt: skip
            tables.append(f'[tool.multiarch.images.{name}]\ncontext = "."\ndockerfile = "{dockerfile}"\n'
                          'build-args = { VERSION = "1.0" }\n')  # fmt: skip
        else:
            files[f"{directory}/Dockerfile"] = "FROM python:3.12\nCOPY . /app/\n"
            lines += [f"  {name}:", f"    build: ./{directory}"]
            tables.append(f'[tool.multiarch.images.{name}]\ncontext = "{directory}"\n')
    lines += ["  db:", "    image: postgres:16"]
    config = '[tool.multiarch]\nplatforms = ["linux/amd64", "linux/arm64"]\n'
    if compose:
        files["compose.yaml"] = "\n".join(lines) + "\n"
        files["pyproject.toml"] = config + 'compose = "compose.yaml"\n'
    else:
        files["pyproject.toml"] = config + "\n".join(tables)
    for path, text in files.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)


def generate(repo: Path, services: int, compose: bool, env: dict[str, str]) -> None:
    if (repo / ".git").exists():
        return
    fresh(repo)
    git(repo, "init", "-q", "-b", "main", env=env)
    write(repo, services, compose)
    git(repo, "add", "-A", env=env)
    git(repo, "commit", "-q", "-m", "services", env=env)
    pushes = {"code": {"services/svc042/main.py": "print('changed')\n"}}
    if compose:
        text = (repo / "compose.yaml").read_text()
        longer = "  svc002:\n    build:\n      context: ./services/svc002\n      args:\n        DEBUG: '1'\n"
        pushes["compose"] = {
            "compose.yaml": text.replace("  svc002:\n    build: ./services/svc002\n", longer)
        }
        pushes["env"] = {".env": "VERSION=1.1\n"}
    for branch, changed in pushes.items():
        git(repo, "checkout", "-q", "-b", branch, "main", env=env)
        for path, text in changed.items():
            (repo / path).write_text(text)
        git(repo, "commit", "-q", "-am", branch, env=env)
        git(repo, "checkout", "-q", "main", env=env)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    env = lab_env()
    os.environ.update(env)  # the lab's docker resolves the compose file
    as_installed()
    compose, toml = WORK / f"compose-{args.services}", WORK / f"compose-{args.services}-as-tables"
    generate(compose, args.services, True, env)
    generate(toml, args.services, False, env)
    primed = {repo: prime(repo, env) for repo in (compose, toml)}

    def warm(repo: Path) -> tuple[Path, Path]:
        return primed[repo], repo / ".git" / "mab-hook" / "cache"

    def restore(repo: Path) -> Callable[[], None]:
        def again() -> None:
            saved, cache = warm(repo)
            shutil.rmtree(cache, ignore_errors=True)
            shutil.copytree(saved, cache)

        return again

    def emptied(repo: Path) -> Callable[[], None]:
        return lambda: shutil.rmtree(warm(repo)[1], ignore_errors=True)

    cases = {
        ("compose", "code"): (compose, restore(compose)),
        ("compose", "compose"): (compose, restore(compose)),
        ("compose", "env"): (compose, restore(compose)),
        ("tables", "code"): (toml, restore(toml)),
        ("compose", "code, first run"): (compose, emptied(compose)),
    }
    times: dict[tuple[str, str], list[float]] = {case: [] for case in cases}
    for _ in range(args.runs):  # in turns: a slow spell of the machine slows every case alike
        for (kind, push), (repo, before) in cases.items():
            before()
            branch = push.split(",")[0]
            times[(kind, push)] += measure(
                mab("--dry-run", "--from", "main", "--to", branch), cwd=repo, runs=1
            ).runs
    timings = {case: (statistics.median(found), found) for case, found in times.items()}
    print(f"### Planning with compose.yaml: {args.services} services, 2 platforms\n")
    print("| push | defined by | median | best | runs |")
    print("| --- | --- | --- | --- | --- |")
    labels = {"code": "a service's source file", "compose": "a service's build args in compose.yaml",
              "env": ".env (the version half the services take as a build arg)",
              "code, first run": "a service's source file, first run (no cache)"}  # fmt: skip
    for (kind, push), (median, runs) in timings.items():
        defined = "compose.yaml" if kind == "compose" else "[tool.multiarch.images.*] tables"
        listed = ", ".join(ms(t) for t in runs)
        print(f"| {labels[push]} | {defined} | {ms(median)} | {ms(min(runs))} | {listed} |")
    code, tables = timings[("compose", "code")][0], timings[("tables", "code")][0]
    print(f"\n- a push that touches no definition file: {code / tables:.2f}x the same "
          "repository described in tables (the resolution comes from the cache, by blob ids)")  # fmt: skip
    return 0


def prime(repo: Path, env: dict[str, str]) -> Path:
    """The cache as earlier pushes of `main` leave it, kept aside."""
    cache = repo / ".git" / "mab-hook" / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    measure(mab("--dry-run", "--all", "--to", "main"), cwd=repo, env=env, runs=1)
    primed = cache.with_name("cache-primed")
    shutil.rmtree(primed, ignore_errors=True)
    shutil.copytree(cache, primed)
    return primed


if __name__ == "__main__":
    sys.exit(main())
