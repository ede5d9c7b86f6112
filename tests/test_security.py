"""Hostile commits pushed through the real gate on the lab: nothing of the pusher's machine (files,
keys, environment) reaches a build, an image or the output (the corpus is tests/hostile.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import hostile
from tests.conftest import Lab, Repo, mab

pytestmark = pytest.mark.lab


@pytest.fixture
def host_dir(tmp_path: Path) -> Path:
    """A directory of the pusher's: keys and secrets no build may read."""
    found = tmp_path / "host"
    found.mkdir()
    (found / "id_ed25519").write_text("-----BEGIN OPENSSH PRIVATE KEY----- host key\n")
    (found / ".env").write_text("AWS_SECRET_ACCESS_KEY=host-secret\n")
    return found


@pytest.mark.parametrize("via", ["table", "bake"])
def test_a_templated_directory_name_is_a_directory_of_the_commit(
    repo: Repo, lab: Lab, host_dir: Path, via: str
) -> None:
    registry = lab.namespace()
    repo.commit(hostile.templated_context(registry, lab.busybox, host_dir, via=via))
    pushed = mab(repo.path, lab.env, "--all")
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    sha = repo.head()
    listed = lab.docker("run", "--rm", f"{registry}/evil:{sha[:7]}", "ls", "-a", "/ctx")
    assert set(listed.stdout.split()) == {".", "..", "Dockerfile", "marker.txt"}
    history = lab.docker("image", "inspect", f"{registry}/evil:{sha[:7]}", "--format", "{{json .Config.Env}}")
    assert "host-secret" not in history.stdout
    # `--dry-run --bake` prints the same names as data for `docker buildx bake -f -`.
    exported = mab(repo.path, lab.env, "--all", "--dry-run", "--bake")
    assert exported.returncode == 0, exported.stderr
    assert "$${replace(" in exported.stdout and '"${replace(' not in exported.stdout
