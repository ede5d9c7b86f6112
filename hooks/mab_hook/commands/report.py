"""`mab-hook report`: the slowest emulated build steps across the builds whose logs are kept,
each against the same step built natively, with the fix that fits (`mab_hook.slow_steps`)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple, TextIO

from mab_hook import __version__, output, slow_steps, state
from mab_hook.output import Printer
from mab_hook.repository import open_repo
from mab_hook.results import StepTime

LIMIT = 10


class Options(NamedTuple):
    limit: int = LIMIT
    json: bool = False
    repo: Path | None = None


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="mab-hook report",
        description="The slowest emulated build steps of the builds whose logs are kept, each against the "
        f"same step built natively (at least {slow_steps.RATIO:g}x and {slow_steps.SAVING:g} s slower), "
        "with the fix that fits.",
    )
    parser.add_argument(
        "--limit", type=int, default=LIMIT, metavar="N", help=f"at most N steps (default {LIMIT})"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    parser.add_argument("-C", "--repo", type=Path, default=None, metavar="DIR")
    parser.add_argument("-v", "--verbose", action="store_true", help=argparse.SUPPRESS)  # as every command
    args = parser.parse_args(argv)
    if args.limit < 1:
        parser.error("--limit: a whole number, 1 or more")
    return args


def options(args: argparse.Namespace) -> Options:
    return Options(args.limit, args.json, args.repo)


class Found(NamedTuple):
    slow: slow_steps.Slow
    commit: str  # the logs' directory: the commit's first 12 hex digits
    at: float  # when it was measured


def run(options: Options, env: Mapping[str, str], stdin: TextIO, printer: Printer) -> int:
    root = state.root(open_repo(options.repo or Path.cwd()))
    builds = sorted(measured(root / "logs"), key=lambda m: -m[2])
    found = slowest(builds)[: options.limit]
    if options.json:
        steps = [{**f.slow._asdict(), "saving": round(f.slow.saving, 1), "fix": slow_steps.fix(f.slow),
                  "commit": f.commit, "at": f.at} for f in found]  # fmt: skip
        output.dump_json({"version": __version__, "builds": len(builds), "steps": steps}, sys.stdout)
        return 0
    if not found:
        printer.line(
            f"no emulated step of the {len(builds)} build(s) kept took {slow_steps.RATIO:g}x and "
            f"{slow_steps.SAVING:g} s longer than natively: emulation costs little here"
        )
        return 0
    printer.line(f"the slowest emulated steps of the {len(builds)} build(s) kept, slowest first:")
    now = time.time()
    for f in found:
        printer.line(f"  {slow_steps.line(f.slow)} (commit {f.commit}, {_ago(now - f.at)})")
    return 0


def measured(logs: Path) -> Iterator[tuple[str, dict[str, tuple[StepTime, ...]], float]]:
    """Each kept build's step times: (commit, image -> steps, when), unreadable ones left out."""
    for path in logs.glob("*/steps.json"):
        try:
            data = json.loads(path.read_text())
            steps = {
                str(image): tuple(StepTime(str(p), str(w), float(s), bool(n)) for p, w, s, n in rows)
                for image, rows in data.items()
            }
            yield path.parent.name, steps, path.stat().st_mtime
        except (OSError, ValueError, TypeError, AttributeError):
            continue  # a file of another version, or half written: a cache, not a record


def slowest(builds: Sequence[tuple[str, dict[str, tuple[StepTime, ...]], float]]) -> list[Found]:
    """The slow steps of the builds given (newest first), each step once (as last measured),
    slowest first."""
    seen: dict[tuple[str, str, str], Found | None] = {}
    for commit, images, at in builds:
        for image, steps in images.items():
            slow = {(s.what, s.platform): s for s in slow_steps.slow(image, steps)}
            for step in (s for s in steps if not s.native):
                found = slow.get((step.what, step.platform))
                seen.setdefault((image, step.what, step.platform), found and Found(found, commit, at))
    return sorted((f for f in seen.values() if f is not None), key=lambda f: -f.slow.saving)


def _ago(seconds: float) -> str:
    if seconds < 3600:
        return f"{max(seconds, 0) / 60:.0f} min ago"
    if seconds < 86400:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} days ago"
