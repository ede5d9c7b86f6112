from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mab_hook import plan as plan_module
from mab_hook.analysis import Base
from mab_hook.changes import Commit, Ref
from mab_hook.errors import FatalError
from mab_hook.images import Config, Image
from mab_hook.inputs import Files
from mab_hook.paths import Tree
from mab_hook.plan import Changed, Plan, make_plan, paths_near

PLATFORMS = ("linux/amd64", "linux/arm64")


def image(name: str, context: str, watch: tuple[str, ...] = ()) -> Image:
    return Image(
        name=name, context=context, dockerfile=f"{context}/Dockerfile", platforms=PLATFORMS, watch=watch
    )


CONFIG = Config(
    source="pyproject.toml at abc",
    platforms=PLATFORMS,
    registry="reg:5000/team",
    tags=("{short_sha}", "{branch}"),
    publish_branches=("*",),  # every ref publishes here: these tests are about the tags it gets
    publish_tags=("*",),
    images=(
        image("api", "services/api", watch=("proto/**", "*.md")),
        image("base", "base"),
        image("worker", "services/worker"),
        image("tool", "tools/tool"),
    ),
)
DOCKERFILES = {
    "base/Dockerfile": "FROM busybox\n",
    "services/api/Dockerfile": "ARG TAG=latest\nFROM reg:5000/team/base:${TAG}\nCOPY . /app\n",
    "services/worker/Dockerfile": "FROM base AS b\nFROM b\n",
    "tools/tool/Dockerfile": "FROM reg:5000/other/base\n",
}


def plan(changed: set[str] | None, config: Config = CONFIG, files: Mapping[str, str] = DOCKERFILES) -> Plan:
    commit = Commit("0123456789" * 4, (Ref("main"),), None if changed is None else frozenset(changed), "test")
    return make_plan(commit, config, Files.of(files), build_platform="linux/amd64")


def names(p: Plan) -> list[str]:
    return [planned.image.name for planned in p.affected]


def with_images(*images: Image) -> Config:
    return Config(source=CONFIG.source, platforms=PLATFORMS, registry=CONFIG.registry, images=images)


def test_nothing_changed_nothing_affected() -> None:
    p = plan({"docs/index.md"})
    assert names(p) == []
    assert p.unaffected == ("api", "base", "worker", "tool")


def test_context_file_affects_the_image() -> None:
    p = plan({"services/api/main.py"})
    assert names(p) == ["api"]
    assert p.affected[0].reasons == ("COPY '.' (line 3) reads: services/api/main.py",)
    assert p.affected[0].tags == ("reg:5000/team/api:0123456", "reg:5000/team/api:main")


def test_a_sibling_directory_with_the_same_prefix_does_not() -> None:
    assert names(plan({"services/api-docs/x"})) == []


def test_dockerfile_outside_the_context_counts() -> None:
    config = with_images(Image("api", "services/api", "docker/api.Dockerfile", PLATFORMS))
    p = plan({"docker/api.Dockerfile"}, config, {"docker/api.Dockerfile": "FROM busybox\n"})
    assert p.affected[0].reasons == ("Dockerfile changed: docker/api.Dockerfile",)


def test_watch_globs() -> None:
    reasons = plan({"proto/v1/api.proto"}).affected[0].reasons
    assert reasons == ("watch 'proto/**' matched: proto/v1/api.proto",)
    assert names(plan({"README.md"})) == ["api"]
    assert names(plan({"docs/README.md"})) == []  # '*.md' is anchored at the root, as in Docker


def test_a_changed_base_rebuilds_its_dependants_after_it() -> None:
    p = plan({"base/Dockerfile"})
    assert names(p) == ["base", "api", "worker"]
    api = p.affected[1]
    assert api.reasons == ("base image base is rebuilt",)
    assert api.bases == (Base("base", "reg:5000/team/base"),)  # ${TAG} expanded, :latest trimmed
    assert p.affected[2].bases == (Base("base", "base"),)  # bare name, through a stage alias
    assert "tool" in p.unaffected  # reg:5000/other/base is not ours


def test_an_unaffected_base_is_built_as_a_context_only() -> None:
    p = plan({"services/api/main.py"})
    assert names(p) == ["api"]
    assert [planned.image.name for planned in p.context_only] == ["base"]
    assert p.context_only[0].tags == ()


def test_everything() -> None:
    p = plan(None)
    assert names(p)[0] == "base"
    assert set(names(p)) == {"api", "base", "worker", "tool"}
    assert p.affected[0].reasons == ("every image is built (test)",)


def test_root_context_copied_whole_sees_every_change() -> None:
    config = with_images(Image("app", ".", "Dockerfile", PLATFORMS))
    assert names(plan({"anything/at/all"}, config, {"Dockerfile": "FROM busybox\nCOPY . /\n"})) == ["app"]
    assert names(plan({"anything/at/all"}, config, {"Dockerfile": "FROM busybox\nCOPY app /\n"})) == []


def test_cycle_is_a_config_error_naming_it() -> None:
    config = with_images(image("a", "a"), image("b", "b"))
    files = {"a/Dockerfile": "FROM reg:5000/team/b\n", "b/Dockerfile": "FROM reg:5000/team/a:1\n"}
    with pytest.raises(FatalError, match=r"in a cycle: (a -> b -> a|b -> a -> b)"):
        plan({"a/Dockerfile"}, config, files)


