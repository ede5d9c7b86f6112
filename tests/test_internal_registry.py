"""The gate against an intranet registry as teams run one: HTTPS signed by the company's CA
(the CA in the engine's certs.d, which uploads, and the client's), and behind it htpasswd, a
token service asked through a credential helper, or a client certificate (mTLS). Against each:
the push publishes, the second push skips, `verify` passes."""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.conftest import Lab, LabRegistry, Repo, free_port, mab, start_registry
from tests.tls import Certs, engine_trusts, placed
from tests.tokens import SERVICE, registry_auth, token_service

pytestmark = pytest.mark.lab
ROBOT, SECRET = "robot$team+ci", "s3cret-robot"
HELPER = """#!/bin/sh
# docker-credential-mabtest: a credential helper as Docker's protocol has it (get: the server
# on stdin, the credentials as JSON on stdout); each question is written down.
[ "$1" = get ] || exit 1
read -r server
printf '%s\\n' "$server" >> "{log}"
printf '{{"ServerURL": "%s", "Username": "robot$team+ci", "Secret": "s3cret-robot"}}' "$server"
"""


class Served(NamedTuple):
    registry: LabRegistry
    env: dict[str, str]
    helper_log: Path | None
    realm: str  # the token service's, for the token registry


def _helper(directory: Path, env: dict[str, str], address: str) -> tuple[dict[str, str], Path]:
    """docker's config names a credential helper for the registry: no secret in config.json."""
    bin_dir, log = directory / "bin", directory / "helper.log"
    bin_dir.mkdir(parents=True)
    (bin_dir / "docker-credential-mabtest").write_text(HELPER.format(log=log))
    (bin_dir / "docker-credential-mabtest").chmod(0o755)
    (Path(env["DOCKER_CONFIG"]) / "config.json").write_text(json.dumps({"credHelpers": {address: "mabtest"}}))
    return {**env, "PATH": f"{bin_dir}:{env['PATH']}"}, log


@contextmanager
def served(lab: Lab, certs: tuple[Certs, str], directory: Path, auth: str, where: str) -> Iterator[Served]:
    """The registry on this machine's outward address, trusted by the engine and the client; or
    on loopback, which Docker treats as insecure: TLS, its certificate unchecked, no CA placed."""
    ca, address = certs
    address = address if where == "network" else "127.0.0.1"
    with ExitStack() as stack:
        user, password, auth_config, realm = "", "", "", ""
        if auth == "htpasswd":
            user, password = "team", "s3cret-pw"
        elif auth == "token":
            service = stack.enter_context(token_service(directory / "tokens", {ROBOT: SECRET}, _grants))
            user, password, auth_config, realm = ROBOT, SECRET, registry_auth(service), service.realm
        registry = start_registry(directory / "registry", address=f"{address}:{free_port()}", tls=ca.server,
                                  client_ca=ca.ca if auth == "mtls" else None, user=user, password=password,
                                  auth=auth_config)  # fmt: skip
        stack.callback(registry.stop)
        env = registry.docker_config(lab, directory / "docker", logged_in=auth == "htpasswd")
        if where == "network":
            stack.enter_context(engine_trusts(ca, registry.address, client=auth == "mtls"))
            placed(ca, Path(env["DOCKER_CONFIG"]) / "certs.d", registry.address, client=auth == "mtls")
        log = None
        if auth == "token":
            env, log = _helper(directory, env, registry.address)
        yield Served(registry, env, log, realm)


def _grants(user: str, repository: str) -> tuple[str, ...]:
    return ("pull", "push") if user == ROBOT else ()


SETUPS = [("network", "none"), ("loopback", "none"), ("network", "htpasswd"), ("network", "token"),
          ("network", "mtls")]  # fmt: skip


@pytest.mark.parametrize("setup", SETUPS, ids=["-".join(setup) for setup in SETUPS])
def test_the_gate_pushes_skips_and_verifies_against_an_intranet_registry(
    lab: Lab, repo: Repo, certs: tuple[Certs, str], tmp_path: Path, setup: tuple[str, str]
) -> None:
    where, auth = setup
    with served(lab, certs, tmp_path, auth, where) as (registry, env, helper_log, realm):
        sha = repo.commit({
            "pyproject.toml": f'[tool.multiarch]\nplatforms = ["linux/amd64", "linux/arm64"]\n'
                              f'registry = "{registry.address}/team"\npush = true\n'
                              '[tool.multiarch.images.api]\ncontext = "api"\n',
            "api/Dockerfile": f"FROM {lab.busybox}\nRUN echo {uuid.uuid4().hex} > /salt\n",
        })  # fmt: skip
        doctor = mab(repo.path, env, "doctor")
        assert (
            doctor.returncode == 0
            and f"registry              https://{registry.address}/v2/ " in doctor.stdout
        ), doctor.stdout
        built = mab(repo.path, env, "--all", "--publish")
        assert built.returncode == 0, built.stdout + built.stderr
        assert _tags(registry.address, certs[0], auth, realm, check_name=where == "network") == [sha[:7]]
        again = mab(repo.path, env, "--all", "--publish")
        assert again.returncode == 0 and "already in the registry" in again.stdout, again.stdout
        verified = mab(repo.path, env, "verify", "--all")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        if helper_log is not None:  # the helper was asked, and its secret shown nowhere
            assert helper_log.read_text().splitlines()[0] == registry.address
            assert SECRET not in built.stdout + built.stderr + again.stdout + verified.stdout


