"""The house's layering, checked by parsing imports: data flows one way."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = {"suggest", "indexes", "ranking", "adapters", "eval"}
RECORDS = {"suggest.types", "suggest.errors", "suggest.text", "suggest.events"}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return {n for n in names if n.split(".")[0] in PROJECT}


@pytest.mark.parametrize("package", ["indexes", "ranking", "adapters"])
def test_component_packages_import_only_records_and_themselves(package):
    for path in (ROOT / package).glob("*.py"):
        for name in _imports(path):
            assert name in RECORDS or name.split(".")[0] == package, f"{path.name} imports {name}"


@pytest.mark.parametrize("module", sorted(RECORDS))
def test_records_import_nothing_of_the_project(module):
    path = ROOT / (module.replace(".", "/") + ".py")
    assert _imports(path) <= RECORDS - {module}, path


def test_nothing_below_the_web_layer_imports_it():
    for path in list((ROOT / "suggest").glob("*.py")) + list((ROOT / "indexes").glob("*.py")):
        if path.name not in ("app.py", "cli.py"):
            assert not {"suggest.app", "suggest.cli"} & _imports(path), path
