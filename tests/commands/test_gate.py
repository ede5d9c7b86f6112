"""The gate's own decisions: whose push runs it (git's pre-push hook, pre-commit's, or a person
by hand), and what it says only by hand."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from mab_hook import planning, progress
from mab_hook.commands import gate
from mab_hook.output import Printer
from mab_hook.repository import open_repo
from tests.conftest import Repo, mab

NAME, URL, TO = "PRE_COMMIT_REMOTE_NAME", "PRE_COMMIT_REMOTE_URL", "PRE_COMMIT_TO_REF"


@pytest.mark.parametrize(("argv", "env", "pushed"), [
    ((), {}, None),  # by hand
    (("origin", "git@host:team/app.git"), {}, "origin"),  # git runs its pre-push hook: name and URL
    (("origin",), {}, None),  # a remote named by hand (`mab-hook origin --dry-run`): not a push
    ((), {TO: "abc", NAME: "origin", URL: "git@host:team/app.git"}, "origin"),  # pre-commit's
    ((), {TO: "abc", URL: "git@host:team/app.git"}, "git@host:team/app.git"),  # a push to a URL
    ((), {NAME: "origin"}, "origin"),  # a pre-commit that names the remote and no range
    ((), {TO: "abc"}, None),  # a range, but no remote to wait for
    ((), {URL: "git@host:team/app.git"}, None),  # neither a range nor a remote's name
])  # fmt: skip
def test_whose_push_runs_the_gate(argv: tuple[str, ...], env: Mapping[str, str], pushed: str | None) -> None:
    assert gate.pushed_to(gate.options(gate.parse_args(argv)), env) == pushed


def test_by_hand_a_configuration_changed_but_not_committed_is_said_and_under_a_push_it_is_not(
    repo: Repo,
) -> None:
    sha = repo.commit({
        "pyproject.toml": '[tool.multiarch]\nplatforms = ["linux/amd64"]\n[tool.multiarch.images.app]\ncontext = "app"\n',
        "app/Dockerfile": "FROM scratch\n",
    })  # fmt: skip
    quiet = mab(repo.path, os.environ, "--all", "--dry-run", "--color", "never")
    assert quiet.returncode == 0 and "not committed" not in quiet.stdout + quiet.stderr
    repo.write({"pyproject.toml": '[tool.multiarch]\nplatforms = ["linux/arm64"]\n[tool.multiarch.images.app]\n'
                                  'context = "app"\n'})  # fmt: skip
    said = mab(repo.path, os.environ, "--all", "--dry-run", "--color", "never")
    assert said.returncode == 0, said.stdout + said.stderr
    assert (f"warning: pyproject.toml: changed but not committed; mab-hook plans and builds what is committed "
            f"({sha[:12]}): commit the change to build with it") in said.stdout + said.stderr  # fmt: skip
    assert "[linux/amd64]" in said.stdout  # what is committed
    # git runs the hook with the same work tree: what is pushed is the commit, and nothing is said.
    line = f"refs/heads/main {sha} refs/heads/main {'0' * 40}\n"
    pushed = subprocess.run((sys.executable, "-m", "mab_hook", "origin", str(repo.remote), "--dry-run", "--color", "never"),
                            input=line, cwd=repo.path, capture_output=True, text=True, check=False)  # fmt: skip
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    assert "1. app" in pushed.stdout
    assert "not committed" not in pushed.stdout + pushed.stderr


def test_by_hand_a_commit_other_than_the_one_checked_out_is_planned_as_committed_and_nothing_said(
    repo: Repo,
) -> None:
    table = '[tool.multiarch]\nplatforms = ["{}"]\n[tool.multiarch.images.app]\ncontext = "app"\n'
    repo.commit({"pyproject.toml": table.format("linux/amd64"), "app/Dockerfile": "FROM scratch\n"})
    repo.commit({"app/Dockerfile": "FROM scratch\nCOPY . /\n"})
    repo.write({"pyproject.toml": table.format("linux/arm64")})
    before = mab(repo.path, os.environ, "--all", "--to", "HEAD~1", "--dry-run", "--color", "never")
    assert before.returncode == 0, before.stdout + before.stderr
    assert "[linux/amd64]" in before.stdout
    assert "not committed" not in before.stdout + before.stderr


def test_the_bake_definition_carries_the_secrets_the_pusher_grants(repo: Repo) -> None:
    """`--dry-run --bake` is what a person or a CI job runs by hand: a secret a build asks for
    comes from the pusher's git config, as for the gate's own builds."""
    repo.commit({
        "pyproject.toml": '[tool.multiarch]\nplatforms = ["linux/amd64"]\n[tool.multiarch.images.app]\n'
                          'context = "app"\nsecrets = ["id=npm"]\n',
        "app/Dockerfile": "FROM scratch\n",
    })  # fmt: skip
    repo.git("config", "--add", "mab-hook.secret", "id=npm,env=NPM_TOKEN")
    exported = mab(repo.path, {**os.environ, "NPM_TOKEN": "t0k3n"}, "--all", "--dry-run", "--bake")
    assert exported.returncode == 0, exported.stderr
    target = json.loads(exported.stdout)["target"]["app"]
    assert target["secret"] == ["id=npm,env=NPM_TOKEN"]
    assert "t0k3n" not in exported.stdout


class _Terminal:
    """`progress.to_terminal` as a terminal that is there, or not, and what it was given."""

    def __init__(self, there: bool) -> None:
        self.there = there
        self.written: list[str] = []

    def __call__(self, text: str) -> bool:
        self.written.append(text)
        return self.there


@pytest.mark.parametrize(("env", "there", "on_terminal"), [
    ({"PRE_COMMIT": "1"}, True, True),  # pre-commit holds stdout until the hook ends: the terminal now
    ({"PRE_COMMIT": "1"}, False, False),  # no terminal (CI): stdout
    ({}, True, False),  # not under pre-commit: stdout, as every result
])  # fmt: skip
def test_the_plan_before_a_build_goes_where_the_user_sees_it_now(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], there: bool, on_terminal: bool
) -> None:
    terminal = _Terminal(there)
    monkeypatch.setattr(progress, "to_terminal", terminal)
    stream = io.StringIO()
    gate.shown_live("1. app  (Dockerfile changed)", Printer(stream, color=False), env)
    if on_terminal:
        assert (terminal.written, stream.getvalue()) == (["1. app  (Dockerfile changed)\n"], "")
    else:
        assert stream.getvalue() == "1. app  (Dockerfile changed)\n"
        assert terminal.written == (["1. app  (Dockerfile changed)\n"] if env else [])


@pytest.mark.parametrize(("argv", "digests"), [
    (("--all",), True), (("--all", "--dry-run"), False), (("--all", "--explain", "app"), False),
    (("--all", "--bake"), False), (("--all", "--dry-run", "--explain", "app"), False),
])  # fmt: skip
def test_input_digests_are_worked_out_only_when_something_may_be_built(
    repo: Repo, monkeypatch: pytest.MonkeyPatch, argv: tuple[str, ...], digests: bool
) -> None:
    asked: list[bool] = []
    monkeypatch.setattr(planning, "plan_at", lambda *_a, **kw: asked.append(kw["digests"]))
    options = gate.options(gate.parse_args(argv))
    printer = Printer(io.StringIO(), color=False)
    gate.plan_commits(options, open_repo(repo.path), ("one", "two"), {}, printer, by_hand=False)  # type: ignore[arg-type]
    assert asked == [digests, digests]


def test_by_hand_to_alone_and_a_bare_repository_without_a_range_are_refused(
    repo: Repo, tmp_path: Path
) -> None:
    repo.commit({"pyproject.toml": '[tool.multiarch]\nplatforms = ["linux/amd64"]\n', "a": "1"})
    alone = mab(repo.path, os.environ, "--to", "HEAD", "--dry-run", "--color", "never")
    assert alone.returncode == 1
    assert "mab-hook: error: --to needs --from REF or --all" in alone.stderr.splitlines()
    repo.git("remote", "remove", "origin")
    nothing = mab(
        repo.path, os.environ, "--dry-run", "--color", "never"
    )  # a work tree, no remote, no upstream
    assert nothing.returncode == 1
    assert (
        "no range to build: HEAD has no upstream branch and the repository no remote to push to"
        in nothing.stderr
    )
    bare = tmp_path / "bare.git"
    subprocess.run(("git", "clone", "-q", "--bare", str(repo.path), str(bare)), check=True)
    subprocess.run(("git", "-C", str(bare), "remote", "remove", "origin"), check=True)  # nothing upstream
    refused = mab(bare, os.environ, "--dry-run", "--color", "never")
    assert refused.returncode == 1
    said = "is a bare repository: say what to build with --all or --from REF"
    assert [line for line in refused.stderr.splitlines() if line.endswith(said)], refused.stderr
    assert refused.stderr.startswith("mab-hook: error: ") and "Traceback" not in refused.stderr
