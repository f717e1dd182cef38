"""The package's shape (issue 12): dependencies run one way (the objectives know nothing of the training
loop, the metrics nothing of a data set), and no module is longer than a reader takes in at once."""

import ast
from pathlib import Path

import pytest

import apexgen.config

PACKAGE = Path(apexgen.config.__file__).parent
MAX_MODULE_LINES = 300


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


def test_no_module_is_longer_than_300_lines():
    lengths = {str(path.relative_to(PACKAGE)): len(path.read_text().splitlines()) for path in PACKAGE.rglob("*.py")}
    assert lengths and not {name: n for name, n in lengths.items() if n > MAX_MODULE_LINES}
