"""Benchmark: two engines against one (issue 29), on the same images.

    python bench/engines.py [--rounds 3] [--images 4]      (needs the lab: bash lab/up)

A second dockerd of its own (its own socket, data root and bridge; stopped and removed at the
end) is docker context `second` in a docker config of the bench's own. The same repository (a
base and images built on it, each with a CPU-bound RUN step and a salt, for linux/amd64,
linux/arm64 and linux/arm/v7) is pushed (`mab-hook --all`, push = true) in alternated rounds:

- one engine: every platform on the lab's engine (amd64 natively, both arm platforms under QEMU);
- two engines: `engines` routes linux/arm64 and linux/arm/v7 to `second`.

For the two-engine runs, from the output's timed lines: how long each engine built (its first
"building" to its last result), how much of that ran at the same time (overlap), and the merge
(from the last engine's last result to the last image merged). On this machine both engines
share the same two cores and both emulate arm, so two engines cannot be faster: what the
figures show is the overlap and the merge cost. What a native engine would change is worked
out from the step times mab-hook measured (steps.json): the arm steps at the speed of the same
steps natively.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from common import WORK, as_installed, forget_images, fresh, git, lab_env, mab

PLATFORMS = ["linux/amd64", "linux/arm64", "linux/arm/v7"]
LOOP = "i=0; while [ $i -lt 150000 ]; do i=$((i+1)); done"


@contextlib.contextmanager
def second_engine(env: dict[str, str]) -> Iterator[str]:
    """A dockerd of its own (containerd image store), as the lab tests start one; its socket."""
    root = Path(tempfile.mkdtemp(prefix="mabbench-", dir="/var/tmp"))
    bridge = f"mabb{os.getpid() % 100000}"
    for args in (("link", "add", bridge, "type", "bridge"), ("addr", "add", "172.27.91.1/24", "dev", bridge),
                 ("link", "set", bridge, "up")):  # fmt: skip
        subprocess.run(("ip", *args), check=True, capture_output=True)
    (root / "daemon.json").write_text('{"features": {"containerd-snapshotter": true}}')
    socket = f"unix://{root}/sock"
    daemon = subprocess.Popen(
        ("dockerd", "--config-file", str(root / "daemon.json"), "--data-root", str(root / "data"),
         "--exec-root", str(root / "exec"), "-p", str(root / "pid"), "-H", socket, "--bridge", bridge,
         "--iptables=false", "--ip6tables=false"),
        env=env, stdout=(root / "log").open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while subprocess.run(
            ("docker", "-H", socket, "version"), env=env, capture_output=True, check=False
        ).returncode:
            if time.monotonic() > deadline or daemon.poll() is not None:
                raise SystemExit(f"the second dockerd did not start: {(root / 'log').read_text()[-2000:]}")
            time.sleep(0.3)
        yield socket
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(timeout=60)
        subprocess.run(("ip", "link", "del", bridge), check=False, capture_output=True)
        mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
        for mount in sorted((m for m in mounts if m.startswith(str(root))), reverse=True):
            subprocess.run(("umount", mount), check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def project(path: Path, env: dict[str, str], registry: str, images: int) -> None:
    base = f"{env['MAB_LAB_REGISTRY']}/{env['MAB_LAB_BASE_IMAGE']}"  # the second engine pulls it
    config = [f'[tool.multiarch]\nplatforms = {json.dumps(PLATFORMS)}\nregistry = "{registry}"\npush = true',
              '[tool.multiarch.images.base]\ncontext = "base"']  # fmt: skip
    config += [f'[tool.multiarch.images.svc{n}]\ncontext = "svc{n}"' for n in range(images - 1)]
    (path / "pyproject.toml").write_text("\n".join(config) + "\n")
    (path / "base").mkdir()
    (path / "base" / "Dockerfile").write_text(f"FROM {base}\nCOPY salt /\nRUN {LOOP} && cat /salt > /base\n")
    for n in range(images - 1):
        (path / f"svc{n}").mkdir()
        (path / f"svc{n}" / "Dockerfile").write_text(
            f"FROM {registry}/base\nCOPY salt /\nRUN {LOOP} && cat /salt /base > /svc\n"
        )
    git(path, "init", "-q", "-b", "main", env=env)
    git(path, "config", "mab-hook.engine", "second", env=env)  # the pusher lets builds run there


def salted(path: Path, env: dict[str, str], routed: bool) -> None:
    """Every image changed (a new salt), and the engines of this case; committed."""
    salt = uuid.uuid4().hex
    for context in [p for p in path.iterdir() if (p / "Dockerfile").is_file()]:
        (context / "salt").write_text(f"{salt}\n")
    text = (path / "pyproject.toml").read_text().split("\n[tool.multiarch.engines]")[0].rstrip("\n") + "\n"
    if routed:
        text += '\n[tool.multiarch.engines]\n"linux/arm64" = "second"\n"linux/arm/v7" = "second"\n'
    (path / "pyproject.toml").write_text(text)
    git(path, "add", "-A", env=env)
    git(path, "commit", "-q", "-m", f"salt {salt[:8]}", env=env)


class Run(NamedTuple):
    seconds: float
    engines: dict[str, tuple[float, float]]  # engine label -> (first building, last result), seconds
    merged: float  # the last image merged, seconds from the start
    steps: dict[str, list[tuple[str, str, float, bool]]]  # what mab-hook measured (steps.json)


def timed(path: Path, env: dict[str, str]) -> Run:
    started = time.perf_counter()
    proc = subprocess.Popen(mab("--all", "-v"), cwd=path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    assert proc.stdout is not None
    engines: dict[str, list[float]] = {}
    merged, lines = 0.0, []
    for line in proc.stdout:
        now = time.perf_counter() - started
        lines.append(line)
        label = re.match(
            r"mab-hook: (engine \S+|the default engine): \S+: (building|built|pushed|failed)", line
        )
        if label:
            engines.setdefault(label.group(1), [now, now])[1] = now
        elif re.match(r"mab-hook: \S+: (built|pushed) on \d+ engines, merged", line):
            merged = now
        elif re.match(r"mab-hook: \S+: building for ", line):  # one engine: no labels
            engines.setdefault("the default engine", [now, now])
        elif re.match(r"mab-hook: \S+: (built|pushed) \(", line):
            engines.setdefault("the default engine", [now, now])[1] = now
    if proc.wait() != 0:
        raise SystemExit("mab-hook failed:\n" + "".join(lines[-30:]))
    seconds = time.perf_counter() - started
    sha = git(path, "rev-parse", "HEAD", env=env)[:12]
    kept = json.loads((path / ".git" / "mab-hook" / "logs" / sha / "steps.json").read_text())
    steps = {
        image: [(str(p), str(w), float(t), bool(n)) for p, w, t, n in rows] for image, rows in kept.items()
    }
    return Run(seconds, {k: (v[0], v[1]) for k, v in engines.items()}, merged, steps)


def native_estimate(run: Run) -> float:
    """The two-engine run's time had `second` been an arm machine: its build shortened by the
    ratio of the same steps' native time (amd64 on the lab's engine) to their emulated time;
    the rest (planning, the default engine, the merge, publishing) as measured. An estimate:
    it also leaves out that the two engines here share two cores."""
    native_total = emulated_total = 0.0
    for rows in run.steps.values():
        native = {what: seconds for _p, what, seconds, is_native in rows if is_native}
        for _p, what, seconds, is_native in rows:
            if not is_native and what in native:
                native_total += native[what]
                emulated_total += seconds
    second = next((span for label, span in run.engines.items() if label != "the default engine"), None)
    default = run.engines.get("the default engine")
    if second is None or default is None or not emulated_total:
        return run.seconds
    end = max(default[1], second[1])
    shortened = second[0] + (second[1] - second[0]) * native_total / emulated_total
    return run.seconds - (end - max(default[1], shortened))


def overlap(run: Run) -> float:
    """The time both engines built at once, over the shorter one's build."""
    spans = list(run.engines.values())
    if len(spans) < 2:
        return 0.0
    (a0, a1), (b0, b1) = spans[:2]
    return max(0.0, min(a1, b1) - max(a0, b0)) / max(min(a1 - a0, b1 - b0), 1e-9)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images", type=int, default=4)
    args = parser.parse_args()
    as_installed()
    env = lab_env()
    work = fresh(WORK / "engines")
    config = work / "docker-config"
    shutil.copytree(env["DOCKER_CONFIG"], config, symlinks=True)
    env = {**env, "DOCKER_CONFIG": str(config)}
    registry = f"{env['MAB_LAB_REGISTRY']}/bench-engines-{uuid.uuid4().hex[:8]}"
    repo = work / "repo"
    repo.mkdir()
    project(repo, env, registry, args.images)
    one: list[Run] = []
    two: list[Run] = []
    with second_engine(env) as socket:
        subprocess.run(("docker", "context", "create", "second", "--docker", f"host={socket}"), env=env,
                       check=True, capture_output=True)  # fmt: skip
        try:
            for _ in range(args.rounds):
                salted(repo, env, routed=False)
                one.append(timed(repo, env))
                salted(repo, env, routed=True)
                two.append(timed(repo, env))
        finally:
            forget_images(env, (registry,))
    report(one, two, args)
    return 0


