"""The second phase: public tags for what the remote accepted, once it has.

git has no post-push hook, so the pre-push gate starts this publisher in the background: it
waits for the `git push` that ran the gate to end, asks the remote (`git ls-remote`, one
request) which of the pushed refs now point where the push said, and tags only the images of
those refs. A refused push, a ref refused among others, a `--dry-run` push: nothing of theirs
is published. `mab-hook status` shows waiting and ended publishes; `mab-hook publish --pending`
runs the waiting ones again (after a publisher that could not reach the registry, say).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import platform as os_platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING

from mab_hook import pending, process, state
from mab_hook.errors import FatalError
from mab_hook.output import Printer
from mab_hook.pending import Record, ToTag
from mab_hook.registry import Insecure, Proof, Registry

if TYPE_CHECKING:
    import git

WAIT = 6 * 3600.0  # seconds a publisher waits for its push (a large pack over a slow link)
POLL = 0.02  # seconds between looks at the push process


def push_process(pid: int, env: Mapping[str, str]) -> int | None:
    """The `git` process above `pid` (the push that runs the hooks), or None: not under git."""
    for _level in range(8):
        found = _parent(pid, env)
        if found is None:
            return None
        pid, name = found
        if pid <= 1:
            return None
        if name == "git" or name.startswith("git."):  # git.exe on Windows
            return pid
    return None


def _parent(pid: int, env: Mapping[str, str]) -> tuple[int, str] | None:
    """(parent pid, parent's program name)."""
    stat = Path(f"/proc/{pid}/stat")
    try:
        text = stat.read_text()
    except OSError:
        asked = process.run(("ps", "-o", "ppid=", "-p", str(pid)), env=env, check=False, timeout=10)
        parent = asked.stdout.strip()
        if asked.returncode != 0 or not parent.isdigit():
            return None
        named = process.run(("ps", "-o", "comm=", "-p", parent), env=env, check=False, timeout=10)
        return int(parent), Path(named.stdout.strip()).name
    ppid = int(text.rsplit(")", 1)[1].split()[1])
    try:
        name = Path(f"/proc/{ppid}/comm").read_text().strip()
    except OSError:
        return None
    return ppid, name


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_for(pid: int, timeout: float = WAIT) -> bool:
    """Whether `pid` ended within `timeout`."""
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL)
    return True


def start(root: Path, record: Record, repo_dir: Path, env: Mapping[str, str], after: int) -> None:
    """The publisher, in the background: it outlives the hook and the push, and writes to this
    terminal (when there is one) and to its log, never to the hook's output, which pre-commit
    and git wait on."""
    command = (
        sys.executable,
        "-m",
        "mab_hook",
        "publish",
        "--pending",
        record.id,
        "--after",
        str(after),
        "-C",
        str(repo_dir),
    )
    with state.open_private(root / "publish" / f"{record.id}.log", "a") as log:
        process.detach(command, env=env, stdout=_terminal() or log, stderr=log)


def _terminal() -> IO[str] | None:
    """This process's terminal, for the publisher to speak after git returned; None without one."""
    try:
        fd = os.open("/dev/tty", os.O_WRONLY | getattr(os, "O_NOCTTY", 0))
    except OSError:
        return None
    return os.fdopen(fd, "w")


def accepted(remote: str, record: Record, repo_dir: Path, env: Mapping[str, str]) -> tuple[str, ...] | str:
    """The refs the remote now holds as pushed, or why the remote could not be asked."""
    wanted = [ref.full for ref in record.refs]
    asked = process.run(
        ("git", "ls-remote", "--", remote, *wanted), env=env, cwd=repo_dir, check=False, timeout=120
    )
    if asked.returncode != 0:
        return " ".join(process.tail_lines(asked.stderr + asked.stdout, 2)) or f"exit {asked.returncode}"
    holds = {}
    for line in asked.stdout.splitlines():
        sha, _tab, ref = line.partition("\t")
        holds[ref] = sha
    return tuple(ref.full for ref in record.refs if holds.get(ref.full) == ref.pushed)


