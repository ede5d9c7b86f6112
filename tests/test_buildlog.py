"""Reading buildx's progress: steps, failing steps and their words, and who failed."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from mab_hook import buildlog
from mab_hook.rawprogress import Renderer
from mab_hook.results import Failure
from tests.test_buildx import EXPORT_FAILURE

# Plain progress as the lab's buildx 0.13.1 (docker driver, moby 26.1, distribution 2.8 as the
# registry) printed it, cut to the lines mab-hook reads; registry addresses and ids as they were.
BAKE_LOG = """\
#11 [app linux/arm64 1/2] FROM docker.io/mab-lab/busybox:latest@sha256:79
#11 DONE 0.1s
#15 [bad linux/amd64 2/2] RUN [ "$(uname -m)" != armv7l ]
#15 DONE 0.4s
#17 [bad linux/arm/v7 2/2] RUN [ "$(uname -m)" != armv7l ]
#17 ERROR: process "/bin/sh -c [ \\"$(uname -m)\\" != armv7l ]" did not complete successfully: exit code: 1
#18 [bad linux/arm64 2/2] RUN [ "$(uname -m)" != armv7l ]
#18 CANCELED
#20 [linux/amd64 3/3] RUN false
#20 ERROR: process "/bin/sh -c false" did not complete successfully: exit code: 1
ERROR: failed to solve: process "/bin/sh -c [ \\"$(uname -m)\\" != armv7l ]" did not complete successfully
"""


def test_failed_platforms_read_from_plain_progress() -> None:
    assert buildlog.failed_platforms(BAKE_LOG) == ("linux/arm/v7", "linux/amd64")
    assert buildlog.failed_platforms("ERROR: failed to read dockerfile\n") == ()


PUSH_FAILURE = """\
#14 [api] exporting to image
#14 exporting layers done
#14 pushing layers
#14 ERROR: failed to push 127.0.0.1:5999/t/api:mab-1: failed to do request: Head "http://127.0.0.1:5999/v2/": dial tcp 127.0.0.1:5999: connect: connection refused
------
ERROR: failed to solve: failed to push 127.0.0.1:5999/t/api:mab-1
"""


DOCKER_DRIVER_PUSH_FAILURE = """\
#16 [worker] pushing 127.0.0.1:5000/t/worker:mab-2e68 with docker
#16 pushing layer 3414743c5a30 done
#16 ERROR: unexpected status from HEAD request to http://127.0.0.1:5000/v2/t/worker/manifests/mab-2e68: 500 Internal Server Error
------
ERROR: unexpected status from HEAD request to http://127.0.0.1:5000/v2/t/worker/manifests/mab-2e68: 500
"""


def test_what_failed_is_told_from_the_log() -> None:
    assert buildlog.failure(DOCKER_DRIVER_PUSH_FAILURE) is Failure.REGISTRY
    assert buildlog.failure(EXPORT_FAILURE) is Failure.ENGINE
    assert buildlog.failure(BAKE_LOG) is Failure.BUILD
    assert buildlog.failure(PUSH_FAILURE) is Failure.REGISTRY
    assert buildlog.failed_platforms(EXPORT_FAILURE) == ()
    assert "connect: connection refused" in buildlog.registry_error(PUSH_FAILURE)


def test_step_events() -> None:
    assert buildlog.step("#17 [bad linux/arm/v7 2/2] RUN [ \"$(uname -m)\" != armv7l ]") == (
        "17", "linux/arm/v7", '2/2 RUN [ "$(uname -m)" != armv7l ]')  # fmt: skip
    assert buildlog.step("#9 [api 3/4] COPY app.txt /") == ("9", "", "3/4 COPY app.txt /")  # one platform
    assert buildlog.step("#9 [api linux/arm64 build 2/5] RUN make") == ("9", "linux/arm64", "2/5 RUN make")
    assert buildlog.step("#4 [bad linux/arm/v7 internal] load metadata for docker.io/x") is None
    assert buildlog.step("#17 DONE 0.4s") is None


def test_image_digest_from_metadata(tmp_path: Path) -> None:
    metadata = tmp_path / "m.json"
    metadata.write_text('{"api": {"containerimage.digest": "sha256:abc", "image.name": "r/api:1"}}')
    assert buildlog.image_digest(metadata, "api") == "sha256:abc"
    assert buildlog.image_digest(tmp_path / "missing.json", "api") == ""


def test_raw_progress_is_rendered_as_plain_progress_with_steps_as_they_start() -> None:
    """Recorded from the lab: `docker buildx build --progress=rawjson` of a build failing on arm64."""
    raw = (Path(__file__).parent / "fixtures" / "buildx" / "rawjson-arm64-fails.txt").read_text()
    started: list[str] = []
    renderer = Renderer(lambda number, name: started.append(name))
    lines = [out for line in raw.splitlines(keepends=True) for out in renderer.feed(line)]
    log = "\n".join(lines)
    assert any(re.fullmatch(r"#\d+ \[linux/arm64 2/3\] RUN echo hello-fixture", line) for line in lines)
    assert any(re.fullmatch(r"#\d+ hello-fixture", line) for line in lines)  # the step's own output
    assert buildlog.failed_platforms(log) == ("linux/arm64",)
    assert buildlog.failure(log) is Failure.BUILD
    assert lines[-1].startswith("ERROR: failed to solve: ")  # buildx's own words pass through
    assert '[linux/arm64 3/3] RUN [ "$(uname -m)" != aarch64 ]' in started


def test_each_status_is_decoded_once_at_its_closing_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """buildx indents a status over many lines: decoding at every line made a status of n lines
    cost O(n^2) CPU beside the builds. Statuses split anyhow, compact ones and text between
    them still come out whole, in order."""
    decoded: list[int] = []

    class Counting(json.JSONDecoder):
        def raw_decode(self, s: str, idx: int = 0) -> tuple[object, int]:
            decoded.append(len(s))
            return super().raw_decode(s, idx)

    monkeypatch.setattr(json, "JSONDecoder", Counting)  # what the renderer decodes with
    vertexes = [{"digest": f"d{i}", "name": f"[api {i}/300] RUN step {i}", "started": "2026-01-01T00:00:00.1Z",
                 "completed": "2026-01-01T00:00:02.1Z", "inputs": {"nested": {"x": [i]}}} for i in range(300)]  # fmt: skip
    indented = (
        json.dumps({"vertexes": vertexes, "z": {"k": 1}}, indent=1) + "\n"
    )  # any indent; a `}` one deep
    compact = (
        json.dumps(
            {
                "vertexes": [
                    {
                        "digest": "z",
                        "name": "[api 9/9] RUN last",
                        "started": "2026-01-01T00:00:00Z",
                        "cached": True,
                    }
                ]
            }
        )
        + "\n"
    )
    raw = indented + "ERROR: failed to solve: the end\n" + compact
    renderer = Renderer()
    lines = [out for line in raw.splitlines(keepends=True) for out in renderer.feed(line)]
    assert len(decoded) == 2  # the indented status at its last line, the compact one at once
    assert lines[:3] == ["#1 [api 0/300] RUN step 0", "#1 DONE 2.0s", "#2 [api 1/300] RUN step 1"]
    assert lines[-3:] == ["ERROR: failed to solve: the end", "#301 [api 9/9] RUN last", "#301 CACHED"]
    assert len(lines) == 2 * 300 + 3


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_raw_progress_renders_every_kind_of_status_as_plain_progress_says_it() -> None:
    """Steps numbered as first seen, a start said once, a step's output under its number, its
    end (DONE with its time from nanosecond stamps, CACHED, ERROR, CANCELED) once; warnings;
    a log that is not base64 left out, not the ones after it; buildx's own lines between."""
    started: list[tuple[str, str]] = []
    statuses = [
        {"vertexes": [{"digest": "a", "name": "[api 1/3] FROM busybox"}]},  # not started yet: nothing
        {"vertexes": [{"digest": "a", "name": "[api 1/3] FROM busybox", "started": "2026-01-01T00:00:00.250000001Z"},
                      {"digest": "b", "name": "[api 2/3] RUN make", "started": "2026-01-01T00:00:01.5Z"}]},
        {"vertexes": [{"digest": "a", "name": "[api 1/3] FROM busybox", "started": "2026-01-01T00:00:00.250000001Z",
                       "completed": "2026-01-01T00:00:02.750000001Z"}],
         "logs": [{"vertex": "b", "data": "!not base64!"}, {"vertex": "b", "data": b64("cc -o app\n\nlinked\n")},
                  {"data": b64("no vertex")}]},
        {"vertexes": [{"digest": "a", "name": "[api 1/3] FROM busybox", "started": "2026-01-01T00:00:00.25Z",
                       "completed": "2026-01-01T00:00:09Z"}],  # ended already: not again
         "warnings": [{"short": b64("FromAsCasing: 'as' and 'FROM' keywords' casing do not match")}, {"detail": "x"}]},
        {"vertexes": [{"digest": "c", "name": "[api 3/3] COPY . /", "cached": True, "started": "2026-01-01T00:00:03Z"},
                      {"digest": "d", "name": "[web 2/2] RUN false", "error": "exit code: 1"},
                      {"digest": "e", "name": "[web 1/2] RUN sleep 9", "started": "2026-01-01T00:00:03.1Z",
                       "error": "exit code: 137: context canceled"},
                      {"digest": "b", "name": "[api 2/3] RUN make", "started": "2026-01-01T00:00:01.5Z"}]},
    ]  # fmt: skip
    raw = "".join(json.dumps(status, indent=2) + "\n" for status in statuses[:3])
    raw += "WARN: buildx's own line, its last word LAX\n" + "".join(
        json.dumps(status) + "\n" for status in statuses[3:]
    )
    renderer = Renderer(lambda number, name: started.append((number, name)))
    lines = [out for line in raw.splitlines(keepends=True) for out in renderer.feed(line)]
    assert lines == [
        "#1 [api 1/3] FROM busybox",
        "#2 [api 2/3] RUN make",
        "#1 DONE 2.5s",
        "#2 cc -o app",
        "#2 linked",
        "#3 no vertex",
        "WARN: buildx's own line, its last word LAX",
        "WARNING: FromAsCasing: 'as' and 'FROM' keywords' casing do not match",
        "#4 [api 3/3] COPY . /",
        "#4 CACHED",
        "#5 [web 2/2] RUN false",
        "#5 ERROR: exit code: 1",
        "#6 [web 1/2] RUN sleep 9",
        "#6 CANCELED",
    ]
    assert started == [("1", "[api 1/3] FROM busybox"), ("2", "[api 2/3] RUN make"), ("4", "[api 3/3] COPY . /"),
                       ("6", "[web 1/2] RUN sleep 9")]  # fmt: skip
    done = Renderer().feed(json.dumps({"vertexes": [{"digest": "x", "name": "n", "started": "2026-01-01T00:00:00Z",
                                                     "completed": "not a time"}]}) + "\n")  # fmt: skip
    assert done == ["#1 n", "#1 DONE 0.0s"]  # a time it cannot read: none, not a failure
    whole = {
        "digest": "x",
        "started": "2026-01-01T00:00:00Z",
        "completed": "2026-01-01T00:00:03Z",
    }  # no fraction
    bad = base64.b64encode(b"caf\xe9").decode()  # not UTF-8
    two = [{"vertexes": [whole], "logs": [{"vertex": "x"}, {"vertex": "x", "data": bad}]},
           {"warnings": [{"short": bad}]}]  # fmt: skip
    assert Renderer().feed(" ".join(json.dumps(status) for status in two) + "\n") == [
        "#1 ", "#1 DONE 3.0s", "#1 caf\ufffd", "WARNING: caf\ufffd"]  # fmt: skip
    # A line that looks like a status and is none is text, and what follows is read as before.
    assert Renderer().feed("{not a status}\n") == ["{not a status}"]
    renderer = Renderer()
    assert renderer.feed("{\n") + renderer.feed('  "x": [}\n') + renderer.feed("}\n") == [
        "{",
        '  "x": [}',
        "}",
    ]
    assert renderer.feed("ERROR: after it\n") == ["ERROR: after it"]
    assert renderer.feed(
        json.dumps({"vertexes": [{"digest": "y", "name": "m", "started": "2026-01-01T00:00:00Z"}]}) + "\n"
    ) == ["#1 m"]


