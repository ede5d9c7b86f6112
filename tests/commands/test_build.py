"""CI fan-out: the matrix, a job per image and platform, and the merge that publishes only
when every platform of every image is there. Against the lab, compared with the hook."""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import pytest
import yaml

from mab_hook import merging
from mab_hook.registry import Manifest
from tests.conftest import PLATFORMS, ROOT, Hooked, Lab, Repo, mab, project_files
from tests.test_matrix import github_output, project_files_without_lab

IMAGES = ("base", "api", "worker")


def test_an_unknown_image_lists_the_images(repo: Repo) -> None:
    repo.commit(project_files_without_lab("reg.invalid/team"))
    proc = mab(repo.path, os.environ, "build", "--all", "--image", "ap", "--platform", "linux/amd64")
    assert proc.returncode == 1
    assert "no affected image named 'ap'" in proc.stderr
    assert "(affected: base, api, worker; images: base, api, worker)" in proc.stderr
    wrong = mab(repo.path, os.environ, "build", "--all", "--image", "worker", "--platform", "linux/arm/v7")
    assert wrong.returncode == 1
    assert (
        "image worker is not built for linux/arm/v7; its platforms: linux/amd64, linux/arm64" in wrong.stderr
    )


def test_merged_keeps_every_platform_manifest_by_digest() -> None:
    arm = Manifest(b'{"schemaVersion":2}', "application/vnd.oci.image.manifest.v1+json", "sha256:arm")
    amd_index = {"manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:amd", "size": 9,
         "platform": {"os": "linux", "architecture": "amd64"}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:att", "size": 7,
         "platform": {"os": "unknown", "architecture": "unknown"}},
    ]}  # fmt: skip
    oci_index = "application/vnd.oci.image.index.v1+json"
    amd = Manifest(json.dumps(amd_index).encode(), oci_index, "sha256:amdindex")
    whole = merging.merged([("linux/amd64", amd), ("linux/arm/v7", arm)])
    index = json.loads(whole.body)
    assert (whole.media_type, index["schemaVersion"], index["mediaType"]) == (oci_index, 2, oci_index)
    assert whole.digest == "sha256:" + hashlib.sha256(whole.body).hexdigest()
    assert [m["digest"] for m in index["manifests"]] == ["sha256:amd", "sha256:att", "sha256:arm"]
    assert index["manifests"][2] == {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                     "digest": "sha256:arm", "size": len(arm.body),
                                     "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}}  # fmt: skip


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
    gate = mab(same.path, lab.env, "--all", "--publish")
    assert gate.returncode == 0, gate.stdout + gate.stderr
    for name in IMAGES:
        jobs_tags, hook_tags = lab.tags(f"{by_jobs}/{name}"), lab.tags(f"{by_hook}/{name}")
        assert (jobs_tags, hook_tags) == ({repo.head()[:7], "latest"}, {same.head()[:7], "latest"})
        assert lab.platforms(f"{by_jobs}/{name}:latest") == lab.platforms(f"{by_hook}/{name}:latest")
        # The input-digest tag (the proof `verify` asks for) names the whole manifest list.
        staging = f"{by_jobs}/mab-staging/{name}"
        (whole,) = [t for t in lab.tags(staging) if t.count("-") == 1]
        assert lab.manifest(f"{staging}:{whole}") == lab.manifest(f"{by_jobs}/{name}:latest")
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
        in published.stderr
    )
    assert lab.pushed(registry) == set()
    for name in IMAGES:  # not even the input-digest tag of the images that built
        assert not [t for t in lab.tags(f"{registry}/mab-staging/{name}") if t.count("-") == 1]
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


# --- the documented workflow (sample-repo/.github/workflows/images.yml), run as GitHub would ---

