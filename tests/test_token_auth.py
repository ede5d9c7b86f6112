"""A registry behind a real token service (docker-registry `auth: token`, tests/tokens.py), as
Harbor and GitLab run theirs: a robot account's Basic credentials exchanged for JWTs scoped per
repository, by the engine and by mab-hook alike."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import pytest

from mab_hook.registry import Registry
from tests.conftest import Lab, LabRegistry, Repo, mab, start_registry
from tests.tokens import TokenService, registry_auth, token_service

pytestmark = pytest.mark.lab
ROBOT, SECRET = "robot$team+ci", "s3cret-robot"  # Harbor's robot account names: `$` and `+` in them


def grants(user: str, repository: str) -> tuple[str, ...]:
    """The robot may pull everywhere (the engine asks to pull the repository a base layer came
    from, to mount it rather than upload it again) and push under team/, except team/frozen."""
    if user != ROBOT:
        return ()
    return ("pull", "push") if repository.startswith("team/") and repository != "team/frozen" else ("pull",)


class Behind(NamedTuple):
    registry: LabRegistry
    service: TokenService
    env: dict[str, str]


@contextmanager
def behind_tokens(lab: Lab, tmp_path: Path, lifetime: float = 300.0) -> Iterator[Behind]:
    """A registry behind a token service whose tokens live `lifetime` seconds (the registry
    allows 60 s of clock skew past it), docker logged in to it as the robot."""
    with token_service(tmp_path / "tokens", {ROBOT: SECRET}, grants, lifetime=lifetime) as service:
        registry = start_registry(
            tmp_path / "registry", user=ROBOT, password=SECRET, auth=registry_auth(service)
        )
        try:
            yield Behind(registry, service, registry.docker_config(lab, tmp_path / "docker", logged_in=True))
        finally:
            registry.stop()


def project(repo: Repo, lab: Lab, registry: str, step: str = "true") -> str:
    return repo.commit({
        "pyproject.toml": f'[tool.multiarch]\nplatforms = ["linux/amd64", "linux/arm64"]\nregistry = "{registry}/team"\n'
                          'push = true\n[tool.multiarch.images.api]\ncontext = "api"\n',
        "api/Dockerfile": f"FROM {lab.busybox}\nRUN echo {uuid.uuid4().hex} > /salt && {step}\n",
    })  # fmt: skip


def test_a_robot_account_pushes_and_publishes_through_the_token_service(
    lab: Lab, repo: Repo, tmp_path: Path
) -> None:
    with behind_tokens(lab, tmp_path) as (registry, service, env):
        _pushes_and_publishes(lab, repo, registry, service, env)


def _pushes_and_publishes(lab: Lab, repo: Repo, registry: LabRegistry, service: TokenService,
                          env: dict[str, str]) -> None:  # fmt: skip
    sha = project(repo, lab, registry.address)
    built = mab(repo.path, env, "--all", "--publish")
    assert built.returncode == 0, built.stdout + built.stderr
    assert Registry(env).manifest(f"{registry.address}/team/api:{sha[:7]}") is not None
    asked = {scope for issued in service.issued if issued.user == ROBOT for scope in issued.scopes}
    assert {"repository:team/api:pull,push", "repository:team/mab-staging/api:pull"} <= asked
    again = mab(repo.path, env, "--all", "--publish")
    assert again.returncode == 0 and "already in the registry" in again.stdout, again.stdout
    verified = mab(repo.path, env, "verify", "--all")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_a_token_that_expires_during_the_build_is_fetched_again(lab: Lab, repo: Repo, tmp_path: Path) -> None:
    with behind_tokens(lab, tmp_path, lifetime=-52) as (registry, service, env):  # 60 s of leeway: 8 s left
        _fetched_again(lab, repo, registry, service, env)


def _fetched_again(
    lab: Lab, repo: Repo, registry: LabRegistry, service: TokenService, env: dict[str, str]
) -> None:
    sha = project(repo, lab, registry.address, step="sleep 10")
    built = mab(repo.path, env, "--all", "--publish")
    assert built.returncode == 0, built.stdout + built.stderr
    assert Registry(env).manifest(f"{registry.address}/team/api:{sha[:7]}") is not None
    staging_reads = [i.at for i in service.issued if i.scopes == ("repository:team/mab-staging/api:pull",)]
    assert len(staging_reads) >= 2 and staging_reads[-1] - staging_reads[0] > 8  # before the build, and after


def test_a_repository_the_robot_may_only_pull_blocks_the_push_before_any_build(
    lab: Lab, repo: Repo, tmp_path: Path
) -> None:
    with behind_tokens(lab, tmp_path) as (registry, _service, env):
        project(repo, lab, registry.address)
        repo.commit({
            "pyproject.toml": (repo.path / "pyproject.toml").read_text()
            + '[tool.multiarch.images.frozen]\ncontext = "api"\n',
        })  # fmt: skip
        blocked = mab(repo.path, env, "--all", "--publish")
        assert blocked.returncode == 1, blocked.stdout + blocked.stderr
        said = f"{registry.address}/team/frozen: these credentials may not push there (HTTP 401)"
        assert said in blocked.stderr and "Ask for push rights on each" in blocked.stderr, blocked.stderr
        assert Registry(env).tag_list(f"{registry.address}/team/mab-staging/api") in (
            None,
            [],
        )  # nothing built
