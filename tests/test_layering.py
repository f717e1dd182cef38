"""The package's dependencies run one way (issue 12): the objectives know nothing of the training loop,
and the metrics nothing of a data set."""

import ast
from pathlib import Path

import pytest

import apexgen.config

PACKAGE = Path(apexgen.config.__file__).parent


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize(("package", "forbidden"), [("objectives", "apexgen.train"), ("eval", "apexgen.data")])
def test_a_package_does_not_import_the_layer_above_it(package, forbidden):
    offenders = {
        f"{path.name}: {name}"
        for path in sorted((PACKAGE / package).glob("*.py"))
        for name in imported_modules(path)
        if name == forbidden or name.startswith(forbidden + ".")
    }
    assert not offenders, f"apexgen.{package} imports {forbidden}: {sorted(offenders)}"


def test_the_layering_check_sees_a_function_level_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from apexgen.train.loop import Trainer\n")
    assert "apexgen.train.loop" in imported_modules(module)
