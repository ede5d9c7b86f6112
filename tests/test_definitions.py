"""Compose and bake files resolved by buildx itself (`docker buildx bake --print`), from the
files of a commit: the lab's real docker CLI and buildx 0.13 (no engine is needed)."""

from __future__ import annotations

import hashlib
import json
import sys
import time
import uuid
from collections.abc import Mapping, Sequence, Set
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


def commit(files: Mapping[str, str], name: str = "c0ffee", links: Set[str] = frozenset()) -> CommitFiles:
    """A commit's files, by path: blob ids as git would differ them (by content); `links` are
    symlinks whose text is their target."""
    data = {path: text.encode() for path, text in files.items()}

    def blob_id(path: str) -> str | None:
        return hashlib.sha1(data[path]).hexdigest() if path in data else None

    def link(path: str) -> str | None:
        return files[path] if path in links else None

    return CommitFiles(blob_id, data.get, name * 5, link)


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


@pytest.mark.parametrize("compose", [
    "services:\n  api:\n    build: .\n    env_file: /etc/hostname\n",
    "services:\n  api:\n    build: .\n    env_file: [{path: ../../outside.env, required: false}]\n",
    "services:\n  api:\n    build: .\n    label_file: ${HOME}/.env\n",
    "services:\n  api:\n    extends: {file: ../x.yaml, service: a}\n",
    "include:\n  - path: more.yaml\n    project_directory: /home/me\n",
    "include:\n  - path: more.yaml\n    env_file: /home/me/.env\n",
    "include:\n  - /srv/compose.yaml\n",
])  # fmt: skip
def test_a_file_outside_the_repository_is_never_read(compose: str) -> None:
    with pytest.raises(FatalError, match="must name a file of the repository by a plain relative path"):
        definitions.referenced("compose.yaml", compose.encode())


def test_an_included_file_is_checked_whatever_its_name_and_symlinks_stay_inside() -> None:
    """No docker needed: the refusal comes before the resolver runs."""
    chain = {"compose.yaml": "include:\n  - deploy/more.txt\n",
             "deploy/more.txt": "services:\n  w:\n    extends: {file: base, service: s}\n",
             "deploy/base": "services:\n  s:\n    env_file: ../../../home/me/.env\n"}  # fmt: skip
    with pytest.raises(
        FatalError, match=r"deploy/base: '../../../home/me/.env' must name a file of the repository"
    ):
        Resolver(commit(chain), {}, None)([Source("compose", ("compose.yaml",), ".")])
    linked = {"compose.yaml": "/etc/passwd"}
    with pytest.raises(
        FatalError, match=r"compose.yaml: a symlink to '/etc/passwd' must name a file of the repository"
    ):
        Resolver(commit(linked, links={"compose.yaml"}), {}, None)(
            [Source("compose", ("compose.yaml",), ".")]
        )


def billion_laughs(levels: int) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "x-laughs:\n  " + "\n  ".join(lines) + "\nservices:\n  api:\n    build: .\n"


def test_yaml_that_would_swamp_the_resolver_is_refused_before_it_runs() -> None:
    assert definitions.referenced("compose.yaml", billion_laughs(5).encode()) == []  # 111,111 values: fine
    with pytest.raises(FatalError, match="expands to more than 1,000,000 values through YAML aliases"):
        definitions.referenced("compose.yaml", billion_laughs(9).encode())
    with pytest.raises(FatalError, match="YAML nested too deeply"):
        definitions.referenced("compose.yaml", ("x: " + "[" * 5000 + "]" * 5000 + "\n").encode())
    with pytest.raises(FatalError, match="through YAML aliases"):
        definitions.referenced("compose.yaml", b"x: &a [1, *a]\nservices: {}\n")  # refers to itself


@pytest.mark.parametrize("unstable", ['"${timestamp()}"', "uuidv4( )", "BAKE_LOCAL_PLATFORM"])
def test_values_that_differ_by_run_or_machine_are_refused(unstable: str) -> None:
    files = {"docker-bake.hcl": f'target "default" {{\n  args = {{ V = {unstable} }}\n}}\n'}
    with pytest.raises(FatalError, match="gives another value on each run or machine"):
        Resolver(commit(files), {}, None)([Source("bake", ("docker-bake.hcl",), ".")])


