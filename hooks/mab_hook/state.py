"""What mab-hook keeps between runs, under the repository's git dir (never in the work tree):
the input digests it built, the build logs, and the lock that makes runs take turns.

Everything here is private to its user (directories 0700, files 0600): build logs and bake
files hold build arguments, which are often tokens.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NamedTuple

from mab_hook import filelock
from mab_hook.errors import FatalError

if TYPE_CHECKING:
    import git

DIR_MODE, FILE_MODE = 0o700, 0o600


def root(repo: git.Repo) -> Path:
    """Where mab-hook keeps its files for a repository: shared by its worktrees."""
    return Path(repo.common_dir) / "mab-hook"


class StateError(FatalError, OSError):
    """mab-hook's own files cannot be written: an expected problem (exit 1, with what to do),
    and an OSError for the callers that treat their files as a cache."""


def _unwritable(path: Path, error: OSError) -> StateError:
    return StateError(
        f"cannot write {path}: {error.strerror or error}. mab-hook keeps its logs, records and caches "
        f"under {path.parent if path.name != 'mab-hook' else path}: make it yours and writable "
        "(`ls -ld` it), or remove it (it is rebuilt)"
    )


def private_dir(path: Path) -> Path:
    """`path`, and whichever of its parents are missing, made 0700 each."""
    if not path.is_dir():
        private_dir(path.parent)
        try:
            path.mkdir(mode=DIR_MODE)
        except FileExistsError:
            pass
        except OSError as e:
            raise _unwritable(path, e) from None
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


KEEP_LOGS = 50  # pushes whose logs are kept, by default
RECORD_DAYS = 90.0  # build records older than this go: a rebuild or a registry look-up, never a wrong skip


class Held(NamedTuple):
    """What `.git/mab-hook` holds, for `doctor`."""

    logs: int  # pushes with logs
    records: int  # build records
    size: int  # bytes in all


def prune(
    root: Path, *, keep_logs: int = KEEP_LOGS, record_days: float = RECORD_DAYS, now: float | None = None
) -> None:
    """Keep the logs of the last `keep_logs` pushes and the build records younger than
    `record_days`; the rest goes. Cheap: one listing of each directory."""
    now = time.time() if now is None else now
    logs = sorted(_entries(root / "logs"), key=_mtime, reverse=True)
    for old in logs[keep_logs:]:
        shutil.rmtree(old, ignore_errors=True)
    for record in _entries(root / "built"):
        if now - _mtime(record) > record_days * 86400:
            with contextlib.suppress(OSError):
                record.unlink()


def held(root: Path) -> Held:
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) if root.is_dir() else 0
    return Held(len(_entries(root / "logs")), len(_entries(root / "built")), size)


def _entries(directory: Path) -> list[Path]:
    try:
        return [entry for entry in directory.iterdir() if not entry.name.startswith(".")]
    except OSError:
        return []


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def write_private(path: Path, data: bytes) -> None:
    """Write a file whole or not at all, readable by its owner only: a run that dies, or another
    one writing the same file, never leaves a torn file behind."""
    private_dir(path.parent)
    try:
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")  # 0600
    except OSError as e:
        raise _unwritable(path, e) from None
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def made_private(path: Path) -> None:
    """A file another program wrote here made private (buildx writes its metadata file 0644,
    replacing whatever was there: only a chmod after it keeps it to the pusher)."""
    with contextlib.suppress(OSError):  # none written: nothing to hide
        path.chmod(FILE_MODE)


def open_private(path: Path, mode: str = "w") -> IO[str]:
    """A text file for writing (a log), created 0600; never through a symlink."""
    private_dir(path.parent)
    flags = os.O_WRONLY | os.O_CREAT | NOFOLLOW | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    try:
        fd = os.open(path, flags, FILE_MODE)
    except OSError as e:
        raise _unwritable(path, e) from None
    return os.fdopen(fd, mode, encoding="utf-8", errors="replace")


NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)  # a symlink planted in its place is refused (ELOOP)


@contextmanager
def lock(root: Path, on_wait: Callable[[str], None]) -> Iterator[None]:
    """One run at a time per repository.

    A lock the operating system releases when its holder dies (even by SIGKILL), so a stale
    lock file is simply taken over. The holder's pid is in the file, for whoever waits.
    """
    private_dir(root)
    try:
        fd = os.open(root / "lock", os.O_RDWR | os.O_CREAT | NOFOLLOW, FILE_MODE)
    except OSError as e:
        raise _unwritable(root / "lock", e) from None
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


class KeptByDigest:
    """JSON answers kept by the digest they are about, in a private file: what a digest names
    never changes, so an answer holds for ever. The newest `keep` are kept; the file is a cache
    (anything wrong with it is a miss)."""

    def __init__(self, path: Path | None, keep: int) -> None:
        self.path, self.keep = path, keep
        self._lock = threading.Lock()
        self._data: dict[str, Any] = {}
        self._changed = False
        if path is not None:
            with contextlib.suppress(OSError, ValueError):
                loaded = json.loads(path.read_text())
                self._data = loaded if isinstance(loaded, dict) else {}

    def get(self, digest: str) -> Any:
        with self._lock:
            return self._data.get(digest)

    def put(self, digest: str, value: Any) -> None:
        with self._lock:
            self._data.pop(digest, None)  # newest last: the oldest go first
            self._data[digest] = value
            self._changed = True

    def save(self) -> None:
        with self._lock:
            if self.path is None or not self._changed:
                return
            kept = dict(list(self._data.items())[-self.keep :])
            write_private(self.path, json.dumps(kept).encode())
            self._changed = False
