"""CI fan-out: the matrix, a job per image and platform, and the merge that publishes only
when every platform of every image is there. Against the lab, compared with the hook."""

from __future__ import annotations

import concurrent.futures
import json
import os
from pathlib import Path

import pytest

from mab_hook import ci
from mab_hook.registry import Manifest
from tests.conftest import PLATFORMS, Hooked, Lab, Repo, mab, project_files

IMAGES = ("base", "api", "worker")


def github_output(path: Path) -> dict[str, object]:
    """$GITHUB_OUTPUT as the runner reads it: `name=value` lines, each value JSON here."""
    lines = path.read_text().splitlines()
    return {name: json.loads(value) for name, _, value in (line.partition("=") for line in lines)}


def test_the_matrix_has_every_image_and_platform_bases_first(repo: Repo, tmp_path: Path) -> None:
    repo.commit(project_files_without_lab("reg.invalid/team"))
    out = tmp_path / "github-output"
    out.write_text("earlier=1\n")  # the file is appended to, as the runner's other steps do
    env = {**os.environ, "GITHUB_OUTPUT": str(out)}
    proc = mab(repo.path, env, "--all", "--dry-run", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    sha = repo.head()
    expected = [{"image": "base", "platform": p, "level": 0, "commit": sha} for p in PLATFORMS]
    expected += [{"image": "api", "platform": p, "level": 1, "commit": sha} for p in PLATFORMS]
    expected += [{"image": "worker", "platform": p, "level": 1, "commit": sha} for p in PLATFORMS[:2]]
    assert json.loads(proc.stdout)["matrix"] == {"include": expected}
    assert github_output(out) == {"earlier": 1, "affected": list(IMAGES), "matrix": {"include": expected}}


def test_nothing_affected_is_an_empty_matrix(repo: Repo, tmp_path: Path) -> None:
    repo.commit(project_files_without_lab("reg.invalid/team"))
    repo.commit({"docs/index.md": "# more\n"})
    out = tmp_path / "github-output"
    proc = mab(repo.path, {**os.environ, "GITHUB_OUTPUT": str(out)}, "--from", "HEAD^", "--dry-run", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # GitHub skips a job whose matrix is empty only through an `if:` on `affected`.
    assert github_output(out) == {"affected": [], "matrix": {"include": []}}


def test_an_unknown_image_lists_the_images(repo: Repo) -> None:
    repo.commit(project_files_without_lab("reg.invalid/team"))
    proc = mab(repo.path, os.environ, "build", "--all", "--image", "ap", "--platform", "linux/amd64")
    assert proc.returncode == 1
    assert "no affected image named 'ap'" in proc.stdout
    assert "(affected: base, api, worker; images: base, api, worker)" in proc.stdout
    wrong = mab(repo.path, os.environ, "build", "--all", "--image", "worker", "--platform", "linux/arm/v7")
    assert wrong.returncode == 1
    assert (
        "image worker is not built for linux/arm/v7; its platforms: linux/amd64, linux/arm64" in wrong.stdout
    )


def test_merged_keeps_every_platform_manifest_by_digest() -> None:
    arm = Manifest(b'{"schemaVersion":2}', "application/vnd.oci.image.manifest.v1+json", "sha256:arm")
    amd_index = {"manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:amd", "size": 9,
         "platform": {"os": "linux", "architecture": "amd64"}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:att", "size": 7,
         "platform": {"os": "unknown", "architecture": "unknown"}},
    ]}  # fmt: skip
    amd = Manifest(json.dumps(amd_index).encode(), ci.INDEX, "sha256:amdindex")
    index = json.loads(ci.merged([("linux/amd64", amd), ("linux/arm/v7", arm)]).body)
    assert index["mediaType"] == ci.INDEX
    assert [m["digest"] for m in index["manifests"]] == ["sha256:amd", "sha256:att", "sha256:arm"]
    assert index["manifests"][2] == {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                     "digest": "sha256:arm", "size": len(arm.body),
                                     "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}}  # fmt: skip


def project_files_without_lab(registry: str) -> dict[str, str]:
    """The lab's project, planned only: its base image is never pulled."""
    return project_files(Lab({}, "", "busybox"), registry)


def fan_out(repo: Repo, env: dict[str, str], tmp_path: Path, *scope: str) -> dict[tuple[str, str], str]:
    """What a workflow does: the plan job's matrix, then every (image, platform) job at once.
    Each job's exit code and output."""
    scope = scope or ("--all",)
    out = tmp_path / "github-output"
    planned = mab(repo.path, {**env, "GITHUB_OUTPUT": str(out)}, *scope, "--dry-run", "--json")
    assert planned.returncode == 0, planned.stdout + planned.stderr
    matrix = github_output(out)["matrix"]
    assert isinstance(matrix, dict)

    def job(entry: dict[str, str]) -> str:
        proc = mab(repo.path, env, "build", *scope, "--image", entry["image"], "--platform", entry["platform"],
                   "--push-by-digest")  # fmt: skip
        return f"{proc.returncode}\n{proc.stdout}{proc.stderr}"

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        codes = list(pool.map(job, matrix["include"]))
    return {(e["image"], e["platform"]): code for e, code in zip(matrix["include"], codes, strict=True)}


@pytest.mark.lab
def test_per_platform_jobs_and_publish_give_what_the_hook_gives(lab: Lab, repo: Repo, tmp_path: Path) -> None:
    by_hook, by_jobs = lab.namespace(), lab.namespace()
    repo.commit(project_files(lab, by_jobs))
    codes = {job: out.split("\n")[0] for job, out in fan_out(repo, lab.env, tmp_path).items()}
    assert set(codes.values()) == {"0"}, codes
    assert lab.pushed(by_jobs) == set()  # uploads under staging tags only, until publish
    published = mab(repo.path, lab.env, "publish", "--all")
    assert published.returncode == 0, published.stdout + published.stderr
    assert "api: published " in published.stdout
    # The same project under the hook, in a registry namespace of its own.
    hook_repo = tmp_path / "hooked"
    hook_repo.mkdir()
    same = Repo(hook_repo, repo.remote)
    same.git("init", "-q", "-b", "main")
    same.commit(project_files(lab, by_hook))
    gate = mab(same.path, lab.env, "--all")
    assert gate.returncode == 0, gate.stdout + gate.stderr
    for name in IMAGES:
        jobs_tags, hook_tags = lab.tags(f"{by_jobs}/{name}"), lab.tags(f"{by_hook}/{name}")
        assert {t for t in jobs_tags if not t.startswith("mab-")} == {repo.head()[:7], "latest"}
        assert {t for t in hook_tags if not t.startswith("mab-")} == {same.head()[:7], "latest"}
        assert lab.platforms(f"{by_jobs}/{name}:latest") == lab.platforms(f"{by_hook}/{name}:latest")
        # The input-digest tag (the proof `verify` asks for) names the whole manifest list.
        (whole,) = [t for t in jobs_tags if t.startswith("mab-") and t.count("-") == 1]
        assert lab.manifest(f"{by_jobs}/{name}:{whole}") == lab.manifest(f"{by_jobs}/{name}:latest")
    assert lab.platforms(f"{by_jobs}/worker:latest") == {"linux/amd64", "linux/arm64"}
    report = lab.docker(
        "run", "--rm", "--platform", "linux/arm/v7", f"{by_jobs}/api:latest", "cat", "/report"
    )
    assert report.stdout == "base v1 armv7l\napi v1\n"
    assert mab(repo.path, lab.env, "verify", "--all").returncode == 0


@pytest.mark.lab
def test_a_failing_platform_job_leaves_the_public_tags_untouched(
    lab: Lab, repo: Repo, tmp_path: Path
) -> None:
    registry = lab.namespace()
    files = project_files(lab, registry)
    files["services/worker/Dockerfile"] = f'FROM {registry}/base\nRUN [ "$(uname -m)" != aarch64 ]\n'
    repo.commit(files)
    codes = {job: out.split("\n")[0] for job, out in fan_out(repo, lab.env, tmp_path).items()}
    assert codes.pop(("worker", "linux/arm64")) == "1"
    assert set(codes.values()) == {"0"}, codes
    published = mab(repo.path, lab.env, "publish", "--all")
    assert published.returncode == 1
    assert (
        "not every platform was built, so nothing was published: missing worker linux/arm64"
        in published.stdout
    )
    assert lab.pushed(registry) == set()
    for name in IMAGES:  # not even the input-digest tag of the images that built
        assert not [t for t in lab.tags(f"{registry}/{name}") if t.startswith("mab-") and t.count("-") == 1]
    assert mab(repo.path, lab.env, "verify", "--all").returncode == 1


@pytest.mark.lab
def test_after_a_gated_push_the_fan_out_builds_nothing_and_moves_no_tag(
    hooked: Hooked, lab: Lab, tmp_path: Path
) -> None:
    sha = hooked.repo.commit({"services/api/app.txt": "api v2\n"})
    assert hooked.push("main").code == 0
    api = f"{hooked.registry}/api"
    before = (lab.tags(api), lab.manifest(f"{api}:latest"))
    jobs = fan_out(hooked.repo, hooked.env, tmp_path, "--from", "HEAD^")
    assert set(jobs) == {("api", p) for p in PLATFORMS}
    for out in jobs.values():
        assert out.startswith("0\n") and "api: already published from these inputs" in out, out
    published = mab(hooked.repo.path, hooked.env, "publish", "--from", "HEAD^")
    assert published.returncode == 0, published.stdout + published.stderr
    assert (
        f"api: published {api}:{sha[:7]}, {api}:latest (built from these inputs before)" in published.stdout
    )
    assert (lab.tags(api), lab.manifest(f"{api}:latest")) == before  # the very index the gate pushed
