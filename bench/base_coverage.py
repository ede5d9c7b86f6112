"""What base coverage costs a push: looking up which platforms each base has.

    python bench/base_coverage.py [--runs 7]        (needs the lab: bash lab/up)

Times one base's look-up as the gate makes it (in-process, `coverage.Sources`): from the engine's
image store (the engine API's image inspect over its socket; for a new digest, the registry it
was pulled from, by that digest, or for an image built here only, its export read for its
manifests) and from the registry's API (a manifest GET, a config GET when new); each cold (no
answer kept) and warm (kept by digest, the usual push). Beside them, the
whole one-image push it is part of (push = true, 3 platforms, a salted RUN step, so each run
really builds). The look-ups run beside readiness, so they add at most their own time.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from common import WORK, Timing, as_installed, fresh, git, lab_env, mab, measure, ms

from mab_hook import coverage
from mab_hook.coverage import Found, Known, Sources
from mab_hook.readiness.location import engine_socket
from mab_hook.registry import Registry

TARGET = 0.05  # of a one-image push


def timed(lookup: Callable[[], object], runs: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        found = lookup()
        times.append(time.perf_counter() - started)
        if not isinstance(found, Found):
            raise SystemExit(f"no answer: {found}")
    return statistics.median(times), times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    as_installed()
    env = lab_env()
    work = fresh(WORK / "base-coverage")
    plain = f"{env['MAB_LAB_REGISTRY']}/bench-coverage/plain:{uuid.uuid4().hex[:8]}"
    dockerfile = f"FROM {env['MAB_LAB_BASE_IMAGE']}\nRUN echo {uuid.uuid4().hex}\n"
    build = ["docker", "buildx", "build", "--platform", "linux/amd64", "--provenance=false", "--push"]
    build += ["-t", plain, "-"]
    subprocess.run(build, input=dockerfile, env=env, text=True, capture_output=True, check=True)
    subprocess.run(("docker", "image", "rm", plain), env=env, capture_output=True, check=True)
    local = env["MAB_LAB_BASE_IMAGE"]  # in the engine's store, and pushed to the lab's registry
    built_here = f"mab-bench/local-only:{uuid.uuid4().hex[:8]}"  # in the engine's store only
    build = [
        "docker",
        "buildx",
        "build",
        "--platform",
        "linux/amd64,linux/arm64,linux/arm/v7",
        "-t",
        built_here,
        "-",
    ]
    subprocess.run(build, input=dockerfile, env=env, text=True, capture_output=True, check=True)
    kept = work / "bases.json"

    def look(ref: str, known: Path | None) -> Callable[[], object]:
        registry = Registry(env, timeout=coverage.BASE_TIMEOUT)
        return lambda: Sources(env, registry, Known(known), socket=engine_socket(env))(ref)

    primed = Known(kept)  # what a usual push finds kept
    for ref in (local, plain, built_here):
        Sources(env, Registry(env), primed, socket=engine_socket(env))(ref)
    primed.save()
    rows = [
        (
            "engine's image store, new digest, pulled (inspect; the registry by digest)",
            timed(look(local, None), args.runs),
        ),
        (
            "engine's image store, new digest, local only (inspect; its export read)",
            timed(look(built_here, None), args.runs),
        ),
        ("engine's image store, digest kept (inspect)", timed(look(local, kept), args.runs)),
        ("registry, new digest (manifest + config)", timed(look(plain, None), args.runs)),
        ("registry, digest kept (manifest)", timed(look(plain, kept), args.runs)),
    ]
    push = one_image_push(work / "repo", env, args.runs)
    subprocess.run(("docker", "image", "rm", built_here), env=env, capture_output=True, check=False)
    print("### Base coverage: one base looked up, against a one-image push (the lab)\n")
    print("| look-up | median | share of the push | target | runs |")
    print("| --- | --- | --- | --- | --- |")
    for label, (median, runs) in rows:
        share = median / push.median
        met = "met" if share <= TARGET else "missed"
        shown = ", ".join(ms(t) for t in runs)
        print(f"| {label} | {ms(median)} | {share:.1%} | <= {TARGET:.0%} ({met}) | {shown} |")
    print(
        f"\n- the one-image push (3 platforms, push = true, a RUN step that runs): {push.median:.2f} s "
        f"(runs: {', '.join(f'{t:.2f}' for t in push.runs)}); its look-ups run beside readiness"
    )
    print("- a push with nothing to build looks nothing up: the check runs only before a build")
    return 0


def one_image_push(repo: Path, env: dict[str, str], runs: int) -> Timing:
    repo.mkdir()
    registry = f"{env['MAB_LAB_REGISTRY']}/bench-coverage"
    (repo / "app").mkdir()
    (repo / "pyproject.toml").write_text(
        '[tool.multiarch]\nplatforms = ["linux/amd64", "linux/arm64", "linux/arm/v7"]\n'
        f'registry = "{registry}"\npush = true\n[tool.multiarch.images.app]\ncontext = "app"\n'
    )
    git(repo, "init", "-q", "-b", "main", env=env)
    times = []
    for _ in range(runs):
        salted = f"FROM {env['MAB_LAB_BASE_IMAGE']}\nRUN echo {uuid.uuid4().hex}\n"
        (repo / "app" / "Dockerfile").write_text(salted)
        git(repo, "add", "-A", env=env)
        git(repo, "commit", "-q", "-m", "salt", env=env)
        times.append(measure(mab("--all", "--publish"), cwd=repo, env=env, runs=1).median)
    return Timing(statistics.median(times), tuple(times), 0)


if __name__ == "__main__":
    sys.exit(main())
