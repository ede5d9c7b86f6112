"""The check of what was built, fast: staging uploads made as BuildKit pushes them (an index, a
manifest and config per platform, gzip tar layers holding real ELF headers) in the in-memory
registry, read over HTTP by mab-hook's own client. The same against the lab: the `lab` tests of
test_platform_check.py below."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import os
import tarfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from mab_hook import platform_check
from mab_hook.coverage import REGISTRY, Found
from mab_hook.images import Image
from mab_hook.inputs import Pull
from mab_hook.platform_check import Checked, Finding
from mab_hook.registry import Registry, RegistryError
from mab_hook.state import KeptByDigest
from tests.conftest import Lab, Repo, mab
from tests.engine import CONFIG, INDEX, MANIFEST, OciRegistry
from tests.test_executables import elf

GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
AMD64, ARM64 = "linux/amd64", "linux/arm64"
IMAGE = Image("web", "web", "web/Dockerfile", (AMD64, ARM64))


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar_layer(files: Mapping[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return gzip.compress(out.getvalue())


class Upload:
    """Puts images into a repository of the registry as BuildKit pushes them."""

    def __init__(self, registry: OciRegistry, repository: str = "team/mab-staging/web") -> None:
        self.registry, self.repository = registry, repository

    def blob(self, data: bytes) -> str:
        self.registry.blobs[(self.repository, _sha(data))] = data
        return _sha(data)

    def image(
        self, platform: str, layers: Sequence[bytes | tuple[str, bytes]], config_says: str = ""
    ) -> dict[str, object]:
        os_, *rest = (config_says or platform).split("/")  # "linux" alone: a config naming no architecture
        arch, variant = [*rest, "", ""][:2]
        config = json.dumps(
            {
                "os": os_,
                **({"architecture": arch} if arch else {}),
                **({"variant": variant} if variant else {}),
            }
        ).encode()
        described = []
        for layer in layers:
            media_type, data = layer if isinstance(layer, tuple) else (GZIP, layer)
            described.append({"mediaType": media_type, "digest": self.blob(data), "size": len(data)})
        manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST, "layers": described,
                               "config": {"mediaType": CONFIG, "digest": self.blob(config)}}).encode()  # fmt: skip
        digest = self.registry.put(self.repository, _sha(manifest), manifest, MANIFEST)
        listed = dict(zip(("os", "architecture", "variant"), platform.split("/"), strict=False))
        return {"mediaType": MANIFEST, "digest": digest, "size": len(manifest), "platform": listed}

    def index(self, tag: str, *entries: dict[str, object]) -> str:
        body = json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": list(entries)}).encode()
        self.registry.put(self.repository, tag, body, INDEX)
        return f"{self.registry.host}/{self.repository}:{tag}"


BASE = tar_layer(
    {"bin/busybox-amd64": elf("amd64"), "bin/busybox-arm64": elf("arm64")}
)  # the base's: not checked


@pytest.fixture
def oci() -> Iterator[OciRegistry]:
    with OciRegistry() as found:
        yield found


def check(oci: OciRegistry, staged: str, image: Image = IMAGE, base: Sequence[bytes] = (BASE,),
          kept: KeptByDigest | None = None) -> Checked:  # fmt: skip
    layers = {p: tuple(_sha(layer) for layer in base) for p in image.platforms}
    registry = Registry({"DOCKER_CONFIG": os.devnull})
    return platform_check.check(
        registry, staged, image, base_layers=layers, kept=kept or KeptByDigest(None, 10)
    )


def test_an_upload_whose_images_are_their_platforms_passes(oci: OciRegistry) -> None:
    up = Upload(oci)
    staged = up.index("mab-1", up.image(AMD64, [BASE, tar_layer({"app": elf("amd64")})]),
                      up.image(ARM64, [BASE, tar_layer({"app": elf("arm64")})]))  # fmt: skip
    assert check(oci, staged) == Checked(())


def test_a_build_platform_program_in_the_arm64_image_is_found_by_path_and_machine(oci: OciRegistry) -> None:
    up = Upload(oci)
    own = tar_layer({"usr/local/bin/app": elf("amd64"), "etc/app.conf": b"x" * 100})
    staged = up.index("mab-1", up.image(AMD64, [BASE, own]), up.image(ARM64, [BASE, own]))
    found = check(oci, staged)
    assert found == Checked((Finding(ARM64, "ELF 64-bit LSB, machine 0x3e (amd64)", "/usr/local/bin/app"),))
    assert str(found.findings[0]) == "linux/arm64: /usr/local/bin/app is ELF 64-bit LSB, machine 0x3e (amd64)"
    # The same program in the base's layers is the base's business: with no base known, it counts.
    assert check(oci, staged, base=()).findings[-1].path == "/usr/local/bin/app"
    assert {f.path for f in check(oci, staged, base=()).findings} == {"/bin/busybox-arm64", "/bin/busybox-amd64",
                                                                    "/usr/local/bin/app"}  # fmt: skip


def test_programs_carried_on_purpose_are_allowed_by_path(oci: OciRegistry) -> None:
    up = Upload(oci)
    own = tar_layer({"usr/lib/qemu/qemu-x86_64": elf("amd64"), "usr/bin/tool": elf("riscv64")})
    staged = up.index("mab-1", up.image(ARM64, [BASE, own]))
    image = dataclasses.replace(IMAGE, platforms=(ARM64,), foreign_binaries=("/usr/lib/qemu/**",))
    assert [f.path for f in check(oci, staged, image).findings] == ["/usr/bin/tool"]


def test_a_config_that_says_another_platform_and_platforms_missing_or_extra(oci: OciRegistry) -> None:
    up = Upload(oci)
    staged = up.index("mab-1", up.image(ARM64, [BASE], config_says=AMD64), up.image("linux/s390x", [BASE]))
    assert check(oci, staged).findings == (
        Finding(AMD64, "the upload has no image for it"),
        Finding("linux/s390x", "not one of the image's platforms (linux/amd64, linux/arm64)"),
        Finding(ARM64, "its config says linux/amd64"),
    )


def test_a_layer_in_a_compression_it_cannot_read_is_said_not_judged(oci: OciRegistry) -> None:
    up = Upload(oci)
    image = dataclasses.replace(IMAGE, platforms=(AMD64,))
    staged = up.index("mab-1", up.image(AMD64, [BASE, (ZSTD, b"(\xb5/\xfd...")]))
    found = check(oci, staged, image)
    assert found.findings == () and found.unread == (_sha(b"(\xb5/\xfd..."),)


def test_each_manifest_is_read_once_and_the_allow_list_applies_to_what_was_kept(
    oci: OciRegistry, tmp_path: Path
) -> None:
    up = Upload(oci)
    own = tar_layer({"opt/x86/tool": elf("amd64")})
    staged = up.index("mab-1", up.image(ARM64, [BASE, own]))
    image = dataclasses.replace(IMAGE, platforms=(ARM64,))
    kept = KeptByDigest(tmp_path / "truth.json", 10)
    assert [f.path for f in check(oci, staged, image, kept=kept).findings] == ["/opt/x86/tool"]
    kept.save()
    oci.requests.clear()
    again = KeptByDigest(tmp_path / "truth.json", 10)
    assert [f.path for f in check(oci, staged, image, kept=again).findings] == ["/opt/x86/tool"]
    assert [path for _method, path in oci.requests] == ["/v2/team/mab-staging/web/manifests/mab-1"]
    allowed = dataclasses.replace(image, foreign_binaries=("opt/x86",))
    assert check(oci, staged, allowed, kept=again) == Checked(())


def test_an_upload_whose_digest_is_known_from_the_proof_costs_no_request(oci: OciRegistry) -> None:
    up = Upload(oci)
    own = tar_layer({"app": elf("amd64")})
    staged = up.index("mab-1", up.image(AMD64, [BASE, own]), up.image(ARM64, [BASE, own]))
    kept = KeptByDigest(None, 10)
    first = check(oci, staged, kept=kept)
    oci.requests.clear()
    top = oci.digest(staged)
    assert top is not None
    registry = Registry({"DOCKER_CONFIG": os.devnull})
    again = platform_check.check(registry, staged, IMAGE, base_layers={}, kept=kept, digest=top)
    assert again == first and oci.requests == []
    # Judged for other platforms (a CI job's one), it is judged afresh.
    one = dataclasses.replace(IMAGE, platforms=(ARM64,))
    platform_check.check(registry, staged, one, base_layers={}, kept=kept, digest=top)
    assert oci.requests


def test_a_plain_upload_of_one_platform_is_that_platforms_image(oci: OciRegistry) -> None:
    up = Upload(oci)
    entry = up.image(ARM64, [BASE, tar_layer({"app": elf("amd64")})])
    oci.put(up.repository, "mab-plain", *oci.get(up.repository, "manifests", str(entry["digest"])))  # type: ignore[misc]
    one = dataclasses.replace(IMAGE, platforms=(ARM64,))
    staged = f"{oci.host}/{up.repository}:mab-plain"
    oci.requests.clear()
    assert [str(f) for f in check(oci, staged, one).findings] == [
        "linux/arm64: /app is ELF 64-bit LSB, machine 0x3e (amd64)"
    ]
    paths = [path for _method, path in oci.requests]
    assert len(paths) == len(set(paths)) == 3, paths  # the manifest, its config, the one own layer: once each
    assert [str(f) for f in check(oci, staged, IMAGE).findings] == [
        "linux/amd64: the upload has no image for it",
        "linux/arm64: /app is ELF 64-bit LSB, machine 0x3e (amd64)",
    ]


def test_variants_count_both_ways_in_the_index_and_in_the_config(oci: OciRegistry) -> None:
    up = Upload(oci)
    v7 = dataclasses.replace(IMAGE, platforms=("linux/arm/v7",))
    staged = up.index("mab-1", up.image("linux/arm/v6", [BASE]))
    assert [str(f) for f in check(oci, staged, v7).findings] == [
        "linux/arm/v7: the upload has no image for it",
        "linux/arm/v6: not one of the image's platforms (linux/arm/v7)",
    ]
    staged = up.index("mab-2", up.image("linux/arm/v7", [BASE], config_says="linux/arm/v6"))
    assert [str(f) for f in check(oci, staged, v7).findings] == ["linux/arm/v7: its config says linux/arm/v6"]


def test_an_image_whose_config_or_upload_is_gone_is_said(oci: OciRegistry) -> None:
    up = Upload(oci)
    entry = up.image(ARM64, [BASE])
    manifest = json.loads(oci.get(up.repository, "manifests", str(entry["digest"]))[0])  # type: ignore[index]
    del oci.blobs[(up.repository, manifest["config"]["digest"])]
    staged = up.index("mab-1", entry)
    one = dataclasses.replace(IMAGE, platforms=(ARM64,))
    assert [str(f) for f in check(oci, staged, one).findings] == [
        "linux/arm64: its config is not in the registry"
    ]
    with pytest.raises(
        RegistryError, match=r"^127\.0\.0\.1:\d+/team/mab-staging/web:mab-none is not in the registry$"
    ):
        check(oci, f"{oci.host}/{up.repository}:mab-none", one)
    gone = up.index("mab-2", dict(entry, digest="sha256:" + "0" * 64))
    with pytest.raises(
        RegistryError, match=r"^127\.0\.0\.1:\d+/team/mab-staging/web@sha256:0{64} is not in the registry$"
    ):
        check(oci, gone, one)
    nothing = up.index(
        "mab-3", up.image(ARM64, [BASE], config_says="linux")
    )  # a config naming no architecture
    assert [str(f) for f in check(oci, nothing, one).findings] == ["linux/arm64: its config says no platform"]


def test_an_index_is_known_by_what_it_holds_whatever_the_registry_calls_it(oci: OciRegistry) -> None:
    up = Upload(oci)
    up.index("mab-1", up.image(ARM64, [BASE, tar_layer({"app": elf("amd64")})]))
    body, _media_type = oci.get(up.repository, "manifests", "mab-1")  # type: ignore[misc]
    oci.put(up.repository, "mab-untyped", body, "application/octet-stream")
    one = dataclasses.replace(IMAGE, platforms=(ARM64,))
    assert [f.path for f in check(oci, f"{oci.host}/{up.repository}:mab-untyped", one).findings] == ["/app"]


def test_the_base_is_the_layers_the_image_starts_with_and_no_more(oci: OciRegistry) -> None:
    up = Upload(oci)
    tools = tar_layer({"usr/bin/qemu-x86_64": elf("amd64")})  # the base's second layer: the base's business
    own = tar_layer({"app": elf("amd64")})
    one = dataclasses.replace(IMAGE, platforms=(ARM64,))
    whole = up.index("mab-1", up.image(ARM64, [BASE, tools]))
    assert check(oci, whole, one, base=(BASE, tools)).findings == ()
    # A layer between the base's (the base changed since, say): from there on, every layer is the image's.
    between = up.index("mab-2", up.image(ARM64, [BASE, own, tools]))
    found = check(oci, between, one, base=(BASE, tools)).findings
    assert [f.path for f in found] == ["/app", "/usr/bin/qemu-x86_64"]
    # Only the layers it starts with: one that matches the base's again after a difference is the image's.
    other = tar_layer({"etc/other": b"x" * 100})
    assert [f.path for f in check(oci, between, one, base=(BASE, other, tools)).findings] == [
        "/app", "/usr/bin/qemu-x86_64"
    ]  # fmt: skip


def test_unread_layers_are_kept_with_the_findings(oci: OciRegistry) -> None:
    up = Upload(oci)
    zstd = (ZSTD, b"(\xb5/\xfd...")
    staged = up.index("mab-1", up.image(AMD64, [BASE, zstd]))
    one = dataclasses.replace(IMAGE, platforms=(AMD64,))
    kept = KeptByDigest(None, 10)
    first = check(oci, staged, one, kept=kept)
    top = oci.digest(staged)
    assert top is not None
    registry = Registry({"DOCKER_CONFIG": os.devnull})
    again = platform_check.check(registry, staged, one, base_layers={}, kept=kept, digest=top)
    assert again == first == Checked((), (_sha(zstd[1]),))
    oci.requests.clear()
    assert (
        check(oci, staged, one, kept=kept) == first
    )  # by each image's digest too: its layers not read again
    assert not any(_sha(zstd[1]) in path or "/blobs/" in path for _method, path in oci.requests)


def test_the_base_layers_of_each_platform_come_from_base_coverage() -> None:
    found = Found("sha256:b", (AMD64, "linux/arm64/v8"), False, REGISTRY,
                  ((AMD64, ("sha256:1",)), ("linux/arm64/v8", ("sha256:2", "sha256:3")), (ARM64, ("sha256:4",))))  # fmt: skip
    roots = (Pull("linux/s390x", "other", "linux/s390x", "FROM", 1, root=True),  # not looked up: first
             Pull(AMD64, "base:1", AMD64, "FROM", 1, root=True), Pull(ARM64, "base:1", ARM64, "FROM", 1, root=True),
             Pull("linux/arm/v7", "base:1", "linux/arm/v7", "FROM", 1, root=True))  # fmt: skip
    assert platform_check.base_layers(roots, {"base:1": found}) == {
        AMD64: ("sha256:1",), ARM64: ("sha256:2", "sha256:3")
    }  # fmt: skip


# --- against the lab: real builds, real uploads ------------------------------------------------------


def cross_project(lab: Lab, registry: str, *, right: bool, allow: str = "") -> dict[str, str]:
    """Cross-compilation's shape: a build stage on the build platform makes the program, the
    final stage (one per platform) takes it. Done wrong, the program is the build platform's."""
    build = (
        f"FROM {lab.busybox} AS build" if right else f"FROM --platform=$BUILDPLATFORM {lab.busybox} AS build"
    )
    return {
        "pyproject.toml": f'[tool.multiarch]\nplatforms = ["linux/amd64", "linux/arm64"]\nregistry = "{registry}"\n'
        f'push = true\ntags = ["{{short_sha}}"]\n[tool.multiarch.images.web]\ncontext = "web"\n{allow}',
        "web/Dockerfile": f"{build}\nRUN cp /bin/busybox /tool && echo {uuid.uuid4().hex}\n"
        f"FROM {lab.busybox}\nCOPY --from=build /tool /opt/tool/busybox\n",
    }


