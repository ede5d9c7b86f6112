"""What builds may use of the pusher's machine: secrets, SSH agents and keys, the host's network.

Only the pusher grants these, outside the repository, in git config (per repository, `--global`,
or `git -c` for one push):

    git config --add mab-hook.secret id=npm,env=NPM_TOKEN    # or: id=npmrc,src=/home/me/.npmrc
    git config --add mab-hook.ssh default                    # $SSH_AUTH_SOCK's agent; or id=PATH
    git config --add mab-hook.allow network.host
    git config --add mab-hook.engine arm-box                 # builds may run on engine arm-box

Every build of the repository is given what was granted, and nothing else: the `secret` and
`ssh` of a compose or bake file are never used (the resolver never even reads them), so no
commit chooses which of the pusher's variables, files or keys a build receives. A commit can
only ask (`secrets` ids in [tool.multiarch], `network = "host"`, `engines`): a build that asks for
what was not granted is not started, and the message says what to grant.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from mab_hook import process, specs
from mab_hook.errors import FatalError
from mab_hook.images import ENGINE_NAME, Image

KEY = "mab-hook"
ALLOWABLE = ("network.host",)  # buildx's entitlement names
_ID_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


class Grants(NamedTuple):
    """What the pusher gives builds."""

    secrets: Mapping[str, str]  # id -> buildx secret spec, the pusher's
    ssh: Mapping[str, str]  # id -> buildx ssh spec ("default", "github=/home/me/.ssh/id")
    allow: frozenset[str]  # entitlements, e.g. network.host
    # Engines of `engines` builds may run on (docker contexts, buildx builders): where a
    # commit's build steps run, and what they reach there, is the pusher's to choose.
    engines: frozenset[str] = frozenset()


NONE = Grants({}, {}, frozenset())


def read(repository: Path, env: Mapping[str, str]) -> Grants:
    """The grants in git config as git reads it for this repository (all levels, `git -c`)."""
    pattern = rf"^{KEY}\.(secret|ssh|allow|engine)$"
    done = process.run(
        ("git", "-C", str(repository), "config", "--get-regexp", pattern), env=env, check=False, timeout=30
    )
    if done.returncode not in (0, 1):  # 1: none set
        raise FatalError(f"git config cannot be read in {repository}: {done.stderr.strip()[:300]}")
    return parse(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)


def parse(entries: Iterable[Sequence[str]]) -> Grants:
    secrets: dict[str, str] = {}
    ssh: dict[str, str] = {}
    allow: set[str] = set()
    engines: set[str] = set()
    for key, value in entries:
        kind = key.rsplit(".", 1)[-1].lower()
        if kind == "engine":
            if not ENGINE_NAME.fullmatch(value):
                raise FatalError(
                    f"git config {KEY}.engine {value!r}: the name of a docker context or buildx builder"
                )
            engines.add(value)
        elif kind == "secret":
            options = specs.parse(value)
            if not _ID_RE.match(options.get("id", "")):
                example = "id=npm,env=NPM_TOKEN"
                raise FatalError(f"git config {KEY}.secret {value!r}: needs id=NAME, e.g. {example}")
            secrets[options["id"]] = value
        elif kind == "ssh":
            ssh[value.split("=", 1)[0]] = value
        elif value in ALLOWABLE:
            allow.add(value)
        else:
            raise FatalError(f"git config {KEY}.allow {value!r}: allowed: {', '.join(ALLOWABLE)}")
    return Grants(secrets, ssh, frozenset(allow), frozenset(engines))


def missing(image: Image, grants: Grants) -> list[str]:
    """The `git config` commands that would grant what an image asks for and was not granted."""
    wanted = []
    for spec in image.secrets:
        options = specs.parse(spec)
        if options["id"] not in grants.secrets:
            hint = f"id={options['id']},env={options.get('env') or options['id'].upper()}"
            wanted.append(f"git config --add {KEY}.secret {hint}")
    if image.network == "host" and "network.host" not in grants.allow:
        wanted.append(f"git config --add {KEY}.allow network.host")
    return wanted


def check(images: Iterable[Image], grants: Grants) -> None:
    """Refuse, before anything runs, builds that ask for what the pusher did not grant."""
    asked = {image.name: found for image in images if (found := missing(image, grants))}
    if not asked:
        return
    lines = [f"  {name}: {'; '.join(commands)}" for name, commands in sorted(asked.items())]
    raise FatalError(
        "the pushed commit asks builds for what only you can give (a secret, the host's network); "
        "nothing was built. mab-hook gives builds only what you grant outside the repository; to "
        "grant it, run:\n" + "\n".join(lines) + "\n(`git -c mab-hook.secret=... push` grants for one "
        "push), then push again"
    )


def allows_network(image: Image, grants: Grants) -> bool:
    return image.network != "host" or "network.host" in grants.allow


SECRET_WORDS = frozenset(
    {"TOKEN", "PASSWORD", "PASSWD", "PASS", "SECRET", "KEY", "APIKEY", "CREDENTIALS", "PAT"}
)


def secret_looking_args(image: Image) -> tuple[str, ...]:
    """Build args whose names say they are secrets: their values end up in the image's history
    (and in build logs); BuildKit secrets do not."""
    return tuple(
        f"{image.name}: build arg {name} looks like a secret, and build args are kept in the image's "
        f'history: pass it as a BuildKit secret instead (secrets = ["id={name.lower()},env={name}"] in '
        f"[tool.multiarch.images.{image.name}], and RUN --mount=type=secret,id={name.lower()} in the "
        "Dockerfile)"
        for name, _value in image.build_args
        if SECRET_WORDS & set(name.upper().replace("-", "_").split("_"))
    )
