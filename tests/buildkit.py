"""Real BuildKit as an oracle: build a generated tree, read back what the build exported.

Each example is a real build (about half a second). The default run is derandomized, so CI
sees the same examples every time; MAB_LAB_EXAMPLES=500 hunts longer, with fresh examples.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tests.conftest import Lab

NAMES = ("a", "b", "ab", "c.txt", "d.log", "e.py")
segment = st.sampled_from(NAMES)
paths = st.lists(segment, min_size=1, max_size=3).map("/".join)


def consistent(tree: list[str]) -> bool:
    """No path is both a file and a directory."""
    return not any(other.startswith(path + "/") for path in tree for other in tree)


trees = st.lists(paths, min_size=1, max_size=12, unique=True).filter(consistent)
pattern_segment = st.sampled_from((*NAMES, "*", "?", "*.txt", "[ab]", "a*", "**"))
patterns = st.builds(
    lambda negate, lead, parts: ("!" if negate else "") + ("/" if lead else "") + "/".join(parts),
    st.booleans(),
    st.booleans(),
    st.lists(pattern_segment, min_size=1, max_size=3),
)
ignore_files = st.lists(patterns, min_size=1, max_size=4).filter(lambda p: not p[0].startswith("!"))


def build(lab: Lab, tree: dict[str, str], dockerfile: str) -> set[str]:
    """Files of a FROM scratch build of `tree` with `dockerfile`, as BuildKit exports them."""
    with tempfile.TemporaryDirectory() as tmp:
        context, out = Path(tmp) / "ctx", Path(tmp) / "out"
        for name, content in tree.items():
            (context / name).parent.mkdir(parents=True, exist_ok=True)
            (context / name).write_text(content)
        (Path(tmp) / "Dockerfile").write_text(dockerfile)
        proc = subprocess.run(
            ("docker", "buildx", "build", "--progress=plain", "--platform=linux/amd64", "--file",
             f"{tmp}/Dockerfile", "--output", f"type=local,dest={out}", str(context)),
            env=lab.env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        return {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}


settings.register_profile(
    "lab",
    max_examples=int(os.environ.get("MAB_LAB_EXAMPLES", "25")),
    derandomize="MAB_LAB_EXAMPLES" not in os.environ,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
