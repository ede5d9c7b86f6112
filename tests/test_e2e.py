"""End to end: a real `git push` through the hook as a user installs it, against the real lab."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import (
    PLATFORMS,
    Hooked,
    Lab,
    Pushed,
    Repo,
    mab,
    project_files,
    published,
    published_since,
)

pytestmark = pytest.mark.lab


def test_push_builds_only_the_affected_image_for_every_platform(hooked: Hooked, lab: Lab) -> None:
    sha = hooked.repo.commit({"services/api/app.txt": "api v2\n"})
    pushed = hooked.push("main")
    assert pushed.code == 0, pushed.output
    assert pushed.results() == {"api": "built"}  # and staged: public once the remote took the push
    assert "publish: published" in pushed.output
    assert hooked.remote_head() == sha
    # Every image of the commit gets its tags; the unchanged ones are the images they were.
    assert all(sha[:7] in lab.public_tags(f"{hooked.registry}/{name}") for name in ("base", "api", "worker"))
    for tag in (sha[:7], "latest"):
        assert lab.platforms(f"{hooked.registry}/api:{tag}") == set(PLATFORMS)
    report = lab.docker(
        "run", "--rm", "--platform", "linux/arm/v7", f"{hooked.registry}/api:{sha[:7]}", "cat", "/report"
    ).stdout
    assert report == "base v1 armv7l\napi v2\n"
    # What the push left under .git/mab-hook (buildx's metadata file too) is the pusher's only.
    left = hooked.repo.path / ".git" / "mab-hook"
    modes = {str(p.relative_to(left)): p.stat().st_mode & 0o777 for p in left.rglob("*")}
    assert any(name.endswith(".metadata.json") for name in modes)
    assert {name: mode for name, mode in modes.items() if mode not in (0o600, 0o700)} == {}


def test_a_build_failing_on_one_platform_rejects_the_push_and_pushes_nothing(
    hooked: Hooked, lab: Lab
) -> None:
    before = hooked.remote_head()
    hooked.repo.commit(
        {
            "services/api/app.txt": "api v3\n",
            "services/worker/Dockerfile": f'FROM {hooked.registry}/base\nRUN [ "$(uname -m)" != aarch64 ]\n',
        }
    )
    pushed = hooked.push("main")
    assert pushed.code != 0
    # All images build in one invocation: the failure stops the others (they are cached for later),
    # unless one was done before it (a race the build cache often wins: then it is built, and uploaded
    # under its staging tag only).
    results = pushed.results()
    assert results["worker"] == "failed" and results["api"] in ("not built", "built"), pushed.output
    if results["api"] == "not built":
        assert "stopped: another image of the push failed" in pushed.output, pushed.output
    assert "build failed on linux/arm64" in pushed.output, pushed.output
    assert "the push is blocked and no tag was published" in pushed.output
    assert "error: failed to push some refs" in pushed.output
    assert hooked.remote_head() == before
    assert lab.pushed(hooked.registry) == set()


def test_a_docs_only_push_builds_nothing(hooked: Hooked, lab: Lab) -> None:
    sha = hooked.repo.commit({"docs/index.md": "# More docs\n"})
    pushed = hooked.push("main")
    assert pushed.code == 0, pushed.output
    assert "no image is affected" in pushed.output
    assert pushed.results() == {}
    assert hooked.remote_head() == sha
    # Nothing built, but the commit is the team's newest: every image gets its tags, on the
    # images the seed uploaded.
    assert "publish: published" in pushed.output
    for name in ("base", "api", "worker"):
        assert lab.public_tags(f"{hooked.registry}/{name}") == {sha[:7], "latest"}, name


def test_a_base_change_rebuilds_dependants_on_the_new_base(hooked: Hooked, lab: Lab) -> None:
    files = project_files(lab, hooked.registry)
    sha = hooked.repo.commit({"base/Dockerfile": files["base/Dockerfile"].replace("v1", "v2")})
    pushed = hooked.push("main")
    assert pushed.code == 0, pushed.output
    assert list(pushed.results()) == ["base", "api", "worker"]  # bases first
    assert set(pushed.results().values()) == {"built"}
    for platform, arch in zip(PLATFORMS, ("x86_64", "aarch64", "armv7l"), strict=True):
        report = lab.docker(
            "run", "--rm", "--platform", platform, f"{hooked.registry}/api:{sha[:7]}", "cat", "/report"
        ).stdout
        assert report == f"base v2 {arch}\napi v1\n"
    assert lab.platforms(f"{hooked.registry}/worker:{sha[:7]}") == {"linux/amd64", "linux/arm64"}
    for platform, arch in (("linux/amd64", "x86_64"), ("linux/arm64", "aarch64")):
        worker = lab.docker("run", "--rm", "--platform", platform, f"{hooked.registry}/worker:{sha[:7]}",
                            "cat", "/worker").stdout  # fmt: skip
        assert worker == f"base v2 {arch}\n"


def test_the_pushed_commit_is_built_not_the_work_tree(hooked: Hooked, lab: Lab) -> None:
    sha = hooked.repo.commit({"services/api/app.txt": "committed\n"})
    hooked.repo.write({"services/api/app.txt": "uncommitted\n"})
    pushed = hooked.push("main")
    assert pushed.code == 0, pushed.output
    report = lab.docker("run", "--rm", f"{hooked.registry}/api:{sha[:7]}", "cat", "/app.txt").stdout
    assert report == "committed\n"
    assert hooked.repo.git("worktree", "list").count("\n") == 0  # the temporary worktree is gone


def test_plain_git_hook_builds_every_ref_of_one_push(repo: Repo, lab: Lab, tmp_path: Path) -> None:
    """Installed as .git/hooks/pre-push itself (no pre-commit): every pushed ref is read from stdin."""
    registry = lab.namespace()
    files = project_files(lab, registry)
    files["pyproject.toml"] = files["pyproject.toml"].replace(
        "push = true\n", 'push = true\npublish-branches = ["one", "two"]\n'
    )
    repo.commit(files, "init")
    repo.git("push", "-q", "origin", "main")
    hook = repo.path / ".git" / "hooks" / "pre-push"
    hook.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m mab_hook "$@"\n')
    hook.chmod(0o755)
    repo.git("checkout", "-q", "-b", "one")
    one = repo.commit({"services/api/app.txt": "one\n"})
    repo.git("checkout", "-q", "-b", "two", "main")
    two = repo.commit({"services/worker/Dockerfile": f"FROM {registry}/base\nRUN echo two > /worker\n"})
    env = {**lab.env, "GIT_CONFIG_GLOBAL": str(tmp_path / "gitconfig")}
    pushed = git_push(repo, env, "one", "two")
    assert pushed.code == 0, pushed.output
    # `one` and `two` publish, as the config says; the base never went through the gate (the
    # repository was pushed without it): it is named, and moving tags stay where they were.
    assert "base: not tagged: the registry has no upload of it from these inputs" in pushed.output
    assert lab.platforms(f"{registry}/api:{one[:7]}") == set(PLATFORMS)
    assert lab.platforms(f"{registry}/worker:{two[:7]}") == {"linux/amd64", "linux/arm64"}
    assert lab.manifest(f"{registry}/base:{one[:7]}") is None  # unaffected base: never pushed


def test_interrupt_stops_the_build_and_leaves_nothing_behind(repo: Repo, lab: Lab, tmp_path: Path) -> None:
    registry = lab.namespace()
    files = project_files(lab, registry)
    files["services/api/Dockerfile"] = f"FROM {lab.busybox}\nRUN echo started && sleep 60\n"
    repo.commit(files, "init")
    env = {**lab.env, "GIT_CONFIG_GLOBAL": str(tmp_path / "gitconfig")}
    proc = subprocess.Popen(
        (sys.executable, "-m", "mab_hook", "--all", "-v"),
        cwd=repo.path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:  # wait until the slow RUN step really runs
        seen.append(line)
        if "started" in line and "#" in line:
            break
    proc.send_signal(signal.SIGINT)
    rest = proc.stdout.read()
    assert proc.wait(timeout=60) == 130, "".join(seen) + rest
    assert "interrupted: builds stopped, no tag was published" in rest
    bake = subprocess.run(("pgrep", "-f", f"{repo.path}/.git/mab-hook"), capture_output=True, check=False)
    assert bake.stdout == b""  # no buildx left running
    assert repo.git("worktree", "list").count("\n") == 0
    assert lab.pushed(registry) == set()


def test_under_pre_commit_progress_reaches_the_terminal_while_the_build_runs(
    hooked: Hooked, lab: Lab
) -> None:
    """pre-commit (colour on) gives the hook a pseudo-terminal and shows nothing of it until the
    hook ends; progress goes to the controlling terminal meanwhile, and it arrives while the
    build still runs. `script` gives the push a real terminal; every chunk of what reaches it is
    timed."""
    salt = uuid.uuid4().hex
    hooked.repo.commit({"services/api/Dockerfile": f"FROM {hooked.registry}/base:latest\nCOPY app.txt /\n"
                        f"RUN sleep 8 && echo {salt} > /slow\n"})  # fmt: skip
    started = time.monotonic()
    proc = subprocess.Popen(("script", "--quiet", "--return", "--command", "git push origin main", "/dev/null"),
                            cwd=hooked.repo.path, env=hooked.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    assert proc.stdout is not None
    chunks: list[tuple[float, str]] = []
    while chunk := os.read(proc.stdout.fileno(), 65536):
        chunks.append((time.monotonic() - started, chunk.decode(errors="replace")))
    assert proc.wait(timeout=60) == 0, "".join(text for _t, text in chunks)
    ended = time.monotonic() - started
    output = "".join(text for _t, text in chunks)
    step = re.compile(rf"api linux/arm64: \d/\d RUN sleep 8 && echo {salt}")
    first = next(at for at, _text in ((at, "".join(t for a, t in chunks if a <= at)) for at, _ in chunks)
                 if step.search(_text))  # fmt: skip
    assert ended - first > 5, f"the step showed at {first:.1f} s, the push ended at {ended:.1f} s"
    assert re.search(r"\x1b\[\d+F\x1b\[J", output)  # the status block was redrawn in place
    assert re.search(
        rf"api linux/arm64: \d/\d RUN sleep 8 && echo {salt} > /slow  \d+s \(building \d+s\)", output
    )
    # The plan is on the terminal before the build runs, not after pre-commit's verdict.
    plain = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", output)  # the plan's image names are in bold
    assert plain.index("1. api [") < step.search(plain).start(), plain  # type: ignore[union-attr]


def terminal_push(repo: Repo, env: dict[str, str]) -> tuple[int, str]:
    """`git push origin main` on a terminal of its own (`script`), and all that reached it."""
    done = subprocess.run(("script", "--quiet", "--return", "--command", "git push origin main", "/dev/null"),
                          cwd=repo.path, env=env, capture_output=True, check=False, timeout=300)  # fmt: skip
    return done.returncode, done.stdout.decode(errors="replace")


def test_under_pre_commit_a_failure_is_shown_as_it_happens(hooked: Hooked, lab: Lab) -> None:
    """pre-commit shows the hook's summary only after its verdict: the failing step's own
    words reach the terminal first, as the build ends."""
    salt = uuid.uuid4().hex
    hooked.repo.commit({"services/api/Dockerfile": f"FROM {hooked.registry}/base:latest\nCOPY app.txt /\n"
                        f"RUN echo boom-{salt} && false\n"})  # fmt: skip
    code, output = terminal_push(hooked.repo, hooked.env)
    assert code != 0, output
    live = output.index("api failed:")
    assert f"boom-{salt}" in output[live : output.index("--- api:")], (
        output
    )  # the excerpt, before the summary
    assert "Failed" in output and "Passed" not in output, output  # pre-commit's verdict (coloured)


def plain_hook(repo: Repo, lab: Lab, tmp_path: Path, tags: str) -> tuple[str, dict[str, str]]:
    """A repository whose .git/hooks/pre-push is mab-hook itself (`mab-hook install`)."""
    registry = lab.namespace()
    files = project_files(lab, registry)
    files["pyproject.toml"] = files["pyproject.toml"].replace(
        'tags = ["{short_sha}", "latest"]', f"tags = {tags}"
    )
    repo.commit(files, "init")
    env = {**lab.env, "GIT_CONFIG_GLOBAL": str(tmp_path / "gitconfig")}
    installed = subprocess.run((sys.executable, "-m", "mab_hook", "install"), cwd=repo.path, env=env,
                               capture_output=True, text=True, check=False)  # fmt: skip
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return registry, env


def git_push(repo: Repo, env: dict[str, str], *refs: str) -> Pushed:
    before = {record.id for record in published(repo.path)}
    proc = subprocess.run(("git", "push", "origin", *refs), cwd=repo.path, env=env, capture_output=True, text=True,
                          check=False)  # fmt: skip
    return Pushed(proc.returncode, proc.stdout + proc.stderr + published_since(repo.path, before))


def test_every_pushed_ref_gets_its_tags_and_a_later_tag_comes_from_the_registry(
    repo: Repo, lab: Lab, tmp_path: Path
) -> None:
    registry, env = plain_hook(repo, lab, tmp_path, '["{short_sha}", "{branch}"]')
    assert git_push(repo, env, "main").code == 0  # new history: every image built and pushed
    first = repo.head()
    sha = repo.commit({"services/api/app.txt": "api v2\n"})
    repo.git("tag", "v1.4.0")
    pushed = git_push(repo, env, "main", "v1.4.0")
    assert pushed.code == 0, pushed.output
    assert lab.public_tags(f"{registry}/api") == {first[:7], sha[:7], "main", "v1.4.0"}
    assert lab.manifest(f"{registry}/api:v1.4.0") == lab.manifest(f"{registry}/api:{sha[:7]}")
    report = lab.docker(
        "run", "--rm", "--platform", "linux/arm/v7", f"{registry}/api:{sha[:7]}", "cat", "/report"
    )
    assert report.stdout == "base v1 armv7l\napi v2\n"
    assert "main: " in pushed.output and "v1.4.0: " in pushed.output  # the plan shows the tags per ref
    # A tag pushed later, on a commit already built: every image gets it, nothing is built.
    repo.git("tag", "v1.4.1")
    later = git_push(repo, env, "v1.4.1")
    assert later.code == 0, later.output
    assert later.results() == {"base": "skipped", "api": "skipped", "worker": "skipped"}, later.output
    for name in ("base", "api", "worker"):
        assert "v1.4.1" in lab.public_tags(f"{registry}/{name}")
    assert lab.manifest(f"{registry}/api:v1.4.1") == lab.manifest(
        f"{registry}/api:{sha[:7]}"
    )  # the very image


# --- images defined by compose and bake files ----------------------------------------------------


def compose_project(lab: Lab, registry: str) -> dict[str, str]:
    """Compose as real projects write it: a root context, a build arg from .env, the short
    `build: ./dir`, a service of a ready-made image."""
    return {
        "pyproject.toml": f'[tool.multiarch]\nplatforms = {list(PLATFORMS)!r}\nregistry = "{registry}"\npush = true\n'
                          'compose = "compose.yaml"\n'.replace("'", '"'),
        "compose.yaml": "services:\n  api:\n    build:\n      context: .\n      dockerfile: services/api/Dockerfile\n"
                        "      args: [VERSION]\n  worker:\n    build: ./worker\n  db:\n    image: postgres:16\n",
        ".env": "VERSION=1.0\n",
        "services/api/Dockerfile": f"FROM {lab.busybox}\nARG VERSION\nCOPY shared/lib.txt /\n"
                                   'RUN echo "$VERSION $(uname -m)" > /version\n',
        "shared/lib.txt": "lib\n",
        "worker/Dockerfile": f"FROM {lab.busybox}\nRUN uname -m > /arch\n",
    }  # fmt: skip


def test_a_compose_project_is_gated_as_compose_defines_it(repo: Repo, lab: Lab) -> None:
    registry = lab.namespace()
    repo.commit(compose_project(lab, registry))
    built = mab(repo.path, lab.env, "--all", "--publish")
    assert built.returncode == 0, built.stdout + built.stderr
    assert lab.pushed(registry, ("api", "worker", "db")) == {"api", "worker"}
    sha = repo.commit({".env": "VERSION=1.1\n"})  # a build arg changes in .env alone
    again = mab(repo.path, lab.env, "--from", "HEAD^", "--publish")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "because its definition in .env changed" in again.stdout
    assert sha[:7] in lab.public_tags(f"{registry}/api") and sha[:7] not in lab.public_tags(
        f"{registry}/worker"
    )
    version = lab.docker(
        "run", "--rm", "--platform", "linux/arm/v7", f"{registry}/api:{sha[:7]}", "cat", "/version"
    )
    assert version.stdout == "1.1 armv7l\n"
    # The same images as a bake definition, built by hand at the repository's root.
    exported = mab(repo.path, lab.env, "--from", "HEAD^", "--dry-run", "--bake")
    assert exported.returncode == 0, exported.stderr
    tag = f"{lab.namespace(local=True)}/api:{uuid.uuid4().hex[:8]}"  # removed with the session
    by_hand = subprocess.run(("docker", "buildx", "bake", "-f", "-", "--progress=plain", "--set", f"*.tags={tag}"),
                             input=exported.stdout, cwd=repo.path, env=lab.env, capture_output=True, text=True, check=False)  # fmt: skip
    assert by_hand.returncode == 0, by_hand.stdout + by_hand.stderr
    out = lab.docker("run", "--rm", "--platform", "linux/arm64", tag, "cat", "/version")
    assert out.stdout == "1.1 aarch64\n"


def test_services_sharing_one_build_are_built_once_and_published_under_every_name(
    repo: Repo, lab: Lab
) -> None:
    """getsentry/self-hosted's shape: one `build:` under many services through a YAML anchor."""
    registry, salt = lab.namespace(), uuid.uuid4().hex[:12]
    repo.commit({
        "pyproject.toml": f'[tool.multiarch]\nplatforms = ["linux/amd64", "linux/arm64"]\nregistry = "{registry}"\n'
                          'push = true\ncompose = "compose.yaml"\n',
        "compose.yaml": "x-sentry: &sentry\n  build: ./sentry\n  image: sentry-local\nservices:\n  web:\n    <<: *sentry\n"
                        "  worker:\n    <<: *sentry\n  cron:\n    <<: *sentry\n    command: cron\n"
                        "  cleanup:\n    build:\n      context: cleanup\n      args:\n        BASE: sentry-local\n",
        "sentry/Dockerfile": f"FROM {lab.busybox}\nRUN echo {salt} $(uname -m) > /sentry\n",
        "cleanup/Dockerfile": "ARG BASE\nFROM ${BASE}\nRUN cat /sentry > /cleanup\n",
    })  # fmt: skip
    built = mab(repo.path, lab.env, "--all", "--publish")
    assert built.returncode == 0, built.stdout + built.stderr
    assert "one build, also published as: web, worker" in built.stdout
    assert Pushed(0, built.stdout).results() == {"cron": "pushed", "cleanup": "pushed"}
    assert built.stdout.count(f"echo {salt}") <= 2  # one RUN per platform, not one per service
    sha = repo.head()[:7]
    digests = {name: lab.manifest(f"{registry}/{name}:{sha}") for name in ("cron", "web", "worker")}
    assert digests["cron"] is not None and digests["cron"] == digests["web"] == digests["worker"]
    out = lab.docker(
        "run", "--rm", "--platform", "linux/arm64", f"{registry}/cleanup:{sha}", "cat", "/cleanup"
    )
    assert out.stdout == f"{salt} aarch64\n"  # built on the in-repo build, by its compose image: name


