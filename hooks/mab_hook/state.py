"""What mab-hook keeps between runs, under the repository's git dir (never in the work tree):
the input digests it built, the build logs, and the lock that makes runs take turns."""

from __future__ import annotations

import fcntl
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import git


def root(repo: git.Repo) -> Path:
    """Where mab-hook keeps its files for a repository: shared by its worktrees."""
    return Path(repo.common_dir) / "mab-hook"


class State(NamedTuple):
    root: Path  # <git common dir>/mab-hook

    def logs(self, sha: str) -> Path:
        return self.root / "logs" / sha[:12]

    def _record(self, name: str, digest: str) -> Path:
        return self.root / "built" / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}-{digest}.json"

    def built(self, name: str, digest: str) -> bool:
        return self._record(name, digest).exists()

    def record(self, name: str, digest: str, details: dict[str, Any]) -> None:
        record = json.dumps({"image": name, "digest": digest, "at": time.time(), **details}) + "\n"
        write_whole(self._record(name, digest), record.encode())


def write_whole(path: Path, data: bytes) -> None:
    """Write a file whole or not at all: a run that dies, or another one writing the same
    file, never leaves a torn file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


@contextmanager
def lock(root: Path, on_wait: Callable[[str], None]) -> Iterator[None]:
    """One run at a time per repository.

    An flock, so a run that dies (even by SIGKILL) releases it: a stale lock file is simply
    taken over. The holder's pid is in the file, for the message of whoever waits.
    """
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            on_wait(
                f"another mab-hook run (pid {holder}) is building in this repository; waiting for it "
                "to finish (^C to stop waiting)"
            )
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)
