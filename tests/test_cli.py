from __future__ import annotations

import gc
import io
import json
import os
import re
import signal
import subprocess
import sys

import pytest

from mab_hook import __version__, cli, planning
from tests.conftest import Repo

PYPROJECT = """\
[tool.multiarch]
platforms = ["linux/amd64", "linux/arm64"]
registry = "reg:5000/team"

[tool.multiarch.images.base]
context = "base"

[tool.multiarch.images.api]
context = "api"
"""
FILES = {
    "pyproject.toml": PYPROJECT,
    "base/Dockerfile": "FROM busybox\n",
    "api/Dockerfile": "FROM reg:5000/team/base\nCOPY . /app\n",
    "api/main.py": "print()\n",
    "docs/index.md": "# docs\n",
}


@pytest.fixture
def project(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> Repo:
    repo.commit(FILES, "init")
    monkeypatch.chdir(repo.path)
    return repo


def run(capsys: pytest.CaptureFixture[str], *argv: str, stdin: str = "") -> tuple[int, str, str]:
    sys.stdin = io.StringIO(stdin)
    try:
        code = cli.main(list(argv))
    finally:
        sys.stdin = sys.__stdin__
    out, err = capsys.readouterr()
    return code, out, err


def test_dry_run_prints_the_plan(project: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    first = project.head()
    project.commit({"api/main.py": "print(1)\n"})
    code, out, _err = run(capsys, "--dry-run", "--from", first)
    assert code == 0
    assert f"commit {project.head()[:12]} ({first[:12]}..HEAD)" in out
    assert "1. api [linux/amd64, linux/arm64]" in out
    assert "because COPY '.' (line 2) reads: api/main.py" in out
    assert f"tags: reg:5000/team/api:{project.head()[:7]}" in out
    assert "unaffected: base" in out
    assert "\033[" not in out  # not a terminal: plain


def test_dry_run_json(project: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run(capsys, "--dry-run", "--json", "--all")
    assert code == 0
    data = json.loads(out)
    assert [(a["name"], a["bases"]) for a in data["affected"]] == [("base", []), ("api", ["base"])]
    assert data["affected"][1]["platforms"] == ["linux/amd64", "linux/arm64"]
    assert data["affected"][0]["reasons"] == ["every image is built (--all)"]
    assert data["unaffected"] == []
    assert data["commits"][0]["sha"] == project.head()
    assert "results" not in data


def test_explain(project: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    first = project.head()
    project.commit({"api/main.py": "print(3)\n", "base/notes.txt": "x\n"})
    code, out, err = run(capsys, "--explain", "base", "--from", first)
    assert code == 0
    assert f"base at {project.head()[:12]}: not affected" in out
    assert (
        "base/notes.txt: does not count: in the build context, but no COPY, ADD or bind mount reads it" in out
    )
    assert "its build reads: nothing from the repository" in out
    code, out, err = run(capsys, "--explain", "api", "--from", first, "--json")
    (item,) = json.loads(out)
    assert item["affected"] is True
    assert item["reasons"] == ["COPY '.' (line 2) reads: api/main.py"]
    assert item["bases"] == ["base"]
    code, out, err = run(capsys, "--explain", "nope", "--all")
    assert code == 1
    assert "no image named 'nope' (images: base, api)" in err


def test_docs_only_change_builds_nothing(project: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    first = project.head()
    project.commit({"docs/index.md": "# more\n"})
    code, out, _err = run(capsys, "--from", first)  # not a dry run: still nothing to build
    assert code == 0
    assert "no image is affected" in out


def test_hook_mode_reads_the_push_from_stdin(project: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    project.git("push", "-q", "origin", "main")
    first = project.head()
    project.commit({"api/main.py": "print(2)\n"})
    line = f"refs/heads/main {project.head()} refs/heads/main {first}\n"
    code, out, err = run(capsys, "origin", str(project.remote), "--dry-run", stdin=line)
    assert code == 0
    assert "1. api" in out
    code, out, err = run(capsys, "origin", str(project.remote), "--dry-run", stdin="")
    assert (code, err.strip()) == (0, "mab-hook: the push adds no commits: nothing to build")


def test_pre_commit_without_a_range_builds_everything_loudly(
    project: Repo, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRE_COMMIT", "1")
    code, out, err = run(capsys, "--dry-run")
    assert code == 0
    assert "warning: pre-commit gave no push range" in err
    assert "building EVERY image of HEAD" in err
    assert "1. base" in out and "2. api" in out


def test_bad_config_exits_1_and_builds_nothing(project: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    project.commit({"pyproject.toml": PYPROJECT.replace("platforms", "platfroms", 1)})
    code, _out, err = run(capsys, "--all")
    assert code == 1
    assert "mab-hook: error: pyproject.toml at" in err
    assert "[tool.multiarch.platfroms] unknown key (did you mean 'platforms'?)" in err
    kept = project.path / ".git" / "mab-hook"
    assert [p.name for p in kept.iterdir()] == ["cache"]  # no lock taken, no log, no record


def test_config_is_read_from_the_pushed_commit(project: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    project.write({"pyproject.toml": "broken = [\n"})  # uncommitted: must not matter
    code, out, _err = run(capsys, "--all", "--dry-run")
    assert code == 0, out


def test_a_dry_run_with_no_upstream_previews_the_first_push(
    project: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _err = run(capsys, "--dry-run")
    assert code == 0, out
    assert "main (no upstream: its first push to origin)" in out


def test_to_without_from(project: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(capsys, "--to", "HEAD")
    assert (code, "--to needs --from REF or --all" in err) == (1, True)


def test_outside_a_repository(
    tmp_path: object, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir("/")
    code, _out, err = run(capsys, "--all", "-C", "/proc")
    assert code == 1
    assert "/proc is not inside a git repository" in err


def test_a_bug_exits_3(
    project: Repo, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(planning, "plan_at", broken)
    code, _out, err = run(capsys, "--all")
    assert code == 3
    assert "RuntimeError: boom" in err
    assert "this is a bug in mab-hook" in err


def test_interrupt_exits_130(
    project: Repo, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(planning, "plan_at", interrupted)
    code, _out, err = run(capsys, "--all")
    assert code == 130
    assert "interrupted" in err


def test_module_entry_point(project: Repo) -> None:
    proc = subprocess.run(
        (sys.executable, "-m", "mab_hook", "--help"), capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0
    assert "--dry-run" in proc.stdout


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        cli.main(["--version"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out == f"mab-hook {__version__}\n"


def test_help_ends_with_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert "Commands: doctor, install, verify, build, publish, status, gc, report" in out
    assert out.rstrip().splitlines()[-1].strip().startswith("mab-hook report")


def test_a_mistyped_command_is_an_error_not_a_remote(
    project: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "doctr")
    assert code == 1
    assert "'doctr' is not a command (did you mean 'doctor'?) nor a remote of this repository" in err
    assert "commands: doctor, install, verify, build, publish" in err
    code, out, err = run(capsys, "origin", "--dry-run")  # a configured remote, by hand
    assert code == 0, out
    code, out, err = run(capsys, "--color", "never", "verify")  # a command after an option
    assert code == 1
    assert "'verify' is a command: name it first, before its options (`mab-hook verify [options]`)" in err


def test_a_fatal_error_under_json_is_a_json_object(project: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--json", "--explain", "nope", "--all")
    assert code == 1
    assert json.loads(out) == {"error": "pyproject.toml at " + project.head()[:12]
                               + ": no image named 'nope' (images: base, api)", "exit_code": 1}  # fmt: skip
    assert "mab-hook: error:" in err


@pytest.mark.parametrize("value", ["-5", "0", "nan", "inf", "soon", "1e308", "604801"])
def test_a_bad_timeout_is_a_usage_error(capsys: pytest.CaptureFixture[str], value: str) -> None:
    with pytest.raises(SystemExit) as stopped:
        cli.main(["--all", "--timeout", value])
    assert stopped.value.code == 2
    said = f"argument --timeout: invalid number of seconds above 0 and at most a week value: '{value}'"
    assert said in capsys.readouterr().err


def test_git_missing_is_said_plainly(project: Repo, tmp_path: object) -> None:
    proc = subprocess.run((sys.executable, "-m", "mab_hook", "--all"), cwd=project.path, env={"PATH": "/nonexistent"},
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert (
        proc.stderr == "mab-hook: error: git is not installed (or not on PATH): install git, then run again\n"
    )
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr


def test_a_bare_repository_is_planned_from_its_commits(
    project: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    project.git("push", "-q", "origin", "main")
    code, out, err = run(capsys, "--dry-run", "--all", "-C", str(project.remote))
    assert code == 0, out
    assert "1. base" in out
    code, out, err = run(capsys, "--dry-run", "-C", str(project.remote))
    assert code == 1
    assert "is a bare repository: say what to build with --all or --from REF" in err


def test_sighup_stops_and_exits_129(project: Repo) -> None:
    """A closed terminal or a dropped ssh: stopped like ^C, with its own exit code."""
    script = ("import os, signal, sys; from mab_hook import cli, planning\n"
              "def hang(*a, **k):\n    os.kill(os.getpid(), signal.SIGHUP)\n    raise AssertionError('not stopped')\n"
              "planning.plan_at = hang\nsys.exit(cli.main(['--all']))\n")  # fmt: skip
    proc = subprocess.run((sys.executable, "-c", script), cwd=project.path, capture_output=True, text=True,
                          check=False)  # fmt: skip
    assert proc.returncode == 129, proc.stdout + proc.stderr
    assert "interrupted by SIGHUP: builds stopped, no tag was published" in proc.stderr


def test_control_characters_in_file_names_never_reach_the_terminal_raw(
    project: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    first = project.head()
    project.commit({"api/evil\x1b[2Jname\nfake line": "x\n"})
    code, out, _err = run(capsys, "--dry-run", "--from", first)
    assert code == 0
    assert "\x1b" not in out and "\nfake line" not in out
    assert "api/evil\\x1b[2Jname\\x0afake line" in out


def test_planning_past_its_budget_stops_with_what_to_do(project: Repo, capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("MAB_HOOK_BUDGET", "0.000001")
    code, _out, err = run(capsys, "--all", "--dry-run")
    assert code == 1
    assert "planning the push took more than 1e-06 s and was stopped; nothing was built" in err
    assert "run with --budget SECONDS or set MAB_HOOK_BUDGET" in err
    assert run(capsys, "--all", "--dry-run", "--budget", "60")[0] == 0  # the command line's wins
    monkeypatch.setenv("MAB_HOOK_BUDGET", "soon")
    code, _out, err = run(capsys, "--all", "--dry-run")
    assert (code, "MAB_HOOK_BUDGET='soon' is not a number of seconds" in err) == (1, True)


@pytest.mark.parametrize(
    "line", ["refs/heads/main zzzz refs/heads/main 0000", "refs/heads/main HEAD~1 refs/heads/main HEAD"]
)
def test_a_pre_push_line_whose_shas_are_not_shas_is_refused(
    project: Repo, capsys: pytest.CaptureFixture[str], line: str
) -> None:
    code, _out, err = run(capsys, "origin", str(project.remote), "--dry-run", stdin=line + "\n")
    assert code == 1
    assert "pre-push input line 1 is not '<local ref> <local sha> <remote ref> <remote sha>'" in err


def test_the_work_tree_as_it_is_is_planned_and_publishes_nothing(
    project: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    """While iterating: uncommitted changes and new files are what is planned, against HEAD;
    nothing is committed, the index and the refs stay as they were."""
    head = project.head()
    project.write({"api/main.py": "print(2)\n", "api/new.py": "x = 1\n", "docs/index.md": "# more\n"})
    status, refs = project.git("status", "--porcelain"), project.git("for-each-ref")
    code, out, err = run(capsys, "--work-tree", "--dry-run")
    assert code == 0, err
    assert "(uncommitted changes (--work-tree), against HEAD)" in out
    assert "1. api [" in out and "base [" not in out, out
    assert "api/new.py" in out or "api/main.py" in out
    assert (project.head(), project.git("status", "--porcelain"), project.git("for-each-ref")) == (
        head,
        status,
        refs,
    )
    code, out, err = run(capsys, "--work-tree", "--all", "--dry-run")
    assert code == 0 and "1. base [" in out and "2. api [" in out, out + err
    assert "(the work tree as it is (--work-tree --all))" in out
    refused = ("mab-hook: error: --work-tree builds the work tree against HEAD (or every image, with --all): "
               "it takes no --from, --to, --publish or remote")  # fmt: skip
    for alone in (("--publish",), ("--from", head), ("--to", head), ("origin",)):
        code, _out, err = run(capsys, "--work-tree", *alone)
        assert code == 1 and refused in err.splitlines(), (alone, err)


def test_a_signal_that_lands_in_a_finalizer_is_sent_again_not_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    """Python drops what a `__del__` raises: a ^C landing while the garbage collector runs one
    (GitPython's) would let the builds run on. It is sent again a moment later."""
    sent: list[tuple[float, object, tuple[object, ...]]] = []

    class Timer:
        def __init__(self, delay: float, function: object, args: tuple[object, ...]) -> None:
            sent.append((delay, function, args))

        def start(self) -> None:
            pass

    monkeypatch.setattr("mab_hook.cli.threading.Timer", Timer)

    class Finalizing:
        def __del__(self) -> None:
            pass

    frame = Finalizing.__del__.__code__
    in_del = type("Frame", (), {"f_code": frame})()
    cli._interrupt(signal.SIGINT, in_del)
    cli._raise(signal.SIGTERM, in_del)
    assert sent == [
        (0.05, os.kill, (os.getpid(), signal.SIGINT)),
        (0.05, os.kill, (os.getpid(), signal.SIGTERM)),
    ]
    with pytest.raises(KeyboardInterrupt):
        cli._interrupt(signal.SIGINT, sys._getframe())
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        cli._raise(signal.SIGTERM, None)


GATE_HELP = (  # what `mab-hook --help` says of each argument: the README's words
    "remote as a git pre-push hook: the remote's name (the refs being pushed are read from standard input)",
    "url as a git pre-push hook: the remote's URL",
    "--all build every image of the commit (--to, default HEAD)",
    "--from REF build what changed since REF",
    "--to REF the commit to build (default HEAD)",
    "--work-tree by hand, while iterating: plan and build the work tree as it is (uncommitted changes and "
    "new files included) against HEAD, or every image with --all; never publishes",
    "--dry-run print the plan; build nothing",
    "--publish by hand: also move the public tags, as the publishing policy says for the branch (a push "
    "publishes once the remote accepts it; by hand, without this, images go to staging tags only)",
    "--bake print the affected images as a bake definition (JSON) that `docker buildx bake -f -` builds at "
    "the repository's root; build nothing",
    "--explain NAME say why image NAME is or is not affected; build nothing",
    "--timeout SECONDS stop any image's build that takes longer (overrides the configured timeout)",
)


def test_help_says_what_each_argument_does(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    said = " ".join(capsys.readouterr().out.split())  # as wrapped at any width
    assert said.startswith("usage: mab-hook [-h] [--version] ")
    assert (
        " Build the Docker images affected by the commits being pushed, for every platform in "
        "[tool.multiarch] of pyproject.toml; fail if any build fails. Commands: doctor, install, "
        "verify, build, publish, status, gc, report (mab-hook COMMAND --help). "
    ) in said
    for entry in GATE_HELP:  # whole: nothing before or after it but the next entry
        assert re.search(rf"(^| ){re.escape(entry)}( |$)", said), entry


def test_the_program_collects_garbage_less_often_and_not_once_more_at_its_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Planning frees what it loads by reference count: the program's collector runs less often,
    and what is left when it ends goes with the process, not walked once more (bench/RESULTS.md).
    `main` itself leaves the collector alone, for a program that calls it."""
    seen: list[tuple[int, ...]] = []

    def main(argv: object = None) -> int:
        seen.append(gc.get_threshold())
        return 7

    before = gc.get_threshold()
    monkeypatch.setattr(cli, "main", main)
    gc.set_threshold(500, 7, 9)
    try:
        assert cli.entry() == 7
        assert seen == [(cli.YOUNG_OBJECTS, 7, 9)] and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
    assert subprocess.run(
        (sys.executable, "-m", "mab_hook", "--version"), capture_output=True, text=True, check=False
    ).stdout.startswith("mab-hook ")


def test_main_leaves_the_collector_as_it_was(project: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    before = gc.get_threshold()
    code, _out, _err = run(capsys, "--all", "--dry-run")
    assert code == 0 and gc.get_threshold() == before
