"""Host readiness: can this machine build every platform asked for, and if not, what to run.

Every check has a stable id, a status (ok, warn, fail), a one-line finding, a fix and a code
for what is wrong. Nothing here changes the host; `apply_fixes` does the few safe fixes.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import platform as os_platform
import socket
from collections.abc import Callable, Mapping
from pathlib import Path

from mab_hook import binfmt, process, state
from mab_hook import probe as probes
from mab_hook.process import Completed
from mab_hook.readiness.access import check_registry
from mab_hook.readiness.emulation import Scope, check_platform, probe
from mab_hook.readiness.engine import check_builder, check_docker, insecure_registries
from mab_hook.readiness.fixes import apply_fixes
from mab_hook.readiness.location import check_engine, locate
from mab_hook.readiness.model import (
    BUILDX_VERSION,
    CONTEXT,
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
    host = prefetched(host, [VERSION, BUILDX_VERSION, inspect(wanted.builder), LS, INFO, CONTEXT])
    checks = check_docker(host)
    if any(c.status == FAIL for c in checks):
        return Report(tuple(checks), None)
    engine = locate(host)
    checks.append(check_engine(engine))
    builder_checks, builder = check_builder(host, wanted)
    checks += builder_checks
    # This machine's binfmt_misc only for an engine on its kernel (there may be no /proc at all).
    state = (
        binfmt.read(host.binfmt_root) if engine.local else binfmt.Binfmt(host.binfmt_root, False, False, ())
    )
    if builder is not None:
        scope = Scope(host, builder, state, wanted, engine)
        checks += [check_platform(scope, platform) for platform in wanted.platforms]
    insecure = insecure_registries(host)
    if wanted.registry:
        checks.append(check_registry(host, wanted.registry, insecure))
    return Report(tuple(checks), builder, insecure)


def prefetched(host: Host, commands: list[tuple[str, ...]]) -> Host:
    """The host with the answers to `commands` fetched concurrently and remembered."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(commands)) as pool:
        answers = dict(zip(commands, pool.map(host.run, commands), strict=True))
    return host._replace(run=lambda cmd: answers[cmd] if cmd in answers else host.run(cmd))


def local_host(env: Mapping[str, str], machine: str, probes: Path | None = None) -> Host:
    """This machine, and docker as its environment sets it up. `probes`: where probe results
    are remembered (per engine), so an engine elsewhere is probed once, not on every push."""

    def run(cmd: tuple[str, ...]) -> Completed:
        return process.run(cmd, env=env, check=False, timeout=120)

    def access(reference: str, insecure: Insecure) -> Access:
        return Registry(env, insecure=insecure).access(reference)

    def probe_once(platform: str, builder: str | None, engine: str) -> bool | None:
        return remembered_probe(probes, run, platform, builder, engine)

    return Host(run=run, machine=machine, access=access, hostname=socket.gethostname(),
                kernel=os_platform.release(), probe=probe_once)  # fmt: skip


def remembered_probe(
    path: Path | None,
    run: Callable[[tuple[str, ...]], Completed],
    platform: str,
    builder: str | None,
    engine: str,
) -> bool | None:
    """A probe build's answer, remembered in `path` (JSON) by engine, builder and platform."""
    if not probes.supported(platform):
        return None
    key = f"{engine}|{builder or ''}|{platform}"
    known: dict[str, bool] = {}
    if path is not None:
        with contextlib.suppress(OSError, ValueError):
            known = json.loads(path.read_text())
    if key in known:
        return bool(known[key])
    ran = probes.build_probe(platform, builder, run).returncode == 0
    if path is not None and ran:  # a failure is asked again next time: it may be fixed by then
        state.write_private(path, json.dumps({**known, key: ran}).encode())
    return ran
