from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from mab_hook import binfmt, platforms, probe
from tests.conftest import Lab
from tests.test_binfmt import AARCH64, ARM, RISCV64, S390X

PROBED = (
    "linux/amd64",
    "linux/386",
    "linux/arm64",
    "linux/arm/v7",
    "linux/riscv64",
    "linux/ppc64le",
    "linux/s390x",
)


@pytest.mark.parametrize(("platform", "handler"), [
    ("linux/arm64", AARCH64), ("linux/arm/v7", ARM), ("linux/riscv64", RISCV64), ("linux/s390x", S390X),
])  # fmt: skip
def test_the_kernel_would_hand_each_probe_to_its_emulator(platform: str, handler: str) -> None:
    parsed = binfmt.parse_handler("h", handler)
    assert parsed is not None
    assert parsed.matches(probe.executable(platform))
    assert not parsed.matches(probe.executable("linux/amd64"))


def test_unsupported_platforms() -> None:
    assert [p for p in (*PROBED, "linux/mips64le", "linux/ppc64") if not probe.supported(p)] == [
        "linux/mips64le", "linux/ppc64"]  # fmt: skip


# QEMU's user-mode emulator for each foreign probe (Debian's qemu-user-static, which the lab
# installs): run directly, so the test needs no binfmt_misc handler of the machine's.
EMULATOR = {"linux/amd64": "x86_64", "linux/386": "i386", "linux/arm64": "aarch64", "linux/arm/v7": "arm", "linux/riscv64": "riscv64",
            "linux/ppc64le": "ppc64le", "linux/s390x": "s390x"}  # fmt: skip


@pytest.mark.lab
@pytest.mark.parametrize("platform", PROBED)
def test_each_probe_runs_and_exits_0(lab: Lab, tmp_path: Path, platform: str) -> None:
    """Natively, or under QEMU's emulator for its CPU: the program really is an exit(0)."""
    path = tmp_path / "probe"
    path.write_bytes(probe.executable(platform))
    path.chmod(0o755)
    native = platform == platforms.native(os.uname().machine)
    emulator = () if native else (f"/usr/bin/qemu-{EMULATOR[platform]}-static",)
    assert subprocess.run((*emulator, str(path)), check=False, env=os.environ).returncode == 0
