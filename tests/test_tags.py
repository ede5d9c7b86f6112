"""Tag templates: checked once, rendered per ref."""

from __future__ import annotations

import pytest

from mab_hook import tags

SHA = "0123456789abcdef" * 2 + "01234567"


@pytest.mark.parametrize(("ref", "tag"), [("main", "main"), ("feature/login", "feature-login"), (None, "detached"),
                                          ("-x", "x"), ("v1.4.0", "v1.4.0")])  # fmt: skip
def test_render(ref: str | None, tag: str) -> None:
    assert tags.render("{branch}", sha=SHA, ref=ref) == tag
    assert tags.render("{short_sha}-{sha}", sha=SHA, ref=ref) == f"0123456-{SHA}"


def test_escaped_braces_are_literal() -> None:
    assert tags.problem("v{{1}}") is not None  # braces make no valid tag...
    assert tags.render("a{{b}}c", sha=SHA, ref=None) == "a{b}c"  # ...but are read as literal ones


@pytest.mark.parametrize(("template", "problem"), [
    ("{", "has a lone '{' (write {{ for a literal one)"),
    ("x}", "has a lone '}' (write }} for a literal one)"),
    ("{sha!r}", "uses unknown field {sha!r}"),
    ("{sha.real}", "uses unknown field {sha.real}"),
    ("{commit}", "uses unknown field {commit}; allowed: {sha}, {short_sha}, {branch}"),
    ("-{sha}", "does not make a valid tag"),
    ("a b", "does not make a valid tag"),
])  # fmt: skip
def test_bad_templates_are_problems_not_crashes(template: str, problem: str) -> None:
    found = tags.problem(template)
    assert found is not None and problem in found, found


def test_good_templates() -> None:
    for template in ("{short_sha}", "{branch}-latest", "latest", "{sha}"):
        assert tags.problem(template) is None, template


def test_long_names_never_make_the_same_tag() -> None:
    first, second = "feature/" + "x" * 200 + "-one", "feature/" + "x" * 200 + "-two"
    made = [tags.render("{branch}", sha="0" * 40, ref=ref) for ref in (first, second)]
    assert made[0] != made[1] and all(len(tag) == tags.MAX for tag in made)
    assert made[0].startswith("feature-xxxx") and tags.render("{branch}", sha="0" * 40, ref="main") == "main"


def test_what_fixes_a_tag_and_what_moves_it() -> None:
    assert [tags.moves(t) for t in ("{sha}", "v-{short_sha}", "latest", "{branch}", "{branch}-{short_sha}")] == [
        False, False, True, True, False]  # fmt: skip


def test_a_tag_of_the_longest_length_is_kept_as_it_is_one_longer_is_cut() -> None:
    exactly = "x" * (tags.MAX - 6)
    assert tags.render(exactly + "{branch}", sha="0" * 40, ref="main12") == exactly + "main12"  # 128
    longer = tags.render(exactly + "{branch}", sha="0" * 40, ref="main123")  # 129
    assert len(longer) == tags.MAX and longer.startswith(exactly[:100]) and longer[-9] == "-"


@pytest.mark.parametrize(("ref", "tag"), [("Xylophone", "Xylophone"), ("-.", "detached"), (".-x.", "x.")])
def test_a_refs_name_loses_only_what_a_tag_cannot_start_with(ref: str, tag: str) -> None:
    assert tags.safe(ref) == tag


@pytest.mark.parametrize(("template", "problem"), [
    ("v{", "'v{' has a lone '{' (write {{ for a literal one)"),
    ("{sha!r}", "'{sha!r}' uses unknown field {sha!r}; allowed: {sha}, {short_sha}, {branch}"),
    ("-x", "'-x' does not make a valid tag (letters, digits, _ . -, at most 128, not starting with . or -)"),
])  # fmt: skip
def test_what_a_bad_template_says(template: str, problem: str) -> None:
    assert tags.problem(template) == problem