def test_a_step_stopped_because_another_failed_is_canceled_not_failed() -> None:
    raw = json.dumps({"vertexes": [
        {"digest": "a", "name": "[linux/arm/v7 2/2] RUN false", "started": "2026-01-01T00:00:00Z",
         "completed": "2026-01-01T00:00:01Z", "error": "process did not complete successfully: exit code: 1"},
        {"digest": "b", "name": "[linux/arm64 2/2] RUN false", "started": "2026-01-01T00:00:00Z",
         "completed": "2026-01-01T00:00:01Z", "error": "exit code: 137: context canceled: context canceled"},
    ]})  # fmt: skip
    log = "\n".join(Renderer().feed(raw + "\n"))
    assert buildlog.failed_platforms(log) == ("linux/arm/v7",)
    assert "#2 CANCELED" in log


def export_log(error: str) -> str:
    """An upload that failed with `error`, as buildx's plain progress shows it."""
    return ("#1 [base linux/amd64 1/1] FROM busybox\n#1 DONE 0.1s\n#2 exporting to image\n#2 DONE 0.1s\n"
            f"#3 pushing reg:5000/team/base:mab-1 with docker\n#3 ERROR: {error}\n")  # fmt: skip


@pytest.mark.parametrize(
    "said",
    ["failed to push reg/x: 500", "unexpected status: 502", "401 Unauthorized", "403 Forbidden",
     "push access DENIED", "authentication required: unauthorized", "dial tcp: connection refused",
     "lookup reg: no such host", "read: i/o timeout", "http: server gave HTTP response to HTTPS client",
     "failed to do request: EOF", "failed to authorize: rpc error", "x509: certificate signed by unknown authority",
     "remote error: tls: bad certificate"],
)  # fmt: skip
def test_every_registry_failure_buildkit_names_is_the_registrys(said: str) -> None:
    assert buildlog.failure(export_log(said)) is Failure.REGISTRY
    assert buildlog.registry_error(export_log(said)) == said


