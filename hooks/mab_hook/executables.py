"""Which CPU a program is for, from its first bytes; and the programs of an image layer.

An ELF program says its class (32/64-bit), byte order and machine in its first 20 bytes; a PE
program (Windows) its machine in its COFF header. That is what the kernel (or binfmt_misc and
QEMU) goes by, so it is what decides where the image runs. Layers are read as they stream (a
tar, gzip-compressed or not), a few header bytes per file, nothing kept.
"""

from __future__ import annotations

import contextlib
import struct
import tarfile
from collections.abc import Sequence
from typing import IO, NamedTuple

from mab_hook import patterns, platforms

ET_EXEC, ET_DYN = 2, 3  # programs, and shared libraries (PIE programs too): what runs
HEAD = 64  # bytes read of every file: an ELF header is 52/64 bytes; a PE's "MZ" starts it
PE_HEAD = 4096  # bytes read of a file that starts with "MZ": its COFF and optional headers
CLR_DIRECTORY = 14  # the optional header's data directory of a .NET assembly (no CPU of its own)
PE_MACHINES = {0x8664: "amd64", 0x14C: "386", 0xAA64: "arm64", 0x1C4: "arm"}
# OCI layer media types mab-hook reads; others (zstd before Python 3.14) are not checked.
GZIP_TYPES = (
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
)
TAR_TYPES = ("application/vnd.oci.image.layer.v1.tar", "application/vnd.docker.image.rootfs.diff.tar")


class Program(NamedTuple):
    """What a file's header says it runs on."""

    kind: str  # "ELF" or "PE"
    arch: str  # Docker's architecture name ("arm64"), or "" when it is none of them
    described: str  # "ELF 64-bit LSB, machine 0x3e (amd64)"


def program(head: bytes) -> Program | None:
    """The program a file's first bytes (HEAD of them, PE_HEAD for "MZ") make it; None for
    anything else (data, scripts, ELF objects and core files, .NET assemblies)."""
    if head.startswith(platforms.ELF_MAGIC):
        return _elf(head)
    if head.startswith(b"MZ"):
        return _pe(head)
    return None


def _elf(head: bytes) -> Program | None:
    if len(head) < 20 or head[4] not in (1, 2) or head[5] not in (1, 2):
        return None
    bits64, big = head[4] == 2, head[5] == 2
    order = ">" if big else "<"
    kind, machine = struct.unpack_from(f"{order}HH", head, 16)
    if kind not in (ET_EXEC, ET_DYN):
        return None
    arch = next(
        (
            a.name
            for a in platforms.ARCHES.values()
            if (a.elf_machine, a.bits64, a.big_endian) == (machine, bits64, big)
        ),
        "",
    )
    described = f"ELF {64 if bits64 else 32}-bit {'MSB' if big else 'LSB'}, machine {machine:#x}"
    return Program("ELF", arch, f"{described} ({arch or 'no platform here'})")


def _pe(head: bytes) -> Program | None:
    try:
        offset = struct.unpack_from("<I", head, 0x3C)[0]
        if head[offset : offset + 4] != b"PE\0\0":
            return None
        machine = struct.unpack_from("<H", head, offset + 4)[0]
        optional = offset + 24  # the optional header, after the COFF header
        magic = struct.unpack_from("<H", head, optional)[0]
        clr = optional + (96 if magic == 0x10B else 112) + CLR_DIRECTORY * 8
        if any(struct.unpack_from("<II", head, clr)):
            return None  # .NET: IL the runtime compiles for whatever CPU it runs on
    except struct.error:  # headers cut short: no program mab-hook can tell
        return None
    arch = PE_MACHINES.get(machine, "")
    return Program("PE", arch, f"PE, machine {machine:#x} ({arch or 'no platform here'})")


def foreign(found: Program, platform: str) -> bool:
    """Whether a program of the platform's own format (ELF, PE for Windows) is for another CPU.
    An arm program's variant is not in its header: any 32-bit arm passes for arm/v6 and arm/v7.
    A file of the other format is data there (a .exe in a Linux image runs nowhere in it)."""
    wanted = platforms.parse(platform)
    native = "PE" if wanted.os == "windows" else "ELF"
    return found.kind == native and found.arch != wanted.arch


def allowed(path: str, globs: Sequence[str]) -> bool:
    """Whether an image path ("/usr/lib/qemu/qemu-arm") matches one of `foreign-binaries`, in
    Docker's pattern syntax (`*` within a directory, `**` any depth; as in .dockerignore, a
    pattern that matches a directory covers what is under it)."""
    relative = path.lstrip("/")
    return any(patterns.pattern_matcher(glob.lstrip("/")).matches(relative) for glob in globs)


class Foreign(NamedTuple):
    path: str  # in the image: "/usr/local/bin/app"
    program: Program


def scan_layer(stream: IO[bytes], media_type: str, platform: str) -> tuple[Foreign, ...] | None:
    """The programs of a layer (as it streams) that are not for `platform`; None when the layer
    is not one mab-hook can read (zstd, say)."""
    if media_type in GZIP_TYPES:
        mode = "r|gz"
    elif media_type in TAR_TYPES:
        mode = "r|"
    else:
        return None
    found = []
    windows = platforms.parse(platform).os == "windows"
    with tarfile.open(fileobj=stream, mode=mode) as archive:  # type: ignore[call-overload]
        for member in archive:
            head = _head(archive, member, windows)
            made = program(head) if head else None
            if made is not None and foreign(made, platform):
                found.append(Foreign(_image_path(member.name), made))
    return tuple(found)


def _image_path(name: str) -> str:
    return "/" + (name[2:] if name.startswith("./") else name).lstrip("/")


def _head(archive: tarfile.TarFile, member: tarfile.TarInfo, windows: bool) -> bytes:
    if not member.isfile() or member.size < 20 or member.name.rsplit("/", 1)[-1].startswith(".wh."):
        return b""
    with contextlib.closing(archive.extractfile(member)) as data:  # type: ignore[type-var]
        if data is None:
            return b""
        head = data.read(HEAD)
        if head.startswith(b"MZ") and windows:  # on Linux a PE file is data (a .NET assembly, say)
            head += data.read(PE_HEAD - len(head))
        return head
