"""Benchmark: real repositories' pushes, through the gate and by `docker buildx bake --push`.

    python bench/real_pushes.py [--rounds 5] [--profile]      (needs the lab: bash lab/up)

Offline variants of two public compose projects, shaped like them (not copies of their files):
dockersamples/example-voting-app (four built services beside two ready-made ones, each its own
directory) and open-telemetry/opentelemetry-demo (sixteen built services, every one with the
repository root as its context, a Dockerfile under src/, build args from .env). Every image is
FROM the lab's busybox, copies its files and runs one step on a salted file, for three platforms
(QEMU for two).

In alternating rounds, each side on a change of its own (every service's salt file rewritten,
so every last step really runs): `mab-hook --all --publish` (push = true) against `docker buildx
bake --push` of the same compose file, tags set per service, at the repository's root. For
mab-hook, where the time goes (from its output as it came); with --profile, one more gate run
in this process under cProfile: what of the fixed cost is mab-hook's own.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import subprocess
import sys
import uuid
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import NamedTuple

from build_cost import PLATFORMS, Run, median, seconds, timed, where
from common import ROOT, WORK, as_installed, fresh, git, lab_env, mab

STEP = "RUN cat /app/salt.txt > /out && uname -m >> /out\n"


def voting_app(base: str) -> tuple[dict[str, str], tuple[str, ...]]:
    services = ("vote", "result", "worker", "seed-data")
    compose = "services:\n"
    for name in services:
        compose += f"  {name.replace('-data', '')}:\n    build: ./{name}\n"
    compose += "  redis:\n    image: redis:alpine\n  db:\n    image: postgres:15-alpine\n"
    files = {"compose.yaml": compose}
    for name in services:
        files[f"{name}/Dockerfile"] = f"FROM {base}\nCOPY . /app\n{STEP}"
        files[f"{name}/app.txt"] = f"{name}\n"
    return files, tuple(name.replace("-data", "") for name in services)


def otel_demo(base: str) -> tuple[dict[str, str], tuple[str, ...]]:
    services = ("accounting", "ad", "cart", "checkout", "currency", "email", "fraud-detection", "frontend",
                "frontend-proxy", "image-provider", "kafka", "load-generator", "payment", "product-catalog",
                "quote", "recommendation")  # fmt: skip
    compose = "services:\n"
    files = {".env": "IMAGE_VERSION=2.0.2\nDEMO_VERSION=latest\n"}
    for name in services:
        compose += (f"  {name}:\n    build:\n      context: ./\n      dockerfile: src/{name}/Dockerfile\n"
                    "      args:\n        - DEMO_VERSION\n")  # fmt: skip
        files[f"src/{name}/Dockerfile"] = f"FROM {base}\nARG DEMO_VERSION\nCOPY src/{name}/ /app\n{STEP}"
        files[f"src/{name}/app.txt"] = f"{name}\n"
    files["compose.yaml"] = compose
    return files, services


def repository(path: Path, files: Mapping[str, str], registry: str, env: dict[str, str]) -> None:
    path.mkdir(parents=True)
    config = (f'[tool.multiarch]\nplatforms = {json.dumps(PLATFORMS)}\nregistry = "{registry}"\npush = true\n'
              'compose = "compose.yaml"\n')  # fmt: skip
    for name, text in {**files, "pyproject.toml": config}.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    git(path, "init", "-q", "-b", "main", env=env)
    git(path, "add", "-A", env=env)
    git(path, "commit", "-q", "-m", "init", env=env)


def salting(path: Path, files: Mapping[str, str], env: dict[str, str]) -> Callable[[], str]:
    """Every service's salt file rewritten and committed; the salt."""
    directories = sorted({str(Path(name).parent) for name in files if name.endswith("/Dockerfile")})

    def salted() -> str:
        salt = uuid.uuid4().hex
        for directory in directories:
            (path / directory / "salt.txt").write_text(f"{salt}\n")
        git(path, "add", "-A", env=env)
        git(path, "commit", "-q", "-m", salt, env=env)
        return salt

    return salted


def by_hand(registry: str, services: tuple[str, ...], salt: str) -> list[str]:
    """`docker buildx bake --push` of the compose file, as a user would tag and push it."""
    sets = ["--set", f"*.platform={','.join(PLATFORMS)}"]
    for name in services:
        sets += ["--set", f"{name}.tags={registry}/by-hand-{name}:{salt[:8]}"]
    return ["docker", "buildx", "bake", "--progress=plain", "--push", "--file", "compose.yaml", *sets]


class Side(NamedTuple):
    path: Path
    env: dict[str, str]
    salted: Callable[[], str]
    by_hand: Callable[[str], list[str]]  # bake --push of one salt's images


