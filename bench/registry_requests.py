"""Benchmark: the registry requests of one push, mab-hook's and the engine's, and the tokens.

    python bench/registry_requests.py [--rounds 3] [--baseline REV]      (needs the lab: bash lab/up)

A registry of its own (docker-registry, access log on) behind a token service, as an intranet's
Harbor or GitLab runs one (tests/tokens.py: a robot account, tokens scoped per repository). A
repository of four images (FROM the lab's busybox, two platforms, push = true); each round
changes one image and runs `mab-hook --all --publish`: one build, three skipped, four published.
The registry's access log tells mab-hook's requests (Python's user agent) from the engine's
(buildx's uploads); the token service counts the tokens it issued. With --baseline, mab-hook as
it was at REV runs the same pushes in turns: its requests per push should not grow.
"""

from __future__ import annotations

import argparse
import base64
import json
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from common import ROOT, WORK, as_installed, fresh, git, lab_env, mab
from real_pushes import baseline_command

sys.path.insert(0, str(ROOT))
from tests.tokens import TokenService, registry_auth, token_service

ROBOT, SECRET = "robot$team+ci", "s3cret-robot"
IMAGES = ("api", "worker", "web", "jobs")


class Counted(NamedTuple):
    ours: Counter[str]  # mab-hook's requests, by kind
    engine: int  # buildx's (uploads, mounts)
    tokens: int  # tokens the service issued during the push


@contextmanager
def registry(directory: Path) -> Iterator[tuple[str, Path, TokenService]]:
    """docker-registry on a free loopback port behind the token service; its JSON access log."""
    with token_service(directory / "tokens", {ROBOT: SECRET}, lambda user, repo: ("pull", "push")) as service:
        port = _free_port()
        log = directory / "access.log"
        config = directory / "config.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: info\n  formatter: json\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {directory / 'data'}\n"
            f"  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{registry_auth(service)}"
        )
        with log.open("wb") as out:
            process = subprocess.Popen(("docker-registry", "serve", str(config)), stdout=out, stderr=out)
        try:
            time.sleep(1.0)
            yield f"127.0.0.1:{port}", log, service
        finally:
            process.terminate()
            process.wait(timeout=30)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def requests_since(log: Path, offset: int) -> tuple[Counter[str], int]:
    """mab-hook's requests (by method and kind: manifests, blobs, tags...) and the engine's,
    from the registry's log after `offset` bytes: one "response completed" line each."""
    ours: Counter[str] = Counter()
    engine = 0
    with log.open("rb") as read:
        read.seek(offset)
        for line in read:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("msg") != "response completed":
                continue
            agent = str(entry.get("http.request.useragent", ""))
            if agent.startswith("Python-urllib"):
                uri = str(entry.get("http.request.uri", ""))
                kind = next((k for k in ("manifests", "blobs/uploads", "blobs", "tags") if f"/{k}/" in uri or
                             uri.endswith(f"/{k}/list")), "base")  # fmt: skip
                ours[f"{entry.get('http.request.method')} {kind}"] += 1
            else:
                engine += 1
    return ours, engine


def project(path: Path, address: str, base: str, env: dict[str, str]) -> None:
    fresh(path)
    git(path, "init", "-q", "-b", "main", env=env)
    lines = [f'[tool.multiarch]\nplatforms = ["linux/amd64", "linux/arm64"]\nregistry = "{address}/team"\n'
             'push = true\n']  # fmt: skip
    for name in IMAGES:
        lines.append(f'[tool.multiarch.images.{name}]\ncontext = "{name}"\n')
        (path / name).mkdir()
        (path / name / "Dockerfile").write_text(f"FROM {base}\nCOPY salt /salt\nRUN cat /salt > /out\n")
        (path / name / "salt").write_text(uuid.uuid4().hex)
    (path / "pyproject.toml").write_text("".join(lines))
    git(path, "add", "-A", env=env)
    git(path, "commit", "-qm", "four images", env=env)


def push(path: Path, env: dict[str, str], cmd: list[str], log: Path, service: TokenService) -> Counted:
    """One image changed, committed, and the gate run on every image."""
    (path / "api" / "salt").write_text(uuid.uuid4().hex)
    git(path, "commit", "-qam", "api changes", env=env)
    offset, issued = log.stat().st_size, len(service.issued)
    done = subprocess.run([*cmd, "--all", "--publish"], cwd=path, env=env, capture_output=True, text=True,
                          check=False)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"the push failed:\n{done.stdout}{done.stderr}")
    time.sleep(0.5)  # the registry's last log lines
    ours, engine = requests_since(log, offset)
    return Counted(ours, engine, len(service.issued) - issued)


def docker_config(directory: Path, env: dict[str, str], address: str) -> dict[str, str]:
    directory.mkdir(parents=True, exist_ok=True)
    plugins = Path(env["DOCKER_CONFIG"]) / "cli-plugins"
    (directory / "cli-plugins").symlink_to(plugins)
    auth = base64.b64encode(f"{ROBOT}:{SECRET}".encode()).decode()
    (directory / "config.json").write_text(json.dumps({"auths": {address: {"auth": auth}}}))
    return {**env, "DOCKER_CONFIG": str(directory)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", metavar="REV", help="also count mab-hook as it was at REV, in turns")
    args = parser.parse_args()
    baseline = baseline_command(args.baseline) if args.baseline else None
    as_installed()
    env = lab_env()
    base = f"{env['MAB_LAB_REGISTRY']}/{env['MAB_LAB_BASE_IMAGE']}"
    work = fresh(WORK / "registry-requests")
    sides = {"now": mab()} | ({f"at {args.baseline}": baseline} if baseline else {})
    found: dict[str, list[Counted]] = {name: [] for name in sides}
    with registry(work / "registry") as (address, log, service):
        env = docker_config(work / "docker", env, address)
        project(work / "repo", address, base, env)
        push(work / "repo", env, mab(), log, service)  # the first push uploads every image: not counted
        for _ in range(args.rounds):
            for name, cmd in sides.items():
                found[name].append(push(work / "repo", env, cmd, log, service))
    print("### Registry requests of one push (4 images, 1 changed, 2 platforms, a token registry)\n")
    print("| mab-hook | its requests | by kind (median round) | the engine's | tokens issued |")
    print("| --- | --- | --- | --- | --- |")
    for name, counted in found.items():
        totals = [sum(c.ours.values()) for c in counted]
        middle = counted[totals.index(sorted(totals)[len(totals) // 2])]
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(middle.ours.items()))
        print(f"| {name} | {statistics.median(totals):.0f} ({', '.join(map(str, totals))}) | {kinds} | "
              f"{statistics.median(c.engine for c in counted):.0f} | "
              f"{statistics.median(c.tokens for c in counted):.0f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
