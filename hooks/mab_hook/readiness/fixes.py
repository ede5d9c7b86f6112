"""The safe fixes `mab-hook doctor --fix` applies, found by the codes of failing checks.

Emulators are not installed here: that runs a privileged container, so it is printed as a
command, and checked afterwards by reading /proc, never by the installer's exit code.
"""

from __future__ import annotations

from mab_hook import process
from mab_hook.readiness.model import OK, Host, Report, Wanted


def apply_fixes(host: Host, report: Report, wanted: Wanted) -> list[str]:
    """Mount binfmt_misc, create and select a builder, bootstrap a stopped one; what was done."""
    done: list[str] = []
    codes = {check.code for check in report.checks if check.status != OK}
    if "binfmt-unmounted" in codes:
        _do(host, ("mount", "-t", "binfmt_misc", "binfmt_misc", str(host.binfmt_root)), done)
    if "builder-missing" in codes:
        spec = wanted.new_builder(wanted.builder or "multi-arch")
        for cmd in spec.create_commands(use=wanted.builder is None):
            if not _do(host, cmd, done):
                break
    elif "builder-stopped" in codes and report.builder is not None:
        _do(host, ("docker", "buildx", "inspect", "--bootstrap", report.builder.name), done)
    return done


def _do(host: Host, cmd: tuple[str, ...], done: list[str]) -> bool:
    result = host.run(cmd)
    if result.returncode == 0:
        done.append(f"{' '.join(cmd)}: done")
        return True
    tail = " ".join(process.tail_lines(result.stderr + result.stdout, 2))
    done.append(f"{' '.join(cmd)}: failed (exit {result.returncode}): {tail}")
    return False
