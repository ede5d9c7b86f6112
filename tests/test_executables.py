"""Which CPU a program is for, and the foreign programs of a layer: real headers (this machine's
own programs, and ones written to the ELF and PE specs), real tar and gzip streams."""

from __future__ import annotations

import gzip
import io
import struct
import sys
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import pytest

from mab_hook import executables, platforms
from mab_hook.executables import Program

GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
TAR = "application/vnd.oci.image.layer.v1.tar"
ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"


def elf(arch: str, *, kind: int = 2) -> bytes:
    """The first 64 bytes of a program for `arch` (e_type `kind`: 2 EXEC, 3 DYN, 1 REL)."""
    spec = platforms.ARCHES[arch]
    order: Literal["big", "little"] = "big" if spec.big_endian else "little"
    head = spec.elf[:16] + kind.to_bytes(2, order) + spec.elf_machine.to_bytes(2, order)
    return head + bytes(64 - len(head))


def pe(machine: int, *, dotnet: bool = False, plus: bool = True) -> bytes:
    """A PE file's headers: the DOS stub pointing at "PE\\0\\0", the COFF header, an optional header
    (PE32+ or PE32) whose CLR data directory is set for a .NET assembly."""
    offset = 0x80
    head = bytearray(1024)
    head[:2] = b"MZ"
    struct.pack_into("<I", head, 0x3C, offset)
    head[offset : offset + 4] = b"PE\0\0"
    struct.pack_into("<H", head, offset + 4, machine)
    optional = offset + 24
    struct.pack_into("<H", head, optional, 0x20B if plus else 0x10B)
    if dotnet:  # the CLR directory's address, one byte of it: a directory read a byte off would miss it
        struct.pack_into("<II", head, optional + (112 if plus else 96) + 14 * 8, 0x01, 0)
    return bytes(head)


@pytest.mark.parametrize("arch", sorted(platforms.ARCHES))
def test_every_architecture_is_told_by_its_elf_header(arch: str) -> None:
    found = executables.program(elf(arch, kind=3))
    assert found is not None and found.kind == "ELF" and found.arch == arch


def test_this_machines_own_programs_are_its_platform() -> None:
    head = Path(sys.executable).resolve().read_bytes()[:64]
    found = executables.program(head)
    assert found is not None
    assert found.arch == platforms.arch_of(platforms.native(__import__("platform").machine()))


def test_what_is_no_program() -> None:
    assert executables.program(elf("amd64", kind=1)) is None  # an object file (.o, a kernel module)
    assert executables.program(elf("amd64", kind=4)) is None  # a core file
    assert executables.program(b"#!/bin/sh\necho hi\n") is None
    assert executables.program(b"\x7fELF\x03\x01") is None  # a class that is none
    assert executables.program(b"\x7fELF" + bytes(8)) is None
    odd = executables.program(
        elf("amd64")[:4] + b"\x01" + elf("amd64")[5:]
    )  # x86-64 machine, 32-bit class: x32
    assert odd is not None and odd.arch == "" and "no platform here" in odd.described


@pytest.mark.parametrize(
    ("machine", "arch"), [(0x8664, "amd64"), (0x14C, "386"), (0xAA64, "arm64"), (0x1C4, "arm"), (0x9041, "")]
)
def test_pe_machines(machine: int, arch: str) -> None:
    assert executables.program(pe(machine)) == Program(
        "PE", arch, f"PE, machine {machine:#x} ({arch or 'no platform here'})"
    )
    assert executables.program(pe(machine, plus=False)) is not None


def test_a_dotnet_assembly_is_no_program_of_a_cpu_and_a_truncated_pe_is_none() -> None:
    assert executables.program(pe(0x14C, dotnet=True)) is None
    assert executables.program(pe(0x14C, dotnet=True, plus=False)) is None
    assert executables.program(pe(0x8664)[:0x90]) is None  # the PE header cut short
    assert executables.program(b"MZ" + bytes(10)) is None


@pytest.mark.parametrize(
    ("program_of", "platform", "foreign"),
    [
        ("amd64", "linux/amd64", False),
        ("amd64", "linux/arm64", True),
        ("arm", "linux/arm/v7", False),
        ("arm", "linux/arm/v6", False),  # the variant is not in the header
        ("arm64", "linux/arm/v7", True),
        ("386", "linux/amd64", True),
        ("s390x", "linux/s390x", False),
        ("ppc64", "linux/ppc64le", True),  # byte order counts
    ],
)
def test_which_elf_programs_are_foreign(program_of: str, platform: str, foreign: bool) -> None:
    found = executables.program(elf(program_of))
    assert found is not None and executables.foreign(found, platform) is foreign


def test_a_file_of_the_other_systems_format_is_data_there() -> None:
    windows_amd64, linux_arm64 = executables.program(pe(0x8664)), executables.program(elf("arm64"))
    assert windows_amd64 is not None and linux_arm64 is not None
    assert not executables.foreign(windows_amd64, "linux/arm64")
    assert not executables.foreign(linux_arm64, "windows/amd64")
    assert executables.foreign(windows_amd64, "windows/arm64")


def layer(
    files: Mapping[str, bytes], *, compress: bool = True, links: Mapping[str, str] | None = None
) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            archive.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            archive.addfile(info)
    return gzip.compress(out.getvalue()) if compress else out.getvalue()


