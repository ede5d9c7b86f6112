"""`mab-hook gc`: which staging uploads go, and how a registry is asked to remove them. The rules
fast (no Docker); the command in-process against the in-memory registry (tests/engine.py), and
against the lab's distribution registry, with deletion enabled and without."""

from __future__ import annotations

import datetime
import io
import json
import re
from pathlib import Path

import pytest

from mab_hook import __version__, cleanup, cli, pending
from mab_hook.cleanup import Deletion, Rules, Upload, Verdict
from mab_hook.commands import gc
from mab_hook.output import Printer
from tests.conftest import Hooked, Lab, Repo, start_registry
from tests.conftest import mab as run
from tests.engine import INDEX, Canned
from tests.test_commands_canned import IMAGES, mab, project

NOW = datetime.datetime(2026, 12, 5, 12, 0, tzinfo=datetime.timezone.utc)
D = "d" * 64


def old(days: float) -> datetime.datetime:
    return NOW - datetime.timedelta(days=days)


def staged(
    tag: str = f"mab-{D}", digest: str = "sha256:1", created: datetime.datetime | None = None
) -> Upload:
    return Upload("r/team/mab-staging/api", tag, digest, created)


@pytest.mark.parametrize(("found", "named", "waiting", "remove", "why"), [
    (staged(created=old(20)), {}, (), True, "20 days old, and nothing needs it"),
    (staged(created=old(14)), {}, (), True, "14 days old, and nothing needs it"),  # the limit itself goes
    (staged(created=old(13.9)), {}, (), False, "14 days old"),
    (staged(created=old(0.75)), {}, (), False, "18 h old"),
    (staged(created=old(20)), {"sha256:1": "v1.0"}, (), False, "its image is published as v1.0"),
    (staged(created=old(20)), {"sha256:2": "v1.0"}, (), True, "20 days old, and nothing needs it"),
    (staged(created=old(20)), {}, (D,), False, "a waiting publish needs it"),
    (staged(f"mab-{D}-linux-arm64", created=old(20)), {}, (D,), False, "a waiting publish needs it"),
    (staged(created=old(20)), {}, ("e" * 64,), True, "20 days old, and nothing needs it"),
    (staged(created=None), {}, (), False, "its age is unknown"),
    (staged(digest="", created=old(20)), {"": "v1"}, (), True, "20 days old"),  # no digest names nothing
])  # fmt: skip
def test_an_upload_goes_only_when_old_and_nothing_needs_it(
    found: Upload, named: dict[str, str], waiting: tuple[str, ...], remove: bool, why: str
) -> None:
    verdict = cleanup.judge(found, named, Rules(waiting, NOW, 14.0))
    assert (verdict.remove, verdict.why.startswith(why)) == (remove, True), verdict.why


def test_one_day_is_said_as_one() -> None:
    assert (
        cleanup.judge(staged(created=old(1)), {}, Rules((), NOW, 0)).why == "1 day old, and nothing needs it"
    )


def verdict(tag: str, digest: str, remove: bool, repository: str = "r/s/api") -> Verdict:
    return Verdict(Upload(repository, tag, digest, None), remove, "")


def test_an_image_is_deleted_by_digest_only_when_every_tag_naming_it_goes() -> None:
    verdicts = [
        verdict("mab-a", "sha256:a", True), verdict("mab-a-linux-amd64", "sha256:a", True),  # all of a
        verdict("mab-b", "sha256:b", True), verdict("mab-b2", "sha256:b", False),  # part of b
        verdict("mab-c", "sha256:c", True, "r/api"),  # c is named by a public tag there too
        verdict("mab-c", "sha256:c", True),  # ...but not in the staging repository
        verdict("mab-d", "sha256:d", False),
    ]  # fmt: skip
    assert cleanup.deletions(verdicts, {("r/api", "sha256:c")}) == [
        Deletion("r/s/api", "sha256:a", ("mab-a", "mab-a-linux-amd64")),
        Deletion("r/s/api", "mab-b", ("mab-b",)),
        Deletion("r/api", "mab-c", ("mab-c",)),
        Deletion("r/s/api", "sha256:c", ("mab-c",)),
    ]


