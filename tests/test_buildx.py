from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mab_hook import bakefile, buildlog, buildx, process
from mab_hook.buildx import Buildx
from mab_hook.changes import Commit, Ref
from mab_hook.errors import FatalError
from mab_hook.images import Config, Image
from mab_hook.inputs import Files
from mab_hook.plan import Plan, make_plan
from mab_hook.results import Failure, Status
from tests.conftest import Lab

ALL3 = ("linux/amd64", "linux/arm64", "linux/arm/v7")


def make(
    images: tuple[Image, ...],
    files: dict[str, str],
    changed: set[str] | None = None,
    registry: str = "reg:5000/team",
) -> Plan:
    config = Config(source="test", platforms=ALL3, registry=registry, images=images)
    return make_plan(
        Commit("ab" * 20, (Ref("main", default=True),), None if changed is None else frozenset(changed), "t"),
        config,
        Files.of(files),
        build_platform="linux/amd64",
    )


BASE = Image("base", "base", "base/Dockerfile", ALL3, build_args=(("V", "1"),))


APP = Image("team/app", "app", "app/Dockerfile", ("linux/amd64", "linux/arm64"), target="runtime")


FILES = {"base/Dockerfile": "FROM busybox\n", "app/Dockerfile": "FROM reg:5000/team/base:latest AS runtime\n"}


def test_bake_commands() -> None:
    bx = Buildx({}, "multi", process.Group())
    assert bx.bake(Path("/d.json"), "t") == (
        "docker", "buildx", "bake", "--file", "/d.json", "--progress=rawjson", "--builder", "multi", "t")  # fmt: skip
    assert "--builder" not in Buildx({}, None, process.Group()).bake(Path("/d.json"))
    # The plugin itself where it is known (no docker CLI before it); on a context's engine, docker
    # (`--context` is docker's flag: the plugin alone would build on the default engine).
    direct = Buildx({}, "multi", process.Group(), plugin="/p/docker-buildx")
    assert direct.bake(Path("/d.json"), "t") == (
        "/p/docker-buildx", "bake", "--file", "/d.json", "--progress=rawjson", "--builder", "multi", "t")  # fmt: skip
    on_context = direct._replace(context="arm-box").bake(Path("/d.json"))
    assert on_context[:5] == ("docker", "--context", "arm-box", "buildx", "bake")
    # buildx's look at git would describe the temporary worktree; mab-hook labels the revision.
    assert bx.run_env["BUILDX_GIT_INFO"] == "false"
    assert Buildx({"BUILDX_GIT_INFO": "true"}, None, process.Group()).run_env["BUILDX_GIT_INFO"] == "true"


EXPORT_FAILURE = """\
#12 [linux/arm/v7 2/2] RUN echo "base v1" > /base
#12 CACHED

#13 exporting to image
#13 exporting layers done
#13 ERROR: failed to commit m3p52 to eajbw during finalize: snapshot m3p52 does not exist: not found
------
ERROR: failed to solve: failed to commit m3p52 to eajbw during finalize
"""


def lab_plan(lab: Lab, tmp_path: Path, dockerfile: str) -> tuple[Plan, Path]:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "Dockerfile").write_text(dockerfile)
    image = Image("img", "img", "img/Dockerfile", ALL3)
    plan = make((image,), {"img/Dockerfile": dockerfile}, registry=lab.namespace())
    return plan, bakefile.write_definition(
        tmp_path / "bake.json", bakefile.definition(plan, bakefile.Paths(tmp_path, tmp_path), {}, {})
    )


@pytest.mark.lab
def test_build_one_builds_every_platform(lab: Lab, tmp_path: Path) -> None:
    plan, bake = lab_plan(lab, tmp_path, f"FROM {lab.busybox}\nRUN uname -m > /arch\n")
    lines: list[str] = []
    result = buildx.build_one(plan.affected[0], bake, Buildx(lab.env, None, process.Group()), tmp_path,
                              on_line=lines.append)  # fmt: skip
    assert (result.status, result.detail) == (Status.BUILT, "")
    assert lines == (tmp_path / "img.log").read_text().splitlines()
    assert result.image_digest.startswith("sha256:")
    for platform, arch in zip(ALL3, ("x86_64", "aarch64", "armv7l"), strict=True):
        ran = lab.docker("run", "--rm", "--platform", platform, plan.affected[0].tags[0], "cat", "/arch")
        assert ran.stdout.strip() == arch


