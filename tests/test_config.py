from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from mab_hook import config, definitions, listing
from mab_hook.config import load
from mab_hook.definitions import Resolved, Source, Target
from mab_hook.errors import FatalError
from mab_hook.images import Config, Image

TRACKED = frozenset(
    {
        "pyproject.toml",
        "services/api/Dockerfile",
        "services/api/main.py",
        "base/Dockerfile",
        "docker/worker.Dockerfile",
        "tools/Dockerfile.dev",
        "docs/index.md",
    }
)


def parse(text: str, tracked: frozenset[str] = TRACKED) -> Config:
    return load(text, source="pyproject.toml at abc", tracked=tracked, root_name="myrepo")


def problem(text: str, tracked: frozenset[str] = TRACKED) -> str:
    with pytest.raises(FatalError) as info:
        parse(text, tracked)
    return str(info.value)


FULL = """
[tool.multiarch]
platforms = ["linux/amd64", "linux/arm64", "linux/arm/v7"]
registry = "registry.internal:5000/team/"
builder = "multi-arch"
push = true
tags = ["{short_sha}", "{branch}-latest"]

[tool.multiarch.images.api]
context = "services/api"
platforms = ["linux/amd64", "linux/arm64"]
target = "runtime"
build-args = { VERSION = "1.2", WORKERS = 4 }
watch = ["proto/**"]

[tool.multiarch.images.base]
context = "./base/"
"""


def test_full_config() -> None:
    cfg = parse(FULL)
    assert cfg.platforms == ("linux/amd64", "linux/arm64", "linux/arm/v7")
    assert cfg.registry == "registry.internal:5000/team"  # trailing slash dropped
    assert (cfg.builder, cfg.push, cfg.tags) == ("multi-arch", True, ("{short_sha}", "{branch}-latest"))
    api, base = cfg.images
    assert api == Image(
        name="api",
        context="services/api",
        dockerfile="services/api/Dockerfile",
        platforms=("linux/amd64", "linux/arm64"),
        target="runtime",
        build_args=(("VERSION", "1.2"), ("WORKERS", "4")),
        watch=("proto/**",),
    )
    assert base.context == "base" and base.dockerfile == "base/Dockerfile"
    assert base.platforms == cfg.platforms  # the default applies
    assert cfg.reference(api) == "registry.internal:5000/team/api"
    assert cfg.staging_repository(api) == "registry.internal:5000/team/mab-staging/api"  # out of sight


def test_staging_may_be_set_apart() -> None:
    cfg = parse(
        '[tool.multiarch]\nplatforms = ["linux/amd64"]\nregistry = "docker.io/team"\n'
        'staging = "docker.io/team-staging/"\n[tool.multiarch.images.api]\ncontext = "services/api"\n'
    )
    assert cfg.staging_repository(cfg.images[0]) == "docker.io/team-staging/api"


def test_defaults() -> None:
    cfg = parse(
        '[tool.multiarch]\nplatforms = ["linux/amd64"]\n[tool.multiarch.images.api]\n'
        'context = "services/api"\n'
    )
    assert (cfg.registry, cfg.builder, cfg.push, cfg.tags) == (None, None, False, ("{short_sha}",))
    assert (cfg.publish_branches, cfg.publish_tags) == (None, ("v[0-9]*", "[0-9]*"))
    assert cfg.reference(cfg.images[0]) == "api"


def test_which_refs_publish() -> None:
    cfg = parse(API.replace('platforms = ["linux/amd64"]\n', 'platforms = ["linux/amd64"]\n'
                            'publish-branches = ["main", "release/*"]\npublish-tags = []\n'))  # fmt: skip
    assert (cfg.publish_branches, cfg.publish_tags) == (("main", "release/*"), ())


def test_discovery_names_images_after_their_directory() -> None:
    cfg = parse('[tool.multiarch]\nplatforms = ["linux/amd64"]\n')
    found = {image.name: (image.context, image.dockerfile) for image in cfg.images}
    assert found == {
        "api": ("services/api", "services/api/Dockerfile"),
        "base": ("base", "base/Dockerfile"),
        "docker-worker": ("docker", "docker/worker.Dockerfile"),
        "tools-dev": ("tools", "tools/Dockerfile.dev"),
    }


def test_discovery_of_a_root_dockerfile_uses_the_repository_name() -> None:
    cfg = parse('[tool.multiarch]\nplatforms = ["linux/amd64"]\n', frozenset({"Dockerfile"}))
    assert [(i.name, i.context) for i in cfg.images] == [("myrepo", ".")]


def test_discovery_with_no_dockerfile() -> None:
    assert "no tracked Dockerfile" in problem(
        '[tool.multiarch]\nplatforms = ["linux/amd64"]\n', frozenset({"pyproject.toml"})
    )


def test_discovery_tells_repeated_directory_names_apart() -> None:
    cfg = parse(
        '[tool.multiarch]\nplatforms = ["linux/amd64"]\n', frozenset({"a/api/Dockerfile", "b/api/Dockerfile"})
    )
    assert [(i.name, i.dockerfile) for i in cfg.images] == [
        ("a-api", "a/api/Dockerfile"),
        ("b-api", "b/api/Dockerfile"),
    ]


def test_missing_pyproject_shows_a_snippet() -> None:
    with pytest.raises(FatalError) as info:
        load(None, source="pyproject.toml at abc", tracked=TRACKED)
    assert "no pyproject.toml in this commit" in str(info.value)
    assert "[tool.multiarch]" in str(info.value)


