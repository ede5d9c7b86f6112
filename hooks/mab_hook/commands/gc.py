"""`mab-hook gc`: staging uploads no one needs any more, removed from the registry (what is
removed, and how, is `mab_hook.cleanup`'s)."""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import platform as os_platform
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TextIO

from mab_hook import __version__, changes, cleanup, planning, platforms, state
from mab_hook.cleanup import Deletion, Verdict
from mab_hook.errors import FatalError
from mab_hook.output import Printer
from mab_hook.registry import Registry
from mab_hook.repository import open_repo


class Options(NamedTuple):
    older_than: float = cleanup.DEFAULT_DAYS  # days
    dry_run: bool = False
    json: bool = False
    verbose: bool = False
    repo: Path | None = None


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="mab-hook gc",
        description="Remove staging uploads older than --older-than days that no public tag and no "
        "waiting publish needs, from the staging repository of every image of HEAD's configuration "
        "(and the mab- tags earlier versions left among the public tags).",
    )
    days = cleanup.DEFAULT_DAYS
    parser.add_argument(
        "--older-than",
        type=float,
        default=days,
        metavar="DAYS",
        help=f"keep what is younger than this (default {days:g})",
    )
    parser.add_argument("--dry-run", action="store_true", help="say what would go; delete nothing")
    parser.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    parser.add_argument("-C", "--repo", type=Path, default=None, metavar="DIR")
    parser.add_argument("-v", "--verbose", action="store_true", help="also list what is kept, and why")
    args = parser.parse_args(argv)
    if args.older_than < 0:
        parser.error("--older-than: a number of days, 0 or more")
    return args


def options(args: argparse.Namespace) -> Options:
    return Options(args.older_than, args.dry_run, args.json, args.verbose, args.repo)


def run(options: Options, env: Mapping[str, str], stdin: TextIO, printer: Printer) -> int:
    repo = open_repo(options.repo or Path.cwd())
    native = platforms.native(os_platform.machine())
    head = changes.for_all(repo, "HEAD", changes.current_branch(repo), "gc")
    config = planning.plan_at(repo, head, env=env, build_platform=native).config
    if not config.push:
        raise FatalError(f"{config.source}: push = false, so nothing of it is in a registry to clean up")
    waiting = cleanup.needed_by_pending(repo, state.root(repo), env, native)
    registry = Registry(env, builder=config.builder)
    rules = cleanup.Rules(waiting, datetime.datetime.now(datetime.timezone.utc), options.older_than)
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=cleanup.CONCURRENCY) as pool:
            judged = list(
                pool.map(lambda image: cleanup.judge_image(registry, config, image, rules), config.published)
            )
    except (OSError, ValueError) as e:  # RegistryError included; ValueError: an answer that is no JSON
        raise FatalError(
            f"the registry failed while gc read it ({e}); nothing was removed: check "
            "`mab-hook doctor` and run `mab-hook gc` again"
        ) from None
    verdicts = [verdict for found in judged for verdict in found.verdicts]
    held = {image for found in judged for image in found.held}
    try:
        removal = cleanup.Removal([], []) if options.dry_run else cleanup.remove(registry, verdicts, held)
    except OSError as e:
        raise FatalError(f"the registry failed while gc removed ({e}); run `mab-hook gc` again") from None
    return report(options, cleanup.settled(verdicts, removal), removal.refused, printer)


def report(
    options: Options, verdicts: Sequence[Verdict], refused: Sequence[tuple[Deletion, int]], printer: Printer
) -> int:
    failed = {(d.repository, tag) for d, _status in refused for tag in d.tags}
    gone = [v for v in verdicts if v.remove and (v.upload.repository, v.upload.tag) not in failed]
    kept = [v for v in verdicts if not v.remove]
    if options.json:
        refusals = [{"repository": d.repository, "target": d.target, "status": s} for d, s in refused]
        data = {
            "version": __version__,
            "dry_run": options.dry_run,
            "removed": [_entry(v) for v in gone],
            "kept": [_entry(v) for v in kept],
            "refused": refusals,
        }
        json.dump(data, sys.stdout, indent=1)
        sys.stdout.write("\n")
    verb = "would remove" if options.dry_run else "removed"
    for v in gone:
        printer.line(f"  {verb}  {v.upload.repository}:{v.upload.tag}  ({v.why})")
    for v in kept if options.verbose else ():
        printer.line(f"  kept  {v.upload.repository}:{v.upload.tag}  ({v.why})")
    freed = (
        "; the registry frees their space at its garbage collection" if gone and not options.dry_run else ""
    )
    printer.info(f"{verb} {len(gone)} staging upload(s); kept {len(kept)} (-v: which, and why){freed}")
    if refused:
        statuses = ", ".join(sorted({str(s) for _d, s in refused}))
        printer.error(
            f"the registry refused to delete {len(refused)} (HTTP {statuses}): let it delete "
            f"({cleanup.ENABLE_DELETE}), then run `mab-hook gc` again"
        )
        return 1
    return 0


def _entry(verdict: Verdict) -> dict[str, Any]:
    created = verdict.upload.created
    return {
        "reference": f"{verdict.upload.repository}:{verdict.upload.tag}",
        "digest": verdict.upload.digest,
        "created": created.isoformat() if created else None,
        "why": verdict.why,
    }
