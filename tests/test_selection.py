"""What a by-hand command works on: the range it names, in the repository it names."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mab_hook.errors import FatalError
from mab_hook.selection import Range, plans_of
from tests.conftest import Repo

FILES = {
    "pyproject.toml": '[tool.multiarch]\nplatforms = ["linux/amd64"]\n',
    "app/Dockerfile": "FROM scratch\n",
}


def test_a_range_must_be_named() -> None:
    with pytest.raises(FatalError) as info:
        plans_of(Range(False, None, None, None, None, None), "verify", os.environ)
    assert str(info.value) == "say what to verify: --all (every image of --to, default HEAD) or --from REF"


def test_the_repository_named_is_planned_wherever_the_command_runs(
    repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sha = repo.commit(FILES)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    _handle, [plan] = plans_of(Range(True, None, None, repo.path, None, None), "verify", os.environ)
    assert plan.commit.sha == sha and [p.image.name for p in plan.affected] == ["app"]
    monkeypatch.chdir(repo.path)  # none named: the one the command runs in
    _handle, [plan] = plans_of(Range(True, None, None, None, None, None), "verify", os.environ)
    assert plan.commit.sha == sha


def test_the_ref_ci_says_was_pushed_names_the_commit_it_plans(repo: Repo) -> None:
    repo.commit(FILES)
    _handle, [plan] = plans_of(
        Range(True, None, None, repo.path, None, "refs/heads/release"), "publish", os.environ
    )
    assert [(ref.name, ref.full) for ref in plan.commit.refs] == [("release", "refs/heads/release")]