def publish(record: Record, repo: git.Repo, env: Mapping[str, str], say: Callable[[str], None]) -> Record:
    """Tag what the remote accepted; the record, ended, with what was said."""
    said: list[str] = []

    def tell(line: str) -> None:
        said.append(line)
        say(line)

    answer = accepted(record.remote, record, Path(repo.working_tree_dir or repo.git_dir), env)
    if isinstance(answer, str):
        tell(
            f"could not ask {record.remote} what it holds ({answer}); nothing published: "
            "run `mab-hook publish --pending` once it answers"
        )
        return record._replace(state=pending.WAITING, said=(*record.said, *said))
    refused = [ref.full for ref in record.refs if ref.full not in answer]
    for full in refused:
        tell(
            f"{record.remote} does not hold {full} as pushed (refused, or not pushed): its tags stay where "
            "they were"
        )
    if not answer:
        return record._replace(state=pending.NOT_ACCEPTED, said=(*record.said, *said))
    registry = Registry(env, insecure=_insecure(record, env))
    wanted, missing = every_image(repo, [ref for ref in record.refs if ref.full in answer], registry, env)
    for name, why in missing:
        tell(f"{name}: not tagged: {why}, then `mab-hook publish --pending`")
    ok = tag_all(registry, wanted, tell, kinds=(False,))
    if ok and not missing:
        ok = (
            tag_all(registry, wanted, tell, kinds=(True,))
            if still_held(record, answer, repo, env, tell)
            else ok
        )
    elif ok:
        tell("moving tags left where they were: not every image is there")
    ended = pending.FAILED if not ok or missing else pending.PARTLY if refused else pending.PUBLISHED
    return record._replace(state=ended, said=(*record.said, *said))


def _insecure(record: Record, env: Mapping[str, str]) -> Insecure:
    """The registries the engine speaks plain HTTP to: as the gate found them, or, when the push
    built nothing (and the gate never asked the engine), as `docker info` says now; none when
    docker does not answer (then every registry is spoken to over TLS)."""
    if record.insecure is not None:
        return record.insecure
    from mab_hook import readiness  # noqa: PLC0415 - only for a push that built nothing
    from mab_hook.readiness import engine  # noqa: PLC0415

    return engine.insecure_registries(readiness.local_host(env, os_platform.machine()))


def still_held(
    record: Record, answer: Sequence[str], repo: git.Repo, env: Mapping[str, str], tell: Callable[[str], None]
) -> bool:
    """Whether the remote still holds the accepted refs as pushed, just before the moving
    tags move: a newer push of the same ref has moved them on, and its publisher moves them."""
    again = accepted(record.remote, record, Path(repo.working_tree_dir or repo.git_dir), env)
    moved = [full for full in answer if isinstance(again, str) or full not in again]
    if moved:
        tell(
            f"{record.remote} no longer holds {', '.join(moved)} as pushed (a newer push moved it on): "
            "the moving tags are left to that push"
        )
    return not moved


def every_image(
    repo: git.Repo, refs: Sequence[pending.PushedRef], registry: Registry, env: Mapping[str, str]
) -> tuple[list[ToTag], list[tuple[str, str]]]:
    """Every image of each accepted commit, rebuilt or not, with the tags its refs give it
    (the publishing policy's), and where it was uploaded from these inputs; and the images
    the registry has no trusted upload of (name, why)."""
    from mab_hook import changes, gitobjects, pipeline, planning, platforms  # noqa: PLC0415 - the publisher's process only

    by_commit: dict[str, list[changes.Ref]] = {}
    for ref in refs:
        name = changes.ref_name(ref.full)
        by_commit.setdefault(ref.commit, []).append(
            changes.Ref(name, full=ref.full, pushed=ref.pushed, default=ref.default)
        )
    known = gitobjects.known_commits(repo)
    wanted, missing = [], []
    for sha, pushed in by_commit.items():
        commit = changes.Commit(sha, tuple(pushed), None, "publish")
        plan = planning.plan_at(
            repo, commit, env=env, build_platform=platforms.native(os_platform.machine()), digests=True
        )
        for planned in plan.affected if plan.config.push else ():
            if not planned.tags:
                continue
            staged = pipeline.digest_reference(plan, planned)
            proof = registry.proof(staged, planned.input_digest, known)
            if proof.trusted:
                pinned = pipeline.pinned(staged, proof.manifest)  # what was proven, whatever moves
                wanted.append(ToTag(planned.image.name, pinned, planned.tags, planned.moving))
            else:
                missing.append((planned.image.name, _untrusted(staged, proof)))
    return wanted, missing


