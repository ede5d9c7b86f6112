"""The pushed commit on disk: only what the builds read, through git's filters, submodules at
their recorded commits, and nothing left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import git as gitpython
import pytest

from mab_hook import checkout
from mab_hook.errors import FatalError
from tests.conftest import Lab, Repo, git, mab


def files_in(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*") if p.is_file() and ".git" not in p.parts}


def test_only_the_paths_the_builds_read_are_checked_out(repo: Repo) -> None:
    sha = repo.commit({"api/app.py": "a", "api/sub/x": "x", "docker/api.Dockerfile": "FROM x\n",
                       "other/big": "b" * 1000, "README.md": "r"})  # fmt: skip
    with checkout.checkout(gitpython.Repo(repo.path), sha, paths=["api", "docker/api.Dockerfile"]) as tree:
        assert files_in(tree) == {"api/app.py", "api/sub/x", "docker/api.Dockerfile"}
    with checkout.checkout(gitpython.Repo(repo.path), sha, paths=["."]) as tree:
        assert "other/big" in files_in(tree)
    assert repo.git("worktree", "list").count("\n") == 0  # removed


def test_checkout_filters_apply_to_a_partial_checkout(repo: Repo) -> None:
    """What LFS does (a smudge filter, chosen by .gitattributes) happens for the paths built too."""
    repo.git("config", "filter.upper.smudge", "tr a-z A-Z")
    repo.git("config", "filter.upper.clean", "cat")
    sha = repo.commit(
        {".gitattributes": "*.txt filter=upper\n", "api/data.txt": "hello\n", "api/raw.bin": "hello\n"}
    )
    with checkout.checkout(gitpython.Repo(repo.path), sha, paths=["api"]) as tree:
        assert (tree / "api" / "data.txt").read_text() == "HELLO\n"
        assert (tree / "api" / "raw.bin").read_text() == "hello\n"


def submodule_repo(tmp_path: Path, content: str) -> Path:
    lib = tmp_path / "lib-src"
    git(tmp_path, "init", "-q", "-b", "main", str(lib))
    (lib / "data.txt").write_text(content)
    git(lib, "add", "-A")
    git(lib, "commit", "-q", "-m", "lib")
    return lib


@pytest.fixture
def allow_local_submodules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Submodules from a local path: what a user who has them configured."""
    config = Path(os.environ["GIT_CONFIG_GLOBAL"])
    config.write_text('[protocol "file"]\n\tallow = always\n')


def test_submodules_the_build_reads_are_there_at_the_recorded_commit(
    repo: Repo, tmp_path: Path, allow_local_submodules: None
) -> None:
    lib = submodule_repo(tmp_path, "v1\n")
    repo.git("submodule", "add", "-q", str(lib), "vendor/lib")
    sha = repo.commit({"app/Dockerfile": "FROM x\n"})
    (lib / "data.txt").write_text("v2, not recorded\n")
    git(lib, "commit", "-qam", "later")
    with checkout.checkout(gitpython.Repo(repo.path), sha, paths=["app", "vendor/lib"],
                           submodules=["vendor/lib"]) as tree:  # fmt: skip
        assert (tree / "vendor" / "lib" / "data.txt").read_text() == "v1\n"
        assert not (tree / "vendor" / "lib" / ".git").exists()  # it named a directory of this machine
    assert repo.git("worktree", "list").count("\n") == 0


def test_a_submodule_that_cannot_be_had_is_a_clear_error(
    repo: Repo, tmp_path: Path, allow_local_submodules: None
) -> None:
    lib = submodule_repo(tmp_path, "v1\n")
    repo.git("submodule", "add", "-q", str(lib), "vendor/lib")
    sha = repo.commit({})
    clone = tmp_path / "fresh"
    git(tmp_path, "clone", "-q", str(repo.path), str(clone))  # no .git/modules of its own
    subprocess.run(("rm", "-rf", str(lib)), check=True)  # and the URL is gone
    with pytest.raises(FatalError, match=r"submodule vendor/lib \(vendor/lib\) could not be checked out"), \
            checkout.checkout(gitpython.Repo(clone), sha, paths=["vendor/lib"], submodules=["vendor/lib"]):  # fmt: skip
        pass
    assert git(clone, "worktree", "list").count("\n") == 0


def test_a_build_sees_no_git_of_this_machine_and_the_worktree_still_goes(repo: Repo) -> None:
    """The worktree's `.git` is a file naming a directory of the pusher's machine: a context of the
    repository's root would carry it into the build (which could use it for nothing)."""
    sha = repo.commit({"Dockerfile": "FROM x\n", "app.py": "a"})
    with checkout.checkout(gitpython.Repo(repo.path), sha, paths=["."]) as tree:
        assert not (tree / ".git").exists()
        assert sorted(p.name for p in tree.iterdir()) == ["Dockerfile", "app.py"]
    assert repo.git("worktree", "list").count("\n") == 0 and not tree.exists()
    with checkout.checkout(gitpython.Repo(repo.path), sha, paths=["app.py"]) as tree:
        assert not (tree / ".git").exists()
    assert repo.git("worktree", "list").count("\n") == 0


def test_a_worktree_left_by_a_killed_run_is_removed_by_the_next(repo: Repo) -> None:
    sha = repo.commit({"a": "1"})
    script = ("import os, sys, git\nfrom mab_hook import checkout\n"
              f"with checkout.checkout(git.Repo({str(repo.path)!r}), {sha!r}):\n    os.kill(os.getpid(), 9)\n")  # fmt: skip
    killed = subprocess.run((sys.executable, "-c", script), check=False)
    assert killed.returncode == -signal.SIGKILL
    listed = repo.git("worktree", "list", "--porcelain")
    assert "locked mab-hook run" in listed
    stale = [line.split(" ", 1)[1] for line in listed.splitlines() if line.startswith("worktree ")][1:]
    assert checkout.remove_stale(gitpython.Repo(repo.path)) == stale
    assert repo.git("worktree", "list").count("\n") == 0
    assert not Path(stale[0]).exists() and not Path(stale[0]).parent.exists()


@pytest.mark.lab
def test_lab_a_build_of_the_repository_root_sees_no_git_file_naming_a_path_here(lab: Lab, repo: Repo) -> None:
    repo.commit({
        "pyproject.toml": f'[tool.multiarch]\nplatforms = ["linux/amd64"]\nregistry = "{lab.namespace(local=True)}"\n'
                          '[tool.multiarch.images.root]\ncontext = "."\n',
        "Dockerfile": f"FROM {lab.busybox}\nRUN --mount=type=bind,target=/src ls -a /src && test ! -e /src/.git "
                      f"&& echo {uuid.uuid4().hex}\n",
    })  # fmt: skip
    run = mab(repo.path, lab.env, "--all", "--color", "never", "-v")
    assert run.returncode == 0, run.stdout + run.stderr
