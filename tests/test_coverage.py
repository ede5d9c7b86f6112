"""Base coverage, fast: what a base has (from an engine's saved layout or the registry's API),
which pulls lack their platform, what the pusher is told, and what is kept by digest. The same
against the lab's engine and registry: test_pipeline.py (the `coverage` tests)."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import socketserver
import stat
import tarfile
import threading
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import pytest

from mab_hook import coverage
from mab_hook.coverage import ENGINE, REGISTRY, Coverage, Found, Known, Sources
from mab_hook.images import Image
from mab_hook.inputs import Pull
from mab_hook.plan import PlannedImage
from mab_hook.process import Completed
from mab_hook.readiness import location
from mab_hook.registry import Registry
from tests.conftest import Lab, Repo, mab
from tests.engine import CONFIG, INDEX, MANIFEST, OciRegistry

AMD64, ARM64, ARM7 = "linux/amd64", "linux/arm64", "linux/arm/v7"
DIGEST = "sha256:" + "1" * 64


def planned(name: str, *pulls: Pull) -> PlannedImage:
    return PlannedImage(Image(name, name, f"{name}/Dockerfile", (AMD64, ARM64)), (), (), (), pulls=pulls)


def pull(ref: str, platform: str, wanted: str | None = None, how: str = "FROM", line: int = 1) -> Pull:
    return Pull(platform, ref, wanted or platform, how, line)


def answers(found: Mapping[str, Found | str]) -> Callable[[str], Found | str]:
    asked: list[str] = []

    def lookup(ref: str) -> Found | str:
        asked.append(ref)
        return found[ref]

    lookup.asked = asked  # type: ignore[attr-defined]
    return lookup


PLAIN = Found(DIGEST, (AMD64,), True, REGISTRY)
INDEXED = Found(DIGEST, (AMD64, "linux/arm64/v8", ARM7), False, REGISTRY)


# --- which pulls lack their platform ------------------------------------------------------------


def test_a_plain_image_serves_its_own_platform_only_and_an_index_each_it_lists() -> None:
    images = [
        planned("app", pull("plain", AMD64), pull("plain", ARM64), pull("idx", AMD64), pull("idx", ARM64)),
        planned("arm", pull("idx", "linux/arm/v6"), pull("idx", "linux/386")),
    ]
    found = coverage.check(images, answers({"plain": PLAIN, "idx": INDEXED}))
    assert [(gap.image, gap.pull.ref, gap.pull.wanted) for gap in found.gaps] == [
        ("app", "plain", ARM64),
        ("arm", "idx", "linux/arm/v6"),  # an arm/v7 image does not run on arm/v6
        ("arm", "idx", "linux/386"),  # nor an amd64 one on 386
    ]
    assert found.unchecked == ()


def test_the_platform_a_pull_asks_for_counts_not_the_one_built() -> None:
    # FROM --platform=$BUILDPLATFORM: an amd64-only tool image serves every platform built.
    tools = planned("app", pull("tools", ARM64, AMD64), pull("tools", AMD64, AMD64))
    assert coverage.check([tools], answers({"tools": PLAIN})).gaps == ()
    # FROM --platform=linux/arm64 for every platform: the base must have arm64.
    pinned = planned("app", pull("base", AMD64, ARM64))
    (gap,) = coverage.check([pinned], answers({"base": PLAIN})).gaps
    assert gap.pull.wanted == ARM64 and gap.pull.platform == AMD64


def test_each_base_is_looked_up_once_and_an_unknown_one_is_said_not_blocked() -> None:
    lookup = answers({"a": INDEXED, "gone": "neither the engine's image store nor the registry has it"})
    images = [planned("x", pull("a", AMD64), pull("gone", AMD64)), planned("y", pull("a", ARM64))]
    found = coverage.check(images, lookup)
    assert sorted(lookup.asked) == ["a", "gone"]  # type: ignore[attr-defined]
    assert found == Coverage(
        (), (("gone", "neither the engine's image store nor the registry has it"),), (("a", INDEXED),)
    )
    assert found.answers == {"a": INDEXED}
    assert coverage.check([planned("z")], answers({})) == Coverage(())


def test_the_message_names_image_base_line_what_it_has_what_is_missing_and_the_fixes() -> None:
    gaps = coverage.check(
        [
            planned("app", pull("reg/plain:1", AMD64), pull("reg/plain:1", ARM64), pull("reg/plain:1", ARM7)),
            planned("web", pull("reg/idx:2", ARM64, how="COPY --from", line=4)),
            planned("tool", pull("reg/plain:1", AMD64, ARM64, line=2)),
        ],
        answers({"reg/plain:1": PLAIN, "reg/idx:2": Found(DIGEST, (AMD64, ARM7), False, ENGINE)}),
    ).gaps
    text = coverage.blocked(gaps)
    assert text.splitlines()[:4] == [
        "a base lacks a platform the push builds; nothing was built:",
        "  app: base reg/plain:1 (FROM, line 1) is a single linux/amd64 image, no index: built for "
        "linux/arm64, linux/arm/v7 on it, the image would hold linux/amd64 programs",
        "  web: base reg/idx:2 (COPY --from, line 4) has linux/amd64, linux/arm/v7 in the engine's image "
        "store, not linux/arm64",
        "  tool: base reg/plain:1 (FROM, line 2) is a single linux/amd64 image, no index: built for "
        "linux/arm64 (for linux/amd64) on it, the image would hold linux/amd64 programs",
    ]
    assert text.splitlines()[4] == (
        "Fix one of: build on a base that has every platform (a multi-platform index: `docker buildx build "
        "--platform ... --push` for your own); take the platform out of the image's `platforms` in "
        "[tool.multiarch]; or, for a stage that only runs build tools, `FROM --platform=$BUILDPLATFORM`."
    )
    assert len(text.splitlines()) == 5
    assert coverage.unchecked_text("x:1", "why") == "could not check which platforms base x:1 has: why"


def test_a_base_missing_several_platforms_or_with_none_says_so() -> None:
    nothing = Found(DIGEST, (), False, REGISTRY)
    gaps = coverage.check(
        [planned("app", pull("idx", ARM64), pull("idx", "linux/s390x")), planned("web", pull("odd", AMD64))],
        answers({"idx": INDEXED, "odd": nothing}),
    ).gaps
    assert coverage.blocked(gaps).splitlines()[1:3] == [
        "  app: base idx (FROM, line 1) has linux/amd64, linux/arm64/v8, linux/arm/v7, not linux/s390x",
        "  web: base odd (FROM, line 1) has no platform, not linux/amd64",
    ]
    two = coverage.check([planned("app", pull("idx", "linux/s390x"), pull("idx", "linux/386"))],
                         answers({"idx": INDEXED})).gaps  # fmt: skip
    assert coverage.blocked(two).splitlines()[1].endswith(", not linux/s390x, linux/386")
    assert coverage.Coverage(()).unchecked == () and coverage.Coverage(()).answers == {}


# --- what a base has ------------------------------------------------------------------------------


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def image_blobs(platforms: tuple[str, ...], *, say_platform: bool = True, attest: bool = False,
                plain: bool = False) -> tuple[str, str, dict[str, bytes]]:  # fmt: skip
    """An index of one image per platform (or one plain manifest): its digest, media type, blobs."""
    blobs: dict[str, bytes] = {}
    entries = []
    for platform in platforms:
        os_, arch, *variant = platform.split("/")
        config = json.dumps({"os": os_, "architecture": arch, **({"variant": variant[0]} if variant else {})})
        blobs[_sha(config.encode())] = config.encode()
        layers = [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d}
            for d in layers_of(platform)
        ]
        manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST, "layers": layers,
                               "config": {"mediaType": CONFIG, "digest": _sha(config.encode())}}).encode()  # fmt: skip
        blobs[_sha(manifest)] = manifest
        said = {"os": os_, "architecture": arch, **({"variant": variant[0]} if variant else {})}
        entries.append(
            {"mediaType": MANIFEST, "digest": _sha(manifest), **({"platform": said} if say_platform else {})}
        )
    if plain:
        return str(entries[0]["digest"]), MANIFEST, blobs
    if attest:
        entries.append({"mediaType": MANIFEST, "digest": _sha(b"attestation"), "platform": {"os": "unknown",
                        "architecture": "unknown"}, "annotations": {"vnd.docker.reference.type": "attestation-manifest"}})  # fmt: skip
    index = json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": entries}).encode()
    blobs[_sha(index)] = index
    return _sha(index), INDEX, blobs


def layers_of(platform: str) -> tuple[str, ...]:
    """The layers an image of the platform is made of, in these tests: two of its own."""
    return tuple(_sha(f"{platform} layer {n}".encode()) for n in (1, 2))


def with_layers(*platforms: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    return tuple((platform, layers_of(platform)) for platform in platforms)


def reader(blobs: Mapping[str, bytes]) -> Callable[[str, str], bytes | None]:
    """Manifests by "manifests", configs by "blobs", as a registry serves them."""

    def read(kind: str, digest: str) -> bytes | None:
        found = blobs.get(digest)
        is_manifest = found is not None and b'"schemaVersion"' in found
        return found if (kind == "manifests") == is_manifest else None

    return read


@pytest.mark.parametrize(
    ("platforms", "options", "expected"),
    [
        ((AMD64, ARM7), {}, ((AMD64, ARM7), False)),
        ((AMD64, ARM64), {"attest": True}, ((AMD64, ARM64), False)),  # attestations are no platform
        ((AMD64, ARM64), {"say_platform": False}, ((AMD64, ARM64), False)),  # entries read for it
        ((ARM64,), {"plain": True}, ((ARM64,), True)),
        (("linux/arm/v7",), {"plain": True}, ((ARM7,), True)),
    ],
)
def test_the_platforms_of_an_index_or_a_plain_manifest_and_each_ones_layers(
    platforms: tuple[str, ...], options: dict[str, bool], expected: tuple[tuple[str, ...], bool]
) -> None:
    digest, media_type, blobs = image_blobs(platforms, **options)
    said = coverage.describe(blobs[digest], media_type, reader(blobs))
    assert (said.platforms, said.plain) == expected
    assert said.layers == tuple((platform, layers_of(platform)) for platform in expected[0])


def test_what_an_index_entry_says_of_its_platform_wins_and_the_first_of_a_platform_counts() -> None:
    digest, _media_type, blobs = image_blobs((ARM64, AMD64))
    index = json.loads(blobs[digest])
    index["manifests"][0]["platform"]["variant"] = "v8"  # the entry says more than the config
    index["manifests"].append(
        dict(index["manifests"][1], digest=index["manifests"][0]["digest"])
    )  # amd64 again
    index["manifests"].append({"mediaType": MANIFEST, "digest": "sha256:" + "9" * 64})  # says nothing, gone
    said = coverage.describe(json.dumps(index).encode(), "", reader(blobs))  # no media type: the body tells
    assert said.platforms == ("linux/arm64/v8", AMD64) and not said.plain
    assert dict(said.layers)[AMD64] == layers_of(AMD64)


@pytest.mark.parametrize(
    ("config", "platform"),
    [({"os": "windows", "architecture": "amd64"}, "windows/amd64"), ({"architecture": "arm64"}, "linux/arm64"),
     ({"os": "linux"}, ""), ({"os": "linux", "architecture": "arm", "variant": "v6"}, "linux/arm/v6")],
)  # fmt: skip
def test_a_plain_images_platform_is_its_configs(config: dict[str, str], platform: str) -> None:
    body = json.dumps(config).encode()
    manifest = json.dumps({"schemaVersion": 2, "config": {"digest": _sha(body)}, "layers": []}).encode()
    said = coverage.describe(manifest, MANIFEST, reader({_sha(body): body}))
    assert said.platforms == ((platform,) if platform else ()) and said.plain


def test_a_plain_manifest_whose_config_is_gone_has_no_platform() -> None:
    digest, media_type, blobs = image_blobs((AMD64,), plain=True)
    assert coverage.describe(blobs[digest], media_type, reader({})) == coverage.Described((), True, ())


def test_answers_are_kept_by_digest_privately_newest_last_and_a_bad_file_is_a_miss(tmp_path: Path) -> None:
    path = tmp_path / "cache" / "bases.json"
    known = Known(path)
    known.save()
    assert not path.exists()  # nothing new: nothing written
    known.put(Found(DIGEST, (AMD64,), True, REGISTRY))
    known.save()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Known(path).get(DIGEST, ENGINE) == Found(DIGEST, (AMD64,), True, ENGINE)
    assert Known(path).get("sha256:" + "2" * 64, ENGINE) is None
    path.write_text('{"sha256:x": {"platforms": "linux/amd64"}, "sha256:y": 3}')
    assert Known(path).get("sha256:x", ENGINE) is None and Known(path).get("sha256:y", ENGINE) is None
    path.write_text("not json")
    assert Known(path).get(DIGEST, ENGINE) is None


def test_the_layers_of_each_platform_are_kept_too_and_a_bad_entry_is_a_miss(tmp_path: Path) -> None:
    path = tmp_path / "bases.json"
    known = Known(path)
    found = Found(DIGEST, (AMD64,), True, REGISTRY, ((AMD64, ("sha256:a", "sha256:b")),))
    known.put(found)
    known.save()
    assert Known(path).get(DIGEST, REGISTRY) == found
    bad = ([["linux/amd64"]], [[1, ["sha256:a"]]], [["linux/amd64", "sha256:a"]], ["x"], 3, "x", {"a": 1})
    for layers in bad:
        path.write_text(json.dumps({DIGEST: {"platforms": [AMD64], "layers": layers}}))
        assert Known(path).get(DIGEST, REGISTRY) is None, layers


def test_only_the_newest_answers_are_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(coverage, "KEEP", 2)
    path = tmp_path / "bases.json"
    known = Known(path)
    for n in (1, 2, 3):
        known.put(Found(f"sha256:{n}", (AMD64,), False, REGISTRY))
    known.put(Found("sha256:1", (AMD64,), False, REGISTRY))  # used again: newest
    known.save()
    assert list(json.loads(path.read_text())) == ["sha256:3", "sha256:1"]


def layout_tar(digest: str, media_type: str, blobs: Mapping[str, bytes], layer: int = 5 << 20) -> bytes:
    """`docker image save` of a containerd store: an OCI layout, blobs by digest (a big layer too)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        files = {f"blobs/{d.replace(':', '/')}": b for d, b in blobs.items()}
        files["blobs/sha256/" + "f" * 64] = b"\0" * layer
        files["index.json"] = json.dumps({"schemaVersion": 2, "manifests": [{"mediaType": media_type,
                                          "digest": digest}]}).encode()  # fmt: skip
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


