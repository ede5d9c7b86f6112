"""Registry credentials found where docker keeps them, credential helpers asked docker's way."""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path

from mab_hook import credentials, process
from mab_hook.credentials import Credentials


def config(tmp_path: Path, data: dict[str, object]) -> dict[str, str]:
    (tmp_path / "config.json").write_text(json.dumps(data))
    return {"DOCKER_CONFIG": str(tmp_path), "PATH": f"{tmp_path}:{os.environ['PATH']}"}


def helper(tmp_path: Path, name: str, answers: dict[str, dict[str, str]]) -> None:
    """A credential helper speaking docker's protocol: `get`, the server on stdin, JSON out."""
    script = tmp_path / f"docker-credential-{name}"
    script.write_text(f"#!{sys.executable}\nimport json, sys\nanswers = {answers!r}\nserver = sys.stdin.read().strip()\n"
                      "if server not in answers:\n    print('credentials not found in native keychain'); sys.exit(1)\n"
                      "print(json.dumps(answers[server]))\n")  # fmt: skip
    script.chmod(0o755)


def test_auths_by_every_key_docker_files_them_under(tmp_path: Path) -> None:
    auth = base64.b64encode(b"team:pw").decode()
    env = config(
        tmp_path, {"auths": {"https://reg.internal": {"auth": auth}, "other:5000": {"identitytoken": "t"}}}
    )
    assert credentials.lookup("reg.internal", env, process.run) == Credentials("team", "pw")
    assert credentials.lookup("other:5000", env, process.run) == Credentials("<token>", "t")
    assert credentials.lookup("nowhere", env, process.run) is None
    assert credentials.has_any("reg.internal", env) and not credentials.has_any("nowhere", env)


def test_credential_helpers_and_the_store(tmp_path: Path) -> None:
    helper(tmp_path, "team", {"reg.internal": {"ServerURL": "reg.internal", "Username": "u", "Secret": "s"}})
    helper(tmp_path, "store", {"https://index.docker.io/v1/": {"Username": "hub", "Secret": "h"}})
    env = config(tmp_path, {"credHelpers": {"reg.internal": "team"}, "credsStore": "store"})
    assert credentials.lookup("reg.internal", env, process.run) == Credentials("u", "s")
    assert credentials.lookup("docker.io", env, process.run) == Credentials("hub", "h")
    assert credentials.lookup("elsewhere", env, process.run) is None  # the store has none for it


def test_a_missing_helper_or_config_is_no_credentials(tmp_path: Path) -> None:
    env = config(tmp_path, {"credHelpers": {"reg.internal": "gone"}})
    assert credentials.lookup("reg.internal", env, process.run) is None
    assert credentials.lookup("reg.internal", {"HOME": str(tmp_path / "nohome")}, process.run) is None


def test_secrets_are_not_shown_in_reprs() -> None:
    assert "pw" not in repr(Credentials("team", "pw"))
