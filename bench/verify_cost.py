"""Benchmark: `mab-hook verify` on the benchmark monorepo (1,000 images), against the lab's registry.

    python bench/verify_cost.py [--images 1000] [--files 100000] [--runs 5]   (needs the lab)

The monorepo of planning.py with push = true and the lab's registry: `verify --all` asks the
registry about every image's input-digest tag (one HEAD request each, 16 at a time), once with
none of them there (every answer a 404) and once with all of them there (each tag put first,
as an empty index: what verify reads is the tag alone). `verify --from main --to push` is the
range of the benchmark push. A fresh process each run; the planning in it included.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import subprocess
import sys
import urllib.request
import uuid

from common import WORK, as_installed, fresh, git, lab_env, mab, measure, ms

EMPTY_INDEX = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}'


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    env = lab_env()
    source = WORK / f"monorepo-{args.images}-{args.files}"
    if not (source / ".git").exists():
        raise SystemExit(f"run bench/planning.py first: it generates {source}")
    as_installed()
    repo = fresh(WORK / "verify-cost") / "repo"
    git(WORK / "verify-cost", "clone", "-q", "--shared", "--no-checkout", str(source), str(repo), env=env)
    # A namespace of this run's own: none of the tags is there yet.
    registry = f"{env['MAB_LAB_REGISTRY']}/bench-verify-{uuid.uuid4().hex[:6]}"
    for branch in ("main", "push"):  # the same config at both ends of the range
        git(repo, "checkout", "-q", "-B", branch, f"origin/{branch}", env=env)
        config = (repo / "pyproject.toml").read_text()
        config = config.replace('registry = "registry.internal:5000/bench"',
                                f'registry = "{registry}"\npush = true')  # fmt: skip
        (repo / "pyproject.toml").write_text(config)
        git(repo, "commit", "-q", "-am", "the lab's registry, push = true", env=env)
    git(repo, "rebase", "-q", "main", "push", env=env)
    none = measure(mab("verify", "--all"), cwd=repo, env=env, runs=args.runs, expect=1)
    listed = subprocess.run(mab("verify", "--all", "--json"), cwd=repo, env=env, capture_output=True,
                            text=True, check=False)  # fmt: skip
    missing = [found["reference"] for found in json.loads(listed.stdout)["missing"]]
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(put_index, missing))
    every = measure(mab("verify", "--all"), cwd=repo, env=env, runs=args.runs)
    push = measure(mab("verify", "--from", "main", "--to", "push"), cwd=repo, env=env, runs=args.runs)
    plan = measure(mab("--dry-run", "--all"), cwd=repo, env=env, runs=args.runs)
    print(f"### `mab-hook verify`: {len(missing)} images, the lab's registry (HEAD requests, 16 at a time)\n")
    print("| what | median | runs |")
    print("| --- | --- | --- |")
    in_push = subprocess.run(mab("verify", "--from", "main", "--to", "push", "--json"), cwd=repo, env=env,
                             capture_output=True, text=True, check=True)  # fmt: skip
    affected = len(json.loads(in_push.stdout)["present"])
    rows = (
        (f"`verify --all`, all {len(missing)} there", every),
        (f"`verify --all`, none of {len(missing)} there (exit 1)", none),
        (f"`verify --from main --to push` (the benchmark push; {affected} images)", push),
        ("for comparison: `mab-hook --dry-run --all` (planning alone, no registry)", plan),
    )
    for label, timing in rows:
        print(f"| {label} | {ms(timing.median)} | {', '.join(ms(t) for t in timing.runs)} |")
    return 0


def put_index(reference: str) -> None:
    host, _, rest = reference.partition("/")
    name, _, tag = rest.rpartition(":")
    url = f"http://{host}/v2/{name}/manifests/{tag}"
    headers = {"Content-Type": "application/vnd.oci.image.index.v1+json"}
    request = urllib.request.Request(url, data=EMPTY_INDEX, method="PUT", headers=headers)
    urllib.request.urlopen(request, timeout=30).close()


if __name__ == "__main__":
    sys.exit(main())
