"""The images lab tests leave in the lab engine's store, and their removal.

With the docker driver and the containerd image store every build that pushes also keeps its
image in the engine's store, and a tag that moves leaves the image it named behind, dangling. A
test run left some two thousand of them, and a store that size makes the engine slow for
everyone: `docker image rm` took 30 s, `docker image ls` 40 s. So each test session removes
what it made: the images under the namespaces it handed out (`Lab.namespace()`), and the dangling
images and images named for a registry a test started that appeared while it ran; and, when it
starts, the images under the namespaces of sessions that ended without doing so (killed, or from
before this module) and those named for a test's registry that is gone. A session claims its
namespaces in a file named for its process, so one running beside it keeps its own.

Removal goes through containerd (`ctr`, shipped with the lab's engine), which the engine's image
store is: `docker image rm` walks every image for each one removed.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

# Names the test namespaces take in the store: the lab registry's, or the engine's own for builds
# that are not pushed (`docker.io/` is how the store spells an unqualified name).
NAMESPACE = re.compile(r"^(?:[^/]+:\d+|docker\.io/mab-test)/(t[0-9a-f]{10})/")
# Registries tests start for themselves (tests/conftest.start_registry): a free port on the
# loopback address, or on the TEST-NET address the TLS tests serve on.
EPHEMERAL = re.compile(r"^(127\.0\.0\.1|192\.0\.2\.\d+):(\d+)/")
DANGLING = "moby-dangling@"
BATCH = 200  # references per `ctr images rm`


def _started(pid: int) -> str | None:
    """The process's start time (clock ticks since boot): a pid alone is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]


class Claims:
    """The namespaces this session handed out, in a file other sessions can read."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.file = directory / str(os.getpid())
        self.mine: set[str] = set()

    def claim(self, namespace: str) -> None:
        if not self.mine:
            self.directory.mkdir(parents=True, exist_ok=True)
            self.file.write_text(f"{_started(os.getpid())}\n")
        self.mine.add(namespace)
        with self.file.open("a") as f:
            f.write(namespace + "\n")

    def others_live(self) -> set[str]:
        """The namespaces claimed by sessions still running; a dead one's file is removed."""
        live: set[str] = set()
        for file in self.directory.glob("[0-9]*") if self.directory.is_dir() else ():
            started, *namespaces = file.read_text().splitlines() or [""]
            if file != self.file and _started(int(file.name)) == started:
                live.update(namespaces)
            elif file != self.file:
                file.unlink(missing_ok=True)
        return live

    def release(self) -> None:
        self.file.unlink(missing_ok=True)


class Store:
    """The lab engine's image store, through containerd."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = dict(env)
        self.socket = Path(env.get("MAB_LAB_DIR", "/var/tmp/mab-lab")) / "exec/containerd/containerd.sock"

    def _ctr(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = ("ctr", "--address", str(self.socket), "--namespace", "moby", *args)
        return subprocess.run(command, env=self.env, capture_output=True, text=True, check=False)

    def available(self) -> bool:
        return self.socket.is_socket() and self._ctr("version").returncode == 0

    def references(self) -> set[str]:
        listed = self._ctr("images", "ls", "--quiet")
        return set(listed.stdout.split()) if listed.returncode == 0 else set()

    def remove(self, references: Iterable[str]) -> None:
        found = sorted(references)
        for start in range(0, len(found), BATCH):
            self._ctr("images", "rm", *found[start : start + BATCH])


def namespace_of(reference: str) -> str | None:
    found = NAMESPACE.match(reference)
    return found.group(1) if found else None


def left_by_others(references: Iterable[str], live: set[str]) -> set[str]:
    """Images under a test namespace no running session claims."""
    return {ref for ref in references if (ns := namespace_of(ref)) is not None and ns not in live}


def registry_of(reference: str, lab_registry: str) -> tuple[str, int] | None:
    """The address of a registry a test started, if the reference names one."""
    found = EPHEMERAL.match(reference)
    if found is None or reference.startswith(lab_registry + "/"):
        return None
    return found.group(1), int(found.group(2))


def answers(address: tuple[str, int]) -> bool:
    try:
        socket.create_connection(address, timeout=0.5).close()
    except OSError:
        return False
    return True


def left_behind(
    references: Iterable[str],
    live: set[str],
    lab_registry: str,
    listening: Callable[[tuple[str, int]], bool] = answers,
) -> set[str]:
    """Images under a test namespace no running session claims, and those named for a
    registry a test started that no longer answers (it went with its session)."""
    found = left_by_others(references, live)
    for ref in set(references) - found:
        address = registry_of(ref, lab_registry)
        if address is not None and not listening(address):
            found.add(ref)
    return found


def made_by(references: Iterable[str], mine: set[str], before: set[str], lab_registry: str) -> set[str]:
    """Images under this session's namespaces; dangling ones, and ones named for a registry a
    test started, that were not there before."""
    return {
        ref
        for ref in references
        if namespace_of(ref) in mine
        or (ref not in before and (ref.startswith(DANGLING) or registry_of(ref, lab_registry)))
    }