def test_a_missing_dockerfile_is_reported() -> None:
    with pytest.raises(FatalError, match="image api: services/api/Dockerfile is missing"):
        plan({"services/api/x"}, files={})


def test_changed_settings_make_an_image_affected() -> None:
    before = with_images(image("api", "services/api"), image("base", "base"))
    now = with_images(
        dataclasses.replace(image("api", "services/api"), build_args=(("V", "2"),)),
        image("base", "base"),
        image("worker", "services/worker"),
    )
    commit = Commit("0123456789" * 4, (Ref("main"),), frozenset({"pyproject.toml"}), "test", ("a" * 40,))
    p = make_plan(commit, now, Files.of(DOCKERFILES), build_platform="linux/amd64", previous=[before])
    assert {x.image.name: x.reasons for x in p.affected} == {
        "api": ("its [tool.multiarch] settings changed (pyproject.toml)",),
        "worker": ("new image in [tool.multiarch] (pyproject.toml)",),
    }


@pytest.mark.parametrize(
    ("changed", "affected"),
    [
        ({"cache_from": ("type=registry,ref=r/cache:2",)}, False),  # where BuildKit looks for cache
        ({"cache_to": ("type=inline",)}, False),
        ({"timeout": 60.0}, False),
        ({"defined_in": "compose.yaml"}, False),
        ({"foreign_binaries": ("/opt/x/**",)}, False),
        ({"build_args": (("V", "2"),)}, True),
        ({"labels": (("team", "ads"),)}, True),
        ({"extra": (("shm-size", '"2g"'),)}, True),
    ],
)
def test_only_a_change_to_what_is_built_or_published_makes_an_image_affected(
    changed: dict[str, object], affected: bool
) -> None:
    """What the input digest covers, and nothing else (a cache_from bump once marked 16 images)."""
    before = with_images(image("api", "services/api"))
    now = with_images(dataclasses.replace(image("api", "services/api"), **changed))  # type: ignore[arg-type]
    commit = Commit("0123456789" * 4, (Ref("main"),), frozenset({"pyproject.toml"}), "test", ("a" * 40,))
    p = make_plan(commit, now, Files.of(DOCKERFILES), build_platform="linux/amd64", previous=[before])
    assert bool(p.affected) is affected


def test_an_image_now_published_on_its_own_is_affected() -> None:
    before = with_images(dataclasses.replace(image("api", "services/api"), only_as_context=True))
    commit = Commit("0123456789" * 4, (Ref("main"),), frozenset({"pyproject.toml"}), "test", ("a" * 40,))
    now = with_images(image("api", "services/api"))
    p = make_plan(commit, now, Files.of(DOCKERFILES), build_platform="linux/amd64", previous=[before])
    assert [x.image.name for x in p.affected] == ["api"]


def test_every_ref_of_a_commit_gets_its_own_tags() -> None:
    """`git push origin main v1.4.0`: both names tag what the push affects."""
    commit = Commit("0123456789" * 4, (Ref("main"), Ref("v1.4.0")), frozenset({"services/api/main.py"}), "t")
    (api,) = make_plan(commit, CONFIG, Files.of(DOCKERFILES), build_platform="linux/amd64").affected
    assert api.tags == ("reg:5000/team/api:0123456", "reg:5000/team/api:main", "reg:5000/team/api:v1.4.0")
    assert api.tags_by_ref == (
        ("main", ("reg:5000/team/api:0123456", "reg:5000/team/api:main")),
        ("v1.4.0", ("reg:5000/team/api:0123456", "reg:5000/team/api:v1.4.0")),
    )


def test_tags_that_name_the_commit_are_told_from_those_that_move_and_renamed_refs_are_said() -> None:
    commit = Commit("0123456789" * 4, (Ref("feature/x"),), frozenset({"services/api/main.py"}), "t")
    p = make_plan(commit, CONFIG, Files.of(DOCKERFILES), build_platform="linux/amd64")
    (api,) = p.affected
    assert (api.tags, api.moving) == (("reg:5000/team/api:0123456", "reg:5000/team/api:feature-x"),
                                      ("reg:5000/team/api:feature-x",))  # fmt: skip
    assert [w for w in p.warnings if "{branch}" in w] == [
        "{branch} of feature/x is 'feature-x', as it is for every ref spelled so (a tag holds only letters, "
        "digits, _ . -): whichever is pushed last moves it"]  # fmt: skip


def test_a_known_ref_tags_every_image_with_its_own_tags_when_pushing() -> None:
    """A tag pushed on a commit the remote has: nothing changed, yet every image gets the tag's
    {branch} tags (the {short_sha} ones are the commit's, pushed before)."""
    commit = Commit("0123456789" * 4, (Ref("v1.4.1", known=True),), frozenset(), "t", ("0123456789" * 4,))
    pushing = dataclasses.replace(CONFIG, push=True)
    p = make_plan(commit, pushing, Files.of(DOCKERFILES), build_platform="linux/amd64")
    assert {x.image.name: x.tags for x in p.affected} == {
        name: (f"reg:5000/team/{name}:v1.4.1",) for name in ("base", "api", "worker", "tool")
    }
    assert p.affected[0].reasons == (
        "v1.4.1 is new to the remote, which has the commit: its tags go on the image from the registry",
    )
    # Without push nothing is published, so there is nothing to tag.
    assert make_plan(commit, CONFIG, Files.of(DOCKERFILES), build_platform="linux/amd64").affected == ()
    # Without {branch} templates a known ref adds no tag either.
    plain = dataclasses.replace(pushing, tags=("{short_sha}",))
    assert make_plan(commit, plain, Files.of(DOCKERFILES), build_platform="linux/amd64").affected == ()


