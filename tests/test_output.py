from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from mab_hook import output
from mab_hook.output import Printer
from mab_hook.results import BuildResult, Status


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


BUILT, FAILED, NOT_BUILT, SKIPPED, TIMED_OUT = (Status.BUILT, Status.FAILED, Status.NOT_BUILT, Status.SKIPPED,
                                                Status.TIMED_OUT)  # fmt: skip
RESULTS = [
    BuildResult("base", BUILT, 1.25, "", Path("/l/base.log"), platforms=("linux/amd64", "linux/arm64")),
    BuildResult("api", FAILED, 3.5, "build failed on linux/arm/v7 (exit 1)", Path("/l/api.log"),
                ("#9 ERROR: exit code: 1",), ("linux/amd64", "linux/arm/v7")),
    BuildResult("worker", NOT_BUILT, 0.0, "base image api did not build", None, platforms=("linux/amd64",)),
    BuildResult("cli", SKIPPED, 0.0, "already in the registry (inputs 0123456789ab)", None, platforms=("linux/amd64",)),
    BuildResult("slow", TIMED_OUT, 60.0, "timed out after 60 s; the build was stopped", Path("/l/slow.log"),
                platforms=("linux/arm64",)),
]  # fmt: skip


def test_a_skipped_image_that_got_public_tags_says_so() -> None:
    published = ("r/team/mab-staging/cli:mab-0123", "r/team/cli:5d6e7f8", "r/team/cli:main")
    cli = RESULTS[3]._replace(published=published)
    row = output.summary([cli], Printer(io.StringIO(), color=False)).splitlines()[1]
    assert row.endswith(
        "skipped    0.0 s  already in the registry (inputs 0123456789ab); tagged 5d6e7f8, main"
    )
    staged_only = RESULTS[3]._replace(published=published[:1])  # its staging upload alone: nothing new to say
    assert (
        output.summary([staged_only], Printer(io.StringIO(), color=False))
        .splitlines()[1]
        .endswith("0123456789ab)")
    )
    bare = RESULTS[3]._replace(detail="", published=published)
    assert (
        output.summary([bare], Printer(io.StringIO(), color=False))
        .splitlines()[1]
        .endswith("0.0 s  tagged 5d6e7f8, main")
    )


def test_summary_is_a_plain_table_without_color() -> None:
    text = output.summary(RESULTS, Printer(io.StringIO(), color=False))
    assert "\033[" not in text
    lines = text.splitlines()
    assert lines[:6] == [
        "  image   platforms                  result        time",
        "  base    linux/amd64, linux/arm64   built        1.2 s",
        "  api     linux/amd64, linux/arm/v7  failed       3.5 s  build failed on linux/arm/v7 (exit 1)",
        "  worker  linux/amd64                not built    0.0 s  base image api did not build",
        "  cli     linux/amd64                skipped      0.0 s  already in the registry (inputs 0123456789ab)",
        "  slow    linux/arm64                timed out   60.0 s  timed out after 60 s; the build was stopped",
    ]
    assert "--- api: build failed on linux/arm/v7 (exit 1)" in lines
    assert "  #9 ERROR: exit code: 1" in lines
    assert "  full log: /l/api.log" in lines
    assert "--- slow: timed out after 60 s; the build was stopped" in lines


def test_summary_colors_on_request() -> None:
    text = output.summary(RESULTS, Printer(io.StringIO(), color=True))
    assert "\033[31mfailed" in text and "\033[32mbuilt" in text


def test_results_json() -> None:
    (first, *_rest) = output.results_json(RESULTS)
    assert first == {"name": "base", "status": "built", "platforms": ["linux/amd64", "linux/arm64"], "seconds": 1.25,
                     "detail": "", "input_digest": None, "image_digest": None, "failure": None, "published": [],
                     "log": "/l/base.log"}  # fmt: skip


def test_build_lines_only_when_verbose() -> None:
    quiet, loud = io.StringIO(), io.StringIO()
    Printer(quiet, color=False).build_line("#1 DONE")
    Printer(loud, color=False, verbose=True).build_line("#1 DONE")
    assert (quiet.getvalue(), loud.getvalue()) == ("", "  | #1 DONE\n")


def test_terminal_safe_keeps_colours_and_line_breaks_only() -> None:
    assert output.terminal_safe("a\x1b[31mred\x1b[0m\nb\tc") == "a\x1b[31mred\x1b[0m\nb\tc"
    assert output.terminal_safe("x\x1b[2J\ry\x07") == "x\\x1b[2J\\x0dy\\x07"


def test_the_summary_names_each_upload_of_an_image_built_now() -> None:
    """Its staging reference (by input digest), what publishing tags and what a teammate pulls to
    try it; not for an image skipped (nothing uploaded now) and not its public tags."""
    pushed = BuildResult("api", Status.PUSHED, 2.0, "", None, platforms=("linux/amd64",),
                         published=("r/team/mab-staging/api:mab-6f2a", "r/team/api:5d6e7f8"))  # fmt: skip
    skipped = RESULTS[3]._replace(published=("r/team/mab-staging/cli:mab-0123",))
    lines = output.summary([pushed, skipped], Printer(io.StringIO(), color=False)).splitlines()
    assert lines[3:] == ["uploaded to staging (by input digest):", "  api: r/team/mab-staging/api:mab-6f2a"]
    assert "uploaded" not in output.summary([skipped], Printer(io.StringIO(), color=False))


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_json_is_indented_at_a_terminal_and_one_line_down_a_pipe() -> None:
    data = {"images": [{"name": "api", "platforms": ["linux/amd64"]}]}
    piped, shown = io.StringIO(), _Terminal()
    output.dump_json(data, piped)
    output.dump_json(data, shown)
    assert piped.getvalue() == '{"images": [{"name": "api", "platforms": ["linux/amd64"]}]}\n'
    assert shown.getvalue() == json.dumps(data, indent=2) + "\n"
    assert shown.getvalue().count("\n") == 10
