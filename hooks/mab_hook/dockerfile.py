"""Reading Dockerfiles the way BuildKit does, behind a small interface of our own.

Parsing and variable expansion come from e2b-dockerfile-utils, a port of BuildKit's parser and
shell lexer: heredocs, escape directives and `${VAR:-default}` forms behave as in a real build.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from e2b_dockerfile_utils import DockerfileSyntaxError, ShellLex, parse_dockerfile_ast

from mab_hook.errors import FatalError


class Stage(NamedTuple):
    name: str | None  # the `AS name`, lowercased as BuildKit does
    base: str  # the FROM reference, with ARGs expanded


def stages(text: str, build_args: Mapping[str, str], *, source: str) -> tuple[Stage, ...]:
    """The build stages of a Dockerfile, in order."""
    try:
        ast = parse_dockerfile_ast(text)
    except DockerfileSyntaxError as e:
        raise FatalError(f"{source}: cannot parse Dockerfile: {e}") from None
    global_args: dict[str, str] = {}
    found: list[Stage] = []
    for instruction in ast.instructions:
        name = instruction.name.lower()
        if name == "arg" and not found:
            # Only ARGs before the first FROM are in scope for FROM lines.
            lex = ShellLex(ast.escape_token, env=global_args)
            for word in instruction.args:
                key, has_default, default = word.partition("=")
                if key in build_args:
                    global_args[key] = build_args[key]
                elif has_default:
                    global_args[key] = lex.process_word(default)
        elif name == "from":
            lex = ShellLex(ast.escape_token, env=global_args, skip_unset_env=False)
            args = instruction.args
            base = lex.process_word(args[0]) if args else ""
            alias = args[2].lower() if len(args) >= 3 and args[1].lower() == "as" else None
            found.append(Stage(alias, base))
    if not found:
        raise FatalError(f"{source}: no FROM instruction")
    return tuple(found)


def external_bases(found: tuple[Stage, ...]) -> tuple[str, ...]:
    """FROM references that are images rather than earlier stages or `scratch`."""
    seen: set[str] = set()
    bases: list[str] = []
    for stage in found:
        if stage.base.lower() not in seen and stage.base != "scratch" and stage.base not in bases:
            bases.append(stage.base)
        if stage.name:
            seen.add(stage.name)
    return tuple(bases)


def split_reference(ref: str) -> tuple[str, str | None]:
    """'host:5000/team/api:1.2@sha256:..' -> ('host:5000/team/api', '1.2')."""
    name = ref.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1 :]
    return name, None


def context_key(ref: str) -> str:
    """The key buildx looks a named context up by: the reference normalized as written.

    ":latest" and the "docker.io/library/" prefix are dropped; with them, the key is ignored
    and the build goes to the registry instead.
    """
    name, tag = split_reference(ref)
    for prefix in ("docker.io/library/", "docker.io/"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    return name if tag in (None, "latest") else f"{name}:{tag}"
