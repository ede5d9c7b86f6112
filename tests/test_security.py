"""Hostile commits pushed through the real gate on the lab: nothing of the pusher's machine (files,
keys, environment) reaches a build, an image or the output (the corpus is tests/hostile.py)."""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
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
    pushed = mab(repo.path, lab.env, "--all", "--publish")
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


def test_a_commit_gets_no_key_secret_or_network_the_pusher_did_not_grant(
    repo: Repo, lab: Lab, host_dir: Path
) -> None:
    registry = lab.namespace()
    repo.commit(hostile.asks_for_host_keys(registry, lab.busybox, host_dir, uuid.uuid4().hex))
    refused = mab(repo.path, lab.env, "--all", "--publish")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "  evil: git config --add mab-hook.secret id=s,env=AWS_SECRET_ACCESS_KEY" in refused.stderr
    assert "id_ed25519" not in refused.stdout  # the resolver never read the key the commit named
    assert lab.tags(f"{registry}/evil") == set()
    # Granted for one push (`git -c`), from the pusher's own sources, never the files the commit named.
    key = host_dir / "granted_key"
    subprocess.run(("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)), check=True)
    env = {**lab.env, "GRANTED": "the pusher's own", "GIT_CONFIG_COUNT": "3",
           "GIT_CONFIG_KEY_0": "mab-hook.secret", "GIT_CONFIG_VALUE_0": "id=s,env=GRANTED",
           "GIT_CONFIG_KEY_1": "mab-hook.ssh", "GIT_CONFIG_VALUE_1": f"k={key}",
           "GIT_CONFIG_KEY_2": "mab-hook.allow", "GIT_CONFIG_VALUE_2": "network.host"}  # fmt: skip
    granted = mab(repo.path, env, "--all", "--publish")
    assert granted.returncode == 0, granted.stdout + granted.stderr
    image = f"{registry}/evil:{repo.head()[:7]}"
    assert lab.docker("run", "--rm", image, "cat", "/got").stdout == "the pusher's own"
    assert (
        lab.docker("run", "--rm", image, "cat", "/agent").stdout == "/run/buildkit/ssh_agent.0\n"
    )  # granted


def test_a_committed_symlink_takes_no_cache_out_of_the_repository(
    repo: Repo, lab: Lab, host_dir: Path
) -> None:
    repo.write(hostile.cache_through_symlink(lab.namespace(), lab.busybox))
    (repo.path / ".buildx-cache").symlink_to(host_dir)
    repo.commit({})
    before = sorted(p.name for p in host_dir.rglob("*"))
    refused = mab(repo.path, lab.env, "--all", "--publish")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert (
        "image evil: its cache src= '.buildx-cache/evil' leads out of the repository through a symlink"
        in refused.stderr
    )
    assert sorted(p.name for p in host_dir.rglob("*")) == before  # no blob written there
    assert "host-secret" not in refused.stdout


def test_a_planted_staging_tag_is_not_trusted(repo: Repo, lab: Lab) -> None:
    """Anyone who can push to the registry can put other content under the next commit's
    `mab-<input digest>` tag: the gate checks the labels of what it finds there before skipping
    a build, and builds (and uploads over it) when they do not say these inputs and a commit of
    this repository."""
    registry = lab.namespace()
    repo.commit({
        "pyproject.toml": f'[tool.multiarch]\nplatforms = ["linux/amd64", "linux/arm64"]\nregistry = "{registry}"\npush = true\n'
                          '[tool.multiarch.images.web]\ncontext = "web"\n',
        "web/Dockerfile": f"FROM {lab.busybox}\nCOPY page.txt /\n", "web/page.txt": "ours\n",
    })  # fmt: skip
    first = mab(repo.path, lab.env, "--all", "--publish")
    assert first.returncode == 0, first.stdout + first.stderr
    (staging,) = lab.tags(f"{registry}/mab-staging/web")
    digest = staging.removeprefix("mab-")
    salt = uuid.uuid4().hex
    for labels in (
        (),
        (
            "--label",
            f"dev.mab-hook.input-digest={digest}",
            "--label",
            f"org.opencontainers.image.revision={'f' * 40}",
        ),
    ):
        planted = lab.build(f"{registry}/mab-staging/web:{staging}", f"FROM {lab.busybox}\nRUN echo {salt} > /planted\n",
                            *labels, platforms="linux/amd64,linux/arm64")  # fmt: skip
        assert planted.returncode == 0, planted.stderr
        again = mab(repo.path, lab.env, "--all", "--publish")
        assert again.returncode == 0, again.stdout + again.stderr
        assert (
            f"web: {registry}/mab-staging/web:{staging} is in the registry, but an image under it"
            in again.stderr
        )
        assert "not trusted; building it again, to upload over it" in again.stderr
        public = f"{registry}/web:{repo.head()[:7]}"
        assert lab.docker("run", "--rm", public, "cat", "/page.txt").stdout == "ours\n"
        assert lab.docker("run", "--rm", public, "ls", "/planted", check=False).returncode != 0
    verified = mab(repo.path, lab.env, "verify", "--all")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"2 image(s) labelled with these inputs, built from {repo.head()[:12]}" in verified.stdout


class Proxy:
    """A socket in front of one of the lab's (a unix socket: the engine; TCP: the registry),
    passing bytes both ways. `alive = False`: it accepts and closes, its socket still there (an
    engine that died behind the same socket); `slow`: seconds to hold a request by its first
    line, before passing it on."""

    def __init__(self, server: socket.socket, connect: Callable[[], socket.socket],
                 slow: Callable[[bytes], float] = lambda line: 0.0) -> None:  # fmt: skip
        self.server, self.connect, self.slow, self.alive = server, connect, slow, True
        self.server.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    @classmethod
    def unix(cls, listen: Path, target: str) -> Proxy:
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(listen))

        def connect() -> socket.socket:
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(target)
            return upstream

        return cls(server, connect)

    @classmethod
    def tcp(cls, target: tuple[str, int], slow: Callable[[bytes], float]) -> Proxy:
        return cls(socket.create_server(("127.0.0.1", 0)), lambda: socket.create_connection(target), slow)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.getsockname()[1]}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if not self.alive:
                client.close()
                continue
            upstream = self.connect()
            threading.Thread(target=self._pump, args=(client, upstream, self.slow), daemon=True).start()
            threading.Thread(
                target=self._pump, args=(upstream, client, lambda line: 0.0), daemon=True
            ).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, slow: Callable[[bytes], float]) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                time.sleep(slow(data.split(b"\r\n", 1)[0]))
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def test_an_engine_that_dies_after_a_remembered_ready_is_reported_by_readiness(
    repo: Repo, lab: Lab, tmp_path: Path
) -> None:
    forwarder = Proxy.unix(tmp_path / "engine.sock", lab.env["DOCKER_HOST"].removeprefix("unix://"))
    env = {**lab.env, "DOCKER_HOST": f"unix://{tmp_path / 'engine.sock'}"}
    registry = lab.namespace()
    repo.commit({"pyproject.toml": f'[tool.multiarch]\nplatforms = ["linux/amd64"]\nregistry = "{registry}"\n'
                                   '[tool.multiarch.images.one]\ncontext = "one"\n',
                 "one/Dockerfile": f"FROM {lab.busybox}\nRUN echo {uuid.uuid4().hex}\n"})  # fmt: skip
    first = mab(repo.path, env, "--all", "--publish")
    assert first.returncode == 0, first.stdout + first.stderr
    # A second build, once buildx has written its files for the new engine: ready, remembered.
    repo.commit({"one/Dockerfile": f"FROM {lab.busybox}\nRUN echo {uuid.uuid4().hex}\n"})
    second = mab(repo.path, env, "--publish", "--from", "HEAD^")
    assert second.returncode == 0, second.stdout + second.stderr
    assert (repo.path / ".git/mab-hook/cache/ready.json").exists()
    forwarder.alive = False
    repo.commit({"one/Dockerfile": f"FROM {lab.busybox}\nRUN echo {uuid.uuid4().hex}\n"})
    dead = mab(repo.path, env, "--publish", "--from", "HEAD^")
    out = dead.stdout + dead.stderr
    assert dead.returncode == 1, out
    assert "one: failed" in out and "buildx failed before building anything" in out
    assert "stopped: another image of the push failed" not in out
    assert "this host cannot build what the push needs; the builds above failed for it" in out
    assert not (repo.path / ".git/mab-hook/cache/ready.json").exists()


