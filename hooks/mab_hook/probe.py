"""`doctor --probe`: prove a platform by running a program of it in a real build.

No image is pulled: the probe is `FROM scratch` plus a tiny static ELF executable, made here,
that only calls exit(0). If a RUN of it succeeds for a platform, the builder really executes
that platform's programs, natively or through emulation.
"""

from __future__ import annotations

import struct
import tempfile
from collections.abc import Callable
from pathlib import Path

from mab_hook import builders, platforms, process
from mab_hook.process import Completed

# Machine code for exit(0) per architecture, and the ELF e_flags it needs.
_EXIT0 = {
    # mov eax,60; xor edi,edi; syscall
    "amd64": (0, bytes.fromhex("b83c00000031ff0f05")),
    # mov eax,1; xor ebx,ebx; int 0x80
    "386": (0, bytes.fromhex("b80100000031dbcd80")),
    # movz x8,#93; movz x0,#0; svc #0
    "arm64": (0, struct.pack("<3I", 0xD2800BA8, 0xD2800000, 0xD4000001)),
    # mov r7,#1; mov r0,#0; svc #0 (EABI 5)
    "arm": (0x05000000, struct.pack("<3I", 0xE3A07001, 0xE3A00000, 0xEF000000)),
    # li a7,93; li a0,0; ecall
    "riscv64": (0, struct.pack("<3I", 0x05D00893, 0x00000513, 0x00000073)),
    # li r0,1; li r3,0; sc (ELFv2)
    "ppc64le": (2, struct.pack("<3I", 0x38000001, 0x38600000, 0x44000002)),
    # lghi r2,0; svc 1
    "s390x": (0, bytes.fromhex("a72900000a01")),
}


def supported(platform: str) -> bool:
    return platforms.arch_of(platform) in _EXIT0


def executable(platform: str) -> bytes:
    """A static ELF executable for `platform` that exits with status 0: an ELF header, one
    loadable segment (the whole file, readable and executable) and the code after them."""
    arch = platforms.ARCHES[platforms.arch_of(platform)]
    bits64, big, machine = arch.bits64, arch.big_endian, arch.elf_machine
    flags, code = _EXIT0[arch.name]
    order, word = (">" if big else "<"), ("Q" if bits64 else "I")
    base, header_size, entry_size = (0x400000, 64, 56) if bits64 else (0x10000, 52, 32)
    size = header_size + entry_size + len(code)
    ident = platforms.elf_ident(bits64, big)
    entry = base + header_size + entry_size
    # e_type EXEC, e_machine, e_version, e_entry, e_phoff, e_shoff, e_flags, e_ehsize,
    # e_phentsize, e_phnum (1), and no section headers.
    fields = (2, machine, 1, entry, header_size, 0, flags, header_size, entry_size, 1, 0, 0, 0)
    header = ident + struct.pack(f"{order}HHI{word}{word}{word}IHHHHHH", *fields)
    # p_flags (5: R+X) comes second in the 64-bit program header, seventh in the 32-bit one.
    if bits64:
        segment = struct.pack(f"{order}IIQQQQQQ", 1, 5, 0, base, base, size, size, 0x1000)
    else:
        segment = struct.pack(f"{order}IIIIIIII", 1, 0, base, base, size, size, 5, 0x1000)
    return header + segment + code


DOCKERFILE = 'FROM scratch\nCOPY probe /probe\nRUN ["/probe"]\n'


def build_probe(
    platform: str, builder: str | None, run_command: Callable[[tuple[str, ...]], Completed]
) -> Completed:
    """Build the probe for one platform, without cache, exporting nothing."""
    with tempfile.TemporaryDirectory(prefix="mab-hook-probe-") as tmp:
        context = Path(tmp)
        (context / "probe").write_bytes(executable(platform))
        (context / "probe").chmod(0o755)
        (context / "Dockerfile").write_text(DOCKERFILE)
        cmd = (
            "docker",
            "buildx",
            "build",
            *builders.flag(builder),
            "--platform",
            platform,
            "--no-cache",
            "--progress=plain",
            "--output",
            "type=cacheonly",
            str(context),
        )
        return run_command(cmd)


def summary(result: Completed) -> str:
    return " ".join(process.tail_lines(result.stderr + result.stdout, 3))
