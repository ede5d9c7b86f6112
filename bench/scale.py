"""Benchmark: planning cost as the repository grows, for the same kinds of push.

    python bench/scale.py [--sizes 1000,2000,5000] [--runs 5] [--profile] [--baseline REV]

For each size, a monorepo of that many images and 100 files per image (bench/generate.py, the
same seed; a push branch of 50 commits touching 5 files per 10 images), and three cases timed
in turns across every size, so that a slow spell of the machine slows them all alike:

- one commit: `mab-hook --dry-run --json --from push~1 --to push` (10-50 files), with the cache
  earlier pushes leave (every image planned at `main`, as bench/planning.py primes it, then the
  push before this one: of `push~1`);
- heavy: the whole push branch, `--from main --to push` (50 commits), with that cache;
- same change: one commit on `push~1` touching 10 files at every size (`same`, made here with
  the same seed), with that cache: the one-commit push above touches 0.5% of the files, so 10 at
  1,000 images and 50 at 5,000; this one is the same small change in a bigger repository;
- first: the one-commit push with nothing under .git/mab-hook.

Prints Markdown: medians and peak memory (max RSS) per size, each size's ratio to the smallest,
and issue 31's targets. `--profile`: where the one-commit push's time goes at the largest size.
`--baseline REV`: the same cases with mab-hook as it was at REV (a worktree first on PYTHONPATH,
its own primed cache), in the same turns, and the ratios now / then.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from common import WORK, Timing, as_installed, as_of, mab, measure, ms
from planning import prime, profile, restore

ONE = ("--dry-run", "--json", "--from", "push~1", "--to", "push")
HEAVY = ("--dry-run", "--json", "--from", "main", "--to", "push")
SAME = ("--dry-run", "--json", "--from", "push~1", "--to", "same")
SAME_FILES = 10  # what the one-commit push touches at 1,000 images
PREVIOUS = ("--dry-run", "--from", "push~2", "--to", "push~1")  # the push before the one-commit push
FILES_PER_IMAGE = 100
TOUCHED_PER_IMAGE = 0.5  # files the push branch touches, per image (500 at 1,000 images)
# Issue 31's targets, at the largest size against the smallest.
ONE_TIME, ONE_MEMORY, HEAVY_SECONDS, FIRST_SECONDS = 1.3, 1.5, 0.8, 2.0
CASES = ("one commit", "same change", "heavy", "first")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000,2000,5000", help="images per repository, comma-separated")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="also print where the time goes")
    parser.add_argument("--baseline", metavar="REV", help="also time mab-hook as it was at REV, in turns")
    parser.add_argument("--make-same", metavar="DIR", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.make_same:
        same_change(args.make_same)
        return 0
    sizes = [int(size) for size in args.sizes.split(",")]
    as_installed()
    repos = {size: repository(size) for size in sizes}
    for repo in repos.values():
        # In a process of its own: a child's peak memory counts its parent's at the fork.
        subprocess.run((sys.executable, __file__, "--make-same", str(repo)), check=True)
    primed = {size: primed_for(repo, mab(), "cache-primed") for size, repo in repos.items()}
    versions = {"": []} if not args.baseline else {"": [], "baseline ": as_of(args.baseline)}
    then = {size: primed_for(repo, [*versions[v], *mab()], "cache-primed-baseline")
            for size, repo in repos.items() for v in versions if v}  # fmt: skip
    timings: dict[tuple[int, str], list[Timing]] = {}
    for _ in range(args.runs):
        for size, repo in repos.items():
            for version, prefix in versions.items():
                kept = then[size] if version else primed[size]
                for name, (cmd, before) in cases(repo, kept).items():
                    before()
                    timed = measure([*prefix, *cmd], cwd=repo, runs=1)
                    timings.setdefault((size, version + name), []).append(timed)
    found = {key: merged(runs) for key, runs in timings.items()}
    print(report(sizes, found))
    if args.baseline:
        print(compared(sizes, found, args.baseline))
    if args.profile:
        largest = max(sizes)
        restore(primed[largest][1], cache_of(repos[largest]))
        print(f"\nWhere the one-commit push's time goes at {largest} images (cProfile, cumulative):\n```")
        print(profile(repos[largest], ONE, top=25))
        print("```")
    return 0


def compared(sizes: Sequence[int], timings: dict[tuple[int, str], Timing], rev: str) -> str:
    lines = [
        f"\nThe same cases with mab-hook as it was at {rev}, in the same turns:\n",
        "| images | case | then | now | now / then | memory then | memory now |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for size in sizes:
        for name in CASES:
            now, then = timings[size, name], timings[size, "baseline " + name]
            lines.append(
                f"| {size:,} | {name} | {ms(then.median)} | {ms(now.median)} "
                f"| {now.median / then.median:.2f}x | {then.peak_kb / 1024:.0f} MiB "
                f"| {now.peak_kb / 1024:.0f} MiB |"
            )
    return "\n".join(lines)


def repository(images: int) -> Path:
    files = images * FILES_PER_IMAGE
    repo = WORK / f"scale-{images}-{files}"
    if not (repo / ".git").exists():
        touched = str(int(images * TOUCHED_PER_IMAGE))
        generate = Path(__file__).with_name("generate.py")
        sizes = ("--images", str(images), "--files", str(files), "--touched", touched)
        made = (sys.executable, str(generate), str(repo), *sizes)
        subprocess.run(made, check=True, stdout=subprocess.DEVNULL)
    return repo


def same_change(repo: Path) -> None:
    """Branch `same`: one commit on `push~1` that appends a line to SAME_FILES of its files,
    drawn with a fixed seed (made once; git plumbing, in an index of its own)."""

    def git(*args: str, env: dict[str, str] | None = None) -> str:
        done = subprocess.run(("git", *args), cwd=repo, env=env, capture_output=True, text=True, check=True)
        return done.stdout.strip()

    known = ("git", "rev-parse", "-q", "--verify", "same")
    if subprocess.run(known, cwd=repo, capture_output=True, check=False).returncode == 0:
        return
    paths = git("ls-tree", "-r", "--name-only", "push~1").splitlines()
    chosen = random.Random(31).sample(sorted(paths), SAME_FILES)
    with tempfile.TemporaryDirectory() as scratch:
        env = {**os.environ, "GIT_INDEX_FILE": str(Path(scratch) / "index")}
        git("read-tree", "push~1", env=env)
        for path in chosen:
            text = git("show", f"push~1:{path}") + "\n# the same change\n"
            blob = subprocess.run(("git", "hash-object", "-w", "--stdin"), cwd=repo, input=text,
                                  capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
            git("update-index", "--cacheinfo", f"100644,{blob},{path}", env=env)
        tree = git("write-tree", env=env)
    stamp = {**os.environ, "GIT_AUTHOR_DATE": "1700000000 +0000", "GIT_COMMITTER_DATE": "1700000000 +0000",
             "GIT_AUTHOR_NAME": "Bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
             "GIT_COMMITTER_NAME": "Bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid"}  # fmt: skip
    commit = git("commit-tree", tree, "-p", "push~1", "-m", "the same change", env=stamp)
    git("update-ref", "refs/heads/same", commit)


def cache_of(repo: Path) -> Path:
    return repo / ".git" / "mab-hook" / "cache"


def primed_for(repo: Path, command: Sequence[str], name: str) -> tuple[Path, Path]:
    """The caches earlier pushes leave: every image planned at `main` (before the heavy push,
    the whole branch at once), and then the push of `push~1` (before the one-commit push)."""
    at_main = prime(repo, cache_of(repo), command, name)
    restore(at_main, cache_of(repo))
    measure([*command, *PREVIOUS], cwd=repo, runs=1)
    before_one = at_main.with_name(name + "-one")
    shutil.rmtree(before_one, ignore_errors=True)
    shutil.copytree(cache_of(repo), before_one)
    return at_main, before_one


def cases(repo: Path, primed: tuple[Path, Path]) -> dict[str, tuple[Sequence[str], Callable[[], None]]]:
    cache = cache_of(repo)
    at_main, before_one = primed
    return {
        "one commit": (mab(*ONE), lambda: restore(before_one, cache)),
        "same change": (mab(*SAME), lambda: restore(before_one, cache)),
        "heavy": (mab(*HEAVY), lambda: restore(at_main, cache)),
        "first": (mab(*ONE), lambda: shutil.rmtree(cache, ignore_errors=True)),
    }


def merged(found: Sequence[Timing]) -> Timing:
    runs = sorted(t.median for t in found)
    return Timing(runs[len(runs) // 2], tuple(t.median for t in found), max(t.peak_kb for t in found))


def report(sizes: Sequence[int], timings: dict[tuple[int, str], Timing]) -> str:
    smallest, largest = min(sizes), max(sizes)
    lines = [
        f"### Planning as the repository grows: {', '.join(f'{s:,}' for s in sizes)} images "
        f"({FILES_PER_IMAGE} files each)\n",
        "| images | files | case | median | peak memory | time / smallest | memory / smallest | runs |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for size in sizes:
        for name in CASES:
            t, base = timings[size, name], timings[smallest, name]
            runs = ", ".join(ms(r) for r in t.runs)
            mib = f"{t.peak_kb / 1024:.0f} MiB"
            lines.append(
                f"| {size:,} | {size * FILES_PER_IMAGE:,} | {name} | {ms(t.median)} | {mib} "
                f"| {t.median / base.median:.2f}x | {t.peak_kb / base.peak_kb:.2f}x | {runs} |"
            )
    one, one_base = timings[largest, "one commit"], timings[smallest, "one commit"]
    checks = (
        (f"one commit, time <= {ONE_TIME}x", one.median / one_base.median, ONE_TIME, "x"),
        (f"one commit, memory <= {ONE_MEMORY}x", one.peak_kb / one_base.peak_kb, ONE_MEMORY, "x"),
        (f"heavy <= {HEAVY_SECONDS} s", timings[largest, "heavy"].median, HEAVY_SECONDS, " s"),
        (f"first run <= {FIRST_SECONDS} s", timings[largest, "first"].median, FIRST_SECONDS, " s"),
    )
    lines.append(f"\nIssue 31's targets at {largest:,} images against {smallest:,}:")
    lines += [
        f"- {what}: {value:.2f}{unit}, {'met' if value <= limit else 'MISSED'}"
        for what, value, limit, unit in checks
    ]
    same = timings[largest, "same change"].median / timings[smallest, "same change"].median
    lines.append(f"- (not a target) the same {SAME_FILES}-file change, time: {same:.2f}x")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