WORKFLOW = ROOT / "sample-repo" / ".github" / "workflows" / "images.yml"
_EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def evaluate(expression: str, context: Mapping[str, object]) -> str:
    """The few GitHub expressions the workflow's conditions use: dotted look-ups, `==`/`!=`
    with a quoted literal, `&&`, `||`, `always()`. Anything else fails the test: the
    workflow's conditions must stay this simple."""
    if "||" in expression:
        return str(any(evaluate(part, context) == "true" for part in expression.split("||"))).lower()
    if "&&" in expression:
        return str(all(evaluate(part, context) == "true" for part in expression.split("&&"))).lower()
    if expression.strip() == "always()":
        return "true"
    if match := re.fullmatch(r"\s*([\w.-]+)\s*(==|!=)\s*'([^']*)'\s*", expression):
        equal = evaluate(match.group(1), context) == match.group(3)
        return str(equal if match.group(2) == "==" else not equal).lower()
    assert re.fullmatch(r"\s*[\w.-]+\s*", expression), f"an expression the test cannot read: {expression}"
    value: object = context
    for part in expression.strip().split("."):
        assert isinstance(value, Mapping), expression
        value = value.get(part, "")
    return value if isinstance(value, str) else json.dumps(value)


def substitute(text: str, context: Mapping[str, object]) -> str:
    return _EXPRESSION.sub(lambda m: evaluate(m.group(1), context), text)


class Step(dict[str, object]):
    """A step as the `steps` context shows it: `outcome` and `outputs`; and its log."""

    def __init__(self, outcome: str, outputs: dict[str, str], log: str) -> None:
        super().__init__(outcome=outcome, outputs=outputs)
        self.log = log