def test_the_resolver_gets_no_environment_at_all() -> None:
    env = {
        "PATH": "/bin",
        "HOME": "/home/me",
        "VERSION": "9",
        "AWS_SECRET_ACCESS_KEY": "x",
        "DOCKER_CONFIG": "/c",
    }
    assert definitions.resolver_env(env) == ({"SystemRoot": "C:\\Windows"} if sys.platform == "win32" else {})


@pytest.mark.lab
def test_a_commit_resolves_the_same_whatever_the_pushers_environment(lab: Lab, tmp_path: Path) -> None:
    names = ("HOME", "PATH", "DOCKER_CONFIG", "TMPDIR", "USER", "BUILDX_CONFIG")
    variables = "".join(f'variable "{name}" {{\n  default = "unset"\n}}\n' for name in names)
    args = ", ".join(f"{name} = {name}" for name in names)
    files = {"docker-bake.hcl": variables + f'target "default" {{\n  args = {{ {args} }}\n}}\n',
             "compose.yaml": "services:\n  api:\n    build:\n      context: .\n      args:\n        - HOME=${HOME:-unset}\n"}  # fmt: skip
    other = {
        **lab.env,
        "HOME": str(tmp_path),
        "TMPDIR": str(tmp_path),
        "USER": "someone",
        "PATH": f"{tmp_path}:{lab.env['PATH']}",
    }
    for env in (lab.env, other):
        assert resolve(lab, files, Source("bake", ("docker-bake.hcl",), "."), env=env)["default"][0][
            "args"
        ] == dict.fromkeys(names, "unset")
        assert resolve(lab, files, Source("compose", ("compose.yaml",), "."), env=env)["api"][0]["args"] == {
            "HOME": "unset"
        }


@pytest.mark.lab
@pytest.mark.parametrize(("limit", "said"), [("TIMEOUT", "in 3 s"), ("MEMORY", "within 1 GiB of memory")])
def test_a_runaway_resolver_is_stopped_whole(
    lab: Lab, monkeypatch: pytest.MonkeyPatch, limit: str, said: str
) -> None:
    """A matrix of 216,000 targets keeps buildx busy for minutes, deaf to SIGTERM, and growing:
    stopped at the time or memory limit, with every process it started, never left running."""
    monkeypatch.setattr(definitions, limit, 3.0 if limit == "TIMEOUT" else 1 << 30)
    marker = f"runaway-{uuid.uuid4().hex[:8]}"
    files = {f"{marker}.hcl": 'group "default" { targets = ["t"] }\ntarget "t" {\n  name = "t-${a}-${b}-${c}"\n'
                              "  matrix = { a = range(60), b = range(60), c = range(60) }\n}\n"}  # fmt: skip
    started = time.monotonic()
    with pytest.raises(FatalError, match=f"did not resolve it {said} and was stopped"):
        resolve(lab, files, Source("bake", (f"{marker}.hcl",), "."))
    assert time.monotonic() - started < 15
    time.sleep(0.5)
    left = [p for p in Path("/proc").glob("[0-9]*") if marker.encode() in _cmdline(p)]
    assert left == []


@pytest.mark.parametrize(
    ("crash", "stopped"),
    [("runtime/cgo: pthread_create failed: Resource temporarily unavailable\nSIGABRT: abort", True),
     ("fatal error: runtime: out of memory", True),
     ("runtime: mmap: cannot allocate memory", True),
     ("ERROR: failed to find target default", False)],
)  # fmt: skip
def test_the_memory_limit_is_named_wherever_the_go_runtime_meets_it(
    tmp_path: Path, crash: str, stopped: bool
) -> None:
    """Go dies of the address-space limit allocating a heap or a thread's stack, in different
    words each time: every one is the limit, said as such; any other failure is buildx's own."""
    fake = tmp_path / "docker-buildx"
    fake.write_text(f"#!/bin/sh\ncat >&2 <<'EOF'\n{crash}\nEOF\nexit 2\n")
    fake.chmod(0o755)
    with pytest.raises(FatalError) as info:
        Resolver(commit(BAKE), {"MAB_HOOK_BUILDX": str(fake)}, None)(
            [Source("bake", ("docker-bake.hcl",), ".")]
        )
    limit = f"did not resolve it within {definitions.MEMORY >> 30} GiB of memory and was stopped"
    assert (limit in str(info.value)) is stopped
    assert (
        "cannot read it: " + crash.splitlines()[0].removeprefix("ERROR: ") in str(info.value)
    ) is not stopped


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""


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
def test_a_compose_file_of_comments_only_beside_others_resolves_on_buildx_013(lab: Lab) -> None:
    files = {"compose.yaml": "services:\n  api:\n    build: api\n", "later.yaml": "# services to come\n"}
    found = resolve(lab, files, Source("compose", ("compose.yaml", "later.yaml"), "."))
    assert list(found) == ["api"]


