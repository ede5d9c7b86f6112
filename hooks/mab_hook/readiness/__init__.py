"""Host readiness: can this machine build every platform asked for, and if not, what to run.

Every check has a stable id, a status (ok, warn, fail), a one-line finding, a fix and a code
for what is wrong. Nothing here changes the host; `apply_fixes` does the few safe fixes.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Mapping

from mab_hook import binfmt, process
from mab_hook.process import Completed
from mab_hook.readiness.access import check_registry
from mab_hook.readiness.emulation import check_platform, probe
from mab_hook.readiness.engine import check_builder, check_docker, insecure_registries
from mab_hook.readiness.fixes import apply_fixes
from mab_hook.readiness.model import (
    BUILDX_VERSION,  # fmt: skip
    FAIL,
    INFO,
    LS,
    OK,
    VERSION,
    WARN,
    Check,
    Host,
    Report,
    Wanted,
    inspect,
)
from mab_hook.registry import Access, Insecure, Registry

__all__ = ["FAIL", "OK", "WARN", "Check", "Host", "Report", "Wanted", "apply_fixes", "check", "local_host",
           "probe"]  # fmt: skip


def check(host: Host, wanted: Wanted) -> Report:
    # The docker CLI takes 0.1 to 0.3 s a call here: ask everything at once, then read answers.
    host = prefetched(host, [VERSION, BUILDX_VERSION, inspect(wanted.builder), LS, INFO])
    checks = check_docker(host)
    if any(c.status == FAIL for c in checks):
        return Report(tuple(checks), None)
    builder_checks, builder = check_builder(host, wanted)
    checks += builder_checks
    state = binfmt.read(host.binfmt_root)
    if builder is not None:
        checks += [check_platform(host, builder, state, platform, wanted) for platform in wanted.platforms]
    insecure = insecure_registries(host)
    if wanted.registry:
        checks.append(check_registry(host, wanted.registry, insecure))
    return Report(tuple(checks), builder, insecure)


def prefetched(host: Host, commands: list[tuple[str, ...]]) -> Host:
    """The host with the answers to `commands` fetched concurrently and remembered."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(commands)) as pool:
        answers = dict(zip(commands, pool.map(host.run, commands), strict=True))
    return host._replace(run=lambda cmd: answers[cmd] if cmd in answers else host.run(cmd))


def local_host(env: Mapping[str, str], machine: str) -> Host:
    def run(cmd: tuple[str, ...]) -> Completed:
        return process.run(cmd, env=env, check=False, timeout=120)

    def access(reference: str, insecure: Insecure) -> Access:
        return Registry(env, insecure=insecure).access(reference)

    return Host(run=run, machine=machine, access=access)