@pytest.mark.lab
def test_build_one_names_the_failing_platform(lab: Lab, tmp_path: Path) -> None:
    plan, bake = lab_plan(lab, tmp_path, f'FROM {lab.busybox}\nRUN [ "$(uname -m)" != armv7l ]\n')
    result = buildx.build_one(plan.affected[0], bake, Buildx(lab.env, None, process.Group()), tmp_path,
                              on_line=lambda line: None)  # fmt: skip
    assert (result.status, result.failure) == (Status.FAILED, Failure.BUILD)
    assert result.detail == 'build failed on linux/arm/v7: RUN [ "$(uname -m)" != armv7l ] (exit 1)'
    assert any("did not complete successfully" in line for line in result.tail)


@pytest.mark.lab
def test_build_one_stops_at_its_timeout(lab: Lab, tmp_path: Path) -> None:
    plan, bake = lab_plan(lab, tmp_path, f"FROM {lab.busybox}\nRUN sleep 60\n")
    result = buildx.build_one(plan.affected[0], bake, Buildx(lab.env, None, process.Group()), tmp_path,
                              on_line=lambda line: None, timeout=3)  # fmt: skip
    assert result.status == Status.TIMED_OUT
    assert result.detail == "timed out after 3 s; the build was stopped"
    assert result.seconds < 30


class CannedGroup(process.Group):
    """buildx answering from canned plain progress, one answer per invocation: for a fault the
    lab cannot make on demand (distribution 2.8 answering 500 to one push among several)."""

    def __init__(self, answers: list[tuple[int, str]]) -> None:
        super().__init__()
        self.answers = answers
        self.commands: list[tuple[str, ...]] = []

    def stream(self, cmd: Sequence[str], **kwargs: Any) -> process.Streamed:
        self.commands.append(tuple(cmd))
        code, text = self.answers.pop(0)
        render = kwargs.get("render") or (lambda line: [line.rstrip("\n")])
        shown = []
        for line in text.splitlines(keepends=True):
            for out in render(line):
                kwargs["log"].write(out + "\n")
                kwargs["on_line"](out)
                shown.append(out)
        kwargs["log"].flush()
        return process.Streamed(code, False, tuple(shown[-process.TAIL_LINES :]))


def test_a_registry_failing_one_upload_among_several_retries_it_and_those_it_stopped(tmp_path: Path) -> None:
    plan = make((BASE, APP), FILES)
    first = ("#1 [base linux/amd64 1/1] FROM busybox\n#1 DONE 0.1s\n#2 [base] exporting to image\n#2 DONE 0.2s\n"
             "#3 [base] pushing reg:5000/team/base:mab-1 with docker\n#3 ERROR: unexpected status from HEAD request to "
             "http://reg:5000/v2/team/base/manifests/mab-1: 500 Internal Server Error\n"
             "#4 [team_SLASH_app] exporting to image\n#4 CANCELED\nERROR: unexpected status: 500\n")  # fmt: skip
    second = (
        "#1 [base] exporting to image\n#1 DONE 0.1s\n#2 [team_SLASH_app] exporting to image\n#2 DONE 0.1s\n"
    )
    group = CannedGroup([(1, first), (0, second)])
    wanted = [buildx.Wanted(p, f"reg:5000/team/{p.image.name}:mab-1") for p in plan.affected]
    results = buildx.build_together(
        wanted, tmp_path / "bake.json", Buildx({}, None, group), tmp_path, buildx.Watch()
    )
    assert [(r.name, r.status) for r in results] == [("base", Status.BUILT), ("team/app", Status.BUILT)]
    assert len(group.commands) == 2 and group.commands[1][-2:] == ("base", "team_SLASH_app")
    log = (tmp_path / "base.log").read_text()
    assert "500 Internal Server Error" in log and "once more" in log


REGISTRY_500 = ("#1 [linux/amd64 1/1] FROM busybox\n#1 DONE 0.1s\n#2 exporting to image\n#2 DONE 0.1s\n"
                "#3 pushing reg:5000/team/base:mab-1 with docker\n#3 ERROR: unexpected status from HEAD request "
                "to http://reg:5000/v2/team/base/manifests/mab-1: 500 Internal Server Error\n")  # fmt: skip


