"""Imports only go downward: a module imports only from layers listed before its own."""

import ast
from pathlib import Path

import userstrata

LAYERS = [
    {"errors", "schema", "i18n"},
    {"config"},
    {"charts"},
    {"_engine", "store"},
    {"ingest", "datasets"},
    {"features"},
    {"segments"},
    {"models"},
    {"measure"},
    {"activate"},
    {"workspace"},
    {"export"},
    {"report"},
    {"serve"},  # the dashboard shows the report's sections
    {"cli"},  # the command line starts the server and writes the report
]
ROOT = Path(userstrata.__file__).parent


def _layer(part: str) -> int:
    for i, names in enumerate(LAYERS):
        if part in names:
            return i
    raise AssertionError(f"userstrata.{part} is in no layer: add it to LAYERS in {__file__}")


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names)


def test_imports_only_go_downward():
    wrong = []
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if rel == Path("__init__.py"):
            continue  # the package root re-exports the facade lazily
        own = _layer(rel.parts[0].removesuffix(".py"))
        for module in _imports(path):
            parts = module.split(".")
            if parts[0] != "userstrata" or len(parts) == 1:
                continue
            if _layer(parts[1]) > own or (_layer(parts[1]) == own and parts[1] != rel.parts[0].removesuffix(".py")):
                wrong.append(f"{rel} imports {module}")
    assert not wrong, "upward or sideways imports:\n" + "\n".join(wrong)


# Packages only the tests use (pyproject's dev extra): a module of userstrata importing one
# would break for users, who do not install them.
TEST_ONLY = {"polars", "pytest", "hypothesis"}


def test_no_module_imports_a_test_only_package():
    wrong = [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in ROOT.rglob("*.py")
        for module in _imports(path)
        if module.split(".")[0] in TEST_ONLY
    ]
    assert not wrong, "\n".join(wrong)
