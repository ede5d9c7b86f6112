from __future__ import annotations

from pathlib import Path

import pytest

from mab_hook import binfmt

# As Debian's qemu-user-static registers them (real file contents).
AARCH64 = """enabled
interpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P
flags: PF
offset 0
magic 7f454c460201010000000000000000000200b700
mask ffffffffffffff00fffffffffffffffffeffffff
"""
ARM = """enabled
interpreter /usr/libexec/qemu-binfmt/arm-binfmt-P
flags: PF
offset 0
magic 7f454c4601010100000000000000000002002800
mask ffffffffffffff00fffffffffffffffffeffffff
"""
RISCV64 = """enabled
interpreter /usr/bin/qemu-riscv64-static
flags: F
offset 0
magic 7f454c460201010000000000000000000200f300
mask ffffffffffffff00fffffffffffffffffeffffff
"""
S390X = """enabled
interpreter /usr/bin/qemu-s390x
flags: OCF
offset 0
magic 7f454c4602020100000000000000000000020016
mask ffffffffffffff00fffffffffffffffffffeffff
"""
JAR = """enabled
interpreter /usr/bin/jexec
flags:
extension .jar
"""


def proc(tmp_path: Path, status: str = "enabled", **handlers: str) -> Path:
    root = tmp_path / "binfmt_misc"
    root.mkdir(parents=True)
    (root / "register").write_text("")
    (root / "status").write_text(status + "\n")
    for name, text in handlers.items():
        (root / name.replace("_", "-")).write_text(text)
    return root


def test_reads_handlers(tmp_path: Path) -> None:
    state = binfmt.read(proc(tmp_path, qemu_aarch64=AARCH64, jar=JAR))
    assert state.mounted and state.enabled
    (handler,) = state.handlers  # the .jar handler matches by extension, not magic
    assert handler.name == "qemu-aarch64"
    assert handler.interpreter == "/usr/libexec/qemu-binfmt/aarch64-binfmt-P"
    assert (handler.flags, handler.offset, handler.enabled) == ("PF", 0, True)


def test_not_mounted(tmp_path: Path) -> None:
    state = binfmt.read(tmp_path / "empty")
    assert (state.mounted, state.handlers) == (False, ())


@pytest.mark.parametrize(("arch", "handler"), [
    ("arm64", "aarch64"), ("arm", "armhf"), ("riscv64", "riscv64-static"), ("s390x", "s390x"),
    ("amd64", None), ("ppc64le", None), ("unknown", None),
])  # fmt: skip
def test_handlers_are_matched_by_magic_not_by_name(tmp_path: Path, arch: str, handler: str | None) -> None:
    # Named the way various distributions name them: none is called after Docker's arch.
    state = binfmt.read(proc(tmp_path, aarch64=AARCH64, armhf=ARM, riscv64_static=RISCV64, s390x=S390X))
    found = state.handler_for(arch)
    assert (found.name if found else None) == handler


def test_an_enabled_handler_wins_over_a_disabled_one(tmp_path: Path) -> None:
    state = binfmt.read(proc(tmp_path, a_old=AARCH64.replace("enabled", "disabled", 1), b_new=AARCH64))
    found = state.handler_for("arm64")
    assert found is not None
    assert (found.name, found.enabled) == ("b-new", True)


def test_globally_disabled(tmp_path: Path) -> None:
    assert not binfmt.read(proc(tmp_path, "disabled", qemu_aarch64=AARCH64)).enabled


def test_garbage_handler_files_are_skipped(tmp_path: Path) -> None:
    state = binfmt.read(proc(tmp_path, broken="enabled\nmagic zz\n", empty=""))
    assert state.handlers == ()
