"""The bake definition mab-hook writes: entries, confined paths, escaped strings, grants."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mab_hook import bakefile, grants
from mab_hook.errors import FatalError
from mab_hook.images import Image
from tests.test_buildx import ALL3, APP, BASE, FILES, make

LABELS = {"base": {"org.opencontainers.image.revision": "ab" * 20}}


def test_definition() -> None:
    cached = dataclasses.replace(
        BASE, cache_from=("type=registry,ref=reg/cache/base",), cache_to=("type=inline",)
    )
    definition = bakefile.definition(
        make((cached, APP), FILES), bakefile.Paths(Path("/co"), Path("/repo")), LABELS, {}
    )
    assert definition["group"] == {"default": {"targets": ["base", "team_SLASH_app"]}}
    targets = definition["target"]
    assert targets["base"] == {
        "context": "/co/base", "dockerfile": "/co/base/Dockerfile", "platforms": list(ALL3),
        "tags": ["reg:5000/team/base:abababa"], "args": {"V": "1"},
        "cache-from": ["type=registry,ref=reg/cache/base"], "cache-to": ["type=inline"],
        "labels": {"org.opencontainers.image.revision": "ab" * 20},
    }  # fmt: skip
    # The dependant gets an untagged copy of its base for its own platforms (buildx demands it).
    variant = "base_AS_CONTEXT_linux_amd64_AND_linux_arm64"
    assert targets["team_SLASH_app"]["contexts"] == {"reg:5000/team/base": f"target:{variant}"}
    assert targets["team_SLASH_app"]["target"] == "runtime"
    assert targets[variant]["platforms"] == ["linux/amd64", "linux/arm64"]
    assert targets[variant]["tags"] == []


def test_definition_includes_unaffected_bases_untagged() -> None:
    definition = bakefile.definition(
        make((BASE, APP), FILES, changed={"app/Dockerfile"}),
        bakefile.Paths(Path("/co"), Path("/repo")),
        {},
        {},
    )
    assert definition["group"]["default"]["targets"] == ["team_SLASH_app"]
    assert set(definition["target"]) == {"team_SLASH_app", "base_AS_CONTEXT_linux_amd64_AND_linux_arm64"}


def test_an_image_pushed_while_it_builds_is_tagged_with_its_staging_reference_only() -> None:
    definition = bakefile.definition(
        make((BASE,), FILES),
        bakefile.Paths(Path("/co"), Path("/repo")),
        {},
        {"base": "reg:5000/team/base:mab-1"},
    )
    assert definition["target"]["base"]["tags"] == ["reg:5000/team/base:mab-1"]


@pytest.mark.parametrize("names", [("a.b", "a_b"), ("team.api", "team_api", "team/api"), ("x-y", "x--y")])
def test_every_image_has_an_entry_of_its_own(names: tuple[str, ...]) -> None:
    entries = [bakefile.entry_name(name) for name in names]
    assert len(set(entries)) == len(names)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+", entry) for entry in entries)


def test_local_caches_live_in_the_repository_and_layouts_come_from_the_checkout() -> None:
    api = Image("api", "app", "app/Dockerfile", ("linux/amd64",), contexts=(("l", "oci-layout://layouts/b:v1"),),
                cache_from=("type=local,src=.cache/api",), cache_to=("type=local,dest=.cache/api,mode=max",),
                secrets=("id=npm,env=NPM_TOKEN",))  # fmt: skip
    entry = bakefile.definition(make((api,), {"app/Dockerfile": "FROM busybox\n"}),
                              bakefile.Paths(Path("/co"), Path("/repo")), {}, {})["target"]["api"]  # fmt: skip
    assert entry["cache-from"] == ["type=local,src=/repo/.cache/api"]
    assert entry["cache-to"] == ["type=local,dest=/repo/.cache/api,mode=max"]
    assert entry["contexts"] == {"l": "oci-layout:///co/layouts/b:v1"}
    assert "secret" not in entry  # nothing granted: nothing given


def test_secrets_ssh_and_the_hosts_network_come_from_the_pushers_grants_only() -> None:
    asking = Image("api", "app", "app/Dockerfile", ("linux/amd64",), secrets=("id=npm,env=PATH",),
                   extra=(("network", '"host"'), ("shm-size", '"2g"')))  # fmt: skip
    plan = make((asking,), {"app/Dockerfile": "FROM busybox\n"})
    granted = grants.Grants({"npm": "id=npm,env=NPM_TOKEN"}, {"default": "default=/run/agent.sock"},
                            frozenset({"network.host"}))  # fmt: skip
    entry = bakefile.definition(plan, bakefile.Paths(Path("/co"), Path("/repo")), {}, {}, granted)["target"][
        "api"
    ]
    # The pusher's sources, never the commit's (env=PATH): every build gets what was granted.
    assert (entry["secret"], entry["ssh"], entry["network"]) == (
        ["id=npm,env=NPM_TOKEN"],
        ["default=/run/agent.sock"],
        "host",
    )
    bare = bakefile.definition(plan, bakefile.Paths(Path("/co"), Path("/repo")), {}, {})["target"]["api"]
    assert ("secret" in bare, "ssh" in bare, "network" in bare, bare["shm-size"]) == (
        False,
        False,
        False,
        "2g",
    )


TEMPLATE_TEXT = st.text(alphabet="$%{}ab/", max_size=12)


@settings(derandomize=bool(os.environ.get("CI")))
@given(TEMPLATE_TEXT)
def test_a_literal_string_reads_back_as_written(text: str) -> None:
    written = bakefile.literal(text)
    assert bakefile.unliteral(written) == text
    assert not re.search(r"(?<![$])\$\{|(?<![%])%\{", written)  # no lone opener is left


def test_every_string_of_a_definition_is_escaped_keys_included() -> None:
    hostile = '${replace("~..~..~etc","~","/")}'
    image = Image("evil", f"ctx/{hostile}", f"ctx/{hostile}/Dockerfile", ("linux/amd64",),
                  build_args=(("A${x}", "${HOME}"), ("B", "%{ if true }x%{ endif }")),
                  contexts=(("c$${y}", f"ctx/{hostile}"),))  # fmt: skip
    files = {f"ctx/{hostile}/Dockerfile": "FROM busybox\nCOPY . /\n"}
    written = bakefile.definition(make((image,), files), bakefile.Paths(Path("/co"), Path("/repo")), {}, {})
    entry = written["target"]["evil"]
    assert entry["context"] == '/co/ctx/$${replace("~..~..~etc","~","/")}'
    assert entry["args"] == {"A$${x}": "$${HOME}", "B": "%%{ if true }x%%{ endif }"}
    assert entry["contexts"] == {"c$$${y}": '/co/ctx/$${replace("~..~..~etc","~","/")}'}
    assert bakefile.unliteral(written)["target"]["evil"]["args"] == {
        "A${x}": "${HOME}",
        "B": "%{ if true }x%{ endif }",
    }
    # What `--dry-run --bake` prints for `docker buildx bake -f -` is escaped the same way.
    exported = bakefile.export([make((image,), files)])
    assert exported["target"]["evil"]["context"] == 'ctx/$${replace("~..~..~etc","~","/")}'


def test_a_symlink_of_the_commit_takes_no_build_path_out_of_the_repository(tmp_path: Path) -> None:
    host = tmp_path / "host"
    (host / "ctx").mkdir(parents=True)
    checkout, repository = tmp_path / "checkout", tmp_path / "repository"
    (checkout / "app").mkdir(parents=True)
    repository.mkdir()
    (checkout / "layouts").symlink_to(host)
    (repository / ".cache").symlink_to(host)
    (repository / "inside").symlink_to("app")  # a symlink that stays inside is fine
    paths = bakefile.Paths(checkout, repository)
    cached = Image("api", "app", "app/Dockerfile", ("linux/amd64",), cache_to=("type=local,dest=.cache/api",))
    with pytest.raises(
        FatalError,
        match=r"image api: its cache dest= '.cache/api' leads out of the repository through a symlink",
    ):
        bakefile.definition(make((cached,), {"app/Dockerfile": "FROM busybox\n"}), paths, {}, {})
    layout = Image(
        "api", "app", "app/Dockerfile", ("linux/amd64",), contexts=(("l", "oci-layout://layouts/x:v1"),)
    )
    with pytest.raises(
        FatalError, match=r"image api: its context 'l' 'layouts/x' leads out of the pushed commit"
    ):
        bakefile.definition(make((layout,), {"app/Dockerfile": "FROM busybox\n"}), paths, {}, {})
    fine = dataclasses.replace(cached, cache_to=("type=local,dest=inside/cache",))
    entry = bakefile.definition(make((fine,), {"app/Dockerfile": "FROM busybox\n"}), paths, {}, {})["target"][
        "api"
    ]
    assert entry["cache-to"] == [f"type=local,dest={repository}/inside/cache"]


def test_the_exported_definition_lists_each_image_once_in_the_order_planned() -> None:
    one = make((BASE, APP), FILES)
    two = make((BASE, APP), FILES, changed={"app/Dockerfile"})
    exported = bakefile.export([two, one])
    assert exported["group"]["default"]["targets"] == ["team_SLASH_app", "base"]
    assert exported["target"]["base"]["context"] == "base"  # relative to the repository's root


@pytest.mark.parametrize("name", ["team.x/app", "a.b.c", "x/y/z", "plain"])
def test_entry_names_read_back_as_image_names(name: str) -> None:
    entry = bakefile.entry_name(name)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", entry) and bakefile.image_of(entry) == name
    assert bakefile.image_of(entry + "_AS_CONTEXT_linux_amd64") == name


def test_what_a_symlink_out_of_the_commit_is_told_for_each_build_path(tmp_path: Path) -> None:
    host = tmp_path / "host"
    host.mkdir()
    checkout, repository = tmp_path / "checkout", tmp_path / "repository"
    checkout.mkdir()
    repository.mkdir()
    (checkout / "app").symlink_to(host)
    (checkout / "ok").mkdir()
    (checkout / "ok" / "Dockerfile").symlink_to(host / "Dockerfile")
    (checkout / "fine").mkdir()
    (checkout / "fine" / "Dockerfile").write_text("FROM busybox\n")
    (repository / "c").symlink_to(host)
    paths = bakefile.Paths(checkout, repository)
    files = {
        "app/Dockerfile": "FROM busybox\n",
        "ok/Dockerfile": "FROM busybox\n",
        "fine/Dockerfile": "FROM busybox\n",
    }
    rest = (f"through a symlink (to {host}{{}}); nothing was built. A build reads and writes only inside the "
            "repository: replace the symlink, commit, and push again")  # fmt: skip
    cases = [
        (Image("api", "app", "ok/Dockerfile", ("linux/amd64",)),
         "image api: its context 'app' leads out of the pushed commit " + rest.format("")),
        (Image("api", "ok", "ok/Dockerfile", ("linux/amd64",)),
         "image api: its Dockerfile 'ok/Dockerfile' leads out of the pushed commit " + rest.format("/Dockerfile")),
        (Image("api", "fine", "fine/Dockerfile", ("linux/amd64",), cache_from=("type=local,src=c/x",)),
         "image api: its cache src= 'c/x' leads out of the repository " + rest.format("/x")),
    ]  # fmt: skip
    for image, said in cases:
        with pytest.raises(FatalError) as raised:
            bakefile.definition(make((image,), files), paths, {}, {})
        assert str(raised.value) == said


def test_the_exported_definition_keeps_local_caches_relative_to_the_repository() -> None:
    cached = dataclasses.replace(BASE, cache_to=("type=local,dest=.git/mab-hook/cache/base",))
    exported = bakefile.export([make((cached,), FILES)])
    assert exported["target"]["base"]["cache-to"] == ["type=local,dest=.git/mab-hook/cache/base"]


def test_the_written_definition_reads_back_and_is_private(tmp_path: Path) -> None:
    data = bakefile.literal({"target": {"t": {"context": "ctx/${HOME}", "args": {"A": "%{x}"}}}})
    written = bakefile.write_definition(tmp_path / "bake.json", data)
    assert json.loads(written.read_text()) == data
    assert written.read_text().endswith("}\n")
    assert written.stat().st_mode & 0o777 == 0o600  # it may name the pusher's secret ids