def test_a_known_ref_beside_a_changed_one_adds_its_tags_to_all_and_the_others_to_the_affected() -> None:
    commit = Commit("0123456789" * 4, (Ref("release"), Ref("v2", known=True)),
                    frozenset({"services/api/main.py"}), "t")  # fmt: skip
    pushing = dataclasses.replace(CONFIG, push=True)
    p = make_plan(commit, pushing, Files.of(DOCKERFILES), build_platform="linux/amd64")
    tags = {x.image.name: x.tags for x in p.affected}
    assert tags["api"] == ("reg:5000/team/api:0123456", "reg:5000/team/api:release", "reg:5000/team/api:v2")
    assert tags["worker"] == ("reg:5000/team/worker:v2",)


def files_with_ids(contents: Mapping[str, str]) -> Files:
    """Files whose entries hash their content, as a commit's listing gives them."""
    ids = {path: "100644 " + hashlib.sha1(text.encode()).hexdigest() for path, text in contents.items()}
    return Files(Tree.of(contents), contents.get, ids.get)


def test_input_digests_are_planning_output() -> None:
    commit = Commit("0123456789" * 4, (Ref("main"),), frozenset({"base/Dockerfile"}), "t")
    p = make_plan(commit, CONFIG, files_with_ids(DOCKERFILES), build_platform="linux/amd64", digests=True)
    digests = {x.image.name: x.input_digest for x in p.affected}
    assert set(digests) == {"base", "api", "worker"} and all(len(d) == 64 for d in digests.values())
    changed = files_with_ids({**DOCKERFILES, "base/Dockerfile": "FROM busybox:2\n"})
    again = {x.image.name: x.input_digest for x in
             make_plan(commit, CONFIG, changed, build_platform="linux/amd64", digests=True).affected}  # fmt: skip
    # A new base Dockerfile: a new base digest, folded into its dependants' digests.
    assert all(again[name] != digests[name] for name in digests)
    dry = make_plan(commit, CONFIG, files_with_ids(DOCKERFILES), build_platform="linux/amd64")
    assert [x.input_digest for x in dry.affected] == ["", "", ""]  # a dry run needs none


def test_a_build_arg_that_looks_like_a_secret_is_warned_about() -> None:
    api = dataclasses.replace(
        image("api", "services/api"), build_args=(("NPM_TOKEN", "x"), ("MONKEY_BUSINESS", "y"))
    )
    p = plan({"services/api/main.py"}, with_images(api, image("base", "base")))
    (warning,) = p.warnings
    assert warning.startswith("api: build arg NPM_TOKEN looks like a secret")
    assert 'secrets = ["id=npm_token,env=NPM_TOKEN"]' in warning


def test_onbuild_triggers_of_an_in_repo_base_read_the_dependants_context() -> None:
    """A base image's ONBUILD COPY runs in the build of each image FROM it, in that image's own
    context (tried in the lab: the downstream context's file is what lands in the image)."""
    files = {
        "base/Dockerfile": "FROM busybox\nENV SRC=src\nONBUILD COPY ${SRC}/ /app/\n",
        "services/api/Dockerfile": "FROM reg:5000/team/base:latest\n",
        "services/worker/Dockerfile": "FROM busybox\n",
        "tools/tool/Dockerfile": "FROM reg:5000/other/base\n",
        "services/api/src/main.py": "",
        "services/worker/src/main.py": "",
    }
    found = plan({"services/api/src/main.py", "services/worker/src/main.py"}, files=files)
    assert names(found) == ["api"]
    assert found.affected[0].reasons == (
        "COPY 'src/' (ONBUILD of base image base (base/Dockerfile), line 3) reads: services/api/src/main.py",
    )
    # Changing the trigger itself rebuilds the base, and so what is built on it.
    assert names(plan({"base/Dockerfile"}, files=files)) == ["base", "api"]


def test_a_source_matching_nothing_is_said_for_every_image_a_change_comes_near() -> None:
    """Not only for affected images: a context that can never build is said while it is worked on."""
    files = {**DOCKERFILES, "services/worker/Dockerfile": "FROM busybox\nCOPY missing.txt /\n",
             "services/worker/notes.md": ""}  # fmt: skip
    found = plan({"services/worker/notes.md"}, files=files)
    assert names(found) == []
    assert found.warnings == (
        "worker: COPY 'missing.txt' (line 2) matches no file in the build context (services/worker)",
    )
    assert plan({"docs/index.md"}, files=files).warnings == ()  # nothing near it changed


def test_a_large_context_is_checked_out_only_as_far_as_the_build_reads_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(plan_module, "LARGE_CONTEXT", 3)
    files = {
        "big/Dockerfile": "FROM busybox\nCOPY one.txt /\n",
        **{f"big/f{i}": "" for i in range(6)},
        "big/one.txt": "1",
    }
    config = with_images(Image("big", "big", "big/Dockerfile", ("linux/amd64",)))
    (big,) = plan({"big/one.txt"}, config, files).affected
    assert big.materialized == ("big/Dockerfile", "big/one.txt")
    monkeypatch.setattr(plan_module, "LARGE_CONTEXT", 100)
    (small,) = plan({"big/one.txt"}, config, files).affected
    assert small.materialized == ("big/Dockerfile", "big")