class Workflow:
    """The jobs of the workflow file; its steps with an id run in bash, in the repository, with
    GitHub's contexts and `$GITHUB_OUTPUT`."""

    def __init__(self, repo: Repo, env: Mapping[str, str], tmp_path: Path) -> None:
        self.data = yaml.safe_load(WORKFLOW.read_text())
        self.repo, self.tmp = repo, tmp_path
        bin_dir = str(Path(sys.executable).parent)  # where pip put `mab-hook`
        self.env = {**env, "PATH": f"{bin_dir}:{env.get('PATH', '')}"}

    def job_runs(self, job: str, context: Mapping[str, object]) -> bool:
        """As GitHub decides: without `always()`, a job runs only when every job it needs
        succeeded; then its `if`."""
        spec = self.data["jobs"][job]
        condition = spec.get("if")
        needs = [spec["needs"]] if isinstance(spec.get("needs"), str) else spec.get("needs", [])
        results = context.get("needs", {})
        assert isinstance(results, Mapping)
        if "always()" not in str(condition) and any(
            results.get(n, {}).get("result") != "success" for n in needs
        ):
            return False
        return condition is None or evaluate(condition, context) == "true"

    def run(self, job: str, context: Mapping[str, object]) -> dict[str, Step]:
        """Every step with an id: its outcome and outputs (`steps.<id>` of the job's context)."""
        steps: dict[str, Step] = {}
        for step in self.data["jobs"][job]["steps"]:
            if "id" not in step:  # checkout, pip install, docker login: the test has done them
                continue
            here = {**context, "steps": steps}
            out = self.tmp / f"output-{uuid.uuid4().hex}"
            out.write_text("")
            env = {**self.env, "GITHUB_OUTPUT": str(out),
                   **{k: substitute(str(v), here) for k, v in step.get("env", {}).items()}}  # fmt: skip
            proc = subprocess.run(("bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]),
                                  cwd=self.repo.path, env=env, capture_output=True, text=True, check=False)  # fmt: skip
            outcome = "success" if proc.returncode == 0 else "failure"
            assert outcome == "success" or step.get("continue-on-error"), proc.stdout + proc.stderr
            outputs = dict(line.partition("=")[::2] for line in out.read_text().splitlines())
            steps[step["id"]] = Step(outcome, outputs, proc.stdout + proc.stderr)
        return steps

    def outputs(self, job: str, context: Mapping[str, object]) -> dict[str, str]:
        declared = self.data["jobs"][job].get("outputs", {})
        return {name: substitute(value, context) for name, value in declared.items()}

    def on_push(self, before: str, after: str, ref: str = "refs/heads/main") -> Ran:
        """The whole run for a push of `before..after` to `ref`: what each job did."""
        context: dict[str, object] = {
            "github": {"sha": after, "ref": ref, "event_name": "push", "event": {"before": before}}
        }
        assert self.job_runs("plan", context) and not self.job_runs("verify", context)
        plan_steps = self.run("plan", context)
        plan = self.outputs("plan", {**context, "steps": plan_steps})
        needs: dict[str, dict[str, object]] = {"plan": {"outputs": plan, "result": "success"}}
        context["needs"] = needs
        ran = Ran(plan, plan_steps["verify"].log)
        needs["build"] = {"result": "skipped"}
        if self.job_runs("build", context):
            entries = json.loads(plan["matrix"])["include"]
            ran = ran._replace(build={(e["image"], e["platform"]): self.run("build", {**context, "matrix": e})["build"].log
                                      for e in entries})  # fmt: skip
            needs["build"] = {"result": "success"}  # a failing job fails the test (Workflow.run)
        if self.job_runs("publish", context):
            ran = ran._replace(publish=self.run("publish", context)["publish"].log)
        return ran

    def on_pull_request(self, base: str, head: str) -> Step:
        """A pull request: only the verify job runs."""
        context: dict[str, object] = {"github": {"event_name": "pull_request", "event": {
            "pull_request": {"base": {"sha": base}, "head": {"sha": head}}}},
            "needs": {"plan": {"result": "skipped", "outputs": {}}, "build": {"result": "skipped"}}}  # fmt: skip
        assert [job for job in self.data["jobs"] if self.job_runs(job, context)] == ["verify"]
        return self.run("verify", context)["pr"]


class Ran(NamedTuple):
    plan: dict[str, str]  # the plan job's outputs
    verify: str  # what `mab-hook verify` said
    build: dict[tuple[str, str], str] | None = None  # (image, platform) -> the job's log; None: skipped
    publish: str | None = None  # the publish job's log; None: skipped


def test_the_sample_workflow_passes_the_workflow_schema_and_shellcheck(tmp_path: Path) -> None:
    """Linted as GitHub and a careful reviewer would: the schema GitHub's workflows follow
    (check-jsonschema's vendored copy), and every `run:` step through shellcheck as the bash
    GitHub runs it (expressions are filled in before the shell sees the script)."""
    bin_dir = Path(sys.executable).parent
    schema = subprocess.run((str(bin_dir / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows",
                             str(WORKFLOW)), capture_output=True, text=True, check=False)  # fmt: skip
    assert schema.returncode == 0, schema.stdout + schema.stderr
    data = yaml.safe_load(WORKFLOW.read_text())
    scripts = [step["run"] for job in data["jobs"].values() for step in job["steps"] if "run" in step]
    assert len(scripts) >= 8
    for number, script in enumerate(scripts):
        path = tmp_path / f"step-{number}.sh"
        path.write_text("#!/usr/bin/env bash\nset -eo pipefail\n" + _EXPRESSION.sub("x", script))
        checked = subprocess.run((str(bin_dir / "shellcheck"), "--severity=style", str(path)), capture_output=True,
                                 text=True, check=False)  # fmt: skip
        assert checked.returncode == 0, script + checked.stdout
    # Every job is bounded in time, and the workflow reads the repository only.
    assert data["permissions"] == {"contents": "read"} and "concurrency" in data
    assert all("timeout-minutes" in job for job in data["jobs"].values())


@pytest.mark.lab
def test_the_documented_workflow_builds_only_what_was_not_gated(
    hooked: Hooked, lab: Lab, tmp_path: Path
) -> None:
    workflow = Workflow(hooked.repo, hooked.env, tmp_path)
    api, worker = f"{hooked.registry}/api", f"{hooked.registry}/worker"
    # A gated push: CI verifies it in the plan job and builds nothing.
    before = hooked.remote_head()
    sha = hooked.repo.commit({"services/api/app.txt": "api v2\n"})
    assert hooked.push("main").code == 0
    tags = lab.tags(api)
    gated = workflow.on_push(before, sha)
    assert gated.plan["gated"] == "true", gated
    assert gated.build is None
    assert f"api: published {api}:{sha[:7]}, {api}:latest (built from these inputs before)" in str(
        gated.publish
    )
    assert lab.tags(api) == tags  # what the hook's publisher put: tagged again, moved nowhere
    # A push that skipped the gate: the fan-out builds exactly what it affects, and publishes it.
    before = sha
    sha = hooked.repo.commit(
        {"services/worker/Dockerfile": f"FROM {hooked.registry}/base\nRUN echo w2 > /w\n"}
    )
    assert hooked.push("--no-verify", "main").code == 0
    skipped = workflow.on_push(before, sha)
    assert skipped.plan["gated"] == "false"
    assert re.search(r"missing +worker", skipped.verify), skipped.verify
    assert json.loads(skipped.plan["affected"]) == ["worker"]
    assert skipped.build is not None
    assert set(skipped.build) == {("worker", "linux/amd64"), ("worker", "linux/arm64")}
    published = f"worker: published {worker}:{sha[:7]}, {worker}:latest (merged 2 platforms)"
    assert published in str(skipped.publish), skipped.publish
    assert lab.platforms(f"{worker}:{sha[:7]}") == {"linux/amd64", "linux/arm64"}
    # api did not change: it gets the commit's tag, on the very image it was
    assert (
        lab.manifest(f"{api}:{sha[:7]}")
        == lab.manifest(f"{api}:{before[:7]}")
        == lab.manifest(f"{api}:latest")
    )
    # The next run of the same push finds it built: nothing more.
    again = workflow.on_push(before, sha)
    assert again.plan["gated"] == "true" and again.build is None


@pytest.mark.lab
def test_the_documented_workflow_builds_everything_for_a_new_branch(
    hooked_unbuilt: Hooked, lab: Lab, tmp_path: Path
) -> None:
    hooked = hooked_unbuilt
    workflow = Workflow(hooked.repo, hooked.env, tmp_path)
    ran = workflow.on_push("0" * 40, hooked.repo.head())  # what GitHub sends for a new branch
    assert ran.plan["from"] == ""  # every image
    assert json.loads(ran.plan["affected"]) == list(IMAGES)
    assert ran.build is not None and len(ran.build) == 3 + 3 + 2, ran
    assert lab.pushed(hooked.registry) == set(IMAGES)


@pytest.mark.lab
def test_the_documented_workflow_tags_a_merge_built_on_its_branch(
    hooked: Hooked, lab: Lab, tmp_path: Path
) -> None:
    """A pull request's branch goes through the gate (staged, nothing public); merged in the web
    UI (no hook), the merge commit has the branch's inputs: CI verifies it, builds nothing, and
    tags it."""
    workflow = Workflow(hooked.repo, hooked.env, tmp_path)
    repo, api = hooked.repo, f"{hooked.registry}/api"
    before = hooked.remote_head()
    repo.git("checkout", "-q", "-b", "feature")
    head = repo.commit({"services/api/app.txt": "api v2\n"})
    assert hooked.push("feature").code == 0
    assert workflow.on_pull_request(before, head)["outcome"] == "success"
    repo.git("checkout", "-q", "main")
    repo.git("merge", "-q", "--no-ff", "-m", "Merge pull request #1", "feature")
    merge = repo.head()
    assert hooked.push("--no-verify", "main").code == 0  # the web UI merged it: no hook ran
    ran = workflow.on_push(before, merge)
    assert ran.plan["gated"] == "true" and ran.build is None, ran
    assert f"api: published {api}:{merge[:7]}, {api}:latest" in str(ran.publish), ran.publish
    assert lab.manifest(f"{api}:{merge[:7]}") == lab.manifest(f"{api}:latest")
    report = lab.docker("run", "--rm", "--platform", "linux/arm64", f"{api}:{merge[:7]}", "cat", "/report")
    assert report.stdout == "base v1 aarch64\napi v2\n"


@pytest.mark.lab
def test_the_documented_workflow_publishes_a_release_tag_on_every_image(
    hooked: Hooked, lab: Lab, tmp_path: Path
) -> None:
    config = hooked.repo.path / "pyproject.toml"
    config.write_text(config.read_text().replace('"latest"]', '"latest", "{branch}"]'))
    sha = hooked.repo.commit({})
    hooked.repo.git("tag", "v3.0.0")
    assert hooked.push("--no-verify", "main", "v3.0.0").code == 0
    workflow = Workflow(hooked.repo, hooked.env, tmp_path)
    ran = workflow.on_push("0" * 40, sha, ref="refs/tags/v3.0.0")
    assert ran.plan["gated"] == "true", ran  # the seed uploaded every image of these inputs
    for name in IMAGES:  # the release, on every image; latest is the default branch's alone
        assert lab.public_tags(f"{hooked.registry}/{name}") == {sha[:7], "v3.0.0"}, name
