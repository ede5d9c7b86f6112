"""Benchmark 3: the work a push touching one image avoids, against building every image.

    python bench/work_avoided.py [--services 5] [--runs 3]       (needs the lab: bash lab/up)

A repository with an in-repo base image and SERVICES images built on it, each with RUN steps
that really execute under QEMU for linux/arm64 and linux/arm/v7. A commit changes one service.
Compared: the hook (`mab-hook --from A --to B`) against what a user would run instead,
`docker buildx bake` over every target, with a cold build cache (pruned before each run) and a
warm one (everything built at A before).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

from common import WORK, Timing, as_installed, fresh, git, lab_env, mab, measure

PLATFORMS = ["linux/amd64", "linux/arm64", "linux/arm/v7"]
WORKLOAD = 'RUN i=0; while [ "$i" -lt 20000 ]; do i=$((i+1)); done; echo "$i $(uname -m)" > /{name}\n'


def make_repo(repo: Path, services: int, busybox: str, env: dict[str, str]) -> None:
    config = [
        "[tool.multiarch]",
        f"platforms = {json.dumps(PLATFORMS)}",
        'registry = "bench.invalid/work"',
        "[tool.multiarch.images.base]",
        'context = "base"',
        f'build-args = {{ BUSYBOX = "{busybox}" }}',
    ]
    for n in range(services):
        config += [f"[tool.multiarch.images.svc{n}]", f'context = "svc{n}"']
    files = {
        "pyproject.toml": "\n".join(config) + "\n",
        "base/Dockerfile": "ARG BUSYBOX\nFROM ${BUSYBOX}\n" + WORKLOAD.format(name="base"),
    }
    for n in range(services):
        files[f"svc{n}/Dockerfile"] = ("FROM bench.invalid/work/base\n" + WORKLOAD.format(name=f"svc{n}")
                                       + "COPY app.txt /\n")  # fmt: skip
        files[f"svc{n}/app.txt"] = "v1\n"
    for path, text in files.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
    git(repo, "init", "-q", "-b", "main", env=env)
    git(repo, "add", "-A", env=env)
    git(repo, "commit", "-q", "-m", "A", env=env)


def bake_all(repo: Path, services: int) -> Path:
    """What a user runs instead: every target, every platform, bases through named contexts."""
    targets = {"base": {"context": str(repo / "base"), "platforms": PLATFORMS, "args": {"BUSYBOX": "x"}}}
    for n in range(services):
        targets[f"svc{n}"] = {"context": str(repo / f"svc{n}"), "platforms": PLATFORMS,
                              "contexts": {"bench.invalid/work/base": "target:base"}}  # fmt: skip
    path = repo.parent / "docker-bake.json"
    path.write_text(json.dumps({"group": {"default": {"targets": list(targets)}}, "target": targets}))
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--services", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    as_installed()
    env = lab_env()
    repo = fresh(WORK / "work-avoided") / "repo"
    repo.mkdir()
    make_repo(repo, args.services, env["MAB_LAB_BASE_IMAGE"], env)
    first = git(repo, "rev-parse", "HEAD", env=env)
    (repo / "svc0" / "app.txt").write_text("v2\n")
    git(repo, "commit", "-q", "-am", "B: one service changes", env=env)
    definition = bake_all(repo, args.services)
    definition.write_text(definition.read_text().replace('"x"', json.dumps(env["MAB_LAB_BASE_IMAGE"])))
    bake = ("docker", "buildx", "bake", "--file", str(definition), "--progress=plain")
    prune = ("docker", "buildx", "prune", "--all", "--force")
    hook = mab("--from", first, "--to", "HEAD")

    def forget() -> None:  # so that the hook does not skip what it recorded in an earlier run
        shutil.rmtree(repo / ".git" / "mab-hook" / "built", ignore_errors=True)

    def cold() -> None:
        measure(prune, cwd=repo, env=env, runs=1)
        forget()

    cold_hook = _timed(args.runs, cold, lambda: measure(hook, cwd=repo, env=env, runs=1))
    cold_bake = _timed(args.runs, lambda: measure(prune, cwd=repo, env=env, runs=1),
                       lambda: measure(bake, cwd=repo, env=env, runs=1))  # fmt: skip
    measure(bake, cwd=repo, env=env, runs=1)  # warm: everything built once
    warm_hook = _timed(args.runs, forget, lambda: measure(hook, cwd=repo, env=env, runs=1))
    warm_bake = _timed(args.runs, lambda: None, lambda: measure(bake, cwd=repo, env=env, runs=1))
    print(f"### Work avoided: a push touching 1 of {args.services + 1} images (3 platforms, QEMU for two)\n")
    print("| cache | mab-hook (the push) | `docker buildx bake`, all targets | ratio |")
    print("| --- | --- | --- | --- |")
    for label, ours, theirs in (("cold", cold_hook, cold_bake), ("warm", warm_hook, warm_bake)):
        print(f"| {label} | {ours:.1f} s | {theirs:.1f} s | {theirs / ours:.1f}x |")
    return 0


def _timed(runs: int, before: Callable[[], object], run: Callable[[], Timing]) -> float:
    """Median of `runs` timings, each after `before()` (not timed)."""
    times = []
    for _ in range(runs):
        before()
        times.append(run().median)
    return statistics.median(times)


if __name__ == "__main__":
    sys.exit(main())
