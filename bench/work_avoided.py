"""Benchmark 3: the work a push touching one image of six avoids, against building all six.

    python bench/work_avoided.py [--services 5] [--rounds 3]       (needs the lab: bash lab/up)

A repository with an in-repo base image and SERVICES images built on it, each with RUN steps
that really execute (under QEMU for linux/arm64 and linux/arm/v7), push = true to the lab's
registry. Every round, the gate first builds and pushes everything at a commit A (not timed);
then a commit B changes one service, and the push of B through the hook is timed against what a
user would run instead, `docker buildx bake --push` of every target at B:

- warm: the bake right after, on the same build cache (the unchanged images are cache hits);
- cold: the bake of a copy whose every image is new to the cache (a salt in every RUN step), as
  on a machine that never built them; the hook's push of B is the same push (its unchanged
  images are in the registry, so it never needs their cache).

Nothing is pruned: the engine's build cache is everybody's on this machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import uuid
from pathlib import Path

from build_cost import PLATFORMS, timed
from common import WORK, as_installed, fresh, git, lab_env, mab

# Some seconds of work per platform under QEMU: what a build does, rather than what exporting
# and pushing it costs, should weigh the most (as in a real image's build).
WORKLOAD = 'RUN i=0; while [ "$i" -lt 100000 ]; do i=$((i+1)); done; echo "$i {salt} $(uname -m)" > /{name}\n'


def write(repo: Path, services: int, base: str, registry: str, salt: str) -> Path:
    """The repository's files with `salt` in every RUN step; the bake definition of the same."""
    config = [f'[tool.multiarch]\nplatforms = {json.dumps(PLATFORMS)}\nregistry = "{registry}"\npush = true',
              '[tool.multiarch.images.base]\ncontext = "base"']  # fmt: skip
    config += [f'[tool.multiarch.images.svc{n}]\ncontext = "svc{n}"' for n in range(services)]
    files = {"pyproject.toml": "\n".join(config) + "\n",
             "base/Dockerfile": f"FROM {base}\n" + WORKLOAD.format(name="base", salt=salt)}  # fmt: skip
    targets: dict[str, dict[str, object]] = {
        "base": {
            "context": str(repo / "base"),
            "platforms": PLATFORMS,
            "tags": [f"{registry}/bake-base:{salt[:8]}"],
        }
    }
    for n in range(services):
        files[f"svc{n}/Dockerfile"] = f"FROM {registry}/base\n" + WORKLOAD.format(name=f"svc{n}", salt=salt)
        files.setdefault(f"svc{n}/app.txt", "v1\n")
        targets[f"svc{n}"] = {"context": str(repo / f"svc{n}"), "platforms": PLATFORMS,
                              "contexts": {f"{registry}/base": "target:base"},
                              "tags": [f"{registry}/bake-svc{n}:{salt[:8]}"]}  # fmt: skip
    for path, text in files.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        if not (repo / path).exists() or not path.endswith("app.txt"):
            (repo / path).write_text(text)
    definition = repo.parent / f"bake-{salt[:8]}.json"
    definition.write_text(json.dumps({"group": {"default": {"targets": list(targets)}}, "target": targets}))
    return definition


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
    hook, warm, cold = [], [], []
    for _ in range(args.rounds):
        salt = uuid.uuid4().hex
        write(repo, args.services, base, registry, salt)
        git(repo, "add", "-A", env=env)
        git(repo, "commit", "-q", "-m", f"A {salt}", env=env)
        timed(mab("--all"), repo, env)  # A: built and pushed by the gate
        (repo / "svc0" / "app.txt").write_text(f"{uuid.uuid4().hex}\n")
        (repo / "svc0" / "Dockerfile").write_text(
            (repo / "svc0" / "Dockerfile").read_text() + "COPY app.txt /\n"
        )
        git(repo, "commit", "-qam", "B: one service changes", env=env)
        hook.append(timed(mab("--from", "HEAD^"), repo, env).seconds)
        # By hand, on the same cache: the same change (an app.txt of its own, so it is built too).
        (repo / "svc0" / "app.txt").write_text(f"{uuid.uuid4().hex}\n")
        definition = write(repo, args.services, base, registry, salt)
        bake = ("docker", "buildx", "bake", "--progress=plain", "--push", "--file", str(definition))
        warm.append(timed(bake, repo, env, attempts=3).seconds)
        fresh_definition = write(
            repo.parent / "cold" / "repo", args.services, base, registry, uuid.uuid4().hex
        )
        bake_cold = (
            "docker",
            "buildx",
            "bake",
            "--progress=plain",
            "--push",
            "--file",
            str(fresh_definition),
        )
        cold.append(timed(bake_cold, repo, env, attempts=3).seconds)
    mine = statistics.median(hook)
    images = args.services + 1
    print(
        f"### Work avoided: a push touching 1 of {images} images (push = true, 3 platforms, QEMU for two)\n"
    )
    print(f"| `bake --push` of all {images} | mab-hook (the push) | bake | ratio "
          "| mab-hook runs (s) | bake runs (s) |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- |")
    for label, theirs in (("cold (nothing cached)", cold), ("warm (the same cache)", warm)):
        ratio = statistics.median(theirs) / mine
        runs = ", ".join(f"{t:.1f}" for t in hook)
        print(f"| {label} | {mine:.1f} s | {statistics.median(theirs):.1f} s | {ratio:.1f}x | {runs} "
              f"| {', '.join(f'{t:.1f}' for t in theirs)} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
