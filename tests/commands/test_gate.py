"""The gate's own decisions: whose push runs it (git's pre-push hook, pre-commit's, or a person
by hand), and what it says only by hand."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from mab_hook import changes, handover, planning, progress
from mab_hook.commands import gate
from mab_hook.output import Printer
from mab_hook.repository import open_repo
from tests.conftest import Repo, mab
from tests.resolver import replaying

NAME, URL, TO = "PRE_COMMIT_REMOTE_NAME", "PRE_COMMIT_REMOTE_URL", "PRE_COMMIT_TO_REF"


@pytest.mark.parametrize(("argv", "env", "pushed"), [
    ((), {}, None),  # by hand
    (("origin", "git@host:team/app.git"), {}, "origin"),  # git runs its pre-push hook: name and URL
    (("origin",), {}, None),  # a remote named by hand (`mab-hook origin --dry-run`): not a push
    ((), {TO: "abc", NAME: "origin", URL: "git@host:team/app.git"}, "origin"),  # pre-commit's
    ((), {TO: "abc", URL: "git@host:team/app.git"}, "git@host:team/app.git"),  # a push to a URL
    ((), {NAME: "origin"}, "origin"),  # a pre-commit that names the remote and no range
    ((), {TO: "abc"}, None),  # a range, but no remote to wait for
    ((), {URL: "git@host:team/app.git"}, None),  # neither a range nor a remote's name
])  # fmt: skip
def test_whose_push_runs_the_gate(argv: tuple[str, ...], env: Mapping[str, str], pushed: str | None) -> None:
    assert gate.pushed_to(gate.options(gate.parse_args(argv)), env) == pushed


def test_by_hand_a_configuration_changed_but_not_committed_is_said_and_under_a_push_it_is_not(
    repo: Repo,
) -> None:
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
    # git runs the hook with the same work tree: what is pushed is the commit, and nothing is said.
    line = f"refs/heads/main {sha} refs/heads/main {'0' * 40}\n"
    pushed = subprocess.run((sys.executable, "-m", "mab_hook", "origin", str(repo.remote), "--dry-run", "--color", "never"),
                            input=line, cwd=repo.path, capture_output=True, text=True, check=False)  # fmt: skip
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    assert "1. app" in pushed.stdout
    assert "not committed" not in pushed.stdout + pushed.stderr


def test_by_hand_a_commit_other_than_the_one_checked_out_is_planned_as_committed_and_nothing_said(
    repo: Repo,
) -> None:
    table = '[tool.multiarch]\nplatforms = ["{}"]\n[tool.multiarch.images.app]\ncontext = "app"\n'
    repo.commit({"pyproject.toml": table.format("linux/amd64"), "app/Dockerfile": "FROM scratch\n"})
    repo.commit({"app/Dockerfile": "FROM scratch\nCOPY . /\n"})
    repo.write({"pyproject.toml": table.format("linux/arm64")})
    before = mab(repo.path, os.environ, "--all", "--to", "HEAD~1", "--dry-run", "--color", "never")
    assert before.returncode == 0, before.stdout + before.stderr
    assert "[linux/amd64]" in before.stdout
    assert "not committed" not in before.stdout + before.stderr


def test_the_bake_definition_carries_the_secrets_the_pusher_grants(repo: Repo) -> None:
    """`--dry-run --bake` is what a person or a CI job runs by hand: a secret a build asks for
    comes from the pusher's git config, as for the gate's own builds."""
    repo.commit({
        "pyproject.toml": '[tool.multiarch]\nplatforms = ["linux/amd64"]\n[tool.multiarch.images.app]\n'
                          'context = "app"\nsecrets = ["id=npm"]\n',
        "app/Dockerfile": "FROM scratch\n",
    })  # fmt: skip
    repo.git("config", "--add", "mab-hook.secret", "id=npm,env=NPM_TOKEN")
    exported = mab(repo.path, {**os.environ, "NPM_TOKEN": "t0k3n"}, "--all", "--dry-run", "--bake")
    assert exported.returncode == 0, exported.stderr
    target = json.loads(exported.stdout)["target"]["app"]
    assert target["secret"] == ["id=npm,env=NPM_TOKEN"]
    assert "t0k3n" not in exported.stdout


class _Terminal:
    """`progress.to_terminal` as a terminal that is there, or not, and what it was given."""

    def __init__(self, there: bool) -> None:
        self.there = there
        self.written: list[str] = []

    def __call__(self, text: str) -> bool:
        self.written.append(text)
        return self.there


@pytest.mark.parametrize(("env", "there", "on_terminal"), [
    ({"PRE_COMMIT": "1"}, True, True),  # pre-commit holds stdout until the hook ends: the terminal now
    ({"PRE_COMMIT": "1"}, False, False),  # no terminal (CI): stdout
    ({}, True, False),  # not under pre-commit: stdout, as every result
])  # fmt: skip
def test_the_plan_before_a_build_goes_where_the_user_sees_it_now(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], there: bool, on_terminal: bool
) -> None:
    terminal = _Terminal(there)
    monkeypatch.setattr(progress, "to_terminal", terminal)
    stream = io.StringIO()
    gate.shown_live("1. app  (Dockerfile changed)", Printer(stream, color=False), env)
    if on_terminal:
        assert (terminal.written, stream.getvalue()) == (["1. app  (Dockerfile changed)\n"], "")
    else:
        assert stream.getvalue() == "1. app  (Dockerfile changed)\n"
        assert terminal.written == (["1. app  (Dockerfile changed)\n"] if env else [])


@pytest.mark.parametrize(("argv", "digests"), [
    (("--all",), True), (("--all", "--dry-run"), False), (("--all", "--explain", "app"), False),
    (("--all", "--bake"), False), (("--all", "--dry-run", "--explain", "app"), False),
])  # fmt: skip
def test_input_digests_are_worked_out_only_when_something_may_be_built(
    repo: Repo, monkeypatch: pytest.MonkeyPatch, argv: tuple[str, ...], digests: bool
) -> None:
    asked: list[bool] = []
    monkeypatch.setattr(planning, "plan_at", lambda *_a, **kw: asked.append(kw["digests"]))
    options = gate.options(gate.parse_args(argv))
    printer = Printer(io.StringIO(), color=False)
    gate.plan_commits(options, open_repo(repo.path), ("one", "two"), {}, printer, by_hand=False)  # type: ignore[arg-type]
    assert asked == [digests, digests]


def test_by_hand_to_alone_and_a_bare_repository_without_a_range_are_refused(
    repo: Repo, tmp_path: Path
) -> None:
    repo.commit({"pyproject.toml": '[tool.multiarch]\nplatforms = ["linux/amd64"]\n', "a": "1"})
    alone = mab(repo.path, os.environ, "--to", "HEAD", "--dry-run", "--color", "never")
    assert alone.returncode == 1
    assert "mab-hook: error: --to needs --from REF or --all" in alone.stderr.splitlines()
    repo.git("remote", "remove", "origin")
    nothing = mab(
        repo.path, os.environ, "--dry-run", "--color", "never"
    )  # a work tree, no remote, no upstream
    assert nothing.returncode == 1
    assert (
        "no range to build: HEAD has no upstream branch and the repository no remote to push to"
        in nothing.stderr
    )
    bare = tmp_path / "bare.git"
    subprocess.run(("git", "clone", "-q", "--bare", str(repo.path), str(bare)), check=True)
    subprocess.run(("git", "-C", str(bare), "remote", "remove", "origin"), check=True)  # nothing upstream
    refused = mab(bare, os.environ, "--dry-run", "--color", "never")
    assert refused.returncode == 1
    said = "is a bare repository: say what to build with --all or --from REF"
    assert [line for line in refused.stderr.splitlines() if line.endswith(said)], refused.stderr
    assert refused.stderr.startswith("mab-hook: error: ") and "Traceback" not in refused.stderr


Z = "0" * 40


def _select(
    repo: Repo, env: Mapping[str, str], *argv: str, stdin: str = ""
) -> tuple[tuple[changes.Commit, ...], str]:
    """The commits the gate picks, and what it said while picking them."""
    said = io.StringIO()
    options = gate.options(gate.parse_args(argv))
    found = gate.select_commits(
        options, open_repo(repo.path), env, io.StringIO(stdin), Printer(said, color=False)
    )
    return found, said.getvalue()


def _two_refs(repo: Repo) -> tuple[str, str, str]:
    """main pushed at A, then moved on to C; a new branch feature at B, made from A."""
    a = repo.commit({"pyproject.toml": '[tool.multiarch]\nplatforms = ["linux/amd64"]\n', "a": "1"})
    repo.git("push", "-q", "origin", "main")
    repo.git("checkout", "-q", "-b", "feature")
    b = repo.commit({"b": "1"})
    repo.git("checkout", "-q", "main")
    c = repo.commit({"c": "1"})
    return a, b, c


def _hand_over(repo: Repo, text: str) -> Path:
    """What the script `mab-hook install` puts before pre-commit's hooks leaves for this process."""
    handed = Path(open_repo(repo.path).common_dir) / "mab-hook" / f"{handover.HANDED}{os.getppid()}"
    handed.parent.mkdir(mode=0o700, exist_ok=True)
    handed.write_text(text)
    return handed


