"""Host readiness: can this machine build every platform asked for, and if not, what to run.

Every check has a stable id, a status (ok, warn, fail), a one-line finding, a fix and a code
for what is wrong. Nothing here changes the host; `apply_fixes` does the few safe fixes.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import json
import os
import platform as os_platform
import shutil
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mab_hook import binfmt, process, state
from mab_hook import probe as probes
from mab_hook.buildkitd import RegistrySettings
from mab_hook.process import Completed
from mab_hook.readiness.access import check_mirror, check_registry
from mab_hook.readiness.emulation import Scope, check_platform, probe
from mab_hook.readiness.engine import check_builder, check_docker, docker_hub_mirrors, insecure_registries
from mab_hook.readiness.fixes import apply_fixes
from mab_hook.readiness.location import DEFAULT_SOCKET, check_engine, locate
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
    Verdict,
    Wanted,
    in_context,
    inspect,
)
from mab_hook.registry import Access, Insecure, Registry

__all__ = [
    "DEFAULT_SOCKET",
    "FAIL",
    "OK",
    "WARN",
    "Check",
    "Host",
    "Report",
    "Verdict",
    "Wanted",
    "apply_fixes",
    "ask",
    "check",
    "docker_hub_mirrors",
    "in_context",
    "local_host",
    "probe",
]


def check(host: Host, wanted: Wanted) -> Report:
    """Whether the host can build what is wanted: the default engine, or the engine the
    platforms are routed to (`wanted.engine`)."""
    if wanted.engine:
        return check_routed(host, wanted)
    return _check(host, wanted)


def check_routed(host: Host, wanted: Wanted) -> Report:
    """The checks of an engine platforms are routed to, run where it is: a docker context's
    engine through `docker --context` (buildx then drives its own builder), else the buildx
    builder of that name. Each check is named after the engine."""
    name = wanted.engine
    wanted = wanted._replace(builder=name, builder_spec=None)
    context = host.run(("docker", "context", "inspect", "--format", "{{.Name}}", name)).returncode == 0
    if context:
        report = _check(host.with_context(name), wanted)
    elif host.run(inspect(name)).returncode == 0:
        report = _check(host, wanted)
    else:
        fix = (
            f"create it: `docker context create {name} --docker host=ssh://USER@HOST` for an engine "
            f"elsewhere, or a buildx builder named {name}; or route the platforms elsewhere (`engines`)"
        )
        finding = f"no docker context or buildx builder is named {name}"
        report = Report((Check("engine", FAIL, finding, fix, "engine-missing"),), None)
    named = tuple(c._replace(id=f"{name}/{c.id}") for c in report.checks)
    return report._replace(checks=named, engine=name, context=name if context else "")


def _check(host: Host, wanted: Wanted) -> Report:
    # The docker CLI takes 0.1 to 0.3 s a call here: ask everything at once, then read answers.
    host = prefetched(host, [VERSION, BUILDX_VERSION, inspect(wanted.builder), LS, INFO, CONTEXT])
    checks = check_docker(host, wanted.buildx)
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
    insecure = insecure_registries(host, builder)
    if builder is not None:
        checks.append(check_mirror(host, builder, insecure))
    if wanted.registry:
        checks.append(
            check_registry(host, wanted.registry, insecure, engine_here=engine.local, builder=builder)
        )
    # Which platforms run natively, by the engine's CPU: only where every node of the builder
    # runs on that engine (a node elsewhere may be another CPU).
    here = builder is None or all(builder.node_is_local(node) for node in builder.nodes)
    return Report(tuple(checks), builder, insecure, architecture=engine.architecture if here else "")


def prefetched(host: Host, commands: list[tuple[str, ...]]) -> Host:
    """The host with the answers to `commands` fetched concurrently and remembered."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(commands)) as pool:
        answers = dict(zip(commands, pool.map(host.run, commands), strict=True))
    return host._replace(run=lambda cmd: answers[cmd] if cmd in answers else host.run(cmd))


def local_host(env: Mapping[str, str], machine: str, probes: Path | None = None, context: str = "") -> Host:
    """This machine, and docker as its environment sets it up (`context`: through that docker
    context instead). `probes`: where probe results are remembered (per engine), so an engine
    elsewhere is probed once, not on every push."""

    def run(cmd: tuple[str, ...]) -> Completed:
        return process.run(in_context(cmd, context), env=env, check=False, timeout=120)

    def access(reference: str, insecure: Insecure) -> Access:
        return Registry(env, insecure=insecure).access(reference)

    def engine_distrust(reference: str, insecure: Insecure) -> str | None:
        return Registry(env, insecure=insecure).engine_distrust(reference)

    def builder_distrust(
        reference: str, insecure: Insecure, settings: RegistrySettings, builder: str
    ) -> tuple[str, str] | None:
        return Registry(env, insecure=insecure).builder_distrust(reference, settings, builder)

    def probe_once(platform: str, builder: str | None, engine: str) -> bool | None:
        return remembered_probe(probes, run, platform, builder, engine)

    return Host(
        run=run,
        machine=machine,
        access=access,
        hostname=socket.gethostname(),
        kernel=os_platform.release(),
        probe=probe_once,
        engine_distrust=engine_distrust,
        builder_distrust=builder_distrust,
        on_context=lambda name: local_host(env, machine, probes, name),
    )


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


READY_FOR = 600.0  # seconds a ready host is taken to stay ready, for the same question