class Engine:
    """docker's answers for `image inspect` and `image save`, and what was asked."""

    def __init__(self, images: Mapping[str, tuple[str, bytes]], **inspected: object) -> None:
        self.images = images  # ref -> (Id, the saved tar)
        self.inspected = inspected  # more of what `docker image inspect` says (RepoDigests, Size)
        self.asked: list[tuple[str, ...]] = []

    def run(self, cmd: tuple[str, ...], **kwargs: Any) -> Completed:
        self.asked.append(cmd)
        assert (
            cmd[:-1] == ("docker", "image", "inspect", "--format", "{{json .}}") and kwargs["check"] is False
        )
        found = self.images.get(cmd[-1])
        if found is None:
            return Completed(cmd, 1, "", f"Error: No such image: {cmd[-1]}")
        said = {"Id": found[0], "Os": "linux", "Architecture": "amd64", "Size": 4 << 20, **self.inspected}
        return Completed(cmd, 0, json.dumps(said), "")

    def read_stream(self, cmd: tuple[str, ...], consume: Callable[[IO[bytes]], Any], **kwargs: Any) -> Any:
        self.asked.append(cmd)
        saved = self.images[cmd[-1]][1]
        if not saved:  # the save failed (an image whose other platforms' content is not there)
            return None, Completed(cmd, 1, "", "Error response from daemon: content digest not found")
        return consume(io.BytesIO(saved)), Completed(cmd, 0, "", "")


