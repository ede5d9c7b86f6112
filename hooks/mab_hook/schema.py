"""`[tool.multiarch]`'s keys, declared once: the JSON schema of each value, and how the README
shows it (type, default, meaning). Validation allows these keys and no others (`config`); the
README's key table is `markdown()` (tests/test_schema.py holds them equal), and
`multiarch.schema.json`, shipped in the package for editors (taplo, Even Better TOML), is
`json_schema()`. Each value's own checks (platform names, paths inside the repository, tag
templates) stay in `validation`: the schema says what a value is, they say what it may be.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

FILE = Path(__file__).with_name("multiarch.schema.json")
PLATFORM_PATTERN = "^[a-z0-9]+/[a-z0-9_]+(/v[0-9]+)?$"


class Key(NamedTuple):
    name: str
    json: Mapping[str, Any]  # the JSON schema of its value
    shown: str  # the README's type column
    default: str
    meaning: str


STRING: Mapping[str, Any] = {"type": "string"}
STRINGS: Mapping[str, Any] = {"type": "array", "items": STRING}
ONE_OR_MORE: Mapping[str, Any] = {"anyOf": [STRING, STRINGS]}
BOOLEAN: Mapping[str, Any] = {"type": "boolean"}
PLATFORMS: Mapping[str, Any] = {"type": "array", "items": {"type": "string", "pattern": PLATFORM_PATTERN}}
TIMEOUT: Mapping[str, Any] = {"type": "number", "exclusiveMinimum": 0, "maximum": 7 * 24 * 3600}


def _table(keys: Sequence[Key], required: Sequence[str] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {key.name: dict(key.json) for key in keys},
        "additionalProperties": False,
        **({"required": list(required)} if required else {}),
    }


NODE = (
    Key("name", STRING, "string", "`<builder name><index>`", "the node's name in `docker buildx ls`"),
    Key(
        "endpoint", STRING, "string", "required", "a docker context, `ssh://...`, `tcp://...`, a kube context"
    ),
    Key("platforms", PLATFORMS, "list of platforms", "none", "the platforms the node builds natively"),
)
BUILDER_KEYS = (
    Key("name", STRING, "string", "required", "the buildx builder's name"),
    Key(
        "driver",
        {"enum": ["docker-container", "kubernetes", "remote"]},
        "string",
        "`docker-container`",
        "the buildx driver: `docker-container`, `kubernetes` or `remote`",
    ),
    Key(
        "driver-opts",
        {"type": "object", "additionalProperties": {"type": ["string", "integer", "boolean"]}},
        "table of option = value",
        "none",
        "`--driver-opt` of `docker buildx create`",
    ),
    Key(
        "nodes",
        {"type": "array", "items": _table(NODE, ("endpoint",))},
        "list of tables",
        "one node: the engine docker talks to",
        (
            "the builder's nodes (`docker buildx create`, then `--append`), each with the platforms it "
            "builds natively"
        ),
    ),
)


BUILDER: Mapping[str, Any] = _table(BUILDER_KEYS, ("name",))

TOP = (
    Key(
        "platforms",
        PLATFORMS,
        "list of `os/arch[/variant]`",
        "required",
        (
            "Docker's names: `linux/amd64`, `linux/arm64`, `linux/arm/v7`, `linux/arm/v6`, "
            "`linux/386`, `linux/ppc64le`, `linux/s390x`, `linux/riscv64`, ... (`aarch64`, `x86_64`, "
            "`armhf` are rejected with the right name suggested)"
        ),
    ),
    Key(
        "registry",
        STRING,
        "`host[:port][/path]`",
        "none",
        "images are `<registry>/<name>:<tag>`; without it, `<name>:<tag>`",
    ),
    Key(
        "staging",
        STRING,
        "`host[:port][/path]`",
        "`<registry>/mab-staging`",
        (
            "where the gate uploads before anything is public: `<staging>/<name>:mab-<input digest>`,"
            " a repository per image out of sight of the public tags. Keep it on the same registry "
            "(publishing then mounts the layers across instead of copying them), or make it the registry"
            ' itself (`staging = "<registry>"`: uploads wait beside the public tags under their `mab-`'
            " tags, and publishing is a PUT a tag; see Publishing); set it where nested "
            "names are not allowed (Docker Hub: `docker.io/team-staging` is a repository namespace of"
            " its own) or to give staging its own retention or permissions"
        ),
    ),
    Key(
        "builder",
        {"anyOf": [STRING, BUILDER]},
        "string, or a table (below)",
        "current builder",
        (
            "passed to buildx as `--builder`; as a table, it also describes the builder `doctor "
            "--fix` creates when it is missing (see [Builders that outgrow one "
            "machine](#builders-that-outgrow-one-machine))"
        ),
    ),
    Key(
        "engines",
        {
            "type": "object",
            "propertyNames": {"pattern": PLATFORM_PATTERN},
            "additionalProperties": {"type": "string", "minLength": 1},
        },
        "table of platform = engine",
        "`{}`",
        (
            'platforms built on an engine of their own, natively (`"linux/arm64" = "arm-box"`): a '
            "docker context (an arm64 server over ssh or tcp, a Mac) or a buildx builder. Each engine "
            "builds its platforms at the same time as the others; the per-platform uploads are merged "
            "by digest into one image before anything is published (see [Faster foreign "
            "platforms](#faster-foreign-platforms)). A commit only asks: builds run on an engine only once "
            "you grant it (`git config --add mab-hook.engine arm-box`). Not an input: moving a platform "
            "builds nothing"
        ),
    ),
    Key(
        "engine-down",
        {"enum": ["fail", "emulate"]},
        "`fail` or `emulate`",
        "`fail`",
        (
            "when an engine of `engines` is not ready: `fail` blocks the push, naming it; `emulate` "
            "builds its platforms under QEMU on `builder` instead, and says so"
        ),
    ),
    Key(
        "push",
        BOOLEAN,
        "bool",
        "`false`",
        "push every built image, only once all of them built for all platforms",
    ),
    Key(
        "tags",
        STRINGS,
        "list of templates",
        '`["{short_sha}"]`',
        (
            "the public tags of a push that publishes: `{sha}`, `{short_sha}` (7 characters), "
            "`{branch}` (the pushed branch or tag, made tag-safe: `feature/x` becomes `feature-x`), "
            "and `latest`, which only the default branch moves"
        ),
    ),
    Key(
        "publish-branches",
        STRINGS,
        "list of name patterns",
        "the remote's default branch",
        (
            "branches whose pushes move public tags (`main`, `release/*`); every other branch builds "
            "and uploads under staging tags only"
        ),
    ),
    Key(
        "publish-tags",
        STRINGS,
        "list of name patterns",
        '`["v[0-9]*", "[0-9]*"]`',
        "git tags whose pushes move public tags (release tags); `[]` for none",
    ),
    Key(
        "jobs",
        {"type": "integer", "minimum": 1},
        "integer ≥ 1",
        "`2`",
        "images built at once; an image waits for the in-repo bases it builds on",
    ),
    Key(
        "timeout",
        TIMEOUT,
        "seconds, at most a week",
        "none",
        ("an image's build taking longer is stopped and reported as timed out (`--timeout` overrides)"),
    ),
    Key(
        "cache-from",
        ONE_OR_MORE,
        "BuildKit cache spec, or a list",
        "none",
        (
            "passed to buildx; `{name}` becomes the image name. A registry cache on the team registry"
            " lets every machine reuse every other's layers. A `type=local` cache's `src`/`dest` must"
            " be a path inside the repository (e.g. `.git/mab-hook/buildkit-cache/{name}`), resolved "
            "against its work tree: a pushed commit may not make builds read or write elsewhere on "
            "your machine"
        ),
    ),
    Key(
        "cache-to",
        ONE_OR_MORE,
        "BuildKit cache spec, or a list",
        "none",
        (
            "where builds write their cache, as `cache-from` reads it (`{name}` becomes the image "
            "name; a `type=local` cache's `dest` must be inside the repository)"
        ),
    ),
    Key(
        "secrets",
        STRINGS,
        "list of `id=NAME[,env=VAR]`",
        "none",
        (
            "the BuildKit secrets the builds need (`RUN --mount=type=secret,id=NAME`). A commit only "
            "asks: a build gets a secret only as the pusher grants it, outside the repository (`git "
            "config --add mab-hook.secret id=npm,env=NPM_TOKEN`, see "
            "[Security](#security-what-a-pushed-commit-can-and-cannot-do)); a build that asks for one"
            " not granted is not started, and the message gives the command. Never in the image, its "
            "history or mab-hook's logs. A build arg named like a secret (`NPM_TOKEN`, `API_KEY`, "
            "`PASSWORD`...) is warned about in the plan: build args stay in the image's history"
        ),
    ),
    Key(
        "binfmt-image",
        STRING,
        "image with a pinned tag or digest",
        "`tonistiigi/binfmt:qemu-v8.1.5`",
        "the emulator installer `doctor` tells you to run; point it at your mirror",
    ),
    Key(
        "buildkit-image",
        STRING,
        "image with a pinned tag or digest",
        "buildx's (`moby/buildkit:buildx-stable-1`, from Docker Hub)",
        (
            "the BuildKit a `docker-container` builder created by `doctor --fix` (and shown in its "
            "fixes) runs: `--driver-opt image=...`; point it at your mirror's copy. A `builder` "
            "table's own `driver-opts.image` wins"
        ),
    ),
    Key(
        "keep-logs",
        {"type": "integer", "minimum": 1},
        "integer ≥ 1",
        "`50`",
        (
            "pushes whose logs `.git/mab-hook` keeps; older ones, and build records older than 90 "
            "days, are removed at the end of a run (a removed record costs a registry look-up or a "
            "rebuild, never a wrong skip)"
        ),
    ),
    Key(
        "compose",
        ONE_OR_MORE,
        "path, or a list of paths",
        "none",
        "compose files whose services with a `build:` are images (see below)",
    ),
    Key(
        "compose-projects",
        ONE_OR_MORE,
        "glob, or a list of globs",
        "none",
        (
            'compose files that are projects of their own (`"*/compose.yaml"`: one per directory, as '
            "awesome-compose keeps them): each resolved from its own directory with its own `.env`, "
            "its images named `<project>-<service>` as `docker compose build` names them (the "
            "project: the file's `name:`, else its directory's name); Docker's pattern syntax, as "
            "`watch`"
        ),
    ),
    Key(
        "bake",
        ONE_OR_MORE,
        "path, or a list of paths",
        "none",
        "bake files (HCL or JSON) whose default group's targets are images (see below)",
    ),
    Key(
        "bake-targets",
        STRINGS,
        "list of group or target names",
        '`["default"]`',
        (
            "the groups or targets of the bake files (named or found) whose targets are the images, "
            "instead of the `default` group (docker/buildx's own default group writes binaries; its "
            "images are `image-cross`)"
        ),
    ),
)
IMAGE = (
    Key(
        "context",
        STRING,
        "path",
        "required",
        "the build context",
    ),
    Key(
        "dockerfile",
        STRING,
        "path",
        "`<context>/Dockerfile`",
        "may live outside the context",
    ),
    Key(
        "platforms",
        PLATFORMS,
        "list",
        "`platforms`",
        "this image's platforms, instead of the global list",
    ),
    Key(
        "target",
        STRING,
        "string",
        "last stage",
        "the Dockerfile stage to build",
    ),
    Key(
        "build-args",
        {"type": "object", "additionalProperties": {"type": ["string", "number"]}},
        "table of strings/numbers",
        "none",
        "also used to expand `ARG`s in `FROM` lines",
    ),
    Key(
        "watch",
        STRINGS,
        "list of globs",
        "none",
        "Docker's pattern syntax (`*`, `?`, `[...]`, `**`), from the repository root",
    ),
    Key(
        "contexts",
        {"type": "object", "additionalProperties": STRING},
        "table of name = path",
        "none",
        (
            "named build contexts: a repository directory, an `oci-layout://PATH[:tag]` of the "
            "repository (a change under it makes the image affected), or a buildx source passed as is"
            " (`docker-image://...`, `https://...`)"
        ),
    ),
    Key(
        "timeout",
        TIMEOUT,
        "as `timeout` above",
        "the global `timeout`",
        "for this image",
    ),
    Key(
        "cache-from",
        ONE_OR_MORE,
        "as `cache-from` above",
        "the global `cache-from`",
        "for this image",
    ),
    Key(
        "cache-to",
        ONE_OR_MORE,
        "as `cache-to` above",
        "the global `cache-to`",
        "for this image",
    ),
    Key(
        "secrets",
        STRINGS,
        "as `secrets` above",
        "the global `secrets`",
        "for this image",
    ),
    Key(
        "foreign-binaries",
        STRINGS,
        "list of globs",
        "none",
        (
            "paths in the image (Docker's pattern syntax; a pattern that names a directory covers "
            "what is under it) of programs for another CPU that the image carries on purpose (an "
            "emulator, a cross toolchain): [the check of what was "
            "built](#what-was-built-is-what-it-claims) lets them be. Not an input: changing it builds"
            " nothing"
        ),
    ),
)
IMAGES = "images"  # a table of image tables, by name


def names(keys: Sequence[Key]) -> tuple[str, ...]:
    return tuple(key.name for key in keys)


def json_schema() -> dict[str, Any]:
    """The JSON schema of the `[tool.multiarch]` table."""
    found = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": "https://mab-hook.invalid/multiarch.schema.json",
        "title": "[tool.multiarch] of mab-hook",
        **_table(TOP),
    }
    found["properties"][IMAGES] = {"type": "object", "additionalProperties": _table(IMAGE, ("context",))}
    return found


def markdown() -> str:
    """The README's key table."""
    rows = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    for prefix, keys in (
        ("", TOP),
        ("images.NAME.", IMAGE),
        ("builder.", BUILDER_KEYS),
        ("builder.nodes[].", NODE),
    ):
        rows += [f"| `{prefix}{k.name}` | {k.shown} | {k.default} | {k.meaning} |" for k in keys]
    return "\n".join(rows) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """After a change to the keys above: `python -m mab_hook.schema` writes multiarch.schema.json
    again; with `--markdown`, it prints the README's table instead."""
    if list(argv if argv is not None else sys.argv[1:]) == ["--markdown"]:
        sys.stdout.write(markdown())
        return 0
    FILE.write_text(json.dumps(json_schema(), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
