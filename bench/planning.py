"""Benchmark 1: planning a push on a large monorepo, against `git diff` on the same range.

    python bench/planning.py [--images 1000] [--files 100000] [--runs 5] [--profile]

Generates (once, deterministically) 1,000 images and 100,000 files with a push of 50 commits
touching 500 files, then times `mab-hook --dry-run --from main --to push` against the floor,
`git diff --name-status -M main push`, and interpreter start-up. Three cases: a first run (no
cache under .git/mab-hook), the usual push (the cache holds what earlier runs learnt about the
commit the push starts from, `main`), and the same push planned again. Prints Markdown.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import os
import pstats
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from common import ROOT, WORK, as_installed, as_of, git, interleaved, mab, measure, ms

TARGET_SECONDS = 1.0
PUSH = ("--dry-run", "--from", "main", "--to", "push")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--profile", action="store_true", help="also print where the time goes")
    parser.add_argument("--baseline", metavar="REV", help="also time mab-hook as it was at REV, in turns")
    args = parser.parse_args()
    repo = WORK / f"monorepo-{args.images}-{args.files}"
    if not (repo / ".git").exists():
        subprocess.run((sys.executable, os.path.join(os.path.dirname(__file__), "generate.py"), str(repo),
                        "--images", str(args.images), "--files", str(args.files)), check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
    as_installed()
    cache = repo / ".git" / "mab-hook" / "cache"
    changed = len(git(repo, "diff", "--name-only", "main", "push").splitlines())
    primed = prime(repo, cache)
    cases = {  # measured in turns, so that a slow spell of the machine slows them all alike
        "floor": (("git", "diff", "--name-status", "-M", "main", "push"), _nothing),
        "start": ((sys.executable, "-c", "pass"), _nothing),
        "imports": ((sys.executable, "-c", "import mab_hook.cli"), _nothing),
        "first": (mab(*PUSH), lambda: shutil.rmtree(cache, ignore_errors=True)),
        "usual": (mab(*PUSH), lambda: restore(primed, cache)),
        "again": (mab(*PUSH), _nothing),  # right after "usual": its cache
    }
    if args.baseline:
        cases.update(baseline_cases(repo, cache, args.baseline))
    timings = interleaved(cases, cwd=repo, runs=args.runs)
    floor, start, imports = timings["floor"], timings["start"], timings["imports"]
    first, usual, again = timings["first"], timings["usual"], timings["again"]
    print(f"### Planning: {args.images} images, {args.files} files, 50 commits touching {changed} files\n")
    print("| what | median | best | runs |")
    print("| --- | --- | --- | --- |")
    rows = (
        ("`mab-hook --dry-run`, first run (nothing under .git/mab-hook)", first),
        ("`mab-hook --dry-run`, the usual push (cache from earlier runs at `main`)", usual),
        ("`mab-hook --dry-run`, the same push again", again),
        ("floor: `git diff --name-status -M`", floor),
        ("Python start-up (`python -c pass`)", start),
        ("start-up with imports (`import mab_hook.cli`)", imports),
    )
    for label, timing in rows:
        runs = ", ".join(ms(t) for t in timing.runs)
        print(f"| {label} | {ms(timing.median)} | {ms(min(timing.runs))} | {runs} |")
    verdict = "met" if max(first.median, usual.median) < TARGET_SECONDS else "MISSED"
    ratios = ", ".join(f"{t.median / floor.median:.0f}x {name}" for name, t in
                       (("first", first), ("usual", usual), ("again", again)))  # fmt: skip
    print(f"\n- ratio to the floor: {ratios}; under {TARGET_SECONDS:.0f} s: {verdict}")
    for name, base in (("bare start-up", start), ("start-up with imports", imports)):
        budget = 3 * floor.median + base.median
        verdict = "met" if usual.median <= budget else "missed"
        print(f"- 3x floor + {name} = {ms(budget)}: {verdict} by the usual push")
    peak = max(first.peak_kb, usual.peak_kb, again.peak_kb)
    print(f"- peak memory (max RSS): {peak / 1024:.0f} MiB")
    if args.baseline:
        short = git(ROOT, "rev-parse", "--short", args.baseline)
        print(f"\nThe same cases with mab-hook as it was at {short}, in the same turns:\n")
        print("| what | then | now | now / then |")
        print("| --- | --- | --- | --- |")
        for name in ("first", "usual", "again"):
            then, now = timings[f"baseline {name}"], timings[name]
            print(f"| {name} | {ms(then.median)} | {ms(now.median)} | {now.median / then.median:.2f}x |")
    if args.profile:
        restore(primed, cache)
        print("\nWhere the time of the usual push goes (cProfile, cumulative, top 15):\n```")
        print(profile(repo))
        print("```")
    return 0


def _nothing() -> None:
    pass


def baseline_cases(repo: Path, cache: Path, rev: str) -> dict[str, tuple[list[str], Callable[[], None]]]:
    """The planning cases with mab-hook's code at `rev` (a worktree of this repository, first on
    PYTHONPATH), each with a cache primed by that code: caches of two versions do not mix."""
    prefix = as_of(rev)
    then = [*prefix, *mab(*PUSH)]
    primed = prime(repo, cache, [*prefix, *mab()], "cache-primed-baseline")
    return {
        "baseline first": (then, lambda: shutil.rmtree(cache, ignore_errors=True)),
        "baseline usual": (then, lambda: restore(primed, cache)),
        "baseline again": (then, _nothing),
    }


def prime(repo: Path, cache: Path, command: Sequence[str] | None = None, name: str = "cache-primed") -> Path:
    """The cache as earlier pushes leave it, kept aside to restore before each run: every
    image planned at `main`, and the index of which image names which built there (a push of
    `main` with the same files changed does that)."""
    command = list(command or mab())
    shutil.rmtree(cache, ignore_errors=True)
    measure([*command, "--dry-run", "--all", "--to", "main"], cwd=repo, runs=1)
    measure([*command, "--dry-run", "--from", "push", "--to", "main"], cwd=repo, runs=1)
    primed = cache.with_name(name)
    shutil.rmtree(primed, ignore_errors=True)
    shutil.copytree(cache, primed)
    return primed


def restore(primed: Path, cache: Path) -> None:
    shutil.rmtree(cache, ignore_errors=True)
    shutil.copytree(primed, cache)


def profile(repo: os.PathLike[str], args: Sequence[str] = PUSH, top: int = 15) -> str:
    """Where the time of `mab-hook ARGS` in `repo` goes, in this process (cProfile, cumulative)."""
    from mab_hook import cli  # noqa: PLC0415 - only when profiling

    os.chdir(repo)
    profiler = cProfile.Profile()
    with contextlib.redirect_stdout(io.StringIO()):
        profiler.runcall(cli.main, list(args))
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(top)
    return "\n".join(line for line in text.getvalue().splitlines() if line.strip())[:4000]


if __name__ == "__main__":
    sys.exit(main())