@pytest.mark.parametrize("said", ["failed to commit: snapshot does not exist", "content digest mismatch"])
def test_an_export_failing_otherwise_is_the_engines(said: str) -> None:
    assert buildlog.failure(export_log(said)) is Failure.ENGINE


def test_buildx_failing_before_any_step_is_read_from_its_last_error() -> None:
    lines = ["WARN: something", 'ERROR: no builder "gone" found', "ERROR: " + "x" * 400]
    assert buildlog.invocation_error(lines) == "x" * 300
    assert buildlog.invocation_error(lines[:2]) == 'no builder "gone" found'
    assert buildlog.invocation_error(["#1 [base 1/1] FROM busybox", *lines]) == ""  # a step ran
    assert buildlog.invocation_error(["WARN: nothing wrong"]) == ""
    assert buildlog.failure("ERROR: no builder found\n") is Failure.ENGINE
    assert buildlog.failure("") is Failure.BUILD


def test_the_registrys_own_words_are_kept_and_cut() -> None:
    assert buildlog.registry_error("") == "see the log"
    assert buildlog.registry_error("#3 ERROR: something odd\nERROR: also odd\n") == "also odd"  # the last
    long = "unexpected status: " + "y" * 400
    assert buildlog.registry_error(f"#3 ERROR: {long}\n") == long[:300]
    assert buildlog.registry_error("ERROR: failed to solve: 403 Forbidden\n#3 ERROR: odd\n") == (
        "failed to solve: 403 Forbidden"
    )