@pytest.mark.lab
def test_a_bake_file_for_a_newer_buildx_names_the_version_it_needs(lab: Lab) -> None:
    with pytest.raises(FatalError) as info:
        resolve(lab, {"docker-bake.hcl": VALIDATED}, Source("bake", ("docker-bake.hcl",), "."))
    version = lab.docker("buildx", "version").stdout.split()[1].lstrip("v").split("+")[0]
    if tuple(int(n) for n in version.split(".")) < (0, 19):
        assert f"which buildx 0.19.0 and later read (this one is {version})" in str(info.value)
    else:  # a buildx that reads it: not this test's case
        pytest.fail(f"buildx {version} reads validation blocks: pick a newer feature for this test")


@pytest.mark.lab
def test_without_docker_or_buildx_it_says_what_to_install(lab: Lab, tmp_path: Path) -> None:
    source = Source("compose", ("docker-compose.yml",), ".")
    nowhere = {"PATH": str(tmp_path), "DOCKER_CONFIG": str(tmp_path), "HOME": str(tmp_path)}
    named_missing = {**lab.env, "MAB_HOOK_BUILDX": str(tmp_path / "docker-buildx")}
    for env in (
        (nowhere,) if not any(Path(p, "docker-buildx").exists() for p in definitions._plugin_dirs({})) else ()
    ) + (named_missing,):
        with pytest.raises(FatalError) as info:
            resolve(lab, OTEL, source, env=env)
        assert str(info.value).startswith("resolving docker-compose.yml needs docker buildx")
        assert "apt-get install docker.io docker-buildx" in str(info.value)


@pytest.mark.lab
def test_what_a_compose_file_sets_that_reaches_no_build_is_said(lab: Lab) -> None:
    files = {"compose.yaml": "services:\n  api:\n    build:\n      context: .\n      platforms: [linux/arm64]\n"
                             "      ssh: [default]\n      secrets: [npm]\n      network: host\n"
                             "secrets:\n  npm:\n    file: /home/me/.npmrc\n"}  # fmt: skip
    found = Resolver(commit(files), lab.env, None)([Source("compose", ("compose.yaml",), ".")])
    assert [note.split(":", 2)[1].strip() for note in found.notes] == [
        "build.platforms of api reaches no build", "build.network of api reaches no build",
        "build.ssh of api reaches no build", "build.secrets of api reaches no build"]  # fmt: skip
    assert "git config --add mab-hook.secret" in found.notes[-1]


@pytest.mark.lab
def test_a_symlinked_compose_file_is_read_where_it_points_inside_the_repository(lab: Lab) -> None:
    files = {"compose.yaml": "deploy/compose.yaml",
             "deploy/compose.yaml": "services:\n  api:\n    build: ../api\n"}  # fmt: skip
    found = Resolver(commit(files, links={"compose.yaml"}), lab.env, None)(
        [Source("compose", ("compose.yaml",), ".")]
    )
    assert [t.name for t in found.targets] == ["api"]
    assert set(found.read) >= {"compose.yaml", "deploy/compose.yaml"}  # a change to either counts


# --- rules the mutation run found unchecked (no Docker) ----------------------------------------


def _plugin(at: Path) -> Path:
    at.mkdir(parents=True, exist_ok=True)
    (at / "docker-buildx").write_text("#!/bin/sh\n")
    (at / "docker-buildx").chmod(0o755)
    return at / "docker-buildx"