def test_a_bake_target_context_is_built_for_its_users_and_never_published(repo: Repo, lab: Lab) -> None:
    registry = lab.namespace()
    repo.commit({
        "pyproject.toml": f'[tool.multiarch]\nplatforms = ["linux/amd64", "linux/arm64"]\nregistry = "{registry}"\n'
                          'push = true\nbake = "docker-bake.hcl"\n',
        "docker-bake.hcl": 'group "default" { targets = ["tool"] }\ntarget "tool" {\n  name = "tool-${v}"\n'
                           '  matrix = { v = ["lite", "full"] }\n  context = "tool"\n  args = { V = v }\n'
                           '  contexts = { base = "target:base" }\n}\ntarget "base" { context = "base" }\n',
        "base/Dockerfile": f"FROM {lab.busybox}\nCOPY base.txt /\n", "base/base.txt": "base v1\n",
        "tool/Dockerfile": 'FROM base\nARG V\nRUN echo "$V $(cat /base.txt) $(uname -m)" > /tool\n',
    })  # fmt: skip
    built = mab(repo.path, lab.env, "--all", "--publish")
    assert built.returncode == 0, built.stdout + built.stderr
    assert lab.pushed(registry, ("tool-lite", "tool-full", "base")) == {"tool-lite", "tool-full"}
    sha = repo.commit({"base/base.txt": "base v2\n"})
    again = mab(repo.path, lab.env, "--from", "HEAD^", "--publish")
    assert again.returncode == 0, again.stdout + again.stderr
    assert Pushed(0, again.stdout).results() == {"tool-lite": "pushed", "tool-full": "pushed"}
    tool = lab.docker(
        "run", "--rm", "--platform", "linux/arm64", f"{registry}/tool-full:{sha[:7]}", "cat", "/tool"
    )
    assert tool.stdout == "full base v2 aarch64\n"
    assert lab.tags(f"{registry}/base") == set()