# --- the affected rule on graphs of in-repo bases: chains of any depth, diamonds ---------------

GRAPHS = st.integers(min_value=2, max_value=7).flatmap(
    lambda n: st.tuples(
        st.just(n),
        # image i may build on any image before it, on one (FROM) or on two (FROM and COPY --from)
        st.lists(st.lists(st.integers(0, n - 1), max_size=2), min_size=n, max_size=n),
        st.integers(0, n - 1),
    )
)


@settings(max_examples=300, deadline=None, derandomize=bool(os.environ.get("CI")))
@given(GRAPHS)
def test_a_change_rebuilds_exactly_the_image_and_every_image_built_on_it_after_it(
    graph: tuple[int, list[list[int]], int],
) -> None:
    count, wanted, changed = graph
    bases = [sorted({b for b in wanted[i] if b < i}) for i in range(count)]
    files = {}
    for i in range(count):
        lines = [f"FROM reg:5000/team/i{bases[i][0]}" if bases[i] else "FROM busybox"]
        lines += [f"COPY --from=reg:5000/team/i{b} /x /x{b}" for b in bases[i][1:]]
        files[f"i{i}/Dockerfile"] = "\n".join(lines) + "\nCOPY f /f\n"
        files[f"i{i}/f"] = str(i)
    config = with_images(*(image(f"i{i}", f"i{i}") for i in range(count)))
    dependants = {changed}
    for i in range(count):  # bases come first: one pass finds every dependant, at any depth
        if any(b in dependants for b in bases[i]):
            dependants.add(i)
    found = names(plan({f"i{changed}/f"}, config, files))
    assert set(found) == {f"i{i}" for i in dependants}
    position = {name: at for at, name in enumerate(found)}
    for i in dependants:  # every image after the bases of it that are built
        assert all(position[f"i{b}"] < position[f"i{i}"] for b in bases[i] if b in dependants)


# --- rules the mutation run found unchecked ----------------------------------------------------


def test_the_ignore_file_beside_a_dockerfile_outside_the_context_counts() -> None:
    """`docker/api.Dockerfile.dockerignore` is the build's ignore file, outside its context."""
    config = with_images(Image("api", "services/api", "docker/api.Dockerfile", PLATFORMS))
    files = {
        "docker/api.Dockerfile": "FROM busybox\nCOPY . /app\n",
        "docker/api.Dockerfile.dockerignore": "*.md\n",
    }
    (api,) = plan({"docker/api.Dockerfile.dockerignore"}, config, files).affected
    assert api.reasons == ("ignore file changed: docker/api.Dockerfile.dockerignore",)


def test_a_named_context_directory_is_watched_like_the_context() -> None:
    api = dataclasses.replace(image("api", "services/api"), contexts=(("shared", "libs/shared"),))
    files = {
        "services/api/Dockerfile": "FROM busybox\nCOPY --from=shared . /shared\n",
        "libs/shared/a.py": "",
    }
    (found,) = plan({"libs/shared/a.py"}, with_images(api), files).affected
    assert found.reasons == ("COPY '.' from context 'shared' (line 2) reads: libs/shared/a.py",)


def test_a_context_of_exactly_the_limit_is_checked_out_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    files = {"big/Dockerfile": "FROM busybox\nCOPY one.txt /\n", "big/one.txt": "1", "big/two.txt": "2"}
    monkeypatch.setattr(plan_module, "LARGE_CONTEXT", len(files))
    config = with_images(Image("big", "big", "big/Dockerfile", ("linux/amd64",)))
    (big,) = plan({"big/one.txt"}, config, files).affected
    assert big.materialized == ("big/Dockerfile", "big")


def test_changed_settings_and_a_changed_file_are_both_said() -> None:
    before = with_images(image("api", "services/api"))
    now = with_images(dataclasses.replace(image("api", "services/api"), build_args=(("V", "2"),)))
    commit = Commit(
        "0123456789" * 4, (Ref("main"),), frozenset({"pyproject.toml", "services/api/main.py"}), "t"
    )
    (api,) = make_plan(
        commit, now, Files.of(DOCKERFILES), build_platform="linux/amd64", previous=[before]
    ).affected
    assert api.reasons == ("its [tool.multiarch] settings changed (pyproject.toml)",
                           "COPY '.' (line 3) reads: services/api/main.py")  # fmt: skip


def test_a_definition_file_change_names_only_the_definition_files_the_push_touched() -> None:
    old = dataclasses.replace(image("api", "services/api"), defined_in="compose.yaml")
    new = dataclasses.replace(old, build_args=(("V", "2"),))
    before = dataclasses.replace(with_images(old), definitions=("compose.yaml", ".env"))
    now = dataclasses.replace(with_images(new), definitions=("compose.yaml", ".env"))
    for changed, said in (({".env", "docs/x.md"}, ".env"), ({"compose.yaml", ".env"}, ".env, compose.yaml"),
                          ({"docs/x.md"}, "compose.yaml")):  # fmt: skip
        commit = Commit("0123456789" * 4, (Ref("main"),), frozenset(changed), "t")
        (api,) = make_plan(
            commit, now, Files.of(DOCKERFILES), build_platform="linux/amd64", previous=[before]
        ).affected
        assert api.reasons == (f"its definition in {said} changed",), changed
    fresh = make_plan(
        commit, now, Files.of(DOCKERFILES), build_platform="linux/amd64", previous=[with_images()]
    )
    assert fresh.affected[0].reasons == ("new image in compose.yaml",)


