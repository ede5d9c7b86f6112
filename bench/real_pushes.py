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
in this process under cProfile: what of the fixed cost is mab-hook's own. With
--public-staging, the gate also runs in a copy whose `staging` is the registry itself (uploads
wait in the public repositories, under their `mab-` tags: publishing carries nothing across);
with --baseline REV, mab-hook as it was at REV, in the same rounds. Both sides push to a
registry of the bench's own that keeps everything in memory (common.memory_registry: the lab's
distribution 2.8 answers 500 to reads racing the docker driver's pushes, and the retries cost
seconds at random); --lab-registry pushes to the lab's instead.
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
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import NamedTuple

from build_cost import PLATFORMS, Run, median, seconds, timed, where
from common import ROOT, WORK, as_installed, forget_images, fresh, git, lab_env, mab, memory_registry

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


def repository(path: Path, files: Mapping[str, str], registry: str, env: dict[str, str],
               staging: str | None = None) -> None:  # fmt: skip
    path.mkdir(parents=True)
    config = (f'[tool.multiarch]\nplatforms = {json.dumps(PLATFORMS)}\nregistry = "{registry}"\npush = true\n'
              'compose = "compose.yaml"\n' + (f'staging = "{staging}"\n' if staging else ""))  # fmt: skip
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


class Gate(NamedTuple):
    """One way of running the gate in the rounds: its command, in a repository of its own."""

    name: str
    command: list[str]
    path: Path
    salted: Callable[[], str]


def rounds(gates: Sequence[Gate], side: Side, count: int) -> tuple[dict[str, list[Run]], list[Run]]:
    """Each round: every gate on a change of its own, then bake by hand."""
    runs: dict[str, list[Run]] = {gate.name: [] for gate in gates}
    hand = []
    for _ in range(count):
        for gate in gates:
            gate.salted()
            run = timed([*gate.command, "--all", "--publish"], gate.path, side.env)
            runs[gate.name].append(run._replace(retried=retried(gate.path, side.env)))
        hand.append(timed(side.by_hand(side.salted()), side.path, side.env, attempts=5))
    return runs, hand


def retried(path: Path, env: dict[str, str]) -> bool:
    """Whether the gate's run of HEAD tried an upload again: an image's log holds a second bake."""
    logs = path / ".git" / "mab-hook" / "logs" / git(path, "rev-parse", "HEAD", env=env).strip()[:12]
    return any(log.read_text().count("load local bake definitions") > 1 for log in logs.glob("*.log"))


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
    parser.add_argument("--public-staging", action="store_true",
                        help="also time the gate with `staging` set to the registry itself")  # fmt: skip
    parser.add_argument("--only", choices=("voting-app", "otel-demo"), help="one of the two repositories")
    parser.add_argument("--lab-registry", action="store_true",
                        help="push to the lab's registry, not one of the bench's own")  # fmt: skip
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        pushed_to = None if args.lab_registry else stack.enter_context(memory_registry())
        return measured(args, pushed_to)


def measured(args: argparse.Namespace, pushed_to: str | None) -> int:
    baseline = baseline_command(args.baseline) if args.baseline else None
    as_installed()
    env = {**lab_env(), "PYTHONDONTWRITEBYTECODE": os.environ.get("PYTHONDONTWRITEBYTECODE", "")}
    base = f"{env['MAB_LAB_REGISTRY']}/{env['MAB_LAB_BASE_IMAGE']}"
    work = fresh(WORK / "real-pushes")
    found: list[tuple[str, int, dict[str, list[Run]], list[Run], Gate]] = []
    for label, shape in (("voting-app", voting_app), ("otel-demo", otel_demo)):
        if args.only and label != args.only:
            continue
        files, services = shape(base)
        registry = f"{pushed_to or env['MAB_LAB_REGISTRY']}/bench-{label}-{uuid.uuid4().hex[:6]}"
        registries = [registry]
        gates = [made(work / label, Shape(files, registry, env), "mab-hook", mab())]
        if baseline is not None:
            gates.append(Gate(f"mab-hook at {args.baseline}", baseline, gates[0].path, gates[0].salted))
        if args.public_staging:
            public = f"{pushed_to or env['MAB_LAB_REGISTRY']}/bench-{label}-{uuid.uuid4().hex[:6]}"
            registries.append(public)
            shaped = Shape(files, public, env)
            gates.append(made(work / f"{label}-public", shaped, "staging in public", mab(), staging=public))
        side = Side(gates[0].path, env, gates[0].salted, partial(by_hand, registry, services))
        try:
            runs, hand = rounds(gates, side, args.rounds)
        finally:
            forget_images(env, [f"{prefix}/" for prefix in registries])
        found.append((label, len(services), runs, hand, gates[0]))
    print(report(found))
    if args.profile:
        for label, _count, _runs, _hand, gate in found:
            print(f"\n{label}, one gate run under cProfile (cumulative, top 25):\n```")
            print(profile(gate.path, env, gate.salted))
            print("```")
    return 0


class Shape(NamedTuple):
    files: Mapping[str, str]
    registry: str
    env: dict[str, str]


def made(path: Path, shape: Shape, name: str, command: list[str], *, staging: str | None = None) -> Gate:
    """A repository for one way of running the gate, pushed once (the engine's cache of the
    base, as a team's has it)."""
    repository(path, shape.files, shape.registry, shape.env, staging)
    salted = salting(path, shape.files, shape.env)
    salted()
    timed([*command, "--all", "--publish"], path, shape.env)
    return Gate(name, command, path, salted)


def report(found: Sequence[tuple[str, int, dict[str, list[Run]], list[Run], Gate]]) -> str:
    lines = [
        "### Real repositories' pushes: the gate against `docker buildx bake --push` (3 platforms)\n",
        "| repository | images | gate | gate time | bake --push | ratio | ratio, first tries | gate runs (s) "
        "| bake runs (s) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for label, count, runs, hand in ((f[0], f[1], f[2], f[3]) for f in found):
        for name, timed_runs in runs.items():
            ratio = median(timed_runs) / median(hand)
            lines.append(f"| {label} | {count} | {name} | {median(timed_runs):.2f} s | {median(hand):.2f} s "
                         f"| {ratio:.2f}x | {first_tries(timed_runs, hand)} | {seconds(timed_runs)} "
                         f"| {seconds(hand)} |")  # fmt: skip
    lines.append("\n`*`: a run that tried again (distribution 2.8's filesystem storage answers 500 to "
                 "reads racing the docker driver's pushes: bake by hand is run again whole, the gate tries "
                 "the image again); "
                 "\"first tries\": the medians of the runs that did not.")  # fmt: skip
    lines.append("\nWhere the gate's time goes (medians, from its output as it came):\n")
    for label, _count, runs, _hand, _gate in found:
        lines += [f"- {label}, {name}: {where(timed_runs)}" for name, timed_runs in runs.items()]
    return "\n".join(lines)


def first_tries(gate: Sequence[Run], hand: Sequence[Run]) -> str:
    """The ratio of the medians of the runs neither side had to try again."""
    clean_gate, clean_hand = [r for r in gate if not r.retried], [r for r in hand if not r.retried]
    if not clean_gate or not clean_hand:
        return "-"
    return f"{median(clean_gate) / median(clean_hand):.2f}x ({len(clean_gate)} and {len(clean_hand)} runs)"


if __name__ == "__main__":
    sys.exit(main())
