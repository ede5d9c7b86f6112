"""QEMU emulation as the kernel sees it: the handlers registered in binfmt_misc.

Handlers are matched to an architecture the way the kernel matches a program to a handler, by
magic and mask against an ELF header of that architecture, never by name: distributions call
the same handler `qemu-aarch64`, `aarch64` or `qemu-aarch64-static`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, NamedTuple

DEFAULT_ROOT = Path("/proc/sys/fs/binfmt_misc")


def _elf(bits64: bool, big_endian: bool, machine: int) -> bytes:
    """The first 20 bytes of an ELF executable: ident, e_type (EXEC), e_machine."""
    ident = b"\x7fELF" + bytes([2 if bits64 else 1, 2 if big_endian else 1, 1]) + bytes(9)
    order: Literal["big", "little"] = "big" if big_endian else "little"
    return ident + (2).to_bytes(2, order) + machine.to_bytes(2, order)


# Keyed by the architecture part of a Docker platform (arm/v6 and arm/v7 share "arm").
ELF_HEADERS = {
    "amd64": _elf(True, False, 0x3E),
    "386": _elf(False, False, 0x03),
    "arm64": _elf(True, False, 0xB7),
    "arm": _elf(False, False, 0x28),
    "riscv64": _elf(True, False, 0xF3),
    "ppc64le": _elf(True, False, 0x15),
    "ppc64": _elf(True, True, 0x15),
    "s390x": _elf(True, True, 0x16),
    "mips64le": _elf(True, False, 0x08),
    "mips64": _elf(True, True, 0x08),
    "loong64": _elf(True, False, 0x102),
}
# Names for the emulator installer (tonistiigi/binfmt --install ...).
INSTALL_NAMES = {
    "arm64": "arm64",
    "arm": "arm",
    "386": "386",
    "amd64": "amd64",
    "riscv64": "riscv64",
    "ppc64le": "ppc64le",
    "ppc64": "ppc64",
    "s390x": "s390x",
    "mips64le": "mips64le",
    "mips64": "mips64",
    "loong64": "loong64",
}


class Handler(NamedTuple):
    name: str
    enabled: bool
    interpreter: str
    flags: str
    offset: int
    magic: bytes
    mask: bytes

    def matches(self, header: bytes) -> bool:
        """The kernel's test: header[offset:] & mask == magic & mask."""
        window = header[self.offset : self.offset + len(self.magic)]
        if len(window) < len(self.magic):
            return False
        mask = self.mask or b"\xff" * len(self.magic)
        return all((w & m) == (g & m) for w, g, m in zip(window, self.magic, mask, strict=False))


class Binfmt(NamedTuple):
    root: Path
    mounted: bool
    enabled: bool  # the global switch, /proc/sys/fs/binfmt_misc/status
    handlers: tuple[Handler, ...]

    def handler_for(self, arch: str) -> Handler | None:
        """The handler the kernel would pick for `arch`: enabled ones first, as the kernel does."""
        header = ELF_HEADERS.get(arch)
        if header is None:
            return None
        found = [handler for handler in self.handlers if handler.matches(header)]
        found.sort(key=lambda handler: not handler.enabled)
        return found[0] if found else None


def read(root: Path = DEFAULT_ROOT) -> Binfmt:
    if not (root / "register").exists():
        return Binfmt(root, False, False, ())
    status = _read(root / "status").strip()
    handlers = []
    for entry in sorted(root.iterdir()):
        if entry.name in ("register", "status") or not entry.is_file():
            continue
        handler = parse_handler(entry.name, _read(entry))
        if handler is not None:
            handlers.append(handler)
    return Binfmt(root, True, status != "disabled", tuple(handlers))


def parse_handler(name: str, text: str) -> Handler | None:
    """A handler file (`enabled`, `interpreter ...`, `flags: PF`, `offset 0`, `magic ...`, `mask ...`).

    Extension-matched handlers (`extension .jar`) have no magic and are of no interest here.
    """
    lines = text.splitlines()
    if not lines:
        return None
    fields: dict[str, str] = {}
    for line in lines[1:]:
        key, _, value = line.partition(" ")
        fields[key.rstrip(":")] = value.strip()
    if "magic" not in fields:
        return None
    try:
        magic = bytes.fromhex(fields["magic"])
        mask = bytes.fromhex(fields.get("mask", ""))
        offset = int(fields.get("offset", "0"))
    except ValueError:
        return None
    return Handler(
        name,
        lines[0].strip() == "enabled",
        fields.get("interpreter", ""),
        fields.get("flags", ""),
        offset,
        magic,
        mask,
    )


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def arch_of(platform: str) -> str:
    """'linux/arm/v7' -> 'arm', 'linux/amd64/v3' -> 'amd64'."""
    parts = platform.split("/")
    return parts[1] if len(parts) > 1 else parts[0]


NATIVE = {
    "x86_64": ("amd64", "386"),  # amd64 CPUs run 32-bit x86 natively
    "aarch64": ("arm64",),
    "armv7l": ("arm",),
    "armv6l": ("arm",),
    "i686": ("386",),
    "riscv64": ("riscv64",),
    "ppc64le": ("ppc64le",),
    "s390x": ("s390x",),
}


def native(machine: str, platform: str) -> bool:
    """Whether a machine (`uname -m`) runs the platform's programs without emulation."""
    return arch_of(platform) in NATIVE.get(machine, ())
