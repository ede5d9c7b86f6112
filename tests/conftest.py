"""Shared fixtures: real git repositories in tmp_path, bare remotes, and the build lab."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Generator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import pytest

from mab_hook import pending
from tests import leftovers
from tests.tls import Certs, make_ca, outward_address

if TYPE_CHECKING:
    from mab_hook.binfmt import Handler
    from tests.engine import Canned

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


@pytest.fixture
def canned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Canned]:
    """The canned engine and the in-memory registry in place of Docker (tests/engine.py), for
    commands run in-process: `Canned.engine.faults` says what goes wrong."""
    from mab_hook import buildx, coverage, process, readiness  # noqa: PLC0415
    from tests import engine as canned_engine  # noqa: PLC0415
    from tests.readiness.recorded import host  # noqa: PLC0415

    found = host(tmp_path / "host")
    with canned_engine.OciRegistry() as registry:
        engine = canned_engine.CannedEngine(registry)
        monkeypatch.setattr(process, "Group", lambda env=None: engine)
        monkeypatch.setattr(buildx, "BACKOFF", 0.0)
        monkeypatch.setattr(readiness, "local_host", lambda env, machine, probes=None: found)
        bases: dict[str, coverage.Found | str] = {}
        monkeypatch.setattr(
            coverage, "local_sources", lambda env, known, mirrors=tuple: canned_engine.canned_sources(bases)
        )
        monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))  # no one's credentials
        yield canned_engine.Canned(registry, engine, found.binfmt_root, bases)


# --- the build lab ---------------------------------------------------------------------------


class Lab(NamedTuple):
    env: dict[str, str]  # os.environ plus DOCKER_HOST, PATH, DOCKER_CONFIG of the lab
    registry: str  # host:port of the lab's registry
    busybox: str  # a local multi-arch image with a shell for every platform
    claims: leftovers.Claims | None = None  # where namespace() notes what the session made

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        if args[:2] == ("run", "--rm"):
            proc = self._run(*args[2:])
        else:
            proc = subprocess.run(
                ("docker", *args), env=self.env, capture_output=True, text=True, check=False
            )
        if check and proc.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
        return proc

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`docker run --rm ARGS` whose output is read from the container's log, not from the
        attach stream: a container that exits at once can lose what it printed there under load
        (moby/moby#27289: an empty stdout, exit 0)."""

        def docker(*command: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                ("docker", *command), env=self.env, capture_output=True, text=True, check=False
            )

        started = docker("run", "-d", *args)
        if started.returncode != 0:
            return started
        container = started.stdout.strip()
        try:
            waited = docker("wait", container)
            logs = docker("logs", container)
            code = int(waited.stdout.strip() or 1)
            return subprocess.CompletedProcess(
                ("docker", "run", "--rm", *args), code, logs.stdout, logs.stderr
            )
        finally:
            docker("rm", "-f", container)

    def namespace(self, *, local: bool = False) -> str:
        """A registry prefix of its own for one test, so tests never see each other's images;
        `local`: a name for builds kept in the engine's store only. What the session leaves
        under it is removed when the session ends."""
        name = f"t{uuid.uuid4().hex[:10]}"
        if self.claims is not None:
            self.claims.claim(name)
        return f"{'mab-test' if local else self.registry}/{name}"

    def build(self, ref: str, dockerfile: str, *args: str, platforms: str = "linux/amd64", push: bool = True
              ) -> subprocess.CompletedProcess[str]:  # fmt: skip
        """`docker buildx build` of `dockerfile` (its text; no context) as `ref`, by hand as a user
        builds, pushed unless `push` is false. Run again on the lab registry's 500: buildx 0.13
        with the docker driver and the containerd store pushes twice (docker/buildx#3023), and
        distribution 2.8 now and then answers 500 to the second push's look-up (seen in CI)."""
        command = ("docker", "buildx", "build", "--platform", platforms, *args,
                   *(("--push",) if push else ()), "-t", ref, "-")  # fmt: skip
        for _ in range(3):
            built = subprocess.run(
                command, input=dockerfile, env=self.env, capture_output=True, text=True, check=False
            )
            if built.returncode == 0 or "500 Internal Server Error" not in built.stderr:
                break
        return built

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
        """Every tag of an image's public repository: staging tags are never among them."""
        return self.tags(repository)

    def staged(self, prefix: str, names: tuple[str, ...] = ("base", "api", "worker")) -> set[str]:
        """Which of the images under `prefix` were uploaded to their staging repository."""
        return {name for name in names if self.tags(f"{prefix}/mab-staging/{name}")}


