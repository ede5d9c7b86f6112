"""QEMU emulation as the kernel sees it: the handlers registered in binfmt_misc.

Handlers are matched to an architecture the way the kernel matches a program to a handler, by
magic and mask against an ELF header of that architecture, never by name: distributions call
the same handler `qemu-aarch64`, `aarch64` or `qemu-aarch64-static`.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from mab_hook import platforms

DEFAULT_ROOT = Path("/proc/sys/fs/binfmt_misc")


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
        known = platforms.ARCHES.get(arch)
        if known is None:
            return None
        header = known.elf
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
