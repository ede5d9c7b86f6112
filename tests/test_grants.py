"""Grants: what the pusher gives builds, read from git config, never from the commit."""

from __future__ import annotations

import os

import pytest

from mab_hook import grants
from mab_hook.errors import FatalError
from mab_hook.images import Image
from tests.conftest import Repo

ASKING = Image("api", "api", "api/Dockerfile", ("linux/amd64",), secrets=("id=npm,env=AWS_SECRET_ACCESS_KEY",),
               extra=(("network", '"host"'),))  # fmt: skip


def test_grants_are_read_from_git_config_at_every_level(repo: Repo) -> None:
    repo.git("config", "--add", "mab-hook.secret", "id=npm,env=NPM_TOKEN")
    repo.git("config", "--add", "mab-hook.ssh", "default")
    once = {
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "mab-hook.allow",
        "GIT_CONFIG_VALUE_0": "network.host",
    }
    found = grants.read(repo.path, {**os.environ, **once})  # as `git -c ... push` hands it to the hook
    assert found == grants.Grants(
        {"npm": "id=npm,env=NPM_TOKEN"}, {"default": "default"}, frozenset({"network.host"})
    )
    assert grants.read(repo.path, os.environ).allow == frozenset()


def test_what_was_not_granted_is_refused_with_the_commands_that_grant_it() -> None:
    assert grants.missing(ASKING, grants.NONE) == [
        "git config --add mab-hook.secret id=npm,env=AWS_SECRET_ACCESS_KEY",
        "git config --add mab-hook.allow network.host",
    ]
    with pytest.raises(FatalError, match=r"(?s)asks builds for what only you can give.*  api: git config"):
        grants.check([ASKING], grants.NONE)
    some = grants.Grants({"npm": "id=npm,src=/home/me/.npmrc"}, {}, frozenset())
    assert grants.missing(ASKING, some) == ["git config --add mab-hook.allow network.host"]
    grants.check([ASKING], some._replace(allow=frozenset({"network.host"})))
    # A network other than the host's needs nothing; neither does an image that asks nothing.
    assert (
        grants.missing(Image("x", ".", "Dockerfile", (), extra=(("network", '"none"'),)), grants.NONE) == []
    )
    assert grants.missing(Image("x", ".", "Dockerfile", ()), grants.NONE) == []
    assert grants.missing(Image("x", ".", "Dockerfile", (), secrets=("id=gh",)), grants.NONE) == [
        "git config --add mab-hook.secret id=gh,env=GH"
    ]


@pytest.mark.parametrize("entry", [("mab-hook.secret", "env=X"), ("mab-hook.allow", "security.insecure")])
def test_a_grant_that_makes_no_sense_is_an_error(entry: tuple[str, str]) -> None:
    with pytest.raises(FatalError, match="git config mab-hook"):
        grants.parse([entry])
