"""The gate's own decisions: whose push runs it (git's pre-push hook, pre-commit's, or a person
by hand), and what it says only by hand."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping

import pytest

from mab_hook.commands import gate
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