# What the lab's environment keeps of the caller's: how to find programs and certificates, and
# pip's settings (pre-commit installs hook environments); nothing else leaks into the tests.
_KEPT = ("PATH", "HOME", "LANG", "TERM", "TMPDIR", "USER", "LOGNAME", "SHELL", "PYENV_ROOT", "CI")
_KEPT_LIKE = re.compile(r"^(PIP_|LC_)|(_CA_|CERT|CA_BUNDLE)")


def _load_lab(home: Path) -> Lab | str:
    """The lab's environment, built from a clean one: the caller's git config (and any other
    variable of theirs) never reaches a lab test; git config goes to `home`'s own file."""
    if not LAB_ENV.is_file():
        return f"no lab environment at {LAB_ENV}: run `bash lab/up` (as root)"
    base = {k: v for k, v in os.environ.items() if k in _KEPT or _KEPT_LIKE.search(k)}
    out = subprocess.run(
        ("bash", "-c", f'. "{LAB_ENV}" && env -0'), env=base, capture_output=True, check=True
    )
    env = dict(item.split("=", 1) for item in out.stdout.decode().split("\0") if "=" in item)
    env.update(GIT_IDENTITY)
    env["GIT_CONFIG_GLOBAL"] = str(home / "gitconfig")
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
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """The real build lab. In CI a missing lab fails the test; elsewhere it skips it. The
    images the session makes are removed from the engine's store when it ends (tests/leftovers)."""
    found = _load_lab(tmp_path_factory.mktemp("lab-home"))
    if isinstance(found, str):
        if os.environ.get("CI"):
            pytest.fail(f"the build lab is required in CI: {found}")
        pytest.skip(found)
    store = leftovers.Store(found.env)
    if not store.available():
        yield found
        return
    claims = leftovers.Claims(Path(found.env["MAB_LAB_DIR"]) / "test-sessions")
    store.remove(leftovers.left_behind(store.references(), claims.others_live(), found.registry))
    before = store.references()
    try:
        yield found._replace(claims=claims)
    finally:
        store.remove(leftovers.made_by(store.references(), claims.mine, before, found.registry))
        claims.release()


@pytest.fixture(scope="session")
def hook_repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """This project's working tree as a git repository, for a `repos:` entry in a test.

    A copy rather than the checkout itself, so that pre-commit installs the code under test
    even before it is committed.
    """
    path = tmp_path_factory.mktemp("hook-repo")
    for name in ("pyproject.toml", ".pre-commit-hooks.yaml", "README.md", "hooks", "lab", "sample-repo"):
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