def test_the_buildx_plugin_is_found_where_docker_looks_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(definitions, "_plugin_dirs", lambda env: [])  # not the machine's own
    empty = {"HOME": str(tmp_path / "nohome"), "PATH": str(tmp_path / "nobin")}
    assert definitions.buildx_plugin(empty) is None
    in_home = _plugin(tmp_path / "home" / ".docker" / "cli-plugins")
    assert definitions.buildx_plugin({**empty, "HOME": str(tmp_path / "home")}) == in_home
    in_config = _plugin(tmp_path / "config" / "cli-plugins")
    assert (
        definitions.buildx_plugin({"HOME": str(tmp_path / "home"), "DOCKER_CONFIG": str(tmp_path / "config")})
        == in_config
    )
    extra = _plugin(tmp_path / "brew" / "lib" / "docker" / "cli-plugins")
    (tmp_path / "cfg2").mkdir()
    (tmp_path / "cfg2" / "config.json").write_text(json.dumps({"cliPluginsExtraDirs": [str(extra.parent)]}))
    assert definitions.buildx_plugin({**empty, "DOCKER_CONFIG": str(tmp_path / "cfg2")}) == extra
    (tmp_path / "prefix" / "bin").mkdir(parents=True)
    (tmp_path / "prefix" / "bin" / "docker").write_text("#!/bin/sh\n")
    (tmp_path / "prefix" / "bin" / "docker").chmod(0o755)
    beside = _plugin(tmp_path / "prefix" / "libexec" / "docker" / "cli-plugins")
    assert definitions.buildx_plugin({**empty, "PATH": str(tmp_path / "prefix" / "bin")}) == beside
    named = {**empty, "MAB_HOOK_BUILDX": str(in_home)}
    assert definitions.buildx_plugin(named) == in_home
    assert definitions.buildx_plugin({**empty, "MAB_HOOK_BUILDX": str(tmp_path / "none")}) is None


def test_a_plugin_that_is_no_executable_file_is_passed_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(definitions, "_plugin_dirs", lambda env: [])
    plugins = tmp_path / "config" / "cli-plugins"
    plugins.mkdir(parents=True)
    (plugins / "docker-buildx").write_text("not executable")
    env = {"DOCKER_CONFIG": str(tmp_path / "config"), "HOME": str(tmp_path), "PATH": str(tmp_path / "nobin")}
    assert definitions.buildx_plugin(env) is None
    (plugins / "docker-buildx").unlink()
    (plugins / "docker-buildx").mkdir()
    (plugins / "docker-buildx").chmod(0o755)
    assert definitions.buildx_plugin(env) is None


def test_dockers_own_plugin_directories() -> None:
    assert definitions._plugin_dirs({}) == [Path(p) for p in (
        "/usr/local/lib/docker/cli-plugins", "/usr/local/libexec/docker/cli-plugins",
        "/usr/lib/docker/cli-plugins", "/usr/libexec/docker/cli-plugins")]  # fmt: skip


def test_what_compose_sets_that_reaches_no_build_is_said_per_file_and_field() -> None:
    document = {"services": {"api.v2": {"build": {"context": ".", "platforms": ["linux/arm64"], "network": "host",
                                                  "ssh": ["default"], "secrets": ["npm"]}},
                             "web": {"build": "./web"}, "db": {"image": "postgres"}, "bad": "text"}}  # fmt: skip
    compose = Source("compose", ("compose.yaml",), ".")
    targets = [
        definitions.Target("api_v2", {"context": "."}, compose, True),
        definitions.Target("web", {}, compose, True),
    ]
    notes = definitions.unused({"compose.yaml": document, "x.yaml": ["not", "a", "map"]}, targets)
    assert notes == (
        "compose.yaml: build.platforms of api.v2 reaches no build: list them in [tool.multiarch] (platforms, or "
        "images.api.v2.platforms)",
        "compose.yaml: build.network of api.v2 reaches no build: buildx 0.13 does not read it from compose files",
        "compose.yaml: build.ssh of api.v2 reaches no build: builds get the SSH agents and keys you grant: git "
        "config --add mab-hook.ssh default",
        "compose.yaml: build.secrets of api.v2 reaches no build: builds get the secrets you grant: git config "
        "--add mab-hook.secret id=NAME,env=VAR",
    )
    reached = [definitions.Target("api_v2", {"platforms": ["linux/arm64"], "network": "host", "ssh": ["x"],
                                              "secrets": ["y"]}, compose, True)]  # fmt: skip
    assert definitions.unused({"compose.yaml": document}, reached) == ()


@pytest.mark.parametrize("name", ["../x.yaml", "..", "/abs.yaml", "C:\\\\x.yaml", "c:x", "${HOME}/x.yaml"])
def test_every_way_out_of_the_repository_is_refused_whole(name: str) -> None:
    with pytest.raises(FatalError) as info:
        definitions.referenced("compose.yaml", f"include:\n  - {json.dumps(name)}\n".encode())
    assert str(info.value) == (
        f"compose.yaml: {name!r} must name a file of the repository by a plain relative path: mab-hook resolves "
        "compose files from the pushed commit, and reads nothing else of this machine")  # fmt: skip


