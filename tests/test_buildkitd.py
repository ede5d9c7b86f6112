"""A builder's own BuildKit registry settings, read from what `docker buildx ls --format json`
lists (recorded on the lab: a docker-container builder created with `--buildkitd-config`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mab_hook import builders, buildkitd
from mab_hook.builders import Builder, Node
from mab_hook.buildkitd import RegistrySettings
from mab_hook.readiness.engine import insecure_registries
from tests.readiness.recorded import host

RECORDED = Path(__file__).parent / "fixtures" / "buildx" / "ls-docker-container.json"


def recorded_files() -> dict[str, bytes]:
    intranet = {b.name: b for b in builders.parse_ls_json(RECORDED.read_text())}["intranet"]
    return dict(intranet.nodes[0].files)


def test_what_buildx_stored_is_read_per_registry() -> None:
    files = recorded_files()
    ca = files["certs/registry.internal_5000/ca.crt"]
    assert ca.startswith(b"-----BEGIN CERTIFICATE-----")
    assert buildkitd.registry(files, "registry.internal:5000") == RegistrySettings(authorities=(ca,))
    assert buildkitd.registry(files, "plain.internal:5000") == RegistrySettings(http=True)
    assert buildkitd.registry(files, "docker.io").mirrors == ("mirror.internal:5000",)
    assert buildkitd.registry(files, "elsewhere:5000") == RegistrySettings()
    assert buildkitd.relaxed([files, {}]) == ("plain.internal:5000",)


def test_a_keypair_and_files_buildx_did_not_copy() -> None:
    toml = b"""
[registry."mtls.internal"]
  ca = ["/etc/buildkit/certs/mtls.internal/ca.crt", "/usr/local/share/ca.crt"]
  [[registry."mtls.internal".keypair]]
    cert = "/etc/buildkit/certs/mtls.internal/client.crt"
    key = "/etc/buildkit/certs/mtls.internal/client.key"
[registry."half.internal"]
  insecure = true
  [[registry."half.internal".keypair]]
    cert = "/etc/buildkit/certs/half.internal/client.crt"
    key = "/etc/buildkit/certs/half.internal/client.key"
"""
    files = {"buildkitd.toml": toml, "certs/mtls.internal/ca.crt": b"CA", "certs/mtls.internal/client.crt": b"C",
             "certs/mtls.internal/client.key": b"K", "certs/half.internal/client.crt": b"C2"}  # fmt: skip
    assert buildkitd.registry(files, "mtls.internal") == RegistrySettings(
        authorities=(b"CA",), client=(b"C", b"K"), unread=("/usr/local/share/ca.crt",)
    )
    half = buildkitd.registry(files, "half.internal")
    assert (half.insecure, half.client, half.unread) == (
        True,
        None,
        ("/etc/buildkit/certs/half.internal/client.key",),
    )
    assert buildkitd.relaxed([files]) == ("half.internal",)


@pytest.mark.parametrize("toml", [b"not [toml", b"registry = 3", b'[registry]\n"x" = 1', b"\xff\xfe",
                                  b'[registry."x"]\n  keypair = ["not a table"]\n  ca = "not a list"'])  # fmt: skip
def test_a_config_that_says_nothing_readable_is_no_settings(toml: bytes) -> None:
    assert buildkitd.registry({"buildkitd.toml": toml}, "x") == RegistrySettings()
    assert buildkitd.relaxed([{"buildkitd.toml": toml}]) == ()


@pytest.mark.parametrize(("settings", "loopback", "schemes"), [
    (RegistrySettings(), False, ("https",)),
    (RegistrySettings(), True, ("http",)),  # BuildKit speaks plain HTTP to loopback unless told
    (RegistrySettings(http=False), True, ("https",)),
    (RegistrySettings(http=True), False, ("http",)),
    (RegistrySettings(insecure=True), False, ("https-unverified",)),
    (RegistrySettings(insecure=True), True, ("https-unverified", "http")),
    (RegistrySettings(http=True, insecure=True), False, ("https-unverified", "http")),
    (RegistrySettings(http=False, insecure=True), True, ("https-unverified",)),
])  # fmt: skip
def test_how_buildkit_speaks_to_a_registry(
    settings: RegistrySettings, loopback: bool, schemes: tuple[str, ...]
) -> None:
    assert settings.schemes(loopback) == schemes


@pytest.mark.parametrize(("driver", "relaxed"), [("kubernetes", ("plain.internal:5000",)),
                                                  ("docker-container", ("plain.internal:5000",)), ("docker", None)])  # fmt: skip
def test_which_builders_read_their_own_buildkitd_toml(
    tmp_path: Path, driver: str, relaxed: tuple[str, ...] | None
) -> None:
    """Only the docker driver's BuildKit is the engine's, with the daemon's insecure list."""
    node = Node("n0", "unix:///var/run/docker.sock", "running", (), files=tuple(recorded_files().items()))
    found = insecure_registries(host(tmp_path), Builder("b", driver, (node,)))
    assert found == (
        (relaxed, ()) if relaxed else (("plain.internal:5000",), ("127.0.0.0/8", "10.20.0.0/16"))
    )
