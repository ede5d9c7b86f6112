"""Time budgets: how much of the pusher's time a pushed commit may cost before a build starts.

Planning reads what the commit holds (Dockerfiles, ignore files, definitions): every step of it
is linear or capped, but a commit can still be large. Work checks its `Deadline` between images
and rules, and stops with a clear error past it, rather than holding a push for hours.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Mapping
from typing import NamedTuple

from mab_hook.errors import FatalError

SECONDS = 120.0  # a 5,000-image repository plans a push in about a second
MOST = 7 * 86400.0  # any time limit: past it a timer overflows (`timeout = 1e308`), and no build is that long
ENV = "MAB_HOOK_BUDGET"  # the pusher's own setting, for hooks run without arguments


class Deadline(NamedTuple):
    at: float  # time.monotonic() past which work stops
    seconds: float
    what: str  # "planning"

    def check(self) -> None:
        if time.monotonic() > self.at:
            raise FatalError(
                f"{self.what} took more than {self.seconds:g} s and was stopped; nothing was built. What "
                "the pushed commits hold decides what planning costs (ignore files, Dockerfiles, "
                f"definitions); to allow more, run with --budget SECONDS or set {ENV}"
            )


NONE = Deadline(math.inf, math.inf, "")


def seconds(text: str) -> float:
    """A positive, finite number of seconds (argparse turns the ValueError into a usage error)."""
    value = float(text)
    if not (0 < value <= MOST):
        raise ValueError(text)
    return value


seconds.__name__ = "number of seconds above 0 and at most a week"  # what argparse names


def add_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--budget",
        type=seconds,
        metavar="SECONDS",
        help=f"stop planning that takes longer (default: ${ENV}, else {SECONDS:g})",
    )


def start(seconds: float | None, env: Mapping[str, str], what: str) -> Deadline:
    """A deadline `seconds` from now: the command line's, else the environment's, else SECONDS."""
    if seconds is None:
        try:
            seconds = float(env.get(ENV) or SECONDS)
        except ValueError:
            raise FatalError(f"{ENV}={env[ENV]!r} is not a number of seconds") from None
    if not 0 < seconds <= MOST:
        raise FatalError(
            f"a time budget must be a number of seconds above 0, at most {MOST:g}, not {seconds!r}"
        )
    return Deadline(time.monotonic() + seconds, seconds, what)
