"""The team's publishing policy: which pushed refs move public tags, and the tags each gives an image.

Modelled on docker/metadata-action: the default branch and release tags publish, every other
branch builds and uploads under staging tags only; `latest` moves only with the default
branch, never with another branch or a tag.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from mab_hook import tags
from mab_hook.changes import Commit, Ref
from mab_hook.images import Config, Image

LATEST = "latest"


def refusal(config: Config, ref: Ref) -> str:
    """Why a push of `ref` moves no public tag; "" when it publishes."""
    name = ref.name
    if name is None:
        return "a detached HEAD is no branch or tag"
    if ref.is_tag:
        if any(fnmatchcase(name, pattern) for pattern in config.publish_tags):
            return ""
        patterns = ", ".join(config.publish_tags) or "none"
        return f"tag {name} is not a release tag (publish-tags: {patterns})"
    if config.publish_branches is None:
        return "" if ref.default else f"{name} is not the remote's default branch (publish-branches)"
    if any(fnmatchcase(name, pattern) for pattern in config.publish_branches):
        return ""
    patterns = ", ".join(config.publish_branches) or "none"
    return f"{name} is not a publishing branch (publish-branches: {patterns})"


def templates(config: Config, ref: Ref) -> tuple[str, ...]:
    """The tag templates a push of `ref` renders: none when it does not publish; `latest`
    only for the default branch."""
    if refusal(config, ref):
        return ()
    return tuple(t for t in config.tags if t != LATEST or (ref.default and not ref.is_tag))


def known_tags(config: Config, commit: Commit) -> tuple[str, ...]:
    """The templates a known ref adds to every image: its own, the `{branch}` ones."""
    return tuple(dict.fromkeys(t for ref in commit.refs if ref.known for t in _known_templates(config, ref)))


def _known_templates(config: Config, ref: Ref) -> tuple[str, ...]:
    return tuple(template for template in templates(config, ref) if "{branch}" in template)


def image_tags(
    config: Config, image: Image, commit: Commit, *, diffed: bool
) -> tuple[tuple[str, ...], tuple[tuple[str, tuple[str, ...]], ...], tuple[str, ...]]:
    """Every tag of the image (each once), the tags each ref gives it, and those of them that
    move from commit to commit (`tags.moves`). A known ref gives only its `{branch}` tags; an
    image that only a known ref reaches (not `diffed`: no change of the push reaches it) gets
    no others."""
    repositories = config.references(image)
    by_ref = []
    moving: dict[str, None] = {}
    for pushed in commit.refs or (Ref(None),):
        if not diffed and not pushed.known:
            continue
        made: dict[str, bool] = {}
        for template in _known_templates(config, pushed) if pushed.known else templates(config, pushed):
            for repository in repositories:
                tag = f"{repository}:{tags.render(template, sha=commit.sha, ref=pushed.name)}"
                made[tag] = made.get(tag, False) or tags.moves(template)
        by_ref.append((pushed.name or "HEAD", tuple(made)))
        moving.update((tag, None) for tag, moves in made.items() if moves)
    every = tuple(dict.fromkeys(tag for _name, rendered in by_ref for tag in rendered))
    return every, tuple(by_ref), tuple(tag for tag in every if tag in moving)


def staging_only(config: Config, commit: Commit) -> tuple[str, ...]:
    """The pushed refs that move no public tag, and why (a feature branch, say)."""
    if not config.push:
        return ()
    return tuple(
        f"{ref.name or 'HEAD'} publishes nothing: {why}; its images go to staging tags only"
        for ref in commit.refs
        if (why := refusal(config, ref))
    )


def renamed_refs(config: Config, commit: Commit) -> tuple[str, ...]:
    """A `{branch}` tag of a ref whose name a tag cannot hold as it is: every ref of the same
    spelling (feature/x, feature-x) makes the same tag, and the later push moves it."""
    if not any("{branch}" in template for template in config.tags):
        return ()
    return tuple(
        f"{{branch}} of {ref.name} is {tags.safe(ref.name)!r}, as it is for every ref spelled so "
        "(a tag holds only letters, digits, _ . -): whichever is pushed last moves it"
        for ref in commit.refs
        if ref.name and tags.safe(ref.name) != ref.name
    )
