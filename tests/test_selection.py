"""What a by-hand command works on: the range it names, in the repository it names."""

from __future__ import annotations

import os
from pathlib import Path
from typing import cast

import pytest

from mab_hook.errors import FatalError
from mab_hook.registry import Access, Registry
from mab_hook.selection import Range, can_ask, plans_of, pushed_only
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


PUSHED = {
    "pyproject.toml": '[tool.multiarch]\nplatforms = ["linux/amd64"]\nregistry = "reg.internal:5000/team"\npush = true\n'
    '[tool.multiarch.images.api]\ncontext = "api"\n[tool.multiarch.images.web]\ncontext = "web"\n',
    **{f"{name}/Dockerfile": "FROM scratch\n" for name in ("api", "web")},
}


class Asked:
    """A registry gateway that answers `access` as told, and notes what it was asked."""

    def __init__(self, answer: Access) -> None:
        self.answer = answer
        self.asked: list[tuple[str, bool]] = []

    def access(self, reference: str, *, push: bool) -> Access:
        self.asked.append((reference, push))
        return self.answer


@pytest.mark.parametrize("what", ["verify", "publish"])
def test_each_registry_is_asked_once_and_only_to_publish_with_push_rights(repo: Repo, what: str) -> None:
    repo.commit(PUSHED)
    _handle, plans = plans_of(Range(True, None, None, repo.path, None, None), what, os.environ)
    registry = Asked(Access(True, "authenticated", ""))
    can_ask(cast(Registry, registry), plans, what)
    push = what == "publish"
    assert registry.asked == [("reg.internal:5000/team/api", push)]  # one question: web's registry is api's


@pytest.mark.parametrize(("code", "fix"), [
    ("unreachable", "check that reg.internal:5000 is reachable from this runner"),
    ("no-credentials", "run `docker login reg.internal:5000` (or set up its credential helper) on this runner first"),
])  # fmt: skip
def test_a_registry_that_cannot_be_asked_says_what_to_do_before_any_image(
    repo: Repo, code: str, fix: str
) -> None:
    repo.commit(PUSHED)
    _handle, plans = plans_of(Range(True, None, None, repo.path, None, None), "verify", os.environ)
    with pytest.raises(FatalError) as info:
        can_ask(cast(Registry, Asked(Access(False, code, "HTTP 401"))), plans, "verify")
    assert str(info.value) == f"cannot verify: HTTP 401; {fix}"


def test_what_is_not_pushed_cannot_be_verified_and_a_slow_plan_is_named(repo: Repo) -> None:
    repo.commit(FILES)
    _handle, plans = plans_of(Range(True, None, None, repo.path, None, None), "verify", os.environ)
    with pytest.raises(FatalError) as info:
        pushed_only(plans, "verify")
    assert str(info.value) == (
        f"{plans[0].config.source}: push = false, so no image is in a registry to verify: only pushed images "
        "can be checked or merged (set push = true in [tool.multiarch])"
    )
    with pytest.raises(FatalError, match=r"^planning \(verify\) took more than 1e-09 s"):
        plans_of(Range(True, None, None, repo.path, 1e-9, None), "verify", os.environ)