def report(one: list[Run], two: list[Run], args: argparse.Namespace) -> None:
    """A markdown section, as bench/all.sh collects them."""
    median = statistics.median
    a, b = median([r.seconds for r in one]), median([r.seconds for r in two])
    print("### Two engines against one (issue 29): the same images, arm platforms on a second engine")
    print()
    command = f"python bench/engines.py --rounds {args.rounds} --images {args.images}"
    print(f"`{command}`: {args.images} images (a base and {args.images - 1} built on it, each with a "
          f"CPU-bound RUN step), {len(PLATFORMS)} platforms, every step run (a new salt each run), "
          "alternated rounds; both engines on this machine.")  # fmt: skip
    print()
    print("| case | median | runs (s) |")
    print("| --- | --- | --- |")
    for name, found in (("one engine (arm under QEMU)", one), ("two engines (arm on `second`)", two)):
        times = ", ".join(f"{r.seconds:.1f}" for r in found)
        print(f"| {name} | {median([r.seconds for r in found]):.1f} s | {times} |")
    print()
    print(f"- two engines / one engine: {b / a:.2f}x")
    for label in sorted({k for r in two for k in r.engines}):
        spans = [r.engines[label][1] - r.engines[label][0] for r in two if label in r.engines]
        print(f"- {label}: built for {median(spans):.1f} s (median)")
    shared = median([overlap(r) for r in two]) * 100
    print(f"- overlap: {shared:.0f}% of the shorter engine's build ran while the other built")
    merges = [r.merged - max(span[1] for span in r.engines.values()) for r in two if r.merged]
    print(f"- merge (the last engine done -> the last image merged): {median(merges) * 1000:.0f} ms")
    for name, found in (("one engine", one), ("two engines", two)):
        before = median([min(span[0] for span in r.engines.values()) for r in found])
        after = median([r.seconds - max(*(span[1] for span in r.engines.values()), r.merged) for r in found])
        print(f"- {name}: {before:.1f} s before the first build starts (planning, readiness, checkout), "
              f"{after:.1f} s after the last build or merge ends (the check, exit)")  # fmt: skip
    native = median([native_estimate(r) for r in two])
    print(f"- had `second` been a native arm machine: about {native:.1f} s ({native / a:.2f}x of one "
          "engine), its steps at the speed the same steps ran natively")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