def test_what_a_compose_file_makes_the_resolver_read() -> None:
    compose = ("include:\n  - a.yaml\n  - path: [sub/b.yaml, sub/c.yaml]\n    env_file: sub/b.env\n"
               "    project_directory: sub\nservices:\n  w:\n    extends: {file: sub\\\\base.yaml, service: s}\n"
               "    env_file: [w.env, {path: opt.env, required: false}]\n    label_file: w.labels\n  x: text\n")  # fmt: skip
    assert definitions.referenced("deploy/compose.yaml", compose.encode()) == [
        ("deploy/a.yaml", True), ("deploy/sub/b.yaml", True), ("deploy/sub/c.yaml", True),
        ("deploy/sub/b.env", False), ("deploy/sub/base.yaml", True), ("deploy/w.env", False),
        ("deploy/opt.env", False), ("deploy/w.labels", False)]  # fmt: skip
    assert definitions.referenced("compose.yaml", b"- a list\n") == []
    assert definitions.referenced("compose.yaml", b"services: [broken\n") == []  # buildx says what is wrong


def test_the_alias_limit_is_exact() -> None:
    """A document of exactly MAX_NODES values is read; one more is refused, whole message."""
    import yaml  # noqa: PLC0415

    node = yaml.compose("x: &a [1, 2]\ny: [*a, *a]\n")
    assert definitions._expanded(node) == 13  # the map, its 2 keys, a's list of 3, y's of 1 + 3 + 3
    definitions_max = definitions.MAX_NODES
    try:
        definitions.MAX_NODES = 13
        assert definitions._expanded(node) == 13
        definitions.referenced("c.yaml", b"x: &a [1, 2]\ny: [*a, *a]\n")
        definitions.MAX_NODES = 12
        with pytest.raises(FatalError) as info:
            definitions.referenced("c.yaml", b"x: &a [1, 2]\ny: [*a, *a]\n")
        assert str(info.value) == ('c.yaml: expands to more than 12 values through YAML aliases (a "billion laughs"); '
                                   "mab-hook does not resolve it. Write the values out, or use fewer nested aliases")  # fmt: skip
    finally:
        definitions.MAX_NODES = definitions_max
    with pytest.raises(FatalError) as deep:
        definitions.referenced("c.yaml", ("x: " + "[" * 5000 + "]" * 5000 + "\n").encode())
    assert str(deep.value) == "c.yaml: YAML nested too deeply to read; flatten it"


PRINTED = json.dumps({"group": {"default": {"targets": ["api"]}}, "target": {"api": {"context": "api"}}})


def fake_buildx(tmp_path: Path, script: str) -> dict[str, str]:
    """A buildx plugin of the test's own (a shell script), and the environment naming it."""
    fake = tmp_path / "docker-buildx"
    fake.write_text(f"#!/bin/sh\n{script}\n")
    fake.chmod(0o755)
    return {"MAB_HOOK_BUILDX": str(fake)}


def test_resolved_once_per_content_without_docker(tmp_path: Path) -> None:
    """Kept by the blob ids of every file read, the included ones too: the same files again run
    no resolver; a changed included file does."""
    runs = tmp_path / "runs"
    env = fake_buildx(tmp_path, f"echo run >> {runs}\ncat <<'EOF'\n{PRINTED}\nEOF")
    files = {
        "compose.yaml": "include:\n  - more.yaml\nservices:\n  api:\n    build: api\n",
        "more.yaml": "services: {}\n",
    }
    cache: dict[object, object] = {}
    source = Source("compose", ("compose.yaml",), ".")
    first = Resolver(commit(files), env, cache)([source])
    assert [t.name for t in first.targets] == ["api"] and first.read == ("compose.yaml", ".env", "more.yaml")
    assert Resolver(commit(files), env, cache)([source]).targets == first.targets
    assert runs.read_text().count("run") == 1
    Resolver(commit({**files, "more.yaml": "services:\n  db:\n    image: x\n"}), env, cache)([source])
    assert runs.read_text().count("run") == 2
    Resolver(commit(files), env, None)([source])  # no cache: resolved each time
    assert runs.read_text().count("run") == 3


