"""COPY sources and globs, Docker's way: Go's filepath.Match, `**` under --parents only."""

from __future__ import annotations

import os
import re

import pytest
from e2b_dockerfile_utils import PatternMatcher
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from mab_hook import patterns as matching
from mab_hook.images import Image
from mab_hook.inputs import Files, Rule, compute
from tests.buildkit import build, consistent, patterns, trees
from tests.conftest import Lab, finishes


@pytest.mark.parametrize(("pattern", "path", "root"), [
    (".", "a/b", ""), ("/", "a/b", ""), ("./a", "a/b", "a"), ("a/", "a/b", "a"), ("a", "ab", None),
    ("*.py", "x.py", "x.py"), ("*.py", "d/x.py", None), ("d*", "dir/x", "dir"), ("[a-c]?", "b1/x", "b1"),
    ("[^a]", "b", "b"), ("[^a]", "a", None), ("a\\*", "a*", "a*"), ("a\\*", "ab", None),
    ("**/x", "a/x", "a/x"), ("**/x", "a/b/x", None), ("**/x", "x", None),  # Go: ** is just *
    ("../a", "a/b", "a"),  # BuildKit keeps sources inside the context
])  # fmt: skip
def test_matched_root(pattern: str, path: str, root: str | None) -> None:
    assert matching.matched_root(pattern, path) == root


@pytest.mark.parametrize(("pattern", "path", "root"), [
    ("**/x", "a/b/x", "a/b/x"), ("**/x", "x", "x"), ("pkgs/**/package.json", "pkgs/a/b/package.json", "pkgs/a/b/package.json"),
])  # fmt: skip
def test_matched_root_with_parents(pattern: str, path: str, root: str | None) -> None:
    assert matching.matched_root(pattern, path, parents=True) == root


# --- against real BuildKit ------------------------------------------------------------------


def predicted_outputs(rule: Rule, tree: list[str], number: int) -> set[str]:
    """Where `COPY <source> /out<number>/` puts each file our model says the source reads."""
    outputs = set()
    for path in tree:
        if not rule.reads(path):
            continue
        root = matching.matched_root(rule.source.pattern, path, parents=rule.source.parents)
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


@pytest.mark.lab
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
        top = matching.clean(rule.source.pattern).split("/")[0]
        assume(outputs or any(c in top for c in "*?["))
        # Roots merged into one destination must not clash (a file "a" and a directory "a").
        assume(consistent(sorted(outputs)))
        expected |= outputs
    assert build(lab, files, dockerfile) == expected


def test_watch_globs_follow_docker_patterns() -> None:
    paths = ("README.md", "docs/README.md", "proto/a.proto", "proto/v1/b.proto")
    assert matching.watched("proto/**", paths) == ["proto/a.proto", "proto/v1/b.proto"]
    assert matching.watched("*.md", paths) == ["README.md"]  # anchored at the root


# --- linear-time matching -------------------------------------------------------------------------

PATTERN_TEXT = st.text(alphabet="ab/*?[]^!\\.", min_size=1, max_size=10)
PATH_TEXT = st.text(alphabet="ab/.", min_size=1, max_size=12).filter(
    lambda p: "//" not in p and not p.startswith("/")
)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # the port's re warns of `[[`
@settings(max_examples=600, deadline=None, derandomize=bool(os.environ.get("CI")))
@given(st.lists(PATTERN_TEXT, min_size=1, max_size=3), st.lists(PATH_TEXT, min_size=1, max_size=4))
@example(["?", "/!?"], ["a"])  # `/!?` is a path that starts with `!`, no exception
def test_the_matcher_is_mobys_patternmatcher(lines: list[str], paths: list[str]) -> None:
    """Compared with e2b-dockerfile-utils' port of moby's patternmatcher (itself checked against
    BuildKit in tests/buildkit.py): the same answer for every path, the same refusals."""
    try:
        ported = PatternMatcher(lines)
    except ValueError:
        with pytest.raises(ValueError):
            matching.Matcher(lines)
        return
    ours = matching.Matcher(lines)
    for path in paths:
        assert ours.matches(path) == ported.matches(path), (lines, path)


@settings(max_examples=600, deadline=None, derandomize=bool(os.environ.get("CI")))
@given(
    st.lists(st.sampled_from(["a", "b", "/", "[ab]", "[^/]", "[^/]*", "(.*/)?", ".*"]), max_size=8), PATH_TEXT
)
def test_the_automaton_answers_as_re_does(tokens: list[str], path: str) -> None:
    expected = re.compile("".join(tokens) + r"\Z").match(path) is not None
    assert matching._Automaton(tokens).matches(path) == expected


def test_patterns_that_would_backtrack_for_hours_are_matched_in_linear_time() -> None:
    """Patterns a hostile commit may push; each is matched in a child with a time limit far
    above what linear matching needs (a backtracking matcher would need hours)."""
    program = (
        "from mab_hook import patterns, ignore\n"
        "assert not patterns.Matcher(['*a' * 16 + 'b']).matches('a' * 80)\n"
        "assert not ignore.load('.dockerignore', '**/' * 40 + 'a*' * 40 + 'b').excludes('a' * 300)\n"
        "assert patterns.matched_root('*a' * 40 + 'b', 'a' * 300) is None\n"
    )
    finishes(program)


# --- rules the mutation run found unchecked (no Docker) ----------------------------------------

