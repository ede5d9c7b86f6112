"""The platform table: Docker names, machines, ELF headers, installer names."""

from __future__ import annotations

import struct

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


# The ELF spec's numbers (System V gABI e_machine, EI_CLASS, EI_DATA) and what `uname -m` says,
# written out independently of the module's table: a slip in either is a wrong emulator check.
SPEC = {  # name: (e_machine, 64-bit, big-endian, `uname -m` of machines running it natively)
    "amd64": (62, True, False, ("x86_64",)),
    "386": (3, False, False, ("i386", "i686", "x86_64")),
    "arm64": (183, True, False, ("aarch64", "arm64")),
    "arm": (40, False, False, ("armv7l", "armv6l", "armv8l")),
    "riscv64": (243, True, False, ("riscv64",)),
    "ppc64le": (21, True, False, ("ppc64le",)),
    "ppc64": (21, True, True, ("ppc64",)),
    "s390x": (22, True, True, ("s390x",)),
    "mips64le": (8, True, False, ()),
    "mips64": (8, True, True, ()),
    "loong64": (258, True, False, ("loongarch64",)),
}


@pytest.mark.parametrize("name", sorted(SPEC))
def test_each_architecture_is_what_the_elf_spec_and_the_kernel_say(name: str) -> None:
    machine, bits64, big, machines = SPEC[name]
    arch = platforms.ARCHES[name]
    order = ">" if big else "<"
    header = (
        b"\x7fELF"
        + bytes([2 if bits64 else 1, 2 if big else 1, 1])
        + bytes(9)
        + struct.pack(f"{order}HH", 2, machine)
    )
    assert (arch.elf, arch.bits64, arch.big_endian, arch.elf_machine) == (header, bits64, big, machine)
    assert (arch.machines, arch.installer) == (machines, name)
    assert set(platforms.ARCHES) == set(SPEC)


@pytest.mark.parametrize(("written", "meant"), [
    ("x86_64", "amd64"), ("x86-64", "amd64"), ("aarch64", "arm64"), ("armhf", "arm/v7"), ("armv7", "arm/v7"),
    ("armv7l", "arm/v7"), ("armel", "arm/v6"), ("armv6", "arm/v6"), ("i386", "386"), ("i686", "386"), ("x86", "386"),
])  # fmt: skip
def test_what_people_write_for_an_architecture_is_suggested(written: str, meant: str) -> None:
    hint = f" (did you mean 'linux/{meant}'?)"
    if "-" in written:  # no architecture of Docker's is spelled so
        expected = (f"'linux/{written}' is not a platform: expected os/arch[/variant] such as 'linux/amd64', "
                    f"'linux/arm64' or 'linux/arm/v7'{hint}")  # fmt: skip
    else:
        expected = f"'linux/{written}': unknown architecture '{written}'{hint}; allowed: {', '.join(platforms.ARCHES)}"
    assert platforms.problem(f"linux/{written}") == expected


@pytest.mark.parametrize(("machine", "platform"), [
    ("x86_64", "linux/amd64"), ("aarch64", "linux/arm64"), ("arm64", "linux/arm64"), ("armv7l", "linux/arm/v7"),
    ("armv6l", "linux/arm/v6"), ("armv8l", "linux/arm/v8"), ("i686", "linux/386"), ("i386", "linux/386"),
    ("s390x", "linux/s390x"), ("loongarch64", "linux/loong64"), ("ppc64le", "linux/ppc64le"),
    ("sparc64", "linux/sparc64"),  # a machine Docker has no name for is said as it is
])  # fmt: skip
def test_the_platform_a_machine_builds_for_by_itself(machine: str, platform: str) -> None:
    assert platforms.native(machine) == platform


def test_other_systems_and_what_a_bad_platform_says() -> None:
    assert platforms.problem("windows/amd64") is None and platforms.problem("freebsd/amd64") is None
    assert (
        platforms.problem("darwin/arm64")
        == "'darwin/arm64': unknown OS 'darwin'; allowed: linux, windows, freebsd"
    )
    assert platforms.problem("linux") == ("'linux' is not a platform: expected os/arch[/variant] such as "
                                          "'linux/amd64', 'linux/arm64' or 'linux/arm/v7'")  # fmt: skip
    assert platforms.parse("linux/arm64") == platforms.Platform("linux", "arm64", "")
    assert platforms.covers("linux/amd64/v2", "linux/amd64") and not platforms.covers(
        "linux/arm", "linux/arm64"
    )


def test_parse_fills_what_is_not_there_and_covers_goes_both_ways() -> None:
    assert platforms.parse("linux") == platforms.Platform("linux", "", "")
    assert platforms.covers("linux/amd64", "linux/amd64/v2")  # a builder listing the family builds a level


@pytest.mark.parametrize(
    ("available", "wanted", "serves"),
    [
        ("linux/amd64", "linux/amd64", True),
        ("linux/amd64", "linux/arm64", False),
        ("linux/arm64/v8", "linux/arm64", True),  # arm64's only variant
        ("linux/arm64", "linux/arm64/v8", True),
        ("linux/arm/v7", "linux/arm", True),  # plain arm means v7
        ("linux/arm/v6", "linux/arm/v7", True),  # a v7 CPU runs v6 programs
        ("linux/arm/v7", "linux/arm/v6", False),
        ("linux/arm", "linux/arm/v6", False),
        ("linux/arm/v5", "linux/arm", True),
        ("linux/amd64", "linux/amd64/v3", True),  # a v3 CPU runs baseline x86-64
        ("linux/amd64/v3", "linux/amd64", False),
        ("linux/amd64/v2", "linux/amd64/v2", True),
        ("linux/amd64/v1", "linux/amd64", True),  # v1 is what plain amd64 means
        ("linux/amd64/v2", "linux/amd64/v1", False),
        ("linux/386", "linux/amd64", False),  # another architecture: never
        ("linux/arm/v7", "linux/arm64", False),
        ("windows/amd64", "linux/amd64", False),
        ("linux/riscv64", "linux/riscv64", True),
        ("linux/ppc64le", "linux/ppc64", False),
    ],
)
def test_which_image_platform_serves_a_build_for_another(available: str, wanted: str, serves: bool) -> None:
    assert platforms.serves(available, wanted) is serves


@pytest.mark.parametrize(
    ("said", "platform"),
    [
        ({"os": "linux", "architecture": "arm", "variant": "v7"}, "linux/arm/v7"),
        ({"architecture": "arm64"}, "linux/arm64"),  # no OS: Docker reads linux
        ({"os": "windows", "architecture": "amd64", "os.version": "10.0"}, "windows/amd64"),
        ({"os": "linux", "variant": "v8"}, ""),  # no architecture: no platform
        ({"os": "linux", "architecture": ""}, ""),
        (["linux", "amd64"], ""),
        (None, ""),
    ],
)
def test_the_platform_an_oci_platform_or_image_config_says(said: object, platform: str) -> None:
    assert platforms.of_oci(said) == platform
