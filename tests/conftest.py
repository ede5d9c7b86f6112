"""Shared fixtures: real git repositories in tmp_path, bare remotes, and the build lab."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAB_ENV = Path(os.environ.get("MAB_LAB_DIR", "/var/tmp/mab-lab")) / "env"

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
}


@pytest.fixture(autouse=True)
def _git_identity(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    for key, value in GIT_IDENTITY.items():
        monkeypatch.setenv(key, value)
    # No user-level git config (init.defaultBranch, hooks paths...) leaks into the tests.
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path_factory.getbasetemp() / "gitconfig"))
    for key in [k for k in os.environ if k.startswith("PRE_COMMIT")]:
        monkeypatch.delenv(key)


def git(cwd: Path, *args: str, env: Mapping[str, str] | None = None, check: bool = True) -> str:
    proc = subprocess.run(
        ("git", *args),
        cwd=cwd,
        env=None if env is None else dict(env),
        capture_output=True,
        text=True,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return proc.stdout.strip()


class Repo(NamedTuple):
    """A work repository with a bare remote named origin."""

    path: Path
    remote: Path

    def write(self, files: Mapping[str, str | None]) -> None:
        for name, content in files.items():
            target = self.path / name
            if content is None:
                target.unlink()
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)

    def commit(self, files: Mapping[str, str | None], message: str = "change") -> str:
        self.write(files)
        git(self.path, "add", "-A")
        git(self.path, "commit", "-q", "--allow-empty", "-m", message)
        return self.head()

    def head(self) -> str:
        return git(self.path, "rev-parse", "HEAD")

    def git(self, *args: str, env: Mapping[str, str] | None = None, check: bool = True) -> str:
        return git(self.path, *args, env=env, check=check)


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    remote = tmp_path / "remote.git"
    work = tmp_path / "work"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    git(tmp_path, "init", "-q", "-b", "main", str(work))
    git(work, "remote", "add", "origin", str(remote))
    return Repo(work, remote)


# --- the build lab ---------------------------------------------------------------------------


class Lab(NamedTuple):
    env: dict[str, str]  # os.environ plus DOCKER_HOST, PATH, DOCKER_CONFIG of the lab
    registry: str  # host:port of the lab's registry
    busybox: str  # a local multi-arch image with a shell for every platform

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(("docker", *args), env=self.env, capture_output=True, text=True, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
        return proc

    def namespace(self) -> str:
        """A registry prefix of its own for one test, so tests never see each other's images."""
        return f"{self.registry}/t{uuid.uuid4().hex[:10]}"

    def manifest(self, ref: str) -> dict[str, object] | None:
        """The manifest (list) of `host/name:tag` from the registry's HTTP API; None if absent."""
        host, _, rest = ref.partition("/")
        name, _, tag = rest.rpartition(":")
        request = urllib.request.Request(
            f"http://{host}/v2/{name}/manifests/{tag}",
            headers={
                "Accept": ", ".join(
                    (
                        "application/vnd.oci.image.index.v1+json",
                        "application/vnd.docker.distribution.manifest.list.v2+json",
                        "application/vnd.oci.image.manifest.v1+json",
                        "application/vnd.docker.distribution.manifest.v2+json",
                    )
                )
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                data: dict[str, object] = json.load(response)
                return data
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise

    def platforms(self, ref: str) -> set[str]:
        """The platforms of a pushed manifest list, attestation manifests left out."""
        manifest = self.manifest(ref)
        assert manifest is not None, f"{ref} is not in the registry"
        found = set()
        for entry in manifest.get("manifests", []):  # type: ignore[attr-defined]
            platform = entry.get("platform", {})
            if platform.get("os") == "unknown":
                continue
            variant = f"/{platform['variant']}" if platform.get("variant") else ""
            found.add(f"{platform['os']}/{platform['architecture']}{variant}")
        return found

    def tags(self, repository: str) -> set[str]:
        """The tags of `host/name` in the registry; empty when it was never pushed."""
        host, _, name = repository.partition("/")
        try:
            with urllib.request.urlopen(f"http://{host}/v2/{name}/tags/list", timeout=10) as response:
                return set(json.load(response).get("tags") or ())
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return set()
            raise

    def pushed(self, prefix: str, names: tuple[str, ...] = ("base", "api", "worker")) -> set[str]:
        """Which of the images under `prefix` have a public tag (not only an input-digest one)."""
        return {name for name in names if self.public_tags(f"{prefix}/{name}")}

    def public_tags(self, repository: str) -> set[str]:
        return {tag for tag in self.tags(repository) if not tag.startswith("mab-")}

    def staged(self, prefix: str, names: tuple[str, ...] = ("base", "api", "worker")) -> set[str]:
        """Which of the images under `prefix` were uploaded under their input-digest tag."""
        return {name for name in names if any(t.startswith("mab-") for t in self.tags(f"{prefix}/{name}"))}


def _load_lab() -> Lab | str:
    if not LAB_ENV.is_file():
        return f"no lab environment at {LAB_ENV}: run `bash lab/up` (as root)"
    out = subprocess.run(("bash", "-c", f'. "{LAB_ENV}" && env -0'), capture_output=True, check=True)
    env = dict(item.split("=", 1) for item in out.stdout.decode().split("\0") if "=" in item)
    env.update(GIT_IDENTITY)
    probe = subprocess.run(
        ("docker", "buildx", "version"), env=env, capture_output=True, text=True, check=False
    )
    info = subprocess.run(
        ("docker", "info", "--format", "{{.ServerVersion}}"),
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0 or info.returncode != 0:
        return f"the lab at {LAB_ENV} does not answer: {(info.stderr or probe.stderr).strip()}"
    return Lab(env, env["MAB_LAB_REGISTRY"], env["MAB_LAB_BASE_IMAGE"])


@pytest.fixture(scope="session")
def lab() -> Lab:
    """The real build lab. In CI a missing lab fails the test; elsewhere it skips it."""
    found = _load_lab()
    if isinstance(found, str):
        if os.environ.get("CI"):
            pytest.fail(f"the build lab is required in CI: {found}")
        pytest.skip(found)
    return found


@pytest.fixture(scope="session")
def hook_repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """This project's working tree as a git repository, for a `repos:` entry in a test.

    A copy rather than the checkout itself, so that pre-commit installs the code under test
    even before it is committed.
    """
    path = tmp_path_factory.mktemp("hook-repo")
    for name in ("pyproject.toml", ".pre-commit-hooks.yaml", "README.md", "hooks"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, path / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(source, path / name)
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "mab-hook under test", env={**os.environ, **GIT_IDENTITY})
    return path, git(path, "rev-parse", "HEAD")


@pytest.fixture(scope="session")
def pre_commit_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One pre-commit cache for the session: the hook's environment is built once."""
    yield tmp_path_factory.mktemp("pre-commit-home")


# --- registries of a test's own ------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LabRegistry(NamedTuple):
    """A docker-registry of one test (or session), on a port of its own."""

    address: str  # 127.0.0.1:PORT
    process: subprocess.Popen[bytes]
    user: str = ""
    password: str = ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)

    def docker_config(self, lab: Lab, directory: Path, *, logged_in: bool) -> dict[str, str]:
        """The lab's environment with a docker config of its own, logged in to this registry or
        not. Its cli-plugins point at the lab's buildx, which would vanish otherwise."""
        directory.mkdir(parents=True, exist_ok=True)
        plugins = Path(lab.env["DOCKER_CONFIG"]) / "cli-plugins"
        if not (directory / "cli-plugins").exists():
            (directory / "cli-plugins").symlink_to(plugins)
        auth = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        auths = {self.address: {"auth": auth}} if logged_in else {}
        (directory / "config.json").write_text(json.dumps({"auths": auths}))
        return {**lab.env, "DOCKER_CONFIG": str(directory)}


def start_registry(directory: Path, *, user: str = "", password: str = "") -> LabRegistry:
    """docker-registry (Debian's) on 127.0.0.1:<free port>; with `user`, it wants htpasswd
    credentials, as a team's registry does."""
    import bcrypt  # noqa: PLC0415 - only the lab tests that need it

    directory.mkdir(parents=True, exist_ok=True)
    address = f"127.0.0.1:{free_port()}"
    auth = ""
    if user:
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
        (directory / "htpasswd").write_text(f"{user}:{hashed}\n")
        auth = f"auth:\n  htpasswd:\n    realm: lab\n    path: {directory / 'htpasswd'}\n"
    (directory / "config.yml").write_text(
        f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {directory / 'data'}\n"
        f"  delete:\n    enabled: true\nhttp:\n  addr: {address}\n{auth}"
    )
    process = subprocess.Popen(("docker-registry", "serve", str(directory / "config.yml")),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://{address}/v2/", timeout=1).close()
            break
        except urllib.error.HTTPError:
            break  # 401: up, and wanting credentials
        except OSError:
            time.sleep(0.1)
    else:
        process.kill()
        raise AssertionError(f"docker-registry did not come up on {address}")
    return LabRegistry(address, process, user, password)


@pytest.fixture(scope="session")
def auth_registry(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabRegistry]:
    """A registry that wants credentials (htpasswd, as the lab notes describe)."""
    found = start_registry(tmp_path_factory.mktemp("auth-registry"), user="team", password="s3cret-pw")
    yield found
    found.stop()
