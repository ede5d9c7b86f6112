"""Which pushed refs move public tags, and which tags (the team's publishing policy)."""

from __future__ import annotations

import dataclasses

import pytest

from mab_hook import policy
from mab_hook.changes import Ref
from mab_hook.images import Config

CONFIG = Config(source="t", platforms=("linux/amd64",), images=(), push=True,
                tags=("{short_sha}", "{branch}", "latest"))  # fmt: skip

MAIN = Ref("main", full="refs/heads/main", default=True)
FEATURE = Ref("feature/x", full="refs/heads/feature/x")
RELEASE = Ref("v1.2.3", full="refs/tags/v1.2.3")


@pytest.mark.parametrize(
    ("ref", "why"),
    [
        (MAIN, ""),
        (FEATURE, "feature/x is not the remote's default branch (publish-branches)"),
        (
            Ref("master", full="refs/heads/master"),
            "master is not the remote's default branch (publish-branches)",
        ),
        (RELEASE, ""),
        (Ref("1.0", full="refs/tags/1.0"), ""),
        (
            Ref("nightly", full="refs/tags/nightly"),
            "tag nightly is not a release tag (publish-tags: v[0-9]*, [0-9]*)",
        ),
        (
            Ref("version-2", full="refs/tags/version-2"),
            "tag version-2 is not a release tag (publish-tags: v[0-9]*, [0-9]*)",
        ),
        # a tag named like the default branch is still a tag
        (Ref("main", full="refs/tags/main"), "tag main is not a release tag (publish-tags: v[0-9]*, [0-9]*)"),
        (Ref(None), "a detached HEAD is no branch or tag"),
    ],
)
def test_by_default_the_default_branch_and_release_tags_publish(ref: Ref, why: str) -> None:
    assert policy.refusal(CONFIG, ref) == why


def test_branches_and_tags_that_publish_are_the_teams_choice() -> None:
    config = dataclasses.replace(CONFIG, publish_branches=("main", "release/*"), publish_tags=("prod-*",))
    assert policy.refusal(config, Ref("release/2.x", full="refs/heads/release/2.x")) == ""
    assert policy.refusal(config, Ref("main", full="refs/heads/main")) == ""  # listed, default or not
    assert "publish-branches: main, release/*" in policy.refusal(config, FEATURE)
    assert policy.refusal(config, Ref("prod-7", full="refs/tags/prod-7")) == ""
    assert "publish-tags: prod-*" in policy.refusal(config, RELEASE)
    none = dataclasses.replace(CONFIG, publish_branches=(), publish_tags=())
    assert policy.refusal(none, MAIN) == "main is not a publishing branch (publish-branches: none)"
    assert policy.refusal(none, RELEASE) == "tag v1.2.3 is not a release tag (publish-tags: none)"


def test_latest_moves_only_with_the_default_branch() -> None:
    assert policy.templates(CONFIG, MAIN) == ("{short_sha}", "{branch}", "latest")
    assert policy.templates(CONFIG, RELEASE) == ("{short_sha}", "{branch}")
    anywhere = dataclasses.replace(CONFIG, publish_branches=("*",))
    assert policy.templates(anywhere, FEATURE) == ("{short_sha}", "{branch}")
    assert policy.templates(anywhere, Ref("main", full="refs/heads/main")) == ("{short_sha}", "{branch}")
    assert policy.templates(CONFIG, FEATURE) == ()  # does not publish: no tag at all


def test_the_plan_says_a_ref_that_publishes_nothing_gets_no_tag() -> None:
    from mab_hook import output  # noqa: PLC0415
    from mab_hook.changes import Commit  # noqa: PLC0415
    from mab_hook.images import Image  # noqa: PLC0415
    from mab_hook.inputs import Files  # noqa: PLC0415
    from mab_hook.plan import make_plan  # noqa: PLC0415

    config = dataclasses.replace(
        CONFIG, registry="reg/team", images=(Image("api", "api", "api/Dockerfile", ("linux/amd64",)),)
    )
    files = Files.of({"api/Dockerfile": "FROM busybox\n"})
    alone = make_plan(Commit("a" * 40, (FEATURE,), None, "t"), config, files, build_platform="linux/amd64")
    assert output.tags_text(alone.affected[0]) == "none: its staging tag only (the ref publishes nothing)"
    both = make_plan(
        Commit("a" * 40, (MAIN, FEATURE), None, "t"), config, files, build_platform="linux/amd64"
    )
    assert output.tags_text(both.affected[0]) == (
        "main: reg/team/api:aaaaaaa, reg/team/api:main, reg/team/api:latest; feature/x: none"
    )