def test_what_a_blocked_push_uploaded_is_reused_by_the_next_and_published_only_then(
    hooked: Hooked, lab: Lab
) -> None:
    """Uploads go under input-digest tags as images build; a push blocked by another image
    moves no public tag, and the next push reuses those uploads instead of building again."""
    salt = uuid.uuid4().hex
    hooked.repo.commit({
        "services/api/app.txt": "api v2\n",
        "services/worker/Dockerfile": f"FROM {hooked.registry}/base\nRUN sleep 6 && echo {salt} && false\n",
    })  # fmt: skip
    blocked = hooked.push("main")
    assert blocked.code != 0 and blocked.results() == {"api": "built", "worker": "failed"}, blocked.output
    assert (
        f"(uploaded to staging, which the next push reuses: {hooked.registry}/mab-staging/api:mab-"
        in blocked.output
    )
    assert lab.pushed(hooked.registry) == set()
    sha = hooked.repo.commit(
        {"services/worker/Dockerfile": f"FROM {hooked.registry}/base\nRUN echo {salt}\n"}
    )
    fixed = hooked.push("main")
    assert fixed.code == 0, fixed.output
    assert fixed.results() == {"api": "skipped", "worker": "built"}, fixed.output
    assert "already in the registry" in fixed.output
    assert {sha[:7], "latest"} <= lab.public_tags(f"{hooked.registry}/api")


