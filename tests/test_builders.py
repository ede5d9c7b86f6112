"""buildx builders: parsed from `buildx ls --format json` and `inspect`, created node by node."""

from __future__ import annotations

from mab_hook import builders
from tests.readiness.recorded import FIXTURES, INSPECT_DOCKER, LS_DOCKER


def test_parse_ls_json_deduplicates() -> None:
    found = builders.parse_ls_json(LS_DOCKER)
    assert [b.name for b in found] == ["default"]
    assert "linux/arm64" in found[0].nodes[0].platforms


def test_parse_inspect_old_and_new_labels() -> None:
    new = builders.parse_inspect(INSPECT_DOCKER)
    assert (new.name, new.driver, new.nodes[0].buildkit, new.nodes[0].status) == (
        "default",
        "docker",
        "v0.0.0+unknown",
        "running",
    )
    old = builders.parse_inspect((FIXTURES / "inspect-multi-node-old-label.txt").read_text())
    assert [(n.name, n.buildkit, n.platforms[0]) for n in old.nodes] == [
        ("fleet0", "v0.11.6", "linux/amd64"), ("fleet1", "v0.11.6", "linux/arm64")]  # fmt: skip


def test_a_configured_builder_is_created_node_by_node() -> None:
    spec = builders.BuilderSpec(
        "fleet", "docker-container", (("network", "host"),),
        (builders.NodeSpec("local", "", ("linux/amd64",)),
         builders.NodeSpec("arm", "ssh://builder@arm-box.internal", ("linux/arm64", "linux/arm/v7"))),
    )  # fmt: skip
    assert spec.create_commands() == [
        ("docker", "buildx", "create", "--name", "fleet", "--node", "local", "--driver", "docker-container",
         "--driver-opt", "network=host", "--platform", "linux/amd64"),
        ("docker", "buildx", "create", "--name", "fleet", "--node", "arm", "--append", "--platform",
         "linux/arm64,linux/arm/v7", "ssh://builder@arm-box.internal"),
        ("docker", "buildx", "inspect", "--bootstrap", "fleet"),
    ]  # fmt: skip