def probes_file(root: Path) -> Path:
    """Where the probes that passed are kept (`root`: .git/mab-hook), for doctor and the gate."""
    return root / "cache" / "probes.json"


def ready_file(root: Path) -> Path:
    """Where a host found ready is remembered, for READY_FOR seconds."""
    return root / "cache" / "ready.json"


def fingerprint(env: Mapping[str, str], binfmt_root: Path) -> str:
    """What readiness depends on beyond the question itself: the engine docker talks to, its
    config (credentials, contexts) and this machine's emulators. A change to any asks again."""
    config = Path(env.get("DOCKER_CONFIG") or Path(env.get("HOME") or Path.home()) / ".docker")
    stamps = []
    # Their times change when credentials, contexts or builders do; buildx rewrites `current`
    # (the builder in use) on every build, so what it says counts, not when it was written.
    for path in (config / "config.json", config / "contexts" / "meta", config / "buildx" / "instances"):
        with contextlib.suppress(OSError):
            stamps.append(f"{path}:{path.stat().st_mtime_ns}")
    with contextlib.suppress(OSError):
        stamps.append((config / "buildx" / "current").read_text())
    handlers = []
    with contextlib.suppress(OSError):
        handlers = [f"{p.name}:{p.read_text(errors='replace')}" for p in sorted(binfmt_root.iterdir())]
    # The docker binary, and the engine's socket: a dockerd started again makes a new one.
    docker = shutil.which("docker", path=env.get("PATH")) or ""
    host = env.get("DOCKER_HOST", "")
    socket_path = (
        host.removeprefix("unix://") if host.startswith("unix://") else ("" if host else DEFAULT_SOCKET)
    )
    for named in (docker, socket_path):
        with contextlib.suppress(OSError):
            if named:
                at = os.stat(named)
                stamps.append(f"{named}:{at.st_ino}:{at.st_ctime_ns}:{at.st_mtime_ns}")
    found = {
        "host": host,
        "context": env.get("DOCKER_CONTEXT", ""),
        "stamps": stamps,
        "binfmt": handlers,
        "builder": env.get("BUILDX_BUILDER", ""),
        "buildx_config": env.get("BUILDX_CONFIG", ""),
    }
    return hashlib.sha256(json.dumps(found, sort_keys=True).encode()).hexdigest()


def _fresh(entry: object, now: float) -> bool:
    """Written in the last READY_FOR seconds (not in the future: a clock set back, or a file
    written by hand, must not make an answer last for ever)."""
    try:
        at = float(entry.get("at", 0)) if isinstance(entry, dict) else -1.0
    except (TypeError, ValueError):
        return False
    return 0 <= now - at < READY_FOR


def _remembered(entry: object, now: float) -> Report | None:
    """A remembered ready report, or None: missing, too old, or not what this version wrote
    (the file is a cache: whatever is wrong with it is a miss)."""
    if not isinstance(entry, dict) or not _fresh(entry, now):
        return None
    try:
        checks = tuple(Check(**c) for c in entry["checks"])
        insecure = (tuple(map(str, entry["insecure"][0])), tuple(map(str, entry["insecure"][1])))
        engine, context = str(entry.get("engine", "")), str(entry.get("context", ""))
        architecture = str(entry.get("architecture", ""))
    except (KeyError, TypeError, ValueError, IndexError):
        return None
    return Report(checks, None, insecure, engine, context, architecture)


def forget(path: Path) -> None:
    """Drop every remembered ready answer: the engine failed a build after one."""
    with contextlib.suppress(OSError):
        path.unlink()


def ask(host: Host, questions: Sequence[Wanted], remember: tuple[Path, str] | None = None) -> Verdict:
    """Each question once (`remember`: where a ready answer is kept, and the fingerprint it
    depends on)."""
    if remember is None:
        return Verdict(tuple(check(host, wanted) for wanted in questions))
    return Verdict(tuple(check_remembered(host, wanted, *remember) for wanted in questions))


def question_key(wanted: Wanted, key: str) -> str:
    """Where the answer to a question is remembered: what is asked (platforms, builder,
    registry, emulator installer, engine) and what it depends on (`key`)."""
    return hashlib.sha256(json.dumps([list(wanted[:4]), wanted.engine, key]).encode()).hexdigest()


def check_remembered(
    host: Host, wanted: Wanted, path: Path | None, key: str, *, now: float | None = None
) -> Report:
    """`check`, but a host found ready for the same question and fingerprint in the last
    READY_FOR seconds is taken as ready without asking docker again (some 0.5 s a push)."""
    now = time.time() if now is None else now
    question = question_key(wanted, key)
    kept: dict[str, Any] = {}
    if path is not None:
        with contextlib.suppress(OSError, ValueError):
            loaded = json.loads(path.read_text())
            kept = loaded if isinstance(loaded, dict) else {}
    remembered = _remembered(kept.get(question), now)
    if remembered is not None:
        return remembered
    report = check(host, wanted)
    if path is not None and report.ready:
        fresh = {q: v for q, v in kept.items() if _fresh(v, now)}
        fresh[question] = {
            "at": now,
            "checks": [c._asdict() for c in report.checks],
            "insecure": report.insecure,
            "engine": report.engine,
            "context": report.context,
            "architecture": report.architecture,
        }
        state.write_private(path, json.dumps(fresh).encode())
    return report
