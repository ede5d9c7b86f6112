"""Benchmark: from an accepted push to public tags (the second phase of publishing).

    python bench/publish_latency.py [--runs 7]        (needs the lab: bash lab/up)

sample-repo/ with a bare remote and mab-hook as its plain pre-push hook, every image uploaded
once (`mab-hook --all`). Each run pushes a commit to main that changes one image's file
(build time not counted: git returns only after the gate) and times from `git push` returning
to the publisher's record ending `published`: what a consumer of the registry waits. Then the
parts of it, each alone: the wait for git's end, a Python process importing mab-hook, the
remote's answer (`git ls-remote`), planning every image of the commit, and the tags themselves.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

from common import ROOT, WORK, as_installed, fresh, git, lab_env, mab, measure, ms

TARGET_SECONDS = 1.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    as_installed()
    env = lab_env()
    work = fresh(WORK / "publish-latency")
    repo, remote = work / "sample", work / "remote.git"
    shutil.copytree(ROOT / "sample-repo", repo)
    registry = f"{env['MAB_LAB_REGISTRY']}/bench-publish-{uuid.uuid4().hex[:6]}"
    for path in (p for p in repo.rglob("*") if p.is_file()):
        path.write_text(path.read_text().replace("127.0.0.1:5000/sample", registry)
                        .replace('"mab-lab/busybox"', f'"{env["MAB_LAB_BASE_IMAGE"]}"'))  # fmt: skip
    git(work, "init", "-q", "--bare", "-b", "main", str(remote), env=env)
    git(repo, "init", "-q", "-b", "main", env=env)
    git(repo, "remote", "add", "origin", str(remote), env=env)
    git(repo, "add", "-A", env=env)
    git(repo, "commit", "-q", "-m", "sample", env=env)
    git(repo, "push", "-q", "--no-verify", "origin", "main", env=env)
    measure(mab("--all"), cwd=repo, env=env, runs=1)  # every image uploaded (staged) once
    hook = repo / ".git" / "hooks" / "pre-push"
    hook.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m mab_hook "$@"\n')
    hook.chmod(0o755)
    target = repo / "proto" / "api.proto"  # watched by api: api rebuilds
    latencies, pushes = [], []
    for run in range(args.runs):
        target.write_text(f"run {run} {uuid.uuid4().hex}\n")  # a build of one image, not timed
        git(repo, "commit", "-q", "-am", f"run {run}", env=env)
        started = time.perf_counter()
        pushed = subprocess.run(("git", "push", "-q", "origin", "main"), cwd=repo, env=env,
                                capture_output=True, text=True, check=False)  # fmt: skip
        returned = time.perf_counter()
        if pushed.returncode != 0:
            raise SystemExit(pushed.stdout + pushed.stderr)
        state = wait_published(repo)
        latencies.append(time.perf_counter() - returned)
        pushes.append(returned - started)
        if state != "published":
            raise SystemExit(f"run {run}: the publish ended {state!r}")
    head = git(repo, "rev-parse", "HEAD", env=env)
    python = measure((sys.executable, "-c", "import mab_hook.cli, mab_hook.publisher"), cwd=repo, env=env)
    ls_remote = measure(("git", "ls-remote", "--", "origin", "refs/heads/main"), cwd=repo, env=env)
    planning = measure(mab("--all", "--dry-run", "--to", head), cwd=repo, env=env)
    tagging = measure(mab("--all", "--publish"), cwd=repo, env=env)  # nothing to build: the tags
    print("### From an accepted push to public tags (the lab, sample-repo/, a plain pre-push hook)\n")
    print("| what | median | runs | target |")
    print("| --- | --- | --- | --- |")
    print(f"| public tags after `git push` returned | {ms(statistics.median(latencies))} | "
          f"{', '.join(ms(t) for t in latencies)} | < {TARGET_SECONDS:g} s |")  # fmt: skip
    print(f"| the `git push` itself (the gate builds one image) | {ms(statistics.median(pushes))} | "
          f"{', '.join(ms(t) for t in pushes)} | |")  # fmt: skip
    print("\nWhere the time goes: the publisher starts (a Python process importing mab-hook: "
          f"{ms(python.median)} alone) while git still sends the pack; once git has ended (polled every "
          f"20 ms) it asks the remote ({ms(ls_remote.median)} alone), plans every image of the commit "
          f"(a whole `--dry-run --all` takes {ms(planning.median)}, process included), checks each "
          "staging reference and puts the tags (a whole `--all --publish` with nothing to build, "
          f"process and planning included: {ms(tagging.median)}).")  # fmt: skip
    return 0


def wait_published(repo: Path, timeout: float = 120.0) -> str:
    """The newest publish record's state, once it ended."""
    deadline = time.monotonic() + timeout
    directory = repo / ".git" / "mab-hook" / "publish"
    while time.monotonic() < deadline:
        records = sorted(directory.glob("*.json"))
        if records:
            record = json.loads(records[-1].read_text())
            if record["state"] != "waiting" or record["said"]:
                return str(record["state"])
        time.sleep(0.005)
    raise SystemExit("no publish ended in time")


if __name__ == "__main__":
    sys.exit(main())
