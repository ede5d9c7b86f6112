"""The one error type for expected problems: its message says what is wrong and what to run."""

from __future__ import annotations

# What `mab-hook` exits with: done; an expected problem (its message says what to run); a bug;
# stopped by ^C or SIGTERM; by SIGHUP. argparse's own usage errors exit 2.
EXIT_OK, EXIT_FAIL, EXIT_BUG, EXIT_INTERRUPTED, EXIT_HANGUP = 0, 1, 3, 130, 129


class FatalError(Exception):
    """An expected problem (bad config, docker unreachable, ...): exit 1 with the message."""
