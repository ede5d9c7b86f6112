"""`mab-hook status`: the publishes of the last pushes, waiting for the remote, published, or
not and why."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple, TextIO

from mab_hook import pending, publisher, state
from mab_hook.output import Printer
from mab_hook.pending import Record
from mab_hook.repository import open_repo


class Options(NamedTuple):
    wait: float | None = None  # seconds to wait until no publish is waiting
    json: bool = False
    repo: Path | None = None


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    found = argparse.ArgumentParser(
        prog="mab-hook status",
        description="The publishes of the last pushes: waiting for the remote, published, or not and why.",
    )
    found.add_argument(
        "--wait",
        type=float,
        metavar="SECONDS",
        default=None,
        help="wait until no publish is waiting (at most SECONDS); exit 1 if one still is",
    )
    found.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    found.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    found.add_argument("-C", "--repo", type=Path, default=None, metavar="DIR")
    found.add_argument("-v", "--verbose", action="store_true", help=argparse.SUPPRESS)
    return found.parse_args(argv)


def options(args: argparse.Namespace) -> Options:
    return Options(args.wait, args.json, args.repo)


def run(options: Options, env: Mapping[str, str], stdin: TextIO, printer: Printer) -> int:
    root = state.root(open_repo(options.repo or Path.cwd()))
    deadline = time.monotonic() + (options.wait or 0)
    records = pending.every(root)
    while options.wait is not None and _waiting(records) and time.monotonic() < deadline:
        time.sleep(0.05)
        records = pending.every(root)
    if options.json:
        json.dump([r._asdict() for _path, r in records], sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        printer.line(text(records) if records else "no publish yet: pushes of publishing refs make them")
    return 1 if options.wait is not None and _waiting(records) else 0


def _waiting(records: Sequence[tuple[Path, Record]]) -> bool:
    return any(r.state == pending.WAITING and not r.said for _path, r in records)


def text(records: Sequence[tuple[Path, Record]]) -> str:
    lines = []
    for _path, record in reversed(records):
        refs = ", ".join(publisher.names(record))
        lines.append(f"{record.created}  {record.remote} {refs}: {record.state}")
        lines += [f"    {line}" for line in record.said]
    return "\n".join(lines)