def test_known_refs_are_named_in_the_reason_and_a_detached_one_as_head() -> None:
    commit = Commit("0123456789" * 4, (Ref("v1", known=True), Ref(None, known=True)), frozenset(), "t")
    pushing = dataclasses.replace(CONFIG, push=True)
    p = make_plan(commit, pushing, Files.of(DOCKERFILES), build_platform="linux/amd64")
    assert p.affected[0].reasons == (
        "v1, HEAD is new to the remote, which has the commit: its tags go on the image from the registry",
    )


def test_explaining_an_image_that_does_not_exist_lists_those_that_do() -> None:
    commit = Commit("0123456789" * 4, (Ref("main"),), frozenset(), "t")
    with pytest.raises(FatalError, match=r"^pyproject.toml at abc: no image named 'nope' \(images: api, base, "
                       r"worker, tool\)$"):  # fmt: skip
        make_plan(commit, CONFIG, Files.of(DOCKERFILES), build_platform="linux/amd64", explain=("nope",))
    with pytest.raises(FatalError, match=r"\(images: none\)$"):
        make_plan(commit, with_images(), Files.of({}), build_platform="linux/amd64", explain=("nope",))


def test_a_base_named_by_the_first_of_several_build_args_is_found() -> None:
    api = dataclasses.replace(
        image("api", "services/api"), build_args=(("BASE", "reg:5000/team/base"), ("V", "1"))
    )
    files = {**DOCKERFILES, "services/api/Dockerfile": "ARG BASE\nARG V\nFROM ${BASE}:v${V}\n"}
    p = plan({"base/Dockerfile"}, with_images(api, image("base", "base")), files)
    assert names(p) == ["base", "api"]
    assert p.affected[1].reasons == ("base image base is rebuilt",)


def test_an_image_built_under_its_digest_alone_is_staged_under_that_digest() -> None:
    """The staging tag of a whole image is its input digest, with no platform suffix."""
    from mab_hook import input_digest  # noqa: PLC0415

    commit = Commit("0123456789" * 4, (Ref("main"),), frozenset({"base/Dockerfile"}), "t")
    p = make_plan(commit, CONFIG, files_with_ids(DOCKERFILES), build_platform="linux/amd64", digests=True)
    for planned in (*p.affected, *p.context_only):
        assert planned.one_platform == ""
        assert input_digest.tag(planned.input_digest, planned.one_platform) == f"mab-{planned.input_digest}"
    only = make_plan(Commit("0123456789" * 4, (Ref("main"),), frozenset({"services/api/x"}), "t"), CONFIG,
                     files_with_ids(DOCKERFILES), build_platform="linux/amd64", digests=True)  # fmt: skip
    assert [(c.image.name, len(c.input_digest)) for c in only.context_only] == [("base", 64)]


def test_onbuild_triggers_of_a_base_named_by_a_target_context() -> None:
    """`contexts = {builder = "target:base"}` and `FROM builder`: base's ONBUILD reads api's context."""
    api = dataclasses.replace(image("api", "services/api"), contexts=(("builder", "target:base"),))
    files = {"base/Dockerfile": "FROM busybox\nONBUILD COPY src/ /app/\n", "services/api/Dockerfile": "FROM builder\n",
             "services/api/src/main.py": ""}  # fmt: skip
    found = plan({"services/api/src/main.py"}, with_images(image("base", "base"), api), files)
    assert [p.reasons for p in found.affected] == [
        ("COPY 'src/' (ONBUILD of base image base (base/Dockerfile), line 2) reads: services/api/src/main.py",)]  # fmt: skip


def test_a_base_named_through_a_variable_registry_is_found_by_a_part_of_its_name() -> None:
    """`FROM ${REGISTRY}/team/lib/base`: the words `team/lib/base` and `lib/base` name the image
    lib/base, whose repository is reg:5000/team/lib/base."""
    config = with_images(image("lib/base", "base"), image("api", "services/api"))
    files = {"base/Dockerfile": "FROM busybox\n",
             "services/api/Dockerfile": "ARG REGISTRY=reg:5000\nFROM ${REGISTRY}/team/lib/base\n"}  # fmt: skip
    found = plan({"base/Dockerfile"}, config, files)
    assert names(found) == ["lib/base", "api"]
    assert found.affected[1].bases == (Base("lib/base", "reg:5000/team/lib/base"),)


def test_a_cycle_is_said_whole_with_what_to_do() -> None:
    config = with_images(image("a", "a"), image("b", "b"))
    files = {"a/Dockerfile": "FROM reg:5000/team/b\n", "b/Dockerfile": "FROM reg:5000/team/a:1\n"}
    with pytest.raises(FatalError) as info:
        plan({"a/Dockerfile"}, config, files)
    assert str(info.value) in (
        f"{CONFIG.source}: images are built on each other in a cycle: {cycle}. Change a FROM line to break it."
        for cycle in ("a -> b -> a", "b -> a -> b")
    )


def test_a_base_that_is_built_is_no_context_only_image() -> None:
    found = plan({"base/Dockerfile"})
    assert (names(found), found.context_only) == (["base", "api", "worker"], ())