def test_a_digest_is_read_from_the_metadata_buildx_writes(tmp_path: Path) -> None:
    metadata = tmp_path / "m.json"
    metadata.write_text('{"containerimage.digest": "sha256:one"}')  # one entry: buildx names none
    assert buildlog.image_digest(metadata, "api") == "sha256:one"
    metadata.write_text('{"api": {"image.name": "r/api:1"}}')
    assert buildlog.image_digest(metadata, "api") == ""
    metadata.write_text("[1]")
    assert buildlog.image_digest(metadata, "api") == ""


def test_an_error_of_an_unnamed_step_does_not_hide_the_registrys_failure_after_it() -> None:
    log = "#5 ERROR: lost\n#2 pushing reg/x with docker\n#2 ERROR: unexpected status: 500\n"
    assert buildlog.failure(log) is Failure.REGISTRY
    assert (
        buildlog.registry_error("#1 ERROR: a\n#2 ERROR: b\nERROR: c\n") == "c"
    )  # the last, when none is the registry's


def test_a_vertex_line_without_a_label_starts_no_step() -> None:
    assert buildlog.step("#3 [] something") is None


# BuildKit's plain progress for `FROM 127.0.0.1:5000/p23/amdonly:1` (an index with linux/amd64
# only) built for linux/amd64 and linux/arm64, recorded on the lab (buildx bake of one target).
NO_ARM64_BASE = """\
#1 [internal] load local bake definitions
#1 DONE 0.0s
#2 [internal] load build definition from Dockerfile
#2 DONE 0.0s
#3 [linux/amd64 internal] load metadata for 127.0.0.1:5000/p23/amdonly:1
#4 [linux/arm64 internal] load metadata for 127.0.0.1:5000/p23/amdonly:1
#4 ERROR: no match for platform in manifest: not found
#3 CANCELED
ERROR: failed to solve: 127.0.0.1:5000/p23/amdonly:1: failed to resolve source metadata for 127.0.0.1:5000/p23/amdonly:1: no match for platform in manifest: not found
"""