def test_missing_table_shows_a_snippet_to_paste() -> None:
    message = problem('[project]\nname = "x"\n')
    assert "pyproject.toml at abc: no [tool.multiarch] table" in message
    assert 'platforms = ["linux/amd64", "linux/arm64", "linux/arm/v7"]' in message


def test_invalid_toml_names_the_file_and_line() -> None:
    message = problem("[tool.multiarch\nplatforms = 1\n")
    assert message.startswith("pyproject.toml at abc: not valid TOML")
    assert "line 1" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            'platforms = ["linux/amd64"]\nplatfroms = []',
            "[tool.multiarch.platfroms] unknown key (did you mean 'platforms'?); allowed: platforms, registry",
        ),
        (
            'platforms = ["linux/amd64"]\n[tool.multiarch.images.api]\ncontext = "services/api"\ndockerfle = "x"',
            "[tool.multiarch.images.api.dockerfle] unknown key (did you mean 'dockerfile'?)",
        ),
        (
            'platforms = ["linux/amd64"]\n[tool.multiarch.images.api]\ncontext = "services/api"\nbuild_args = {}',
            "[tool.multiarch.images.api.build_args] unknown key (did you mean 'build-args'?)",
        ),
        ('platforms = "linux/amd64"', "[tool.multiarch.platforms] must be a list of strings, not a string"),
        (
            'platforms = ["linux/amd64"]\npush = "yes"',
            "[tool.multiarch.push] must be true or false, not a string",
        ),
        ('platforms = ["linux/amd64"]\nbuilder = 3', "[tool.multiarch.builder] must be a non-empty string"),
        (
            'platforms = ["linux/amd64"]\ntags = ["{commit}"]',
            "[tool.multiarch.tags] '{commit}' uses unknown field {commit}; allowed: {sha}, {short_sha}, {branch}",
        ),
        ('platforms = ["linux/amd64"]\ntags = ["-bad"]', "'-bad' does not make a valid tag"),
        (
            'platforms = ["linux/amd64"]\nbinfmt-image = "tonistiigi/binfmt:latest"',
            "[tool.multiarch.binfmt-image] 'tonistiigi/binfmt:latest' must name a pinned tag (not latest)",
        ),
        ('platforms = ["linux/amd64"]\nbinfmt-image = "mirror:5000/binfmt"', "must name a pinned tag"),
        (
            'platforms = ["linux/amd64"]\nbuildkit-image = "mirror:5000/moby/buildkit"',
            "[tool.multiarch.buildkit-image] 'mirror:5000/moby/buildkit' must name a pinned tag (not latest) or a "
            "digest, e.g. 'moby/buildkit:v0.16.0'",
        ),
        (  # buildx splits --driver-opt at commas: one image, never another option
            'platforms = ["linux/amd64"]\nbuildkit-image = "moby/buildkit:v0.16.0,network=host"',
            "[tool.multiarch.buildkit-image] 'moby/buildkit:v0.16.0,network=host' must name a pinned tag",
        ),
        (
            'platforms = ["linux/amd64"]\nregistry = "Registry.Internal/Team"',
            "[tool.multiarch.registry] 'Registry.Internal/Team' is not a registry reference",
        ),
        ("platforms = []", "[tool.multiarch.platforms] must list at least one platform"),
        ('platforms = ["linux/amd64", "linux/amd64"]', "lists a platform twice"),
        ('platforms = ["arm64"]', "'arm64' is not a platform: expected os/arch[/variant]"),
        ('platforms = ["linux/aarch64"]', "unknown architecture 'aarch64' (did you mean 'linux/arm64'?)"),
        ('platforms = ["linux/armhf"]', "(did you mean 'linux/arm/v7'?)"),
        ('platforms = ["plan9/amd64"]', "unknown OS 'plan9'"),
        ('platforms = ["linux/ARM64"]', "'linux/ARM64' is not a platform"),
        ('[tool.multiarch.images.api]\ncontext = "services/api"', "[tool.multiarch.platforms] is required"),
        ('platforms = ["linux/amd64"]\nimages = 3', "[tool.multiarch.images] must be a table of images"),
        ('platforms = ["linux/amd64"]\n[tool.multiarch.images]', "[tool.multiarch.images] is empty"),
        (
            'platforms = ["linux/amd64"]\n[tool.multiarch.images.API]\ncontext = "services/api"',
            "[tool.multiarch.images.API] 'API' is not a valid image name",
        ),
        (
            'platforms = ["linux/amd64"]\n[tool.multiarch.images."my api"]\ncontext = "services/api"',
            "'my api' is not a valid image name",
        ),
        (
            'platforms = ["linux/amd64"]\n[tool.multiarch.images.api]\ndockerfile = "services/api/Dockerfile"',
            "[tool.multiarch.images.api.context] is required",
        ),
        (
            'platforms = ["linux/amd64"]\n[tool.multiarch.images.api]\ncontext = "services/web"',
            "[tool.multiarch.images.api.context] directory 'services/web' does not exist in this commit",
        ),
        (
            'platforms = ["linux/amd64"]\n[tool.multiarch.images.api]\ncontext = "docs"',
            "[tool.multiarch.images.api.dockerfile] 'docs/Dockerfile' is not a tracked file in this commit",
        ),
        (
            'platforms = ["linux/amd64"]\n[tool.multiarch.images.api]\ncontext = "../elsewhere"',
            "'../elsewhere' must be a path inside the repository",
        ),
        (
            'platforms = ["linux/amd64"]\n[tool.multiarch.images.api]\ncontext = "services/api"\n'
            "build-args = { DEBUG = true }",
            "[tool.multiarch.images.api.build-args.DEBUG] must be a string or number, not a boolean",
        ),
        (
            'platforms = ["linux/amd64"]\n[tool.multiarch.images.api]\ncontext = "services/api"\nwatch = "proto"',
            "[tool.multiarch.images.api.watch] must be a list of strings, not a string ('proto')",
        ),
        (
            'platforms = ["linux/amd64"]\n[tool.multiarch.images]\napi = "services/api"',
            "[tool.multiarch.images.api] must be a table with at least 'context', not a string",
        ),
    ],
)
def test_bad_config(text: str, expected: str) -> None:
    message = problem("[tool.multiarch]\n" + text + "\n")
    assert expected in message
    assert message.startswith("pyproject.toml at abc: invalid configuration:")
    assert "nothing was built" in message


