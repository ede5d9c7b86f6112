"""One run's build phase: the run lock, the housekeeping before and after (worktrees an
earlier run left behind, logs past their keep), the children that must not outlive it (^C,
SIGTERM, SIGHUP), and what every commit's builds share; and where the run reports as it goes."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import NamedTuple

import git

from mab_hook import definitions, grants, process, state
from mab_hook.checkout import remove_stale
from mab_hook.grants import Grants
from mab_hook.plan import Plan
from mab_hook.registry import Registry
from mab_hook.results import Interrupted
from mab_hook.state import State, lock, root


def _nothing(*args: object) -> None:
    pass


class Events(NamedTuple):
    """Where a run reports as it goes (the summary comes after)."""

    progress: Callable[[str], None]  # a line per image event: building, built, skipped...
    build_line: Callable[[str], None]  # buildx's own output, for --verbose
    notice: Callable[[str], None] = _nothing  # what the output must keep (a wait, say)
    step: Callable[[str, str, str], None] = _nothing  # (image, platform, "2/3 RUN make") started
    done: Callable[[str], None] = _nothing  # an image's build ended
    failed: Callable[[str, Sequence[str]], None] = _nothing  # an image's build failed: its excerpt


class Ledger:
    """Every reference that reached a registry during the run, as it happens: the report in
    any ending, ^C included, says what is out there."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._published: dict[str, None] = {}

    def add(self, references: Sequence[str]) -> None:
        with self._lock:
            self._published.update(dict.fromkeys(references))

    @property
    def published(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._published)


class Builds(NamedTuple):
    """What every commit's builds share in one run."""

    env: Mapping[str, str]
    state: State
    group: process.Group
    events: Events
    timeout: float | None  # from the command line; else each image's own
    ledger: Ledger
    registry: Registry
    granted: Grants  # what the pusher gives builds (secrets, SSH, the host's network)
    stack: ExitStack  # the worktrees checked out, removed when the run ends
    plugin: str = ""  # the buildx plugin docker would run, run directly; "": `docker buildx`


@contextlib.contextmanager
def session(
    repo: git.Repo,
    plans: Sequence[Plan],
    env: Mapping[str, str],
    events: Events,
    *,
    registry: Registry,
    timeout: float | None = None,
    granted: Grants | None = None,
) -> Iterator[Builds]:
    """One run's build phase, under the run lock: the worktrees it checks out are removed, no
    buildx process outlives it (^C, SIGTERM and SIGHUP included), and its logs stay within bounds.
    `granted`: what the pusher grants builds, when already read (else read here)."""
    if granted is None:
        granted = grants.read(Path(repo.working_tree_dir or repo.git_dir), env)
    state_ = State(root(repo))
    with lock(state_.root, partial(waiting, events)), ExitStack() as stack:
        plugin = str(definitions.buildx_plugin(env) or "")
        group = process.Group(env)
        run = Builds(env, state_, group, events, timeout, Ledger(), registry, granted, stack, plugin)
        for path in remove_stale(repo):
            events.notice(f"removed the worktree an earlier run left behind: {path}")
        try:
            yield run
        except KeyboardInterrupt as e:
            run.group.terminate_all()
            raise Interrupted(run.ledger.published, str(e)) from None
        except BaseException:
            run.group.terminate_all()
            raise
        finally:
            run.group.close()
            keep = max((plan.config.keep_logs for plan in plans), default=state.KEEP_LOGS)
            state.prune(run.state.root, keep_logs=keep)


def waiting(events: Events, text: str) -> None:
    """On the terminal now, and in the output for later."""
    events.progress(text)
    events.notice(text)
