"""buildx builders and their nodes, read from `docker buildx ls --format json` or `inspect`."""

from __future__ import annotations

import base64
import binascii
import json
from typing import NamedTuple

from mab_hook.platforms import covers

# Drivers whose builders may build several platforms in one invocation. The `docker` driver
# can too, but only on an engine with the containerd image store.
MULTI_PLATFORM_DRIVERS = ("docker-container", "kubernetes", "remote")
LOCAL_DRIVERS = ("docker", "docker-container")


def flag(builder: str | None) -> tuple[str, ...]:
    """buildx's `--builder NAME`, or nothing for the current builder."""
    return ("--builder", builder) if builder else ()


class Node(NamedTuple):
    name: str
    endpoint: str
    status: str  # running, inactive, stopped, error ...
    platforms: tuple[str, ...]
    buildkit: str = ""
    driver_opts: tuple[tuple[str, str], ...] = ()  # `--driver-opt`s it was created with
    # What buildx copied into the node's BuildKit at creation: `buildkitd.toml` and the files it
    # names (`certs/<host>/ca.crt` ...), by their path under /etc/buildkit.
    files: tuple[tuple[str, bytes], ...] = ()

    def driver_opt(self, key: str) -> str | None:
        return dict(self.driver_opts).get(key)


class Builder(NamedTuple):
    name: str
    driver: str
    nodes: tuple[Node, ...]

    def node_is_local(self, node: Node) -> bool:
        """Whether the node's BuildKit runs on this machine's kernel (so our binfmt_misc counts)."""
        if self.driver not in LOCAL_DRIVERS:
            return False
        return not node.endpoint.startswith(("tcp://", "ssh://", "https://", "http://"))

    def recreate_text(
        self, *, use: bool = False, option: tuple[str, str] | None = None, config: str = ""
    ) -> str:
        """`docker buildx rm` and `create` again with the driver options it has (buildx reads
        them, and a buildkitd.toml, at creation only), `option` among them."""
        options = dict(self.nodes[0].driver_opts if self.nodes else ())
        options.update([option] if option else [])
        spec = BuilderSpec(self.name, self.driver, tuple(sorted(options.items())))
        return f"docker buildx rm {self.name} && {spec.command_text(use=use, config=config)}"

    @property
    def running(self) -> bool:
        return bool(self.nodes) and all(node.status == "running" for node in self.nodes)


class NodeSpec(NamedTuple):
    name: str
    endpoint: str  # ssh://user@host, tcp://host:port, a docker context, kubernetes:///...
    platforms: tuple[str, ...]  # what the node builds (natively, say: an arm64 machine)


class BuilderSpec(NamedTuple):
    """A builder as [tool.multiarch.builder] describes it, for `doctor --fix` to create."""

    name: str
    driver: str
    driver_opts: tuple[tuple[str, str], ...] = ()
    nodes: tuple[NodeSpec, ...] = ()

    def create_commands(self, *, use: bool = False) -> list[tuple[str, ...]]:
        """`docker buildx create` for the first node (or the local engine), then `--append`s.
        `use`: make it the current builder (only where there is none: a named builder is passed
        as `--builder`, and the user's current one is theirs)."""
        opts = tuple(arg for key, value in self.driver_opts for arg in ("--driver-opt", f"{key}={value}"))
        commands = []
        nodes = self.nodes or (NodeSpec(f"{self.name}0", "", ()),)
        for number, node in enumerate(nodes):
            cmd: tuple[str, ...] = ("docker", "buildx", "create", "--name", self.name, "--node", node.name)
            cmd += ("--driver", self.driver, *opts) if number == 0 else ("--append",)
            if node.platforms:
                cmd += ("--platform", ",".join(node.platforms))
            cmd += ("--use",) if number == 0 and use else ()
            commands.append(cmd + ((node.endpoint,) if node.endpoint else ()))
        commands.append(("docker", "buildx", "inspect", "--bootstrap", self.name))
        return commands

    def command_text(self, *, use: bool = False, config: str = "") -> str:
        """The create command as a fix says it: one line for a builder on the local engine, the
        whole sequence for one with nodes elsewhere. `config`: a buildkitd.toml to give it."""
        if self.nodes:
            return " && ".join(" ".join(cmd) for cmd in self.create_commands(use=use))
        opts = "".join(f" --driver-opt {key}={value}" for key, value in self.driver_opts)
        opts += f" --buildkitd-config {config}" if config else ""
        opts += " --use" if use else ""
        return f"docker buildx create --name {self.name} --driver {self.driver}{opts} --bootstrap"

    def with_image(self, image: str | None) -> BuilderSpec:
        """A docker-container builder runs BuildKit from `image` (an intranet's copy of
        moby/buildkit) unless its driver options name one already; None: buildx's default."""
        if (
            image is None
            or self.driver != "docker-container"
            or any(k == "image" for k, _ in self.driver_opts)
        ):
            return self
        return self._replace(driver_opts=tuple(sorted((*self.driver_opts, ("image", image)))))


def parse_ls_json(text: str) -> tuple[Builder, ...]:
    """One JSON object per line (buildx >= 0.13); a builder may be listed twice."""
    builders: dict[str, Builder] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        data = json.loads(line)
        nodes = tuple(
            Node(
                name=node.get("Name", ""),
                endpoint=node.get("Endpoint", ""),
                status=node.get("Status", ""),
                platforms=tuple(node.get("Platforms") or ()),
                buildkit=node.get("Version", ""),
                driver_opts=_pairs(node.get("DriverOpts") or {}),
                files=_files(node.get("Files") or {}),
            )
            for node in data.get("Nodes") or ()
        )
        builders.setdefault(data["Name"], Builder(data["Name"], data.get("Driver", ""), nodes))
    return tuple(builders.values())


def _pairs(options: dict[str, object]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((str(key), str(value)) for key, value in options.items()))


def _files(listed: dict[str, str]) -> tuple[tuple[str, bytes], ...]:
    """buildx lists them base64-encoded; one that is not is left out, not guessed at."""
    found = []
    for path, encoded in sorted(listed.items()):
        try:
            found.append((str(path), base64.b64decode(encoded, validate=True)))
        except (binascii.Error, TypeError, ValueError):
            continue
    return tuple(found)


def parse_inspect(text: str) -> Builder:
    """`docker buildx inspect` text, tolerant of label changes (`Buildkit:`, `BuildKit version:`)."""
    name = driver = ""
    nodes: list[dict[str, str]] = []
    in_nodes = False
    for raw in text.splitlines():
        if not raw or raw.startswith(" "):
            continue  # labels and other indented detail
        key, _, value = raw.partition(":")
        key, value = key.strip().lower(), value.strip()
        if key == "nodes":
            in_nodes = True
        elif key == "name" and in_nodes:
            nodes.append({"name": value})
        elif key in ("name", "driver") and not in_nodes:
            name, driver = (value, driver) if key == "name" else (name, value)
        elif in_nodes and nodes:
            nodes[-1][key] = value
    return Builder(name, driver, tuple(_node(node) for node in nodes))


def _node(fields: dict[str, str]) -> Node:
    platforms = tuple(p.strip().rstrip("*") for p in fields.get("platforms", "").split(",") if p.strip())
    buildkit = fields.get("buildkit version") or fields.get("buildkit", "")
    return Node(fields["name"], fields.get("endpoint", ""), fields.get("status", ""), platforms, buildkit)


def lists(platforms: tuple[str, ...], wanted: str) -> bool:
    """Whether a node's platform list has `wanted` (linux/amd64 also serves linux/amd64/v2...)."""
    return any(covers(listed, wanted) for listed in platforms)
