"""The gate: the readiness checks before any build."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import git as gitpython
import pytest

from mab_hook import building, changes, matrix, planning, publisher, readiness, routing
from mab_hook.errors import FatalError
from mab_hook.output import Printer
from mab_hook.plan import Plan
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
            readiness.ask(host(tmp_path), routing.questions(plans)), Printer(stream, color=False)
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
        verdict = readiness.ask(host(tmp_path / "2"), routing.questions(plans))
        building.enforce(verdict, Printer(stream, color=False), silenced=quiet)
    assert stream.getvalue() == ""
    assert "no emulator is registered for s390x ELF programs" in str(info.value)
    assert building.silenced(tmp_path, os.environ) == frozenset()  # no repository, no setting: nothing


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
    from mab_hook.plan import make_plan  # noqa: PLC0415
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
    wanted = routing.questions(plans)
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
    assert building.finish([plan], done, printer, {}, json=True, dry_run=False) == 0
    data = json.loads(capsys.readouterr().out)
    assert [key for key in data if key in ("version", "affected", "matrix", "results")] == [
        "version", "affected", "matrix", "results"
    ]  # fmt: skip
    assert [r["name"] for r in data["results"]] == ["app"] and data["matrix"]
    assert building.finish([plan], done, printer, {}, json=True, dry_run=True) == 0
    assert "results" not in json.loads(capsys.readouterr().out)


def published_plan(repo: Repo, *names: str) -> Plan:
    """A commit planned as a push of it as the branches `names` (the first, the default)."""
    repo.commit({"pyproject.toml": '[tool.multiarch]\nplatforms = ["linux/amd64"]\nregistry = "reg:5000/team"\n'
                                   'push = true\ntags = ["{branch}"]\npublish-branches = ["*"]\n',
                 "app/Dockerfile": "FROM scratch\n"})  # fmt: skip
    handle = gitpython.Repo(repo.path)
    plan = planning.plan_at(
        handle, changes.for_all(handle, "HEAD", None, "t"), env=os.environ, build_platform="linux/amd64"
    )
    sha = plan.commit.sha
    refs = tuple(changes.Ref(n, full=f"refs/heads/{n}", pushed=sha, default=n == names[0]) for n in names)
    return plan._replace(commit=plan.commit._replace(refs=refs))


def test_the_hand_over_names_every_ref_that_publishes_and_starts_the_publisher_in_the_work_tree(
    repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = published_plan(repo, "main", "next")
    started: list[tuple[Path, int, list[str]]] = []
    monkeypatch.setattr(publisher, "push_process", lambda pid, env: 4242)  # the git push above the hook
    monkeypatch.setattr(
        publisher, "start", lambda root, record, where, env, after: started.append(
            (where, after, [ref.full for ref in record.refs])
        )
    )  # fmt: skip
    stream = io.StringIO()
    handle = gitpython.Repo(repo.path)
    building.hand_over(handle, [plan], "origin", insecure=None, env={}, printer=Printer(stream, color=False))
    assert started == [(repo.path, 4242, ["refs/heads/main", "refs/heads/next"])]
    assert stream.getvalue() == (
        "mab-hook: the public tags of main, next move once origin accepts the push (`mab-hook status` shows them)\n"
    )
    monkeypatch.setattr(publisher, "push_process", lambda pid, env: None)  # not run by git
    stream = io.StringIO()
    building.hand_over(handle, [plan], "origin", insecure=None, env={}, printer=Printer(stream, color=False))
    assert len(started) == 1 and stream.getvalue() == (
        "mab-hook: the public tags of main, next wait for origin to accept the push: once it has, run "
        "`mab-hook publish --pending`\n"
    )


@pytest.mark.parametrize("github", [True, False])
def test_a_matrix_too_big_for_github_is_said_only_to_github(
    repo: Repo,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    github: bool,
) -> None:
    plan = published_plan(repo, "main")
    monkeypatch.setattr(matrix, "too_big", lambda plans: "the CI matrix has 300 jobs")
    env = {"GITHUB_OUTPUT": str(tmp_path / "out")} if github else {}
    stream = io.StringIO()
    assert building.finish([plan], [], Printer(stream, color=False), env, json=False, dry_run=True) == 0
    said = "mab-hook: warning: the CI matrix has 300 jobs\n"
    assert stream.getvalue() == (said if github else "")
    assert (tmp_path / "out").is_file() == github and capsys.readouterr().out == ""


def test_a_warning_says_its_gist_and_a_failure_blocks_with_what_to_run() -> None:
    def check(code: str, status: str, finding: str, fix: str = "") -> readiness.Check:
        return readiness.Check(f"platform:{code}", status, finding, fix, code)

    verdict = readiness.Verdict((readiness.Report((
        check("w1", readiness.WARN, "it runs slowly"),
        check("w2", readiness.WARN, "qemu 7.2; under emulation; it runs through the interpreter"),
        check("w3", readiness.WARN, "silenced; so not said"),
    ), None),))  # fmt: skip
    stream = io.StringIO()
    building.enforce(verdict, Printer(stream, color=False), silenced=frozenset({"w3"}))
    assert stream.getvalue().splitlines() == [
        "mab-hook: warning: platform w1: it runs slowly (`mab-hook doctor` says more; "
        "`git config --add mab-hook.silence w1` stops this warning)",
        "mab-hook: warning: platform w2: it runs through the interpreter (`mab-hook doctor` says more; "
        "`git config --add mab-hook.silence w2` stops this warning)",
    ]
    failing = readiness.Verdict(
        (readiness.Report((check("f", readiness.FAIL, "no emulator", "run it"),), None),)
    )
    with pytest.raises(FatalError) as info:
        building.enforce(failing, Printer(io.StringIO(), color=False), outcome="nothing was pushed")
    assert str(info.value) == (
        "this host cannot build what the push needs; nothing was pushed:\n"
        "  fail  platform f  no emulator\n"
        "                    fix: run it\n"
        "Fix the above (`mab-hook doctor` shows every check, `mab-hook doctor --fix` applies the safe fixes), "
        "then push again."
    )