def _untrusted(staged: str, proof: Proof) -> str:
    """Why an image is not tagged, and what to do first."""
    if proof.unread:
        return f"could not read {staged} ({proof.unread}); see `mab-hook doctor`"
    why = f"the registry has no upload of it from these inputs ({staged}"
    return f"{why}{': ' + proof.detail if proof.found else ''}); build it (`mab-hook --all --publish`)"


def tag_all(
    registry: Registry,
    wanted: Sequence[ToTag],
    tell: Callable[[str], None],
    *,
    kinds: Sequence[bool] = (False, True),
) -> bool:
    """Tags that name a commit on every image first; the moving ones (latest, a branch's) only
    once all of those landed, so a refusal leaves no moving tag on what others lack. `kinds`:
    which of the two (False: fixed, True: moving)."""
    for kind in kinds:
        work = [(image, [t for t in image.tags if (t in image.moving) == kind]) for image in wanted]
        work = [(image, tags) for image, tags in work if tags]
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            done = list(
                pool.map(lambda item: (item[0], item[1], registry.tag(item[0].staged, item[1])), work)
            )
        failed = False
        for image, tags, tagged in done:
            if tagged.ok:
                tell(f"{image.name}: published {', '.join(tags)}")
                continue
            failed = True
            left = [t for t in tags if t not in tagged.published]
            tell(f"{image.name}: tagging failed ({tagged.detail}); not tagged: {', '.join(left)}")
        if failed:
            tell("moving tags left where they were; run `mab-hook publish --pending` to finish")
            return False
    return True


# --- mab-hook publish --pending, mab-hook status ----------------------------------------------


def run_pending(
    repo: git.Repo, env: Mapping[str, str], printer: Printer, *, chosen: str = "", after: int | None = None
) -> int:
    """The waiting publishes (or the one `chosen`) run now; `after`: once that process (the
    push) ended."""
    if after is not None and not wait_for(after, WAIT):
        said = f"error: the push (process {after}) did not end in {WAIT / 3600:g} h: nothing published"
        _speaker(printer)(said)
        return 1
    root = state.root(repo)
    say = _speaker(printer)
    code = 0
    # Publishers take turns, in the order they get here (pushes of the same ref come one after
    # the other): the newer push's moving tags move last.
    with state.lock(pending.directory(root), lambda text: None):
        again = (pending.WAITING, pending.FAILED)
        records = [
            (path, r) for path, r in pending.every(root) if (r.id == chosen if chosen else r.state in again)
        ]
        if chosen and not records:
            raise FatalError(f"no publish {chosen!r} in {pending.directory(root)}; see `mab-hook status`")
        for path, record in records:
            say(f"publishing what {record.remote} accepted of {', '.join(names(record))}")
            ended = publish(record, repo, env, say)
            state.write_private(path, json.dumps(ended._asdict(), indent=1).encode())
            code = code or (
                0 if ended.state in (pending.PUBLISHED, pending.NOT_ACCEPTED, pending.PARTLY) else 1
            )
    return code


def _speaker(printer: Printer) -> Callable[[str], None]:
    """The publisher's voice, its results: what it published or could not, on its stdout (the
    terminal the push came from, else its log). A terminal closed meanwhile (the ssh session
    ended after the push) silences it, and the publish goes on (what it said is in the record)."""
    gone = False

    def say(line: str) -> None:
        nonlocal gone
        if not gone:
            try:
                printer.outcome(f"{line}")
            except OSError:
                gone = True

    return say


def names(record: Record) -> list[str]:
    return [ref.full.removeprefix("refs/heads/").removeprefix("refs/tags/") for ref in record.refs]