def _tags(address: str, ca: Certs, auth: str, realm: str, *, check_name: bool) -> list[str]:
    """The repository's tags, read with plain urllib (the CA, the client certificate for mTLS,
    a token from the service for the token registry) rather than mab-hook's gateway."""
    context = ssl.create_default_context(cafile=str(ca.ca))
    context.check_hostname = check_name
    if auth == "mtls":
        context.load_cert_chain(*ca.client)
    request = urllib.request.Request(f"https://{address}/v2/team/api/tags/list")
    if auth == "htpasswd":
        request.add_header("Authorization", "Basic " + base64.b64encode(b"team:s3cret-pw").decode())
    if auth == "token":
        request.add_header("Authorization", f"Bearer {_token(realm)}")
    with urllib.request.urlopen(request, context=context) as got:
        return list(json.load(got)["tags"])


def _token(realm: str) -> str:
    asked = urllib.request.Request(f"{realm}?service={SERVICE}&scope=repository:team/api:pull")
    asked.add_header("Authorization", "Basic " + base64.b64encode(f"{ROBOT}:{SECRET}".encode()).decode())
    with urllib.request.urlopen(asked) as got:
        return str(json.load(got)["token"])


def test_doctor_judges_a_docker_container_builder_by_its_own_buildkitd_toml(
    lab: Lab, repo: Repo, certs: tuple[Certs, str], tmp_path: Path
) -> None:
    """Its BuildKit runs in a container and trusts only what its buildkitd.toml says, whatever
    the engine's certs.d holds. The builders are made and never started (there is no BuildKit
    image here): what buildx stored of them is what doctor reads."""
    ca, address = certs
    registry = start_registry(tmp_path / "registry", address=f"{address}:{free_port()}", tls=ca.server)
    try:
        env = registry.docker_config(lab, tmp_path / "docker", logged_in=False)
        placed(ca, Path(env["DOCKER_CONFIG"]) / "certs.d", registry.address)
        with engine_trusts(ca, registry.address):  # the engine would: only the builder would not
            trusting = tmp_path / "buildkitd.toml"
            trusting.write_text(f'[registry."{registry.address}"]\n  ca = ["{ca.ca}"]\n'
                                f'[registry."docker.io"]\n  mirrors = ["{lab.registry}"]\n')  # fmt: skip
            for name, options in (("bare", ()), ("trusting", ("--buildkitd-config", str(trusting)))):
                created = subprocess.run(("docker", "buildx", "create", "--name", name, "--driver", "docker-container",
                                          *options), env=env, capture_output=True, text=True, check=False)  # fmt: skip
                assert created.returncode == 0, created.stderr
            repo.commit({
                "pyproject.toml": f'[tool.multiarch]\nplatforms = ["linux/amd64"]\nregistry = "{registry.address}/team"\n'
                                  'push = true\n[tool.multiarch.images.api]\ncontext = "api"\n',
                "api/Dockerfile": f"FROM {lab.busybox}\n",
            })  # fmt: skip
            bare = _registry_check(repo, env, "bare")
            assert (bare["status"], bare["code"]) == ("fail", "registry-builder-untrusted"), bare
            assert bare["finding"].startswith(f"builder bare's BuildKit would not trust {registry.address}'s")
            assert "--buildkitd-config buildkitd.toml" in bare["fix"], bare["fix"]
            assert _registry_check(repo, env, "trusting")["status"] == "ok"
            mirror = _registry_check(repo, env, "trusting", "mirror")
            assert mirror["finding"].startswith(f"Docker Hub through http://{lab.registry} (builder trusting's "
                                                "buildkitd.toml): "), mirror  # fmt: skip
            assert _registry_check(repo, env, "bare", "mirror")["finding"] == (
                "Docker Hub directly: no mirror is set up for it"
            )
            repo.commit({"pyproject.toml": (repo.path / "pyproject.toml").read_text().replace(
                registry.address, lab.registry)})  # fmt: skip
            loopback = _registry_check(repo, env, "trusting")
            assert (loopback["status"], loopback["code"]) == ("fail", "registry-builder-loopback"), loopback
            assert "--driver-opt network=host" in loopback["fix"]
    finally:
        registry.stop()


def _registry_check(repo: Repo, env: dict[str, str], builder: str, name: str = "registry") -> dict[str, str]:
    doctor = mab(repo.path, env, "doctor", "--json", "--builder", builder)
    checks = {check["name"]: check for check in json.loads(doctor.stdout)["checks"]}
    assert name in checks, doctor.stdout + doctor.stderr
    return dict(checks[name])
