"""The CI fan-out as data: the matrix in --json, and $GITHUB_OUTPUT as a runner reads it."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.conftest import PLATFORMS, Lab, Repo, mab, project_files

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


def project_files_without_lab(registry: str) -> dict[str, str]:
    """The lab's project, planned only: its base image is never pulled."""
    return project_files(Lab({}, "", "busybox"), registry)


def test_a_matrix_github_cannot_run_is_said_and_an_unwritable_output_is_an_error(
    repo: Repo, tmp_path: Path
) -> None:
    tables = "".join(f'[tool.multiarch.images.i{n}]\ncontext = "i{n}"\n' for n in range(90))
    files = {f"i{n}/Dockerfile": "FROM busybox\n" for n in range(90)}
    repo.commit(
        {"pyproject.toml": f"[tool.multiarch]\nplatforms = {json.dumps(list(PLATFORMS))}\n" + tables, **files}
    )
    out = tmp_path / "github-output"
    big = mab(repo.path, {**os.environ, "GITHUB_OUTPUT": str(out)}, "--all", "--dry-run", "--json")
    assert big.returncode == 0, big.stderr
    assert "the CI matrix has 270 jobs, more than the 256 GitHub Actions runs from one matrix" in big.stderr
    assert len(github_output(out)["matrix"]["include"]) == 270  # type: ignore[index]
    denied = mab(
        repo.path, {**os.environ, "GITHUB_OUTPUT": str(tmp_path)}, "--all", "--dry-run"
    )  # a directory
    assert denied.returncode == 1 and "Traceback" not in denied.stdout + denied.stderr
    assert f"cannot write the outputs to $GITHUB_OUTPUT ({tmp_path})" in denied.stderr