@pytest.mark.lab
def test_lab_a_build_platform_program_in_the_arm64_image_blocks_the_publish(lab: Lab, repo: Repo) -> None:
    registry = lab.namespace()
    repo.commit(cross_project(lab, registry, right=False))
    run = mab(repo.path, lab.env, "--all", "--publish", "--color", "never")
    assert run.returncode == 1, run.stdout + run.stderr
    said = "--- web: not the platform it claims: linux/arm64: /opt/tool/busybox is ELF 64-bit LSB, machine 0x3e (amd64)"
    assert said in run.stdout, run.stdout
    assert "an image is not the platform it claims" in run.stderr and "foreign-binaries" in run.stderr
    assert lab.tags(f"{registry}/web") == set()  # no public tag
    assert lab.tags(f"{registry}/mab-staging/web")  # the upload stays, judged
    again = mab(repo.path, lab.env, "--all", "--publish", "--color", "never")
    assert again.returncode == 1 and said in again.stdout, again.stdout  # reused, and judged the same
    assert lab.tags(f"{registry}/web") == set()


@pytest.mark.lab
def test_lab_the_same_done_right_publishes_every_platform(lab: Lab, repo: Repo) -> None:
    registry = lab.namespace()
    sha = repo.commit(cross_project(lab, registry, right=True))
    run = mab(repo.path, lab.env, "--all", "--publish", "--color", "never")
    assert run.returncode == 0, run.stdout + run.stderr
    assert lab.platforms(f"{registry}/web:{sha[:7]}") == {"linux/amd64", "linux/arm64"}
    arm = lab.docker("run", "--rm", "--platform", "linux/arm64", f"{registry}/web:{sha[:7]}", "/opt/tool/busybox",
                     "uname", "-m")  # fmt: skip
    assert arm.stdout.strip() == "aarch64"


@pytest.mark.lab
def test_lab_a_program_carried_on_purpose_is_allowed_by_its_path(lab: Lab, repo: Repo) -> None:
    registry = lab.namespace()
    sha = repo.commit(cross_project(lab, registry, right=False, allow='foreign-binaries = ["/opt/tool/*"]\n'))
    run = mab(repo.path, lab.env, "--all", "--publish", "--color", "never")
    assert run.returncode == 0, run.stdout + run.stderr
    assert lab.platforms(f"{registry}/web:{sha[:7]}") == {"linux/amd64", "linux/arm64"}
