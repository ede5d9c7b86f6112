"""Compose and bake files resolved by buildx itself (`docker buildx bake --print`), from the
files of a commit: the lab's real docker CLI and buildx 0.13 (no engine is needed)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from mab_hook import definitions, process
from mab_hook.definitions import CommitFiles, Resolver, Source
from mab_hook.errors import FatalError
from tests.conftest import Lab

# The shape of open-telemetry/opentelemetry-demo: Dockerfiles written for the repository root
# as context, their paths and versions in .env, a service without a build.
OTEL = {
    "docker-compose.yml": """\
services:
  ad:
    build:
      context: ./
      dockerfile: ${AD_DOCKERFILE}
      args:
        - OTEL_JAVA_AGENT_VERSION
  cart:
    build: ./src/cart
  valkey-cart:
    image: ${VALKEY_IMAGE}
""",
    ".env": "AD_DOCKERFILE=./src/ad/Dockerfile\nOTEL_JAVA_AGENT_VERSION=2.10.0\nVALKEY_IMAGE=valkey/valkey:8.0\n",
}

# Variables, inherits, a matrix, and a target used as another's context.
BAKE = {
    "docker-bake.hcl": """\
variable "VERSION" { default = "1.0" }
group "default" { targets = ["tool"] }
target "_common" { args = { VERSION = VERSION } }
target "tool" {
  name = "tool-${variant}"
  inherits = ["_common"]
  matrix = { variant = ["lite", "full"] }
  context = "tool"
  args = { VARIANT = variant }
  contexts = { base = "target:base" }
}
target "base" { context = "base" }
""",
}


def commit(files: Mapping[str, str], name: str = "c0ffee") -> CommitFiles:
    """A commit's files, by path: blob ids as git would differ them (by content)."""
    data = {path: text.encode() for path, text in files.items()}

    def blob_id(path: str) -> str | None:
        return hashlib.sha1(data[path]).hexdigest() if path in data else None

    return CommitFiles(blob_id, data.get, name * 5)


def resolve(lab: Lab, files: Mapping[str, str], *sources: Source, env: Mapping[str, str] | None = None,
            cache: dict[object, object] | None = None) -> dict[str, tuple[dict[str, object], bool]]:  # fmt: skip
    found = Resolver(commit(files), env or lab.env, cache)(sources)
    return {t.name: (dict(t.spec), t.default) for t in found.targets}


@pytest.mark.lab
def test_compose_as_docker_reads_it_dotenv_and_all(lab: Lab) -> None:
    found = resolve(lab, OTEL, Source("compose", ("docker-compose.yml",), "."))
    assert found == {
        "ad": (
            {
                "context": ".",
                "dockerfile": "./src/ad/Dockerfile",
                "args": {"OTEL_JAVA_AGENT_VERSION": "2.10.0"},
            },
            True,
        ),
        "cart": ({"context": "src/cart", "dockerfile": "Dockerfile"}, True),
    }  # the service without a build is no image


@pytest.mark.lab
def test_bake_variables_inherits_matrix_and_target_contexts(lab: Lab) -> None:
    found = resolve(lab, BAKE, Source("bake", ("docker-bake.hcl",), "."))
    assert set(found) == {"tool-lite", "tool-full", "base"}
    assert found["tool-lite"] == ({"context": "tool", "contexts": {"base": "target:base"}, "dockerfile": "Dockerfile",
                                   "args": {"VERSION": "1.0", "VARIANT": "lite"}}, True)  # fmt: skip
    assert found["base"][1] is False  # built as tool's context only: not in the default group


@pytest.mark.lab
def test_buildx_default_files_merged_as_buildx_merges_them(lab: Lab) -> None:
    files = {**OTEL, **BAKE}  # a default group in the bake file wins, as with plain `docker buildx bake`
    found = resolve(lab, files, Source("", ("docker-compose.yml", "docker-bake.hcl"), "."))
    assert {name for name, (_spec, default) in found.items() if default} == {"tool-lite", "tool-full"}


@pytest.mark.lab
def test_the_shells_variables_do_not_reach_the_definition(lab: Lab) -> None:
    """A commit defines the same images on every machine: VERSION in someone's shell changes
    nothing, .env and the files' defaults do."""
    env = {**lab.env, "VERSION": "9.9", "OTEL_JAVA_AGENT_VERSION": "0.0.1"}
    assert resolve(lab, BAKE, Source("bake", ("docker-bake.hcl",), "."), env=env)["tool-full"][0]["args"] == {
        "VERSION": "1.0", "VARIANT": "full"}  # fmt: skip
    ad = resolve(lab, OTEL, Source("compose", ("docker-compose.yml",), "."), env=env)["ad"][0]
    assert ad["args"] == {"OTEL_JAVA_AGENT_VERSION": "2.10.0"}


