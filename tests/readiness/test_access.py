"""Readiness of the registry pushed to."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mab_hook import readiness
from mab_hook.buildkitd import RegistrySettings
from mab_hook.readiness import FAIL, OK, WARN, Check, Wanted
from mab_hook.readiness.model import INFO
from mab_hook.registry import Access, Insecure
from tests.readiness.recorded import INSPECT_CONTAINER, LS_CONTAINER, by_name, docker, host


def test_the_registry_is_asked_with_the_daemons_insecure_registries(tmp_path: Path) -> None:
    asked: list[tuple[str, Insecure]] = []
    report = readiness.check(
        host(tmp_path, asked=asked), Wanted(("linux/amd64",), registry="plain.internal:5000/t/api")
    )
    assert by_name(report)["registry"] == Check("registry", OK, "answers")
    assert asked == [
        ("plain.internal:5000/t/api", (("plain.internal:5000",), ("127.0.0.0/8", "10.20.0.0/16")))
    ]
    assert report.insecure == asked[0][1]  # handed on to the builds' registry gateway


@pytest.mark.parametrize(("code", "fix"), [
    ("no-credentials", "`docker login registry.internal`"),
    ("refused", "`docker login registry.internal` with credentials that may push there"),
    ("unreachable", "check the address in [tool.multiarch] registry and that the registry runs"),
    ("error", "check the registry address and its health"),
    ("plain-http", 'serve it over HTTPS, or add it to the engine\'s insecure registries: "insecure-registries": '
                   '["registry.internal"] in /etc/docker/daemon.json, then restart dockerd'),
    ("untrusted", "put the CA certificate that signed it in /etc/docker/certs.d/registry.internal/ca.crt (the "
                  "engine, which uploads, reads it there) and in ~/.docker/certs.d/registry.internal/ca.crt, as "
                  "Docker's docs say"),
])  # fmt: skip
def test_registry_problems_and_their_fixes(tmp_path: Path, code: str, fix: str) -> None:
    found = host(tmp_path, access=Access(False, code, f"it said {code}"))
    check = by_name(readiness.check(found, Wanted(("linux/amd64",), registry="registry.internal/team/api")))[
        "registry"
    ]
    assert check == Check("registry", FAIL, f"it said {code}", fix, f"registry-{code}")


def test_an_engine_here_that_would_refuse_the_registrys_certificate_fails_the_check(tmp_path: Path) -> None:
    """Only for an engine on this machine, whose certs.d can be read here; and only when the
    client itself reached the registry."""
    wanted = Wanted(("linux/amd64",), registry="registry.internal/team/api")
    distrusting = host(tmp_path).\
        _replace(engine_distrust=lambda reference, insecure: f"would not trust {reference}")  # fmt: skip
    check = by_name(readiness.check(distrusting, wanted))["registry"]
    assert check == Check("registry", FAIL, "would not trust registry.internal/team/api",
                          "put the CA certificate as ca.crt in /etc/docker/certs.d/registry.internal/ (the engine "
                          "uploads, and reads it there; no restart needed)", "registry-engine-untrusted")  # fmt: skip
    unreached = distrusting._replace(access=lambda reference, insecure: Access(False, "refused", "no"))
    assert by_name(readiness.check(unreached, wanted))["registry"].code == "registry-refused"
    elsewhere = host(tmp_path / "2", hostname="another-machine")._replace(
        engine_distrust=distrusting.engine_distrust
    )
    assert by_name(readiness.check(elsewhere, wanted))["registry"].status == OK  # its certs.d is not here


def intranet_builder(tmp_path: Path, asked: list[tuple[str, Insecure]] | None = None) -> readiness.Host:
    answers = docker()
    answers["docker", "buildx", "inspect", "intranet"] = (0, INSPECT_CONTAINER)
    answers["docker", "buildx", "ls", "--format", "json"] = (0, LS_CONTAINER)
    return host(tmp_path, answers, asked=asked)


def test_a_docker_container_builder_is_judged_by_its_own_buildkitd_toml(tmp_path: Path) -> None:
    """Its BuildKit ignores the engine's certs.d and insecure list: the registries its toml
    relaxes are the insecure ones, and its CAs are what the certificate is checked with."""
    asked: list[tuple[str, Insecure]] = []
    judged: list[tuple[str, RegistrySettings]] = []

    def distrust(
        reference: str, insecure: Insecure, settings: RegistrySettings, builder: str
    ) -> tuple[str, str]:
        judged.append((reference, settings))
        return f"{builder} would not trust it", 'ca = ["x"]'

    found = intranet_builder(tmp_path, asked)._replace(builder_distrust=distrust)
    wanted = Wanted(("linux/amd64",), builder="intranet", registry="registry.internal:5000/team/api")
    report = readiness.check(found, wanted)
    check = by_name(report)["registry"]
    assert check == Check("registry", FAIL, "intranet would not trust it",
                          'add [registry."registry.internal:5000"] ca = ["x"] to a buildkitd.toml, then recreate it: '
                          "`docker buildx rm intranet && docker buildx create --name intranet --driver docker-container "
                          "--driver-opt image=mirror.internal/moby/buildkit:v0.16.0 --buildkitd-config buildkitd.toml "
                          "--bootstrap`", "registry-builder-untrusted")  # fmt: skip
    assert asked == [("mirror.internal:5000/library/busybox", (("plain.internal:5000",), ())),  # its mirror
                     ("registry.internal:5000/team/api", (("plain.internal:5000",), ()))]  # fmt: skip
    assert by_name(report)["mirror"] == Check(
        "mirror",
        OK,
        "Docker Hub through https://mirror.internal:5000 (builder intranet's buildkitd.toml): answers",
    )
    assert report.insecure == (("plain.internal:5000",), ())  # not the daemon's list
    assert [(ref, settings.authorities[0][:27]) for ref, settings in judged] == [
        ("registry.internal:5000/team/api", b"-----BEGIN CERTIFICATE-----")
    ]
    trusting = found._replace(builder_distrust=lambda *args: None)
    assert by_name(readiness.check(trusting, wanted))["registry"] == Check("registry", OK, "answers")


def test_a_loopback_registry_is_out_of_reach_of_a_builder_in_a_container(tmp_path: Path) -> None:
    wanted = Wanted(("linux/amd64",), builder="intranet", registry="127.0.0.1:5000/team/api")
    check = by_name(readiness.check(intranet_builder(tmp_path), wanted))["registry"]
    assert check == Check("registry", FAIL, "builder intranet's BuildKit runs in a container of its own, where "
                          "127.0.0.1:5000 is that container, not this machine",
                          "recreate it: `docker buildx rm intranet && docker buildx create --name intranet --driver "
                          "docker-container --driver-opt image=mirror.internal/moby/buildkit:v0.16.0 --driver-opt "
                          "network=host --bootstrap`", "registry-builder-loopback")  # fmt: skip


def test_the_engine_is_not_judged_for_a_builder_that_does_not_use_it(tmp_path: Path) -> None:
    engine_says = intranet_builder(tmp_path)._replace(
        engine_distrust=lambda reference, insecure: "engine: no"
    )
    wanted = Wanted(("linux/amd64",), builder="intranet", registry="registry.internal:5000/team/api")
    assert by_name(readiness.check(engine_says, wanted))["registry"].status == OK


def test_the_mirror_that_serves_docker_hub_is_named_and_asked(tmp_path: Path) -> None:
    """The engine's registry-mirrors (docker info), for the docker driver: a mirror that does not
    answer is a warning (the engine falls back to Docker Hub, which an intranet may not reach)."""
    answers = docker()
    mirrored = json.loads(answers[INFO][1])
    mirrored["RegistryConfig"]["Mirrors"] = ["http://mirror.internal:5000/", "https://hub.internal/"]
    answers[INFO] = (0, json.dumps(mirrored))
    asked: list[tuple[str, Insecure]] = []
    check = by_name(readiness.check(host(tmp_path, answers, asked=asked), Wanted(("linux/amd64",))))["mirror"]
    assert check == Check("mirror", OK, "Docker Hub through http://mirror.internal:5000 (the engine's "
                          "registry-mirrors): answers")  # fmt: skip
    assert asked[0][0] == "mirror.internal:5000/library/busybox"
    assert "mirror.internal:5000" in asked[0][1][0]  # spoken to over plain HTTP, as the engine's URL says
    down = host(tmp_path / "2", answers, access=Access(False, "unreachable", "it does not answer"))
    warned = by_name(readiness.check(down, Wanted(("linux/amd64",))))["mirror"]
    assert warned == Check("mirror", WARN, "Docker Hub's mirror (the engine's registry-mirrors) does not answer: "
                           "it does not answer; it does not answer", "check that http://mirror.internal:5000 runs and "
                           "that docker is logged in to it if it wants credentials; or take it out of the engine's "
                           "registry-mirrors", "mirror-down")  # fmt: skip
    plain = by_name(readiness.check(host(tmp_path / "3"), Wanted(("linux/amd64",))))["mirror"]
    assert plain == Check("mirror", OK, "Docker Hub directly: no mirror is set up for it")
