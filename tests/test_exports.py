"""The public surface: every module's `__all__` is exported, and the layers import one way."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import adaptive_strategies
import pytest

import adaptive
import adaptive.endpoints

ROOT = Path(__file__).resolve().parents[1]
# Entry points that may wire the built-in strategies in: the library never imports them, so
# their names are not re-exported from `adaptive` (that would make adaptive import adaptive_strategies).
MAY_IMPORT_STRATEGIES = {"_main.py", "_demo.py", "__main__.py"}
ALL_PRIVATE = sorted(
    p for p in (ROOT / "adaptive").glob("_*.py") if p.name not in ("__init__.py", "__main__.py")
)
PRIVATE = [p for p in ALL_PRIVATE if p.name not in MAY_IMPORT_STRATEGIES]
ENDPOINTS = sorted(p for p in (ROOT / "adaptive" / "endpoints").glob("*.py") if p.name != "__init__.py")
STRATEGIES = sorted(
    p for p in (ROOT / "strategies" / "adaptive_strategies").glob("*.py") if p.name != "__init__.py"
)


def module_all(module_name: str) -> list[str]:
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    assert isinstance(names, list | tuple), f"{module_name} defines no __all__"
    return list(names)


def test_the_module_lists_are_not_empty() -> None:
    assert len(PRIVATE) >= 10 and len(ENDPOINTS) >= 5 and len(STRATEGIES) >= 1


@pytest.mark.parametrize("path", ALL_PRIVATE + ENDPOINTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_private_module_defines_all(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    assigned = {
        t.id
        for node in tree.body
        if isinstance(node, ast.Assign | ast.AnnAssign)
        for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(t, ast.Name)
    }
    assert "__all__" in assigned, f"{path.relative_to(ROOT)} defines no __all__"


@pytest.mark.parametrize("path", PRIVATE, ids=lambda p: p.name)
def test_private_module_names_are_exported_from_adaptive(path: Path) -> None:
    names = module_all(f"adaptive.{path.stem}")
    missing = sorted(set(names) - set(adaptive.__all__))
    assert not missing, f"adaptive/{path.name} exports {missing} but adaptive/__init__.py does not"
    module = importlib.import_module(f"adaptive.{path.stem}")
    for name in names:
        assert getattr(adaptive, name) is getattr(module, name)


@pytest.mark.parametrize("path", ENDPOINTS, ids=lambda p: p.name)
def test_endpoint_module_names_are_exported_from_adaptive_endpoints(path: Path) -> None:
    names = module_all(f"adaptive.endpoints.{path.stem}")
    missing = sorted(set(names) - set(adaptive.endpoints.__all__))
    assert not missing, f"adaptive/endpoints/{path.name} exports {missing} but endpoints/__init__.py does not"


@pytest.mark.parametrize(
    "package", [adaptive, adaptive.endpoints, adaptive_strategies], ids=lambda m: m.__name__
)
def test_all_has_no_duplicates_and_every_entry_resolves(package: object) -> None:
    names = list(package.__all__)  # type: ignore[attr-defined]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    assert not duplicates
    unresolved = [n for n in names if not hasattr(package, n)]
    assert not unresolved


@pytest.mark.parametrize("path", STRATEGIES, ids=lambda p: p.name)
def test_strategy_module_names_are_exported_from_strategies(path: Path) -> None:
    names = module_all(f"adaptive_strategies.{path.stem}")
    missing = sorted(set(names) - set(adaptive_strategies.__all__))
    assert not missing, f"strategies/{path.name} exports {missing} but strategies/__init__.py does not"


def imports(path: Path) -> list[tuple[str, tuple[str, ...], int]]:
    """(module, imported names, relative level) of every import statement in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out: list[tuple[str, tuple[str, ...], int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((alias.name, (), 0) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            out.append((node.module or "", tuple(a.name for a in node.names), node.level))
    return out


@pytest.mark.parametrize("path", STRATEGIES, ids=lambda p: p.name)
def test_strategies_use_only_adaptives_public_names(path: Path) -> None:
    for module, names, level in imports(path):
        if level or not (module == "adaptive" or module.startswith("adaptive.")):
            continue
        private = [part for part in module.split(".") if part.startswith("_")]
        assert not private, f"strategies/{path.name} imports private module {module}"
        if module == "adaptive":
            hidden = [n for n in names if n not in adaptive.__all__]
            assert not hidden, f"strategies/{path.name} imports {hidden}, not in adaptive.__all__"


def test_the_import_check_catches_a_private_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from adaptive._ledger import Ledger\nimport adaptive._stop\n")
    found = [m for m, _, _ in imports(bad)]
    assert found == ["adaptive._ledger", "adaptive._stop"]


@pytest.mark.parametrize(
    "path",
    sorted(p for p in (ROOT / "adaptive").rglob("*.py") if p.name not in MAY_IMPORT_STRATEGIES),
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_adaptive_never_imports_strategies(path: Path) -> None:
    for module, _, level in imports(path):
        if level:
            continue
        assert module != "adaptive_strategies" and not module.startswith("adaptive_strategies."), (
            f"{path.relative_to(ROOT)} imports {module}: adaptive must not depend on strategies"
        )


def test_version() -> None:
    assert isinstance(adaptive.__version__, str) and adaptive.__version__.count(".") == 2