ORACLE_CASES = [
    (["a*/**"], ["ab/c", "ab", "b/c"]), (["X"], ["X", "Y", "x"]), (["[^a]b"], ["xb", "ab", "b"]),
    (["\\*"], ["*", "a"]), (["a\\?"], ["a?", "ab"]), (["**/foo"], ["foo", "x/foo", "xfoo", "x/y/foo"]),
    (["foo/**/bar"], ["foo/bar", "foo/x/y/bar", "foo/barx"]), (["**"], ["a", "a/b"]),
    (["*.go", "!main.go"], ["a.go", "main.go", "d/a.go"]), (["Data/**", "!Data/keep"], ["Data/x", "Data/keep", "data/x"]),
    (["[a-cX]?"], ["X1", "b2", "d3"]), (["[\\]]x"], ["]x", "ax"]), (["/abs//x/"], ["abs/x", "x"]),
    (["# comment", "", "  ", "Zed"], ["Zed", "# comment"]), (["a/**/b/**/c/**/d*"], ["a/b/c/dd", "a/x/b/y/c/z/d", "a/b/c"]),
    (["a**"], ["a", "ab/c", "b", "ba"]), (["x**/y"], ["x/y", "xa/y", "y"]), (["a]"], ["a]", "a"]),
    (["abc/**"], ["abc/x", "abx/y", "abcd/x", "abc"]), (["//abs"], ["abs", "x"]), (["a\\"], ["a\\", "a"]),
    (["[\\]a]x"], ["]x", "ax", "\\x"]), (["[a\\-z]"], ["a", "-", "z", "b"]),
]  # fmt: skip


@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize(("lines", "paths"), ORACLE_CASES)
def test_the_matcher_answers_as_mobys_on_chosen_cases(lines: list[str], paths: list[str]) -> None:
    """Letters and shapes the generated cases leave out: capitals, classes with them, a prefix
    after a wildcard, exceptions, escapes, comments."""
    try:
        ported = PatternMatcher(lines)
    except ValueError:  # a pattern BuildKit refuses: refused here too
        with pytest.raises(ValueError):
            matching.Matcher(lines)
        return
    ours = matching.Matcher(lines)
    assert [ours.matches(p) for p in paths] == [ported.matches(p) for p in paths]


@pytest.mark.parametrize(("pattern", "path", "root"), [
    ("[a", "[a", "[a"), ("[a", "a", None),  # an unclosed class is the characters themselves
    ("a\\[b", "a[b", "a[b"), ("[!a]", "b", None), ("[^ab]c", "cc/x", "cc"), ("[^ab]c", "bc", None),
    ("X?", "XY/z", "XY"), ("d/*/e", "d/x/e/f", "d/x/e"), ("*", "x/y", "x"), ("a/b", "a/b/c", "a/b"),
    ("\\\\x", "\\x", "\\x"), ("x\\", "x\\", "x\\"),  # a backslash at the end is itself
    ("[x]y]", "xy]", "xy]"),  # the class ends at its first ]
])  # fmt: skip
def test_copy_sources_on_chosen_cases(pattern: str, path: str, root: str | None) -> None:
    assert matching.matched_root(pattern, path) == root


@pytest.mark.parametrize(("pattern", "cleaned"), [
    (".", ""), ("/", ""), ("", ""), ("./a/../b/", "b"), ("//a//b", "a/b"), ("../../x", "x"), ("a/.", "a"),
])  # fmt: skip
def test_sources_are_cleaned_as_buildkit_cleans_them(pattern: str, cleaned: str) -> None:
    assert matching.clean(pattern) == cleaned


@pytest.mark.parametrize(("excludes", "root", "relative", "excluded"), [
    ((), "app", "app/x.log", False),
    (("*.log",), "app", "app/x.log", True),  # inside a copied directory: relative to it
    (("*.log",), "app", "app/sub/x.log", False),
    (("**/*.log",), "app", "app/sub/x.log", True),
    (("x.log",), "app/x.log", "app/x.log", True),  # a file copied itself: its name
    (("app",), "app", "app/app", True),
    (("Xa.log",), "app", "app/Xa.log", True),
])  # fmt: skip
def test_exclude_patterns_apply_below_what_the_source_matched(
    excludes: tuple[str, ...], root: str, relative: str, excluded: bool
) -> None:
    assert matching.excluded_by(excludes, root, relative) is excluded


@pytest.mark.parametrize(("pattern", "prefix"), [
    ("a/b/*.py", "a/b"), ("a/*/c", "a"), ("*.py", ""), ("a/b/c", "a/b"), ("a/b[x]/c", "a"), ("a/b?/c", "a"),
    ("X/Y/z", "X/Y"), ("a\\b/c", ""),
])  # fmt: skip
def test_the_literal_directories_a_pattern_starts_with(pattern: str, prefix: str) -> None:
    assert matching.literal_prefix(pattern) == prefix


@pytest.mark.parametrize(("pattern", "wild"), [
    ("a*", True), ("a?", True), ("a[b]", True), ("a\\b", True), ("abc", False), ("XY", False), ("a/b", False),
])  # fmt: skip
def test_which_patterns_have_wildcards(pattern: str, wild: bool) -> None:
    assert matching.has_wildcard(pattern) is wild


def test_a_path_escaped_as_a_pattern_matches_itself_alone() -> None:
    path = "a*b?[c]\\d"
    assert matching.escape(path) == "a\\*b\\?\\[c]\\\\d"
    assert matching.Matcher([matching.escape(path)]).matches(path)
    assert not matching.Matcher([matching.escape(path)]).matches("axb?[c]\\d")
    assert matching.escape("Xplain") == "Xplain"