@pytest.mark.parametrize(("text", "when"), [
    ("2026-11-20T10:11:12.123456789Z", datetime.datetime(2026, 11, 20, 10, 11, 12, tzinfo=datetime.timezone.utc)),
    ("2026-11-20T10:11:12Z", datetime.datetime(2026, 11, 20, 10, 11, 12, tzinfo=datetime.timezone.utc)),
    ("2026-11-20T12:11:12.5+02:00", datetime.datetime(2026, 11, 20, 10, 11, 12, tzinfo=datetime.timezone.utc)),
    ("2026-11-20T10:11:12", datetime.datetime(2026, 11, 20, 10, 11, 12, tzinfo=datetime.timezone.utc)),
    ("2026-11-20T10:11:12z", datetime.datetime(2026, 11, 20, 10, 11, 12, tzinfo=datetime.timezone.utc)),
    ("2026-13-20T10:11:12Z", None), ("2026-11-20T10:11:12 and more", None),
    ("yesterday", None), ("", None), (None, None),
])  # fmt: skip
def test_buildkits_creation_times_are_read(text: str | None, when: datetime.datetime | None) -> None:
    assert cleanup._when(text) == when


# --- the command, in-process against the in-memory registry -----------------------------------

LONG_AGO = "2020-01-02T03:04:05.000000001Z"


def plant(canned: Canned, repository: str, tag: str) -> str:
    """An upload of long ago, labelled with the inputs its tag names; its index's digest."""
    labels = {"dev.mab-hook.input-digest": tag.removeprefix("mab-")[:64]}
    return canned.registry.upload(f"{canned.registry.host}/{repository}:{tag}", labels,
                                  ["linux/amd64"], created=LONG_AGO)  # fmt: skip