def rounds(side: Side, count: int, baseline: list[str] | None) -> tuple[list[Run], list[Run], list[Run]]:
    """Each round: the gate, the gate as it was at the baseline (if any), and bake by hand."""
    hook, then, hand = [], [], []
    for _ in range(count):
        side.salted()
        hook.append(timed(mab("--all", "--publish"), side.path, side.env))
        if baseline is not None:
            side.salted()
            then.append(timed([*baseline, "--all", "--publish"], side.path, side.env))
        hand.append(timed(side.by_hand(side.salted()), side.path, side.env, attempts=5))
    return hook, then, hand


def baseline_command(rev: str) -> list[str]:
    """mab-hook as it was at `rev`: a worktree of this repository, first on PYTHONPATH."""
    tree = WORK / "baseline-real-pushes"
    subprocess.run(("git", "worktree", "remove", "--force", str(tree)), cwd=ROOT, capture_output=True,
                   check=False)  # fmt: skip
    subprocess.run(("git", "worktree", "add", "--detach", "--force", str(tree), rev), cwd=ROOT,
                   capture_output=True, check=True)  # fmt: skip
    subprocess.run((sys.executable, "-m", "compileall", "-q", str(tree / "hooks")), check=True)
    return ["env", f"PYTHONPATH={tree / 'hooks'}", *mab()]


def profile(path: Path, env: dict[str, str], salted: Callable[[], str]) -> str:
    """One gate run in this process under cProfile: the fixed cost that is mab-hook's own."""
    from mab_hook import cli  # noqa: PLC0415 - only when profiling

    salted()
    os.chdir(path)
    os.environ.clear()
    os.environ.update(env)
    profiler = cProfile.Profile()
    with contextlib.redirect_stdout(io.StringIO()):
        profiler.runcall(cli.main, ["--all", "--publish"])
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(25)
    return text.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="also profile one gate run of each")
    parser.add_argument("--baseline", metavar="REV", help="also time mab-hook as it was at REV, in turns")
    parser.add_argument("--only", choices=("voting-app", "otel-demo"), help="one of the two repositories")
    args = parser.parse_args()
    baseline = baseline_command(args.baseline) if args.baseline else None
    as_installed()
    env = {**lab_env(), "PYTHONDONTWRITEBYTECODE": os.environ.get("PYTHONDONTWRITEBYTECODE", "")}
    base = f"{env['MAB_LAB_REGISTRY']}/{env['MAB_LAB_BASE_IMAGE']}"
    work = fresh(WORK / "real-pushes")
    print("### Real repositories' pushes: the gate against `docker buildx bake --push` (3 platforms)\n")
    print("| repository | images | mab-hook | bake --push | ratio | mab-hook runs (s) | bake runs (s) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    found, baselines = [], []
    for label, shape in (("voting-app", voting_app), ("otel-demo", otel_demo)):
        if args.only and label != args.only:
            continue
        files, services = shape(base)
        registry = f"{env['MAB_LAB_REGISTRY']}/bench-{label}-{uuid.uuid4().hex[:6]}"
        path = work / label
        repository(path, files, registry, env)
        salted = salting(path, files, env)
        salted()
        timed(mab("--all", "--publish"), path, env)  # the engine's cache of the base, as a team's has it
        side = Side(path, env, salted, partial(by_hand, registry, services))
        hook, then, hand = rounds(side, args.rounds, baseline)
        print(f"| {label} | {len(services)} | {median(hook):.2f} s | {median(hand):.2f} s | "
              f"{median(hook) / median(hand):.2f}x | {seconds(hook)} | {seconds(hand)} |")  # fmt: skip
        found.append((label, hook, path, salted))
        if then:
            baselines.append((label, then, hook, hand))
    if baselines:
        print(f"\nThe same rounds with mab-hook as it was at {args.baseline}, in the same turns:\n")
        print("| repository | then | now | now / then | then / bake | then runs (s) |")
        print("| --- | --- | --- | --- | --- | --- |")
        for label, then, hook, hand in baselines:
            ratio, theirs = median(hook) / median(then), median(then) / median(hand)
            print(f"| {label} | {median(then):.2f} s | {median(hook):.2f} s | {ratio:.2f}x | {theirs:.2f}x "
                  f"| {seconds(then)} |")  # fmt: skip
    print("\nWhere mab-hook's time goes (medians, from its output as it came):\n")
    for label, hook, _path, _salted in found:
        print(f"- {label}: {where(hook)}")
    for label, then, _hook, _hand in baselines:
        print(f"- {label} at {args.baseline}: {where(then)}")
    if args.profile:
        for label, _hook, path, salted in found:
            print(f"\n{label}, one gate run under cProfile (cumulative, top 25):\n```")
            print(profile(path, env, salted))
            print("```")
    return 0


if __name__ == "__main__":
    sys.exit(main())