@pytest.mark.parametrize(("script", "said"), [
    ("echo 'ERROR: failed to find target default' >&2; exit 1", "docker buildx bake cannot read it: failed to find "
     "target default. Fix docker-bake.hcl (`docker buildx bake --print` shows what buildx makes of it)"),
    ("exit 3", "docker buildx bake cannot read it: exit 3. Fix docker-bake.hcl (`docker buildx bake --print` shows "
     "what buildx makes of it)"),
    ("echo \"ERROR: $PWD/docker-bake.hcl:1 bad\" >&2; exit 1", "docker buildx bake cannot read it: docker-bake.hcl:1 "
     "bad. Fix docker-bake.hcl (`docker buildx bake --print` shows what buildx makes of it)"),
    ("echo 'fatal error: out of memory' >&2; exit 0", None),  # it succeeded: its words are not the limit's
])  # fmt: skip
def test_what_the_resolver_says_when_buildx_refuses(tmp_path: Path, script: str, said: str | None) -> None:
    env = fake_buildx(
        tmp_path, script if said else f"{script.replace('exit 0', '')}\ncat <<'EOF'\n{PRINTED}\nEOF"
    )
    source = Source("bake", ("docker-bake.hcl",), ".")
    if said is None:
        assert [t.name for t in Resolver(commit(BAKE), env, None)([source]).targets] == ["api"]
        return
    with pytest.raises(FatalError) as info:
        Resolver(commit(BAKE), env, None)([source])
    assert str(info.value) == f"docker-bake.hcl at c0ffeec0ffee: {said}"


VALIDATED = (
    'variable "V" {\n  default = "1"\n  validation {\n    condition = V != ""\n  }\n}\ntarget "a" {}\n'
)


@pytest.mark.parametrize(("version", "said"), [
    ("github.com/docker/buildx 0.13.1+ds1-3 0.13.1+ds1-3", "docker-bake.hcl uses a variable's validation block, which "
     "buildx 0.19.0 and later read (this one is 0.13.1): install a newer buildx (Docker's packages, or "
     "https://github.com/docker/buildx/releases), or name its binary in MAB_HOOK_BUILDX"),
    ("no version here", "which buildx 0.19.0 and later read (this one may be older)"),
    ("github.com/docker/buildx v0.19.2 1b2c3d4", "Fix docker-bake.hcl (`docker buildx bake --print`"),  # not why
])  # fmt: skip
def test_a_file_written_for_a_newer_buildx_says_which_one(tmp_path: Path, version: str, said: str) -> None:
    """buildkit's own bake file once failed on buildx 0.13 with nothing saying why."""
    script = (
        f'[ "$1" = version ] && echo "{version}" && exit 0\necho "ERROR: Unsupported block type" >&2; exit 1'
    )
    env = fake_buildx(tmp_path, script)
    with pytest.raises(FatalError) as info:
        Resolver(commit({"docker-bake.hcl": VALIDATED}), env, None)(
            [Source("bake", ("docker-bake.hcl",), ".")]
        )
    assert said in str(info.value)
    typed = 'variable "V" {\n  type = string\n  validation {\n  }\n}\n'
    with pytest.raises(
        FatalError, match=r"uses a typed variable, which buildx 0\.24\.0"
    ):  # the newest of two
        Resolver(commit({"docker-bake.hcl": typed}), env, None)([Source("bake", ("docker-bake.hcl",), ".")])
    compose = {"compose.yaml": "services: {}  # validation {\n"}  # a compose file: no bake features
    with pytest.raises(FatalError, match=r"Fix compose\.yaml"):
        Resolver(commit(compose), env, None)([Source("compose", ("compose.yaml",), ".")])


def test_a_compose_file_of_comments_only_defines_nothing_and_is_not_handed_to_buildx(tmp_path: Path) -> None:
    """buildx 0.13 refuses a whole project for one such file ("empty compose file"); newer ones
    read it as defining nothing, as this does."""
    asked = tmp_path / "asked"
    env = fake_buildx(tmp_path, f"echo \"$@\" >> {asked}\ncat <<'EOF'\n{PRINTED}\nEOF")
    files = {
        "compose.yaml": "services:\n  api:\n    build: api\n",
        "later.yaml": "# services to come\n---\n\n",
    }
    both = Source("compose", ("compose.yaml", "later.yaml"), ".")
    found = Resolver(commit(files), env, None)([both])
    assert [t.name for t in found.targets] == [
        "api"
    ] and "later.yaml" in found.read  # its changes still count
    assert asked.read_text().split()[-2:] == ["--file", "compose.yaml"]
    alone = Resolver(commit(files), env, None)([Source("compose", ("later.yaml",), ".")])
    assert alone.targets == () and len(asked.read_text().splitlines()) == 1  # buildx not even asked
    defaults = Resolver(commit(files | {"docker-compose.yml": "# none\n"}), env, None)(
        [Source("", ("compose.yaml", "docker-compose.yml"), ".")]
    )
    assert [t.name for t in defaults.targets] == ["api"]
    assert asked.read_text().splitlines()[-1].split()[-2:] == ["--file", "compose.yaml"]
    assert definitions.blank(b"") and definitions.blank(b"# x\n  # y\n...\n")
    assert not definitions.blank(b"services: {}\n") and not definitions.blank(b"---\nname: x\n")