@pytest.fixture
def oci() -> Iterator[OciRegistry]:
    with OciRegistry() as found:
        yield found


def sources(oci: OciRegistry, engine: Engine, known: Known) -> Sources:
    return Sources({}, Registry({"DOCKER_CONFIG": os.devnull}), known, run=engine.run,
                   read_stream=engine.read_stream)  # fmt: skip


def test_the_engine_store_answers_first_from_the_saved_layout_then_from_what_is_kept(
    oci: OciRegistry, tmp_path: Path
) -> None:
    digest, media_type, blobs = image_blobs((AMD64, ARM7), attest=True)
    engine = Engine({"team/base:1": (digest, layout_tar(digest, media_type, blobs))})
    known = Known(tmp_path / "bases.json")
    assert sources(oci, engine, known)("team/base:1") == Found(
        digest, (AMD64, ARM7), False, ENGINE, with_layers(AMD64, ARM7)
    )
    assert [cmd[:3] for cmd in engine.asked] == [("docker", "image", "inspect"), ("docker", "image", "save")]
    known.save()
    engine.asked.clear()
    again = sources(oci, engine, Known(tmp_path / "bases.json"))("team/base:1")
    assert isinstance(again, Found) and again.platforms == (AMD64, ARM7)
    assert [cmd[:3] for cmd in engine.asked] == [("docker", "image", "inspect")]  # kept by its digest
    assert oci.requests == []