@pytest.mark.lab
def test_a_compose_file_in_a_directory_reads_its_own_dotenv(lab: Lab) -> None:
    files = {"deploy/compose.yaml": "services:\n  api:\n    build:\n      context: ../api\n      args: [TAG]\n",
             "deploy/.env": "TAG=from-deploy\n", ".env": "TAG=from-root\n"}  # fmt: skip
    found = resolve(lab, files, Source("compose", ("deploy/compose.yaml",), "deploy"))
    assert found["api"][0] == {
        "context": "../api",
        "dockerfile": "Dockerfile",
        "args": {"TAG": "from-deploy"},
    }


@pytest.mark.lab
def test_included_extended_and_env_files_come_from_the_commit(lab: Lab) -> None:
    files = {
        "compose.yaml": "include:\n  - more/compose.yaml\nservices:\n  api:\n    extends:\n      file: base.yaml\n"
                        "      service: common\n    build:\n      context: api\n",
        "base.yaml": "services:\n  common:\n    build:\n      args:\n        FROM_BASE: yes\n",
        "more/compose.yaml": "services:\n  worker:\n    build: .\n    env_file: worker.env\n",
        "more/worker.env": "W=1\n",
    }  # fmt: skip
    found = resolve(lab, files, Source("compose", ("compose.yaml",), "."))
    assert found["api"][0]["args"] == {"FROM_BASE": "yes"}
    assert set(found) == {"api", "worker"}
    read = Resolver(commit(files), lab.env, None)([Source("compose", ("compose.yaml",), ".")]).read
    assert set(read) == {"compose.yaml", ".env", "more/compose.yaml", "base.yaml", "more/worker.env"}


@pytest.mark.parametrize("name", ["/etc/hostname", "../../outside.yaml", "${HOME}/.env"])
def test_a_file_outside_the_repository_is_never_read(name: str) -> None:
    text = f"services:\n  api:\n    build: .\n    env_file: {name}\n"
    with pytest.raises(FatalError, match="must name a file of the repository by a plain relative path"):
        definitions.referenced("compose.yaml", text.encode())


@pytest.mark.lab
def test_resolved_once_per_content(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    """Kept by the blob ids of every file read: the same files again run no docker at all."""
    ran: list[tuple[str, ...]] = []
    real = process.run

    def counted(cmd: Sequence[str], **kw: Any) -> process.Completed:
        ran.append(tuple(cmd))
        return real(cmd, **kw)

    monkeypatch.setattr(process, "run", counted)
    cache: dict[object, object] = {}
    source = Source("compose", ("docker-compose.yml",), ".")
    first = resolve(lab, OTEL, source, cache=cache)
    assert resolve(lab, OTEL, source, cache=cache) == first
    assert len(ran) == 1
    changed = {**OTEL, ".env": OTEL[".env"].replace("2.10.0", "2.11.0")}  # .env changed: resolved again
    assert resolve(lab, changed, source, cache=cache)["ad"][0]["args"] == {
        "OTEL_JAVA_AGENT_VERSION": "2.11.0"
    }
    assert len(ran) == 2


@pytest.mark.lab
def test_a_file_buildx_rejects_says_so_with_its_name(lab: Lab) -> None:
    broken = {"compose.yaml": "services:\n  web:\n    build: .\n  bad: [\n"}
    with pytest.raises(FatalError) as info:
        resolve(lab, broken, Source("compose", ("compose.yaml",), "."))
    message = str(info.value)
    assert message.startswith("compose.yaml at c0ffeec0ffee: docker buildx bake cannot read it: ")
    assert "did not find expected node content" in message  # buildx's own words
    no_default = {"docker-bake.hcl": 'target "a" {}\n'}
    with pytest.raises(FatalError, match="failed to find target default"):
        resolve(lab, no_default, Source("bake", ("docker-bake.hcl",), "."))


@pytest.mark.lab
def test_without_docker_or_buildx_it_says_what_to_install(lab: Lab, tmp_path: Path) -> None:
    source = Source("compose", ("docker-compose.yml",), ".")
    without_docker = {**lab.env, "PATH": str(tmp_path)}
    without_buildx = {**lab.env, "DOCKER_CONFIG": str(tmp_path)}  # the lab's buildx is a plugin of its config
    for env in (without_docker, without_buildx):
        with pytest.raises(FatalError) as info:
            resolve(lab, OTEL, source, env=env)
        assert str(info.value).startswith("resolving docker-compose.yml needs docker buildx")
        assert "apt-get install docker.io docker-buildx" in str(info.value)


def test_the_resolver_sees_only_what_docker_needs(tmp_path: Path) -> None:
    env = {
        "PATH": "/bin",
        "HOME": "/home/me",
        "VERSION": "9",
        "AWS_SECRET_ACCESS_KEY": "x",
        "DOCKER_CONFIG": "/c",
    }
    assert definitions.resolver_env(env, tmp_path) == {
        "PATH": "/bin",
        "DOCKER_CONFIG": "/c",
        "HOME": str(tmp_path),
    }
    assert definitions.resolver_env({"HOME": "/home/me"}, tmp_path)["DOCKER_CONFIG"] == os.path.join(
        "/home/me", ".docker"
    )
