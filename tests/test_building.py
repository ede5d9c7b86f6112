"""The gate: the readiness checks before any build."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import git as gitpython
import pytest

from mab_hook import building, changes, planning, readiness
from mab_hook.errors import FatalError
from mab_hook.output import Printer
from mab_hook.results import BuildResult, Failure, Status
from tests.conftest import Repo
from tests.readiness.recorded import host


def test_the_gate_shows_warnings_briefly_and_stops_on_failures(
    tmp_path: Path, repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.commit({"pyproject.toml": '[tool.multiarch]\nplatforms = ["linux/arm/v7", "linux/s390x"]\n',
                 "app/Dockerfile": "FROM busybox\n"})  # fmt: skip
    handle = gitpython.Repo(repo.path)
    plans = [
        planning.plan_at(
            handle, changes.for_all(handle, "HEAD", None, "t"), env=os.environ, build_platform="linux/amd64"
        )
    ]
    stream = io.StringIO()
    with pytest.raises(FatalError) as info:
        building.enforce(
            readiness.ask(host(tmp_path), building.wanted_for(plans)), Printer(stream, color=False)
        )
    assert stream.getvalue() == (
        "mab-hook: warning: platform linux/arm/v7: builder default does not list linux/arm/v7, but BuildKit "
        "runs it this way (`mab-hook doctor` says more; `git config --add mab-hook.silence platform-unlisted` "
        "stops this warning)\n"
    )
    assert "this host cannot build what the push needs; nothing was built" in str(info.value)
    assert "no emulator is registered for s390x ELF programs" in str(info.value)
    repo.git("config", "--add", "mab-hook.silence", "platform-unlisted")
    repo.git("config", "--add", "mab-hook.silence", "emulator-without-f")
    quiet = building.silenced(repo.path, os.environ)
    assert quiet == {"platform-unlisted", "emulator-without-f"}
    stream = io.StringIO()
    with pytest.raises(FatalError) as info:  # a failure is never silenced
        verdict = readiness.ask(host(tmp_path / "2"), building.wanted_for(plans))
        building.enforce(verdict, Printer(stream, color=False), silenced=quiet)
    assert stream.getvalue() == ""
    assert "no emulator is registered for s390x ELF programs" in str(info.value)
    assert building.silenced(tmp_path, os.environ) == frozenset()  # no repository, no setting: nothing


def test_by_hand_a_configuration_changed_but_not_committed_is_said(repo: Repo) -> None:
    from tests.conftest import mab  # noqa: PLC0415

    sha = repo.commit({
        "pyproject.toml": '[tool.multiarch]\nplatforms = ["linux/amd64"]\n[tool.multiarch.images.app]\ncontext = "app"\n',
        "app/Dockerfile": "FROM scratch\n",
    })  # fmt: skip
    quiet = mab(repo.path, os.environ, "--all", "--dry-run", "--color", "never")
    assert quiet.returncode == 0 and "not committed" not in quiet.stdout + quiet.stderr
    repo.write({"pyproject.toml": '[tool.multiarch]\nplatforms = ["linux/arm64"]\n[tool.multiarch.images.app]\n'
                                  'context = "app"\n'})  # fmt: skip
    said = mab(repo.path, os.environ, "--all", "--dry-run", "--color", "never")
    assert said.returncode == 0, said.stdout + said.stderr
    assert (f"warning: pyproject.toml: changed but not committed; mab-hook plans and builds what is committed "
            f"({sha[:12]}): commit the change to build with it") in said.stdout + said.stderr  # fmt: skip
    assert "[linux/amd64]" in said.stdout  # what is committed


def test_a_push_asks_only_the_repositories_it_writes_to_whether_it_may() -> None:
    """The staging repository of every image built, the public ones of those it publishes."""
    import dataclasses  # noqa: PLC0415

    from mab_hook.changes import Commit, Ref  # noqa: PLC0415
    from mab_hook.inputs import Files  # noqa: PLC0415
    from mab_hook.plan import make_plan  # noqa: PLC0415
    from tests.test_plan import CONFIG, DOCKERFILES  # noqa: PLC0415

    asked: list[str] = []

    class Stub:
        def push_refused(self, repository: str) -> str | None:
            asked.append(repository)
            return f"{repository}: no" if repository == "reg:5000/team/worker" else None

    config = dataclasses.replace(CONFIG, push=True)
    commit = Commit("0123456789" * 4, (Ref("main"),), frozenset({"services/api/x", "base/Dockerfile"}), "t")
    plan = make_plan(commit, config, Files.of(DOCKERFILES), build_platform="linux/amd64")
    built = [p for p in plan.affected if p.image.name != "base"]  # base reused: not built
    refused = building.push_refusals(Stub(), [plan], built)  # type: ignore[arg-type]
    assert sorted(asked) == sorted(f"reg:5000/team/{where}" for where in
                                   ("mab-staging/api", "api", "mab-staging/worker", "worker"))  # fmt: skip
    assert refused == ["reg:5000/team/worker: no"]
    assert building.push_refused_text(refused).startswith(
        "the push is blocked before any build: reg:5000/team/worker"
    )
    asked.clear()
    unpublished = [p._replace(tags=()) for p in built]
    building.push_refusals(Stub(), [plan._replace(affected=tuple(unpublished))], unpublished)  # type: ignore[arg-type]
    assert sorted(asked) == ["reg:5000/team/mab-staging/api", "reg:5000/team/mab-staging/worker"]


def test_one_readiness_question_per_builder_with_every_platform_of_its_plans() -> None:
    """Commits of one push ask once per builder: the union of their images' platforms, and the
    first staging repository among them; a plan that builds nothing asks nothing."""
    import dataclasses  # noqa: PLC0415

    from mab_hook.changes import Commit, Ref  # noqa: PLC0415
    from mab_hook.images import Config  # noqa: PLC0415
    from mab_hook.inputs import Files  # noqa: PLC0415
    from mab_hook.plan import Plan, make_plan  # noqa: PLC0415
    from tests.test_plan import CONFIG, DOCKERFILES  # noqa: PLC0415

    def plan_of(config: Config, changed: str) -> Plan:
        commit = Commit("0123456789" * 4, (Ref("main"),), frozenset({changed}), "t")
        return make_plan(commit, config, Files.of(DOCKERFILES), build_platform="linux/amd64")

    amd = dataclasses.replace(CONFIG, push=False, images=tuple(
        dataclasses.replace(i, platforms=("linux/amd64",)) for i in CONFIG.images))  # fmt: skip
    arm = dataclasses.replace(CONFIG, push=True, images=tuple(
        dataclasses.replace(i, platforms=("linux/arm64", "linux/amd64")) for i in CONFIG.images))  # fmt: skip
    fleet = dataclasses.replace(arm, builder="fleet", binfmt_image="tonistiigi/binfmt:qemu-v9")
    plans = [plan_of(amd, "services/api/x"), plan_of(amd, "docs/nothing.md"), plan_of(arm, "services/api/x"),
             plan_of(fleet, "base/Dockerfile")]  # fmt: skip
    wanted = building.wanted_for(plans)
    assert [(w.platforms, w.builder, w.registry, w.binfmt_image) for w in wanted] == [
        (("linux/amd64", "linux/arm64"), None, "reg:5000/team/mab-staging/api", CONFIG.binfmt_image),
        (
            ("linux/arm64", "linux/amd64"),
            "fleet",
            "reg:5000/team/mab-staging/base",
            "tonistiigi/binfmt:qemu-v9",
        ),
    ]


def failed(name: str, failure: Failure, *published: str) -> BuildResult:
    return BuildResult(name, Status.FAILED, 1.0, "it failed", None, failure=failure, published=published)


STAGED = "reg:5000/team/mab-staging/api:mab-" + "a" * 64


@pytest.mark.parametrize(("failures", "advice"), [
    ((Failure.PLATFORM,), "an image is not the platform it claims (see above): build each platform's programs "
     "for it (a `FROM --platform=$BUILDPLATFORM` stage must cross-compile: GOARCH=$TARGETARCH, say), or list the "
     "paths of programs it carries on purpose in its `foreign-binaries`; push again"),
    ((Failure.REGISTRY,), "the registry failed (see above): check that it runs and that `docker login` works "
     "for it, then push again; what was built is reused"),
    ((Failure.REGISTRY, Failure.BASE), "the registry failed (see above): check that it runs and that "
     "`docker login` works for it, then push again; what was built is reused"),
    ((Failure.REGISTRY, Failure.BUILD), "fix the failed build(s) and the registry problem above, commit, and "
     "push again"),
    ((Failure.BUILD, Failure.PLATFORM), "fix the failed build(s) above, commit, and push again"),
    ((Failure.BASE,), "fix the failed build(s) above, commit, and push again"),
])  # fmt: skip
def test_a_blocked_push_says_what_reached_the_registry_and_the_advice_its_failures_call_for(
    failures: tuple[Failure, ...], advice: str
) -> None:
    done = [failed(f"i{n}", failure) for n, failure in enumerate(failures)]
    assert building.blocked(done) == f"the push is blocked and no tag was published: {advice}"
    done[0] = done[0]._replace(published=("reg:5000/team/api:1a2b3c4", "reg:5000/team/api:latest", STAGED))
    assert building.blocked(done) == (
        "the push is blocked and these tags reached the registry: reg:5000/team/api:1a2b3c4, "
        f"reg:5000/team/api:latest (uploaded to staging, which the next push reuses: {STAGED}): {advice}"
    )


def test_the_report_as_json_holds_the_plan_the_matrix_and_the_results(
    repo: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    repo.commit(
        {
            "pyproject.toml": '[tool.multiarch]\nplatforms = ["linux/amd64"]\n',
            "app/Dockerfile": "FROM scratch\n",
        }
    )
    handle = gitpython.Repo(repo.path)
    plan = planning.plan_at(
        handle, changes.for_all(handle, "HEAD", None, "t"), env=os.environ, build_platform="linux/amd64"
    )
    done = [BuildResult("app", Status.BUILT, 1.0, "", None, platforms=("linux/amd64",))]
    printer = Printer(io.StringIO(), color=False)
    assert building.finish([plan], done, printer, {}, json=True) == 0
    data = json.loads(capsys.readouterr().out)
    assert [key for key in data if key in ("version", "affected", "matrix", "results")] == [
        "version", "affected", "matrix", "results"
    ]  # fmt: skip
    assert [r["name"] for r in data["results"]] == ["app"] and data["matrix"]
    assert building.finish([plan], done, printer, {}, json=True, dry_run=True) == 0
    assert "results" not in json.loads(capsys.readouterr().out)