def test_gc_removes_what_nothing_needs_and_keeps_the_rest(
    repo: Repo, canned: Canned, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sha = repo.commit(project(canned.registry.host))
    code, out = mab(repo, capsys, monkeypatch, "--all", "--publish")
    assert code == 0, out
    fresh = {name: canned.staged(name) for name in IMAGES}
    registry = canned.registry
    plant(canned, "team/mab-staging/api", "mab-" + "1" * 64)  # old, needed by nothing: goes
    plant(canned, "team/mab-staging/api", "mab-" + "1" * 64 + "-linux-amd64")  # its CI share: goes
    released = plant(canned, "team/mab-staging/api", "mab-" + "2" * 64)  # old, but v0.9 is it: stays
    registry.put("team/api", "v0.9", registry.manifests[("team/mab-staging/api", released)][0], INDEX)
    plant(canned, "team/mab-staging/api", "mab-" + "3" * 64)  # a waiting publish needs it
    plant(canned, "team/api", "mab-" + "2" * 64)  # an earlier version's, beside v0.9: goes, by its tag
    plant(canned, "team/worker", "mab-" + "4" * 64)  # an earlier version's, alone: goes, by digest
    plant(
        canned, "team/mab-staging/worker", "mab-" + "4" * 64
    )  # the same image, staged: no public tag keeps it
    registry.deletes = {"digest", "tag"}  # as distribution 3, Harbor: a tag alone too
    waiting = pending.new("origin", [pending.PushedRef("refs/heads/main", sha, sha, True)], ((), ()))
    pending.write(repo.path / ".git" / "mab-hook", waiting)
    monkeypatch.setattr(cleanup, "needed_by_pending", lambda *args: frozenset({"3" * 64}))

    code, out = mab(repo, capsys, monkeypatch, "gc", "--dry-run")
    assert code == 0, out
    assert out.count("  would remove  ") == 5, out
    assert "mab-hook: would remove 5 staging upload(s); kept 6 (-v: which, and why)" in out.splitlines()
    before = dict(registry.manifests)
    code, out = mab(repo, capsys, monkeypatch, "gc", "-v")
    assert code == 0, out
    host = registry.host
    lines = out.splitlines()
    removed = re.compile(
        rf"  removed  {host}/team/mab-staging/api:mab-{'1' * 64}  \(\d{{4}} days old, and nothing needs it\)"
    )
    assert any(removed.fullmatch(line) for line in lines), out
    assert f"  kept  {host}/team/mab-staging/api:mab-{'2' * 64}  (its image is published as v0.9)" in lines
    assert f"  kept  {host}/team/mab-staging/api:mab-{'3' * 64}  (a waiting publish needs it)" in lines
    assert ("mab-hook: removed 5 staging upload(s); kept 6 (-v: which, and why); the registry frees their "
            "space at its garbage collection") in lines  # fmt: skip
    assert canned.staged("api") == fresh["api"] | {"mab-" + "2" * 64, "mab-" + "3" * 64}
    assert canned.tags("api") == {sha[:7], "v0.9"}  # the public tags untouched, v0.9 whole
    assert canned.tags("worker") == {sha[:7]}
    assert f"mab-{'4' * 64}" not in canned.staged("worker")
    assert all(canned.staged(name) == fresh[name] for name in ("base", "worker", "lone"))
    deleted = [path.rsplit("/", 1)[1] for method, path in registry.requests
               if method == "DELETE" and "/manifests/" in path]  # fmt: skip
    assert f"mab-{'2' * 64}" in deleted  # beside a public tag: by its tag alone
    assert (
        len(deleted) == 4
    )  # api's CI and whole tags by one digest, worker's two by digest, api's legacy by tag
    assert all(key in registry.manifests for key in before if key[1] in (sha[:7], "v0.9"))


def test_with_staging_in_the_public_repositories_publishing_is_a_put_a_tag_and_gc_never_takes_a_public_tag(
    repo: Repo, canned: Canned, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`staging` set to the registry: uploads wait beside the public tags, nothing is carried
    across, and gc removes only `mab-` tags nothing needs (by tag where a public one names
    the same image)."""
    host = canned.registry.host
    sha = repo.commit(project(host, staging=f'"{host}/team"'))
    code, out = mab(repo, capsys, monkeypatch, "--all", "--publish")
    assert code == 0, out
    registry = canned.registry
    assert not [path for method, path in registry.requests if method == "POST" and "mount=" in path]
    assert canned.staged("api") == set()  # no mab-staging repository at all
    uploaded = {tag for tag in canned.tags("api") if tag.startswith("mab-")}
    assert len(uploaded) == 1 and canned.tags("api") == {sha[:7], *uploaded}
    old_tag = "mab-" + "5" * 64
    plant(canned, "team/api", old_tag)  # an upload of long ago that nothing needs: goes
    registry.deletes = {"digest", "tag"}
    registry.requests.clear()
    code, out = mab(repo, capsys, monkeypatch, "gc", "-v")
    assert code == 0, out
    assert canned.tags("api") == {sha[:7], *uploaded}  # the public tag, and the upload it names
    assert f"  kept  {host}/team/api:{next(iter(uploaded))}  (its image is published as {sha[:7]})" in out
    deleted = [path.rsplit("/", 1)[1] for method, path in registry.requests if method == "DELETE"]
    assert len(deleted) == 1 and deleted[0].startswith("sha256:")  # the old one alone names its image


def test_gc_keeps_what_the_images_commits_publish_from(
    repo: Repo, canned: Canned, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Everything the gate just uploaded is young, and once old, its public tags keep it."""
    repo.commit(project(canned.registry.host))
    assert mab(repo, capsys, monkeypatch, "--all", "--publish")[0] == 0
    code, out = mab(repo, capsys, monkeypatch, "gc", "--older-than", "0", "--json")
    assert code == 0, out
    found = json.loads(out[: out.rindex("}") + 1])
    assert found["removed"] == []
    assert {entry["why"] for entry in found["kept"]} == {f"its image is published as {repo.head()[:7]}"}


@pytest.mark.parametrize(("deletes", "code", "said"), [
    ({"tag"}, 0, "removed 1 staging upload(s)"),  # a registry that deletes tags only: tag by tag
    (set(), 1, "the registry refused to delete 1 (HTTP 405): let it delete (distribution: storage.delete.enabled"),
])  # fmt: skip
def test_a_registry_that_deletes_otherwise_or_not_at_all(  # noqa: PLR0917 - fixtures, parameters
    repo: Repo, canned: Canned, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    deletes: set[str], code: int, said: str,
) -> None:  # fmt: skip
    repo.commit(project(canned.registry.host))
    plant(canned, "team/mab-staging/api", "mab-" + "1" * 64)
    canned.registry.deletes = deletes
    got, out = mab(repo, capsys, monkeypatch, "gc")
    assert (got, said in out) == (code, True), out
    assert (f"mab-{'1' * 64}" in canned.staged("api")) is (code == 1)


def test_a_tag_beside_a_public_one_stays_where_only_whole_images_are_deleted(
    repo: Repo, canned: Canned, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """distribution 2 deletes a manifest with every tag of it: an earlier version's staging tag
    beside a public tag of the same image stays, said, and is no error."""
    repo.commit(project(canned.registry.host))
    released = plant(canned, "team/api", "mab-" + "2" * 64)
    canned.registry.put("team/api", "v0.9", canned.registry.manifests[("team/api", released)][0], INDEX)
    code, out = mab(repo, capsys, monkeypatch, "gc", "-v")
    assert code == 0, out
    assert (
        "  kept  " in out
        and "(the registry deletes only whole images, and a tag that stays names this one)" in out
    )
    assert "removed 0 staging upload(s); kept 1" in out
    assert canned.tags("api") == {"v0.9", "mab-" + "2" * 64}


def test_gc_reads_every_page_of_a_long_tag_list(
    repo: Repo, canned: Canned, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.commit(project(canned.registry.host))
    for n in range(7):
        plant(canned, "team/mab-staging/lone", f"mab-{n:064d}")
    canned.registry.page = 3
    code, out = mab(repo, capsys, monkeypatch, "gc")
    assert code == 0, out
    assert "removed 7 staging upload(s)" in out and canned.staged("lone") == set()


def test_gc_wants_pushed_images(
    repo: Repo, canned: Canned, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    files = project(canned.registry.host)
    repo.commit({**files, "pyproject.toml": files["pyproject.toml"].replace("push = true", "push = false")})
    code, out = mab(repo, capsys, monkeypatch, "gc")
    assert code == 1
    assert re.fullmatch(
        r"mab-hook: error: pyproject.toml at [0-9a-f]{12}: push = false, so nothing of it is in a "
        r"registry to clean up\n",
        out,
    ), out


# --- the lab's registry -----------------------------------------------------------------------


@pytest.mark.lab
def test_gc_on_the_lab_removes_a_feature_branchs_uploads_and_the_publisher_still_finds_the_rest(
    hooked: Hooked, lab: Lab
) -> None:
    """The public repositories list no staging tag; gc takes what only a feature branch uploaded,
    keeps what public tags name, and a release tag pushed afterwards still tags every image from
    its staging upload."""
    repo = hooked.repo
    installed = run(repo.path, hooked.env, "install")  # every ref of a push checked, tags too
    assert installed.returncode == 0, installed.stdout + installed.stderr
    config = (repo.path / "pyproject.toml").read_text().replace('"latest"]', '"{branch}"]')
    repo.commit({"docs/index.md": "# Docs, v2\n", "pyproject.toml": config})
    assert "publish: published" in hooked.push("main").output  # every image of it, from staging
    repo.git("checkout", "-q", "-b", "feature/x")
    repo.commit({"services/api/app.txt": "experiment\n"})
    assert hooked.push("feature/x").code == 0
    staging = f"{hooked.registry}/mab-staging/api"
    assert len(lab.tags(staging)) == 2  # main's and the experiment's
    repo.git("checkout", "-q", "main")
    gc = run(repo.path, hooked.env, "gc", "--older-than", "0", "-v")
    assert gc.returncode == 0, gc.stdout + gc.stderr
    assert gc.stdout.count("  removed  ") == 1 and f"  removed  {staging}:mab-" in gc.stdout, gc.stdout
    assert len(lab.tags(staging)) == 1
    repo.commit({"docs/index.md": "# Docs, v3\n"})
    repo.git("tag", "v5.0.0")
    pushed = hooked.push("main", "v5.0.0")
    assert pushed.code == 0 and "publish: published" in pushed.output, pushed.output
    for name in ("base", "api", "worker"):
        tags = lab.tags(f"{hooked.registry}/{name}")
        assert "v5.0.0" in tags and not any(tag.startswith("mab-") for tag in tags), (name, tags)


@pytest.mark.lab
def test_gc_on_a_registry_without_deletion_says_how_to_enable_it(
    lab: Lab, repo: Repo, tmp_path: Path
) -> None:
    registry = start_registry(tmp_path / "registry", delete=False)
    try:
        prefix = f"{registry.address}/team"
        repo.commit({
            "pyproject.toml": f'[tool.multiarch]\nplatforms = ["linux/amd64"]\nregistry = "{prefix}"\npush = true\n'
                              '[tool.multiarch.images.web]\ncontext = "web"\n',
            "web/Dockerfile": f"FROM {lab.busybox}\nCOPY page.txt /\n", "web/page.txt": "page\n",
        })  # fmt: skip
        by_hand = run(repo.path, lab.env, "--all")
        assert by_hand.returncode == 0, by_hand.stdout + by_hand.stderr
        assert lab.tags(f"{prefix}/mab-staging/web") and lab.tags(f"{prefix}/web") == set()
        gc = run(repo.path, lab.env, "gc", "--older-than", "0")
        assert gc.returncode == 1, gc.stdout + gc.stderr
        assert "the registry refused to delete 1 (HTTP 405): let it delete" in gc.stdout + gc.stderr
        assert lab.tags(f"{prefix}/mab-staging/web")
    finally:
        registry.stop()


def test_the_waiting_publishes_keep_every_image_of_their_commits(repo: Repo) -> None:
    """Waiting and failed publishes keep what their commits' images need; ended ones, and one
    naming a commit the repository no longer has, keep nothing."""
    import git  # noqa: PLC0415

    from mab_hook import changes, planning  # noqa: PLC0415

    files = project("127.0.0.1:9")
    first = repo.commit(files)
    second = repo.commit({"api/app.txt": "v2\n"})
    third = repo.commit({"api/app.txt": "v3\n"})
    root = repo.path / ".git" / "mab-hook"

    def record(sha: str, state: str) -> None:
        ref = pending.PushedRef("refs/heads/main", sha, sha, True)
        pending.write(root, pending.new("origin", [ref], ((), ()))._replace(state=state))

    record(first, pending.WAITING)
    record(second, pending.FAILED)
    record(third, pending.PUBLISHED)
    record("f" * 40, pending.WAITING)  # gone: history rewritten

    def digests(sha: str) -> set[str]:
        plan = planning.plan_at(git.Repo(repo.path), changes.Commit(sha, (), None, "t"), env={}, build_platform="linux/amd64",
                                digests=True)  # fmt: skip
        return {planned.input_digest for planned in plan.affected}

    found = cleanup.needed_by_pending(git.Repo(repo.path), root, {}, "linux/amd64")
    assert found == digests(first) | digests(second)
    assert len(digests(first) | digests(second)) == len(IMAGES) + 1  # api differs between them
    assert not (digests(third) - digests(second)) & found  # the published commit's new api is not kept


def test_a_waiting_publish_whose_commit_cannot_be_planned_stops_gc_before_anything_goes(
    repo: Repo, canned: Canned, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = repo.commit({"pyproject.toml": "[tool.multiarch\n"})
    repo.commit(project(canned.registry.host))
    plant(canned, "team/mab-staging/api", "mab-" + "1" * 64)
    ref = pending.PushedRef("refs/heads/main", broken, broken, True)
    pending.write(repo.path / ".git" / "mab-hook", pending.new("origin", [ref], ((), ())))
    code, out = mab(repo, capsys, monkeypatch, "gc")
    assert code == 1, out
    assert out.startswith(
        f"mab-hook: error: a waiting publish names commit {broken[:12]}, which cannot be planned ("
    )
    assert out.rstrip().endswith("nothing was removed: run `mab-hook status`")
    assert canned.staged("api") == {"mab-" + "1" * 64}


class Deleting:
    """A registry that answers each DELETE as told (by reference), and keeps what it was asked."""

    def __init__(self, answers: dict[str, int]) -> None:
        self.answers, self.asked = answers, list[str]()

    def delete(self, reference: str) -> int:
        self.asked.append(reference)
        return self.answers.get(reference, 202)


@pytest.mark.parametrize(("by_digest", "by_tag", "refused", "shared"), [
    (202, 405, [], []), (200, 405, [], []), (204, 405, [], []), (404, 405, [], []),  # done, or gone already
    (400, 202, [], []), (405, 202, [], []), (501, 202, [], []),  # deletes tags only: tag by tag
    (405, 405, [("r/s/api", "mab-a", 405)], []),  # deletes nothing
    (401, 202, [("r/s/api", "sha256:a", 401)], []),  # refused: not a way it does not delete
    (500, 202, [("r/s/api", "sha256:a", 500)], []),
])  # fmt: skip
def test_how_a_registry_answers_a_delete(
    by_digest: int, by_tag: int, refused: list[tuple[str, str, int]], shared: list[str]
) -> None:
    registry = Deleting({"r/s/api@sha256:a": by_digest, "r/s/api:mab-a": by_tag})
    removal = cleanup.remove(registry, [verdict("mab-a", "sha256:a", True)], set())  # type: ignore[arg-type]
    assert [(d.repository, d.target, code) for d, code in removal.refused] == refused
    assert registry.asked[0] == "r/s/api@sha256:a"
    assert registry.asked[1:] == (["r/s/api:mab-a"] if by_digest in (400, 405, 501) else [])


@pytest.mark.parametrize(
    ("status", "kept"), [(400, True), (405, True), (501, True), (401, False), (202, False)]
)
def test_a_tag_the_registry_will_not_take_alone_stays_and_is_said(status: int, kept: bool) -> None:
    going = [verdict("mab-a", "sha256:a", True), verdict("mab-b", "sha256:a", False)]
    registry = Deleting({"r/s/api:mab-a": status})
    removal = cleanup.remove(registry, going, set())  # type: ignore[arg-type]
    assert registry.asked == ["r/s/api:mab-a"]
    assert (len(removal.shared), len(removal.refused)) == ((1, 0) if kept else (0, int(status == 401)))
    settled = cleanup.settled(going, removal)
    assert settled[0].remove is not kept and settled[1] == going[1]
    if kept:
        assert settled[0].why == "the registry deletes only whole images, and a tag that stays names this one"


def test_gc_says_what_it_does_and_refuses_nonsense(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        gc.parse_args(["--help"])
    said = " ".join(capsys.readouterr().out.split())
    assert said.startswith(
        "usage: mab-hook gc [-h] [--older-than DAYS] [--dry-run] [--json] [--color {auto,always,never}] [-C DIR] [-v]"
    )
    for text in ("Remove staging uploads older than --older-than days that no public tag and no waiting publish "
                 "needs, from the staging repository of every image of HEAD's configuration (and the mab- tags "
                 "earlier versions left among the public tags).",
                 "--older-than DAYS keep what is younger than this (default 14)",
                 "--dry-run say what would go; delete nothing", "--json machine-readable output on stdout",
                 "-v, --verbose also list what is kept, and why"):  # fmt: skip
        assert text in said, text
    assert (gc.parse_args([]).older_than, gc.parse_args([]).color) == (14.0, "auto")
    with pytest.raises(SystemExit):
        gc.parse_args(["--older-than", "-1"])
    assert capsys.readouterr().err.rstrip().endswith("error: --older-than: a number of days, 0 or more")


def test_gc_in_another_directory_and_as_json(
    repo: Repo, canned: Canned, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:  # fmt: skip
    repo.commit(project(canned.registry.host))
    plant(canned, "team/mab-staging/api", "mab-" + "1" * 64)
    canned.registry.deletes = set()
    monkeypatch.chdir(tmp_path)
    code = cli.main(["gc", "--color", "never", "-C", str(repo.path), "--json"])
    out = capsys.readouterr().out
    assert code == 1
    found = json.loads(out)
    assert out.endswith("}\n")
    assert (found["version"], found["dry_run"], found["removed"], found["kept"]) == (
        __version__,
        False,
        [],
        [],
    )
    host = canned.registry.host
    assert found["refused"] == [{"repository": f"{host}/team/mab-staging/api", "target": f"mab-{'1' * 64}",
                                 "status": 405}]  # fmt: skip


def test_a_registry_that_fails_gc_is_said_with_what_to_run(
    repo: Repo, canned: Canned, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.commit(project("127.0.0.1:9"))  # nothing listens there
    code, out = mab(repo, capsys, monkeypatch, "gc")
    assert code == 1
    assert out.startswith("mab-hook: error: the registry failed while gc read it (")
    assert out.rstrip().endswith("nothing was removed: check `mab-hook doctor` and run `mab-hook gc` again")
    repo.commit(project(canned.registry.host))
    plant(canned, "team/mab-staging/api", "mab-" + "1" * 64)
    canned.registry.hang_up_on = "DELETE"
    code, out = mab(repo, capsys, monkeypatch, "gc")
    assert code == 1
    assert out.startswith("mab-hook: error: the registry failed while gc removed (")
    assert out.rstrip().endswith("); run `mab-hook gc` again")


def test_a_refusal_says_every_status_and_what_to_enable() -> None:
    said = io.StringIO()
    refused = [
        (Deletion("r/s/api", "sha256:a", ("mab-a",)), 405),
        (Deletion("r/s/web", "sha256:b", ("mab-b",)), 403),
    ]
    assert gc.report(gc.Options(), [], refused, Printer(said, color=False)) == 1
    assert said.getvalue().splitlines()[-1] == (
        "mab-hook: error: the registry refused to delete 2 (HTTP 403, 405): let it delete (distribution: "
        "storage.delete.enabled: true, or REGISTRY_STORAGE_DELETE_ENABLED=true; Harbor, GitLab: credentials "
        "that may delete there), then run `mab-hook gc` again"
    )


def test_what_gc_keeps_is_told_in_json_as_it_is_in_text() -> None:
    when = old(3)
    young = Verdict(Upload("r/s/api", "mab-a", "sha256:a", when), False, "3 days old")
    unknown = Verdict(Upload("r/s/api", "mab-b", "sha256:b", None), False, "its age is unknown")
    assert [gc._entry(v) for v in (young, unknown)] == [
        {
            "reference": "r/s/api:mab-a",
            "digest": "sha256:a",
            "created": when.isoformat(),
            "why": "3 days old",
        },
        {"reference": "r/s/api:mab-b", "digest": "sha256:b", "created": None, "why": "its age is unknown"},
    ]