def test_each_cause_is_tried_again_as_often_as_it_may_be(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The registry failing twice leaves the engine its own retry: the attempts are counted
    per cause, and the engine's "twice" is said only when it failed twice."""
    monkeypatch.setattr(buildx, "BACKOFF", 0.0)
    plan = make((BASE,), FILES)
    for answers, status in (
        ([(1, REGISTRY_500), (1, REGISTRY_500), (1, EXPORT_FAILURE), (0, "")], Status.BUILT),
        ([(1, EXPORT_FAILURE), (1, REGISTRY_500), (1, EXPORT_FAILURE)], Status.FAILED),
        ([(1, REGISTRY_500)] * 3, Status.FAILED),
    ):
        group = CannedGroup(list(answers))
        result = buildx.build_one(plan.affected[0], tmp_path / "b.json", Buildx({}, None, group), tmp_path,
                                  on_line=lambda line: None, push_ref="reg:5000/team/base:mab-1")  # fmt: skip
        assert (result.status, len(group.commands)) == (status, len(answers))
        assert group.answers == []
    assert result.failure is Failure.REGISTRY


def test_a_failing_step_is_not_tried_again(tmp_path: Path) -> None:
    plan = make((BASE,), FILES)
    failing = (
        "#1 [base linux/amd64 2/2] RUN false\n#1 ERROR: process did not complete successfully: exit code: 1\n"
    )
    group = CannedGroup([(1, failing)])
    (result,) = buildx.build_together([buildx.Wanted(plan.affected[0])], tmp_path / "b.json",
                                      Buildx({}, None, group), tmp_path, buildx.Watch())  # fmt: skip
    assert (result.status, result.failure, len(group.commands)) == (Status.FAILED, Failure.BUILD, 1)
    assert result.detail == "build failed on linux/amd64: RUN false (exit 1)"


def test_an_upload_stopped_by_another_images_failing_step_is_not_the_engines_failure(tmp_path: Path) -> None:
    """Seen in the lab: BuildKit stops the whole invocation when one image's step fails, and an
    upload under way then ends with that step's error. The uploading image was stopped, not
    failed by the engine (and is not tried again)."""
    plan = make(
        (BASE, dataclasses.replace(APP, name="app")), {**FILES, "app/Dockerfile": "FROM busybox AS runtime\n"}
    )
    canceled = ("#1 [base linux/arm/v7 1/1] FROM busybox\n#1 DONE 0.0s\n#2 [base] exporting to image\n#2 DONE 0.4s\n"
                "#3 [base] pushing reg:5000/team/base:mab-1 with docker\n"
                "#4 [app linux/arm/v7 2/2] RUN false\n#4 ERROR: process \"/bin/sh -c false\" did not complete "
                "successfully: exit code: 1\n#3 ERROR: failed to solve: process \"/bin/sh -c false\" did not complete "
                "successfully: exit code: 1\nERROR: failed to solve: exit code: 1\n")  # fmt: skip
    group = CannedGroup([(1, canceled)])
    wanted = [buildx.Wanted(p, f"reg:5000/team/{p.image.name}:mab-1") for p in plan.affected]
    base, app = buildx.build_together(wanted, tmp_path / "bake.json", Buildx({}, None, group), tmp_path,
                                      buildx.Watch())  # fmt: skip
    assert (base.status, base.failure, base.detail, base.published) == (
        Status.NOT_BUILT, Failure.BASE, "stopped: another image of the push failed", ())  # fmt: skip
    assert (app.status, app.failure, app.detail) == (
        Status.FAILED,
        Failure.BUILD,
        "build failed on linux/arm/v7: RUN false (exit 1)",
    )
    assert len(group.commands) == 1


def test_an_invocation_that_fails_with_no_step_failing_is_no_image_stopping_another(tmp_path: Path) -> None:
    """Neither image's step failed: each is told buildx's own last words, not "stopped by
    another image"."""
    plan = make(
        (BASE, dataclasses.replace(APP, name="app")), {**FILES, "app/Dockerfile": "FROM busybox AS runtime\n"}
    )
    said = ("#1 [base linux/arm/v7 1/1] FROM busybox\n#1 DONE 0.0s\n#2 [app linux/arm/v7 1/2] FROM busybox\n"
            "#2 DONE 0.0s\nERROR: failed to solve: rpc error: code = Unavailable desc = error reading from server: EOF\n")  # fmt: skip
    group = CannedGroup([(1, said)] * 3)
    wanted = [buildx.Wanted(p) for p in plan.affected]
    results = buildx.build_together(wanted, tmp_path / "bake.json", Buildx({}, None, group), tmp_path,
                                    buildx.Watch())  # fmt: skip
    for result in results:
        assert (result.status, result.failure, result.detail) == (
            Status.FAILED, Failure.BUILD,
            "the build failed: failed to solve: rpc error: code = Unavailable desc = error reading from server: EOF",
        )  # fmt: skip
    assert len(group.commands) == 1  # a failure of the build: not tried again
    last = "ERROR: failed to solve: rpc error: code = Unavailable desc = error reading from server: EOF\n"
    for tail, detail in ((f"ERROR: {'z' * 400}\n", f"the build failed: {'z' * 300}"),
                         ("#1 DONE 0.0s\n", "the build failed: buildx exited 1")):  # fmt: skip
        group = CannedGroup([(1, said.replace(last, tail))])
        first, _ = buildx.build_together(wanted, tmp_path / "bake.json", Buildx({}, None, group), tmp_path,
                                         buildx.Watch())  # fmt: skip
        assert first.detail == detail


def test_a_definition_without_templates_is_not_sent_to_buildx_for_proof(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[tuple[str, ...]] = []

    def run(cmd: Sequence[str], **kw: Any) -> process.Completed:
        ran.append(tuple(cmd))
        return process.Completed(tuple(cmd), 0, "{}", "")  # buildx printing no target

    monkeypatch.setattr(process, "run", run)
    plain = bakefile.definition(make((BASE,), FILES), bakefile.Paths(Path("/co"), Path("/repo")), {}, {})
    buildx.prove_literal(tmp_path / "bake.json", plain, Buildx({}, None, CannedGroup([])))
    assert ran == []
    templated = bakefile.definition(make((dataclasses.replace(BASE, build_args=(("V", "${X}"),)),), FILES),
                                  bakefile.Paths(Path("/co"), Path("/repo")), {}, {})  # fmt: skip
    with pytest.raises(FatalError, match="would read its"):  # buildx, asked, prints no such target
        buildx.prove_literal(tmp_path / "bake.json", templated, Buildx({}, None, CannedGroup([])))
    assert len(ran) == 1 and ran[0][:4] == ("docker", "buildx", "bake", "--file")


@pytest.mark.lab
@settings(
    max_examples=int(os.environ.get("MAB_LAB_EXAMPLES", "25")),
    deadline=None,
    derandomize="MAB_LAB_EXAMPLES" not in os.environ,
)
@given(
    key=st.text(alphabet="$%{}aZ_", min_size=1, max_size=10), value=st.text(alphabet='$%{}a "\\', max_size=14)
)
def test_buildx_reads_every_literal_string_as_written(lab: Lab, key: str, value: str) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        bake = Path(scratch) / "bake.json"
        plain = {"target": {"t": {"context": f"ctx/v{value}", "args": {key: value}, "labels": {"l": value}}}}
        bakefile.write_definition(bake, bakefile.literal(plain))
        printed = subprocess.run(("docker", "buildx", "bake", "--file", str(bake), "--print", "--progress=quiet", "t"),
                                 env=lab.env, capture_output=True, text=True, check=True)  # fmt: skip
        target = json.loads(printed.stdout)["target"]["t"]
        assert (target["context"], target["args"], target["labels"]) == (
            f"ctx/v{value}",
            {key: value},
            {"l": value},
        )
        buildx.prove_literal(bake, bakefile.literal(plain), Buildx(lab.env, None, process.Group()))


def test_a_one_image_invocation_owns_its_unlabelled_steps_and_shows_them(tmp_path: Path) -> None:
    """Bake names no entry when it builds one image: `[linux/arm64 2/2]`, not `[base ...]`."""
    plan = make((BASE,), FILES)
    failing = ("#1 [internal] load build definition from Dockerfile\n#1 DONE 0.0s\n"
               "#2 [linux/arm64 2/2] RUN false\n#2 ERROR: process \"/bin/sh -c false\" did not complete successfully: exit code: 1\n"
               "ERROR: failed to solve: process \"/bin/sh -c false\" did not complete successfully: exit code: 1\n")  # fmt: skip
    steps: list[tuple[str, str, str]] = []
    watch = buildx.Watch(step=lambda image, platform, what: steps.append((image, platform, what)))
    group = CannedGroup([(1, failing)])
    (result,) = buildx.build_together([buildx.Wanted(plan.affected[0])], tmp_path / "b.json",
                                      Buildx({}, None, group), tmp_path, watch)  # fmt: skip
    assert (result.status, result.failure, result.detail) == (
        Status.FAILED,
        Failure.BUILD,
        "build failed on linux/arm64: RUN false (exit 1)",
    )
    assert any("did not complete successfully" in line for line in result.tail)
    assert steps == [("base", "linux/arm64", "2/2 RUN false")]


@pytest.mark.parametrize("said", ['no builder "nope" found',
                                  "Cannot connect to the Docker daemon at unix:///x.sock. Is the docker daemon running?"])  # fmt: skip
def test_buildx_failing_before_any_step_is_the_engines_failure_told_as_it_is_and_tried_again(
    tmp_path: Path, said: str
) -> None:
    plan = make((BASE, APP), FILES)
    group = CannedGroup([(1, f"ERROR: {said}\n"), (1, f"ERROR: {said}\n")])
    wanted = [buildx.Wanted(p) for p in plan.affected]
    results = buildx.build_together(
        wanted, tmp_path / "b.json", Buildx({}, None, group), tmp_path, buildx.Watch()
    )
    assert len(group.commands) == 2  # tried once more, as any failure of the engine is
    for result in results:
        assert (result.status, result.failure) == (Status.FAILED, Failure.ENGINE)
        assert result.detail == f"buildx failed before building anything: {said}"
        assert result.tail == (f"ERROR: {said}",)


def test_a_bases_steps_and_export_stay_the_bases_when_one_image_is_built_on_it(tmp_path: Path) -> None:
    """Seen in the lab: bake labels a base built for one dependant `[base ...]`; its export
    ending is not the dependant's."""
    plan = make((BASE, APP), FILES, changed={"app/Dockerfile"})
    log = ("#1 [base linux/amd64 1/1] FROM busybox\n#1 DONE 0.1s\n#2 [base] exporting to image\n#2 DONE 0.1s\n"
           "#3 [team_SLASH_app linux/amd64 1/1] FROM reg:5000/team/base\n#3 DONE 0.1s\n")  # fmt: skip
    events: list[tuple[str, ...]] = []
    watch = buildx.Watch(step=lambda image, platform, what: events.append(("step", image, what)),
                         done=lambda image: events.append(("done", image)))  # fmt: skip
    buildx.build_together([buildx.Wanted(plan.affected[0])], tmp_path / "b.json", Buildx({}, None, CannedGroup([(0, log)])),
                          tmp_path, watch)  # fmt: skip
    assert events == [("step", "team/app", "1/1 FROM reg:5000/team/base")]


class Timed(CannedGroup):
    """An invocation stopped at its time limit, with an export error in what it said."""

    def stream(self, cmd: Sequence[str], **kwargs: Any) -> process.Streamed:
        done = super().stream(cmd, **kwargs)
        return process.Streamed(-1, True, done.tail)


def test_what_each_ending_is_called(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(buildx, "BACKOFF", 0.0)
    (planned,) = make((BASE,), FILES).affected
    timed = Timed([(-1, EXPORT_FAILURE)])  # stopped, not tried again though the export failed
    result = buildx.build_one(planned, tmp_path / "b.json", Buildx({}, None, timed), tmp_path,
                              on_line=lambda line: None, timeout=5)  # fmt: skip
    assert (result.status, result.detail, result.failure) == (
        Status.TIMED_OUT, "timed out after 5 s; the build was stopped", Failure.BUILD)  # fmt: skip
    assert len(timed.commands) == 1
    refused = CannedGroup([(1, 'ERROR: no builder "gone" found\n')] * 2)
    result = buildx.build_one(planned, tmp_path / "b.json", Buildx({}, None, refused), tmp_path,
                              on_line=lambda line: None)  # fmt: skip
    assert (result.detail, result.failure) == ('buildx failed before building anything: no builder "gone" found',
                                               Failure.ENGINE)  # fmt: skip
    steps = ("#1 [base linux/arm64 2/2] RUN x\n#2 [base linux/arm/v7 2/2] RUN x\n"
             "#1 ERROR: exit code: 1\n#2 ERROR: exit code: 1\n")  # fmt: skip
    for log, detail in ((steps, "build failed on linux/arm64, linux/arm/v7: RUN x (exit 1)"),
                        ("#1 [base 1/1] FROM x\nsomething else\n", "build failed (exit 2)")):  # fmt: skip
        result = buildx.build_one(planned, tmp_path / "b.json", Buildx({}, None, CannedGroup([(2, log)])),
                                  tmp_path, on_line=lambda line: None)  # fmt: skip
        assert (result.detail, result.failure) == (detail, Failure.BUILD)


def test_attempts_are_numbered_and_only_the_registry_is_waited_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)  # buildx's waits
    (planned,) = make((BASE,), FILES).affected
    answers = [(1, REGISTRY_500), (1, EXPORT_FAILURE), (1, REGISTRY_500), (0, "")]
    group = CannedGroup(list(answers))
    result = buildx.build_one(planned, tmp_path / "b.json", Buildx({}, None, group), tmp_path,
                              on_line=lambda line: None, push_ref="reg:5000/team/base:mab-1")  # fmt: skip
    assert result.status is Status.BUILT and result.published == ("reg:5000/team/base:mab-1",)
    assert slept == [1 * buildx.BACKOFF, 0, 2 * buildx.BACKOFF]  # the registry waited for, longer each time
    log = (tmp_path / "base.log").read_text()
    assert re.findall(r"^mab-hook: the (\w+) failed while exporting the image; attempt (\d)$", log, re.M) == [
        ("registry", "2"), ("engine", "3"), ("registry", "4")]  # fmt: skip
    assert result.seconds >= 0 and result.log == tmp_path / "base.log"


def test_the_proof_compares_only_what_could_read_as_a_template(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """buildx prints a definition its own way (platforms, paths normalized): only the strings
    that hold `${` or `%{` must read back as written."""
    ran: list[tuple[str, ...]] = []
    templated = bakefile.definition(make((dataclasses.replace(BASE, build_args=(("V", "a%{b}"),)),), FILES),
                                  bakefile.Paths(Path("/co"), Path("/repo")), {}, {})  # fmt: skip
    plain = bakefile.unliteral(templated)

    def run(cmd: Sequence[str], **kw: Any) -> process.Completed:
        ran.append(tuple(cmd))
        printed = {name: {**spec, "platforms": ["normalized"]} for name, spec in plain["target"].items()}
        return process.Completed(tuple(cmd), 0, json.dumps({"target": printed}), "")

    monkeypatch.setattr(process, "run", run)
    buildx.prove_literal(tmp_path / "bake.json", templated, Buildx({}, "multi", CannedGroup([])))
    assert ran == [("docker", "buildx", "bake", "--file", str(tmp_path / "bake.json"), "--print", "--progress=quiet",
                    "--builder", "multi", "base")]  # fmt: skip
    assert bakefile.has_template("a%{b}") and bakefile.has_template({"k": ["${x}"]})
    assert not bakefile.has_template("a$b{c}%d")


def test_a_base_built_only_as_a_context_failing_is_its_dependants_failure_and_its_log_theirs(
    tmp_path: Path,
) -> None:
    plan = make((BASE, APP), FILES, changed={"app/Dockerfile"})  # base: only a context
    copy = "base_AS_CONTEXT_linux_amd64_AND_linux_arm64"
    log = (f"#1 [{copy} linux/arm64 1/2] FROM busybox\n#1 DONE 0.1s\n#2 [{copy} linux/arm64 2/2] RUN make\n"
           "#2 ERROR: process did not complete successfully: exit code: 2\n"
           "#3 [team_SLASH_app linux/amd64 1/1] FROM base\n#3 CANCELED\nERROR: failed to solve: exit code: 2\n")  # fmt: skip
    group = CannedGroup([(1, log)])
    (app,) = buildx.build_together([buildx.Wanted(p) for p in plan.affected], tmp_path / "b.json",
                                   Buildx({}, None, group), tmp_path, buildx.Watch())  # fmt: skip
    assert (app.status, app.failure, app.detail) == (
        Status.NOT_BUILT,
        Failure.BASE,
        "base image base did not build",
    )
    assert (
        "RUN make" in (tmp_path / "team_SLASH_app.log").read_text()
    )  # the base's steps, in its reader's log
    assert not (tmp_path / "base.log").exists()
    assert len(group.commands) == 1  # a step failed: never tried again


def test_each_image_is_timed_to_its_own_export_and_the_registry_waited_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)  # buildx's waits
    plan = make((BASE, APP), FILES)
    failing = ("#1 [base] exporting to image\n#1 DONE 0.1s\n#2 [base] pushing reg:5000/team/base:mab-1 with docker\n"
               "#2 ERROR: unexpected status: 500 Internal Server Error\n"
               "#3 [team_SLASH_app] exporting to image\n#3 DONE 0.1s\n")  # fmt: skip
    done: list[str] = []
    watch = buildx.Watch(done=done.append)
    group = CannedGroup([(1, failing), (1, failing), (0, "#1 [base] exporting to image\n#1 DONE 0.1s\n")])
    wanted = [buildx.Wanted(p, f"reg:5000/team/{p.image.name}:mab-1") for p in plan.affected]
    base, app = buildx.build_together(wanted, tmp_path / "b.json", Buildx({}, None, group), tmp_path, watch)
    assert (base.status, app.status) == (Status.BUILT, Status.BUILT)
    assert slept == [1 * buildx.BACKOFF, 2 * buildx.BACKOFF]  # longer each time the registry failed
    assert [c[-1] for c in group.commands] == ["team_SLASH_app", "base", "base"]  # only what failed again
    assert 0 <= base.seconds < 60 and 0 <= app.seconds < 60
    assert done[:2] == ["base", "team/app"]  # each image's export ending, as it ended


def test_what_the_proof_says_when_buildx_reads_a_template(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    templated = bakefile.definition(make((dataclasses.replace(BASE, build_args=(("V", "${X}"),)),), FILES),
                                  bakefile.Paths(Path("/co"), Path("/repo")), {}, {})  # fmt: skip

    def run(cmd: Sequence[str], *, check: bool = True, **kw: Any) -> process.Completed:
        if check:  # as process.run: a failure raises, with buildx's words rather than the proof's
            raise process.CommandError(cmd, 1, "ERROR: boom")
        return process.Completed(tuple(cmd), 1, "", "ERROR: boom")

    monkeypatch.setattr(process, "run", run)
    with pytest.raises(FatalError) as raised:  # buildx failing to print is no proof either: said the same
        buildx.prove_literal(tmp_path / "bake.json", templated, Buildx({}, None, CannedGroup([])))
    assert str(raised.value) == (
        'image base: buildx would read its args {"V": "${X}"} as a template rather than as written; nothing '
        "was built. Rename what holds `${` or `%{` (a path, an argument or a label of the pushed commit), "
        "commit, and push again"
    )


class WithMetadata(CannedGroup):
    """buildx writing its --metadata-file as it does after a build."""

    def stream(self, cmd: Sequence[str], **kwargs: Any) -> process.Streamed:
        done = super().stream(cmd, **kwargs)
        path = Path(cmd[list(cmd).index("--metadata-file") + 1])
        entries = [c for c in cmd if c in ("base", "team_SLASH_app")]
        data = {e: {"containerimage.digest": f"sha256:{e}"} for e in entries}
        path.write_text(json.dumps(data if len(entries) > 1 else next(iter(data.values()))))
        return done


def test_each_image_gets_its_digest_from_what_buildx_wrote(tmp_path: Path) -> None:
    plan = make((BASE, APP), FILES)
    ok = "#1 [base] exporting to image\n#1 DONE 0.1s\n#2 [team_SLASH_app] exporting to image\n#2 DONE 0.1s\n"
    base, app = buildx.build_together([buildx.Wanted(p) for p in plan.affected], tmp_path / "b.json",
                                      Buildx({}, None, WithMetadata([(0, ok)])), tmp_path, buildx.Watch())  # fmt: skip
    assert (base.image_digest, app.image_digest) == ("sha256:base", "sha256:team_SLASH_app")
    one = buildx.build_one(plan.affected[0], tmp_path / "b.json", Buildx({}, None, WithMetadata([(0, "")])),
                           tmp_path, on_line=lambda line: None)  # fmt: skip
    assert one.image_digest == "sha256:base" and 0 <= one.seconds < 60
    (tmp_path / "m.json").write_text('{"api": "not a table"}')
    assert buildlog.image_digest(tmp_path / "m.json", "api") == ""


def test_an_attempt_is_read_alone_its_steps_numbered_afresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each attempt numbers its vertices from 1: the second one's failing step #2 is a step,
    though the first one's #2 was its export."""
    monkeypatch.setattr(buildx, "BACKOFF", 0.0)
    (planned,) = make((BASE,), FILES).affected
    first = "#1 [linux/amd64 1/1] FROM busybox\n#2 exporting to image\n#2 ERROR: failed to commit: snapshot missing\n"
    second = "#1 [linux/amd64 1/1] FROM busybox\n#2 [linux/arm64 2/2] RUN make\n#2 ERROR: exit code: 1\n"
    group = CannedGroup([(1, first), (1, second)])
    result = buildx.build_one(planned, tmp_path / "b.json", Buildx({}, None, group), tmp_path,
                              on_line=lambda line: None)  # fmt: skip
    assert (result.failure, result.detail) == (
        Failure.BUILD,
        "build failed on linux/arm64: RUN make (exit 1)",
    )


def test_a_base_copys_export_stopped_by_another_images_failure_stops_its_dependants_too(
    tmp_path: Path,
) -> None:
    """BuildKit ends the whole invocation when a step fails: an export of a base's copy under way
    then ends in an error of its own ("failed to get status: EOF", seen on the lab). Its
    dependants were stopped by that other image; the base did build. Alone, the copy's export
    failing is the base's failure."""
    lone = Image("lone", "lone", "lone/Dockerfile", ALL3)
    files = {**FILES, "lone/Dockerfile": "FROM busybox\nRUN make\n"}
    plan = make((BASE, APP, lone), files, changed={"app/Dockerfile", "lone/Dockerfile"})  # base: a context
    copy = "base_AS_CONTEXT_linux_amd64_AND_linux_arm64"
    export = (f"#1 [{copy} linux/amd64 1/1] FROM busybox\n#1 DONE 0.1s\n#3 [{copy}] exporting to image\n"
              "#3 ERROR: error writing manifest blob sha256:ff: failed to get status: error getting writer "
              "status: EOF: unknown\n")  # fmt: skip
    failed = ("#2 [lone linux/arm64 1/2] RUN make\n"
              "#2 ERROR: process \"/bin/sh -c make\" did not complete successfully: exit code: 2\n")  # fmt: skip
    end = "ERROR: failed to solve: process did not complete successfully\n"
    wanted = [buildx.Wanted(p) for p in plan.affected]
    results = buildx.build_together(wanted, tmp_path / "b.json", Buildx({}, None, CannedGroup([(1, failed + export + end)])),
                                    tmp_path, buildx.Watch())  # fmt: skip
    by_name = {r.name: (r.status, r.detail) for r in results}
    assert by_name["team/app"] == (Status.NOT_BUILT, "stopped: another image of the push failed")
    assert by_name["lone"][0] is Status.FAILED and "RUN make" in by_name["lone"][1]
    # However far back in the output (buildx's last words may be a page long), not "buildx failed
    # before building anything".
    words = "".join(f"  {n}: context of the error\n" for n in range(process.TAIL_LINES))
    answer = CannedGroup([(1, export + words + end)])
    results = buildx.build_together(
        wanted, tmp_path / "c.json", Buildx({}, None, answer), tmp_path, buildx.Watch()
    )
    by_name = {r.name: (r.status, r.detail) for r in results}
    assert by_name["team/app"] == (Status.NOT_BUILT, "base image base did not build")


def test_lines_are_sorted_into_the_logs_of_the_images_they_concern(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step goes to its image's log; a base's copy (the context of the images built on it) to
    theirs too, and its failure is theirs as a base's; a line that names none, to every log."""
    monkeypatch.setattr(buildx, "BACKOFF", 0.0)
    plan = make((BASE, APP), FILES)
    copy = "base_AS_CONTEXT_linux_amd64_AND_linux_arm64"
    log = ("#1 [base linux/amd64 1/1] FROM busybox\n#1 DONE 0.1s\n#2 resolving provenance for metadata file\n"
           f"#2 DONE 0.0s\n#3 [{copy} linux/arm64 1/1] RUN make\n#3 ERROR: exit code: 2\n"
           "#4 [team_SLASH_app linux/amd64 1/1] FROM base\n#4 CANCELED\nERROR: failed to solve: exit code: 2\n")  # fmt: skip
    steps: list[tuple[str, str, str]] = []
    watch = buildx.Watch(step=lambda image, platform, what: steps.append((image, platform, what)))
    base, app = buildx.build_together([buildx.Wanted(p) for p in plan.affected], tmp_path / "b.json",
                                      Buildx({}, None, CannedGroup([(1, log)])), tmp_path, watch)  # fmt: skip
    # Live progress labels each step with the image that runs it: the base's copy is no step of app's.
    assert steps == [
        ("base", "linux/amd64", "1/1 FROM busybox"),
        ("team/app", "linux/amd64", "1/1 FROM base"),
    ]
    base_log, app_log = (tmp_path / "base.log").read_text(), (tmp_path / "team_SLASH_app.log").read_text()
    assert "#1 [base linux/amd64 1/1] FROM busybox" in base_log and "FROM busybox" not in app_log
    assert "#4 [team_SLASH_app" in app_log and "#4 [team_SLASH_app" not in base_log
    assert "resolving provenance" in base_log and "resolving provenance" in app_log  # names no image
    assert f"#3 [{copy}" in app_log and f"#3 [{copy}" in base_log  # the base's, read by app
    assert (app.status, app.detail) == (Status.NOT_BUILT, "base image base did not build")
    assert (base.status, base.failure) == (Status.FAILED, Failure.BUILD)
    assert 0 <= app.seconds < 60


def test_an_engine_failure_alone_is_tried_again_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)  # buildx's waits
    plan = make((BASE,), FILES)
    failing = "#1 [base] exporting to image\n#1 ERROR: failed to commit: snapshot does not exist\n"
    group = CannedGroup([(1, failing), (0, "#1 [base] exporting to image\n#1 DONE 0.1s\n")])
    (base,) = buildx.build_together([buildx.Wanted(plan.affected[0])], tmp_path / "b.json",
                                    Buildx({}, None, group), tmp_path, buildx.Watch())  # fmt: skip
    assert base.status is Status.BUILT and slept == [0]
    assert (
        "\nmab-hook: the engine or the registry failed while exporting; once more\n"
        in (tmp_path / "base.log").read_text()
    )


def test_a_stale_log_of_an_earlier_run_is_not_read_as_this_ones(tmp_path: Path) -> None:
    (tmp_path / "base.log").write_text("old run\n" * 5000)
    plan = make((BASE,), FILES)
    failing = "#1 [base linux/arm64 2/2] RUN make\n#1 ERROR: exit code: 1\n"
    (base,) = buildx.build_together([buildx.Wanted(plan.affected[0])], tmp_path / "b.json",
                                    Buildx({}, None, CannedGroup([(1, failing)])), tmp_path, buildx.Watch())  # fmt: skip
    assert base.detail == "build failed on linux/arm64: RUN make (exit 1)"
    assert "old run" not in (tmp_path / "base.log").read_text()