def test_under_pre_commit_every_ref_handed_over_is_checked_and_the_hand_over_read_once(repo: Repo) -> None:
    a, b, c = _two_refs(repo)
    lines = f"refs/heads/main {c} refs/heads/main {a}\nrefs/heads/feature {b} refs/heads/feature {Z}\n"
    handed = _hand_over(repo, f"origin\n{repo.remote}\n{lines}")
    # pre-commit itself passes the first ref only, in its environment.
    env = {"PRE_COMMIT": "1", "PRE_COMMIT_FROM_REF": a, "PRE_COMMIT_TO_REF": c,
           "PRE_COMMIT_REMOTE_NAME": "origin", "PRE_COMMIT_REMOTE_BRANCH": "refs/heads/main"}  # fmt: skip
    found, said = _select(repo, env)
    assert [(x.sha, x.changed, x.refs[0].full) for x in found] == [
        (c, frozenset({"c"}), "refs/heads/main"), (b, frozenset({"b"}), "refs/heads/feature"),
    ]  # fmt: skip
    assert said == "" and not handed.exists()


@pytest.mark.parametrize(("argv", "env"), [
    (("origin", "url"), {"PRE_COMMIT": "1"}),  # git runs the hook itself, with its lines on stdin
    ((), {}),  # by hand: what the current branch would push
])  # fmt: skip
def test_a_hand_over_is_read_only_under_pre_commit_without_git_s_own_lines(
    repo: Repo, argv: tuple[str, ...], env: dict[str, str]
) -> None:
    a, b, c = _two_refs(repo)
    handed = _hand_over(repo, f"origin\n{repo.remote}\nrefs/heads/feature {b} refs/heads/feature {Z}\n")
    found, _said = _select(repo, env, *argv, stdin=f"refs/heads/main {c} refs/heads/main {a}\n")
    assert [(x.sha, x.changed) for x in found] == [(c, frozenset({"c"}))]
    assert handed.exists()  # left for the pre-commit hook it was handed to


