"""The hand-over under pre-commit: pre-commit runs `.git/hooks/pre-push.legacy` first, with
git's whole stdin, then its hooks with the first ref only. The script `mab-hook install` puts
there hands git's lines to the mab-hook hook pre-commit runs next, through a private file named
for pre-commit's process; that hook reads it once (`handed_refs`) and checks every ref."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import NamedTuple

from mab_hook import state

MARKER = "# installed by `mab-hook install`"
HANDED = "push-refs-"  # under .git/mab-hook, + pre-commit's pid: git's lines of one push
HANDED_AGE = 3600.0  # seconds a hand-over stays good for (one push's hooks run within it)
HANDOVER = f"""#!/bin/sh
{MARKER}: hands git's refs to the mab-hook hook of .pre-commit-config.yaml,
# which pre-commit runs next with the first ref only; that hook then checks every ref.
umask 077
dir="$(git rev-parse --git-common-dir)/mab-hook" && mkdir -p "$dir" || exit 1
handed="$dir/{HANDED}$PPID"
{{ printf '%s\\n%s\\n' "$1" "$2" && cat; }} >"$handed.tmp" && mv -f "$handed.tmp" "$handed" || {{
    echo "mab-hook: error: cannot hand this push's refs to mab-hook ($handed)" >&2
    exit 1
}}
"""


class Handed(NamedTuple):
    remote: str  # as git named it to the hook: a remote's name, or the URL pushed to
    lines: str  # git's pre-push lines, every ref of the push


def handed_refs(root: Path) -> Handed | None:
    """What the script under pre-commit handed over for this push (pre-commit's process runs
    it and then this hook, so both know the same pid); the file is gone once read. Hand-overs
    no hook read (a push with `SKIP=mab-hook`, an interrupted one) are removed when old."""
    own = root / f"{HANDED}{os.getppid()}"
    for stale in root.glob(f"{HANDED}*"):
        with contextlib.suppress(OSError):
            if stale != own and time.time() - stale.lstat().st_mtime > HANDED_AGE:
                stale.unlink()
    try:
        fd = os.open(own, os.O_RDONLY | state.NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, encoding="utf-8", errors="replace") as handed:
        fresh = time.time() - os.fstat(handed.fileno()).st_mtime < HANDED_AGE
        text = handed.read()
    own.unlink(missing_ok=True)
    remote, _url, lines = [*text.split("\n", 2), "", ""][:3]
    return Handed(remote, lines) if fresh and remote else None
