"""What Docker trusts for a registry (certs.d), and the registry gateway trusting the same:
against HTTPS servers presenting a private CA's certificates, no Docker needed."""

from __future__ import annotations

import json
import shutil
import ssl
import uuid
from pathlib import Path

import pytest

from mab_hook import trust
from mab_hook.buildkitd import RegistrySettings
from mab_hook.errors import FatalError
from mab_hook.registry import Access, Registry
from tests.conftest import Lab, Repo, free_port, mab, start_registry
from tests.tls import Certs, http_registry, https_registry, placed

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl makes the test CA")


def test_an_insecure_registrys_context_checks_nothing_and_loads_no_ca() -> None:
    """Docker checks no certificate of an insecure registry: the system's CAs (some 20 ms to
    load, in every run's first request) would go unused."""
    found = trust.context(trust.Trust(), verify=False)
    assert (found.verify_mode, found.check_hostname) == (ssl.CERT_NONE, False)
    assert found.cert_store_stats()["x509_ca"] == 0
    assert trust.context(trust.Trust(), verify=True).verify_mode == ssl.CERT_REQUIRED


def test_certs_d_is_read_as_docker_reads_it(tmp_path: Path) -> None:
    daemon, client = tmp_path / "etc-docker", tmp_path / "dot-docker"
    host = "registry.internal:5000"
    (daemon / host).mkdir(parents=True)
    (client / host).mkdir(parents=True)
    (daemon / host / "ca.crt").write_text("a")
    (daemon / host / "README").write_text("not a certificate")
    (client / host / "extra.crt").write_text("b")
    (client / host / "client.cert").write_text("c")
    (client / host / "client.key").write_text("d")
    (client / "other:5000").mkdir()
    (client / "other:5000" / "ca.crt").write_text("e")
    found = trust.for_host(host, (daemon, tmp_path / "none", client))
    assert found == trust.Trust((daemon / host / "ca.crt", client / host / "extra.crt"),
                                (client / host / "client.cert", client / host / "client.key"))  # fmt: skip
    assert trust.for_host("elsewhere:443", (daemon, client)) == trust.Trust()
    (client / host / "client.key").unlink()
    with pytest.raises(FatalError) as info:
        trust.for_host(host, (daemon, client))
    assert str(info.value) == (f"{client / host / 'client.cert'}: a client certificate without its key (client.key); "
                               "Docker refuses it too: put the key beside it, or remove it")  # fmt: skip


def test_a_file_that_is_no_certificate_is_named(tmp_path: Path) -> None:
    (tmp_path / "ca.crt").write_text("not a certificate\n")
    (tmp_path / "client.cert").write_text("nor this\n")
    (tmp_path / "client.key").write_text("nor this\n")
    with pytest.raises(FatalError) as info:
        trust.context(trust.Trust((tmp_path / "ca.crt",)), verify=True)
    assert str(info.value).startswith(f"{tmp_path / 'ca.crt'}: not a CA certificate that can be read (")
    trust.context(trust.Trust((tmp_path / "ca.crt",)), verify=False)  # unchecked: its CAs are not read
    with pytest.raises(FatalError) as info:
        trust.context(trust.Trust((), (tmp_path / "client.cert", tmp_path / "client.key")), verify=True)
    assert str(info.value).startswith(
        f"{tmp_path / 'client.cert'}: a client certificate that cannot be used ("
    )


def test_where_docker_looks_follows_the_environment(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "DOCKER_CONFIG": str(tmp_path / "cfg")}
    assert trust.certs_dirs(env) == (
        Path("/etc/docker/certs.d"),
        tmp_path / ".config" / "docker" / "certs.d",
        tmp_path / "cfg" / "certs.d",
    )
    assert trust.certs_dirs({"HOME": str(tmp_path), "XDG_CONFIG_HOME": "/x"})[1:] == (
        Path("/x/docker/certs.d"),
        tmp_path / ".docker" / "certs.d",
    )


def test_a_registry_with_a_company_ca_is_trusted_once_certs_d_holds_the_ca(
    certs: tuple[Certs, str], tmp_path: Path
) -> None:
    ca, address = certs
    with https_registry(ca, address) as host:
        refused = Registry({}, certs=(tmp_path / "empty",)).access(f"{host}/team/api")
        assert (refused.ok, refused.code) == (False, "untrusted")
        assert refused.detail.startswith(f"https://{host}/v2/: its certificate is not trusted here (")
        trusted = Registry({}, certs=(placed(ca, tmp_path / "certs.d", host),)).access(f"{host}/team/api")
        assert (trusted.ok, trusted.detail) == (True, f"https://{host}/v2/ answers")


