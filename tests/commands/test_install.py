"""`mab-hook install`: every ref of a push checked, under pre-commit and without it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mab_hook import handover
from mab_hook.commands import install
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
    assert handover.MARKER in legacy.read_text() and os.access(legacy, os.X_OK)
    assert "python" not in legacy.read_text()  # no interpreter pinned: pre-commit's mab-hook runs
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
    assert pushed.output.count("  image  ") == 1, pushed.output  # each ref checked once, in one run
    assert "building EVERY image" not in pushed.output
    assert re.search(r"build affected multi-arch images\.+Passed", pushed.output), pushed.output
    assert not list((repo.path / ".git" / "mab-hook").glob(f"{handover.HANDED}*"))  # read, then removed
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
    # pre-commit's own verdict for the hook is the truth: never a Passed after a failure
    assert re.search(r"build affected multi-arch images\.+Failed", pushed.output), pushed.output
    assert "Passed" not in pushed.output
    assert hooked.remote_head("good") != repo.git("rev-parse", "good")  # git pushed neither


def test_without_pre_commit_it_is_the_pre_push_hook(repo: Repo, tmp_path: Path) -> None:
    repo.commit({"pyproject.toml": '[tool.multiarch]\nplatforms = ["linux/amd64"]\n'}, "init")
    env = {**os.environ, "GIT_CONFIG_GLOBAL": str(tmp_path / "gitconfig")}
    installed = mab_install(repo, env)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    hook = repo.path / ".git" / "hooks" / "pre-push"
    assert hook.read_text() == install.script(sys.executable, under_pre_commit=False)
    assert hook.stat().st_mode & 0o777 == 0o755
    assert installed.stdout == f"mab-hook: installed {hook}: every ref of a push is checked\n"
    ran = subprocess.run((str(hook), "--version"), capture_output=True, text=True, check=False)
    assert (ran.returncode, ran.stdout.startswith("mab-hook ")) == (0, True), ran.stderr  # it runs mab-hook
    (repo.path / "sub").mkdir()
    again = subprocess.run((sys.executable, "-m", "mab_hook", "install"), cwd=repo.path / "sub", env=env,
                           capture_output=True, text=True, check=False)  # fmt: skip
    assert again.returncode == 0, again.stderr  # from a subdirectory too; its own script is replaced
    hook.write_bytes(b"#!/bin/sh\necho someone else's \xff\n")  # not even UTF-8
    assert mab_install(repo, env).returncode == 1
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
    assert installed.stdout == (
        f"mab-hook: installed {hooks / 'pre-push.legacy'}: pre-commit runs it first with every ref of a push, "
        "and it hands them to the mab-hook hook of .pre-commit-config.yaml\n"
    )


def test_outside_a_repository_install_says_so(tmp_path: Path) -> None:
    done = subprocess.run((sys.executable, "-m", "mab_hook", "install"), cwd=tmp_path, capture_output=True,
                          text=True, check=False)  # fmt: skip
    assert (done.returncode, done.stderr) == (
        1,
        f"mab-hook: error: {tmp_path} is not inside a git repository\n",
    )


def _handed_to_a_child(cwd: Path, root: Path) -> str:
    """handed_refs as the hook pre-commit runs reads it: in a child of the process that ran the
    script (pre-commit's hook-impl runs both)."""
    program = f"import pathlib; from mab_hook import handover; print(repr(handover.handed_refs(pathlib.Path({str(root)!r}))))"
    return subprocess.run((sys.executable, "-c", program), cwd=cwd, capture_output=True, text=True,
                          check=True).stdout.strip()  # fmt: skip


def test_the_script_under_pre_commit_hands_every_ref_to_the_hook_pre_commit_runs_next(repo: Repo) -> None:
    """No Python in it (nothing pinned: a `rev:` bump changes what runs); git's lines reach the
    next hook of the same pre-commit process once, privately."""
    repo.commit({"a.txt": "a\n"}, "init")
    script = repo.path / ".git" / "hooks" / "pre-push.legacy"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(install.script("/never/used/python", under_pre_commit=True))
    script.chmod(0o755)
    assert "python" not in script.read_text()
    lines = "refs/heads/a 1111 refs/heads/a 0000\nrefs/heads/b 2222 refs/heads/b 0000\n"
    ran = subprocess.run((str(script), "origin", "file:///remote"), cwd=repo.path, input=lines, text=True,
                         capture_output=True, check=False)  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    root = repo.path / ".git" / "mab-hook"
    (handed,) = root.glob(f"{handover.HANDED}*")
    assert handed.name == f"{handover.HANDED}{os.getpid()}" and handed.stat().st_mode & 0o777 == 0o600
    assert _handed_to_a_child(repo.path, root) == repr(handover.Handed("origin", lines))
    assert _handed_to_a_child(repo.path, root) == "None"  # read once: the file is gone


def test_a_hand_over_serves_only_its_own_push(tmp_path: Path) -> None:
    """Another process's hand-over is not this push's; an old one is stale, and removed."""
    other = tmp_path / f"{handover.HANDED}1"
    other.write_text("origin\nurl\nrefs/heads/x 1 refs/heads/x 0\n")
    assert handover.handed_refs(tmp_path) is None and other.exists()  # another push's, still fresh
    old = time.time() - handover.HANDED_AGE - 1
    os.utime(other, (old, old))
    own = tmp_path / f"{handover.HANDED}{os.getppid()}"
    own.write_text("origin\nurl\nrefs/heads/y 2 refs/heads/y 0\n")
    os.utime(own, (old, old))
    assert handover.handed_refs(tmp_path) is None  # too old to be this push's
    assert not other.exists() and not own.exists()
    own.write_text("")
    assert handover.handed_refs(tmp_path) is None  # names no remote
    own.write_bytes(b"origin")  # the remote alone
    assert handover.handed_refs(tmp_path) == handover.Handed("origin", "")
    own.write_bytes(b"origin\nfile:///remote")  # no ref at all, and no newline
    assert handover.handed_refs(tmp_path) == handover.Handed("origin", "")
    own.write_bytes(b"origin\nurl\nrefs/heads/\xff 1 refs/heads/x 0\n")  # bytes git allows
    assert handover.handed_refs(tmp_path) == handover.Handed("origin", "refs/heads/\ufffd 1 refs/heads/x 0\n")
    (tmp_path / "elsewhere").write_text("origin\nurl\nrefs/heads/z 3 refs/heads/z 0\n")
    own.symlink_to(tmp_path / "elsewhere")  # planted in its place: never followed
    assert handover.handed_refs(tmp_path) is None


def test_a_vanished_environment_stops_the_plain_hook_with_what_to_run(tmp_path: Path) -> None:
    """The plain pre-push hook runs mab-hook from where it was installed; that gone, the push stops."""
    script = tmp_path / "hook"
    script.write_text(install.script(str(tmp_path / "gone" / "python"), under_pre_commit=False))
    script.chmod(0o755)
    ran = subprocess.run((str(script), "origin", "url"), capture_output=True, text=True, check=False)
    assert ran.returncode == 1
    assert "is gone" in ran.stderr and "mab-hook install" in ran.stderr


@pytest.mark.lab
def test_lab_skip_under_pre_commit_skips_mab_hook(hooked: Hooked, lab: Lab) -> None:
    """`SKIP=mab-hook git push`: pre-commit skips the hook; the hand-over script only wrote."""
    assert mab_install(hooked.repo, hooked.env).returncode == 0
    hooked.repo.commit({"services/api/Dockerfile": "FROM nowhere.invalid/none:1\nRUN false\n"})  # would fail
    pushed = hooked.push("main", env={"SKIP": "mab-hook"})
    assert pushed.code == 0, pushed.output
    assert re.search(r"build affected multi-arch images\.+Skipped", pushed.output), pushed.output
    assert pushed.results() == {}, pushed.output  # nothing built


def test_install_says_what_it_does_and_takes_what_it_says(tmp_path: Path) -> None:
    helped = subprocess.run((sys.executable, "-m", "mab_hook", "install", "--help"), capture_output=True,
                            text=True, check=False)  # fmt: skip
    assert helped.returncode == 0
    assert helped.stdout.startswith("usage: mab-hook install [-h] [-C DIR] [--color {auto,always,never}]")
    assert install.parse_args([]).color == "auto"  # coloured only on a terminal, unless asked
    assert ("Install mab-hook so that every ref of a push is checked: under pre-commit as "
            ".git/hooks/pre-push.legacy (which pre-commit runs first, with every ref), else as "
            ".git/hooks/pre-push.") in " ".join(helped.stdout.split())  # fmt: skip


def test_hooks_where_git_config_puts_them(repo: Repo, tmp_path: Path) -> None:
    """core.hooksPath: the plain hook goes there, its directories made; pre-commit refuses to
    install beside it, and says so through mab-hook."""
    repo.commit({"a.txt": "a\n"}, "init")
    env = {
        **os.environ,
        "GIT_CONFIG_GLOBAL": str(tmp_path / "gitconfig"),
        "PRE_COMMIT_HOME": str(tmp_path / "pc"),
    }
    repo.git("config", "core.hooksPath", "deep/er/hooks")
    installed = mab_install(repo, env)
    assert installed.returncode == 0, installed.stderr
    assert (repo.path / "deep" / "er" / "hooks" / "pre-push").read_text().startswith("#!/bin/sh\n")
    repo.commit({".pre-commit-config.yaml": "repos: []\n"})
    refused = mab_install(repo, env)
    assert refused.returncode == 1
    assert refused.stderr.startswith("mab-hook: error: `pre-commit install --hook-type pre-push` failed: ")
    assert "core.hooksPath" in refused.stderr
