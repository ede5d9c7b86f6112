"""What mab-hook keeps between runs, under the repository's git dir (never in the work tree):
the input digests it built, the build logs, and the lock that makes runs take turns.

Everything here is private to its user (directories 0700, files 0600): build logs and bake
files hold build arguments, which are often tokens.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NamedTuple

from mab_hook import filelock

if TYPE_CHECKING:
    import git

DIR_MODE, FILE_MODE = 0o700, 0o600


def root(repo: git.Repo) -> Path:
    """Where mab-hook keeps its files for a repository: shared by its worktrees."""
    return Path(repo.common_dir) / "mab-hook"


def private_dir(path: Path) -> Path:
    """`path`, and whichever of its parents are missing, made 0700 each."""
    if not path.is_dir():
        private_dir(path.parent)
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=DIR_MODE)
    return path


class State(NamedTuple):
    root: Path  # <git common dir>/mab-hook

    def logs(self, sha: str) -> Path:
        return private_dir(self.root / "logs" / sha[:12])

    def _record(self, entry: str, digest: str) -> Path:
        return self.root / "built" / f"{entry}-{digest}.json"

    def built(self, entry: str, digest: str) -> bool:
        """Whether an image (by its bake entry name, unique per image) was built from these inputs."""
        return self._record(entry, digest).exists()

    def record(self, entry: str, digest: str, details: dict[str, Any]) -> None:
        record = json.dumps({"entry": entry, "digest": digest, "at": time.time(), **details}) + "\n"
        write_private(self._record(entry, digest), record.encode())


def write_private(path: Path, data: bytes) -> None:
    """Write a file whole or not at all, readable by its owner only: a run that dies, or another
    one writing the same file, never leaves a torn file behind."""
    private_dir(path.parent)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")  # 0600
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def open_private(path: Path, mode: str = "w") -> IO[str]:
    """A text file for writing (a log), created 0600."""
    private_dir(path.parent)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    return os.fdopen(os.open(path, flags, FILE_MODE), mode, encoding="utf-8", errors="replace")


@contextmanager
def lock(root: Path, on_wait: Callable[[str], None]) -> Iterator[None]:
    """One run at a time per repository.

    A lock the operating system releases when its holder dies (even by SIGKILL), so a stale
    lock file is simply taken over. The holder's pid is in the file, for whoever waits.
    """
    private_dir(root)
    fd = os.open(root / "lock", os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        if not filelock.try_lock(fd):
            holder = filelock.read_holder(fd) or "unknown"
            on_wait(
                f"another mab-hook run (pid {holder}) is building in this repository; waiting for it "
                "to finish (^C to stop waiting)"
            )
            filelock.lock(fd)
        filelock.write_holder(fd, os.getpid())
        yield
    finally:
        os.close(fd)
