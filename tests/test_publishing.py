"""Publishing as a team meets it on the lab: real `git push`es through the pre-commit hook, a
real bare remote that refuses what its hooks refuse, the background publisher, the lab's
registry. The same decisions fast, with the in-memory registry: test_publisher.py."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import Hooked, Lab, Repo, engine, free_port, mab, published, start_registry
from tests.tls import Certs

pytestmark = pytest.mark.lab

IMAGES = ("base", "api", "worker")


def remote_hook(hooked: Hooked, name: str, script: str) -> None:
    hook = hooked.repo.remote / "hooks" / name
    hook.write_text("#!/bin/sh\n" + script)
    hook.chmod(0o755)


def public(lab: Lab, hooked: Hooked, name: str) -> set[str]:
    return lab.public_tags(f"{hooked.registry}/{name}")


def test_a_refused_push_moves_no_public_tag_and_the_accepted_one_after_it_publishes(
    hooked: Hooked, lab: Lab
) -> None:
    remote_hook(hooked, "pre-receive", 'echo "main is protected" >&2\nexit 1\n')
    sha = hooked.repo.commit({"services/api/app.txt": "api v2\n"})
    refused = hooked.push("main")
    assert refused.code != 0 and "pre-receive hook declined" in refused.output, refused.output
    assert refused.results() == {"api": "built"}  # the gate passed: git pushed, the remote said no
    assert "publish: not accepted" in refused.output
    assert "origin does not hold refs/heads/main as pushed" in refused.output
    assert not any(public(lab, hooked, name) for name in IMAGES)
    (hooked.repo.remote / "hooks" / "pre-receive").unlink()
    accepted = hooked.push("main")
    assert accepted.code == 0, accepted.output
    assert accepted.results() == {"api": "skipped"}, accepted.output  # uploaded the first time
    assert "publish: published" in accepted.output
    for name in IMAGES:
        assert public(lab, hooked, name) == {sha[:7], "latest"}, name
    status = mab(hooked.repo.path, hooked.env, "status")
    ends = [line.rsplit(": ", 1)[1] for line in status.stdout.splitlines() if not line.startswith(" ")]
    assert ends == ["published", "not accepted"], status.stdout  # newest first


def every_ref(hooked: Hooked) -> None:
    """pre-commit hands its hooks the first ref of a push only: `mab-hook install` has every
    ref of it checked (and published)."""
    installed = mab(hooked.repo.path, hooked.env, "install")
    assert installed.returncode == 0, installed.stdout + installed.stderr


def test_a_partly_accepted_push_publishes_only_the_accepted_refs(hooked: Hooked, lab: Lab) -> None:
    every_ref(hooked)
    config = hooked.repo.path / "pyproject.toml"
    config.write_text(config.read_text().replace('"latest"]', '"{branch}"]'))
    sha = hooked.repo.commit({"services/api/app.txt": "api v2\n"})
    hooked.repo.git("tag", "v2.0.0")
    remote_hook(hooked, "update", 'case "$1" in refs/tags/*) echo "tags are CI\'s" >&2; exit 1;; esac\n')
    pushed = hooked.push("main", "v2.0.0")
    assert "[remote rejected] v2.0.0 -> v2.0.0" in pushed.output, pushed.output
    assert "publish: partly" in pushed.output
    for name in IMAGES:
        assert public(lab, hooked, name) == {sha[:7], "main"}, name


def test_a_feature_branch_leaves_latest_and_the_default_branch_alone(hooked: Hooked, lab: Lab) -> None:
    main = hooked.repo.commit({"services/api/app.txt": "api v2\n"})
    assert hooked.push("main").code == 0
    latest = lab.manifest(f"{hooked.registry}/api:latest")
    hooked.repo.git("checkout", "-q", "-b", "feature/experiment")
    experiment = hooked.repo.commit({"services/api/app.txt": "experiment\n"})
    pushed = hooked.push("feature/experiment")
    assert pushed.code == 0, pushed.output
    assert pushed.results() == {"api": "built"}
    assert "feature/experiment publishes nothing" in pushed.output and "publish:" not in pushed.output
    assert public(lab, hooked, "api") == {main[:7], "latest"}
    assert lab.manifest(f"{hooked.registry}/api:latest") == latest
    assert experiment[:7] not in lab.tags(f"{hooked.registry}/api")


def test_a_release_tag_pushed_with_its_commit_tags_every_image_of_it(hooked: Hooked, lab: Lab) -> None:
    every_ref(hooked)
    config = hooked.repo.path / "pyproject.toml"
    config.write_text(config.read_text().replace('"latest"]', '"latest", "{branch}"]'))
    sha = hooked.repo.commit({"services/api/app.txt": "api v2\n"})
    hooked.repo.git("tag", "-a", "v2.0.0", "-m", "release 2.0.0")
    pushed = hooked.push("main", "v2.0.0")
    assert pushed.code == 0, pushed.output
    assert pushed.results() == {"api": "built"}, pushed.output  # only api changed
    for name in IMAGES:  # but the release is every image of the commit, and latest is main's
        assert public(lab, hooked, name) == {sha[:7], "main", "v2.0.0", "latest"}, name
        assert lab.manifest(f"{hooked.registry}/{name}:v2.0.0") == lab.manifest(
            f"{hooked.registry}/{name}:main"
        )


def test_a_run_by_hand_publishes_nothing_public_unless_asked(hooked: Hooked, lab: Lab) -> None:
    sha = hooked.repo.commit({"services/api/app.txt": "api v2\n"})
    by_hand = mab(hooked.repo.path, hooked.env, "--from", "HEAD^")
    assert by_hand.returncode == 0, by_hand.stdout + by_hand.stderr
    assert (
        "by hand: uploaded under staging tags only; `--publish` also moves the public tags" in by_hand.stderr
    )
    assert not any(public(lab, hooked, name) for name in IMAGES)
    asked = mab(hooked.repo.path, hooked.env, "--from", "HEAD^", "--publish")
    assert asked.returncode == 0, asked.stdout + asked.stderr
    assert public(lab, hooked, "api") == {sha[:7], "latest"}


def test_the_publisher_speaks_on_the_terminal_after_git_returned(hooked: Hooked, lab: Lab) -> None:
    """A real pseudo-terminal: the gate's output, git's, then the publisher's lines, which
    reach the terminal though git and pre-commit have returned (and wait for no pipe of it)."""
    sha = hooked.repo.commit({"services/api/app.txt": "api v2\n"})
    pid, fd = pty.fork()
    if pid == 0:  # the child: git push on the terminal, as a user types it
        os.chdir(hooked.repo.path)
        os.execvpe("git", ["git", "push", "origin", "main"], hooked.env)
    seen, ended, code = b"", None, None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and b"api: published" not in seen:
        if code is None:  # before reading: what is read after git ended came after it
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                ended, code = len(seen), os.waitstatus_to_exitcode(status)
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                seen += os.read(fd, 65536)
            except OSError:  # the terminal closed: everything on it has ended
                break
    os.close(fd)  # the terminal goes away before the publisher is done: it finishes all the same
    text = seen.decode(errors="replace")
    assert code == 0, text
    assert ended is not None and ended <= text.index("api: published"), text  # after git had returned
    assert f"api: published {hooked.registry}/api:{sha[:7]}" in text
    assert "move once origin accepts the push" in text
    assert [record.state for record in published(hooked.repo.path)] == ["published"]
    assert public(lab, hooked, "api") == {sha[:7], "latest"}


def test_a_push_that_builds_nothing_publishes_to_a_plain_http_registry_the_engine_trusts(
    lab: Lab, repo: Repo, certs: tuple[Certs, str], tmp_path: Path
) -> None:
    """A docs-only push of the default branch needs no engine at the gate, so the gate never
    asks which registries the engine speaks plain HTTP to: the publisher asks the engine. The
    registry is on this machine's outward address (not loopback, which Docker always lets speak
    plain HTTP), in the engine's insecure-registries; nothing here speaks TLS."""
    _ca, address = certs
    host = f"{address}:{free_port()}"
    registry = start_registry(tmp_path / "registry", address=host)
    try:
        with engine(lab, slot=2, daemon={"insecure-registries": [host]}) as insecure:
            first = repo.commit({
                "pyproject.toml": f'[tool.multiarch]\nplatforms = ["linux/amd64"]\nregistry = "{host}/team"\n'
                                  'push = true\ntags = ["{short_sha}"]\n[tool.multiarch.images.api]\ncontext = "api"\n',
                "api/Dockerfile": f"FROM {lab.registry}/{lab.busybox}\nRUN echo {uuid.uuid4().hex} > /salt\n",
            })  # fmt: skip
            built = mab(repo.path, insecure.env, "--all")
            assert built.returncode == 0, built.stdout + built.stderr
            repo.git("push", "-q", "--no-verify", "origin", "main")
            docs = repo.commit({"docs/index.md": "how to\n"})
            gate = subprocess.run((sys.executable, "-m", "mab_hook", "origin", str(repo.remote)), cwd=repo.path,
                                  env=insecure.env, input=f"refs/heads/main {docs} refs/heads/main {first}\n",
                                  capture_output=True, text=True, check=False)  # fmt: skip
            assert gate.returncode == 0, gate.stdout + gate.stderr
            assert "no image is affected" in gate.stdout, gate.stdout + gate.stderr
            repo.git("push", "-q", "--no-verify", "origin", "main")
            published = mab(repo.path, insecure.env, "publish", "--pending")
            assert published.returncode == 0, published.stdout + published.stderr
            said = published.stdout + published.stderr
            assert lab.tags(f"{host}/team/api") == {docs[:7]}, said  # the first commit: only staged (--all)
    finally:
        registry.stop()