def test_every_problem_is_reported_at_once() -> None:
    message = problem('[tool.multiarch]\nplatforms = ["linux/x86_64"]\npush = 1\nregistri = "r"\n')
    assert "linux/x86_64" in message and "push" in message and "registri" in message


def test_multiarch_must_be_a_table() -> None:
    assert "[tool.multiarch] must be a table" in problem("[tool]\nmultiarch = 1\n")


BUILD_SETTINGS = """
[tool.multiarch]
platforms = ["linux/amd64"]
jobs = 4
timeout = 900
cache-from = "type=registry,ref=reg:5000/cache/{name}"
cache-to = ["type=registry,ref=reg:5000/cache/{name},mode=max"]

[tool.multiarch.builder]
name = "fleet"
driver-opts = { network = "host" }
nodes = [
  { endpoint = "unix:///var/run/docker.sock", platforms = ["linux/amd64"] },
  { name = "arm", endpoint = "ssh://builder@arm-box", platforms = ["linux/arm64"] },
]

[tool.multiarch.images.api]
context = "services/api"
timeout = 60
cache-to = []

[tool.multiarch.images.base]
context = "base"
"""


def test_build_settings_and_builder_table() -> None:
    cfg = parse(BUILD_SETTINGS)
    assert (cfg.jobs, cfg.builder) == (4, "fleet")
    assert cfg.builder_spec is not None
    assert cfg.builder_spec.driver == "docker-container"
    assert cfg.builder_spec.driver_opts == (("network", "host"),)
    assert [(n.name, n.endpoint, n.platforms) for n in cfg.builder_spec.nodes] == [
        ("fleet0", "unix:///var/run/docker.sock", ("linux/amd64",)),
        ("arm", "ssh://builder@arm-box", ("linux/arm64",)),
    ]
    api, base = cfg.images
    assert (api.timeout, api.cache_from, api.cache_to) == (
        60.0,
        ("type=registry,ref=reg:5000/cache/api",),
        (),
    )
    assert (base.timeout, base.cache_to) == (900.0, ("type=registry,ref=reg:5000/cache/base,mode=max",))


def test_discovered_dockerfiles_take_the_build_settings_as_tables_do() -> None:
    # Without images tables, every tracked Dockerfile is an image: [tool.multiarch]'s build
    # settings are each one's, as they are a table's that sets none.
    text = BUILD_SETTINGS.partition("[tool.multiarch.builder]")[0] + 'secrets = ["id=npm,env=NPM_TOKEN"]\n'
    by_name = {image.name: image for image in parse(text).images}
    assert set(by_name) == {"api", "base", "docker-worker", "tools-dev"}
    api = by_name["api"]
    assert (api.timeout, api.cache_from, api.cache_to, api.secrets) == (
        900.0,
        ("type=registry,ref=reg:5000/cache/api",),
        ("type=registry,ref=reg:5000/cache/api,mode=max",),
        ("id=npm,env=NPM_TOKEN",),
    )
    assert by_name["docker-worker"].cache_from == ("type=registry,ref=reg:5000/cache/docker-worker",)


@pytest.mark.parametrize(("text", "expected"), [
    ("jobs = 0", "[tool.multiarch.jobs] must be a whole number of at least 1, not an integer (0)"),
    ('timeout = "1h"', "[tool.multiarch.timeout] must be a number of seconds above 0 and at most 604800, not a string ('1h')"),
    ('cache-from = "registry"', "'registry' is not a BuildKit cache spec"),
    ("[tool.multiarch.builder]\ndriver = \"docker\"", "[tool.multiarch.builder.name] is required"),
    ('[tool.multiarch.builder]\nname = "b"\ndriver = "docker"', "'docker': mab-hook creates docker-container"),
    ('[tool.multiarch.builder]\nname = "b"\nnodes = [{ platforms = ["linux/arm64"] }]',
     "[tool.multiarch.builder.nodes[0].endpoint] is required"),
])  # fmt: skip
def test_bad_build_settings(text: str, expected: str) -> None:
    assert expected in problem('[tool.multiarch]\nplatforms = ["linux/amd64"]\n' + text + "\n")


