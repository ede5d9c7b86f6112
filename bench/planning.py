"""Benchmark 1: planning a push on a large monorepo, against `git diff` on the same range.

    python bench/planning.py [--images 1000] [--files 100000] [--runs 5] [--profile]

Generates (once, deterministically) 1,000 images and 100,000 files with a push of 50 commits
touching 500 files, then times `mab-hook --dry-run --from main --to push` against the floor,
`git diff --name-status -M main push`, and interpreter start-up. Prints a Markdown section.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import os
import pstats
import shutil
import statistics
import subprocess
import sys

from common import WORK, Timing, git, mab, measure, ms

TARGET_SECONDS = 1.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="also print where the time goes")
    args = parser.parse_args()
    repo = WORK / f"monorepo-{args.images}-{args.files}"
    if not (repo / ".git").exists():
        subprocess.run((sys.executable, os.path.join(os.path.dirname(__file__), "generate.py"), str(repo),
                        "--images", str(args.images), "--files", str(args.files)), check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
    changed = len(git(repo, "diff", "--name-only", "main", "push").splitlines())
    floor = measure(("git", "diff", "--name-status", "-M", "main", "push"), cwd=repo, runs=args.runs)
    start = measure((sys.executable, "-c", "pass"), cwd=repo, runs=args.runs)
    imports = measure((sys.executable, "-c", "import mab_hook.cli"), cwd=repo, runs=args.runs)
    command = mab("--dry-run", "--json", "--from", "main", "--to", "push")
    cold_runs = []
    for _ in range(args.runs):  # no planning cache: every Dockerfile the push comes near is parsed
        shutil.rmtree(repo / ".git" / "mab-hook" / "cache", ignore_errors=True)
        cold_runs.append(measure(command, cwd=repo, runs=1))
    cold = Timing(statistics.median(t.median for t in cold_runs), tuple(t.median for t in cold_runs),
                  max(t.peak_kb for t in cold_runs))  # fmt: skip
    plan = measure(command, cwd=repo, runs=args.runs)  # the cache from the runs above
    budget = 3 * floor.median + imports.median
    print(f"### Planning: {args.images} images, {args.files} files, 50 commits touching {changed} files\n")
    print("| what | median | runs |")
    print("| --- | --- | --- |")
    rows = (
        ("`mab-hook --dry-run`, first run (no planning cache)", cold),
        ("`mab-hook --dry-run`, later runs (planning cache)", plan),
        ("floor: `git diff --name-status -M`", floor),
        ("Python start-up (`python -c pass`)", start),
        ("start-up with imports (`import mab_hook.cli`)", imports),
    )
    for label, timing in rows:
        print(f"| {label} | {ms(timing.median)} | {', '.join(ms(t) for t in timing.runs)} |")
    verdict = "met" if cold.median < TARGET_SECONDS else "MISSED"
    ratios = f"{cold.median / floor.median:.0f}x first, {plan.median / floor.median:.0f}x later"
    print(f"\n- ratio to the floor: {ratios}; under {TARGET_SECONDS:.0f} s: {verdict}")
    print(
        f"- 3x floor + start-up with imports = {ms(budget)}: {'met' if plan.median <= budget else 'missed'}"
    )
    print(f"- peak memory (max RSS): {max(cold.peak_kb, plan.peak_kb) / 1024:.0f} MiB")
    if args.profile:
        print("\nWhere the time goes (cProfile, cumulative, top 12):\n```")
        print(profile(repo))
        print("```")
    return 0


def profile(repo: os.PathLike[str]) -> str:
    from mab_hook import cli  # noqa: PLC0415 - only when profiling

    os.chdir(repo)
    profiler = cProfile.Profile()
    with contextlib.redirect_stdout(io.StringIO()):
        profiler.runcall(cli.main, ["--dry-run", "--json", "--from", "main", "--to", "push"])
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(12)
    return "\n".join(line for line in text.getvalue().splitlines() if line.strip())[:4000]


if __name__ == "__main__":
    sys.exit(main())