def test_a_detached_head_publishes_nothing_and_says_so() -> None:
    commit = Commit("0123456789" * 4, (Ref(None),), frozenset({"services/api/main.py"}), "t")
    pushing = dataclasses.replace(CONFIG, push=True)
    p = make_plan(commit, pushing, Files.of(DOCKERFILES), build_platform="linux/amd64")
    assert (p.affected[0].tags_by_ref, p.affected[0].tags) == ((("HEAD", ()),), ())
    assert p.warnings == ("HEAD publishes nothing: a detached HEAD is no branch or tag; "
                          "its images go to staging tags only",)  # fmt: skip


def test_a_renamed_ref_is_said_only_where_a_tag_holds_the_ref() -> None:
    commit = Commit("0123456789" * 4, (Ref("feature/x"),), frozenset({"services/api/main.py"}), "t")
    plain = dataclasses.replace(CONFIG, tags=("{short_sha}", "latest"))
    assert make_plan(commit, plain, Files.of(DOCKERFILES), build_platform="linux/amd64").warnings == ()


def test_a_build_pulls_only_what_is_outside_the_repository_and_a_base_for_its_dependants_platforms_too() -> (
    None
):
    config = with_images(
        dataclasses.replace(image("base", "base"), platforms=("linux/amd64",)),
        dataclasses.replace(image("app", "app"), platforms=("linux/amd64", "linux/arm/v7")),
        dataclasses.replace(image("tool", "tool"), platforms=("linux/arm64",)),
    )
    files = {
        "base/Dockerfile": "FROM busybox:1\n",
        "app/Dockerfile": "FROM reg:5000/team/base\nCOPY --from=reg:5000/other/lib:2 / /\n",
        "tool/Dockerfile": "FROM reg:5000/team/app AS app\nFROM debian\nCOPY --from=app / /\n",
    }
    commit = Commit("0123456789" * 4, (Ref("main"),), frozenset({"base/Dockerfile"}), "test")
    found = make_plan(commit, config, Files.of(files), build_platform="linux/amd64", digests=True)
    pulls = {
        p.image.name: {(x.platform, x.ref) for x in p.pulls} for p in (*found.context_only, *found.affected)
    }
    assert pulls == {
        # built for app's and tool's platforms too, as their named context
        "base": {("linux/amd64", "busybox:1"), ("linux/arm/v7", "busybox:1"), ("linux/arm64", "busybox:1")},
        "app": {("linux/amd64", "reg:5000/other/lib:2"), ("linux/arm/v7", "reg:5000/other/lib:2"),
                ("linux/arm64", "reg:5000/other/lib:2")},
        "tool": {("linux/arm64", "debian")},
    }  # fmt: skip
    roots = {
        p.image.name: {(x.platform, x.ref) for x in p.roots} for p in (*found.context_only, *found.affected)
    }
    assert roots == {
        "base": {("linux/amd64", "busybox:1"), ("linux/arm/v7", "busybox:1"), ("linux/arm64", "busybox:1")},
        # app starts from base, which starts from busybox: its layers are busybox's, then base's, then its own
        "app": {("linux/amd64", "busybox:1"), ("linux/arm/v7", "busybox:1"), ("linux/arm64", "busybox:1")},
        "tool": {("linux/arm64", "debian")},  # its built stage is FROM debian; app is a stage it copies from
    }
    dry = make_plan(commit, config, Files.of(files), build_platform="linux/amd64")
    assert all(p.pulls == () for p in dry.affected)  # a dry run builds nothing: nothing to check


def test_a_base_named_by_what_its_compose_image_or_bake_tags_say_is_the_in_repo_image() -> None:
    """getsentry/self-hosted: `sentry-cleanup` is built FROM ${BASE_IMAGE}, the compose `image:`
    of the sentry services; it is that image of the repository, built first and passed on."""
    sentry = dataclasses.replace(image("web", "sentry"), aliases=("getsentry/sentry:nightly",))
    cleanup = dataclasses.replace(
        image("cleanup", "cleanup"), build_args=(("BASE_IMAGE", "getsentry/sentry:nightly"),)
    )
    other = dataclasses.replace(
        image("other", "other"), aliases=("getsentry/sentry:nightly",)
    )  # the first says
    # `web` is its name here; `named` is built on it by that name, `cleanup` by its compose `image:`.
    named = image("named", "named")
    files = {"sentry/Dockerfile": "FROM python:3\nCOPY . /\n", "other/Dockerfile": "FROM python:3\n",
             "cleanup/Dockerfile": "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY . /\n",
             "named/Dockerfile": "FROM reg:5000/team/web\n"}  # fmt: skip
    found = plan({"sentry/app.py"}, with_images(sentry, cleanup, other, named), files)
    assert names(found) == ["web", "cleanup", "named"]
    (planned,) = [p for p in found.affected if p.image.name == "cleanup"]
    assert planned.bases == (Base("web", "getsentry/sentry:nightly"),)
    assert planned.reasons == ("base image web is rebuilt",)