def test_a_plain_image_in_the_engine_store_is_one_platform(oci: OciRegistry, tmp_path: Path) -> None:
    digest, media_type, blobs = image_blobs((AMD64,), plain=True)
    engine = Engine({"plain": (digest, layout_tar(digest, media_type, blobs))})
    assert sources(oci, engine, Known(None))("plain") == Found(
        digest, (AMD64,), True, ENGINE, with_layers(AMD64)
    )


def test_the_registry_answers_for_what_the_engine_lacks_and_its_content_is_checked(
    oci: OciRegistry, tmp_path: Path
) -> None:
    digest, media_type, blobs = image_blobs((AMD64,), plain=True)
    for blob_digest, blob in blobs.items():
        oci.blobs[("team/plain", blob_digest)] = blob
    oci.put("team/plain", "1", blobs[digest], media_type)
    ref = f"{oci.host}/team/plain:1"
    engine = Engine({})
    known = Known(tmp_path / "bases.json")
    assert sources(oci, engine, known)(ref) == Found(digest, (AMD64,), True, REGISTRY, with_layers(AMD64))
    assert [path for _method, path in oci.requests] == ["/v2/team/plain/manifests/1",
                                                        f"/v2/team/plain/blobs/{next(iter(blobs))}"]  # fmt: skip
    known.save()
    oci.requests.clear()
    # Pinned by a digest already known: no question to anyone.
    engine.asked.clear()
    pinned = sources(oci, engine, Known(tmp_path / "bases.json"))(f"{ref}@{digest}")
    assert isinstance(pinned, Found) and pinned.plain
    assert oci.requests == [] and engine.asked == []
    # A registry that sends other bytes than the digest names is not believed.
    oci.blobs[("team/plain", next(iter(blobs)))] = b'{"os": "linux", "architecture": "arm64"}'
    why = sources(oci, engine, Known(None))(ref)
    assert isinstance(why, str) and why.startswith("the registry's answer for it could not be read (")
    assert "other content" in why


