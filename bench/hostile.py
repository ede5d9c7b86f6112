"""What hostile commits cost the pusher: planning time of pathological inputs, bounded.

Each case is a commit a hostile pusher could make (tests/hostile.py has the rest of the corpus):
an ignore file whose patterns backtrack, ARGs that double each other, a YAML alias bomb, and a
1 MB line of a build's output through redaction. Each is timed as `mab-hook --from HEAD^
--dry-run` of a commit that changes every image (a fresh process, the real planning path), next
to the same repository without the hostile file. With --baseline REV the same commands run with
mab-hook as it was at REV, each stopped after --limit seconds (the old matchers needed hours).

    python bench/hostile.py [--baseline REV] [--limit 20]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import common

IMAGES = 20


def repository(path: Path, extra: Mapping[str, str]) -> Path:
    """A repository of IMAGES small images; then a commit of `extra` that also changes a file
    of every image (so that planning `--from HEAD^` reads what decides what it affects)."""
    path.mkdir(parents=True)
    first = {
        "pyproject.toml": '[tool.multiarch]\nplatforms = ["linux/amd64", "linux/arm64"]\n',
        **{f"svc{i}/Dockerfile": "FROM busybox\nCOPY . /app\n" for i in range(IMAGES)},
        **{f"svc{i}/{'a' * (60 + n)}": "x\n" for i in range(IMAGES) for n in range(10)},
    }
    second = {**{f"svc{i}/{'a' * 60}": "changed\n" for i in range(IMAGES)}, **extra}
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@b"}  # fmt: skip
    subprocess.run(("git", "init", "-q", "-b", "main"), cwd=path, env=env, check=True)
    for files in (first, second):
        for name, text in files.items():
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            (path / name).write_text(text)
        for args in (("add", "-A"), ("commit", "-q", "-m", "change")):
            subprocess.run(("git", *args), cwd=path, env=env, check=True)
    return path


def billion_laughs(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "x-laughs:\n  " + "\n  ".join(lines) + "\nservices:\n  web:\n    build: svc0\n"


def doubling_args(lines: int = 40) -> str:
    body = ["FROM busybox", "ARG A0=xxxxxxxx"] + [
        f"ARG A{i}=${{A{i - 1}}}${{A{i - 1}}}" for i in range(1, lines)
    ]
    return "\n".join(body) + f"\nCOPY $A{lines - 1} /\n"


BACKTRACKS = "*a" * 12 + "b\n"  # [^/]*a, twelve times: O(n^12) for a backtracking matcher
CASES: dict[str, tuple[str, Mapping[str, str]]] = {
    "reference (no hostile file)": ("planned", {}),
    "a .dockerignore that backtracks (`*a` x 12, `b`)": ("planned", {"svc0/.dockerignore": BACKTRACKS}),
    "40 ARGs that double each other": ("refused", {"svc0/Dockerfile": doubling_args()}),
    "a YAML alias bomb (10^9 values) in compose.yaml": ("refused", {
        "compose.yaml": billion_laughs(),
        "pyproject.toml": '[tool.multiarch]\nplatforms = ["linux/amd64"]\ncompose = "compose.yaml"\n',
    }),
}  # fmt: skip


def timed(python: str, path: Path, limit: float, env: Mapping[str, str]) -> tuple[float | None, int]:
    """Seconds `mab-hook --from HEAD^ --dry-run` takes in `path`, and its exit code (None:
    stopped after `limit`, with whatever it started: an older resolver did not stop its own)."""
    started = time.perf_counter()
    command = (python, "-m", "mab_hook", "--from", "HEAD^", "--dry-run")
    quiet = subprocess.DEVNULL
    proc = subprocess.Popen(
        command, cwd=path, env=dict(env), stdout=quiet, stderr=quiet, start_new_session=True
    )
    try:
        code = proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return None, -1
    return time.perf_counter() - started, code


def redaction(source: Path, limit: float) -> list[tuple[str, str, str]]:
    """A build step printing a 1 MB line: redaction now, and the expressions it used to be."""
    program = (
        "import re, sys, time\n"
        f"sys.path.insert(0, {str(source)!r})\n"
        "from mab_hook.redact import redact\n"
        "line = 'a' * int(sys.argv[1]) + '@b'\n"
        "t = time.perf_counter(); redact(line); print(time.perf_counter() - t)\n"
    )
    rows = []
    for size in (20_000, 80_000, 1_000_000):
        try:
            out = subprocess.run((sys.executable, "-c", program, str(size)), capture_output=True, text=True,
                                 timeout=limit, check=True).stdout  # fmt: skip
            rows.append((f"{size:,} characters", f"{float(out) * 1000:.1f} ms", ""))
        except subprocess.TimeoutExpired:
            rows.append((f"{size:,} characters", f"> {limit:g} s (stopped)", ""))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", metavar="REV", help="also time mab-hook as it was at REV")
    parser.add_argument("--limit", type=float, default=20.0, help="seconds before a run is stopped")
    args = parser.parse_args()
    common.as_installed()
    env = {**common.lab_env(), "MAB_HOOK_BUDGET": "600"}  # the resolver needs docker's buildx
    with tempfile.TemporaryDirectory(prefix="mab-bench-hostile-") as scratch:
        root = Path(scratch)
        old = _checkout(args.baseline, root / "then") if args.baseline else None
        try:
            report(args, root, old, env)
        finally:
            if old is not None:
                subprocess.run(
                    ("git", "-C", str(common.ROOT), "worktree", "remove", "--force", str(old)), check=False
                )


def report(args: argparse.Namespace, root: Path, old: Path | None, env: Mapping[str, str]) -> None:
    print(f"### Hostile commits: what planning costs ({IMAGES} images, `mab-hook --from HEAD^ --dry-run`)")
    print()
    print("| commit | now | exit |" + (f" at {args.baseline} |" if old else ""))
    print("| --- | --- | --- |" + (" --- |" if old else ""))
    for name, (expected, extra) in CASES.items():
        repo = repository(root / re.sub(r"\W+", "-", name).strip("-"), extra)
        now = _best(sys.executable, repo, args.limit, env)
        row = f"| {name} | {_shown(now[0], args.limit)} | {now[1]} ({expected}) |"
        if old is not None:
            then_env = {**env, "PYTHONPATH": str(old / "hooks")}
            then = _best(sys.executable, repo, args.limit, then_env)
            row += f" {_shown(then[0], args.limit)} (exit {then[1]}) |"
        print(row)
    print()
    print("A line of a build's output through redaction: letters, then `@b` (each `@` looked at once now):")
    print()
    print("| line | now |" + (f" at {args.baseline} |" if old else ""))
    print("| --- | --- |" + (" --- |" if old else ""))
    now_rows = redaction(common.ROOT / "hooks", args.limit)
    then_rows = redaction(old / "hooks", args.limit) if old else None
    for i, (size, took, _) in enumerate(now_rows):
        print(f"| {size} | {took} |" + (f" {then_rows[i][1]} |" if then_rows else ""))


def _best(python: str, repo: Path, limit: float, env: Mapping[str, str]) -> tuple[float | None, int]:
    """The median of three runs (one, when a run was stopped)."""
    first = timed(python, repo, limit, env)
    if first[0] is None:
        return first
    found = sorted(
        (first, timed(python, repo, limit, env), timed(python, repo, limit, env)), key=lambda r: r[0] or 0.0
    )
    return found[1]


def _shown(seconds: float | None, limit: float) -> str:
    return f"> {limit:g} s (stopped)" if seconds is None else f"{seconds * 1000:.0f} ms"


def _checkout(rev: str, where: Path) -> Path:
    subprocess.run(
        ("git", "-C", str(common.ROOT), "worktree", "add", "-q", "--detach", str(where), rev), check=True
    )
    subprocess.run((sys.executable, "-m", "compileall", "-q", str(where / "hooks")), check=True)
    return where


if __name__ == "__main__":
    main()
