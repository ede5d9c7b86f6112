"""Benchmarks 2 and 4: what a push costs when there is nothing to build, and readiness alone.

    python bench/hook_cost.py [--runs 5]        (needs the lab: bash lab/up)

Times the whole hook (`mab-hook --from A --to B`, a fresh process each run, readiness checks
included wherever the hook runs them) for a push that touches only docs, and for a push of
content already built (every image skipped by its input digest, push = true, so each image
costs one registry look-up and a remote tag); then `mab-hook doctor` on the ready lab host.
"""

from __future__ import annotations

import argparse
import shutil
import sys

from common import ROOT, WORK, as_installed, fresh, git, lab_env, mab, measure, ms

TARGET_SECONDS = 0.5


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    as_installed()
    env = lab_env()
    repo = fresh(WORK / "hook-cost") / "sample"
    shutil.copytree(ROOT / "sample-repo", repo)
    registry = f"{env['MAB_LAB_REGISTRY']}/bench-hook-cost"
    for path in (p for p in repo.rglob("*") if p.is_file()):  # the config and the FROM lines
        path.write_text(path.read_text().replace("127.0.0.1:5000/sample", registry)
                        .replace('"mab-lab/busybox"', f'"{env["MAB_LAB_BASE_IMAGE"]}"'))  # fmt: skip
    git(repo, "init", "-q", "-b", "main", env=env)
    git(repo, "add", "-A", env=env)
    git(repo, "commit", "-q", "-m", "sample", env=env)
    built = git(repo, "rev-parse", "HEAD", env=env)
    measure(mab("--all", "--publish"), cwd=repo, env=env, runs=1)  # build and push everything once
    (repo / "docs" / "index.md").write_text("More docs.\n")
    git(repo, "commit", "-q", "-am", "docs only", env=env)
    docs = measure(mab("--from", built, "--to", "HEAD"), cwd=repo, env=env, runs=args.runs)
    git(repo, "reset", "-q", "--hard", built, env=env)
    git(repo, "commit", "-q", "--amend", "-m", "the same content again", env=env)
    repeat = measure(mab("--all", "--publish"), cwd=repo, env=env, runs=args.runs)
    doctor = measure(mab("doctor"), cwd=repo, env=env, runs=args.runs)
    print("### Pushes with nothing to build, and readiness alone (the lab, sample-repo/)\n")
    print("| what | median | runs | target |")
    print("| --- | --- | --- | --- |")
    rows = (
        ("docs-only push (whole hook)", docs, f"< {TARGET_SECONDS} s"),
        ("repeat push of built content, 3 images, push = true (whole hook; no readiness needed)", repeat,
         f"< {TARGET_SECONDS} s"),
        ("`mab-hook doctor`, 3 platforms + registry, ready host", doctor, "little"),
    )  # fmt: skip
    for label, timing, target in rows:
        print(f"| {label} | {ms(timing.median)} | {', '.join(ms(t) for t in timing.runs)} | {target} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
