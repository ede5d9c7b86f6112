"""Planning one commit after another in real repositories shaped like public ones: what each
push affects, and why. Compose and bake files are resolved by the lab's real buildx."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from mab_hook import changes, planning, process
from mab_hook.hook import open_repo
from mab_hook.plan import Plan
from tests.conftest import Lab, Repo
from tests.test_definitions import BAKE, OTEL

PLATFORMS = '["linux/amd64", "linux/arm64"]'


def plan(repo: Repo, env: Mapping[str, str], rev: str = "HEAD") -> Plan:
    handle = open_repo(repo.path)
    commit = changes.for_range(handle, f"{rev}^", rev, "main")
    return planning.plan_at(handle, commit, env=env, build_platform="linux/amd64")


def affected(found: Plan) -> dict[str, tuple[str, ...]]:
    return {p.image.name: p.reasons for p in found.affected}


OTEL_REPO = {
    **OTEL,
    "pyproject.toml": f'[tool.multiarch]\nplatforms = {PLATFORMS}\ncompose = "docker-compose.yml"\n',
    "src/ad/Dockerfile": "FROM scratch\nCOPY src/ad/build.gradle src/ad/src/ /app/\n",
    "src/ad/build.gradle": "plugins {}\n",
    "src/ad/src/Main.java": "class Main {}\n",
    "src/cart/Dockerfile": "FROM scratch\nCOPY . /app/\n",
    "src/cart/cart.cs": "class Cart {}\n",
    "README.md": "# demo\n",
}


@pytest.mark.lab
def test_a_compose_repository_push_by_push(repo: Repo, lab: Lab) -> None:
    repo.commit(OTEL_REPO)
    repo.commit({"src/ad/build.gradle": "plugins { java }\n"})
    # The Dockerfile reads from the repository root as its context: a change there counts.
    assert affected(plan(repo, lab.env)) == {
        "ad": ("COPY 'src/ad/build.gradle' (line 2) reads: src/ad/build.gradle",)
    }
    repo.commit({".env": OTEL[".env"].replace("2.10.0", "2.11.0")})  # a build arg, in .env only
    assert affected(plan(repo, lab.env)) == {"ad": ("its definition in .env changed",)}
    # The compose file changed, but no image's definition did.
    repo.commit(
        {"docker-compose.yml": OTEL["docker-compose.yml"] + "  frontend-proxy:\n    image: envoy:v1\n"}
    )
    found = plan(repo, lab.env)
    assert (found.affected, set(found.unaffected)) == ((), {"ad", "cart"})
    compose = repo.path / "docker-compose.yml"
    repo.commit({"docker-compose.yml": compose.read_text() + "  checkout:\n    build: ./src/cart\n"})
    assert affected(plan(repo, lab.env)) == {"checkout": ("new image in docker-compose.yml",)}
    repo.commit({"docker-compose.yml": compose.read_text().replace("build: ./src/cart\n  valkey", "build:\n"
                 "      context: ./src/cart\n      args:\n        CART_VERSION: '2'\n  valkey")})  # fmt: skip
    assert affected(plan(repo, lab.env)) == {"cart": ("its definition in docker-compose.yml changed",)}
    repo.commit({"README.md": "# demo, again\n"})
    assert plan(repo, lab.env).affected == ()


BAKE_REPO = {
    **BAKE,
    "pyproject.toml": f'[tool.multiarch]\nplatforms = {PLATFORMS}\nbake = "docker-bake.hcl"\nregistry = "reg.invalid/t"\n',
    "tool/Dockerfile": "FROM base\nARG VARIANT\nCOPY tool.sh /\n",
    "tool/tool.sh": "echo tool\n",
    "base/Dockerfile": "FROM scratch\nCOPY etc/ /etc/\n",
    "base/etc/config": "x=1\n",
}


@pytest.mark.lab
def test_a_bake_repository_push_by_push(repo: Repo, lab: Lab) -> None:
    repo.commit(BAKE_REPO)
    repo.commit({"base/etc/config": "x=2\n"})
    found = plan(repo, lab.env)
    # base is tool's `target:` context, outside the default group: built for it, never on its own.
    assert affected(found) == {
        "tool-lite": ("base image base is rebuilt",),
        "tool-full": ("base image base is rebuilt",),
    }
    assert [p.image.name for p in found.context_only] == ["base"]
    assert {p.image.name: [b.name for b in p.bases] for p in found.affected} == {
        "tool-lite": ["base"],
        "tool-full": ["base"],
    }
    assert found.unaffected == ()
    repo.commit({"docker-bake.hcl": BAKE["docker-bake.hcl"].replace('default = "1.0"', 'default = "1.1"')})
    assert affected(plan(repo, lab.env)) == {
        "tool-lite": ("its definition in docker-bake.hcl changed",),
        "tool-full": ("its definition in docker-bake.hcl changed",),
    }
    repo.commit(
        {
            "docker-bake.hcl": (repo.path / "docker-bake.hcl")
            .read_text()
            .replace('["lite", "full"]', '["lite", "full", "max"]')
        }
    )
    assert affected(plan(repo, lab.env)) == {"tool-max": ("new image in docker-bake.hcl",)}


@pytest.mark.lab
def test_without_any_configuration_buildx_default_files_define_the_images(repo: Repo, lab: Lab) -> None:
    files: dict[str, Any] = {**OTEL_REPO, "pyproject.toml": f"[tool.multiarch]\nplatforms = {PLATFORMS}\n",
                             "tools/Dockerfile": "FROM scratch\n"}  # fmt: skip
    repo.commit(files)
    repo.commit({"src/cart/cart.cs": "class Cart2 {}\n", "tools/Dockerfile": "FROM scratch\nCOPY . /\n"})
    found = plan(repo, lab.env)
    assert affected(found) == {"cart": ("COPY '.' (line 2) reads: src/cart/cart.cs",)}
    assert set(found.unaffected) == {"ad"}  # tools/Dockerfile is in no definition: no image


@pytest.mark.lab
def test_repeated_directory_names_and_dockerfile_ignore_files(repo: Repo, lab: Lab) -> None:
    """docker/awesome-compose without its compose files: discovery of its Dockerfiles."""
    repo.commit({
        "pyproject.toml": f"[tool.multiarch]\nplatforms = {PLATFORMS}\n",
        "django/app/Dockerfile": "FROM scratch\nCOPY . /\n", "django/app/manage.py": "x\n",
        "flask/app/Dockerfile": "FROM scratch\nCOPY . /\n", "flask/app/app.py": "x\n",
        "flask/app/Dockerfile.dockerignore": "*.log\n",
    })  # fmt: skip
    repo.commit({"flask/app/app.py": "y\n", "flask/app/debug.log": "z\n"})
    found = plan(repo, lab.env)
    assert affected(found) == {"flask-app": ("COPY '.' (line 2) reads: flask/app/app.py",)}
    assert found.unaffected == ("django-app",)
    repo.commit({"flask/app/Dockerfile.dockerignore": "*.log\n*.tmp\n"})
    assert affected(plan(repo, lab.env)) == {
        "flask-app": ("ignore file changed: flask/app/Dockerfile.dockerignore",)
    }


@pytest.mark.lab
def test_a_push_that_touches_no_definition_file_runs_no_resolver(
    repo: Repo, lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The resolution is kept by the files' blob ids: the usual push pays nothing for it."""
    resolved: list[tuple[str, ...]] = []
    real = process.run

    def counted(cmd: Sequence[str], **kw: Any) -> process.Completed:
        if "bake" in cmd[:3] and "--print" in cmd:  # the resolver, the buildx plugin run directly
            resolved.append(tuple(cmd))
        return real(cmd, **kw)

    monkeypatch.setattr(process, "run", counted)
    repo.commit(OTEL_REPO)
    repo.commit({"src/cart/cart.cs": "class Cart3 {}\n"})
    assert affected(plan(repo, lab.env)) == {"cart": ("COPY '.' (line 2) reads: src/cart/cart.cs",)}
    assert len(resolved) == 1
    repo.commit({"src/cart/cart.cs": "class Cart4 {}\n"})
    assert affected(plan(repo, lab.env)) == {"cart": ("COPY '.' (line 2) reads: src/cart/cart.cs",)}
    assert len(resolved) == 1  # the same files: nothing resolved again
    repo.commit({".env": OTEL[".env"] + "UNUSED=1\n"})
    assert affected(plan(repo, lab.env)) == {}  # .env changed, no image's definition did
    # This commit's files resolved; the commit before's, to compare with, came from the cache.
    assert len(resolved) == 2
