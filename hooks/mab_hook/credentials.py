"""Registry credentials, found where docker keeps them: `config.json` of the docker config
directory (`DOCKER_CONFIG`, else `~/.docker`), its `auths`, and credential helpers
(`credHelpers`, `credsStore`), asked the way docker asks them."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from mab_hook.process import Completed

HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io")
IDENTITY_TOKEN_USER = "<token>"  # how docker marks a helper's identity token

Runner = Callable[..., Completed]


class Credentials(NamedTuple):
    username: str
    secret: str  # a password, or an identity token when username is <token>

    def __repr__(self) -> str:
        return f"Credentials({self.username!r}, '***')"


def config_dir(env: Mapping[str, str]) -> Path:
    if env.get("DOCKER_CONFIG"):
        return Path(env["DOCKER_CONFIG"])
    return Path(env.get("HOME") or Path.home()) / ".docker"


def load_config(env: Mapping[str, str]) -> dict[str, Any]:
    try:
        data = json.loads((config_dir(env) / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def keys_for(server: str) -> tuple[str, ...]:
    """The keys docker files a registry's credentials under."""
    if server in HUB_KEYS:
        return HUB_KEYS
    return (server, f"https://{server}", f"http://{server}", f"https://{server}/v1/", f"https://{server}/v2/")


def has_any(server: str, env: Mapping[str, str]) -> bool:
    """Whether docker is set up to have credentials for `server` (without asking a helper)."""
    data = load_config(env)
    return bool(data.get("credsStore")) or any(
        key in (data.get("auths") or {}) or key in (data.get("credHelpers") or {}) for key in keys_for(server)
    )


def lookup(server: str, env: Mapping[str, str], run: Runner) -> Credentials | None:
    """The credentials docker would use for `server`, or None."""
    data = load_config(env)
    helpers = data.get("credHelpers") or {}
    for key in keys_for(server):
        if key in helpers:
            return _from_helper(str(helpers[key]), key, env, run)
    auths = data.get("auths") or {}
    for key in keys_for(server):
        found = _from_entry(auths.get(key))
        if found is not None:
            return found
    if data.get("credsStore"):
        for key in keys_for(server)[:2]:
            found = _from_helper(str(data["credsStore"]), key, env, run)
            if found is not None:
                return found
    return None


def _from_entry(entry: Any) -> Credentials | None:
    if not isinstance(entry, dict):
        return None
    if entry.get("identitytoken"):
        return Credentials(IDENTITY_TOKEN_USER, str(entry["identitytoken"]))
    if entry.get("auth"):
        try:
            user, _, secret = base64.b64decode(str(entry["auth"])).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return Credentials(user, secret) if user else None
    if entry.get("username"):
        return Credentials(str(entry["username"]), str(entry.get("password", "")))
    return None


def _from_helper(helper: str, server: str, env: Mapping[str, str], run: Runner) -> Credentials | None:
    """`docker-credential-<helper> get`, server on stdin, JSON on stdout (docker's protocol)."""
    answer = run((f"docker-credential-{helper}", "get"), env=env, check=False, timeout=30, input=server)
    if answer.returncode != 0:
        return None
    try:
        data = json.loads(answer.stdout)
    except ValueError:
        return None
    if not isinstance(data, dict) or not data.get("Secret"):
        return None
    return Credentials(str(data.get("Username") or ""), str(data["Secret"]))