def test_what_the_engine_cannot_save_as_a_layout_the_registry_answers(oci: OciRegistry) -> None:
    digest, media_type, blobs = image_blobs((AMD64,), plain=True)
    for blob_digest, blob in blobs.items():
        oci.blobs[("team/plain", blob_digest)] = blob
    oci.put("team/plain", "1", blobs[digest], media_type)
    ref = f"{oci.host}/team/plain:1"
    legacy = io.BytesIO()  # Docker before 25: a save with no index.json
    with tarfile.open(fileobj=legacy, mode="w") as archive:
        info = tarfile.TarInfo("manifest.json")
        info.size = 2
        archive.addfile(info, io.BytesIO(b"[]"))
    for saved in (b"", legacy.getvalue()):
        engine = Engine({ref: (digest, saved)})
        assert sources(oci, engine, Known(None))(ref) == Found(
            digest, (AMD64,), True, REGISTRY, with_layers(AMD64)
        )
        assert [cmd[:3] for cmd in engine.asked] == [
            ("docker", "image", "inspect"),
            ("docker", "image", "save"),
        ]


def test_a_tag_whose_digest_is_kept_costs_the_registry_one_manifest_request(
    oci: OciRegistry, tmp_path: Path
) -> None:
    digest, media_type, blobs = image_blobs((AMD64, ARM64))
    for blob_digest, blob in blobs.items():
        if b'"schemaVersion"' in blob:
            oci.put("team/idx", blob_digest, blob, MANIFEST)
        else:
            oci.blobs[("team/idx", blob_digest)] = blob
    oci.put("team/idx", "1", blobs[digest], media_type)
    known = Known(tmp_path / "bases.json")
    assert sources(oci, Engine({}), known)(f"{oci.host}/team/idx:1") == Found(
        digest, (AMD64, ARM64), False, REGISTRY, with_layers(AMD64, ARM64)
    )
    oci.requests.clear()
    assert sources(oci, Engine({}), known)(f"{oci.host}/team/idx:1") == Found(
        digest, (AMD64, ARM64), False, REGISTRY, with_layers(AMD64, ARM64)
    )
    assert [path for _method, path in oci.requests] == ["/v2/team/idx/manifests/1"]


