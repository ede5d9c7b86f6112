"""Platforms routed to engines (`engines`): which engine builds which platforms of a push.

Readiness asks one question per engine (the default one: `builder`, or the current builder),
each where that engine runs; what it learns (which engine is a docker context, which is down
and falls back to emulation) is the `Routes` record the builds follow. Nothing here builds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple

from mab_hook.images import Config
from mab_hook.plan import Plan

if TYPE_CHECKING:
    from mab_hook.readiness import Report, Verdict, Wanted

EMULATE = "emulate"


class Engine(NamedTuple):
    """Where some platforms are built: a routed engine, or "" for the default one."""

    name: str = ""
    context: bool = False  # a docker context: buildx runs as `docker --context NAME buildx`

    @property
    def label(self) -> str:
        return f"engine {self.name}" if self.name else "the default engine"


DEFAULT = Engine()


class Routes(NamedTuple):
    """What readiness found of the routed engines."""

    contexts: frozenset[str] = frozenset()  # engines that are docker contexts
    down: frozenset[str] = frozenset()  # engines not ready whose platforms are emulated on the default
    machines: tuple[tuple[str, str], ...] = ()  # engine ("": the default) -> its `uname -m`

    def machine(self, engine: Engine) -> str:
        """The CPU of the machine an engine runs on (`uname -m`), "" when unknown."""
        return dict(self.machines).get(engine.name, "")

    def engine(self, config: Config, platform: str) -> Engine:
        name = dict(config.engines).get(platform)
        if name is None or name in self.down:
            return DEFAULT
        return Engine(name, name in self.contexts)

    def slices(self, config: Config, platforms: Sequence[str]) -> tuple[tuple[Engine, tuple[str, ...]], ...]:
        """The platforms grouped by the engine that builds them, in the order they come."""
        found: dict[Engine, list[str]] = {}
        for platform in platforms:
            found.setdefault(self.engine(config, platform), []).append(platform)
        return tuple((engine, tuple(group)) for engine, group in found.items())

    def routed(self, plan: Plan) -> bool:
        """Whether any image of the plan is built anywhere but on the default engine alone."""
        platforms = dict.fromkeys(p for planned in plan.affected for p in planned.image.platforms)
        return any(self.engine(plan.config, p) != DEFAULT for p in platforms)


DIRECT = Routes()  # no engine but the default one


def questions(plans: Sequence[Plan]) -> list[Wanted]:
    """One readiness question per engine: the platforms it builds of the affected images, the
    repository the gate pushes to (staging); the default engine's first."""
    from mab_hook.readiness import Wanted  # noqa: PLC0415 - readiness loads only when something is built

    by_engine: dict[tuple[str, str | None], Wanted] = {}
    for plan in plans:
        cfg, engines = plan.config, dict(plan.config.engines)
        repository = cfg.staging_repository(plan.affected[0].image) if cfg.push and plan.affected else None
        for platform in dict.fromkeys(p for planned in plan.affected for p in planned.image.platforms):
            engine = engines.get(platform, "")
            key = (engine, None if engine else cfg.builder)
            seen = by_engine.get(key)
            if seen is None:
                seen = Wanted((), cfg.builder, repository, cfg.binfmt_image, cfg.builder_spec,
                              buildkit_image=cfg.buildkit_image, engine=engine)  # fmt: skip
            by_engine[key] = seen._replace(
                platforms=tuple(dict.fromkeys((*seen.platforms, platform))),
                registry=seen.registry or repository,
            )
    return sorted(by_engine.values(), key=lambda wanted: bool(wanted.engine))


Ask = Callable[[Sequence["Wanted"]], "Verdict"]


def settle(plans: Sequence[Plan], ask: Ask, granted: frozenset[str]) -> tuple[Verdict, Routes]:
    """Readiness for every engine of the push, and the routes it leaves: an engine that is not
    ready (or that the pusher did not grant: `granted`) blocks the push, named, unless every
    config routing to it says `engine-down = "emulate"`: then its platforms are asked of the
    default engine instead, and built there."""
    asked = questions(plans)
    refused = {w.engine: not_granted(w.engine) for w in asked if w.engine and w.engine not in granted}
    answered = ask([w for w in asked if w.engine not in refused]) if len(refused) < len(asked) else None
    verdict = _joined(answered, tuple(refused.values()))
    contexts = frozenset(r.engine for r in verdict.reports if r.context)
    down = frozenset(
        r.engine for r in verdict.reports if r.engine and not r.ready and _emulated(plans, r.engine)
    )
    if down:
        kept = ask(questions(_rerouted(plans, down)))
        fell = tuple(_fallen(r, asked) for r in verdict.reports if r.engine in down)
        verdict = kept._replace(reports=(*kept.reports, *fell))
    return verdict, Routes(contexts, down, _machines(verdict.reports))


def not_granted(engine: str) -> Report:
    """An engine the pusher did not grant: where a commit's build steps run, and what they
    reach there, is the pusher's to choose, never the commit's."""
    from mab_hook.readiness import FAIL, Check, Report  # noqa: PLC0415

    finding = f"engine {engine} is not granted: a commit may ask for an engine; you choose where builds run"
    fix = (
        f"`git config --add mab-hook.engine {engine}` lets this repository's builds run there (--global: all)"
    )
    return Report((Check(f"{engine}/engine", FAIL, finding, fix, "engine-not-granted"),), None, engine=engine)


def _joined(verdict: Verdict | None, reports: tuple[Report, ...]) -> Verdict:
    from mab_hook.readiness import Verdict  # noqa: PLC0415

    return Verdict((*(verdict.reports if verdict else ()), *reports))


def _machines(reports: Sequence[Report]) -> tuple[tuple[str, str], ...]:
    """Each engine's CPU, as readiness found it (the first answer for the default engine)."""
    found: dict[str, str] = {}
    for report in reports:
        if report.architecture:
            found.setdefault(report.engine, report.architecture)
    return tuple(found.items())


def _emulated(plans: Sequence[Plan], engine: str) -> bool:
    routing = [p.config for p in plans if engine in dict(p.config.engines).values()]
    return bool(routing) and all(cfg.engine_down == EMULATE for cfg in routing)


def _rerouted(plans: Sequence[Plan], down: frozenset[str]) -> list[Plan]:
    """The plans with the platforms of engines that are down on the default engine."""
    found = []
    for plan in plans:
        engines = tuple((p, e) for p, e in plan.config.engines if e not in down)
        found.append(plan._replace(config=_with_engines(plan.config, engines)))
    return found


def _with_engines(config: Config, engines: tuple[tuple[str, str], ...]) -> Config:
    return dataclasses.replace(config, engines=engines)


def _fallen(report: Report, asked: Sequence[Wanted]) -> Report:
    """An engine that is down, as the push goes on without it: one warning."""
    from mab_hook.readiness import FAIL, WARN, Check  # noqa: PLC0415

    platforms = next((w.platforms for w in asked if w.engine == report.engine), ())
    why = next((c.finding for c in report.checks if c.status == FAIL), "not ready")
    finding = (
        f"engine {report.engine} is not ready ({why}): {', '.join(platforms)} built under emulation on "
        'the default engine instead (engine-down = "emulate")'
    )
    fix = f"`mab-hook doctor` shows what engine {report.engine} lacks"
    return report._replace(checks=(Check(f"{report.engine}/engine", WARN, finding, fix, "engine-down"),))