def test_a_new_branch_is_what_the_pushed_to_remote_lacks_not_what_any_remote_has(
    repo: Repo, tmp_path: Path
) -> None:
    """git names the remote it pushes to (or its URL): a new branch's changes are counted from
    what that remote has, not from another remote that already has some of its commits."""
    a, b, _c = _two_refs(repo)
    repo.git("checkout", "-q", "feature")
    d = repo.commit({"d": "1"})
    mirror = tmp_path / "mirror.git"
    repo.git("remote", "add", "mirror", str(mirror))
    repo.git("update-ref", "refs/remotes/mirror/feature", b)  # the mirror has b already
    line = f"refs/heads/feature {d} refs/heads/feature {Z}\n"
    for remote, url, changed, bases in (
        ("origin", str(repo.remote), {"b", "d"}, (a,)),
        (str(repo.remote), str(repo.remote), {"b", "d"}, (a,)),  # a push to origin's URL
        ("mirror", str(mirror), {"d"}, (b,)),
    ):
        (found,), _said = _select(repo, {}, remote, url, stdin=line)
        assert (found.sha, found.changed, found.bases) == (d, frozenset(changed), bases), remote


@pytest.mark.parametrize(("local", "rev", "name"), [
    ("refs/heads/feature", "refs/heads/feature", "feature"), (None, "HEAD", "main"),
])  # fmt: skip
def test_pre_commit_without_a_range_builds_every_image_of_what_it_pushes_and_says_so(
    repo: Repo, local: str | None, rev: str, name: str
) -> None:
    _a, b, c = _two_refs(repo)
    env = {"PRE_COMMIT": "1", "PRE_COMMIT_REMOTE_NAME": "origin"}
    if local:
        env |= {"PRE_COMMIT_LOCAL_BRANCH": local, "PRE_COMMIT_REMOTE_BRANCH": local}
    (found,), said = _select(repo, env)
    assert said == (
        "mab-hook: warning: pre-commit gave no push range (PRE_COMMIT_FROM_REF/PRE_COMMIT_TO_REF unset, "
        f"as for a push of new history): building EVERY image of {rev}\n"
    )
    assert (found.sha, found.changed, found.why) == (b if local else c, None, "no push range from pre-commit")
    assert [(ref.name, ref.pushed if local else None) for ref in found.refs] == [(name, b if local else None)]


