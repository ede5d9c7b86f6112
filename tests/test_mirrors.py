"""Which mirrors serve Docker Hub to the builds: the engine's or the builder's own."""

from __future__ import annotations

import json

from mab_hook import mirrors
from mab_hook.builders import Builder, Node
from tests.readiness.recorded import INSPECT_CONTAINER, INSPECT_DOCKER, LS_CONTAINER, fake_run

# As written: the command docker is asked, never a name for it.
INFO = ("docker", "info", "--format", "{{json .RegistryConfig.Mirrors}}")


def test_the_engines_registry_mirrors_for_the_docker_driver() -> None:
    said = [
        "https://mirror.internal:5000/",
        "http://plain.internal",
        "https://with.path/dockerhub",
        "ftp://x",
        3,
    ]
    run = fake_run({("docker", "buildx", "inspect"): (0, INSPECT_DOCKER), INFO: (0, json.dumps(said))})
    assert mirrors.lookup(run, None) == ("https://mirror.internal:5000", "http://plain.internal")
    assert mirrors.from_engine(None) == () and mirrors.from_engine("https://x") == ()


def test_a_docker_container_builders_own_mirrors() -> None:
    """The recorded builder's buildkitd.toml: mirrors = ["mirror.internal:5000"] for docker.io."""
    run = fake_run({("docker", "buildx", "inspect", "intranet"): (0, INSPECT_CONTAINER),
                    ("docker", "buildx", "ls", "--format", "json"): (0, LS_CONTAINER)})  # fmt: skip
    assert mirrors.lookup(run, "intranet") == ("https://mirror.internal:5000",)


def test_docker_that_cannot_say_means_no_mirror() -> None:
    run = fake_run({("docker", "buildx", "inspect"): (1, "", "no builder"), INFO: (1, "", "no engine")})
    assert mirrors.lookup(run, None) == ()
    garbled = fake_run({("docker", "buildx", "inspect"): (0, INSPECT_DOCKER), INFO: (0, "<no value>")})
    assert mirrors.lookup(garbled, None) == ()


def test_a_builders_mirror_is_spoken_to_as_its_own_section_says() -> None:
    toml = b"""
[registry."docker.io"]
  mirrors = ["hub.internal", "harbor.internal/v2/hub", "127.0.0.1:5001", "plain.internal:5000"]
[registry."plain.internal:5000"]
  http = true
"""
    node = Node("b0", "unix:///var/run/docker.sock", "running", (), files=(("buildkitd.toml", toml),))
    other = b'[registry."docker.io"]\n  mirrors = ["hub.internal", "second.internal"]\n'
    appended = Node("b1", "ssh://arm-box", "running", (), files=(("buildkitd.toml", other),))
    assert mirrors.from_builder(Builder("b", "docker-container", (node, appended))) == (
        "https://hub.internal", "http://127.0.0.1:5001", "http://plain.internal:5000", "https://second.internal")  # fmt: skip
