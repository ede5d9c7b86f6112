"""Benchmark 3: the work a push touching one image of six avoids, against building all six.

    python bench/work_avoided.py [--services 5] [--rounds 3]       (needs the lab: bash lab/up)

A repository with an in-repo base image and SERVICES images built on it, each with a RUN step
that really works (a loop, under QEMU for linux/arm64 and linux/arm/v7), push = true to the
lab's registry. Every round, the gate first builds and pushes everything at a commit A (not
timed); then a commit B gives one service's RUN step something new to do, and its push through
the hook (`mab-hook --from HEAD^`: that service built, its base a cache hit) is timed against
what a user would run instead, `docker buildx bake --push` of all six:

- cold: every image's RUN step new to the engine, as on a machine (or a CI job) that never
  built them: the work of building all six;
- same cache: the same change by hand (the one service new, the rest cache hits), right after.

Beside the wall time, the engine's own CPU time (dockerd and the build steps it ran, QEMU
included): the work itself, whatever the two cores of this machine do side by side.
Nothing is pruned: the engine's build cache is everybody's on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from build_cost import PLATFORMS, timed, timed_once
from common import WORK, as_installed, fresh, git, lab_env, mab

# Some seconds of work per platform under QEMU: what a build does, rather than what exporting
# and pushing it costs, should weigh the most (as in a real image's build).
WORKLOAD = 'RUN i=0; while [ "$i" -lt 100000 ]; do i=$((i+1)); done; echo "$i {salt} $(uname -m)" > /{name}\n'


class Cost(NamedTuple):
    seconds: float  # wall time
    cpu: float  # the engine's CPU seconds


def engine_cpu(env: dict[str, str]) -> float:
    """CPU seconds of the lab's dockerd and its reaped children (the RUN steps, under QEMU)."""
    pid = (Path(env["MAB_LAB_DIR"]) / "dockerd.pid").read_text().split()[0]
    fields = (Path("/proc") / pid / "stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def cost(cmd: Sequence[str], repo: Path, env: dict[str, str], attempts: int = 1) -> Cost:
    """Wall and engine CPU time until a run succeeded: distribution 2.8 answers 500 to reads
    racing the docker driver's pushes at times, which fails `bake --push` by hand, and a user
    runs it again; what the failed run did counts (mab-hook's own retries count for it alike)."""
    before, spent = engine_cpu(env), 0.0
    for _ in range(attempts):
        started = time.perf_counter()
        run = timed_once(cmd, repo, env)
        if run is not None:
            return Cost(spent + run.seconds, engine_cpu(env) - before)
        spent += time.perf_counter() - started
    raise SystemExit(f"{' '.join(cmd)} failed {attempts} times")


def write(repo: Path, services: int, base: str, registry: str, salts: Sequence[str]) -> Path:
    """The repository's files, image n's RUN step with salts[n] (0: the base); and the bake
    definition of the same images, as a user would push them."""
    config = [f'[tool.multiarch]\nplatforms = {json.dumps(PLATFORMS)}\nregistry = "{registry}"\npush = true',
              '[tool.multiarch.images.base]\ncontext = "base"']  # fmt: skip
    config += [f'[tool.multiarch.images.svc{n}]\ncontext = "svc{n}"' for n in range(services)]
    files = {"pyproject.toml": "\n".join(config) + "\n",
             "base/Dockerfile": f"FROM {base}\n" + WORKLOAD.format(name="base", salt=salts[0])}  # fmt: skip
    tag = uuid.uuid4().hex[:8]
    targets: dict[str, dict[str, object]] = {
        "base": {
            "context": str(repo / "base"),
            "platforms": PLATFORMS,
            "tags": [f"{registry}/bake-base:{tag}"],
        }
    }
    for n in range(services):
        files[f"svc{n}/Dockerfile"] = f"FROM {registry}/base\n" + WORKLOAD.format(
            name=f"svc{n}", salt=salts[n + 1]
        )
        targets[f"svc{n}"] = {"context": str(repo / f"svc{n}"), "platforms": PLATFORMS,
                              "contexts": {f"{registry}/base": "target:base"},
                              "tags": [f"{registry}/bake-svc{n}:{tag}"]}  # fmt: skip
    for path, text in files.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
    definition = repo.parent / f"bake-{tag}.json"
    definition.write_text(json.dumps({"group": {"default": {"targets": list(targets)}}, "target": targets}))
    return definition


def bake(definition: Path) -> tuple[str, ...]:
    return ("docker", "buildx", "bake", "--progress=plain", "--push", "--file", str(definition))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--services", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    as_installed()
    env = lab_env()
    base = f"{env['MAB_LAB_REGISTRY']}/{env['MAB_LAB_BASE_IMAGE']}"
    registry = f"{env['MAB_LAB_REGISTRY']}/bench-avoided-{uuid.uuid4().hex[:6]}"
    repo = fresh(WORK / "work-avoided") / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main", env=env)
    images = args.services + 1
    found: dict[str, list[Cost]] = {"hook": [], "cold": [], "same cache": []}
    for _ in range(args.rounds):
        salts = [uuid.uuid4().hex for _ in range(images)]
        write(repo, args.services, base, registry, salts)
        git(repo, "add", "-A", env=env)
        git(repo, "commit", "-q", "-m", "A", env=env)
        timed(mab("--all", "--publish"), repo, env)  # A: built and pushed by the gate
        changed = [salts[0], uuid.uuid4().hex, *salts[2:]]  # svc0's step has something new to do
        write(repo, args.services, base, registry, changed)
        git(repo, "commit", "-qam", "B: one service changes", env=env)
        found["hook"].append(cost(mab("--publish", "--from", "HEAD^"), repo, env))
        by_hand = write(
            repo.parent / "by-hand", args.services, base, registry, [salts[0], uuid.uuid4().hex, *salts[2:]]
        )
        found["same cache"].append(cost(bake(by_hand), repo, env, attempts=5))
        every = write(
            repo.parent / "cold", args.services, base, registry, [uuid.uuid4().hex for _ in range(images)]
        )
        found["cold"].append(cost(bake(every), repo, env, attempts=5))
    print(
        f"### Work avoided: a push touching 1 of {images} images (push = true, 3 platforms, QEMU for two)\n"
    )
    columns = ("mab-hook (the push)", "bake", "wall-time ratio", "engine CPU, mab-hook", "engine CPU, bake",
               "CPU ratio", "mab-hook runs (s)", "bake runs (s)")  # fmt: skip
    print(f"| `bake --push` of all {images} | " + " | ".join(columns) + " |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    mine = found["hook"]
    for label, key in (("cold (every image new to the engine)", "cold"), ("the same cache", "same cache")):
        theirs = found[key]
        wall, cpu = _median(mine, "seconds"), _median(mine, "cpu")
        their_wall, their_cpu = _median(theirs, "seconds"), _median(theirs, "cpu")
        print(f"| {label} | {wall:.1f} s | {their_wall:.1f} s | {their_wall / wall:.1f}x | {cpu:.1f} s "
              f"| {their_cpu:.1f} s | {their_cpu / cpu:.1f}x | {_runs(mine)} "
              f"| {_runs(theirs)} |")  # fmt: skip
    return 0


def _median(costs: Sequence[Cost], field: str) -> float:
    return float(statistics.median(getattr(c, field) for c in costs))


def _runs(costs: Sequence[Cost]) -> str:
    return ", ".join(f"{c.seconds:.1f}" for c in costs)


if __name__ == "__main__":
    sys.exit(main())