def test_a_resolver_that_takes_too_long_is_stopped_and_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopped with everything it started (a buildx that starts a helper, say), at once."""
    monkeypatch.setattr(definitions, "TIMEOUT", 0.5)
    env = fake_buildx(tmp_path, "sleep 30 &\nwait")
    started = time.monotonic()
    with pytest.raises(FatalError) as info:
        Resolver(commit(BAKE), env, None)([Source("bake", ("docker-bake.hcl",), ".")])
    assert time.monotonic() - started < 10
    assert str(info.value) == ("docker-bake.hcl at c0ffeec0ffee: docker buildx bake did not resolve it in 0.5 s and "
                               "was stopped. Make it smaller (a matrix, or YAML aliases?)")  # fmt: skip


def test_without_buildx_or_with_one_that_cannot_run_it_says_what_to_install(tmp_path: Path) -> None:
    source = Source("compose", ("docker-compose.yml",), ".")
    with pytest.raises(FatalError) as info:
        Resolver(commit(OTEL), {"MAB_HOOK_BUILDX": str(tmp_path / "none")}, None)([source])
    assert str(info.value) == (
        "resolving docker-compose.yml needs docker buildx (`docker buildx bake --print` reads them as Docker does): "
        "install Docker's CLI and the buildx plugin (Debian/Ubuntu: `apt-get install docker.io docker-buildx`; "
        "elsewhere https://docs.docker.com/engine/install/); or name its binary in MAB_HOOK_BUILDX")  # fmt: skip
    broken = tmp_path / "docker-buildx"
    broken.write_text("#!/nonexistent/interpreter\n")
    broken.chmod(0o755)
    with pytest.raises(FatalError) as cannot:
        Resolver(commit(OTEL), {"MAB_HOOK_BUILDX": str(broken)}, None)([source])
    assert str(cannot.value) == (
        f"resolving docker-compose.yml: {broken} cannot be run; install Docker's CLI and the buildx plugin "
        "(Debian/Ubuntu: `apt-get install docker.io docker-buildx`; elsewhere https://docs.docker.com/engine/install/)")  # fmt: skip


def test_a_definition_file_the_configuration_names_must_be_in_the_commit(tmp_path: Path) -> None:
    with pytest.raises(FatalError) as info:
        Resolver(commit({}), {}, None)([Source("bake", ("ci/docker-bake.hcl", "more.hcl"), ".")])
    assert (
        str(info.value)
        == "ci/docker-bake.hcl: no such file in commit c0ffeec0ffee (named in [tool.multiarch])"
    )
    assert Source("bake", ("ci/docker-bake.hcl", "more.hcl"), ".").label == "ci/docker-bake.hcl, more.hcl"
    circle = commit({"compose.yaml": "c2.yaml", "c2.yaml": "compose.yaml"}, links={"compose.yaml", "c2.yaml"})
    with pytest.raises(FatalError) as loop:
        Resolver(circle, {}, None)([Source("compose", ("compose.yaml",), ".")])
    assert str(loop.value) == "compose.yaml: symlinks go round in circles"


@pytest.mark.parametrize(("key", "path", "compose"), [
    ("compose", "x.hcl", True), ("bake", "x.yml", True), ("bake", "x.yaml", True), ("bake", "x.hcl", False),
    ("bake", "x.json", False),
])  # fmt: skip
def test_which_files_are_read_as_compose_files(key: str, path: str, compose: bool) -> None:
    assert definitions._is_compose(Source(key, (path,), "."), path) is compose


def test_the_default_files_are_buildxs_in_its_order() -> None:
    """`docker buildx bake` without -f reads these that exist, in this order (buildx's docs,
    "Bake file definition"), and mab-hook with neither key nor images table does the same."""
    assert definitions.DEFAULT_FILES == (
        "compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml",
        "docker-bake.json", "docker-bake.override.json", "docker-bake.hcl", "docker-bake.override.hcl")  # fmt: skip


def test_groups_of_groups_are_expanded_and_a_cycle_ends(tmp_path: Path) -> None:
    source = Source("bake", ("docker-bake.hcl",), ".")
    printed = json.dumps({"group": {"default": {"targets": ["all"]}, "all": {"targets": ["default", "api", "lib"]}},
                          "target": {"api": {}, "lib": {}, "tool": {}, "bad": "not a target"}})  # fmt: skip
    assert [(t.name, t.default) for t in definitions.targets_of(source, printed)] == [
        ("api", True), ("lib", True), ("tool", False)]  # fmt: skip
    for nothing in ("not json", "[1, 2]"):
        with pytest.raises(FatalError) as info:
            definitions.targets_of(source, nothing)
        assert str(info.value) == "docker-bake.hcl: `docker buildx bake --print` printed no bake definition"


def test_a_definition_deep_in_the_repository_resolves_where_it_is(tmp_path: Path) -> None:
    seen = tmp_path / "seen"
    env = fake_buildx(tmp_path, f"pwd > {seen}\nls -R . >> {seen}\ncat <<'EOF'\n{PRINTED}\nEOF")
    files = {"deploy/app/compose.yaml": "include:\n  - parts/more.yaml\nservices:\n  api:\n    build: .\n",
             "deploy/app/parts/more.yaml": "services: {}\n", "deploy/app/.env": "A=1\n"}  # fmt: skip
    Resolver(commit(files), env, None)([Source("compose", ("deploy/app/compose.yaml",), "deploy/app")])
    listing = seen.read_text()
    assert (
        listing.splitlines()[0].endswith("/deploy/app")
        and "more.yaml" in listing
        and "compose.yaml" in listing
    )


def test_a_compose_file_may_say_timestamp_a_bake_file_may_not(tmp_path: Path) -> None:
    """Compose has no functions (and only the commit's .env): `timestamp()` there is text."""
    env = fake_buildx(tmp_path, f"cat <<'EOF'\n{PRINTED}\nEOF")
    compose = {"compose.yaml": "services:\n  api:\n    build: .\n    labels: ['at=timestamp()']\n"}
    Resolver(commit(compose), env, None)([Source("compose", ("compose.yaml",), ".")])
    with pytest.raises(FatalError) as info:
        Resolver(commit({"docker-bake.hcl": 'target "api" {\n  args = { AT = timestamp( ) }\n}\n'}), env, None)(
            [Source("bake", ("docker-bake.hcl",), ".")])  # fmt: skip
    assert str(info.value) == (
        "docker-bake.hcl: timestamp gives another value on each run or machine, so the same commit would define "
        "other images elsewhere; write the value out (platforms: list them)")  # fmt: skip


def test_the_groups_or_targets_bake_targets_names_are_the_images(tmp_path: Path) -> None:
    """docker/buildx's own bake file: its default group is a `binaries` target that writes files;
    its images are `image-cross` (and a group could name several)."""
    printed = json.dumps({"group": {"default": {"targets": ["binaries"]}, "images": {"targets": ["image-cross"]}},
                          "target": {"binaries": {}, "image-cross": {}, "image": {}}})  # fmt: skip
    chosen = Source("bake", ("docker-bake.hcl",), ".", ("images", "image"))
    assert [(t.name, t.default) for t in definitions.targets_of(chosen, printed)] == [
        ("binaries", False), ("image", True), ("image-cross", True)]  # fmt: skip
    with pytest.raises(FatalError) as info:
        definitions.targets_of(Source("bake", ("docker-bake.hcl",), ".", ("imgs", "image")), printed)
    assert str(info.value) == ("docker-bake.hcl: bake-targets names imgs, no group or target of it (groups: default, "
                               "images; targets: binaries, image, image-cross)")  # fmt: skip


def test_a_compose_projects_name_is_its_files_unless_interpolation_decides_it() -> None:
    source = definitions.Source("compose", ("shop/compose.yaml",), "shop", project="shop")
    named = definitions._named_project
    assert named(source, {"name": "Web Shop"}).project == "webshop"
    assert named(source, {"name": "${NAME:-x}"}) == named(source, {"name": "__"}) == source
    assert named(source, {"services": {}}) == named(source, None) == named(source, {"name": 3}) == source
    assert named(source._replace(project=""), {"name": "web"}).project == ""  # `compose`: bare service names
