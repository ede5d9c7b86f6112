"""The package's import layering, as CONTRIBUTING.md's "Layers" list says it: a module imports
only from its own layer and those before it, a command never imports another command, and every
module is in a layer. Imports inside functions count: they are imports all the same."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.conftest import ROOT

PACKAGE = ROOT / "hooks" / "mab_hook"
SHARED_BY_COMMANDS = {"commands", "commands.arguments"}  # the package's list, and the options several take


def layers() -> dict[str, int]:
    """Each module's layer, from CONTRIBUTING.md: `N. **name**: `module`, ...`."""
    text = (ROOT / "CONTRIBUTING.md").read_text()
    section = text[text.index("## Layers") :].split("\n## ", 1)[0]
    found: dict[str, int] = {}
    for number, names in re.findall(r"^(\d+)\. \*\*[^*]+\*\*: (.+)$", section, re.MULTILINE):
        for name in re.findall(r"`([\w.]+)`", names):
            assert name not in found, f"{name} is in two layers"
            found[name] = int(number)
    return found


def modules() -> dict[str, Path]:
    """Every module of the package, named as the layers name it (`mab_hook` is the package's own)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts) or "mab_hook"
        found[name] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules a module imports, wherever in it."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package
                base = ".".join(filter(None, (package, base)))
            elif base == "mab_hook" or base.startswith("mab_hook."):
                base = base.removeprefix("mab_hook").lstrip(".")
            else:
                continue
            for alias in node.names:
                member = ".".join(filter(None, (base, alias.name)))
                found.add(member if member in known else base or "mab_hook")
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("mab_hook.") for a in node.names if a.name.startswith("mab_hook.")}
    return {module for module in found if module in known and module != name}


def test_every_module_is_in_a_layer_and_every_layer_names_a_module() -> None:
    placed, found = layers(), modules()
    assert sorted(set(found) - set(placed)) == [], "modules in no layer: add them to CONTRIBUTING.md's Layers"
    assert sorted(set(placed) - set(found)) == [], "layers name modules that are gone"


def test_no_module_imports_from_a_later_layer_and_no_command_imports_another() -> None:
    placed, found = layers(), modules()
    wrong = []
    for name, path in found.items():
        for imported in sorted(imports(name, path, set(found))):
            if placed[imported] > placed[name]:
                wrong.append(f"{name} (layer {placed[name]}) imports {imported} (layer {placed[imported]})")
            elif (
                name.startswith("commands.")
                and imported.startswith("commands.")
                and not ({name, imported} & SHARED_BY_COMMANDS)
            ):
                wrong.append(f"command {name} imports command {imported}")
    assert wrong == []


def test_the_check_sees_imports_inside_functions_and_relative_ones(tmp_path: Path) -> None:
    """The reading the two tests above rely on: a late import counts, and a command's."""
    path = tmp_path / "gate.py"
    path.write_text(
        "from mab_hook import building, output\n"
        "def f():\n    from mab_hook.commands import doctor\n    import mab_hook.cli\n"
        "from .arguments import add_range\nfrom mab_hook.readiness.model import Check\n"
    )
    known = {
        "building",
        "output",
        "commands",
        "commands.doctor",
        "commands.arguments",
        "cli",
        "readiness.model",
    }
    assert imports("commands.gate", path, known) == {
        "building",
        "output",
        "commands.doctor",
        "cli",
        "commands.arguments",
        "readiness.model",
    }
