"""Benchmark: `mab-hook verify` on the benchmark monorepo (1,000 images), against the lab's registry.

    python bench/verify_cost.py [--images 1000] [--files 100000] [--runs 5] [--source DIR]   (needs the lab)

The monorepo of planning.py with push = true and the lab's registry: `verify --all` asks the
registry about every image's input-digest tag, 16 at a time, once with none of them there
(every answer a 404) and once with all of them there (each tag put first as a one-image
manifest whose config carries the labels verify checks: the input digest and the commit; so
two GETs an image, the manifest and its config). `verify --from main --to push` is the range of
the benchmark push. A fresh process each run; the planning in it included.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

from common import WORK, as_installed, fresh, git, lab_env, mab, measure, ms

MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--source", type=Path, help="a repository bench/generate.py made (scale.py's)")
    args = parser.parse_args()
    env = lab_env()
    source = args.source or WORK / f"monorepo-{args.images}-{args.files}"
    if not (source / ".git").exists():
        raise SystemExit(f"run bench/planning.py (or bench/scale.py) first: it generates {source}")
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
    missing = json.loads(listed.stdout)["missing"]
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(put_labelled, missing))
    every = measure(mab("verify", "--all"), cwd=repo, env=env, runs=args.runs)
    push = measure(mab("verify", "--from", "main", "--to", "push"), cwd=repo, env=env, runs=args.runs)
    plan = measure(mab("--dry-run", "--all"), cwd=repo, env=env, runs=args.runs)
    print(
        f"### `mab-hook verify`: {len(missing)} images, the lab's registry (manifest, config: 16 at a time)\n"
    )
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


def put_labelled(found: dict[str, str]) -> None:
    """An image under the reference whose config is labelled as verify wants it: no layers, a
    config blob (uploaded in one monolithic PUT) and the manifest naming it."""
    host, _, rest = found["reference"].partition("/")
    name, _, tag = rest.rpartition(":")
    labels = {
        "dev.mab-hook.input-digest": found["input_digest"],
        "org.opencontainers.image.revision": found["commit"],
    }
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Labels": labels},
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()  # fmt: skip
    digest = "sha256:" + hashlib.sha256(config).hexdigest()
    begin = urllib.request.Request(f"http://{host}/v2/{name}/blobs/uploads/", method="POST")
    started = urllib.request.urlopen(begin, timeout=30)
    location = started.headers["Location"]
    started.close()
    upload = f"{location}{'&' if '?' in location else '?'}digest={digest}"
    if upload.startswith("/"):
        upload = f"http://{host}{upload}"
    put = urllib.request.Request(
        upload, data=config, method="PUT", headers={"Content-Type": "application/octet-stream"}
    )
    urllib.request.urlopen(put, timeout=30).close()
    described = {
        "mediaType": "application/vnd.oci.image.config.v1+json",
        "digest": digest,
        "size": len(config),
    }
    manifest = json.dumps(
        {"schemaVersion": 2, "mediaType": MANIFEST, "layers": [], "config": described}
    ).encode()
    request = urllib.request.Request(f"http://{host}/v2/{name}/manifests/{tag}", data=manifest, method="PUT",
                                     headers={"Content-Type": MANIFEST})  # fmt: skip
    urllib.request.urlopen(request, timeout=30).close()


if __name__ == "__main__":
    sys.exit(main())