def test_the_work_tree_as_it_is_is_built_and_nothing_is_published(repo: Repo, lab: Lab) -> None:
    """`--work-tree` while iterating: the uncommitted file is what the image holds; it goes to
    staging only, and nothing of the repository changes."""
    registry = lab.namespace()
    repo.commit({
        "pyproject.toml": f'[tool.multiarch]\nplatforms = ["linux/amd64", "linux/arm64"]\nregistry = "{registry}"\n'
                          'push = true\n[tool.multiarch.images.web]\ncontext = "web"\n',
        "web/Dockerfile": f"FROM {lab.busybox}\nCOPY app.txt /app.txt\n",
        "web/app.txt": "committed\n",
    })  # fmt: skip
    salt = uuid.uuid4().hex
    (repo.path / "web" / "app.txt").write_text(f"uncommitted {salt}\n")
    head, status = repo.head(), repo.git("status", "--porcelain")
    built = mab(repo.path, lab.env, "--work-tree")
    assert built.returncode == 0, built.stdout + built.stderr
    assert re.search(r"^  web\s+linux/amd64, linux/arm64\s+(built|pushed)\s", built.stdout, re.M), (
        built.stdout
    )
    assert lab.tags(f"{registry}/web") == set()  # nothing public
    (staged,) = lab.tags(f"{registry}/mab-staging/web")
    held = lab.docker("run", "--rm", "--platform", "linux/arm64", f"{registry}/mab-staging/web:{staged}",
                      "cat", "/app.txt")  # fmt: skip
    assert held.stdout == f"uncommitted {salt}\n"
    assert (repo.head(), repo.git("status", "--porcelain")) == (head, status)
    lab.docker("image", "rm", f"{registry}/mab-staging/web:{staged}", check=False)