@pytest.mark.parametrize(("log", "detail"), [
    (NO_ARM64_BASE, "base 127.0.0.1:5000/p23/amdonly:1 has no linux/arm64 image (no match for platform in manifest)"),
    ("#5 [api linux/arm/v7 3/3] RUN make test\n#5 ERROR: process \"/bin/sh -c make test\" did not complete "
     "successfully: exit code: 3\n", "build failed on linux/arm/v7: RUN make test (exit 3)"),
    ("#5 [api linux/arm64 2/3] COPY missing.txt /\n#5 ERROR: failed to calculate checksum of ref x: \"/missing.txt\": "
     "not found\n", "build failed on linux/arm64: COPY missing.txt / (failed to calculate checksum of ref x: "
     "\"/missing.txt\": not found)"),
    ("#5 [api linux/arm64 2/3] RUN make\n#6 [api linux/amd64 2/3] RUN make\n#5 DONE 1.0s\n"
     "#6 ERROR: exit code: 7\n", "build failed on linux/amd64: RUN make (exit 7)"),  # the step that failed, not the first
    ("#5 [api linux/arm64 2/3] RUN make\n#5 DONE 1.0s\n", ""),
    ("#3 [internal] load metadata for r/base:1\n#3 ERROR: no match for platform in manifest: not found\n",
     "base r/base:1 has no matching image (no match for platform in manifest)"),  # one platform: no label
    ("#3 [api linux/arm64 internal] load metadata for r/base:1\n#3 ERROR: failed to authorize: 401\n",
     "build failed on linux/arm64: load metadata for r/base:1 (failed to authorize: 401)"),  # another cause
    (f"#5 [api linux/arm64 2/3] RUN {'x' * 200}\n#5 ERROR: {'e' * 300}\n",
     f"build failed on linux/arm64: RUN {'x' * 96} ({'e' * 200})"),  # both cut for the summary
])  # fmt: skip
def test_a_failure_is_told_by_the_step_that_failed_and_its_own_words(log: str, detail: str) -> None:
    platforms = buildlog.failed_platforms(log)
    where = f" on {', '.join(platforms)}" if platforms else ""
    assert buildlog.step_failure(log, where) == detail
