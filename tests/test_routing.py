"""Platforms routed to engines: which engine readiness asks about, and which builds what,
when every engine is ready and when one is down."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from mab_hook import routing
from mab_hook.images import Config
from mab_hook.plan import Plan
from mab_hook.readiness import FAIL, OK, WARN, Check, Report, Verdict, Wanted
from mab_hook.routing import DEFAULT, Engine, Routes
from tests.test_plan import CONFIG, plan

ALL3 = ("linux/amd64", "linux/arm64", "linux/arm/v7")


def routed(
    engines: dict[str, str], *, down: str = "fail", push: bool = True, builder: str | None = None
) -> Config:
    images = tuple(dataclasses.replace(i, platforms=ALL3) for i in CONFIG.images)
    return dataclasses.replace(
        CONFIG, images=images, engines=tuple(engines.items()), engine_down=down, push=push, builder=builder
    )


ARM = {"linux/arm64": "arm-box", "linux/arm/v7": "arm-box"}
MACHINES = (("", "x86_64"), ("arm-box", "aarch64"))  # what readiness says of each engine's CPU
GRANTED = frozenset({"arm-box", "pi"})  # what the pusher lets builds run on (git config mab-hook.engine)


def test_an_engine_is_named_after_its_name_and_the_default_one_as_such() -> None:
    assert (Engine("arm-box", True).label, DEFAULT.label) == ("engine arm-box", "the default engine")


def test_each_platform_goes_to_its_engine_and_the_rest_to_the_default_one() -> None:
    cfg = routed({"linux/arm64": "arm-box", "linux/arm/v7": "pi"})
    routes = Routes(contexts=frozenset({"arm-box"}))
    assert routes.engine(cfg, "linux/amd64") == DEFAULT
    assert routes.engine(cfg, "linux/arm64") == Engine("arm-box", context=True)
    assert routes.engine(cfg, "linux/arm/v7") == Engine("pi", context=False)  # a buildx builder
    assert routes.slices(cfg, ALL3) == (
        (DEFAULT, ("linux/amd64",)),
        (Engine("arm-box", True), ("linux/arm64",)),
        (Engine("pi"), ("linux/arm/v7",)),
    )
    assert routes.slices(routed(ARM), ("linux/arm/v7", "linux/amd64", "linux/arm64")) == (
        (Engine("arm-box", True), ("linux/arm/v7", "linux/arm64")),
        (DEFAULT, ("linux/amd64",)),
    )


def test_an_engine_that_is_down_and_emulated_sends_its_platforms_to_the_default_engine() -> None:
    cfg = routed({"linux/arm64": "arm-box", "linux/arm/v7": "pi"})
    routes = Routes(down=frozenset({"arm-box"}))
    assert routes.slices(cfg, ALL3) == (
        (DEFAULT, ("linux/amd64", "linux/arm64")),
        (Engine("pi"), ("linux/arm/v7",)),
    )


def test_a_plan_is_routed_only_when_an_affected_image_has_a_platform_off_the_default_engine() -> None:
    assert Routes().routed(plan({"base/Dockerfile"}, routed(ARM)))
    assert not Routes().routed(plan({"base/Dockerfile"}, routed({})))
    assert not Routes().routed(plan({"docs/index.md"}, routed(ARM)))  # nothing affected
    only_amd = dataclasses.replace(
        routed(ARM), images=tuple(dataclasses.replace(i, platforms=("linux/amd64",)) for i in CONFIG.images)
    )
    assert not Routes().routed(plan({"base/Dockerfile"}, only_amd))
    assert not Routes(down=frozenset({"arm-box"})).routed(plan({"base/Dockerfile"}, routed(ARM)))


def test_readiness_asks_each_engine_about_its_own_platforms_the_default_engine_first() -> None:
    plans = [
        plan({"base/Dockerfile"}, routed({"linux/arm64": "arm-box", "linux/arm/v7": "pi"}, builder="fleet"))
    ]
    asked = routing.questions(plans)
    assert [(w.engine, w.builder, w.platforms, w.registry) for w in asked] == [
        ("", "fleet", ("linux/amd64",), "reg:5000/team/mab-staging/base"),
        ("arm-box", "fleet", ("linux/arm64",), "reg:5000/team/mab-staging/base"),
        ("pi", "fleet", ("linux/arm/v7",), "reg:5000/team/mab-staging/base"),
    ]
    # The first repository pushed to among the commits asking the same engine.
    quiet = routed(ARM, push=False)
    asked = routing.questions([plan({"base/Dockerfile"}, quiet), plan({"base/Dockerfile"}, routed(ARM))])
    assert [(w.engine, w.registry) for w in asked] == [
        ("", "reg:5000/team/mab-staging/base"), ("arm-box", "reg:5000/team/mab-staging/base")
    ]  # fmt: skip
    # Every platform routed: no question for the default engine.
    everything = routed({p: "big-box" for p in ALL3}, push=False)
    assert [
        (w.engine, w.platforms, w.registry)
        for w in routing.questions([plan({"base/Dockerfile"}, everything)])
    ] == [("big-box", ALL3, None)]


class Asker:
    """Readiness, answered: the engines named are not ready; every question asked is kept."""

    def __init__(self, *down: str) -> None:
        self.down, self.asked = down, list[list[Wanted]]()

    def __call__(self, questions: Sequence[Wanted]) -> Verdict:
        self.asked.append(list(questions))
        return Verdict(tuple(self.report(w) for w in questions))

    def report(self, wanted: Wanted) -> Report:
        if wanted.engine in self.down:
            failed = Check(
                f"{wanted.engine}/docker",
                FAIL,
                "cannot reach ssh://arm-box",
                "start it",
                "engine-unreachable",
            )
            return Report((failed,), None, engine=wanted.engine)
        checks = tuple(Check(f"platform:{p}", OK, "ok") for p in wanted.platforms)
        context = wanted.engine if wanted.engine == "arm-box" else ""
        machine = {"": "x86_64", "arm-box": "aarch64"}.get(wanted.engine, "")
        return Report(checks, None, engine=wanted.engine, context=context, architecture=machine)


def test_settling_records_which_engines_are_docker_contexts() -> None:
    plans = [plan({"base/Dockerfile"}, routed({"linux/arm64": "arm-box", "linux/arm/v7": "pi"}))]
    ask = Asker()
    verdict, routes = routing.settle(plans, ask, GRANTED)
    assert verdict.ready and routes == Routes(frozenset({"arm-box"}), machines=MACHINES)
    assert len(ask.asked) == 1  # once, every engine
    # Each engine's CPU, for which steps ran natively: unknown ("") where readiness did not say.
    found = [routes.machine(e) for e in (DEFAULT, Engine("arm-box", True), Engine("pi"))]
    assert found == ["x86_64", "aarch64", ""]


def test_an_engine_that_is_down_blocks_the_push_named_unless_the_config_says_emulate() -> None:
    plans = [plan({"base/Dockerfile"}, routed(ARM))]
    verdict, routes = routing.settle(plans, Asker("arm-box"), GRANTED)
    assert not verdict.ready and routes.down == frozenset()
    assert [c.id for c in verdict.checks(FAIL)] == ["arm-box/docker"]

    ask = Asker("arm-box")
    verdict, routes = routing.settle([plan({"base/Dockerfile"}, routed(ARM, down="emulate"))], ask, GRANTED)
    assert verdict.ready and routes.down == frozenset({"arm-box"})
    # Asked again: the default engine, now with the platforms it emulates in the engine's place.
    assert [(w.engine, w.platforms) for w in ask.asked[1]] == [("", ALL3)]
    (warning,) = verdict.checks(WARN)
    assert (warning.id, warning.code) == ("arm-box/engine", "engine-down")
    assert warning.fix == "`mab-hook doctor` shows what engine arm-box lacks"
    assert warning.finding == (
        "engine arm-box is not ready (cannot reach ssh://arm-box): linux/arm64, linux/arm/v7 built under "
        'emulation on the default engine instead (engine-down = "emulate")'
    )


def test_an_engine_falls_back_only_when_every_commit_routing_to_it_says_emulate() -> None:
    mixed = [plan({"base/Dockerfile"}, routed(ARM, down="emulate")), plan({"base/Dockerfile"}, routed(ARM))]
    verdict, routes = routing.settle(mixed, Asker("arm-box"), GRANTED)
    assert not verdict.ready and routes.down == frozenset()


def test_an_engine_that_is_ready_stays_when_another_falls_back() -> None:
    cfg = routed({"linux/arm64": "arm-box", "linux/arm/v7": "pi"}, down="emulate")
    ask = Asker("pi")
    verdict, routes = routing.settle([plan({"base/Dockerfile"}, cfg)], ask, GRANTED)
    assert verdict.ready and routes == Routes(frozenset({"arm-box"}), frozenset({"pi"}), MACHINES)
    assert [(w.engine, w.platforms) for w in ask.asked[1]] == [
        ("", ("linux/amd64", "linux/arm/v7")),
        ("arm-box", ("linux/arm64",)),
    ]
    assert routes.slices(cfg, ALL3) == (
        (DEFAULT, ("linux/amd64", "linux/arm/v7")),
        (Engine("arm-box", True), ("linux/arm64",)),
    )


def test_where_readiness_learnt_nothing_every_engine_is_a_builder_of_unknown_cpu() -> None:
    assert Routes() == routing.DIRECT and routing.DIRECT.machine(DEFAULT) == ""
    assert routing.DIRECT.engine(routed(ARM), "linux/arm64") == Engine("arm-box", context=False)
    assert not routing.DIRECT.routed(plan({"base/Dockerfile"}, routed({})))


def test_no_engine_configured_asks_what_it_always_asked() -> None:
    plans: list[Plan] = [plan({"base/Dockerfile"}, routed({}))]
    verdict, routes = routing.settle(plans, Asker(), GRANTED)
    assert routes == Routes(machines=(("", "x86_64"),)) and [r.engine for r in verdict.reports] == [""]


def test_an_engine_the_pusher_did_not_grant_is_never_asked_and_blocks_the_push_with_the_command() -> None:
    plans = [plan({"base/Dockerfile"}, routed({"linux/arm64": "arm-box", "linux/arm/v7": "pi"}))]
    ask = Asker()
    verdict, routes = routing.settle(plans, ask, frozenset({"pi"}))
    assert [w.engine for w in ask.asked[0]] == ["", "pi"]  # docker is never asked about arm-box
    (refused,) = verdict.checks(FAIL)
    assert (refused.id, refused.code) == ("arm-box/engine", "engine-not-granted")
    assert refused.finding == (
        "engine arm-box is not granted: a commit may ask for an engine; you choose where builds run"
    )
    assert refused.fix.startswith("`git config --add mab-hook.engine arm-box`")
    assert routes.down == frozenset()
    # With engine-down = "emulate": built here under emulation, as without the engine.
    emulated = [plan({"base/Dockerfile"}, routed({p: "arm-box" for p in ALL3}, down="emulate"))]
    ask = Asker()
    verdict, routes = routing.settle(emulated, ask, frozenset())
    assert (
        ask.asked == [[ask.asked[0][0]]]
        and ask.asked[0][0].engine == ""
        and ask.asked[0][0].platforms == ALL3
    )
    assert verdict.ready and routes.down == frozenset({"arm-box"})
    assert "engine arm-box is not granted" in verdict.checks(WARN)[0].finding
