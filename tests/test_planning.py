"""Planning one commit after another in real repositories shaped like public ones: what each
push affects, and why. Compose and bake files are resolved by the lab's real buildx."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from mab_hook import analysis, cache, changes, definitions, listing, planning, process
from mab_hook.plan import Plan
from mab_hook.repository import open_repo
from tests.conftest import Lab, Repo
from tests.resolver import RECORDINGS, normal, recorded, recording, replaying
from tests.test_definitions import BAKE, OTEL

PLATFORMS = '["linux/amd64", "linux/arm64"]'


Scenario = Callable[[Repo, Mapping[str, str], pytest.MonkeyPatch], None]
SCENARIOS: dict[str, Scenario] = {}


def scenario(function: Scenario) -> Scenario:
    """A planning scenario that resolves compose or bake files: a fast test replays buildx's
    recorded answers (tests/resolver.py); the lab test asks the lab's buildx again."""
    SCENARIOS[function.__name__] = function
    return function


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


@scenario
def compose_push_by_push(repo: Repo, env: Mapping[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    repo.commit(OTEL_REPO)
    repo.commit({"src/ad/build.gradle": "plugins { java }\n"})
    # The Dockerfile reads from the repository root as its context: a change there counts.
    assert affected(plan(repo, env)) == {
        "ad": ("COPY 'src/ad/build.gradle' (line 2) reads: src/ad/build.gradle",)
    }
    repo.commit({".env": OTEL[".env"].replace("2.10.0", "2.11.0")})  # a build arg, in .env only
    assert affected(plan(repo, env)) == {"ad": ("its definition in .env changed",)}
    # The compose file changed, but no image's definition did.
    repo.commit(
        {"docker-compose.yml": OTEL["docker-compose.yml"] + "  frontend-proxy:\n    image: envoy:v1\n"}
    )
    found = plan(repo, env)
    assert (found.affected, set(found.unaffected)) == ((), {"ad", "cart"})
    compose = repo.path / "docker-compose.yml"
    repo.commit({"docker-compose.yml": compose.read_text() + "  checkout:\n    build: ./src/cart\n"})
    # The same build as cart's: built once, published under both names.
    found = plan(repo, env)
    assert affected(found) == {"cart": ("checkout: new name of its build in docker-compose.yml",)}
    assert found.affected[0].image.also == ("checkout",)
    repo.commit({"docker-compose.yml": compose.read_text().replace("build: ./src/cart\n  valkey", "build:\n"
                 "      context: ./src/cart\n      args:\n        CART_VERSION: '2'\n  valkey")})  # fmt: skip
    assert affected(plan(repo, env)) == {"cart": ("its definition in docker-compose.yml changed",)}
    repo.commit({"README.md": "# demo, again\n"})
    assert plan(repo, env).affected == ()


BAKE_REPO = {
    **BAKE,
    "pyproject.toml": f'[tool.multiarch]\nplatforms = {PLATFORMS}\nbake = "docker-bake.hcl"\nregistry = "reg.invalid/t"\n',
    "tool/Dockerfile": "FROM base\nARG VARIANT\nCOPY tool.sh /\n",
    "tool/tool.sh": "echo tool\n",
    "base/Dockerfile": "FROM scratch\nCOPY etc/ /etc/\n",
    "base/etc/config": "x=1\n",
}


@scenario
def bake_push_by_push(repo: Repo, env: Mapping[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    repo.commit(BAKE_REPO)
    repo.commit({"base/etc/config": "x=2\n"})
    found = plan(repo, env)
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
    assert affected(plan(repo, env)) == {
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
    assert affected(plan(repo, env)) == {"tool-max": ("new image in docker-bake.hcl",)}


@scenario
def default_files(repo: Repo, env: Mapping[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Without any configuration, buildx's default files define the images."""
    files: dict[str, Any] = {**OTEL_REPO, "pyproject.toml": f"[tool.multiarch]\nplatforms = {PLATFORMS}\n",
                             "tools/Dockerfile": "FROM scratch\n"}  # fmt: skip
    repo.commit(files)
    repo.commit({"src/cart/cart.cs": "class Cart2 {}\n", "tools/Dockerfile": "FROM scratch\nCOPY . /\n"})
    found = plan(repo, env)
    assert affected(found) == {"cart": ("COPY '.' (line 2) reads: src/cart/cart.cs",)}
    assert set(found.unaffected) == {"ad"}  # tools/Dockerfile is in no definition: no image


def test_repeated_directory_names_and_dockerfile_ignore_files(repo: Repo, tmp_path: Path) -> None:
    """docker/awesome-compose without its compose files: discovery of its Dockerfiles."""
    env = replaying(tmp_path)
    repo.commit({
        "pyproject.toml": f"[tool.multiarch]\nplatforms = {PLATFORMS}\n",
        "django/app/Dockerfile": "FROM scratch\nCOPY . /\n", "django/app/manage.py": "x\n",
        "flask/app/Dockerfile": "FROM scratch\nCOPY . /\n", "flask/app/app.py": "x\n",
        "flask/app/Dockerfile.dockerignore": "*.log\n",
    })  # fmt: skip
    repo.commit({"flask/app/app.py": "y\n", "flask/app/debug.log": "z\n"})
    found = plan(repo, env)
    assert affected(found) == {"flask-app": ("COPY '.' (line 2) reads: flask/app/app.py",)}
    assert found.unaffected == ("django-app",)
    repo.commit({"flask/app/Dockerfile.dockerignore": "*.log\n*.tmp\n"})
    assert affected(plan(repo, env)) == {
        "flask-app": ("ignore file changed: flask/app/Dockerfile.dockerignore",)
    }


@scenario
def no_definition_file_touched(repo: Repo, env: Mapping[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
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
    assert affected(plan(repo, env)) == {"cart": ("COPY '.' (line 2) reads: src/cart/cart.cs",)}
    assert len(resolved) == 1
    repo.commit({"src/cart/cart.cs": "class Cart4 {}\n"})
    assert affected(plan(repo, env)) == {"cart": ("COPY '.' (line 2) reads: src/cart/cart.cs",)}
    assert len(resolved) == 1  # the same files: nothing resolved again
    repo.commit({".env": OTEL[".env"] + "UNUSED=1\n"})
    assert affected(plan(repo, env)) == {}  # .env changed, no image's definition did
    # This commit's files resolved; the commit before's, to compare with, came from the cache.
    assert len(resolved) == 2


INCLUDED = {
    "pyproject.toml": f'[tool.multiarch]\nplatforms = {PLATFORMS}\ncompose = "compose.yaml"\n',
    "compose.yaml": "include:\n  - services/db.yaml\nservices:\n  web:\n    extends:\n      file: common.yaml\n"
                    "      service: base\n    build:\n      context: web\n    env_file: web.env\n",
    "common.yaml": "services:\n  base:\n    build:\n      args:\n        FLAVOR: one\n",
    "services/db.yaml": "services:\n  db:\n    build:\n      context: ../db\n      args:\n        PG: '16'\n",
    "web.env": "RUNTIME=1\n",
    "web/Dockerfile": "FROM scratch\nARG FLAVOR\nCOPY app.txt /\n",
    "web/app.txt": "v1\n",
    "db/Dockerfile": "FROM scratch\nARG PG\n",
}  # fmt: skip


@scenario
def included_and_extended_files(repo: Repo, env: Mapping[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A change in a file the compose file includes or extends from reaches the images it
    defines; a change that reaches no build (a service's runtime env_file) affects none."""
    repo.commit(INCLUDED)
    repo.commit({"common.yaml": INCLUDED["common.yaml"].replace("one", "two")})
    assert affected(plan(repo, env)) == {"web": ("its definition in common.yaml changed",)}
    repo.commit({"services/db.yaml": INCLUDED["services/db.yaml"].replace("'16'", "'17'")})
    assert affected(plan(repo, env)) == {"db": ("its definition in services/db.yaml changed",)}
    repo.commit({"web.env": "RUNTIME=2\n"})
    found = plan(repo, env)
    assert (found.affected, set(found.unaffected)) == ((), {"web", "db"})


PROJECTS = {
    "pyproject.toml": f'[tool.multiarch]\nplatforms = {PLATFORMS}\ncompose-projects = "*/compose.yaml"\n',
    "react-express/compose.yaml": "services:\n  backend:\n    build: backend\n  frontend:\n    build:\n"
                                  "      context: frontend\n      additional_contexts:\n        api: service:backend\n"
                                  "  db:\n    image: mariadb:11\n",
    "react-express/backend/Dockerfile": "FROM scratch\nCOPY . /\n",
    "react-express/backend/app.js": "1\n",
    "react-express/frontend/Dockerfile": "FROM scratch\nCOPY --from=api / /api\nCOPY . /\n",
    "react-express/frontend/index.html": "1\n",
    "flask-redis/compose.yaml": "name: Shop\nservices:\n  backend:\n    build:\n      context: app\n"
                                "      args:\n        PY: ${PY}\n",
    "flask-redis/.env": "PY=3.12\n",
    "flask-redis/app/Dockerfile": "FROM scratch\nARG PY\nCOPY . /\n",
    "flask-redis/app/app.py": "1\n",
}  # fmt: skip


@scenario
def compose_projects_side_by_side(
    repo: Repo, env: Mapping[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each compose file a glob names is a project of its own (awesome-compose keeps 27): its
    paths and `.env` are its directory's, its images `<project>-<service>` as compose names them."""
    repo.commit(PROJECTS)
    repo.commit({"react-express/backend/app.js": "2\n"})
    found = plan(repo, env)
    assert affected(found) == {
        "react-express-backend": ("COPY '.' (line 2) reads: react-express/backend/app.js",),
        "react-express-frontend": ("base image react-express-backend is rebuilt",),
    }
    assert found.unaffected == ("shop-backend",)
    frontend = next(p.image for p in found.affected if p.image.name == "react-express-frontend")
    assert (frontend.context, frontend.contexts) == (
        "react-express/frontend",
        (("api", "target:react-express-backend"),),
    )
    repo.commit({"flask-redis/.env": "PY=3.13\n"})  # the project's own .env, beside its compose file
    found = plan(repo, env)
    assert affected(found) == {"shop-backend": ("its definition in flask-redis/.env changed",)}
    assert found.affected[0].image.build_args == (("PY", "3.13"),)
    repo.commit(
        {"todo/compose.yaml": "services:\n  web:\n    build: .\n", "todo/Dockerfile": "FROM scratch\n"}
    )
    assert affected(plan(repo, env)) == {"todo-web": ("new image in todo/compose.yaml",
                                                      "Dockerfile changed: todo/Dockerfile")}  # fmt: skip


# The scenarios above hold the assertions: fast here, against recorded answers of buildx.


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_planning_with_compose_and_bake_files(
    name: str, repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    SCENARIOS[name](repo, replaying(tmp_path), monkeypatch)


@pytest.mark.lab
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_the_recorded_bake_answers_are_buildxs(
    name: str, repo: Repo, lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scenario again with the lab's real buildx, each answer compared with the recorded
    one. After a deliberate change (a new scenario, another buildx): MAB_RECORD=1 records."""
    real = definitions.buildx_plugin(lab.env)
    assert real is not None
    answers_file = tmp_path / "answers.json"
    SCENARIOS[name](repo, recording(tmp_path, real, answers_file), monkeypatch)
    answers = json.loads(answers_file.read_text())
    if os.environ.get("MAB_RECORD"):
        RECORDINGS.write_text(json.dumps({**recorded(), **answers}, indent=1, sort_keys=True) + "\n")
    known = recorded()
    assert {key: normal(known.get(key)) for key in answers} == {
        key: normal(a) for key, a in answers.items()
    }, "buildx answers otherwise: MAB_RECORD=1 records"


def test_removing_one_image_affects_no_other_and_is_said(repo: Repo) -> None:
    """The commit a push is relative to is read against its own files: its `web` directory is
    there, so its configuration is valid, and `api` is as it was."""
    tables = "".join(
        f'[tool.multiarch.images.{name}]\ncontext = "{name}"\n' for name in ("api", "web", "zed")
    )
    repo.commit({
        "pyproject.toml": f"[tool.multiarch]\nplatforms = {PLATFORMS}\n{tables}",
        "api/Dockerfile": "FROM scratch\nCOPY . /\n", "web/Dockerfile": "FROM scratch\nCOPY . /\n",
        "zed/Dockerfile": "FROM scratch\n",
    })  # fmt: skip
    (repo.path / "web" / "Dockerfile").unlink()
    (repo.path / "zed" / "Dockerfile").unlink()
    repo.commit(
        {
            "pyproject.toml": f"[tool.multiarch]\nplatforms = {PLATFORMS}\n"
            + tables.split("[tool.multiarch.images.web]")[0]
        }
    )
    found = plan(repo, {})
    assert affected(found) == {}
    assert found.warnings == ("removed at this commit: web, zed: nothing is built for them, and what the registry "
                              "holds of them stays",)  # fmt: skip


def test_an_image_that_starts_or_stops_naming_a_base_is_found_by_the_next_push(repo: Repo) -> None:
    """Which Dockerfiles name which images is kept from run to run, with where it held: a
    Dockerfile changed since (in this push, or in one before over the same kept listing) is
    read again, so a new base is followed and an old one no longer is."""
    tables = "".join(
        f'[tool.multiarch.images.{name}]\ncontext = "{name}"\n' for name in ("base", "api", "web")
    )
    repo.commit({
        "pyproject.toml": f"[tool.multiarch]\nplatforms = {PLATFORMS}\n{tables}",
        "base/Dockerfile": "FROM busybox\n", "api/Dockerfile": "FROM busybox\n", "web/Dockerfile": "FROM base\n",
        **{f"docs/{i}.md": str(i) for i in range(1000)},  # a few changed files stay laid over the kept listing
    })  # fmt: skip
    planning.plan_at(open_repo(repo.path), changes.for_all(open_repo(repo.path), "HEAD", "main", "t"), env={},
                     build_platform="linux/amd64")  # fmt: skip
    rebuilt = ("Dockerfile changed: base/Dockerfile",), ("base image base is rebuilt",)
    repo.commit({"base/Dockerfile": "FROM busybox\nRUN true\n"})
    assert affected(plan(repo, {})) == {"base": rebuilt[0], "web": rebuilt[1]}
    repo.commit({"api/Dockerfile": "FROM base\n", "web/Dockerfile": "FROM busybox\n"})
    repo.commit({"base/Dockerfile": "FROM busybox\nRUN false\n"})
    assert affected(plan(repo, {})) == {"base": rebuilt[0], "api": rebuilt[1]}
    assert mentioning(repo, "base") == {"api"}  # web's mention is gone, not only api's added
    repo.commit({"api/Dockerfile": "FROM busybox\n", "web/Dockerfile": "FROM base\n"})  # as they were
    repo.commit({"base/Dockerfile": "FROM busybox\nRUN again\n"})
    # What changed before is read again even where git's answer now leaves it out (a lost list
    # of the last run's changes: api's and web's Dockerfiles are as in the kept listing again).
    (repo.path / ".git" / "mab-hook" / "cache" / listing.PATCH).unlink()
    assert affected(plan(repo, {})) == {"base": rebuilt[0], "web": rebuilt[1]}
    assert mentioning(repo, "base") == {"web"}
    kept = listing.load(repo.path / ".git" / "mab-hook" / "cache" / "listing", pytest.fail)
    assert kept is not None and kept.tree_id == repo.git("rev-parse", "HEAD~5^{tree}")  # laid over all along


def mentioning(repo: Repo, word: str) -> set[str]:
    """The images the kept index of mentions says have `word` in their Dockerfile."""
    entries = cache.load(repo.path / ".git" / "mab-hook" / "cache" / "planning.sqlite")
    found: set[str] = entries[analysis.MENTIONS_KEY][3][word]
    return found


def test_a_build_arg_that_comes_to_name_a_base_is_followed_with_no_dockerfile_changed(repo: Repo) -> None:
    """The kept index of mentions is for one configuration: a build arg is part of it."""
    tables = '[tool.multiarch.images.base]\ncontext = "base"\n[tool.multiarch.images.app]\ncontext = "app"\n'
    repo.commit({
        "pyproject.toml": f"[tool.multiarch]\nplatforms = {PLATFORMS}\n{tables}",
        "base/Dockerfile": "FROM busybox\n", "app/Dockerfile": "ARG FROM=busybox\nFROM ${FROM}\n",
        **{f"docs/{i}.md": str(i) for i in range(1000)},  # a few changed files stay laid over the kept listing
    })  # fmt: skip
    repo.commit({"base/Dockerfile": "FROM busybox\nRUN one\n"})
    assert set(affected(plan(repo, {}))) == {"base"}
    with_arg = tables.replace('context = "app"', 'context = "app"\nbuild-args = { FROM = "base" }')
    repo.commit({"pyproject.toml": f"[tool.multiarch]\nplatforms = {PLATFORMS}\n{with_arg}"})
    repo.commit({"base/Dockerfile": "FROM busybox\nRUN two\n"})
    assert affected(plan(repo, {})) == {
        "base": ("Dockerfile changed: base/Dockerfile",),
        "app": ("base image base is rebuilt",),
    }
    kept = listing.load(repo.path / ".git" / "mab-hook" / "cache" / "listing", pytest.fail)
    assert kept is not None and kept.tree_id == repo.git("rev-parse", "HEAD~2^{tree}")  # one index all along


def test_a_root_dockerfile_is_named_as_the_remote_names_the_repository_in_every_clone(tmp_path: Path) -> None:
    from tests.conftest import git  # noqa: PLC0415

    remote = tmp_path / "netbox-docker.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    seed = tmp_path / "seed"
    git(tmp_path, "clone", "-q", str(remote), str(seed))
    (seed / "Dockerfile").write_text("FROM scratch\n")
    (seed / "pyproject.toml").write_text(f"[tool.multiarch]\nplatforms = {PLATFORMS}\n")
    git(seed, "add", "-A")
    git(seed, "commit", "-q", "-m", "seed")
    git(seed, "push", "-q", "origin", "main")
    names = []
    for directory in ("netbox", "checkout-7"):
        clone = tmp_path / directory
        git(tmp_path, "clone", "-q", str(remote), str(clone))
        handle = open_repo(clone)
        found = planning.plan_at(handle, changes.for_all(handle, "HEAD", "main", "--all"), env={},
                                 build_platform="linux/amd64")  # fmt: skip
        names.append([p.image.name for p in found.affected])
    assert names == [["netbox-docker"], ["netbox-docker"]]
    git(seed, "remote", "remove", "origin")  # no remote: the directory's name
    handle = open_repo(seed)
    found = planning.plan_at(handle, changes.for_all(handle, "HEAD", "main", "--all"), env={},
                             build_platform="linux/amd64")  # fmt: skip
    assert [p.image.name for p in found.affected] == ["seed"]


def test_a_config_not_yet_committed_is_said_to_be_so(repo: Repo) -> None:
    from mab_hook.errors import FatalError  # noqa: PLC0415

    sha = repo.commit({"app/Dockerfile": "FROM scratch\n"})
    repo.write({"pyproject.toml": f"[tool.multiarch]\nplatforms = {PLATFORMS}\n"})  # written, not committed
    handle = open_repo(repo.path)
    with pytest.raises(FatalError) as info:
        planning.plan_at(
            handle, changes.for_all(handle, "HEAD", "main", "--all"), env={}, build_platform="linux/amd64"
        )
    assert str(info.value) == (f"pyproject.toml is in the work tree but not in commit {sha[:12]}: mab-hook builds "
                               "what is committed; `git add pyproject.toml` and commit it")  # fmt: skip


def test_a_dockerfile_changed_where_the_kept_listing_is_written_anew_is_read_again(repo: Repo) -> None:
    """The kept index of mentions holds over one kept listing: a push that changes enough for
    the listing to be written anew (past 1% of the files) makes it anew too."""
    tables = '[tool.multiarch.images.base]\ncontext = "base"\n[tool.multiarch.images.app]\ncontext = "app"\n'
    docs = {f"docs/{i}.md": str(i) for i in range(1000)}
    repo.commit({
        "pyproject.toml": f"[tool.multiarch]\nplatforms = {PLATFORMS}\n{tables}",
        "base/Dockerfile": "FROM busybox\n", "app/Dockerfile": "FROM busybox\n", **docs,
    })  # fmt: skip
    repo.commit({"base/Dockerfile": "FROM busybox\nRUN one\n"})
    assert set(affected(plan(repo, {}))) == {"base"}
    first = listing.load(repo.path / ".git" / "mab-hook" / "cache" / "listing", pytest.fail)
    repo.commit({"app/Dockerfile": "FROM base\n", **{path: "changed" for path in list(docs)[:50]}})
    assert set(affected(plan(repo, {}))) == {"app"}
    again = listing.load(repo.path / ".git" / "mab-hook" / "cache" / "listing", pytest.fail)
    assert first is not None and again is not None and first.tree_id != again.tree_id  # written anew
    repo.commit({"base/Dockerfile": "FROM busybox\nRUN two\n"})
    assert affected(plan(repo, {})) == {
        "base": ("Dockerfile changed: base/Dockerfile",),
        "app": ("base image base is rebuilt",),
    }
