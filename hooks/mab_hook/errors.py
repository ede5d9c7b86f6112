"""The one error type for expected problems: its message says what is wrong and what to run."""

from __future__ import annotations


class FatalError(Exception):
    """An expected problem (bad config, docker unreachable, ...): exit 1 with the message."""
