"""The second phase, fast: the gate stages, the remote decides, and only what it accepted gets
public tags. Real repositories and real pushes to a bare remote (refused by a real pre-receive
hook), the in-memory registry, the canned engine (tests/engine.py); the publisher run as
`mab-hook publish --pending` once git returned, as the background one does. The same through a
real `git push` with the hook installed, and its background publisher: test_publishing.py (lab)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from mab_hook import cli, pending, process, publisher, readiness, references
from mab_hook.commands import status
from mab_hook.pending import ToTag
from mab_hook.registry import Insecure, Proof, Registry, Tagged
from tests.conftest import Repo
from tests.engine import Canned
from tests.readiness import recorded
from tests.test_commands_canned import IMAGES, project

Z40 = "0" * 40


def gate(repo: Repo, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
         *lines: str, dry_run: bool = False) -> tuple[int, str]:  # fmt: skip
    """mab-hook as git runs a pre-push hook: remote, URL, and the pushed refs on stdin."""
    monkeypatch.chdir(repo.path)
    monkeypatch.setattr(sys, "stdin", io.StringIO("".join(f"{line}\n" for line in lines)))
    code = cli.main(["--color", "never", *(["--dry-run"] if dry_run else []), "origin", str(repo.remote)])
    out = capsys.readouterr()
    return code, out.out + out.err


def mab(repo: Repo, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = cli.main([*args[:1], "--color", "never", "-C", str(repo.path), *args[1:]])
    out = capsys.readouterr()
    return code, out.out + out.err


def push(repo: Repo, *refs: str) -> subprocess.CompletedProcess[str]:
    """What git does once the hook said yes (the hook is not installed here: --no-verify)."""
    return subprocess.run(("git", "push", "--no-verify", "origin", *refs), cwd=repo.path, capture_output=True,
                          text=True, check=False)  # fmt: skip


def refuse(repo: Repo, pattern: str) -> None:
    """The remote's pre-receive hook refuses every ref matching `pattern` (a protected branch)."""
    hook = repo.remote / "hooks" / "pre-receive"
    hook.write_text(f'#!/bin/sh\nwhile read old new ref; do case "$ref" in {pattern}) '
                    'echo "refused: $ref" >&2; exit 1;; esac; done\nexit 0\n')  # fmt: skip
    hook.chmod(0o755)


def refuse_each(repo: Repo, pattern: str) -> None:
    """The remote's update hook refuses each ref matching `pattern`, and takes the others."""
    hook = repo.remote / "hooks" / "update"
    hook.write_text(f'#!/bin/sh\ncase "$1" in {pattern}) echo "refused: $1" >&2; exit 1;; esac\nexit 0\n')
    hook.chmod(0o755)


def tagged(host: str, *templates: str) -> dict[str, str]:
    """The project of test_commands_canned with these tag templates."""
    files = project(host)
    files["pyproject.toml"] = files["pyproject.toml"].replace(
        'tags = ["{short_sha}"]', f"tags = {json.dumps(templates)}"
    )
    return files


def published_once(
    repo: Repo, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, sha: str
) -> None:
    """A first push of `sha` through the gate, accepted, and its publish run."""
    assert gate(repo, monkeypatch, capsys, f"refs/heads/main {sha} refs/heads/main {Z40}")[0] == 0
    assert push(repo, "main").returncode == 0
    assert mab(repo, capsys, "publish", "--pending")[0] == 0


def digest(canned: Canned, name: str, tag: str) -> str | None:
    return canned.registry.digest(f"{canned.registry.host}/team/{name}:{tag}")


def public(canned: Canned, name: str) -> set[str]:
    """Every tag of the image's public repository: no staging tag is among them."""
    return canned.tags(name)


