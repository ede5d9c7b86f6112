"""`[tool.multiarch]`'s keys declared once (mab_hook/schema.py): the README's table and the
JSON schema for editors are generated from them, and validation agrees with them."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from mab_hook import config, schema
from mab_hook.errors import FatalError
from tests.conftest import ROOT

IMAGE = '[tool.multiarch.images.api]\ncontext = "services/api"\n'
TRACKED = frozenset({"pyproject.toml", "services/api/Dockerfile"})


def test_the_readme_table_is_the_declared_one() -> None:
    table = schema.markdown().splitlines()
    assert table[0] == "| key | type | default | meaning |"
    assert len(table) == 2 + len(schema.TOP) + len(schema.IMAGE) + len(schema.BUILDER_KEYS) + len(schema.NODE)
    assert "| `platforms` | list of `os/arch[/variant]` | required |" in table[2]
    assert schema.markdown() in (ROOT / "README.md").read_text(), (
        "the README's key table is `python -m mab_hook.schema --markdown`"
    )


def test_the_shipped_json_schema_is_the_declared_one() -> None:
    assert schema.FILE.read_text() == json.dumps(schema.json_schema(), indent=1) + "\n", (
        "run: python -m mab_hook.schema"
    )
    jsonschema.Draft7Validator.check_schema(schema.json_schema())


def test_validation_allows_exactly_the_declared_keys() -> None:
    assert (*schema.names(schema.TOP), "images") == config.TOP_KEYS
    assert (
        schema.names(schema.IMAGE), schema.names(schema.BUILDER_KEYS), schema.names(schema.NODE)
    ) == (config.IMAGE_KEYS, config.BUILDER_KEYS, config.NODE_KEYS)  # fmt: skip


def readme_examples() -> list[dict[str, Any]]:
    """The `[tool.multiarch]` tables of the README's TOML examples."""
    found = []
    for block in re.findall(r"```toml\n(.*?)```", (ROOT / "README.md").read_text(), re.S):
        if block.lstrip().startswith("[tool.multiarch"):
            table = tomllib.loads(block).get("tool", {}).get("multiarch")
            if table:
                found.append(table)
    return found


def test_every_readme_example_is_valid_by_the_json_schema() -> None:
    examples = readme_examples()
    assert len(examples) >= 3
    for table in examples:
        jsonschema.validate(table, schema.json_schema())


def wrong(value_schema: Mapping[str, Any]) -> str:
    """A TOML value of a type the key does not take (the first the JSON schema refuses)."""
    for text in ("5", '"not this"', "true", "{ a = 1 }", "[{ a = 1 }]"):
        if not jsonschema.Draft7Validator(value_schema).is_valid(tomllib.loads(f"v = {text}")["v"]):
            return text
    raise AssertionError(f"the schema takes anything: {value_schema}")


@pytest.mark.parametrize("key", schema.TOP, ids=lambda key: key.name)
def test_a_value_of_another_type_is_refused_by_name(key: schema.Key) -> None:
    text = f'[tool.multiarch]\nplatforms = ["linux/amd64"]\n{key.name} = {wrong(key.json)}\n{IMAGE}'
    if key.name == "platforms":
        text = f"[tool.multiarch]\nplatforms = {wrong(key.json)}\n{IMAGE}"
    with pytest.raises(FatalError) as info:
        config.load(text, source="pyproject.toml", tracked=TRACKED)
    assert f"[tool.multiarch.{key.name}]" in str(info.value)


@pytest.mark.parametrize("key", schema.IMAGE, ids=lambda key: key.name)
def test_an_image_value_of_another_type_is_refused_by_name(key: schema.Key) -> None:
    text = f'[tool.multiarch]\nplatforms = ["linux/amd64"]\n{IMAGE}{key.name} = {wrong(key.json)}\n'
    if key.name == "context":
        text = '[tool.multiarch]\nplatforms = ["linux/amd64"]\n[tool.multiarch.images.api]\ncontext = 5\n'
    with pytest.raises(FatalError) as info:
        config.load(text, source="pyproject.toml", tracked=TRACKED)
    assert f"[tool.multiarch.images.api.{key.name}]" in str(info.value)


def test_the_schema_module_writes_the_file_and_prints_the_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shipped = schema.FILE.read_text()
    monkeypatch.setattr(schema, "FILE", tmp_path / "multiarch.schema.json")
    monkeypatch.setattr(sys, "argv", ["python -m mab_hook.schema"])
    assert schema.main() == 0
    assert (tmp_path / "multiarch.schema.json").read_text() == shipped
    monkeypatch.setattr(sys, "argv", ["python -m mab_hook.schema", "--markdown"])
    assert schema.main() == 0
    assert capsys.readouterr().out == schema.markdown()