def test_the_small_files_of_a_save_and_the_id_of_an_inspect() -> None:
    digest, media_type, blobs = image_blobs((AMD64,))
    small = coverage._small_files(io.BytesIO(layout_tar(digest, media_type, blobs)))
    assert set(small) == {
        "index.json",
        *(f"blobs/{d.replace(':', '/')}" for d in blobs),
    }  # the layer left out
    assert coverage._small_files(io.BytesIO(b"not a tar")) == {}
    assert coverage._strings(["a", "b"]) == ("a", "b") and coverage._strings([]) == ()
    assert coverage._strings(["a", 1]) is None and coverage._strings("a") is None


def test_what_the_engine_pulled_the_registry_tells_by_its_digest_without_an_export(oci: OciRegistry) -> None:
    digest, media_type, blobs = image_blobs((AMD64, ARM64))
    for blob_digest, blob in blobs.items():
        if b'"schemaVersion"' in blob:
            oci.put("team/idx", blob_digest, blob, MANIFEST)
        else:
            oci.blobs[("team/idx", blob_digest)] = blob
    oci.put("team/idx", digest, blobs[digest], media_type)
    pulled = [f"docker.invalid/elsewhere@{digest}", f"{oci.host}/team/other@sha256:{'0' * 64}",
              f"{oci.host}/team/idx@{digest}"]  # fmt: skip
    engine = Engine({"idx:1": (digest, b"")}, RepoDigests=pulled)
    found = sources(oci, engine, Known(None))("idx:1")
    assert found == Found(digest, (AMD64, ARM64), False, ENGINE, with_layers(AMD64, ARM64))
    assert [cmd[:3] for cmd in engine.asked] == [("docker", "image", "inspect")]  # no save


def test_a_large_local_only_image_is_not_exported_to_be_looked_at(oci: OciRegistry) -> None:
    digest, media_type, blobs = image_blobs((AMD64,))
    big = Engine({"big:1": (digest, layout_tar(digest, media_type, blobs))}, Size=coverage.SAVE_LIMIT + 1)
    found = sources(oci, big, Known(None))("big:1")
    assert isinstance(found, str) and found.startswith(
        "neither the engine's image store nor the registry has it"
    )
    assert all(cmd[:3] != ("docker", "image", "save") for cmd in big.asked)
    at_limit = Engine({"big:1": (digest, layout_tar(digest, media_type, blobs))}, Size=coverage.SAVE_LIMIT)
    assert isinstance(sources(oci, at_limit, Known(None))("big:1"), Found)
    unsized = Engine({"big:1": (digest, layout_tar(digest, media_type, blobs))}, Size="4 MiB")
    assert isinstance(sources(oci, unsized, Known(None))("big:1"), str)


def test_a_base_nowhere_is_said_why(oci: OciRegistry) -> None:
    engine = Engine({})
    assert sources(oci, engine, Known(None))(f"{oci.host}/team/none:1") == (
        "neither the engine's image store nor the registry has it"
    )
    why = sources(oci, engine, Known(None))("127.0.0.1:1/team/none:1")
    assert isinstance(why, str) and why.startswith(
        "neither the engine's image store nor the registry has it ("
    )


# --- against the lab's engine and registry ---------------------------------------------------------


def base_image(lab: Lab, ref: str, platforms: str, *, plain: bool = False, push: bool = True) -> None:
    """A base of its own (a salted step: never another test's cache), pushed and/or kept in the
    engine's store; `plain`: one manifest, no index (what `--provenance=false` of one platform gives)."""
    args = ("--provenance=false",) if plain else ()
    built = lab.build(ref, f"FROM {lab.busybox}\nRUN echo {uuid.uuid4().hex} > /salt\n", *args,
                      platforms=platforms, push=push)  # fmt: skip
    assert built.returncode == 0, built.stderr