def test_a_registry_that_wants_a_client_certificate_gets_the_one_certs_d_holds(
    certs: tuple[Certs, str], tmp_path: Path
) -> None:
    ca, address = certs
    with https_registry(ca, address, client_auth=True) as host:
        without = Registry({}, certs=(placed(ca, tmp_path / "ca-only", host),)).access(f"{host}/team/api")
        assert not without.ok
        mtls = Registry({}, certs=(placed(ca, tmp_path / "both", host, client=True),)).access(
            f"{host}/team/api"
        )
        assert (mtls.ok, mtls.detail) == (True, f"https://{host}/v2/ answers")


def test_a_ca_only_the_client_trusts_is_found_before_the_engine_refuses_it(
    certs: tuple[Certs, str], tmp_path: Path
) -> None:
    """The engine uploads, and reads only the daemon's certs.d: a CA in ~/.docker/certs.d alone
    lets `docker login` work and every push fail."""
    ca, address = certs
    with https_registry(ca, address) as host:
        client, engine = placed(ca, tmp_path / "client", host), tmp_path / "engine"
        said = Registry({}, certs=(engine, client), engine_certs=(engine,)).engine_distrust(
            f"{host}/team/api"
        )
        assert said is not None and said.startswith(f"the engine here would not trust {host}'s certificate")
        assert said.endswith(f"it reads its CAs from {engine / host}")
        both = Registry({}, certs=(placed(ca, engine, host), client), engine_certs=(engine,))
        assert both.engine_distrust(f"{host}/team/api") is None
    with https_registry(ca, "127.0.0.1") as host:  # insecure to Docker: its certificate is not checked
        assert Registry({}, certs=(client,), engine_certs=(tmp_path,)).engine_distrust(f"{host}/x") is None


def test_a_plain_http_registry_the_engine_would_not_speak_to_is_said_with_the_fix(
    certs: tuple[Certs, str], tmp_path: Path
) -> None:
    """Docker speaks plain HTTP only to the registries in its insecure list (and loopback)."""
    _ca, address = certs
    with http_registry(address) as host:
        refused = Registry({}, certs=(tmp_path,)).access(f"{host}/team/api")
        assert refused == Access(False, "plain-http",
                                 f"{host} speaks plain HTTP only, and the engine's insecure registries lack it")  # fmt: skip
        listed = Registry({}, certs=(tmp_path,), insecure=((host,), ())).access(f"{host}/team/api")
        assert (listed.ok, listed.detail) == (True, f"http://{host}/v2/ answers")
        told_later = Registry({}, certs=(tmp_path,))
        assert not told_later.access(f"{host}/team/api").ok
        told_later.insecure = ((host,), ())  # the daemon's list, as readiness hands it on later
        assert told_later.access(f"{host}/team/api").ok


def test_an_insecure_registry_is_asked_over_https_first_and_its_certificate_not_checked(
    certs: tuple[Certs, str], tmp_path: Path
) -> None:
    """Docker's rule for loopback and its insecure-registries list: TLS when the registry speaks
    it (whoever signed it), plain HTTP when it does not."""
    ca, _address = certs
    with https_registry(ca, "127.0.0.1") as host:  # a certificate for another address: not checked
        found = Registry({}, certs=(tmp_path,)).access(f"{host}/team/api")
        assert (found.ok, found.detail) == (True, f"https://{host}/v2/ answers")


@pytest.mark.lab
def test_a_plain_http_registry_on_the_network_is_refused_before_any_build_with_the_fix(
    lab: Lab, repo: Repo, certs: tuple[Certs, str], tmp_path: Path
) -> None:
    """Not loopback, not in the lab engine's insecure list: the engine would not push to it."""
    _ca, address = certs
    registry = start_registry(tmp_path / "registry", address=f"{address}:{free_port()}")
    try:
        repo.commit({
            "pyproject.toml": f'[tool.multiarch]\nplatforms = ["linux/amd64"]\nregistry = "{registry.address}/team"\n'
                              'push = true\n[tool.multiarch.images.api]\ncontext = "api"\n',
            "api/Dockerfile": f"FROM {lab.busybox}\nRUN echo {uuid.uuid4().hex} > /salt\n",
        })  # fmt: skip
        doctor = mab(repo.path, lab.env, "doctor", "--json")
        assert doctor.returncode == 1, doctor.stdout + doctor.stderr
        check = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}["registry"]
        assert (check["status"], check["code"]) == ("fail", "registry-plain-http")
        assert f'"insecure-registries": ["{registry.address}"]' in check["fix"]
        push = mab(repo.path, lab.env, "--all", "--publish")
        assert push.returncode == 1 and "speaks plain HTTP only" in push.stderr, push.stdout
    finally:
        registry.stop()


