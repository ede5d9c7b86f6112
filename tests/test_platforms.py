"""The platform table: Docker names, machines, ELF headers, installer names."""

from __future__ import annotations

import pytest

from mab_hook import platforms


@pytest.mark.parametrize(
    "platform",
    ["linux/amd64", "linux/arm64", "linux/arm/v7", "linux/arm/v6", "linux/386", "linux/riscv64", "linux/s390x",
     "linux/amd64/v3"],
)  # fmt: skip
def test_valid_platforms(platform: str) -> None:
    assert platforms.problem(platform) is None


@pytest.mark.parametrize(("platform", "problem"), [
    ("linux/aarch64", "unknown architecture 'aarch64' (did you mean 'linux/arm64'?)"),
    ("x86_64", "is not a platform: expected os/arch[/variant]"),
    ("plan9/amd64", "unknown OS 'plan9'"),
])  # fmt: skip
def test_invalid_platforms_say_what_is_meant(platform: str, problem: str) -> None:
    found = platforms.problem(platform)
    assert found is not None and problem in found


@pytest.mark.parametrize(("machine", "platform", "native"), [
    ("x86_64", "linux/amd64", True), ("x86_64", "linux/386", True), ("x86_64", "linux/arm64", False),
    ("aarch64", "linux/arm64", True), ("arm64", "linux/arm64", True), ("armv7l", "linux/arm/v7", True),
    ("aarch64", "linux/arm/v7", False), ("x86_64", "linux/nonsense", False), ("x86_64", "linux/amd64/v3", True),
    ("aarch64", "linux/amd64", False),
])  # fmt: skip
def test_what_runs_natively(machine: str, platform: str, native: bool) -> None:
    assert platforms.runs_natively(machine, platform) is native


def test_a_machines_own_platform() -> None:
    assert platforms.native("x86_64") == "linux/amd64"
    assert platforms.native("aarch64") == "linux/arm64"
    assert platforms.native("armv7l") == "linux/arm/v7"


def test_parse_and_covers() -> None:
    assert platforms.parse("linux/arm/v7") == ("linux", "arm", "v7")
    assert str(platforms.parse("linux/arm64")) == "linux/arm64"
    assert platforms.covers("linux/amd64/v2", "linux/amd64")
    assert not platforms.covers("linux/arm64", "linux/amd64")


def test_every_arch_has_an_elf_header_of_its_own_class_and_byte_order() -> None:
    for arch in platforms.ARCHES.values():
        assert arch.elf[:4] == b"\x7fELF"
        assert arch.elf[4] == (2 if arch.bits64 else 1)
        assert arch.elf[5] == (2 if arch.big_endian else 1)
        assert int.from_bytes(arch.elf[18:20], "big" if arch.big_endian else "little") == arch.elf_machine