def test_a_refused_push_publishes_nothing_and_the_accepted_one_after_it_does(
    repo: Repo, canned: Canned, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sha = repo.commit(project(canned.registry.host))
    code, out = gate(repo, monkeypatch, capsys, f"refs/heads/main {sha} refs/heads/main {Z40}")
    assert code == 0, out
    assert (
        "the public tags of main wait for origin to accept the push: once it has, run `mab-hook publish --pending`"
        in out
    )
    assert all(canned.staged(name) and not canned.tags(name) for name in IMAGES)  # staged, nothing public
    refuse(repo, "refs/heads/main")
    assert push(repo, "main").returncode != 0
    code, out = mab(repo, capsys, "publish", "--pending")
    assert code == 0, out
    assert out.splitlines() == [
        "mab-hook: publishing what origin accepted of main",
        "mab-hook: origin does not hold refs/heads/main as pushed (refused, or not pushed): its tags stay where they were",
    ]
    assert not any(public(canned, name) for name in IMAGES)
    code, out = mab(repo, capsys, "status")
    assert ": not accepted" in out and "does not hold refs/heads/main" in out

    (repo.remote / "hooks" / "pre-receive").unlink()  # the remote takes it now
    code, out = gate(repo, monkeypatch, capsys, f"refs/heads/main {sha} refs/heads/main {Z40}")
    assert code == 0, out
    assert push(repo, "main").returncode == 0
    code, out = mab(repo, capsys, "publish", "--pending")
    assert code == 0, out
    assert all(public(canned, name) == {sha[:7]} for name in IMAGES)
    assert f"api: published {canned.registry.host}/team/api:{sha[:7]}" in out
    code, out = mab(repo, capsys, "status", "--json")
    states = [record["state"] for record in json.loads(out[: out.rindex("]") + 1])]
    assert states == [pending.NOT_ACCEPTED, pending.PUBLISHED]


def test_a_partly_accepted_push_publishes_only_the_refs_the_remote_took(
    repo: Repo, canned: Canned, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    files = tagged(canned.registry.host, "{branch}")
    sha = repo.commit(files)
    repo.git("tag", "v1.0.0")
    lines = (f"refs/heads/main {sha} refs/heads/main {Z40}", f"refs/tags/v1.0.0 {sha} refs/tags/v1.0.0 {Z40}")
    code, out = gate(repo, monkeypatch, capsys, *lines)
    assert code == 0, out
    refuse_each(repo, "refs/tags/*")
    assert "[remote rejected] v1.0.0" in push(repo, "main", "v1.0.0").stderr
    monkeypatch.chdir(repo.path.parent)  # as the background publisher runs: -C names the repository
    code, out = mab(repo, capsys, "publish", "--pending")
    assert code == 0, out
    assert out.splitlines()[0] == "mab-hook: publishing what origin accepted of main, v1.0.0"
    assert all(public(canned, name) == {"main"} for name in IMAGES)
    assert "origin does not hold refs/tags/v1.0.0 as pushed" in out
    assert mab(repo, capsys, "status")[1].count(": partly") == 1


def test_a_feature_branch_leaves_latest_and_the_default_branchs_tags_alone(
    repo: Repo, canned: Canned, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    main = repo.commit(tagged(canned.registry.host, "{short_sha}", "{branch}", "latest"))
    published_once(repo, capsys, monkeypatch, main)
    assert public(canned, "api") == {main[:7], "main", "latest"}
    repo.git("checkout", "-q", "-b", "feature/experiment")
    feature = repo.commit({"api/app.txt": "experiment\n"})
    code, out = gate(repo, monkeypatch, capsys,
                     f"refs/heads/feature/experiment {feature} refs/heads/feature/experiment {Z40}")  # fmt: skip
    assert code == 0, out
    assert (
        "feature/experiment publishes nothing: feature/experiment is not the remote's default branch" in out
    )
    assert "public tag" not in out  # nothing waits
    assert push(repo, "feature/experiment").returncode == 0
    assert public(canned, "api") == {main[:7], "main", "latest"}
    assert len(canned.staged("api")) == 2  # the experiment is staged, out of sight


def test_the_git_push_above_the_hook_is_found_and_waited_for(tmp_path: Path) -> None:
    """The background publisher waits for the `git` process that ran the hooks: a hook run by
    a real git finds it; this test process (run by no git) finds none."""
    script = tmp_path / "hook.py"
    script.write_text(
        "import os\nfrom mab_hook import publisher\nprint(publisher.push_process(os.getpid(), os.environ))\n"
    )
    found = subprocess.run(("git", "-c", f"alias.x=!{sys.executable} {script}", "x"), capture_output=True,
                           text=True, check=True, cwd=tmp_path)  # fmt: skip
    pid = int(found.stdout.strip())
    assert pid > 1 and not publisher.alive(pid)  # that git has ended since
    assert publisher.wait_for(pid, timeout=1)
    import os  # noqa: PLC0415

    assert publisher.push_process(os.getpid(), dict(os.environ)) is None
    assert publisher.alive(os.getpid()) and not publisher.wait_for(os.getpid(), timeout=0.05)


def test_a_release_tag_pushed_with_a_commit_tags_every_image_of_it_not_only_the_rebuilt(
    repo: Repo, canned: Canned, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    files = tagged(canned.registry.host, "{short_sha}", "{branch}")
    first = repo.commit(files)
    published_once(repo, capsys, monkeypatch, first)
    sha = repo.commit({"api/app.txt": "v2\n"})
    repo.git("tag", "-a", "v2.0.0", "-m", "release")  # annotated: the remote gets the tag object
    tag = repo.git("rev-parse", "v2.0.0")
    before = len(canned.engine.invocations)
    code, out = gate(repo, monkeypatch, capsys, f"refs/heads/main {sha} refs/heads/main {first}",
                     f"refs/tags/v2.0.0 {tag} refs/tags/v2.0.0 {Z40}")  # fmt: skip
    assert code == 0, out
    assert [set(i) for i in canned.engine.invocations[before:]] == [{"api"}]  # only api is built
    assert push(repo, "main", "v2.0.0").returncode == 0
    code, out = mab(repo, capsys, "publish", "--pending")
    assert code == 0, out
    for name in IMAGES:  # every image of the commit gets the commit's tags, and the release's
        assert public(canned, name) == {first[:7], sha[:7], "main", "v2.0.0"}, name
        if name != "api":  # unchanged: the very image it was
            assert (
                digest(canned, name, "v2.0.0")
                == digest(canned, name, sha[:7])
                == digest(canned, name, first[:7])
            )
    assert (
        digest(canned, "api", "v2.0.0") == digest(canned, "api", sha[:7]) != digest(canned, "api", first[:7])
    )


def test_the_publisher_tags_what_it_proved_though_the_staging_tag_moves_right_after(
    repo: Repo, canned: Canned, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the proof (labels read) and the tag, the staging tag is moved to an upload that
    proves nothing: the public tags go on the digest that was proven."""
    sha = repo.commit(tagged(canned.registry.host, "{short_sha}", "latest"))
    assert gate(repo, monkeypatch, capsys, f"refs/heads/main {sha} refs/heads/main {Z40}")[0] == 0
    assert push(repo, "main").returncode == 0
    proven: dict[str, str] = {}
    prove = Registry.proof

    def proof_then_moved(self: Registry, reference: str, digest: str, known: Callable[[str], bool]) -> Proof:
        found = prove(self, reference, digest, known)
        proven[references.parse(reference).path.rsplit("/", 1)[-1]] = found.manifest
        canned.registry.upload(reference, {"dev.mab-hook.input-digest": "planted"}, ["linux/amd64"])
        return found

    monkeypatch.setattr(Registry, "proof", proof_then_moved)
    code, out = mab(repo, capsys, "publish", "--pending")
    assert code == 0, out
    assert set(proven) == set(IMAGES)
    for name in IMAGES:
        assert (
            proven[name] and digest(canned, name, sha[:7]) == digest(canned, name, "latest") == proven[name]
        )


def test_an_image_the_registry_lacks_is_named_and_no_moving_tag_moves(
    repo: Repo, canned: Canned, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    files = tagged(canned.registry.host, "{short_sha}", "latest")
    first = repo.commit(files)
    assert push(repo, "main").returncode == 0  # pushed with --no-verify: nothing was built
    sha = repo.commit({"api/app.txt": "v2\n"})
    code, out = gate(repo, monkeypatch, capsys, f"refs/heads/main {sha} refs/heads/main {first}")
    assert code == 0, out  # builds api (and the base it needs), not the images it does not affect
    assert push(repo, "main").returncode == 0
    code, out = mab(repo, capsys, "publish", "--pending")
    assert code == 1
    lines = out.splitlines()
    staged = f"{canned.registry.host}/team/mab-staging/lone:mab-"
    assert any(line.startswith(f"mab-hook: lone: not tagged: the registry has no upload of it from these inputs ({staged}")
               and line.endswith("); build it (`mab-hook --all --publish`), then `mab-hook publish --pending`")
               and ": " not in line.split(staged)[1] for line in lines), out  # fmt: skip
    assert "mab-hook: moving tags left where they were: not every image is there" in lines
    # An upload there that is not what it claims to be is named with what was found.
    (reference,) = {
        line.split("(", 1)[1].split(")", 1)[0]
        for line in lines
        if line.startswith("mab-hook: lone: not tagged")
    }
    canned.registry.upload(reference, {"dev.mab-hook.input-digest": "planted"}, ["linux/amd64"])
    code, out = mab(repo, capsys, "publish", "--pending")
    assert code == 1
    assert (f"mab-hook: lone: not tagged: the registry has no upload of it from these inputs ({reference}: an image "
            "under it is labelled with inputs planted); build it (`mab-hook --all --publish`), then `mab-hook "
            "publish --pending`") in out.splitlines(), out  # fmt: skip
    assert not any("latest" in public(canned, name) for name in IMAGES)
    assert sha[:7] in public(canned, "api")  # the tags that name the commit land where they can
    assert ": failed" in mab(repo, capsys, "status")[1]
    assert mab(repo, capsys, "--all", "--publish")[0] == 0
    code, out = mab(repo, capsys, "publish", "--pending")  # a failed publish is run again
    assert code == 0, out
    assert all({sha[:7], "latest"} <= public(canned, name) for name in IMAGES)


def test_status_waits_for_running_publishes_and_reads_records_as_data(
    repo: Repo, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    repo.commit({"a": "1"})
    assert mab(repo, capsys, "status") == (0, "no publish yet: pushes of publishing refs make them\n")
    root = repo.path / ".git" / "mab-hook"
    ref = pending.PushedRef("refs/heads/main", "a" * 40, "a" * 40, default=True)
    waiting = pending.new("origin", [ref], ((), ()))
    path = pending.write(root, waiting)
    assert oct(path.stat().st_mode & 0o777) == "0o600" and oct(path.parent.stat().st_mode & 0o777) == "0o700"
    (path.parent / "0-damaged.json").write_text("{not json")  # someone else's file, or a torn one
    (path.parent / "1-other.json").write_text(json.dumps({"id": 1}))
    code, out = mab(repo, capsys, "status", "--wait", "0.2")
    assert code == 1 and "origin main: waiting" in out  # still waiting: said, and exit 1
    pending.write(root, waiting._replace(state=pending.PUBLISHED, said=("api: published r/api:1",)))
    code, out = mab(repo, capsys, "status", "--wait", "5")
    assert code == 0 and out.endswith("origin main: published\n    api: published r/api:1\n")
    assert [r.id for _p, r in pending.every(root)] == [waiting.id]


def test_old_records_go_and_waiting_ones_stay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pending, "KEEP", 3)
    ref = pending.PushedRef("refs/heads/main", "a" * 40, "a" * 40)
    first = pending.new("origin", [ref], ((), ()))
    pending.write(tmp_path, first)  # waiting: kept whatever its age
    ended = [pending.new("origin", [ref], ((), ()))._replace(state=pending.PUBLISHED) for _ in range(4)]
    for record in ended:
        pending.write(tmp_path, record)
    kept = [r.id for _p, r in pending.every(tmp_path)]
    assert kept == [first.id, *(r.id for r in ended[1:])]  # the oldest ended one went


def test_a_terminal_that_went_away_silences_the_publisher_and_nothing_else() -> None:
    class Gone(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError(5, "Input/output error")

    from mab_hook.output import Printer  # noqa: PLC0415

    speaker = publisher._speaker(Printer(Gone(), False, False))
    speaker("one")  # raises nothing, and says nothing more
    speaker("two")
    stream = io.StringIO()
    publisher._speaker(Printer(stream, False, False))("three")
    assert stream.getvalue() == "mab-hook: three\n"


def test_a_remote_that_cannot_be_asked_leaves_the_publish_waiting(
    repo: Repo, canned: Canned, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sha = repo.commit(project(canned.registry.host))
    assert gate(repo, monkeypatch, capsys, f"refs/heads/main {sha} refs/heads/main {Z40}")[0] == 0
    assert push(repo, "main").returncode == 0
    repo.git("remote", "set-url", "origin", str(repo.path / "gone.git"))
    code, out = mab(repo, capsys, "publish", "--pending")
    assert code == 1
    said = next(line for line in out.splitlines() if "could not ask" in line)
    assert said.startswith("mab-hook: could not ask origin what it holds (") and said.endswith(
        "); nothing published: run `mab-hook publish --pending` once it answers"
    )
    assert not any(public(canned, name) for name in IMAGES)
    repo.git("remote", "set-url", "origin", str(repo.remote))
    assert mab(repo, capsys, "publish", "--pending")[0] == 0
    assert all(public(canned, name) == {sha[:7]} for name in IMAGES)
    root = repo.path / ".git" / "mab-hook" / "publish"
    assert mab(repo, capsys, "publish", "--pending", "nosuch") == (
        1,
        f"mab-hook: error: no publish 'nosuch' in {root}; see `mab-hook status`\n",
    )
    assert mab(repo, capsys, "publish", "--pending") == (0, "")  # nothing waits: nothing to say


def test_a_push_that_affects_no_image_still_tags_every_image_of_its_commit(
    repo: Repo, canned: Canned, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {**project(canned.registry.host), "docs/index.md": "# docs\n"}
    first = repo.commit(files)
    published_once(repo, capsys, monkeypatch, first)
    sha = repo.commit({"docs/index.md": "# more docs\n"})
    before = len(canned.engine.invocations)
    code, out = gate(repo, monkeypatch, capsys, f"refs/heads/main {sha} refs/heads/main {first}")
    assert code == 0, out
    assert len(canned.engine.invocations) == before  # nothing built
    assert "the public tags of main wait for origin" in out
    assert push(repo, "main").returncode == 0
    assert mab(repo, capsys, "publish", "--pending")[0] == 0
    assert all(public(canned, name) == {first[:7], sha[:7]} for name in IMAGES)
    code, out = gate(
        repo, monkeypatch, capsys, f"refs/heads/main {sha} refs/heads/main {first}", dry_run=True
    )
    assert code == 0 and "public tag" not in out  # --dry-run hands nothing over
    assert len(pending.every(repo.path / ".git" / "mab-hook")) == 2


def test_through_a_real_hook_a_dry_run_push_publishes_nothing_and_a_real_one_does(
    repo: Repo, canned: Canned, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """git runs the hook, which starts the real background publisher; `git push --dry-run`
    runs the hook too, and the remote then holds nothing new. No build is needed: the push
    touches docs only (its images were uploaded before), so no engine either."""
    files = {**project(canned.registry.host), "docs/index.md": "# docs\n"}
    first = repo.commit(files)
    published_once(repo, capsys, monkeypatch, first)
    hook = repo.path / ".git" / "hooks" / "pre-push"
    hook.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m mab_hook "$@"\n')
    hook.chmod(0o755)
    sha = repo.commit({"docs/index.md": "# more\n"})
    root = repo.path / ".git" / "mab-hook"

    def pushed(*args: str) -> tuple[str, str]:
        done = subprocess.run(("git", "push", *args, "origin", "main"), cwd=repo.path, capture_output=True,
                              text=True, check=False)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert "move once origin accepts the push" in done.stdout + done.stderr
        deadline = time.monotonic() + 60
        while (newest := pending.every(root)[-1][1]).state == pending.WAITING and time.monotonic() < deadline:
            time.sleep(0.05)
        return newest.state, "\n".join(newest.said)

    state, said = pushed("--dry-run")
    assert (state, said) == (pending.NOT_ACCEPTED, "origin does not hold refs/heads/main as pushed (refused, "
                             "or not pushed): its tags stay where they were")  # fmt: skip
    assert not any(sha[:7] in public(canned, name) for name in IMAGES)
    state, said = pushed()
    assert state == pending.PUBLISHED, said
    assert all(sha[:7] in public(canned, name) for name in IMAGES)


def test_moving_tags_are_left_to_a_newer_push_that_moved_the_ref_on_meanwhile(
    repo: Repo, canned: Canned, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    files = tagged(canned.registry.host, "{short_sha}", "latest")
    sha = repo.commit(files)
    assert gate(repo, monkeypatch, capsys, f"refs/heads/main {sha} refs/heads/main {Z40}")[0] == 0
    assert push(repo, "main").returncode == 0
    answers = iter([("refs/heads/main",), ()])  # held when asked first; moved on when asked again
    monkeypatch.setattr(publisher, "accepted", lambda *args: next(answers))
    code, out = mab(repo, capsys, "publish", "--pending")
    assert code == 0, out
    assert ("mab-hook: origin no longer holds refs/heads/main as pushed (a newer push moved it on): the moving tags "
            "are left to that push") in out.splitlines()  # fmt: skip
    assert all(public(canned, name) == {sha[:7]} for name in IMAGES)  # no latest from an older push


def test_a_record_reads_back_as_written(tmp_path: Path) -> None:
    refs = [pending.PushedRef("refs/heads/main", "a" * 40, "b" * 40, default=True),
            pending.PushedRef("refs/tags/v1", "c" * 40, "b" * 40)]  # fmt: skip
    record = pending.new("origin", refs, (("reg.internal:5000",), ("10.0.0.0/8",)))._replace(said=("x: y",))
    path = pending.write(tmp_path, record)
    assert path.parent == tmp_path / "publish"
    assert pending.read(path) == record


# --- the publisher's parts, each alone ----------------------------------------------------------


class Tagging:
    """A registry whose tags land or not, by reference; what it was asked, in order."""

    def __init__(self, refuse: frozenset[str] = frozenset()) -> None:
        self.refuse, self.asked = refuse, list[tuple[str, tuple[str, ...]]]()

    def tag(self, source: str, tags: list[str]) -> Tagged:
        """Tags are put in order: those before the first refused one landed."""
        self.asked.append((source, tuple(tags)))
        refused = [tags.index(t) for t in tags if t in self.refuse]
        if not refused:
            return Tagged(True, tuple(tags))
        return Tagged(False, tuple(tags[: refused[0]]), "HTTP 403")


IMAGE_A = ToTag("a", "r/s/a:mab-1", ("r/a:1", "r/a:1a2b3c4", "r/a:main"), ("r/a:main",))
IMAGE_B = ToTag("b", "r/s/b:mab-2", ("r/b:1", "r/b:main"), ("r/b:main",))


def test_tags_that_name_the_commit_go_first_on_every_image_then_the_moving_ones() -> None:
    said: list[str] = []
    registry = Tagging()
    assert publisher.tag_all(registry, [IMAGE_A, IMAGE_B], said.append) is True  # type: ignore[arg-type]
    assert sorted(registry.asked[:2]) == [
        ("r/s/a:mab-1", ("r/a:1", "r/a:1a2b3c4")),
        ("r/s/b:mab-2", ("r/b:1",)),
    ]
    assert sorted(registry.asked[2:]) == [("r/s/a:mab-1", ("r/a:main",)), ("r/s/b:mab-2", ("r/b:main",))]
    assert said == [
        "a: published r/a:1, r/a:1a2b3c4",
        "b: published r/b:1",
        "a: published r/a:main",
        "b: published r/b:main",
    ]
    moving = Tagging()
    assert publisher.tag_all(moving, [IMAGE_A], said.append, kinds=(True,)) is True  # type: ignore[arg-type]
    assert moving.asked == [("r/s/a:mab-1", ("r/a:main",))]


def test_a_refused_fixed_tag_leaves_every_moving_tag_unmoved_and_says_what_to_run() -> None:
    said: list[str] = []
    registry = Tagging(frozenset({"r/b:1"}))
    assert publisher.tag_all(registry, [IMAGE_A, IMAGE_B], said.append) is False  # type: ignore[arg-type]
    assert len(registry.asked) == 2  # no moving tag was asked for
    assert said == ["a: published r/a:1, r/a:1a2b3c4", "b: tagging failed (HTTP 403); not tagged: r/b:1",
                    "moving tags left where they were; run `mab-hook publish --pending` to finish"]  # fmt: skip
    two = ToTag("c", "r/s/c:mab-3", ("r/c:1", "r/c:2", "r/c:3"), ())
    said.clear()
    assert publisher.tag_all(Tagging(frozenset({"r/c:2"})), [two], said.append) is False  # type: ignore[arg-type]
    assert said[0] == "c: tagging failed (HTTP 403); not tagged: r/c:2, r/c:3"  # what did not land, in order


def test_the_push_is_git_up_to_eight_levels_above_and_never_init(monkeypatch: pytest.MonkeyPatch) -> None:
    def chain(*parents: tuple[int, str]) -> None:
        links = dict(zip([100, *(pid for pid, _name in parents)], parents, strict=False))
        monkeypatch.setattr(publisher, "_parent", lambda pid, env: links.get(pid))

    chain((50, "sh"), (2, "git"))
    assert publisher.push_process(100, {}) == 2
    chain((50, "sh"), (1, "git"))  # init, whatever it is called, is no push
    assert publisher.push_process(100, {}) is None
    chain((50, "git.exe"))
    assert publisher.push_process(100, {}) == 50
    chain((50, "gitk"))
    assert publisher.push_process(100, {}) is None
    chain(*((200 + n, "sh") for n in range(7)), (300, "git"))  # the eighth level up
    assert publisher.push_process(100, {}) == 300
    chain(*((200 + n, "sh") for n in range(8)), (300, "git"))  # the ninth: too far to be ours
    assert publisher.push_process(100, {}) is None


def test_without_proc_the_parent_is_asked_of_ps(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """macOS has no /proc: `ps` answers instead, the same."""
    import os  # noqa: PLC0415

    real = publisher._parent(os.getpid(), dict(os.environ))
    assert real is not None and real[0] == os.getppid()
    monkeypatch.setattr(publisher, "Path", lambda text: tmp_path / "no-proc" / text.lstrip("/"))
    assert publisher._parent(os.getpid(), dict(os.environ)) == real
    assert publisher._parent(2**22 + 12345, dict(os.environ)) is None  # no such process


def test_wait_for_waits_as_long_as_it_is_told_and_notices_an_end_at_once() -> None:
    import os  # noqa: PLC0415
    import threading  # noqa: PLC0415

    started = time.monotonic()
    assert publisher.wait_for(os.getpid(), timeout=0.3) is False
    assert 0.25 < time.monotonic() - started < 2
    # The push ends when the test says (however slowly a loaded machine starts Python), and is
    # reaped as it ends, as git is: the wait is timed from then.
    child = subprocess.Popen((sys.executable, "-c", "import sys; print('up', flush=True); sys.stdin.read()"),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert child.stdin is not None and child.stdout is not None and child.stdout.readline() == "up\n"
    reaped: list[float] = []
    returned: list[tuple[bool, float]] = []

    def reap() -> None:
        child.wait()
        reaped.append(time.monotonic())

    def wait() -> None:
        returned.append((publisher.wait_for(child.pid, timeout=30), time.monotonic()))

    threads = [threading.Thread(target=reap), threading.Thread(target=wait)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    assert not returned  # still running: still waited for
    child.stdin.close()
    for thread in threads:
        thread.join(timeout=30)
    child.stdout.close()
    [(ended_in_time, at)] = returned
    assert ended_in_time and at - reaped[0] < 0.9  # polled often, not once a second


class Clock:
    """Time as `status` sees it: its sleeps move it, and are recorded."""

    def __init__(self) -> None:
        self.now, self.slept = 1000.0, list[float]()

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_status_waits_the_time_it_is_given(
    repo: Repo, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.commit({"a": "1"})
    root = repo.path / ".git" / "mab-hook"
    ref = pending.PushedRef("refs/heads/main", "a" * 40, "a" * 40, default=True)
    waiting = pending.new("origin", [ref], ((), ()))
    pending.write(root, waiting)
    clock = Clock()
    monkeypatch.setattr(status, "time", clock)
    assert mab(repo, capsys, "status", "--wait", "0.4")[0] == 1
    assert 0.4 <= sum(clock.slept) <= 0.5 and max(clock.slept) <= 0.05  # looked at often, not once a second
    clock.slept.clear()
    assert mab(repo, capsys, "status", "--wait", "0")[0] == 1  # no time at all: said at once
    assert mab(repo, capsys, "status")[0] == 0  # without --wait: what there is, exit 0
    assert clock.slept == []
    # A publish that ran and could not reach the remote waits for `publish --pending`, not for time.
    pending.write(root, waiting._replace(said=("could not ask origin what it holds",)))
    assert mab(repo, capsys, "status", "--wait", "5")[0] == 0
    assert clock.slept == []


def test_status_as_json_is_every_record(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    repo.commit({"a": "1"})
    root = repo.path / ".git" / "mab-hook"
    refs = [pending.PushedRef("refs/heads/main", "a" * 40, "a" * 40, True),
            pending.PushedRef("refs/tags/v1", "b" * 40, "a" * 40)]  # fmt: skip
    record = pending.new("origin", refs, ((), ()))._replace(
        state=pending.PUBLISHED, said=("x: published r/x:1",)
    )
    pending.write(root, record)
    code = cli.main(["status", "--json", "-C", str(repo.path)])
    out = capsys.readouterr().out
    assert code == 0 and out.endswith("]\n")
    assert json.loads(out) == [json.loads(json.dumps(record._asdict()))]
    assert (
        mab(repo, capsys, "status")[1]
        == f"{record.created}  origin main, v1: published\n    x: published r/x:1\n"
    )


def test_status_says_how_it_is_used(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        status.parse_args(["--help"])
    said = " ".join(capsys.readouterr().out.split())
    assert said.startswith(
        "usage: mab-hook status [-h] [--wait SECONDS] [--json] [--color {auto,always,never}] [-C DIR]"
    )
    for text in ("[-C DIR] The publishes of the last pushes: waiting for the remote, published, or not and why. "
                 "options:",
                 "--wait SECONDS wait until no publish is waiting (at most SECONDS); exit 1 if one still is",
                 "--json machine-readable output on stdout"):  # fmt: skip
        assert text in said
    assert status.parse_args([]).color == "auto"


def test_the_background_publisher_logs_where_status_finds_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[tuple[tuple[str, ...], object]] = []
    monkeypatch.setattr(process, "detach",
                        lambda command, env, stdout, stderr: started.append((tuple(command), stderr)))  # fmt: skip
    monkeypatch.setattr(publisher, "_terminal", lambda: None)
    record = pending.new("origin", [pending.PushedRef("refs/heads/main", "a" * 40, "a" * 40)], ((), ()))
    publisher.start(tmp_path, record, tmp_path / "work", {}, after=4242)
    ((command, log),) = started
    assert command[1:] == ("-m", "mab_hook", "publish", "--pending", record.id, "--after", "4242", "-C",
                           str(tmp_path / "work"))  # fmt: skip
    assert (tmp_path / "publish" / f"{record.id}.log").exists()  # where the publisher's words go
    assert list((tmp_path / "publish").iterdir()) == [tmp_path / "publish" / f"{record.id}.log"]
    assert log is not None


def test_the_publisher_speaks_on_the_terminal_of_the_push(tmp_path: Path) -> None:
    """Run in a session whose controlling terminal is a pseudo-terminal, as a push from a shell:
    what the publisher says reaches that terminal."""
    import os  # noqa: PLC0415
    import pty  # noqa: PLC0415

    master, slave = pty.openpty()
    program = "from mab_hook import publisher\nt = publisher._terminal()\nt.write('heard\\n')\nt.flush()\n"
    setup = "import fcntl, os, sys, termios\nos.setsid()\nfcntl.ioctl(0, termios.TIOCSCTTY, 0)\n"
    child = subprocess.run((sys.executable, "-c", setup + program), stdin=slave, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, check=False, timeout=30)  # fmt: skip
    os.close(slave)
    assert child.returncode == 0, child.stderr
    assert os.read(master, 100).replace(b"\r", b"") == b"heard\n"
    os.close(master)
    alone = subprocess.run((sys.executable, "-c", "from mab_hook import publisher; print(publisher._terminal())"),
                           capture_output=True, text=True, check=True, start_new_session=True)  # fmt: skip
    assert alone.stdout == "None\n"  # no terminal: the log instead


def test_what_git_says_when_the_remote_cannot_be_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = pending.new("nowhere", [pending.PushedRef("refs/heads/main", "a" * 40, "a" * 40)], ((), ()))
    subprocess.run(("git", "init", "-q", str(tmp_path)), check=True)
    said = publisher.accepted("nowhere", record, tmp_path, {"PATH": "/usr/bin:/bin"})
    assert isinstance(said, str)
    assert (
        said == "Please make sure you have the correct access rights and the repository exists."
    )  # its last two lines
    monkeypatch.setattr(process, "run", lambda *args, **kwargs: process.Completed((), 128, "", ""))
    assert publisher.accepted("nowhere", record, tmp_path, {}) == "exit 128"  # git said nothing


def test_a_process_of_another_user_is_alive(monkeypatch: pytest.MonkeyPatch) -> None:
    import os  # noqa: PLC0415

    def refused(pid: int, signal: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "kill", refused)
    assert publisher.alive(12345) is True


def test_a_process_whose_name_has_a_parenthesis_is_read_right() -> None:
    """/proc/PID/stat puts the name in parentheses, and a name may hold ")" itself."""
    program = ("import ctypes, os\nctypes.CDLL(None).prctl(15, b'x) 1 2 (y', 0, 0, 0)\n"
               "from mab_hook import publisher\nprint(publisher._parent(os.getpid(), {})[0] == os.getppid())\n")  # fmt: skip
    ran = subprocess.run((sys.executable, "-c", program), capture_output=True, text=True, check=True)
    assert ran.stdout == "True\n"


def test_a_terminal_that_fails_once_is_not_written_to_again() -> None:
    from mab_hook.output import Printer  # noqa: PLC0415

    class Flaky(io.StringIO):
        failed = False

        def write(self, text: str) -> int:
            if not self.failed:
                self.failed = True
                raise OSError(5, "Input/output error")
            return super().write(text)

    stream = Flaky()
    speaker = publisher._speaker(Printer(stream, False, False))
    speaker("one")
    speaker("two")  # the terminal is back, but the publisher stopped speaking to it
    assert stream.getvalue() == ""


def test_a_push_that_never_ends_publishes_nothing(
    repo: Repo, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import os  # noqa: PLC0415

    repo.commit({"a": "1"})
    monkeypatch.setattr(publisher, "WAIT", 0.1)
    code, out = mab(repo, capsys, "publish", "--pending", "--after", str(os.getpid()))
    assert (code, out) == (1, f"mab-hook: error: the push (process {os.getpid()}) did not end in {0.1 / 3600:g} h: "
                              "nothing published\n")  # fmt: skip


def test_the_publisher_waits_six_hours_for_its_push_and_says_so(
    repo: Repo, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large pack over a slow link takes hours: the publisher waits for it that long."""
    repo.commit({"a": "1"})
    asked: list[float] = []

    def never(pid: int, timeout: float) -> bool:
        asked.append(timeout)
        return False

    monkeypatch.setattr(publisher, "wait_for", never)
    assert mab(repo, capsys, "publish", "--pending", "--after", "4242") == (
        1,
        "mab-hook: error: the push (process 4242) did not end in 6 h: nothing published\n",
    )
    assert asked == [6 * 3600]


def test_every_ref_a_newer_push_moved_on_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import git  # noqa: PLC0415

    subprocess.run(("git", "init", "-q", str(tmp_path)), check=True)
    refs = [pending.PushedRef("refs/heads/main", "a" * 40, "a" * 40, True),
            pending.PushedRef("refs/heads/next", "b" * 40, "b" * 40)]  # fmt: skip
    record = pending.new("origin", refs, ((), ()))
    monkeypatch.setattr(publisher, "accepted", lambda *args: ())
    said: list[str] = []
    answer = ("refs/heads/main", "refs/heads/next")
    assert publisher.still_held(record, answer, git.Repo(tmp_path), {}, said.append) is False
    assert said == ["origin no longer holds refs/heads/main, refs/heads/next as pushed (a newer push moved it on): "
                    "the moving tags are left to that push"]  # fmt: skip


@pytest.mark.parametrize("answers", ["recorded", "no engine"])
def test_a_push_that_built_nothing_publishes_over_what_the_engine_says_then(  # noqa: PLR0917 - fixtures
    repo: Repo,
    canned: Canned,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    answers: str,
) -> None:
    """A docs-only push of the default branch needs no engine at the gate, which so never learns
    which registries the engine speaks plain HTTP to (its insecure-registries): the publisher
    asks `docker info` itself, and tags with that; when docker does not answer, with none."""
    sha = repo.commit(project(canned.registry.host))
    published_once(repo, capsys, monkeypatch, sha)
    docs = repo.commit({"docs/index.md": "how to\n"})
    code, out = gate(repo, monkeypatch, capsys, f"refs/heads/main {docs} refs/heads/main {sha}")
    assert code == 0, out
    *_, (_path, record) = pending.every(repo.path / ".git" / "mab-hook")
    assert (record.state, record.insecure) == (pending.WAITING, None)  # not asked: nothing was built
    down: recorded.Answers = {("docker", "info", "--format", "{{json .}}"): (1, "")}  # no daemon answers
    found = recorded.host(tmp_path, None if answers == "recorded" else down)
    monkeypatch.setattr(readiness, "local_host", lambda env, machine, probes=None: found)
    gateways: list[Insecure] = []
    made = Registry

    def registry(env: Mapping[str, str], *, insecure: Insecure) -> Registry:
        gateways.append(insecure)
        return made(env, insecure=insecure)

    monkeypatch.setattr(publisher, "Registry", registry)
    assert push(repo, "main").returncode == 0
    code, out = mab(repo, capsys, "publish", "--pending")
    assert code == 0, out
    said = (("plain.internal:5000",), ("127.0.0.0/8", "10.20.0.0/16")) if answers == "recorded" else ((), ())
    assert gateways == [said]
    assert all(public(canned, name) == {sha[:7], docs[:7]} for name in IMAGES)
