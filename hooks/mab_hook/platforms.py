"""Platforms and CPU architectures: the one table of what each is called where.

Docker names a platform `os/arch[/variant]` (`linux/arm/v7`); the kernel reports a machine as
`uname -m` (`armv7l`); binfmt_misc recognises a program by its ELF header; QEMU and the
`tonistiigi/binfmt` installer have names of their own. Everything that maps one to another
reads this table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

ELF_MAGIC = b"\x7fELF"


def elf_ident(bits64: bool, big_endian: bool) -> bytes:
    """e_ident: the magic, the class (32/64-bit), the byte order, version 1, padding."""
    return ELF_MAGIC + bytes([2 if bits64 else 1, 2 if big_endian else 1, 1]) + bytes(9)


def _elf(bits64: bool, big_endian: bool, machine: int) -> bytes:
    """The first 20 bytes of an ELF executable: ident, e_type (EXEC), e_machine."""
    ident = elf_ident(bits64, big_endian)
    order: Literal["big", "little"] = "big" if big_endian else "little"
    return ident + (2).to_bytes(2, order) + machine.to_bytes(2, order)


class Arch(NamedTuple):
    """One CPU architecture, as the architecture part of a Docker platform names it."""

    name: str  # Docker's: "arm64"
    machines: tuple[str, ...]  # `uname -m` of machines that run its programs natively
    elf: bytes  # what binfmt_misc matches a program of it by
    bits64: bool
    big_endian: bool
    elf_machine: int  # e_machine
    installer: str  # `tonistiigi/binfmt --install NAME`


def _arch(name: str, machines: tuple[str, ...], bits64: bool, big: bool, machine: int) -> Arch:
    return Arch(name, machines, _elf(bits64, big, machine), bits64, big, machine, name)


ARCHES = {
    arch.name: arch
    for arch in (
        _arch("amd64", ("x86_64",), True, False, 0x3E),
        _arch("386", ("i386", "i686", "x86_64"), False, False, 0x03),  # amd64 CPUs run x86 too
        _arch("arm64", ("aarch64", "arm64"), True, False, 0xB7),
        _arch("arm", ("armv7l", "armv6l", "armv8l"), False, False, 0x28),
        _arch("riscv64", ("riscv64",), True, False, 0xF3),
        _arch("ppc64le", ("ppc64le",), True, False, 0x15),
        _arch("ppc64", ("ppc64",), True, True, 0x15),
        _arch("s390x", ("s390x",), True, True, 0x16),
        _arch("mips64le", (), True, False, 0x08),  # `uname -m` does not tell the byte order
        _arch("mips64", (), True, True, 0x08),
        _arch("loong64", ("loongarch64",), True, False, 0x102),
    )
}
KNOWN_OS = ("linux", "windows", "freebsd")
# What people write instead of Docker's names (uname -m, Debian architecture names).
ALIASES = {
    "x86_64": "amd64",
    "x86-64": "amd64",
    "aarch64": "arm64",
    "armhf": "arm/v7",
    "armv7": "arm/v7",
    "armv7l": "arm/v7",
    "armel": "arm/v6",
    "armv6": "arm/v6",
    "i386": "386",
    "i686": "386",
    "x86": "386",
}
_ARM_MACHINE_RE = re.compile(r"armv([0-9]+)l")  # `uname -m` of 32-bit ARM: its variant is in it

_PLATFORM_RE = re.compile(r"^([a-z0-9]+)/([a-z0-9_]+)(?:/(v[0-9]+))?$")


class Platform(NamedTuple):
    os: str
    arch: str
    variant: str  # "" when none

    def __str__(self) -> str:
        return "/".join(part for part in self if part)


def parse(platform: str) -> Platform:
    """'linux/arm/v7' -> Platform('linux', 'arm', 'v7'); lenient (the config validates)."""
    parts = [*platform.split("/"), "", ""]
    return Platform(parts[0], parts[1], parts[2])


def arch_of(platform: str) -> str:
    """'linux/arm/v7' -> 'arm', 'linux/amd64/v3' -> 'amd64'."""
    return parse(platform).arch


def problem(platform: str) -> str | None:
    """Why `platform` is not an os/arch[/variant] Docker accepts, with a suggestion; or None."""
    match = _PLATFORM_RE.match(platform)
    parts = platform.split("/")
    guess = ALIASES.get(parts[-1]) or ALIASES.get(parts[0])
    hint = f" (did you mean 'linux/{guess}'?)" if guess else ""
    if not match:
        return (
            f"{platform!r} is not a platform: expected os/arch[/variant] such as "
            f"'linux/amd64', 'linux/arm64' or 'linux/arm/v7'{hint}"
        )
    os_name, arch, _variant = match.groups()
    if os_name not in KNOWN_OS:
        return f"{platform!r}: unknown OS {os_name!r}; allowed: {', '.join(KNOWN_OS)}"
    if arch not in ARCHES:
        return f"{platform!r}: unknown architecture {arch!r}{hint}; allowed: {', '.join(ARCHES)}"
    return None


def native(machine: str, os_name: str = "linux") -> str:
    """The Docker platform a machine (`uname -m`) builds for by itself: its BUILDPLATFORM."""
    arch = next((arch.name for arch in ARCHES.values() if machine in arch.machines), machine)
    variant = _ARM_MACHINE_RE.fullmatch(machine)
    return f"{os_name}/{arch}/v{variant.group(1)}" if variant else f"{os_name}/{arch}"


def runs_natively(machine: str, platform: str) -> bool:
    """Whether a machine (`uname -m`) runs the platform's programs without emulation."""
    arch = ARCHES.get(arch_of(platform))
    return arch is not None and machine in arch.machines


def covers(listed: str, wanted: str) -> bool:
    """Whether a builder listing `listed` builds `wanted` (linux/amd64 serves linux/amd64/v2)."""
    return listed == wanted or listed.startswith(wanted + "/") or wanted.startswith(listed + "/")


def serves(available: str, wanted: str) -> bool:
    """Whether an image of platform `available` is what a build for `wanted` takes, as
    containerd matches them: the same OS and architecture, arm64 with or without its only
    variant v8, and an older variant of arm or amd64 (arm/v6 runs on arm/v7; arm/v7 is
    what plain linux/arm means)."""
    have, want = parse(available), parse(wanted)
    if (have.os, have.arch) != (want.os, want.arch):
        return False
    default = _DEFAULT_VARIANT.get(want.arch, "")
    have_level, want_level = _level(have.variant or default), _level(want.variant or default)
    if want.arch in _ORDERED_VARIANTS:
        return have_level <= want_level
    return (have.variant or default) == (want.variant or default)


_DEFAULT_VARIANT = {"arm64": "v8", "arm": "v7", "amd64": "v1"}
_ORDERED_VARIANTS = ("arm", "amd64")  # a newer CPU of these runs an older variant's programs


def _level(variant: str) -> int:
    digits = variant.removeprefix("v")
    return int(digits) if digits.isdigit() else 0


def of_oci(said: object) -> str:
    """`os/arch[/variant]` of an OCI platform (an index entry's) or an image config; "" when it
    names no architecture (no platform an image is for). No OS means linux, as Docker reads it."""
    if not isinstance(said, Mapping) or not said.get("architecture"):
        return ""
    found: Mapping[str, Any] = said
    parts = (found.get("os") or "linux", found["architecture"], found.get("variant") or "")
    return "/".join(str(part) for part in parts if part)
