"""Command-line arguments several commands take, each said once."""

from __future__ import annotations

import argparse
from pathlib import Path

from mab_hook import budget


def add_output(parser: argparse.ArgumentParser, *, json_help: str | None = None) -> None:
    """--json, --color, -C/--repo and -v: how a command reads the repository and reports."""
    parser.add_argument("--json", action="store_true", help=json_help or "machine-readable output on stdout")
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    parser.add_argument(
        "-C",
        "--repo",
        type=Path,
        default=None,
        metavar="DIR",
        help="the repository (default: the one around the current directory)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show buildx's output as it comes")


def add_range(parser: argparse.ArgumentParser) -> None:
    """What a by-hand command works on: every image of a commit, or what changed since a ref."""
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("--all", action="store_true", help="every image of the commit (--to, default HEAD)")
    scope.add_argument("--from", dest="from_ref", metavar="REF", help="the images that changed since REF")
    parser.add_argument("--to", dest="to_ref", metavar="REF", help="the commit (default HEAD)")
    add_output(parser)
    budget.add_argument(parser)
