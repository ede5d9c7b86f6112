from __future__ import annotations

import io
from pathlib import Path

import pytest

from mab_hook import output
from mab_hook.buildx import BUILT, FAILED, PUSHED, SKIPPED, BuildResult
from mab_hook.output import Printer


@pytest.mark.parametrize(
    ("choice", "env", "tty", "expected"),
    [
        ("always", {"NO_COLOR": "1"}, False, True),
        ("never", {"FORCE_COLOR": "1"}, True, False),
        ("auto", {}, True, True),
        ("auto", {}, False, False),
        ("auto", {"TERM": "dumb"}, True, False),
        ("auto", {"NO_COLOR": "1"}, True, False),
        ("auto", {"FORCE_COLOR": "1"}, False, True),
        ("auto", {"PRE_COMMIT_COLOR": "always"}, False, True),
        ("auto", {"PRE_COMMIT_COLOR": "never"}, True, False),
    ],
)
def test_use_color(choice: str, env: dict[str, str], tty: bool, expected: bool) -> None:
    assert output.use_color(choice, env, tty) is expected


RESULTS = [
    BuildResult("base", BUILT, 1.25, "", Path("/l/base.log")),
    BuildResult(
        "api",
        FAILED,
        3.5,
        "build failed on linux/arm/v7 (exit 1)",
        Path("/l/api.log"),
        ("#9 ERROR: exit code: 1",),
    ),
    BuildResult("worker", SKIPPED, 0.0, "base image api did not build", None),
    BuildResult("push", PUSHED, 2.0, "", None),
]


def test_summary_is_plain_without_color() -> None:
    text = output.summary(RESULTS, Printer(io.StringIO(), color=False))
    assert "\033[" not in text
    lines = text.splitlines()
    assert lines[0] == "  base    built        1.2s"
    assert lines[1] == "  api     failed       3.5s  build failed on linux/arm/v7 (exit 1)"
    assert lines[2] == "  worker  not built    0.0s  base image api did not build"
    assert "--- api: build failed on linux/arm/v7 (exit 1)" in lines
    assert "  #9 ERROR: exit code: 1" in lines
    assert "  full log: /l/api.log" in lines


def test_summary_colors_on_request() -> None:
    text = output.summary(RESULTS, Printer(io.StringIO(), color=True))
    assert "\033[31mfailed" in text and "\033[32mbuilt" in text


def test_build_lines_only_when_verbose() -> None:
    quiet, loud = io.StringIO(), io.StringIO()
    Printer(quiet, color=False).build_line("#1 DONE")
    Printer(loud, color=False, verbose=True).build_line("#1 DONE")
    assert (quiet.getvalue(), loud.getvalue()) == ("", "  | #1 DONE\n")