def web_project(registry: str, dockerfile: str, **images: str) -> dict[str, str]:
    extra = "".join(f"[tool.multiarch.images.{name}]\n{table}\n" for name, table in images.items())
    return {
        "pyproject.toml": f'[tool.multiarch]\nplatforms = ["linux/amd64", "linux/arm64"]\nregistry = "{registry}"\n'
                          f'push = true\ntags = ["{{short_sha}}"]\n[tool.multiarch.images.web]\ncontext = "web"\n{extra}',
        "web/Dockerfile": dockerfile,
    }  # fmt: skip


def public_and_staged(lab: Lab, registry: str, *names: str) -> set[str]:
    return {tag for name in names for repo in (f"{registry}/{name}", f"{registry}/mab-staging/{name}")
            for tag in lab.tags(repo)}  # fmt: skip


@pytest.mark.lab
def test_lab_a_plain_base_in_the_registry_blocks_the_push_before_anything_is_built(
    lab: Lab, repo: Repo
) -> None:
    registry = lab.namespace()
    base = f"{registry}/plain:1"
    base_image(lab, base, "linux/amd64", plain=True)
    lab.docker("image", "rm", base)  # only the registry has it
    repo.commit(web_project(registry, f"FROM {base}\nRUN echo {uuid.uuid4().hex}\n"))
    run = mab(repo.path, lab.env, "--all", "--publish", "--color", "never")
    assert run.returncode == 1, run.stdout + run.stderr
    said = (f"  web: base {base} (FROM, line 1) is a single linux/amd64 image, no index: built for linux/arm64 on "
            "it, the image would hold linux/amd64 programs")  # fmt: skip
    assert said in run.stderr, run.stdout + run.stderr
    assert "Fix one of:" in run.stderr and "nothing was built" in run.stderr
    assert public_and_staged(lab, registry, "web") == set()
    kept = json.loads((repo.path / ".git" / "mab-hook" / "cache" / "bases.json").read_text())
    ((platforms, plain, layers),) = [(v["platforms"], v["plain"], v["layers"]) for v in kept.values()]
    assert (platforms, plain) == (["linux/amd64"], True) and layers[0][0] == "linux/amd64" and layers[0][1]


@pytest.mark.lab
def test_lab_an_index_without_the_platform_in_the_engine_store_is_named_with_what_it_has(
    lab: Lab, repo: Repo
) -> None:
    base = f"mab-test/idx-{uuid.uuid4().hex[:10]}:1"  # a Docker Hub name no registry here has
    base_image(lab, base, "linux/amd64,linux/arm/v7", push=False)
    try:
        registry = lab.namespace()
        repo.commit(web_project(registry, f"FROM {base}\nRUN echo {uuid.uuid4().hex}\n"))
        run = mab(repo.path, lab.env, "--all", "--publish", "--color", "never")
        assert run.returncode == 1, run.stdout + run.stderr
        said = (f"  web: base {base} (FROM, line 1) has linux/amd64, linux/arm/v7 in the engine's image store, not "
                "linux/arm64")  # fmt: skip
        assert said in run.stderr, run.stdout + run.stderr
        assert public_and_staged(lab, registry, "web") == set()
    finally:
        lab.docker("image", "rm", base, check=False)


@pytest.mark.lab
def test_lab_a_plain_base_for_the_build_platform_only_is_right_and_publishes(lab: Lab, repo: Repo) -> None:
    """Cross-compilation's shape: the tools stage runs on the build platform (an amd64-only base
    is right there), the final stage on a base of every platform."""
    registry = lab.namespace()
    tools = f"{registry}/tools:1"
    base_image(lab, tools, "linux/amd64", plain=True)
    sha = repo.commit(web_project(registry, f"FROM --platform=$BUILDPLATFORM {tools} AS build\n"
                                  f"RUN echo {uuid.uuid4().hex} > /out\nFROM {lab.busybox}\nCOPY --from=build /out /\n"))  # fmt: skip
    run = mab(repo.path, lab.env, "--all", "--publish", "--color", "never")
    assert run.returncode == 0, run.stdout + run.stderr
    assert lab.platforms(f"{registry}/web:{sha[:7]}") == {"linux/amd64", "linux/arm64"}
    assert "could not check" not in run.stdout + run.stderr


