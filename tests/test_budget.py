"""Time budgets: the deadline planning checks, and the limits every time setting has."""

from __future__ import annotations

import argparse
import time

import pytest

from mab_hook import budget
from mab_hook.errors import FatalError


def test_a_deadline_in_the_future_lets_work_go_on_and_one_past_stops_it_with_what_to_do() -> None:
    budget.Deadline(time.monotonic() + 1000, 1000, "planning").check()
    budget.NONE.check()
    with pytest.raises(FatalError) as stopped:
        budget.Deadline(time.monotonic() - 1, 2.5, "planning the push").check()
    assert str(stopped.value) == (
        "planning the push took more than 2.5 s and was stopped; nothing was built. What the pushed commits hold "
        "decides what planning costs (ignore files, Dockerfiles, definitions); to allow more, run with --budget "
        "SECONDS or set MAB_HOOK_BUDGET"
    )


def test_the_budget_comes_from_the_command_line_then_the_environment_then_the_default() -> None:
    assert budget.start(None, {}, "x").seconds == 120.0
    assert budget.start(None, {"MAB_HOOK_BUDGET": "30"}, "x").seconds == 30.0
    assert budget.start(5.0, {"MAB_HOOK_BUDGET": "30"}, "x").seconds == 5.0
    assert budget.start(budget.MOST, {}, "x").seconds == budget.MOST  # a week is allowed
    with pytest.raises(FatalError) as bad:
        budget.start(None, {"MAB_HOOK_BUDGET": "soon"}, "x")
    assert str(bad.value) == "MAB_HOOK_BUDGET='soon' is not a number of seconds"
    for wrong in (0.0, budget.MOST + 1):
        with pytest.raises(FatalError) as out_of_range:
            budget.start(wrong, {}, "x")
        assert str(out_of_range.value) == (
            f"a time budget must be a number of seconds above 0, at most 604800, not {wrong!r}"
        )


@pytest.mark.parametrize("text", ["0.5", "1", "604800"])
def test_seconds_above_0_and_at_most_a_week(text: str) -> None:
    assert budget.seconds(text) == float(text)


@pytest.mark.parametrize("text", ["0", "-1", "604800.5", "inf", "nan"])
def test_other_seconds_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        budget.seconds(text)


def test_the_option_says_its_default() -> None:
    parser = argparse.ArgumentParser()
    budget.add_argument(parser)
    assert "--budget SECONDS" in parser.format_help()
    assert "stop planning that takes longer (default: $MAB_HOOK_BUDGET, else 120)" in " ".join(
        parser.format_help().split()
    )
