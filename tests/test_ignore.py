"""`.dockerignore` and COPY-source matching, held against what real BuildKit builds."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mab_hook import ignore
from mab_hook.config import Image
from mab_hook.inputs import Files, Rule, compute
from tests.conftest import Lab


def matcher(*patterns: str) -> ignore.Ignore:
    return ignore.load(".dockerignore", "\n".join(patterns))


@pytest.mark.parametrize(("patterns", "path", "excluded"), [
    (["*.log"], "a.log", True),
    (["*.log"], "dir/a.log", False),
    (["**/*.log"], "dir/sub/a.log", True),
    (["**/*.log"], "a.log", True),
    (["/docs"], "docs/x/y", True),
    (["docs/"], "docs/x", True),
    (["docs", "!docs/keep"], "docs/keep", False),
    (["docs", "!docs/keep"], "docs/drop", True),
    (["!x", "*"], "x", True),  # the last match wins
    (["# comment", ""], "# comment", False),
    (["a?c"], "abc", True),
    (["a[0-9]"], "a5", True),
    (["Dockerfile"], "dockerfile", False),  # case-sensitive, unlike the docker SDK's matcher
])  # fmt: skip
def test_dockerignore_cases(patterns: list[str], path: str, excluded: bool) -> None:
    assert matcher(*patterns).excludes(path) is excluded


def test_invalid_pattern_names_the_file() -> None:
    with pytest.raises(Exception, match=r"svc/\.dockerignore: Invalid ignore pattern '\[': "):
        ignore.load("svc/.dockerignore", "[\n")


@pytest.mark.parametrize(("pattern", "path", "root"), [
    (".", "a/b", ""), ("/", "a/b", ""), ("./a", "a/b", "a"), ("a/", "a/b", "a"), ("a", "ab", None),
    ("*.py", "x.py", "x.py"), ("*.py", "d/x.py", None), ("d*", "dir/x", "dir"), ("[a-c]?", "b1/x", "b1"),
    ("[^a]", "b", "b"), ("[^a]", "a", None), ("a\\*", "a*", "a*"), ("a\\*", "ab", None),
    ("**/x", "a/x", "a/x"), ("**/x", "a/b/x", None), ("**/x", "x", None),  # Go: ** is just *
    ("../a", "a/b", "a"),  # BuildKit keeps sources inside the context
])  # fmt: skip
def test_matched_root(pattern: str, path: str, root: str | None) -> None:
    assert ignore.matched_root(pattern, path) == root


@pytest.mark.parametrize(("pattern", "path", "root"), [
    ("**/x", "a/b/x", "a/b/x"), ("**/x", "x", "x"), ("pkgs/**/package.json", "pkgs/a/b/package.json", "pkgs/a/b/package.json"),
])  # fmt: skip
def test_matched_root_with_parents(pattern: str, path: str, root: str | None) -> None:
    assert ignore.matched_root(pattern, path, parents=True) == root


def test_ignore_file_choice() -> None:
    tree = {"svc/.dockerignore", "svc/Dockerfile.dockerignore", "docker/api.Dockerfile.dockerignore"}
    assert ignore.ignore_file("svc", "svc/Dockerfile", tree.__contains__) == "svc/Dockerfile.dockerignore"
    assert ignore.ignore_file("svc", "svc/Other", tree.__contains__) == "svc/.dockerignore"
    assert (
        ignore.ignore_file("svc", "docker/api.Dockerfile", tree.__contains__)
        == "docker/api.Dockerfile.dockerignore"
    )
    assert ignore.ignore_file("none", "none/Dockerfile", tree.__contains__) is None


# --- against real BuildKit ------------------------------------------------------------------

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


# Each example is a real build (about half a second). The default run is derandomized, so CI
# sees the same examples every time; MAB_LAB_EXAMPLES=500 hunts longer, with fresh examples.
settings.register_profile(
    "lab",
    max_examples=int(os.environ.get("MAB_LAB_EXAMPLES", "25")),
    derandomize="MAB_LAB_EXAMPLES" not in os.environ,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@settings(settings.get_profile("lab"))
@given(tree=trees, rules=ignore_files)
def test_dockerignore_matches_buildkit(lab: Lab, tree: list[str], rules: list[str]) -> None:
    files = {path: path for path in tree}
    files[".dockerignore"] = "\n".join(rules) + "\n"
    model = ignore.load(".dockerignore", files[".dockerignore"])
    expected = {path for path in files if not model.excludes(path)}
    assert build(lab, files, "FROM scratch\nCOPY . /\n") == expected


def predicted_outputs(rule: Rule, tree: list[str], number: int) -> set[str]:
    """Where `COPY <source> /out<number>/` puts each file our model says the source reads."""
    outputs = set()
    for path in tree:
        if not rule.reads(path):
            continue
        root = ignore.matched_root(rule.source.pattern, path, parents=rule.source.parents)
        assert root is not None
        inside = path.rsplit("/", 1)[-1] if root == path else path[len(root) :].lstrip("/")
        outputs.add(f"out{number}/{inside}")
    return outputs


WILDCARDS = (
    lambda s: "*",
    lambda s: s[:1] + "*",
    lambda s: "?" * len(s),
    lambda s: "[ab]" + s[1:],
    lambda s: "*" + s[-3:],
    lambda s: "**",
)


@st.composite
def copy_sources(draw: st.DrawFn, tree: list[str]) -> str:
    """A COPY source near the tree: a file or directory of it, maybe with one segment a wildcard."""
    parts = draw(st.sampled_from(tree)).split("/")
    parts = parts[: draw(st.integers(1, len(parts)))]
    if draw(st.booleans()):
        i = draw(st.integers(0, len(parts) - 1))
        parts[i] = draw(st.sampled_from(WILDCARDS))(parts[i])
    lead = draw(st.sampled_from(("", "./", "/")))
    return lead + "/".join(parts) + ("/" if draw(st.booleans()) else "")


@settings(settings.get_profile("lab"))
@given(data=st.data(), tree=trees, rules=st.lists(patterns, max_size=3))
def test_copy_sources_match_buildkit(
    lab: Lab, data: st.DataObject, tree: list[str], rules: list[str]
) -> None:
    """The files our model says each COPY reads are exactly the files BuildKit copies."""
    assume(not rules or not rules[0].startswith("!"))
    copied = data.draw(st.lists(copy_sources(tree), min_size=1, max_size=3))
    files = {path: path for path in tree}
    if rules:
        files[".dockerignore"] = "\n".join(rules) + "\n"
    dockerfile = "FROM scratch\n" + "".join(f"COPY {source} /out{n}/\n" for n, source in enumerate(copied))
    files_with_dockerfile = {**files, "Dockerfile": dockerfile}
    image = Image("x", ".", "Dockerfile", ("linux/amd64",))
    found = compute(image, Files.of(files_with_dockerfile), build_platform="linux/amd64")
    expected: set[str] = set()
    for number, rule in enumerate(found.rules):
        outputs = predicted_outputs(rule, list(files), number)
        # A wildcard may match nothing, but BuildKit fails a plain path that is not there,
        # and so a wildcard under a directory that is not there (`a/*` with `a` ignored).
        top = ignore.clean(rule.source.pattern).split("/")[0]
        assume(outputs or any(c in top for c in "*?["))
        # Roots merged into one destination must not clash (a file "a" and a directory "a").
        assume(consistent(sorted(outputs)))
        expected |= outputs
    assert build(lab, files, dockerfile) == expected
