"""Real BuildKit as an oracle: build a generated tree, read back what the build exported.

Each example is a real build (about half a second). The default run is derandomized, so CI
sees the same examples every time; MAB_LAB_EXAMPLES=500 hunts longer, with fresh examples.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import NamedTuple

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


# --- what a whole build reads: generated Dockerfiles of every construct ---------------------------
#
# Every regular file of a generated tree holds its own path (after MARK). The generated Dockerfiles put all
# they read into the exported result: COPY into /o<n>/, a bind or cache mount's files catted
# into /o<n>, a stage another reads copied whole. So the paths found in what BuildKit exports
# are exactly the files the build read, to compare with what mab-hook says it reads.


class Link(NamedTuple):
    """A symlink of a generated tree."""

    target: str


Tree = dict[str, "str | Link"]
VARIABLES = ("A", "E", "G")  # a stage's ARG, a stage's ENV, a global ARG
MARK = "mab-oracle:"  # a file's content: this, and its path (a base image's files hold no such line)
SALT = uuid.uuid4().hex[:8]  # cache mounts of this run's own: nothing an earlier run left in them
CAT = "find {at} -type f -exec cat {{}} + > /o{n} 2>/dev/null || true"


class Scenario(NamedTuple):
    tree: Tree
    dockerfile: str
    target: str
    build_args: dict[str, str]


@st.composite
def linked_trees(draw: st.DrawFn) -> Tree:
    """A tree whose files hold their own paths, with symlinks (to files and directories of it)."""
    # Each file's name its own (a number after it): a wildcard copying a file `a` and a
    # directory holding another `a` into one place would leave one of them, unseen.
    files = [f"{path}{n}" for n, path in enumerate(draw(trees))]
    tree: Tree = {path: MARK + path + "\n" for path in files}
    directories = sorted({path.rsplit("/", 1)[0] for path in files if "/" in path})
    for name in draw(st.lists(st.sampled_from(("l1", "l2", "x/l3")), unique=True, max_size=2)):
        if any(p == name or p.startswith(name + "/") or name.startswith(p + "/") for p in tree):
            continue
        target = draw(st.sampled_from([*files, *directories]))
        depth = name.count("/")
        tree[name] = Link("../" * depth + target if draw(st.booleans()) else "/" + target)
    return tree


@st.composite
def sources(draw: st.DrawFn, tree: Tree, values: dict[str, str], wildcard: bool = True) -> str:
    """A source near the tree: a path (or a prefix of one, or a link), maybe a wildcard in a
    segment, maybe a segment spelled as a variable whose value it is."""
    parts = draw(st.sampled_from(sorted(tree))).split("/")
    parts = parts[: draw(st.integers(1, len(parts)))]
    i = draw(st.integers(0, len(parts) - 1))
    spelled = [name for name, value in values.items() if value == parts[i]]
    as_variable, as_wildcard = draw(st.booleans()), draw(st.booleans())
    if spelled and as_variable:
        name = draw(st.sampled_from(spelled))
        parts[i] = draw(st.sampled_from((f"${{{name}}}", f"${name}")))
    elif wildcard and as_wildcard:
        parts[i] = draw(st.sampled_from(("*", parts[i][:1] + "*", "?" * len(parts[i]))))
    return "/".join(parts)


@st.composite
def scenarios(draw: st.DrawFn, busybox: str) -> Scenario:
    tree = draw(linked_trees())
    segments = sorted({part for path in tree for part in path.split("/")})
    values = {name: draw(st.sampled_from(segments)) for name in VARIABLES}
    lines = [f"ARG G={values['G']}"]
    stages = draw(st.integers(1, 3))
    outputs = 0
    onbuild = set()
    for s in range(stages):
        base = draw(st.sampled_from([busybox, *(f"s{i}" for i in range(s))]))
        lines += [f"FROM {base} AS s{s}", "ARG G", f"ARG A={values['A']}", f"ENV E={values['E']}"]
        for _ in range(draw(st.integers(1, 3))):
            kind = draw(st.sampled_from(("copy", "json", "from", "bind", "cache", "onbuild") if s else
                                        ("copy", "json", "bind", "onbuild")))  # fmt: skip
            outputs += 1
            if kind == "copy":
                lines.append(f"COPY {draw(sources(tree, values))} /o{outputs}/")
            elif kind == "json":
                lines.append(f'COPY ["{draw(sources(tree, values))}", "/o{outputs}/"]')
            elif kind == "from":
                ref = draw(st.sampled_from([f"s{i}" for i in range(s)] + [str(i) for i in range(s)]))
                lines.append(f"COPY --from={ref} / /f{outputs}/")
            elif kind == "bind":
                source = draw(sources(tree, values, wildcard=False))
                lines.append(
                    f"RUN --mount=type=bind,source={source},target=/m " + CAT.format(at="/m", n=outputs)
                )
            elif kind == "cache":
                ref = draw(st.sampled_from([f"s{i}" for i in range(s)]))
                seed = f"{SALT}-{draw(st.integers(0, 2**32))}"
                lines.append(
                    f"RUN --mount=type=cache,from={ref},target=/c,id={seed} " + CAT.format(at="/c", n=outputs)
                )
            elif s not in onbuild:
                onbuild.add(s)
                lines.append(f"ONBUILD COPY {draw(sources(tree, values))} /b{outputs}/")
    build_args = {"A": draw(st.sampled_from(segments))} if draw(st.booleans()) else {}
    target = f"s{draw(st.integers(0, stages - 1))}"
    return Scenario(tree, "\n".join(lines) + "\n", target, build_args)


def read_by_build(
    lab: Lab, scenario: Scenario, ignore: str | None, platforms: str = "linux/amd64"
) -> set[str] | None:
    """The tree's files BuildKit read to build the scenario's target; None when BuildKit
    refuses the build (a source that names nothing, say): no case to compare."""
    with tempfile.TemporaryDirectory() as tmp:
        context, out = Path(tmp) / "ctx", Path(tmp) / "out"
        context.mkdir()
        for name, content in scenario.tree.items():
            (context / name).parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, Link):
                os.symlink(content.target, context / name)
            else:
                (context / name).write_text(content)
        if ignore is not None:
            (context / ".dockerignore").write_text(ignore)
        (Path(tmp) / "Dockerfile").write_text(scenario.dockerfile)
        args = [
            arg for name, value in scenario.build_args.items() for arg in ("--build-arg", f"{name}={value}")
        ]
        proc = subprocess.run(
            ("docker", "buildx", "build", "--progress=plain", f"--platform={platforms}", "--file",
             f"{tmp}/Dockerfile", "--target", scenario.target, *args, "--output", f"type=local,dest={out}",
             str(context)),
            env=lab.env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            return None
        found: set[str] = set()
        for path in out.rglob("*"):
            if path.is_file() and not path.is_symlink():
                # Anywhere in a line: catted after a file that does not end in one (a binary).
                found.update(re.findall(re.escape(MARK) + r"([^\n]*)\n", path.read_text(errors="replace")))
        return found
