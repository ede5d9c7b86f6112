"""The team's publishing policy: which pushed refs move public tags, and which tags.

Modelled on docker/metadata-action: the default branch and release tags publish, every other
branch builds and uploads under staging tags only; `latest` moves only with the default
branch, never with another branch or a tag.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from mab_hook.changes import Ref
from mab_hook.images import Config

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