def test_a_cached_config_is_checked_against_the_tree_again(monkeypatch: pytest.MonkeyPatch) -> None:
    memory: dict[object, object] = {}
    first = load(FULL, source="at 1", tracked=TRACKED, cache=memory)
    monkeypatch.setattr("mab_hook.config.tomllib.loads", lambda text: pytest.fail("parsed again"))
    again = load(FULL, source="at 2", tracked=TRACKED | {"new/file"}, cache=memory)
    assert again == dataclasses.replace(first, source="at 2")
    monkeypatch.undo()
    with pytest.raises(FatalError, match="'services/api/Dockerfile' is not a tracked file"):
        # the tree answers otherwise: validated afresh
        load(FULL, source="at 3", tracked=TRACKED - {"services/api/Dockerfile"}, cache=memory)


def laid(
    changes: Mapping[str, bool], tree: str, *, base: str = "kept", kept: frozenset[str] = TRACKED
) -> listing.Listing:
    """The tracked files as a push sees them: the kept listing (`kept`, of tree `base`) with
    paths added (True) or deleted (False) laid over it, as listing.of_commit gives it."""
    record = "100644 blob " + "0" * 40
    whole = listing.Listed(base, tuple(sorted(kept)), record * len(kept))
    patch = [(path, record if added else None) for path, added in sorted(changes.items())]
    return listing.Listing(tree, whole, listing.Patch(patch, frozenset(changes)))