def test_a_layer_names_its_foreign_programs_by_image_path() -> None:
    files = {
        "./usr/local/bin/app": elf("amd64") + bytes(5000),  # the cross-compiling mistake
        "usr/bin/tool": elf("arm64"),
        ".hidden/lib.so": elf("amd64", kind=3),
        "opt/obj.o": elf("amd64", kind=1),
        "etc/script": b"#!/bin/sh\n" + bytes(100),
        "usr/bin/.wh.old": b"",
        "small": b"\x7fELF",
    }
    found = executables.scan_layer(io.BytesIO(layer(files, links={"bin/app": "/usr/local/bin/app"})), GZIP,
                                   "linux/arm64")  # fmt: skip
    assert found is not None
    assert [(f.path, f.program.arch) for f in found] == [
        ("/usr/local/bin/app", "amd64"),
        ("/.hidden/lib.so", "amd64"),
    ]
    plain = executables.scan_layer(io.BytesIO(layer(files, compress=False)), TAR, "linux/amd64")
    assert plain is not None and [f.path for f in plain] == ["/usr/bin/tool"]


def test_a_layer_compressed_otherwise_is_not_read() -> None:
    assert executables.scan_layer(io.BytesIO(b"(\xb5/\xfd"), ZSTD, "linux/amd64") is None


def test_a_windows_layer_reads_pe_headers_past_the_first_bytes() -> None:
    files = {
        "Files/app.exe": pe(0x8664),
        "Files/lib.dll": pe(0x14C, dotnet=True),
        "Files/arm.exe": pe(0xAA64),
    }
    found = executables.scan_layer(io.BytesIO(layer(files)), GZIP, "windows/amd64")
    assert found is not None and [f.path for f in found] == ["/Files/arm.exe"]


def test_allowed_paths_are_globs_of_image_paths() -> None:
    patterns = ("/usr/lib/qemu/qemu-*", "opt/toolchains/**", "/usr/libexec/emu")
    assert executables.allowed("/usr/lib/qemu/qemu-arm", patterns)
    assert not executables.allowed("/usr/lib/qemu-other/qemu-arm", patterns)
    assert executables.allowed(
        "/usr/libexec/emu/bin/x", patterns
    )  # a directory: what is under it, as .dockerignore
    assert executables.allowed("/opt/toolchains/arm/bin/gcc", patterns)
    assert not executables.allowed("/usr/local/bin/app", patterns)
    assert not executables.allowed("/usr/lib", patterns)


def test_an_elf_header_is_its_first_20_bytes_and_its_class_and_byte_order_must_be_real() -> None:
    assert executables.program(elf("arm64")[:20]) == Program(
        "ELF", "arm64", "ELF 64-bit LSB, machine 0xb7 (arm64)"
    )
    assert executables.program(elf("arm64")[:19]) is None
    assert executables.program(elf("s390x")) == Program(
        "ELF", "s390x", "ELF 64-bit MSB, machine 0x16 (s390x)"
    )
    assert executables.program(elf("arm")) == Program("ELF", "arm", "ELF 32-bit LSB, machine 0x28 (arm)")
    for index in (4, 5):  # class, then byte order: 1 or 2, nothing else
        for value in (0, 3):
            broken = bytearray(elf("amd64"))
            broken[index] = value
            assert executables.program(bytes(broken)) is None, (index, value)
    unknown = executables.program(elf("amd64")[:18] + b"\x99\x99" + bytes(44))
    assert unknown == Program("ELF", "", "ELF 64-bit LSB, machine 0x9999 (no platform here)")


def test_a_pe_header_is_read_where_the_dos_header_points() -> None:
    far = bytearray(pe(0xAA64))
    moved = bytearray(1024)
    moved[:2] = b"MZ"
    struct.pack_into("<I", moved, 0x3C, 0x100)
    moved[0x100 : 0x100 + 0x200] = far[0x80 : 0x80 + 0x200]
    assert executables.program(bytes(moved)) == Program("PE", "arm64", "PE, machine 0xaa64 (arm64)")
    cut = pe(0x8664)[: 0x80 + 24]  # the COFF header, then nothing: no optional header to read
    assert executables.program(cut) is None


@pytest.mark.parametrize("media_type", [GZIP, "application/vnd.docker.image.rootfs.diff.tar.gzip"])
def test_gzip_layers_of_either_name_are_read(media_type: str) -> None:
    found = executables.scan_layer(io.BytesIO(layer({"bin/x": elf("amd64")})), media_type, "linux/arm64")
    assert found is not None and [f.path for f in found] == ["/bin/x"]


@pytest.mark.parametrize("media_type", [TAR, "application/vnd.docker.image.rootfs.diff.tar"])
def test_plain_tar_layers_of_either_name_are_read(media_type: str) -> None:
    found = executables.scan_layer(io.BytesIO(layer({"bin/x": elf("amd64")}, compress=False)), media_type,
                                   "linux/arm64")  # fmt: skip
    assert found is not None and [f.path for f in found] == ["/bin/x"]


def test_paths_whiteouts_and_the_smallest_program() -> None:
    files = {
        "Xorg/bin/x": elf("amd64"),  # a path that starts with a capital X stays whole
        "usr/lib/.wh.gone": elf("amd64"),  # a whiteout is no file of the image, whatever it holds
        "a/b/c/.wh..wh..opq": elf("amd64"),
        "tiny": elf("amd64")[:20],  # the 20 bytes that tell
        "shorter": elf("amd64")[:19],
    }
    found = executables.scan_layer(io.BytesIO(layer(files)), GZIP, "linux/arm64")
    assert found is not None and [f.path for f in found] == ["/Xorg/bin/x", "/tiny"]
    assert executables.allowed("/Xorg/bin/x", ("Xorg/**",)) and executables.allowed(
        "/Xorg/bin/x", ("/Xorg/**",)
    )
    assert not executables.allowed("/Xorg/bin/x", ("org/**",))
