"""Which mirrors serve Docker Hub to the builds: the engine's or the builder's own."""

from __future__ import annotations

from mab_hook import mirrors
from mab_hook.builders import Builder, Node


def test_the_engines_registry_mirrors_as_docker_info_lists_them() -> None:
    said = [
        "https://mirror.internal:5000/",
        "http://plain.internal",
        "https://with.path/dockerhub",
        "ftp://x",
        3,
    ]
    assert mirrors.from_engine(said) == ("https://mirror.internal:5000", "http://plain.internal")
    assert mirrors.from_engine(None) == () and mirrors.from_engine("https://x") == ()


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