def asked_of(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """The questions a cached configuration's validation asks of the tree again."""
    asked: list[tuple[str, str]] = []
    ask = config._asked

    def spy(tree: Any, question: str, path: str) -> object:
        asked.append((question, path))
        return ask(tree, question, path)

    monkeypatch.setattr(config, "_asked", spy)
    return asked


def test_over_the_same_kept_listing_only_questions_about_paths_that_came_or_went_are_asked_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    memory: dict[object, object] = {}
    first = load(FULL, source="at 1", tracked=laid({}, "t1"), cache=memory)
    asked = asked_of(monkeypatch)
    monkeypatch.setattr("mab_hook.config.tomllib.loads", lambda text: pytest.fail("parsed again"))
    again = load(FULL, source="at 2", tracked=laid({"docs/new.md": True}, "t2"), cache=memory)
    assert again == dataclasses.replace(first, source="at 2") and asked == []  # nothing asked concerns it
    load(
        FULL,
        source="at 3",
        tracked=laid({"base/extra": True, "services/api/main.py": False}, "t3"),
        cache=memory,
    )
    assert sorted(asked) == [("has_dir", "base"), ("has_dir", "services/api")]  # the only ones about them
    monkeypatch.undo()
    with pytest.raises(FatalError, match="'services/api/Dockerfile' is not a tracked file"):
        load(FULL, source="at 4", tracked=laid({"services/api/Dockerfile": False}, "t4"), cache=memory)


def test_what_came_over_the_kept_listing_in_a_run_before_is_asked_about_again() -> None:
    memory: dict[object, object] = {}
    kept = TRACKED - {"base/Dockerfile"}
    load(FULL, source="at 1", tracked=laid({"base/Dockerfile": True}, "t1", kept=kept), cache=memory)
    with pytest.raises(FatalError, match="'base/Dockerfile' is not a tracked file"):
        # nothing moved from the kept listing: what moved at the validated tree did
        load(FULL, source="at 2", tracked=laid({}, "t2", kept=kept), cache=memory)


def test_over_another_kept_listing_every_question_is_asked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    memory: dict[object, object] = {}
    load(FULL, source="at 1", tracked=laid({}, "t1"), cache=memory)
    asked = asked_of(monkeypatch)
    load(FULL, source="at 2", tracked=laid({}, "t2", base="rewritten"), cache=memory)
    validated = next(value for key, value in memory.items() if isinstance(key, tuple))
    every = [(question, path) for question, path, _answer in validated[1].every()]  # type: ignore[index]
    assert asked == every == [
        ("exists", "services/api/Dockerfile"), ("exists", "base/Dockerfile"),
        ("has_dir", "services/api"), ("has_dir", "base"),
    ]  # fmt: skip
    asked.clear()
    load(FULL, source="at 3", tracked=laid({}, "t3", base="rewritten"), cache=memory)
    assert asked == []  # and noted: over that one, nothing moved


def test_a_new_file_a_project_glob_names_is_found_over_the_kept_listing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def resolve(sources: Sequence[Source]) -> Resolved:
        return Resolved(tuple(Target("web", {"context": "."}, s, True) for s in sources), (), tuple(sources))

    text = '[tool.multiarch]\nplatforms = ["linux/amd64"]\ncompose-projects = "services/*/compose.yaml"\n'
    memory: dict[object, object] = {}
    kept = TRACKED | {"services/api/compose.yaml"}
    found = load(text, source="s", tracked=laid({}, "t1", kept=kept), resolve=resolve, cache=memory)
    assert [image.name for image in found.images] == ["api-web"]
    asked = asked_of(monkeypatch)
    load(
        text, source="s", tracked=laid({"docs/new.md": True}, "t2", kept=kept), resolve=resolve, cache=memory
    )
    assert asked == []  # nothing moved where the glob looks
    new = {"services/web/compose.yaml": True, "services/web/Dockerfile": True}
    again = load(text, source="s", tracked=laid(new, "t3", kept=kept), resolve=resolve, cache=memory)
    assert [image.name for image in again.images] == ["api-web", "web-web"]
    assert ("matching", "services/*/compose.yaml") in asked


def test_only_the_last_configs_are_kept_and_discovery_is_not() -> None:
    memory: dict[object, object] = {}
    texts = [FULL.replace("multi-arch", f"builder-{i}") for i in range(config.KEEP_CONFIGS + 2)]
    for text in texts:
        load(text, source="s", tracked=TRACKED, cache=memory)
    digests = [hashlib.sha256(text.encode()).hexdigest() for text in texts]
    assert [key[1] for key in memory if isinstance(key, tuple)] == digests[-config.KEEP_CONFIGS :]
    memory.clear()
    load('[tool.multiarch]\nplatforms = ["linux/amd64"]\n', source="s", tracked=TRACKED, cache=memory)
    assert memory == {}  # which images there are depends on every path: nothing to re-check cheaply


API = '[tool.multiarch]\nplatforms = ["linux/amd64"]\n[tool.multiarch.images.api]\ncontext = "services/api"\n'


@pytest.mark.parametrize(("extra", "message"), [
    ('cache-to = "type=local,dest=/home/dev/.ssh"', "[tool.multiarch.images.api.cache-to] 'type=local,dest=/home/dev/.ssh': dest= must be a path inside the repository"),
    ('cache-from = "type=local,src=../../etc"', "[tool.multiarch.images.api.cache-from] 'type=local,src=../../etc': src= must be a path inside the repository"),
    ('contexts = { x = "oci-layout:///var/lib/secret:1" }', "[tool.multiarch.images.api.contexts.x] 'oci-layout:///var/lib/secret:1': the layout's path must be a path inside the repository"),
    ('secrets = ["id=key,src=/home/dev/.ssh/id_rsa,mode=0400"]', "takes id=, and env= or src= (where you would take it from)"),
    ('secrets = ["env=NPM_TOKEN"]', "needs id=NAME"),
    ('secrets = ["id=npm,env=not a name"]', "env= must name an environment variable"),
])  # fmt: skip
def test_host_paths_and_files_stay_out_of_reach_of_a_pushed_commit(extra: str, message: str) -> None:
    assert message in problem(API + extra + "\n")


def test_repository_paths_for_caches_layouts_and_secrets_from_the_environment() -> None:
    extra = ('cache-to = "type=local,dest=.git/mab-hook/cache/{name},mode=max"\n'
             'cache-from = ["type=local,src=./.buildx-cache/{name}", "type=registry,ref=r/c"]\n'
             'contexts = { layout = "oci-layout://vendor/../layouts/base:v1" }\n'
             'secrets = ["id=npm,env=NPM_TOKEN", "id=GH_TOKEN"]\n')  # fmt: skip
    tracked = TRACKED | {"layouts/base/index.json"}
    (image,) = parse(API + extra, tracked).images
    assert image.cache_to == ("type=local,dest=.git/mab-hook/cache/api,mode=max",)
    assert image.cache_from == ("type=local,src=.buildx-cache/api", "type=registry,ref=r/c")
    assert image.contexts == (("layout", "oci-layout://layouts/base:v1"),)
    assert image.watches == ("layouts/base/**",)  # a change to the layout makes the image affected
    assert image.secrets == ("id=npm,env=NPM_TOKEN", "id=GH_TOKEN,env=GH_TOKEN")


def test_a_commits_secret_file_is_dropped_only_its_id_is_asked_for() -> None:
    (image,) = parse(API + 'secrets = ["id=key,src=/home/dev/.ssh/id_rsa"]\n').images
    assert image.secrets == ("id=key",)  # where it comes from is the pusher's grant (mab_hook.grants)


@pytest.mark.parametrize(("text", "message"), [
    ('tags = []', "[tool.multiarch.tags] must list at least one tag template"),
    ('tags = ["{"]', "has a lone '{'"),
    ('tags = ["v}"]', "has a lone '}'"),
    ('timeout = nan', "[tool.multiarch.timeout] must be a number of seconds above 0 and at most 604800, not a number (nan)"),
    ('timeout = inf', "[tool.multiarch.timeout] must be a number of seconds above 0 and at most 604800, not a number (inf)"),
    ('timeout = -5', "[tool.multiarch.timeout] must be a number of seconds above 0"),
    ('timeout = 1e308', "[tool.multiarch.timeout] must be a number of seconds above 0 and at most 604800, not a number (1e+308)"),
    ('registry = "bob:s3cret@registry.internal/team"', "'***@registry.internal/team' is not a registry reference"),
    ('staging = "bob:s3cret@registry.internal/staging"', "[tool.multiarch.staging] '***@registry.internal/staging' is not a registry reference"),
    ("staging = 5", "[tool.multiarch.staging] must be a non-empty string, not an integer (5)"),
    ('publish-branches = "main"', "[tool.multiarch.publish-branches] must be a list of strings"),
    ('publish-branches = ["refs/heads/main"]', "'refs/heads/main' is not a name pattern: write short names"),
    ('publish-tags = [" "]', "' ' is not a name pattern"),
])  # fmt: skip
def test_bad_values_are_problems_not_crashes(text: str, message: str) -> None:
    found = problem(API.replace('platforms = ["linux/amd64"]\n', f'platforms = ["linux/amd64"]\n{text}\n'))
    assert message in found
    assert "s3cret" not in found


def test_a_deeply_nested_value_and_bytes_that_are_not_utf8() -> None:
    deep = "[tool.multiarch]\nx = " + "[" * 10_000 + "]" * 10_000 + "\n"
    assert "not valid TOML: values nested too deeply" in problem(deep)
    with pytest.raises(FatalError, match=r"byte b'\\xff' on line 2 is not UTF-8"):
        load(b"[tool.multiarch]\nplatforms = ['\xff']\n", source="s", tracked=TRACKED)


def test_keep_logs() -> None:
    assert parse(API + "").keep_logs == 50
    assert (
        parse(
            API.replace('platforms = ["linux/amd64"]\n', 'platforms = ["linux/amd64"]\nkeep-logs = 3\n')
        ).keep_logs
        == 3
    )
    assert "[tool.multiarch.keep-logs] must be a whole number of at least 1" in problem(
        API.replace('platforms = ["linux/amd64"]\n', 'platforms = ["linux/amd64"]\nkeep-logs = 0\n')
    )


# --- images from compose and bake files --------------------------------------------------------

WITH_FILES = TRACKED | {
    "compose.yaml",
    "compose.override.yaml",
    "docker-bake.hcl",
    "deploy/compose.yaml",
    ".env",
}


Spec = tuple[str, dict[str, object], bool]  # a target: name, fields, in the default group


class FakeResolver:
    """What `docker buildx bake --print` resolves, canned (tests/test_definitions.py runs the real
    one): targets per source, and every call recorded."""

    def __init__(self, *targets: Spec) -> None:
        self.targets = targets
        self.calls: list[tuple[Source, ...]] = []
        self.key: object = "v1"

    def __call__(self, sources: Sequence[Source]) -> Resolved:
        self.calls.append(tuple(sources))
        found = tuple(
            Target(name, spec, source, default) for source in sources for name, spec, default in self.targets
        )
        return Resolved(found, (*(f for s in sources for f in s.files), ".env"), self.key)


def with_files(
    text: str,
    resolver: FakeResolver,
    tracked: frozenset[str] = WITH_FILES,
    cache: dict[object, object] | None = None,
) -> Config:
    return load(text, source="pyproject.toml at abc", tracked=tracked, root_name="myrepo", resolve=resolver,
                cache=cache)  # fmt: skip


SERVICES: tuple[Spec, ...] = (
    ("api", {"context": "services/api"}, True),
    ("base", {"context": "base", "platforms": ["linux/arm64"]}, True),
)


def test_compose_and_bake_keys_name_the_files_and_where_they_resolve() -> None:
    # Paths in compose files are relative to the first one, as `docker compose` has them.
    resolver = FakeResolver(("api", {"context": "../services/api"}, True),
                            ("base", {"context": "../base", "platforms": ["linux/arm64"]}, True))  # fmt: skip
    cfg = with_files(
        '[tool.multiarch]\nplatforms = ["linux/amd64"]\ncompose = ["deploy/compose.yaml", "compose.override.yaml"]\n',
        resolver,
    )
    assert resolver.calls == [
        (Source("compose", ("deploy/compose.yaml", "compose.override.yaml"), "deploy"),)
    ]
    assert [(i.name, i.context, i.platforms, i.defined_in) for i in cfg.images] == [
        ("api", "services/api", ("linux/amd64",), "deploy/compose.yaml, compose.override.yaml"),
        ("base", "base", ("linux/arm64",), "deploy/compose.yaml, compose.override.yaml"),  # its own platforms
    ]
    assert cfg.definitions == ("deploy/compose.yaml", "compose.override.yaml", ".env")
    bake = FakeResolver(*SERVICES)
    with_files('[tool.multiarch]\nplatforms = ["linux/amd64"]\nbake = "docker-bake.hcl"\n', bake)
    assert bake.calls == [(Source("bake", ("docker-bake.hcl",), "."),)]


def test_a_table_adds_and_overrides_mab_hook_settings_of_a_file_image() -> None:
    resolver = FakeResolver(("api", {"context": "services/api", "args": {"A": "1", "B": "2"}}, True))
    cfg = with_files(
        '[tool.multiarch]\nplatforms = ["linux/amd64"]\ncompose = "compose.yaml"\n'
        '[tool.multiarch.images.api]\nplatforms = ["linux/arm64"]\nbuild-args = { B = "3" }\nwatch = ["proto/**"]\n'
        '[tool.multiarch.images.base]\ncontext = "base"\n',  # an image of the table alone, beside them
        resolver,
    )
    api, base = cfg.images
    assert (api.platforms, api.build_args, api.watch, api.context) == (
        ("linux/arm64",), (("A", "1"), ("B", "3")), ("proto/**",), "services/api")  # fmt: skip
    assert (base.name, base.defined_in) == ("base", "")


def test_without_images_tables_buildx_default_files_come_first() -> None:
    resolver = FakeResolver(*SERVICES)
    cfg = with_files('[tool.multiarch]\nplatforms = ["linux/amd64"]\n', resolver)
    # buildx's own default list and order; compose.override.yaml is not on it
    assert resolver.calls == [(Source("", ("compose.yaml", "docker-bake.hcl"), "."),)]
    assert [i.name for i in cfg.images] == ["api", "base"]


def test_default_files_of_ready_made_images_only_leave_discovery_to_the_dockerfiles() -> None:
    cfg = with_files('[tool.multiarch]\nplatforms = ["linux/amd64"]\n', FakeResolver())
    assert {i.name for i in cfg.images} == {"api", "base", "docker-worker", "tools-dev"}


def test_a_named_file_that_defines_nothing_or_is_missing() -> None:
    with pytest.raises(
        FatalError, match=r"compose.yaml: no image to build \(no service with a build section"
    ):
        with_files(
            '[tool.multiarch]\nplatforms = ["linux/amd64"]\ncompose = "compose.yaml"\n', FakeResolver()
        )
    with pytest.raises(FatalError) as info:
        with_files(
            '[tool.multiarch]\nplatforms = ["linux/amd64"]\ncompose = ["nope.yaml"]\nbake = 3\n',
            FakeResolver(),
        )
    assert "[tool.multiarch.compose] 'nope.yaml' is not a tracked file in this commit" in str(info.value)
    assert "[tool.multiarch.bake] must be a list of strings, not an integer (3)" in str(info.value)


def test_a_cached_config_of_files_resolves_them_again() -> None:
    """The resolution keeps its own cache by blob ids; the config cache asks it again, and
    validates afresh when what the files resolve to changed."""
    memory: dict[object, object] = {}
    resolver = FakeResolver(*SERVICES)
    text = '[tool.multiarch]\nplatforms = ["linux/amd64"]\ncompose = "compose.yaml"\n'
    first = with_files(text, resolver, cache=memory)
    again = with_files(text, resolver, cache=memory)
    assert again == first and len(resolver.calls) == 2
    resolver.targets = (("api", {"context": "base"}, True),)
    resolver.key = "v2"
    changed = with_files(text, resolver, cache=memory)
    assert [(i.name, i.context) for i in changed.images] == [("api", "base")]


def test_a_configured_definition_file_that_is_missing_is_that_error_and_no_other() -> None:
    """Not a fall-back to the default files at the root, whose own errors would be reported."""
    resolver = FakeResolver(*SERVICES)
    tracked = WITH_FILES | {"compose.yaml"}
    for key in ("compose", "bake"):
        with pytest.raises(FatalError) as info:
            with_files(
                f'[tool.multiarch]\nplatforms = ["linux/amd64"]\n{key} = "gone.yaml"\n', resolver, tracked
            )
        assert str(info.value) == (
            "pyproject.toml at abc: invalid configuration:\n"
            f"  - [tool.multiarch.{key}] 'gone.yaml' is not a tracked file in this commit\n"
            "Fix pyproject.toml and run again; nothing was built."
        )
    assert resolver.calls == []  # no default file was resolved instead


def test_bake_targets_names_the_groups_or_targets_that_are_the_images() -> None:
    resolver = FakeResolver(*SERVICES)
    with_files('[tool.multiarch]\nplatforms = ["linux/amd64"]\nbake = "docker-bake.hcl"\nbake-targets = ["image-cross"]\n',
               resolver)  # fmt: skip
    assert resolver.calls == [(Source("bake", ("docker-bake.hcl",), ".", ("image-cross",)),)]
    resolver.calls.clear()
    with_files('[tool.multiarch]\nplatforms = ["linux/amd64"]\nbake-targets = ["image"]\n', resolver,
               WITH_FILES - {"compose.yaml", "compose.override.yaml"})  # the default files: docker-bake.hcl  # fmt: skip
    assert [source.groups for sources in resolver.calls for source in sources] == [("image",)]
    assert "tool.multiarch.bake-targets" in problem(
        '[tool.multiarch]\nplatforms = ["linux/amd64"]\nbake-targets = "x"\n'
    )


@pytest.mark.parametrize(("value", "message"), [
    ('"*/compose.yaml"', "[tool.multiarch.compose-projects] '*/compose.yaml' names no tracked file in this commit"),
    ("[]", "[tool.multiarch.compose-projects] must name at least one glob"),
    ("3", "[tool.multiarch.compose-projects] must be a list of strings, not an integer"),
    ('[""]', "'' names no tracked file"),
])  # fmt: skip
def test_compose_projects_must_name_compose_files(value: str, message: str) -> None:
    assert message in problem(f'[tool.multiarch]\nplatforms = ["linux/amd64"]\ncompose-projects = {value}\n')


def test_each_file_a_glob_names_is_a_project_of_its_own_found_again_in_a_new_tree() -> None:
    def resolve(sources: Sequence[Source]) -> Resolved:
        return Resolved(tuple(Target("web", {"context": "."}, s, True) for s in sources), (), tuple(sources))

    text = '[tool.multiarch]\nplatforms = ["linux/amd64"]\ncompose-projects = ["*/compose.yaml", "x/*.yml"]\n'
    tracked = {"shop/compose.yaml", "My.Blog/compose.yaml", "x/a.yml", "x/y/compose.yaml", "compose.yaml"}
    tracked |= {f"{directory}/Dockerfile" for directory in ("shop", "My.Blog", "x", "new")}
    memory: dict[object, object] = {}
    found = load(text, source="s", tracked=tracked, resolve=resolve, cache=memory)
    assert [(i.name, i.context, i.defined_in) for i in found.images] == [
        ("myblog-web", "My.Blog", "My.Blog/compose.yaml"),
        ("shop-web", "shop", "shop/compose.yaml"),
        ("x-web", "x", "x/a.yml"),
    ]
    again = load(text, source="s", tracked={*tracked, "new/compose.yaml"}, resolve=resolve, cache=memory)
    assert [i.name for i in again.images] == ["myblog-web", "new-web", "shop-web", "x-web"]
    assert definitions.project_name("-My App_2") == "myapp_2" and definitions.project_name("...") == ""


def test_the_images_a_fix_runs_are_pinned_and_may_come_from_a_mirror() -> None:
    found = parse('[tool.multiarch]\nplatforms = ["linux/amd64"]\nbuildkit-image = "mirror.internal/moby/buildkit:v0.16.0"\n'
                  'binfmt-image = "mirror.internal/binfmt@sha256:' + "a" * 64 + '"\n')  # fmt: skip
    assert found.buildkit_image == "mirror.internal/moby/buildkit:v0.16.0"
    assert found.binfmt_image == "mirror.internal/binfmt@sha256:" + "a" * 64
    assert parse('[tool.multiarch]\nplatforms = ["linux/amd64"]\n').buildkit_image is None  # buildx's own


def test_a_kept_validation_asks_again_only_the_questions_a_moved_path_can_change() -> None:
    asked = config.Asked.of([
        ("exists", "api/Dockerfile", True), ("exists", "api", False),
        ("has_dir", "api", True), ("has_dir", "web/app", True), ("has_dir", ".", True),
        ("matching", "docs/*/x.md", ["docs/a/x.md"]), ("matching", "*.md", []),
    ])  # fmt: skip

    def near(*moved: str) -> set[tuple[str, str]]:
        return {(question, path) for question, path, _answer in asked.near(moved)}

    whole_tree = {("has_dir", "."), ("matching", "*.md")}  # anything moved may change these
    assert near() == set()
    assert near("api/Dockerfile") == {("exists", "api/Dockerfile"), ("has_dir", "api"), *whole_tree}
    assert near("api") == {("exists", "api"), *whole_tree}  # a file named api: not inside the directory
    assert near("apis/x", "web/app") == whole_tree  # a sibling that shares a prefix, the directory itself
    assert near("web/app/src/main.go") == {("has_dir", "web/app"), *whole_tree}
    assert near("docs/b/x.md") == {("matching", "docs/*/x.md"), *whole_tree}  # inside the glob's literal part
    assert sorted(asked.every()) == sorted([
        ("exists", "api/Dockerfile", True), ("exists", "api", False),
        ("has_dir", "api", True), ("has_dir", "web/app", True), ("has_dir", ".", True),
        ("matching", "docs/*/x.md", ["docs/a/x.md"]), ("matching", "*.md", []),
    ], key=repr)  # fmt: skip


def test_a_configuration_kept_by_an_older_mab_hook_is_validated_afresh(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its questions were kept as a tuple (before `Asked`): they are not trusted as answered."""
    memory: dict[object, object] = {}
    first = load(FULL, source="at 1", tracked=TRACKED, cache=memory)
    key = next(key for key in memory if isinstance(key, tuple))
    entry: tuple[Config, config.Asked, object] = memory[key]  # type: ignore[assignment]
    memory[key] = (entry[0], tuple(entry[1].every()), entry[2])  # as an older mab-hook kept it
    validated: list[str] = []

    def again(*_args: object) -> Config:
        validated.append("again")
        return first

    monkeypatch.setattr(config, "_load", again)
    load(FULL, source="at 2", tracked=TRACKED, cache=memory)
    assert validated == ["again"]
    assert isinstance(memory[key][1], config.Asked)  # type: ignore[index]


ENGINES = '[tool.multiarch]\nplatforms = ["linux/amd64", "linux/arm64"]\n'


def test_engines_route_platforms_to_docker_contexts_or_builders_and_say_what_happens_when_one_is_down() -> (
    None
):
    cfg = parse(ENGINES + 'engine-down = "emulate"\n[tool.multiarch.engines]\n"linux/arm64" = "arm-box"\n'
                '"linux/arm/v7" = "pi.lab_2"\n')  # fmt: skip
    assert (cfg.engines, cfg.engine_down) == (
        (("linux/arm64", "arm-box"), ("linux/arm/v7", "pi.lab_2")),
        "emulate",
    )
    plain = parse(ENGINES)
    assert (plain.engines, plain.engine_down) == ((), "fail")


@pytest.mark.parametrize(
    ("table", "said"),
    [
        ('engines = "arm-box"', "[tool.multiarch.engines] must be a table of platform = engine"),
        ('engines = { aarch64 = "arm-box" }', "[tool.multiarch.engines.aarch64] 'aarch64' is not"),
        (
            'engines = { "linux/arm64" = "--host=tcp://evil:2375" }',
            "[tool.multiarch.engines.linux/arm64] must name",
        ),
        ('engines = { "linux/arm64" = "" }', "[tool.multiarch.engines.linux/arm64] must name"),
        ('engines = { "linux/arm64" = "a b" }', "[tool.multiarch.engines.linux/arm64] must name"),
        ('engines = { "linux/arm64" = 3 }', "[tool.multiarch.engines.linux/arm64] must name"),
        ('engine-down = "retry"', '[tool.multiarch.engine-down] must be "fail" or "emulate", not'),
        ("engine-down = true", '[tool.multiarch.engine-down] must be "fail" or "emulate", not'),
    ],
)
def test_an_engine_is_a_name_never_an_option_and_engine_down_is_one_of_two_words(
    table: str, said: str
) -> None:
    assert said in problem(ENGINES + table + "\n")