@pytest.mark.parametrize("env", [{"PRE_COMMIT": "1"}, {}])  # a pre-commit that does not say it is one
def test_pre_commit_s_range_is_what_is_built(repo: Repo, env: dict[str, str]) -> None:
    a, _b, c = _two_refs(repo)
    env = {
        **env,
        "PRE_COMMIT_FROM_REF": a,
        "PRE_COMMIT_TO_REF": c,
        "PRE_COMMIT_REMOTE_BRANCH": "refs/heads/main",
    }
    (found,), said = _select(repo, env)
    assert (found.sha, found.changed, said) == (c, frozenset({"c"}), "")
    assert [(ref.name, ref.pushed) for ref in found.refs] == [("main", c)]


def test_every_configuration_file_changed_but_not_committed_is_named(repo: Repo, tmp_path: Path) -> None:
    """The compose file the configuration names is configuration too (buildx's answers recorded)."""
    table = '[tool.multiarch]\nplatforms = ["linux/{}"]\ncompose = "todo/compose.yaml"\n'
    sha = repo.commit({
        "pyproject.toml": table.format("amd64"),
        "todo/compose.yaml": "services:\n  web:\n    build: .\n", "todo/Dockerfile": "FROM scratch\n",
    })  # fmt: skip
    handle = open_repo(repo.path)
    env = replaying(tmp_path)
    plans = [
        planning.plan_at(
            handle, changes.for_all(handle, "HEAD", "main", "all"), env=env, build_platform="linux/amd64"
        )
    ]
    assert plans[0].config.definitions == ("todo/compose.yaml", "todo/.env")  # .env: read when there
    assert gate.uncommitted_config(handle, plans, env) == ()
    repo.write(
        {"todo/compose.yaml": "services:\n  web:\n    build: ./x\n", "todo/Dockerfile": "FROM busybox\n"}
    )
    assert gate.uncommitted_config(handle, plans, env) == (
        "todo/compose.yaml: changed but not committed; mab-hook plans and builds what is committed "
        f"({sha[:12]}): commit the change to build with it",
    )
    repo.write({"pyproject.toml": table.format("arm64")})
    assert gate.uncommitted_config(handle, plans, env) == (
        "pyproject.toml, todo/compose.yaml: changed but not committed; mab-hook plans and builds what is "
        f"committed ({sha[:12]}): commit the change to build with it",
    )