def test_a_large_context_builds_from_only_what_its_build_reads(
    repo: Repo, lab: Lab, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mab_hook import cli  # noqa: PLC0415
    from mab_hook import plan as plan_module  # noqa: PLC0415

    monkeypatch.setattr(plan_module, "LARGE_CONTEXT", 5)
    registry = lab.namespace()
    repo.commit({
        "pyproject.toml": f'[tool.multiarch]\nplatforms = ["linux/amd64"]\nregistry = "{registry}"\npush = true\n'
                          '[tool.multiarch.images.big]\ncontext = "big"\n',
        "big/Dockerfile": f"FROM {lab.busybox}\nCOPY one.txt *.cfg /in/\n", "big/.dockerignore": "b.cfg\n",
        "big/one.txt": "1\n", "big/a.cfg": "a\n", "big/b.cfg": "b\n",
        **{f"big/data/f{i}": f"{i}\n" for i in range(20)},
    })  # fmt: skip
    for key, value in lab.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(repo.path)
    assert cli.main(["--all", "--publish"]) == 0
    assert "big: big is large: only what the build reads is checked out" in capsys.readouterr().err
    listed = lab.docker("run", "--rm", f"{registry}/big:{repo.head()[:7]}", "ls", "/in")
    assert listed.stdout.split() == ["a.cfg", "one.txt"]


def public_tag_put(line: bytes) -> float:
    """A second over each request putting a public tag (a manifest PUT not under a `mab-` tag):
    time to press ^C during the tag step."""
    putting = line.startswith(b"PUT /v2/") and b"/manifests/" in line and b"/manifests/mab-" not in line
    return 1.0 if putting else 0.0


def test_ctrl_c_during_the_tag_step_stops_it_and_the_report_is_the_registrys(repo: Repo, lab: Lab) -> None:
    host, _, port = lab.registry.partition(":")
    proxy = Proxy.tcp((host, int(port)), public_tag_put)
    registry = f"{proxy.address}/t{uuid.uuid4().hex[:10]}"
    names = ("a", "b", "c")
    repo.commit({
        "pyproject.toml": f'[tool.multiarch]\nplatforms = ["linux/amd64"]\nregistry = "{registry}"\npush = true\n'
                          'tags = ["{short_sha}", "latest"]\n'
                          + "".join(f'[tool.multiarch.images.{n}]\ncontext = "{n}"\n' for n in names),
        **{f"{n}/Dockerfile": f"FROM {lab.busybox}\nRUN echo {uuid.uuid4().hex}\n" for n in names},
    })  # fmt: skip
    proc = subprocess.Popen((sys.executable, "-m", "mab_hook", "--all", "--publish"), cwd=repo.path, env=lab.env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if ": tagging " in line:
            time.sleep(0.3)
            proc.send_signal(signal.SIGINT)
            break
    seen += proc.stdout.readlines()
    out = "".join(seen)
    assert proc.wait(timeout=60) == 130, out
    said = re.search(r"interrupted: builds stopped; these tags had reached the registry: (.*)", out)
    reported = set(said.group(1).split(", ")) if said else set()
    time.sleep(2)  # nothing lands afterwards
    public = {f"{registry}/{n}:{t}" for n in names for t in lab.public_tags(f"{registry}/{n}")}
    assert reported == public, out
    assert not any(ref.endswith(":latest") for ref in public), out  # the moving tags never started