def test_one_build_under_many_names_is_tagged_under_each_and_named_by_each() -> None:
    """getsentry/self-hosted: one sentry build under web, worker, cron... (`also`): built once,
    every name's repository gets the tags; a FROM of any of its names builds on it."""
    sentry = dataclasses.replace(image("cron", "sentry"), also=("web", "worker"))
    beside = image("beside", "beside")  # FROM one of the other names
    files = {
        "sentry/Dockerfile": "FROM python:3\nCOPY . /\n",
        "beside/Dockerfile": "FROM reg:5000/team/worker\n",
    }
    config = dataclasses.replace(
        with_images(sentry, beside), tags=("{short_sha}", "{branch}"), publish_branches=("*",)
    )
    found = plan({"sentry/app.py"}, config,
                 files)  # fmt: skip
    assert names(found) == ["cron", "beside"]
    cron = found.affected[0]
    assert cron.tags == tuple(f"reg:5000/team/{name}:{tag}" for tag in ("0123456", "main")
                              for name in ("cron", "web", "worker"))  # fmt: skip
    assert cron.moving == tuple(f"reg:5000/team/{name}:main" for name in ("cron", "web", "worker"))
    assert found.affected[1].bases == (Base("cron", "reg:5000/team/worker"),)
    commit = Commit("0123456789" * 4, (Ref("main"),), frozenset(), "test")
    (why,) = make_plan(commit, with_images(sentry, beside), Files.of(files), build_platform="linux/amd64",
                       explain=("web",)).explanations  # fmt: skip
    assert (why.name, why.affected) == ("cron", False)


@pytest.mark.parametrize(("before", "now", "reasons", "removed"), [
    (("cron", "web"), ("cron", "web", "worker"), ("worker: new name of its build in compose.yaml",), ""),
    (("cron", "web"), ("aaa", "cron", "web"), ("aaa: new name of its build in compose.yaml",), ""),
    (("cron",), ("cron", "web", "worker"), ("web, worker: new names of its build in compose.yaml",), ""),
    (("cron", "web", "worker"), ("cron", "web"), (), "worker"),
    (("cron", "web"), ("cron", "web"), (), ""),
    (("cron", "web"), ("web",), (), "cron"),
])  # fmt: skip
def test_a_new_name_of_one_build_publishes_it_there_and_a_name_gone_is_said(
    before: tuple[str, ...], now: tuple[str, ...], reasons: tuple[str, ...], removed: str
) -> None:
    def sentry(names: tuple[str, ...]) -> Image:
        one = dataclasses.replace(image(names[0], "sentry"), also=names[1:], defined_in="compose.yaml")
        return one

    commit = Commit("0123456789" * 4, (Ref("main"),), frozenset({"compose.yaml"}), "test", ("a" * 40,))
    p = make_plan(commit, with_images(sentry(now)), Files.of({"sentry/Dockerfile": "FROM scratch\n"}),
                  build_platform="linux/amd64", previous=[with_images(sentry(before))])  # fmt: skip
    assert tuple(r for x in p.affected for r in x.reasons) == reasons
    assert [w for w in p.warnings if w.startswith("removed")] == (
        [f"removed at this commit: {removed}: nothing is built for them, and what the registry holds of them stays"]
        if removed else []
    )  # fmt: skip


@pytest.mark.parametrize(
    ("changed", "why", "explained"),
    [
        ("real/Dockerfile", "what its Dockerfile or ignore file links to changed: real/Dockerfile", None),
        ("shared/ignore", "what its Dockerfile or ignore file links to changed: shared/ignore", None),
        ("svc/a.txt", "COPY 'a.txt' (line 2) reads: svc/a.txt", None),
        # in the context, read by nothing: the watch makes it count
        ("svc/notes.md", "watch 'svc/*.md' matched: svc/notes.md", "counts: watch 'svc/*.md' matched"),
        ("proto/a.proto", "watch 'proto/**' matched: proto/a.proto", "counts: watch 'proto/**' matched"),
    ],
)
def test_what_a_symlinked_dockerfile_leads_to_and_a_watched_path_are_near_the_image(
    changed: str, why: str, explained: str | None
) -> None:
    """One notion of "near" for the prefilter, the reasons and --explain: a change where the
    image's Dockerfile or ignore file leads through a symlink makes it affected, and so does a
    watched path its build does not read."""
    from tests.test_inputs import symlinked  # noqa: PLC0415 - its symlinked Files

    files = symlinked(
        {
            "real/Dockerfile": "FROM busybox\nCOPY a.txt /\n",
            "shared/ignore": "*.log\n",
            "svc/a.txt": "",
            "svc/notes.md": "",
            "proto/a.proto": "",
        },
        {"svc/Dockerfile": "../real/Dockerfile", "svc/.dockerignore": "../shared/ignore"},
    )
    image = Image("svc", "svc", "svc/Dockerfile", ("linux/amd64",), watch=("svc/*.md", "proto/**"))
    config = dataclasses.replace(CONFIG, images=(image,))
    commit = Commit("0123456789" * 4, (Ref("main"),), frozenset({changed}), "t")
    found = make_plan(commit, config, files, build_platform="linux/amd64", explain=("svc",))
    assert [(p.image.name, p.reasons) for p in found.affected] == [("svc", (why,))]
    [explanation] = found.explanations
    assert explanation.paths == ((changed, explained or f"counts: {why}"),)


def test_where_a_dockerfiles_own_ignore_file_leads_is_near_the_image() -> None:
    """`<Dockerfile>.dockerignore` wins over the context's .dockerignore: a change where it leads
    through a symlink makes the image affected, and one to the context's no longer does."""
    from tests.test_inputs import symlinked  # noqa: PLC0415 - its symlinked Files

    files = symlinked(
        {"svc/Dockerfile": "FROM busybox\nCOPY a.txt /\n", "svc/a.txt": "", "shared/own": "*.tmp\n",
         "svc/.dockerignore": "*.log\n"},
        {"svc/Dockerfile.dockerignore": "../shared/own"},
    )  # fmt: skip
    config = dataclasses.replace(CONFIG, images=(Image("svc", "svc", "svc/Dockerfile", ("linux/amd64",)),))
    reasons = {}
    for changed in ("shared/own", "svc/.dockerignore"):
        commit = Commit("0123456789" * 4, (Ref("main"),), frozenset({changed}), "t")
        plan = make_plan(commit, config, files, build_platform="linux/amd64")
        reasons[changed] = [p.reasons for p in plan.affected]
    assert reasons == {
        "shared/own": [("what its Dockerfile or ignore file links to changed: shared/own",)],
        "svc/.dockerignore": [],
    }


