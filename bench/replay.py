"""Replay a repository's history through planning: every commit of it, as a push of that commit.

    python bench/replay.py PATH [--commits 300] [--config TOML] [--json]

For the next real repository to be tried in one command: each first-parent commit of HEAD (the
newest `--commits`), oldest first, is planned as a push of it over its parent (`mab-hook
--dry-run --from C^ --to C`, in-process), and the script prints per plan its time, the images
affected, and what went wrong: an error (what a pusher would read: a bad configuration, a
Dockerfile mab-hook cannot follow) or a crash (a bug: its traceback). A repository that has no
[tool.multiarch] of its own is planned with `--config` (default: two platforms and a registry,
the least a team writes) wherever a commit's pyproject.toml has none. Nothing is built.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import git

from mab_hook import changes, gitobjects, planning, platforms
from mab_hook.errors import FatalError
from mab_hook.validation import PYPROJECT

PLATFORMS = '["linux/amd64", "linux/arm64"]'
LEAST = f'[tool.multiarch]\nplatforms = {PLATFORMS}\nregistry = "registry.internal/replay"\n'


def with_config(text: str) -> None:
    """Every commit without a [tool.multiarch] of its own is read as if it had `text`."""
    read = gitobjects.Reader.data

    def data(self: gitobjects.Reader, path: str) -> bytes | None:
        found = read(self, path)
        if path == PYPROJECT and (found is None or b"[tool.multiarch" not in found):
            return ((found or b"") + b"\n" + text.encode()).lstrip()
        return found

    gitobjects.Reader.data = data  # type: ignore[method-assign]


def replay(repo: git.Repo, commits: list[git.Commit]) -> list[dict[str, Any]]:
    build_platform = platforms.native(platform.machine())
    found = []
    for commit in commits:
        started = time.perf_counter()
        entry: dict[str, Any] = {"commit": commit.hexsha[:12], "subject": commit.summary[:60]}
        try:
            pushed = changes.for_range(repo, commit.parents[0].hexsha, commit.hexsha, "main")
            planned = planning.plan_at(repo, pushed, env={}, build_platform=build_platform)
            entry["affected"] = [p.image.name for p in planned.affected]
            entry["images"] = len(planned.config.images)
            entry["warnings"] = len(planned.warnings)
        except FatalError as e:
            entry["error"] = str(e).splitlines()[0][:300]
        except Exception:  # a crash is what this script is for finding
            entry["crash"] = traceback.format_exc()
        entry["seconds"] = time.perf_counter() - started
        found.append(entry)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("path", type=Path)
    parser.add_argument("--commits", type=int, default=300)
    parser.add_argument("--config", default=LEAST, help="[tool.multiarch] for commits that have none")
    parser.add_argument("--json", action="store_true", help="every plan as JSON")
    args = parser.parse_args()
    repo = git.Repo(args.path)
    with_config(args.config)
    history = [c for c in repo.iter_commits("HEAD", first_parent=True, max_count=args.commits) if c.parents]
    found = replay(repo, list(reversed(history)))
    if args.json:
        json.dump(found, sys.stdout, indent=1)
        return 0
    for entry in found:
        outcome = entry.get("error") or f"{len(entry.get('affected', ()))} affected"
        what = entry.get("crash", "").strip().splitlines()[-1:] or [outcome]
        print(f"{entry['commit']}  {entry['seconds'] * 1000:7.0f} ms  {what[0][:90]}")
    times = [entry["seconds"] for entry in found]
    crashes = [entry for entry in found if "crash" in entry]
    errors = [entry for entry in found if "error" in entry]
    median, slowest = statistics.median(times) if times else 0.0, max(times, default=0.0)
    print(f"\n{len(found)} plans of {args.path.name}: {len(crashes)} crashed, {len(errors)} errors; median "
          f"{median * 1000:.0f} ms, slowest {slowest * 1000:.0f} ms")  # fmt: skip
    for entry in crashes[:3]:
        print(f"\ncrash at {entry['commit']}:\n{entry['crash']}")
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
