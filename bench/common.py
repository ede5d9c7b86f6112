"""Helpers the benchmark scripts share: timing commands in fresh processes, machine facts."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
WORK = Path(os.environ.get("MAB_BENCH_DIR", "/var/tmp/mab-bench"))
LAB_ENV = Path(os.environ.get("MAB_LAB_DIR", "/var/tmp/mab-lab")) / "env"


class Timing(NamedTuple):
    median: float  # seconds
    runs: tuple[float, ...]
    peak_kb: int  # the largest resident set of any run


def measure(cmd: Sequence[str], *, cwd: Path, env: Mapping[str, str] | None = None, runs: int = 5,
            expect: int | None = 0) -> Timing:  # fmt: skip
    """Wall time of `runs` runs of a command, each a fresh process, and its peak memory."""
    times, peaks = [], []
    for _ in range(runs):
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=dict(env or os.environ), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)  # fmt: skip
        _, status, usage = os.wait4(proc.pid, 0)
        times.append(time.perf_counter() - started)
        peaks.append(usage.ru_maxrss)
        code = os.waitstatus_to_exitcode(status)
        if expect is not None and code != expect:
            stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise SystemExit(f"{' '.join(cmd)} exited {code}:\n{stderr}")
    return Timing(statistics.median(times), tuple(times), max(peaks))


def as_installed() -> None:
    """mab-hook's bytecode compiled, as `pip install` (and so pre-commit) leaves it. Where
    PYTHONDONTWRITEBYTECODE is set (as on the machines these figures come from), an editable
    install would otherwise compile every module of mab-hook again on each run (some 35 ms)."""
    subprocess.run((sys.executable, "-m", "compileall", "-q", str(ROOT / "hooks")), check=True)


def interleaved(cases: Mapping[str, tuple[Sequence[str], Callable[[], None]]], *, cwd: Path,
                runs: int) -> dict[str, Timing]:  # fmt: skip
    """Each case (a command, and what to do, untimed, before it) run once per round, `runs`
    rounds: every case sees the machine's slow spells alike, so their ratios hold."""
    times: dict[str, list[Timing]] = {name: [] for name in cases}
    for _ in range(runs):
        for name, (cmd, before) in cases.items():
            before()
            times[name].append(measure(cmd, cwd=cwd, runs=1))
    return {name: _merged(found) for name, found in times.items()}


def _merged(timings: Sequence[Timing]) -> Timing:
    runs = tuple(t.median for t in timings)
    return Timing(statistics.median(runs), runs, max(t.peak_kb for t in timings))


def lab_env() -> dict[str, str]:
    """The environment to talk to the lab in, with a git identity for the commits benchmarks make."""
    if not LAB_ENV.is_file():
        raise SystemExit(f"no lab at {LAB_ENV}: run `bash lab/up` first")
    out = subprocess.run(("bash", "-c", f'. "{LAB_ENV}" && env -0'), capture_output=True, check=True)
    env = dict(item.split("=", 1) for item in out.stdout.decode().split("\0") if "=" in item)
    return {**env, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
            "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid"}  # fmt: skip


def git(cwd: Path, *args: str, env: Mapping[str, str] | None = None) -> str:
    return subprocess.run(("git", *args), cwd=cwd, capture_output=True, text=True, check=True,
                          env=dict(env or os.environ)).stdout.strip()  # fmt: skip


def mab(*args: str) -> list[str]:
    return [sys.executable, "-m", "mab_hook", *args]


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine())  # fmt: skip
    memory = int(Path("/proc/meminfo").read_text().split()[1]) // 1024 // 1024
    versions = f"Python {platform.python_version()}, git {git(ROOT, '--version').split()[-1]}"
    cores = f"{os.cpu_count()} cores ({cpu})"
    return f"{platform.machine()}, {cores}, {memory} GiB, Linux {platform.release()}, {versions}"


def fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def as_of(rev: str) -> list[str]:
    """What runs mab-hook as it was at `rev`, before a command: a worktree of this repository
    (its bytecode compiled, as pip installs it) first on PYTHONPATH."""
    tree = WORK / "baseline"
    subprocess.run(
        ("git", "worktree", "remove", "--force", str(tree)), cwd=ROOT, capture_output=True, check=False
    )
    subprocess.run(("git", "worktree", "add", "--detach", "--force", str(tree), rev), cwd=ROOT,
                   capture_output=True, check=True)  # fmt: skip
    subprocess.run((sys.executable, "-m", "compileall", "-q", str(tree / "hooks")), check=True)
    return ["env", f"PYTHONPATH={tree / 'hooks'}"]


def forget_images(env: Mapping[str, str], prefixes: Sequence[str]) -> int:
    """Remove from the lab engine's store the images a bench made (their references start with
    one of `prefixes`): the docker driver keeps a copy of each image it pushes, and a store of
    thousands slows every engine call of every later run. Through the lab's containerd (its
    `moby` namespace is the engine's image store): `docker image rm` of a few hundred takes
    minutes there. What the registry holds stays."""
    ctr = ("ctr", "--address", f"{env['MAB_LAB_DIR']}/exec/containerd/containerd.sock", "--namespace", "moby")
    listed = subprocess.run((*ctr, "images", "ls", "-q"), env=env, capture_output=True, text=True,
                            check=True).stdout.split()  # fmt: skip
    made = [ref for ref in listed if ref.startswith(tuple(prefixes))]
    for start in range(0, len(made), 200):
        subprocess.run((*ctr, "images", "rm", *made[start : start + 200]), env=env, capture_output=True,
                       check=False)  # fmt: skip
    return len(made)


@contextlib.contextmanager
def memory_registry() -> Iterator[str]:
    """A registry of the bench's own, on a free loopback port (the engine talks plain HTTP to
    127.0.0.0/8), keeping everything in memory, gone when the bench ends. Why not the lab's:
    distribution 2.8's filesystem storage writes a tag's link file in place, and a read racing
    the docker driver's own push (containerd puts each manifest of an index under the tag) finds
    it half written and answers 500; the retries that follow cost either side seconds at random,
    more than the differences measured. Its `inmemory` storage writes each file under a lock."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    config = WORK / "memory-registry.yml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f"version: 0.1\nlog:\n  level: warn\nstorage:\n  inmemory: {{}}\n  delete:\n"
                      f"    enabled: true\nhttp:\n  addr: {address}\n")  # fmt: skip
    served = subprocess.Popen(("docker-registry", "serve", str(config)), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://{address}/v2/", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or served.poll() is not None:
                    raise SystemExit(f"bench: docker-registry did not answer on {address}") from None
                time.sleep(0.1)
        yield address
    finally:
        served.terminate()
        served.wait()
