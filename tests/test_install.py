"""`mab-hook install`: every ref of a push checked, under pre-commit and without it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mab_hook import install
from tests.conftest import Hooked, Lab, Repo


def mab_install(repo: Repo, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run((sys.executable, "-m", "mab_hook", "install"), cwd=repo.path, env=env,
                          capture_output=True, text=True, check=False)  # fmt: skip


@pytest.mark.lab
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
    assert pushed.results() == {"api": "built", "worker": "built"}, pushed.output  # the 2nd ref's too
    assert "every ref of this push was checked by mab-hook's legacy hook" in pushed.output
    # Feature branches: uploaded under staging tags, nothing public.
    assert "one publishes nothing: one is not the remote's default branch" in pushed.output
    assert one[:7] not in lab.public_tags(f"{hooked.registry}/api")
    assert two[:7] not in lab.public_tags(f"{hooked.registry}/worker")


@pytest.mark.lab
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


def test_without_pre_commit_it_is_the_pre_push_hook(repo: Repo, tmp_path: Path) -> None:
    repo.commit({"pyproject.toml": '[tool.multiarch]\nplatforms = ["linux/amd64"]\n'}, "init")
    env = {**os.environ, "GIT_CONFIG_GLOBAL": str(tmp_path / "gitconfig")}
    installed = mab_install(repo, env)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    hook = repo.path / ".git" / "hooks" / "pre-push"
    assert hook.read_text() == install.script(sys.executable, under_pre_commit=False)
    assert hook.stat().st_mode & 0o777 == 0o755
    assert f"installed {hook}: every ref of a push is checked" in installed.stdout
    again = mab_install(repo, env)  # idempotent: its own script is replaced
    assert again.returncode == 0
    hook.write_text("#!/bin/sh\necho someone else's\n")
    foreign = mab_install(repo, env)
    assert foreign.returncode == 1
    assert (f"{hook} exists and is not mab-hook's: move it away (or merge it into the script `mab-hook install` "
            "writes), then run `mab-hook install` again") in foreign.stderr  # fmt: skip
    assert hook.read_text() == "#!/bin/sh\necho someone else's\n"


def test_under_pre_commit_it_is_the_legacy_hook_pre_commit_runs_first(repo: Repo, tmp_path: Path) -> None:
    repo.commit({".pre-commit-config.yaml": "repos: []\n"}, "init")
    env = {
        **os.environ,
        "GIT_CONFIG_GLOBAL": str(tmp_path / "gitconfig"),
        "PRE_COMMIT_HOME": str(tmp_path / "pc"),
    }
    installed = mab_install(repo, env)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    hooks = repo.path / ".git" / "hooks"
    assert (hooks / "pre-push.legacy").read_text() == install.script(sys.executable, under_pre_commit=True)
    assert "pre-commit" in (hooks / "pre-push").read_text()  # pre-commit's own hook, which runs ours first
    assert "pre-commit runs it first with every ref of a push" in installed.stdout


def test_outside_a_repository_install_says_so(tmp_path: Path) -> None:
    done = subprocess.run((sys.executable, "-m", "mab_hook", "install"), cwd=tmp_path, capture_output=True,
                          text=True, check=False)  # fmt: skip
    assert done.returncode == 1 and f"{tmp_path} is not inside a git repository" in done.stdout + done.stderr


def test_the_note_of_a_checked_push_serves_only_that_push(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the legacy hook checked counts for the hook pre-commit runs next (the same parent
    process, within the hour), for those commits only."""
    install.note_checked(tmp_path, ["a" * 40, "b" * 40], ok=True)
    assert install.checked_already(tmp_path, "a" * 40) and install.checked_already(tmp_path, "b" * 40)
    assert not install.checked_already(tmp_path, "c" * 40)
    monkeypatch.setattr(os, "getppid", lambda: -1)  # another push's hooks
    assert not install.checked_already(tmp_path, "a" * 40)
    monkeypatch.undo()
    later = time.time() + install.NOTE_AGE + 1
    monkeypatch.setattr(time, "time", lambda: later)
    assert not install.checked_already(tmp_path, "a" * 40)
    (tmp_path / install.NOTE).write_text("{damaged")
    assert not install.checked_already(tmp_path, "a" * 40)


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


def test_the_legacy_hook_honours_pre_commits_skip(tmp_path: Path) -> None:
    """`SKIP=mab-hook git push`: pre-commit skips its mab-hook hook, and the legacy hook that
    `mab-hook install` wrote (which pre-commit runs first) skips too."""
    from tests.conftest import mab  # noqa: PLC0415

    env = {**os.environ, install.ALL_REFS: "1"}
    skipped = mab(tmp_path, {**env, "SKIP": "flake8, mab-hook"}, "origin", "file:///remote")
    assert skipped.returncode == 0, skipped.stdout + skipped.stderr
    assert (
        "SKIP=mab-hook: pre-commit skips mab-hook for this push, and so does its legacy hook"
        in skipped.stderr
    )
    other = mab(tmp_path, {**env, "SKIP": "mab-hook-all,flake8"}, "origin", "file:///remote")
    assert other.returncode == 1 and "is not inside a git repository" in other.stdout + other.stderr
    without = mab(
        tmp_path, {**os.environ, "SKIP": "mab-hook"}, "origin", "file:///remote"
    )  # pre-commit's own run
    assert without.returncode == 1  # pre-commit itself does not run a skipped hook; run by hand, it checks


@pytest.mark.lab
def test_lab_skip_under_pre_commit_skips_the_legacy_hook_too(hooked: Hooked, lab: Lab) -> None:
    assert mab_install(hooked.repo, hooked.env).returncode == 0
    hooked.repo.commit({"services/api/Dockerfile": "FROM nowhere.invalid/none:1\nRUN false\n"})  # would fail
    pushed = hooked.push("main", env={"SKIP": "mab-hook"})
    assert pushed.code == 0, pushed.output
    assert (
        "SKIP=mab-hook: pre-commit skips mab-hook for this push, and so does its legacy hook" in pushed.output
    )
    assert pushed.results() == {}, pushed.output  # nothing built