def mab(cwd: Path, env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """mab-hook as a user or a CI job runs it: its own process, its exit code and output."""
    return subprocess.run((sys.executable, "-m", "mab_hook", *args), cwd=cwd, env=dict(env),
                          capture_output=True, text=True, check=False)  # fmt: skip


def finishes(program: str, within: float = 60.0) -> None:
    """Python code run in a child of its own, which must end well within `within` seconds: for
    work a hostile input could make last hours, so that a regression fails rather than hangs."""
    done = subprocess.run((sys.executable, "-c", program), capture_output=True, text=True, timeout=within,
                          check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr


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


def start_registry(
    directory: Path,
    *,
    user: str = "",
    password: str = "",
    address: str = "",
    delete: bool = True,
    tls: tuple[Path, Path] | None = None,
    client_ca: Path | None = None,
    auth: str = "",
) -> LabRegistry:
    """docker-registry (Debian's) on 127.0.0.1:<free port>; with `user`, it wants htpasswd
    credentials, as a team's registry does; `delete`: whether it deletes manifests; `tls`: it
    serves HTTPS with this certificate and key; `client_ca`: and wants a client certificate this
    CA signed (mTLS); `auth`: its auth configuration instead (a token service's:
    tests/tokens.py), `user` and `password` then only what docker logs in with."""
    import bcrypt  # noqa: PLC0415 - only the lab tests that need it

    directory.mkdir(parents=True, exist_ok=True)
    address = address or f"127.0.0.1:{free_port()}"
    if user and not auth:
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
        (directory / "htpasswd").write_text(f"{user}:{hashed}\n")
        auth = f"auth:\n  htpasswd:\n    realm: lab\n    path: {directory / 'htpasswd'}\n"
    served = f"  tls:\n    certificate: {tls[0]}\n    key: {tls[1]}\n" if tls else ""
    served += f"    clientcas:\n      - {client_ca}\n" if tls and client_ca else ""
    (directory / "config.yml").write_text(
        f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {directory / 'data'}\n"
        f"  delete:\n    enabled: {str(delete).lower()}\nhttp:\n  addr: {address}\n{served}{auth}"
    )
    process = subprocess.Popen(("docker-registry", "serve", str(directory / "config.yml")),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 30
    unchecked = ssl.create_default_context()  # only: is it up yet
    unchecked.check_hostname, unchecked.verify_mode = False, ssl.CERT_NONE
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(
                f"{'https' if tls else 'http'}://{address}/v2/", timeout=1, context=unchecked
            ).close()
            break
        except urllib.error.HTTPError:
            break  # 401: up, and wanting credentials
        except OSError as error:
            said = error.reason if isinstance(error, urllib.error.URLError) else error
            if client_ca and isinstance(said, (ssl.SSLError, ConnectionResetError)):
                break  # up, and refusing a client without a certificate
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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Whether a test needs the lab shows in its marker, not only through a fixture: one that
    uses the lab without saying so is an error, so that `-m "not lab"` never reaches Docker."""
    unmarked = [item.nodeid for item in items
                if "lab" in getattr(item, "fixturenames", ()) and item.get_closest_marker("lab") is None]  # fmt: skip
    if unmarked:
        raise pytest.UsageError("tests using the lab without @pytest.mark.lab:\n  " + "\n  ".join(unmarked))


REGISTRY_LOG = LAB_ENV.parent / "registry.log"
_LOG_AT = pytest.StashKey[int]()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("lab") is not None:
        item.stash[_LOG_AT] = REGISTRY_LOG.stat().st_size if REGISTRY_LOG.is_file() else 0


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A lab test that fails shows what the lab registry answered with a server error while it
    ran: a 5xx from it is the registry's to explain, and its log is gone with the CI machine."""
    report = yield
    if report.passed or _LOG_AT not in item.stash or not REGISTRY_LOG.is_file():
        return report
    with REGISTRY_LOG.open("rb") as log:
        log.seek(item.stash[_LOG_AT])
        errors = [line for line in log.read().decode(errors="replace").splitlines() if "status=5" in line]
    if errors:
        report.sections.append(("lab registry: server errors", "\n".join(errors[-20:])))
    return report


class Engine(NamedTuple):
    """A second dockerd: another machine's engine, with an empty build cache and no images."""

    env: dict[str, str]
    root: Path


@pytest.fixture(scope="session")
def second_engine(lab: Lab) -> Iterator[Engine]:
    """Another machine's engine: started once, for the session."""
    with engine(lab, slot=1) as found:
        yield found


@contextlib.contextmanager
def engine(lab: Lab, *, slot: int, daemon: Mapping[str, object] | None = None) -> Iterator[Engine]:
    """A dockerd of its own: data root, socket and bridge (two dockerds fight over docker0, say
    the lab notes, so it gets a bridge of its own and no iptables rules; `slot` tells the
    engines alive at once apart); it reaches the lab's registry on 127.0.0.1 as the first one
    does. `daemon`: its daemon.json beyond the containerd store. Stopped, and everything it made
    removed, at the end."""
    root = Path(tempfile.mkdtemp(prefix="mab2-", dir="/var/tmp"))  # short: socket paths are limited
    bridge = f"mab{slot}-{os.getpid() % 100000}"
    subnet = f"172.{32 - slot}.{os.getpid() % 200 + 20}"
    for args in (("link", "add", bridge, "type", "bridge"), ("addr", "add", f"{subnet}.1/24", "dev", bridge),
                 ("link", "set", bridge, "up")):  # fmt: skip
        subprocess.run(("ip", *args), check=True, capture_output=True)
    (root / "daemon.json").write_text(
        json.dumps({"features": {"containerd-snapshotter": True}, **(daemon or {})})
    )
    env = {**lab.env, "DOCKER_HOST": f"unix://{root}/sock"}
    daemon_process = subprocess.Popen(
        ("dockerd", "--config-file", str(root / "daemon.json"), "--data-root", str(root / "data"),
         "--exec-root", str(root / "exec"), "-p", str(root / "pid"), "-H", env["DOCKER_HOST"],
         "--bridge", bridge, "--iptables=false", "--ip6tables=false"),
        env=env, stdout=(root / "log").open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        _started(daemon_process, env, root, "the second dockerd")
        yield Engine(env, root)
    finally:
        daemon_process.terminate()
        daemon_process.wait(timeout=60)
        subprocess.run(("ip", "link", "del", bridge), check=False, capture_output=True)
        mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
        for mount in sorted((m for m in mounts if m.startswith(str(root))), reverse=True):
            subprocess.run(("umount", mount), check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def _started(daemon: subprocess.Popen[bytes], env: Mapping[str, str], root: Path, what: str) -> None:
    """Wait (a minute at most) until the engine `env` names answers; its log says why not."""
    deadline = time.monotonic() + 60
    while subprocess.run(("docker", "version"), env=env, capture_output=True, check=False).returncode:
        if time.monotonic() > deadline or daemon.poll() is not None:
            raise AssertionError(f"{what} did not start: {(root / 'log').read_text()[-2000:]}")
        time.sleep(0.3)


BINFMT = "/proc/sys/fs/binfmt_misc"


def _register_line(handler: Handler) -> str:
    """What /proc/sys/fs/binfmt_misc/register takes to register a handler like this one."""

    def escaped(data: bytes) -> str:
        return "".join(f"\\x{byte:02x}" for byte in data)

    h = handler
    return f":{h.name}:M:{h.offset}:{escaped(h.magic)}:{escaped(h.mask)}:{h.interpreter}:{h.flags}"


def in_namespace(
    args: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    binfmt: str = "copy",
    disable: Sequence[str] = (),
    hostname: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `args` in a private user and mount (and UTS) namespace, where binfmt_misc is an
    instance of its own (kernels since 6.7): "copy" holds the host's handlers, of which those in
    `disable` are switched off; "empty" holds none; "unmounted" is not there at all. Nothing
    the command does there reaches the machine's own handlers or host name."""
    from mab_hook import binfmt as handlers  # noqa: PLC0415

    steps = []
    if binfmt == "unmounted":
        steps.append(f"mount -t tmpfs none {BINFMT}")
    else:
        steps.append(f"mount -t binfmt_misc binfmt_misc {BINFMT}")
    if binfmt == "copy":
        for h in handlers.read().handlers:
            line = _register_line(h)
            steps.append(f"printf '%s' {shlex.quote(line)} > {BINFMT}/register")
        steps += [f"echo 0 > {BINFMT}/{name}" for name in disable]
    if hostname:
        steps.append(f"hostname {shlex.quote(hostname)}")
    script = " && ".join(steps) + ' && exec "$@"'
    flags = ("--user", "--map-root-user", "--mount", *(("--uts",) if hostname else ()))
    return subprocess.run(("unshare", *flags, "sh", "-c", script, "sh", *args), cwd=cwd, env=dict(env),
                          capture_output=True, text=True, check=False)  # fmt: skip


@contextlib.contextmanager
def engine_without(lab: Lab, handlers: Sequence[str]) -> Iterator[Engine]:
    """A dockerd that cannot run some platforms, the machine's handlers untouched: it runs in a
    private user, mount and network namespace whose binfmt_misc (an instance of its own, kernels
    since 6.7) holds the machine's handlers but `handlers` (names: "qemu-aarch64"). Its builds
    see only that instance; it has a bridge of its own and reaches no registry (a probe, `FROM
    scratch`, needs none). Stopped, with all it made, at the end."""
    from mab_hook import binfmt as machine  # noqa: PLC0415

    root = Path(tempfile.mkdtemp(prefix="mabns-", dir="/var/tmp"))  # short: socket paths are limited
    registered = [f"printf '%s' {shlex.quote(_register_line(h))} > {BINFMT}/register"
                  for h in machine.read().handlers if h.name not in handlers]  # fmt: skip
    (root / "daemon.json").write_text('{"features": {"containerd-snapshotter": true}}')
    env = {**lab.env, "DOCKER_HOST": f"unix://{root}/sock"}
    steps = [f"while [ ! -e {root}/mapped ]; do sleep 0.05; done", f"mount -t binfmt_misc binfmt_misc {BINFMT}",
             *registered, "ip link set lo up", "ip link add mab0 type bridge",
             "ip addr add 172.30.9.1/24 dev mab0", "ip link set mab0 up",
             f"exec dockerd --config-file {root}/daemon.json --data-root {root}/data --exec-root {root}/exec "
             f"-p {root}/pid -H {env['DOCKER_HOST']} --bridge mab0 --iptables=false --ip6tables=false"]  # fmt: skip
    outer = subprocess.Popen(("unshare", "--user", "--mount", "--net", "--fork", "sh", "-c", " && ".join(steps)),
                             env=env, stdout=(root / "log").open("w"), stderr=subprocess.STDOUT,
                             start_new_session=True)  # fmt: skip
    try:
        _map_root(outer.pid, root)
        _started(outer, env, root, "the namespaced dockerd")
        yield Engine(env, root)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(outer.pid, signal.SIGTERM)
        try:
            outer.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(outer.pid, signal.SIGKILL)
            outer.wait()
        shutil.rmtree(root, ignore_errors=True)  # its mounts went with its namespace


def _map_root(unshare: int, root: Path) -> None:
    """Map the namespace's ids 0-65535 to the machine's (the test runs as root): its dockerd
    is root there, and no more than root of that namespace anywhere else."""
    children = Path(f"/proc/{unshare}/task/{unshare}/children")
    deadline = time.monotonic() + 10
    while not children.read_text().split():
        if time.monotonic() > deadline:
            raise AssertionError("unshare started no process")
        time.sleep(0.02)
    pid = children.read_text().split()[0]
    for name in ("uid_map", "gid_map"):
        Path(f"/proc/{pid}/{name}").write_text("0 0 65536\n")
    (root / "mapped").touch()


# --- a repository whose pre-push hook is mab-hook, installed through pre-commit ---------------

PLATFORMS = ("linux/amd64", "linux/arm64", "linux/arm/v7")


class Pushed(NamedTuple):
    code: int
    output: str

    def results(self) -> dict[str, str]:
        """The summary table: image -> result, in build order."""
        rows = re.findall(r"^  (\S+)\s{2,}linux/\S.*?\s{2,}(built|pushed|skipped|failed|timed out|not built)\s",
                          self.output, re.MULTILINE)  # fmt: skip
        return dict(rows)


def published(work: Path, timeout: float = 120) -> list[pending.Record]:
    """Once git returned, the publisher a pre-push hook started in the background has its say:
    every publish record of the repository, once none is waiting (`mab-hook status --wait`)."""
    root = work / ".git" / "mab-hook"
    deadline = time.monotonic() + timeout
    while True:
        records = [record for _path, record in pending.every(root)]
        if all(r.state != pending.WAITING or r.said for r in records):
            return records
        if time.monotonic() > deadline:
            raise AssertionError(f"a publish is still waiting after {timeout} s: {records}")
        time.sleep(0.05)


def published_since(work: Path, before: set[str]) -> str:
    """What the publishers of a push said (they speak to the terminal, which tests lack)."""
    said = [line for r in published(work) if r.id not in before for line in (f"publish: {r.state}", *r.said)]
    return "".join(f"{line}\n" for line in said)


class Hooked(NamedTuple):
    repo: Repo
    registry: str  # this test's own registry prefix
    env: dict[str, str]

    def push(self, *args: str, env: Mapping[str, str] | None = None) -> Pushed:
        before = {record.id for record in published(self.repo.path)}
        proc = subprocess.run(
            ("git", "push", "origin", *args),
            cwd=self.repo.path,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            check=False,
        )
        return Pushed(proc.returncode, proc.stdout + proc.stderr + published_since(self.repo.path, before))

    def remote_head(self, branch: str = "main") -> str:
        return self.repo.git("--git-dir", str(self.repo.remote), "rev-parse", branch, check=False)


def project_files(lab: Lab, registry: str) -> dict[str, str]:
    """A base image and two images built on it; every RUN executes under emulation."""
    return {
        "pyproject.toml": f"""\
[tool.multiarch]
platforms = {list(PLATFORMS)!r}
registry = "{registry}"
push = true
tags = ["{{short_sha}}", "latest"]

[tool.multiarch.images.base]
context = "base"
build-args = {{ BUSYBOX = "{lab.busybox}" }}

[tool.multiarch.images.api]
context = "services/api"

[tool.multiarch.images.worker]
context = "services/worker"
platforms = ["linux/amd64", "linux/arm64"]
""".replace("'", '"'),
        "base/Dockerfile": 'ARG BUSYBOX\nFROM ${BUSYBOX}\nRUN echo "base v1 $(uname -m)" > /base-release\n',
        "services/api/Dockerfile": f"FROM {registry}/base:latest\nCOPY app.txt /\n"
        "RUN cat /base-release /app.txt > /report\n",
        "services/api/app.txt": "api v1\n",
        "services/worker/Dockerfile": f"FROM {registry}/base\nRUN cat /base-release > /worker\n",
        "docs/index.md": "# Docs\n",
    }


def pre_commit_config(hook_repo: tuple[Path, str]) -> str:
    path, rev = hook_repo
    return f"repos:\n- repo: {path}\n  rev: {rev}\n  hooks:\n  - id: mab-hook\n"


@pytest.fixture
def hooked(
    repo: Repo, lab: Lab, hook_repo: tuple[Path, str], pre_commit_home: Path, tmp_path: Path
) -> Hooked:
    """A repository whose pre-push hook is mab-hook, installed through pre-commit by a user;
    every image of its first commit uploaded (under its staging tag: nothing public yet), as a
    team's first `mab-hook --all` leaves it."""
    hooked = _hooked(repo, lab, hook_repo, pre_commit_home, tmp_path)
    seeded = mab(repo.path, hooked.env, "--all")
    assert seeded.returncode == 0, seeded.stdout + seeded.stderr
    return hooked


@pytest.fixture
def hooked_unbuilt(
    repo: Repo, lab: Lab, hook_repo: tuple[Path, str], pre_commit_home: Path, tmp_path: Path
) -> Hooked:
    """The same, with nothing of it built or in the registry (pushed with --no-verify)."""
    return _hooked(repo, lab, hook_repo, pre_commit_home, tmp_path)


def _hooked(
    repo: Repo, lab: Lab, hook_repo: tuple[Path, str], pre_commit_home: Path, tmp_path: Path
) -> Hooked:
    registry = lab.namespace()
    env = {
        **lab.env,
        "PRE_COMMIT_HOME": str(pre_commit_home),
        "GIT_CONFIG_GLOBAL": str(tmp_path / "gitconfig"),
    }
    repo.commit(
        {**project_files(lab, registry), ".pre-commit-config.yaml": pre_commit_config(hook_repo)}, "init"
    )
    subprocess.run(
        (sys.executable, "-m", "pre_commit", "install", "--hook-type", "pre-push"),
        cwd=repo.path,
        env=env,
        check=True,
        capture_output=True,
    )
    hooked = Hooked(repo, registry, env)
    first = hooked.push("--no-verify", "main")  # the first push of new history: nothing built
    assert first.code == 0, first.output
    return hooked


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Certs, str]:
    """A company's CA, and a server certificate for this machine's outward address (not
    loopback, which Docker treats as insecure, so that trust is really asked)."""
    address = outward_address()
    if address is None:
        pytest.fail("no address but loopback: a registry there is insecure to Docker, so trust is not asked")
    return make_ca(tmp_path_factory.mktemp("ca"), address), address
