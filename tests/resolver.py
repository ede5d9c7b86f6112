"""buildx's `bake --print`, recorded: how compose and bake files resolve, for fast tests.

The resolver runs the buildx plugin named by MAB_HOOK_BUILDX in a scratch directory holding the
files a definition reads. `replaying` names a stand-in that answers from
tests/fixtures/bake-print.json, keyed by those files and the arguments; `recording` names one
that asks the real buildx and writes its answers down. The lab test in test_planning.py runs
every recorded scenario against the lab's buildx (0.13) and fails when an answer changed;
`MAB_RECORD=1` writes the new answers into the fixture.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

RECORDINGS = Path(__file__).resolve().parent / "fixtures" / "bake-print.json"

# The stand-in: the key is what buildx would read (every file of the scratch directory, the
# directory it runs in, its arguments), so a changed file can never be answered from another.
_STAND_IN = """\
import hashlib, json, os, subprocess, sys
RECORDINGS, REAL = {recordings!r}, {real!r}
here = root = os.getcwd()
while not os.path.basename(root).startswith("mab-hook-definitions-"):
    if root == os.path.dirname(root):  # not run where the resolver runs it
        sys.exit("ERROR: the stand-in for buildx runs only in the resolver's scratch directory")
    root = os.path.dirname(root)
files = {{}}
for top, _dirs, names in os.walk(root):
    for name in names:
        path = os.path.join(top, name)
        with open(path, "rb") as f:
            files[os.path.relpath(path, root)] = f.read().decode("utf-8", "replace")
key = hashlib.sha256(json.dumps([os.path.relpath(here, root), sys.argv[1:], files], sort_keys=True).encode()).hexdigest()
if REAL:
    done = subprocess.run([REAL, *sys.argv[1:]], env={{}}, capture_output=True, text=True)
    answer = {{"files": sorted(files), "code": done.returncode, "stdout": done.stdout, "stderr": done.stderr}}
    known = json.load(open(RECORDINGS)) if os.path.exists(RECORDINGS) else {{}}
    known[key] = answer
    with open(RECORDINGS, "w") as f:
        json.dump(known, f, indent=1, sort_keys=True)
else:
    answer = json.load(open(RECORDINGS)).get(key)
    if answer is None:
        sys.stderr.write("ERROR: buildx's answer for these files is not recorded: run the lab test "
                         "test_the_recorded_bake_answers_are_buildxs with MAB_RECORD=1\\n")
        sys.exit(1)
sys.stdout.write(answer["stdout"])
sys.stderr.write(answer["stderr"])
sys.exit(answer["code"])
"""


def _stand_in(directory: Path, recordings: Path, real: str) -> dict[str, str]:
    script = directory / "docker-buildx"
    script.write_text(f"#!{sys.executable}\n" + _STAND_IN.format(recordings=str(recordings), real=real))
    script.chmod(0o755)
    return {"MAB_HOOK_BUILDX": str(script)}


def replaying(directory: Path) -> dict[str, str]:
    """An environment whose buildx answers from the recordings."""
    return _stand_in(directory, RECORDINGS, "")


def recording(directory: Path, real: Path, into: Path) -> dict[str, str]:
    """An environment whose buildx is `real`, its answers written into `into`."""
    return _stand_in(directory, into, str(real))


def recorded() -> dict[str, dict[str, object]]:
    found: dict[str, dict[str, object]] = json.loads(RECORDINGS.read_text()) if RECORDINGS.exists() else {}
    return found


def normal(answer: object) -> object:
    """An answer as compared: buildx lists a compose file's targets in no fixed order (a Go
    map), so each group's are sorted."""
    if not isinstance(answer, dict) or answer.get("code") != 0:
        return answer
    printed = json.loads(str(answer["stdout"]))
    for group in (printed.get("group") or {}).values():
        group["targets"] = sorted(group.get("targets") or ())
    return {**answer, "stdout": printed}
