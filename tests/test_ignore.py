"""`.dockerignore` and COPY-source matching, held against what real BuildKit builds."""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from mab_hook import ignore
from mab_hook.errors import FatalError
from tests.buildkit import build, ignore_files, trees
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


@pytest.mark.lab
@settings(settings.get_profile("lab"))
@given(tree=trees, rules=ignore_files)
def test_dockerignore_matches_buildkit(lab: Lab, tree: list[str], rules: list[str]) -> None:
    files = {path: path for path in tree}
    files[".dockerignore"] = "\n".join(rules) + "\n"
    model = ignore.load(".dockerignore", files[".dockerignore"])
    expected = {path for path in files if not model.excludes(path)}
    assert build(lab, files, "FROM scratch\nCOPY . /\n") == expected


def test_no_ignore_file_or_no_text_is_no_ignore_and_a_bad_pattern_says_where() -> None:
    assert ignore.load(None, "*.log") == ignore.NO_IGNORE
    assert ignore.load("svc/.dockerignore", None) == ignore.NO_IGNORE
    assert not ignore.NO_IGNORE.excludes("anything")
    with pytest.raises(FatalError) as bad:
        ignore.load("svc/.dockerignore", "ok\n[\n")
    assert str(bad.value) == "svc/.dockerignore: Invalid ignore pattern '[': syntax error in pattern"
