"""An exclusive lock on an open file that the operating system drops when its holder dies,
and the holder's pid beside it: flock on POSIX, a locked byte range on Windows."""

from __future__ import annotations

import os
import sys

# Windows locks are mandatory: the pid (at offset 0) stays readable because the lock covers
# one byte far past it.
_LOCKED_BYTE = 1 << 20

if sys.platform == "win32":
    import msvcrt

    def try_lock(fd: int) -> bool:
        os.lseek(fd, _LOCKED_BYTE, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def lock(fd: int) -> None:
        while not try_lock(fd):  # LK_LOCK gives up after 10 s; waiting has no limit here
            os.lseek(fd, _LOCKED_BYTE, os.SEEK_SET)
            try:
                msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
                return
            except OSError:
                continue

else:
    import fcntl

    def try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX)


def read_holder(fd: int) -> str:
    return os.pread(fd, 32, 0).decode(errors="replace").strip() if hasattr(os, "pread") else _read(fd)


def write_holder(fd: int, pid: int) -> None:
    data = f"{pid}\n".ljust(32).encode()
    if hasattr(os, "pwrite"):
        os.pwrite(fd, data, 0)
        return
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, data)


def _read(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 32).decode(errors="replace").strip()