@pytest.mark.lab
def test_lab_an_in_repo_base_built_for_fewer_platforms_is_checked_for_its_dependants(
    lab: Lab, repo: Repo
) -> None:
    """base is linux/amd64 only, web (amd64 and arm64) is built on it: mab-hook builds base for
    arm64 too, as web's named context, so base's own base must have arm64."""
    registry = lab.namespace()
    plain = f"{registry}/plain:1"
    base_image(lab, plain, "linux/amd64", plain=True)
    repo.commit({
        **web_project(registry, f"FROM {registry}/base\nRUN echo {uuid.uuid4().hex}\n",
                      base='context = "base"\nplatforms = ["linux/amd64"]'),
        "base/Dockerfile": f"FROM {plain}\n",
    })  # fmt: skip
    run = mab(repo.path, lab.env, "--all", "--publish", "--color", "never")
    assert run.returncode == 1, run.stdout + run.stderr
    assert f"  base: base {plain} (FROM, line 1) is a single linux/amd64 image" in run.stderr, run.stdout
    assert "built for linux/arm64 on it" in run.stderr and "  web:" not in run.stderr
    assert public_and_staged(lab, registry, "web", "base") == set()


class EngineAPI(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """The Docker engine's API on a unix socket: image inspect and save, from `images`."""

    daemon_threads = True

    def __init__(self, path: Path, images: Mapping[str, tuple[str, bytes]]) -> None:
        self.images, self.asked = images, []  # type: ignore[var-annotated]
        super().__init__(str(path), _EngineHandler)


class _EngineHandler(http.server.BaseHTTPRequestHandler):
    server: EngineAPI

    def do_GET(self) -> None:
        self.server.asked.append(self.path)
        name, _, what = urllib.parse.unquote(self.path).removeprefix("/images/").rpartition("/")
        found = self.server.images.get(name)
        if found is None:
            body, status = b'{"message": "No such image"}', 404
        else:
            said = json.dumps({"Id": found[0], "Size": 4 << 20}).encode()
            body, status = (said, 200) if what == "json" else (found[1], 200)
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def address_string(self) -> str:
        return "engine"

    def log_message(self, *args: object) -> None:
        pass


def test_the_engine_is_asked_over_its_socket_and_the_cli_is_not_started(
    tmp_path: Path, oci: OciRegistry
) -> None:
    digest, media_type, blobs = image_blobs((AMD64, ARM64))
    api = EngineAPI(
        tmp_path / "docker.sock", {"team/base:1": (digest, layout_tar(digest, media_type, blobs))}
    )
    threading.Thread(target=api.serve_forever, args=(0.02,), daemon=True).start()
    try:
        cli = Engine({})
        found = Sources({}, Registry({"DOCKER_CONFIG": os.devnull}), Known(None), run=cli.run,
                        read_stream=cli.read_stream, socket=str(tmp_path / "docker.sock"))  # fmt: skip
        assert found("team/base:1") == Found(digest, (AMD64, ARM64), False, ENGINE, with_layers(AMD64, ARM64))
        assert api.asked == ["/images/team/base:1/json", "/images/team/base:1/get"]
        assert cli.asked == []
        api.asked.clear()
        assert found(f"{oci.host}/team/none:1") == "neither the engine's image store nor the registry has it"
        assert cli.asked == [] and api.asked == [
            f"/images/{oci.host}/team/none:1/json"
        ]  # its 404 is its answer
    finally:
        api.shutdown()
        api.server_close()


def test_the_socket_docker_uses_when_it_uses_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config"
    config.mkdir()
    assert location.engine_socket({"DOCKER_HOST": "unix:///run/x.sock"}) == "/run/x.sock"
    assert location.engine_socket({"DOCKER_HOST": "ssh://me@box"}) is None
    assert location.engine_socket({"DOCKER_HOST": "tcp://10.0.0.1:2375"}) is None
    default = tmp_path / "docker.sock"
    monkeypatch.setattr(location, "DEFAULT_SOCKET", str(default))
    env = {"DOCKER_CONFIG": str(config)}
    assert location.engine_socket(env) is None  # no engine there
    default.write_text("")
    assert location.engine_socket(env) == str(default)
    assert location.engine_socket({**env, "DOCKER_CONTEXT": "remote"}) is None
    assert location.engine_socket({**env, "DOCKER_CONTEXT": "default"}) == str(default)
    (config / "config.json").write_text('{"currentContext": "colima"}')
    assert location.engine_socket(env) is None