@pytest.mark.lab
def test_doctor_and_the_gate_stop_at_a_ca_the_engine_lacks(
    lab: Lab, repo: Repo, certs: tuple[Certs, str], tmp_path: Path
) -> None:
    ca, address = certs
    registry = start_registry(tmp_path / "registry", address=f"{address}:{free_port()}", tls=ca.server)
    try:
        env = registry.docker_config(lab, tmp_path / "docker-config", logged_in=False)
        placed(ca, Path(env["DOCKER_CONFIG"]) / "certs.d", registry.address)  # the client's only
        repo.commit({
            "pyproject.toml": f'[tool.multiarch]\nplatforms = ["linux/amd64"]\nregistry = "{registry.address}/team"\n'
                              'push = true\n[tool.multiarch.images.api]\ncontext = "api"\n',
            "api/Dockerfile": f"FROM {lab.busybox}\nRUN echo {uuid.uuid4().hex} > /salt\n",
        })  # fmt: skip
        doctor = mab(repo.path, env, "doctor", "--json")
        assert doctor.returncode == 1, doctor.stdout + doctor.stderr
        check = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}["registry"]
        assert (check["status"], check["code"]) == ("fail", "registry-engine-untrusted")
        assert f"/etc/docker/certs.d/{registry.address}/" in check["fix"]
        push = mab(repo.path, env, "--all", "--publish")
        assert push.returncode == 1 and "the engine here would not trust" in push.stderr, push.stdout
        assert "building" not in push.stderr.split("the engine here would not trust")[0].lower()
    finally:
        registry.stop()


def test_a_builder_trusts_what_its_own_buildkitd_toml_holds(certs: tuple[Certs, str], tmp_path: Path) -> None:
    """A docker-container builder's BuildKit reads CAs and client certificates from its
    buildkitd.toml (as buildx stored them), not from certs.d, which the client trusts."""
    ca, address = certs
    trusted = Registry({}, certs=(placed(ca, tmp_path / "certs.d", address),))
    pem = ca.ca.read_bytes()
    with https_registry(ca, address) as host:
        ref = f"{host}/team/api"
        finding, entry = trusted.builder_distrust(ref, RegistrySettings(), "intranet") or ("", "")
        assert finding.startswith(f"builder intranet's BuildKit would not trust {host}'s certificate (")
        assert (
            entry
            == f'ca = ["/etc/docker/certs.d/{host}/ca.crt"] (and a [[registry."{host}".keypair]] for mTLS)'
        )
        assert trusted.builder_distrust(ref, RegistrySettings(authorities=(pem,)), "intranet") is None
        assert trusted.builder_distrust(ref, RegistrySettings(insecure=True), "intranet") is None
        assert (
            trusted.builder_distrust(ref, RegistrySettings(unread=("/in/the/image.crt",)), "intranet") is None
        )
        plain = trusted.builder_distrust(ref, RegistrySettings(http=True), "intranet")
        assert plain == (f"builder intranet's BuildKit would speak plain HTTP to {host} (a loopback address, or "
                         f"`http = true`), which speaks TLS", "insecure = true")  # fmt: skip
    with https_registry(ca, address, client_auth=True) as host:
        mtls = Registry({}, certs=(placed(ca, tmp_path / "mtls", host, client=True),))
        keypair = (ca.client[0].read_bytes(), ca.client[1].read_bytes())
        assert mtls.builder_distrust(f"{host}/t/a", RegistrySettings(authorities=(pem,)), "b") is not None
        assert (
            mtls.builder_distrust(f"{host}/t/a", RegistrySettings(authorities=(pem,), client=keypair), "b")
            is None
        )


def test_a_builder_and_a_plain_http_registry(certs: tuple[Certs, str], tmp_path: Path) -> None:
    _ca, address = certs
    with http_registry(address) as host:
        listed = Registry({}, certs=(tmp_path,), insecure=((host,), ()))  # as the builder's toml relaxes it
        assert listed.builder_distrust(f"{host}/t/a", RegistrySettings(http=True), "b") is None
        assert listed.builder_distrust(f"{host}/t/a", RegistrySettings(insecure=True), "b") == (
            f"{host} speaks plain HTTP only, and builder b's BuildKit would speak HTTPS to it",
            "http = true",
        )
    with http_registry("127.0.0.1") as host:  # loopback: BuildKit speaks plain HTTP to it unasked
        assert (
            Registry({}, certs=(tmp_path,)).builder_distrust(f"{host}/t/a", RegistrySettings(), "b") is None
        )
