"""What the check of what was built costs: reading each platform's upload back before publishing.

    python bench/upload_check.py [--runs 5]        (needs the lab: bash lab/up)

Two pushes through the whole gate (`mab-hook --all --publish`, push = true, a fresh commit each
run so each really builds and uploads): a one-image push (3 platforms, a small RUN step), and
one whose own layer is 200 MB (one platform; random bytes, so gzip cannot shrink it). Beside
each, the check alone on the same upload, in-process and cold (nothing kept), as the gate makes
it: the index, each platform's manifest and config, and the layers after the base's streamed
through gzip and tar, a few header bytes per file. A push with nothing to build judges the
uploads it reuses by their digests, kept: no request.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path

from common import WORK, Timing, as_installed, fresh, git, lab_env, mab, measure, ms

from mab_hook import platform_check
from mab_hook.coverage import Found, Known, Sources
from mab_hook.images import Image
from mab_hook.inputs import Pull
from mab_hook.readiness.location import engine_socket
from mab_hook.registry import Registry
from mab_hook.state import KeptByDigest

TARGET = 0.05  # of the push


def push_and_check(
    repo: Path, env: dict[str, str], dockerfile: str, platforms: list[str], runs: int
) -> tuple[Timing, Timing]:
    registry = f"{env['MAB_LAB_REGISTRY']}/bench-upload-check/{repo.name}"
    (repo / "app").mkdir(parents=True)
    (repo / "pyproject.toml").write_text(
        f"[tool.multiarch]\nplatforms = {platforms!r}\n".replace("'", '"')
        + f'registry = "{registry}"\npush = true\n[tool.multiarch.images.app]\ncontext = "app"\n'
    )
    git(repo, "init", "-q", "-b", "main", env=env)
    pushes, checks = [], []
    image = Image("app", "app", "app/Dockerfile", tuple(platforms))
    # The base's layers are the base's, as the gate has them from base coverage.
    base = Sources(env, Registry(env), Known(None), socket=engine_socket(env))(env["MAB_LAB_BASE_IMAGE"])
    assert isinstance(base, Found), base
    roots = [Pull(p, env["MAB_LAB_BASE_IMAGE"], p, "FROM", 1, root=True) for p in platforms]
    layers = platform_check.base_layers(roots, {env["MAB_LAB_BASE_IMAGE"]: base})
    for _ in range(runs):
        (repo / "app" / "Dockerfile").write_text(dockerfile.format(salt=uuid.uuid4().hex, **env))
        git(repo, "add", "-A", env=env)
        git(repo, "commit", "-q", "-m", "salt", env=env)
        pushes.append(measure(mab("--all", "--publish"), cwd=repo, env=env, runs=1).median)
        sha = git(repo, "rev-parse", "--short=7", "HEAD", env=env)
        started = time.perf_counter()
        found = platform_check.check(Registry(env), f"{registry}/app:{sha}", image, base_layers=layers,
                                     kept=KeptByDigest(None, 10))  # fmt: skip
        checks.append(time.perf_counter() - started)
        if found.findings or found.unread:
            raise SystemExit(f"unexpected: {found}")
    return (
        Timing(statistics.median(pushes), tuple(pushes), 0),
        Timing(statistics.median(checks), tuple(checks), 0),
    )


SMALL = "FROM {MAB_LAB_BASE_IMAGE}\nRUN echo {salt} > /salt\n"
LARGE = "FROM {MAB_LAB_BASE_IMAGE}\nRUN head -c 200000000 /dev/urandom > /blob && echo {salt}\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    as_installed()
    env = lab_env()
    work = fresh(WORK / "upload-check")
    three = ["linux/amd64", "linux/arm64", "linux/arm/v7"]
    cases = [
        ("one-image push, 3 platforms", push_and_check(work / "small", env, SMALL, three, args.runs)),
        (
            "a 200 MB layer of its own, 1 platform",
            push_and_check(work / "large", env, LARGE, three[:1], args.runs),
        ),
    ]
    print("### The check of what was built, against the push it is part of (the lab)\n")
    print("| push | the gate's push | the check (cold) | share | target | push runs (s) | check runs |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for label, (push, check) in cases:
        share = check.median / push.median
        met = "met" if share <= TARGET else "missed"
        pushes, checks = ", ".join(f"{t:.2f}" for t in push.runs), ", ".join(ms(t) for t in check.runs)
        figures = f"{push.median:.2f} s | {ms(check.median)} | {share:.1%} | <= {TARGET:.0%} ({met})"
        print(f"| {label} | {figures} | {pushes} | {checks} |")
    print("\n- the push's own figure includes its check; a reused upload is judged by its digest: no request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
