"""`mab-hook install`: every ref of a push checked, under pre-commit and without it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mab_hook import install
from tests.conftest import PLATFORMS, Hooked, Lab, Repo, project_files

pytestmark = pytest.mark.lab


def mab_install(repo: Repo, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run((sys.executable, "-m", "mab_hook", "install"), cwd=repo.path, env=env,
                          capture_output=True, text=True, check=False)  # fmt: skip


def test_under_pre_commit_every_ref_of_a_push_is_checked(
    hooked: Hooked, lab: Lab, hook_repo: tuple[Path, str]
) -> None:
    """pre-commit hands its hooks the first ref only; the legacy hook `install` writes gets them
    all. Installed as a pre-commit user would, from pre-commit's own environment of mab-hook."""
    config = hooked.repo.path / ".pre-commit-config.yaml"
    config.write_text(config.read_text() + "  - id: mab-hook-install\n")
    hooked.repo.git("commit", "-qam", "mab-hook-install")
    hooked.repo.git("push", "-q", "--no-verify", "origin", "main")
    installed = subprocess.run((sys.executable, "-m", "pre_commit", "run", "--hook-stage", "manual", "mab-hook-install"),
                               cwd=hooked.repo.path, env=hooked.env, capture_output=True, text=True, check=False)  # fmt: skip
    assert installed.returncode == 0, installed.stdout + installed.stderr
    legacy = hooked.repo.path / ".git" / "hooks" / "pre-push.legacy"
    assert install.MARKER in legacy.read_text() and os.access(legacy, os.X_OK)
    assert "pre-commit" in legacy.read_text()  # pre-commit's environment of mab-hook, not ours
    repo = hooked.repo
    repo.git("checkout", "-q", "-b", "one")
    one = repo.commit({"services/api/app.txt": "one\n"})
    repo.git("checkout", "-q", "-b", "two", "main")
    two = repo.commit(
        {"services/worker/Dockerfile": f"FROM {hooked.registry}/base\nRUN echo two > /worker\n"}
    )
    pushed = hooked.push("one", "two")
    assert pushed.code == 0, pushed.output
    assert lab.platforms(f"{hooked.registry}/api:{one[:7]}") == set(PLATFORMS)
    assert lab.platforms(f"{hooked.registry}/worker:{two[:7]}") == {
        "linux/amd64",
        "linux/arm64",
    }  # the 2nd ref
    assert "every ref of this push was checked by mab-hook's legacy hook" in pushed.output


def test_under_pre_commit_a_failing_second_ref_blocks_the_push(hooked: Hooked, lab: Lab) -> None:
    assert mab_install(hooked.repo, hooked.env).returncode == 0
    repo = hooked.repo
    repo.git("checkout", "-q", "-b", "good")
    repo.commit({"services/api/app.txt": "good\n"})
    repo.git("checkout", "-q", "-b", "bad", "main")
    repo.commit({"services/worker/Dockerfile": f"FROM {hooked.registry}/base\nRUN false\n"})
    pushed = hooked.push("good", "bad")
    assert pushed.code != 0, pushed.output
    assert "worker" in pushed.output and "failed" in pushed.output
    assert hooked.remote_head("good") != repo.git("rev-parse", "good")  # git pushed neither


def test_without_pre_commit_it_is_the_pre_push_hook(repo: Repo, lab: Lab, tmp_path: Path) -> None:
    repo.commit(project_files(lab, lab.namespace()), "init")
    env = {**lab.env, "GIT_CONFIG_GLOBAL": str(tmp_path / "gitconfig")}
    installed = mab_install(repo, env)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    hook = repo.path / ".git" / "hooks" / "pre-push"
    assert install.MARKER in hook.read_text()
    again = mab_install(repo, env)  # idempotent: its own script is replaced
    assert again.returncode == 0
    hook.write_text("#!/bin/sh\necho someone else's\n")
    foreign = mab_install(repo, env)
    assert foreign.returncode == 1
    assert "exists and is not mab-hook's" in foreign.stdout


def test_a_vanished_environment_is_said(tmp_path: Path) -> None:
    """pre-commit's cache cleaned: under pre-commit only a warning (its own hook still checks the
    first ref); as the plain hook, the push stops."""
    for under, code in ((True, 0), (False, 1)):
        script = tmp_path / f"hook-{under}"
        script.write_text(install.script(str(tmp_path / "gone" / "python"), under_pre_commit=under))
        script.chmod(0o755)
        ran = subprocess.run((str(script), "origin", "url"), capture_output=True, text=True, check=False)
        assert ran.returncode == code
        assert "is gone" in ran.stderr and "mab-hook install" in ran.stderr
