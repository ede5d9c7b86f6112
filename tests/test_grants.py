"""Grants: what the pusher gives builds, read from git config, never from the commit."""

from __future__ import annotations

import os
import re
from pathlib import Path

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
    repo.git("config", "--add", "mab-hook.secret", "id=npmrc,src=/home/me/my files/.npmrc")  # a space in it
    repo.git("config", "--add", "mab-hook.engine", "arm-box")
    repo.git("config", "--add", "mab-hook.engine", "pi.lab_2")
    once = {
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "mab-hook.allow",
        "GIT_CONFIG_VALUE_0": "network.host",
    }
    found = grants.read(repo.path, {**os.environ, **once})  # as `git -c ... push` hands it to the hook
    secrets = {"npm": "id=npm,env=NPM_TOKEN", "npmrc": "id=npmrc,src=/home/me/my files/.npmrc"}
    assert found == grants.Grants(
        secrets, {"default": "default"}, frozenset({"network.host"}), frozenset({"arm-box", "pi.lab_2"})
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


def test_nothing_granted_is_nothing_and_a_config_git_cannot_read_is_an_error(
    repo: Repo, tmp_path: Path
) -> None:
    assert grants.read(repo.path, os.environ) == grants.NONE  # git config exits 1 when none is set
    (tmp_path / "gitconfig").write_text("[not closed\n")
    broken = {**os.environ, "GIT_CONFIG_GLOBAL": str(tmp_path / "gitconfig")}  # git: "bad config line 1"
    with pytest.raises(FatalError, match=rf"^git config cannot be read in {re.escape(str(repo.path))}: "):
        grants.read(repo.path, broken)


def test_an_ssh_grant_is_known_by_its_id() -> None:
    assert grants.parse([("mab-hook.ssh", "github=/home/me/.ssh/id=1")]).ssh == {
        "github": "github=/home/me/.ssh/id=1"
    }


def test_the_refusal_says_every_ask_of_every_image_and_how_to_grant_for_one_push() -> None:
    other = Image("web", "web", "web/Dockerfile", (), secrets=("id=gh,env=GH_TOKEN", "id=npm"))
    with pytest.raises(FatalError) as refused:
        grants.check([other, ASKING], grants.NONE)
    assert str(refused.value) == (
        "the pushed commit asks builds for what only you can give (a secret, the host's network); nothing was "
        "built. mab-hook gives builds only what you grant outside the repository; to grant it, run:\n"
        "  api: git config --add mab-hook.secret id=npm,env=AWS_SECRET_ACCESS_KEY; git config --add mab-hook.allow "
        "network.host\n"
        "  web: git config --add mab-hook.secret id=gh,env=GH_TOKEN; git config --add mab-hook.secret id=npm,env=NPM\n"
        "(`git -c mab-hook.secret=... push` grants for one push), then push again"
    )


@pytest.mark.parametrize(("entry", "said"), [
    (("mab-hook.secret", "env=X"), "git config mab-hook.secret 'env=X': needs id=NAME, e.g. id=npm,env=NPM_TOKEN"),
    (("mab-hook.allow", "security.insecure"), "git config mab-hook.allow 'security.insecure': allowed: network.host"),
    (("mab-hook.engine", "--host=tcp://x"), "git config mab-hook.engine '--host=tcp://x': the name of a docker context "
                                             "or buildx builder"),
])  # fmt: skip
def test_what_a_bad_grant_says(entry: tuple[str, str], said: str) -> None:
    with pytest.raises(FatalError) as refused:
        grants.parse([entry])
    assert str(refused.value) == said


@pytest.mark.parametrize(("name", "secret"), [
    ("TOKEN", True), ("NPM_TOKEN", True), ("db-password", True), ("MY_PASSWD", True), ("PASS", True),
    ("SECRET_X", True), ("API_KEY", True), ("APIKEY", True), ("AWS_CREDENTIALS", True), ("GITHUB_PAT", True),
    ("KEYBOARD", False), ("PATH", False), ("VERSION", False), ("PASSAGE", False), ("TOKENIZER_MODEL", False),
])  # fmt: skip
def test_which_build_arg_names_look_like_secrets(name: str, secret: bool) -> None:
    api = Image("api", "services/api", "services/api/Dockerfile", ("linux/amd64",), build_args=((name, "x"),))
    found = grants.secret_looking_args(api)
    assert bool(found) is secret
    if secret:
        assert found == (
            f"api: build arg {name} looks like a secret, and build args are kept in the image's history: pass it "
            f'as a BuildKit secret instead (secrets = ["id={name.lower()},env={name}"] in '
            f"[tool.multiarch.images.api], and RUN --mount=type=secret,id={name.lower()} in the Dockerfile)",
        )