def test_a_from_of_any_name_of_one_build_builds_on_it() -> None:
    """Every name of a build counts as a base a Dockerfile names, not only the last."""
    sentry = dataclasses.replace(image("cron", "sentry"), also=("web", "worker"))
    first, middle = image("first", "first"), image("middle", "middle")
    files = {
        "sentry/Dockerfile": "FROM python:3\nCOPY . /\n",
        "first/Dockerfile": "FROM reg:5000/team/cron\n",
        "middle/Dockerfile": "FROM reg:5000/team/web\n",
    }
    assert names(plan({"sentry/app.py"}, with_images(sentry, first, middle), files)) == [
        "cron",
        "first",
        "middle",
    ]


def test_an_image_is_compared_with_the_build_of_its_own_name_before_one_sharing_another_name() -> None:
    """Two builds become one (b takes c's name too): b is compared with what b was, not with c."""
    commit = Commit("0123456789" * 4, (Ref("main"),), frozenset({"compose.yaml"}), "test", ("a" * 40,))
    c, b = image("c", "sentry"), image("b", "other")
    now = dataclasses.replace(image("b", "sentry"), also=("c",), defined_in="compose.yaml")
    files = {"sentry/Dockerfile": "FROM scratch\n", "other/Dockerfile": "FROM scratch\n"}
    found = make_plan(commit, with_images(now), Files.of(files), build_platform="linux/amd64",
                      previous=[with_images(c, b)])  # fmt: skip
    assert [p.reasons for p in found.affected] == [("its definition in compose.yaml changed",)]


DIRECTORIES = st.sampled_from([".", "", "a", "a/b", "a/b/c", "b", "ab", "a.b"])
NAMES = st.sampled_from(["a", "b", "c", "ab", "a.b", "Dockerfile", "Dockerfile.dockerignore", "x.go"])
CHANGED = st.lists(st.lists(NAMES, min_size=1, max_size=4).map("/".join), max_size=6)
WATCHES = ["a/**", "**/*.go", "b/*", "x.go", "a/b/**", "a/*/c", "./ab/*", "a/b/c/x.go", "a.b/**"]


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    context=DIRECTORIES,
    dockerfile=st.lists(NAMES, min_size=1, max_size=3).map("/".join),
    named=st.lists(DIRECTORIES, max_size=2),
    watches=st.lists(st.sampled_from(["a/**", "**/*.go", "b/*", "x.go"]), max_size=2),
    links=st.lists(st.lists(NAMES, min_size=1, max_size=2).map("/".join), max_size=2),
    changed=CHANGED,
)
def test_the_prefilter_finds_near_exactly_what_paths_near_does(
    *,
    context: str,
    dockerfile: str,
    named: list[str],
    watches: list[str],
    links: list[str],
    changed: list[str],
) -> None:
    image = Image("i", context, dockerfile, ("linux/amd64",), watch=tuple(watches),
                  contexts=tuple((f"n{i}", d) for i, d in enumerate(named)))  # fmt: skip
    paths = sorted(set(changed))
    near = any(paths_near(image, paths, frozenset(paths), links=links))
    assert Changed.of(paths).near(image, paths, links=links) == near


IMAGES = st.lists(
    st.tuples(
        DIRECTORIES,
        st.lists(NAMES, min_size=1, max_size=3).map("/".join),
        st.lists(DIRECTORIES, max_size=2),
        # globs asked only below their literal directory: none, one, two deep, the whole path
        st.lists(st.sampled_from(WATCHES), max_size=2),
    ),
    min_size=1,
    max_size=5,
)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(specs=IMAGES, changed=CHANGED, ignored=st.booleans())
def test_the_images_near_a_change_are_found_by_its_paths_as_each_image_would_say(
    specs: list[tuple[str, str, list[str], list[str]]], changed: list[str], ignored: bool
) -> None:
    images = tuple(
        Image(f"i{n}", context, dockerfile, ("linux/amd64",), watch=tuple(watches),
              contexts=tuple((f"n{i}", d) for i, d in enumerate(named)))
        for n, (context, dockerfile, named, watches) in enumerate(specs)
    )  # fmt: skip
    paths = sorted({*changed, *([f"{specs[0][1]}.dockerignore"] if ignored else [])})  # the first one's own
    index = Changed.of(paths)
    assert index.images(Config("s", ("linux/amd64",), images), paths) == {
        image.name for image in images if index.near(image, paths)
    }


def test_an_image_one_of_several_bases_had_is_said_removed_though_another_base_is_the_same() -> None:
    """A merge is relative to each base: the same kept configuration at one of them says nothing
    of what the other had."""
    now = with_images(image("api", "api"))
    had_more = with_images(image("api", "api"), image("old", "old"))
    assert plan_module.removed_images(now, [now]) == ()
    assert plan_module.removed_images(now, [now, had_more]) == (
        "removed at this commit: old: nothing is built for them, and what the registry holds of them stays",
    )
