"""The public surface: every module's `__all__` is exported, and the layers import one way."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import adaptive_strategies
import pytest

import adaptive
import adaptive.confidence
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


# The curated surface: what an application needs, each name documented; helpers stay private.
MAX_PUBLIC = 80
NEVER_PUBLIC = {
    # the loopback HTTP server (test and simulator plumbing)
    "serve",
    "serve_forever",
    "run_in_thread",
    "HTTPRequest",
    "HTTPResponse",
    "HTTPServer",
    "SSEResponse",
    "RunningServer",
    # ledger and metering internals
    "prompt_token_bound",
    "current_meter",
    "merge_responses",
    "Reservation",
    # the simulator lives in adaptive.sim
    "SimEndpoint",
    "SimRewardEndpoint",
    "SimServer",
}


def test_the_public_api_is_curated() -> None:
    assert len(adaptive.__all__) <= MAX_PUBLIC, f"{len(adaptive.__all__)} public names"
    assert not NEVER_PUBLIC & set(adaptive.__all__)
    assert "__version__" not in adaptive.__all__ and isinstance(adaptive.__version__, str)


@pytest.mark.parametrize("name", adaptive.__all__)
def test_every_public_name_is_documented(name: str) -> None:
    obj = getattr(adaptive, name)
    doc = inspect.getdoc(obj)
    assert doc and len(doc.split()) >= 3, f"adaptive.{name} has no docstring"
    if inspect.isclass(obj) or inspect.isfunction(obj):
        # Documented where it is defined, not inherited from a base.
        assert obj.__doc__, f"adaptive.{name} inherits its docstring"


def test_the_simulator_is_reached_as_adaptive_sim() -> None:
    import adaptive.sim

    assert "SimEndpoint" in adaptive.sim.__all__ and not hasattr(adaptive, "SimEndpoint")


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
        public = {
            "adaptive": adaptive.__all__,
            "adaptive.endpoints": adaptive.endpoints.__all__,
            "adaptive.confidence": adaptive.confidence.__all__,
        }
        assert module in public, f"strategies/{path.name} imports {module}, which is not public"
        hidden = [n for n in names if n not in public[module]]
        assert not hidden, f"strategies/{path.name} imports {hidden}, not in {module}.__all__"


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


CORE = sorted([*(ROOT / "adaptive").glob("*.py"), *(ROOT / "adaptive" / "endpoints").glob("*.py")])


def _absolute(path: Path, module: str, names: tuple[str, ...], level: int) -> list[str]:
    """The absolute module names an import statement in `path` reaches."""
    if not level:
        return [module]
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]
    base = ".".join(package[: len(package) - level + 1])
    if module:
        return [f"{base}.{module}"]
    return [f"{base}.{n}" for n in names]


@pytest.mark.parametrize("path", CORE, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_core_never_imports_the_simulator_the_cli_or_the_strategies(path: Path) -> None:
    if path.name == "__main__.py":  # `python -m adaptive` runs the command line by design
        return
    for module, names, level in imports(path):
        for target in _absolute(path, module, names, level):
            for upper in ("adaptive.sim", "adaptive.cli", "adaptive_strategies"):
                assert target != upper and not target.startswith(upper + "."), (
                    f"{path.relative_to(ROOT)} imports {target}: the core must not depend on {upper}"
                )


def test_the_layer_check_resolves_relative_imports(tmp_path: Path) -> None:
    path = ROOT / "adaptive" / "endpoints" / "x.py"
    assert _absolute(path, "sim", (), 2) == ["adaptive.sim"]
    assert _absolute(path, "", ("cli",), 2) == ["adaptive.cli"]
    assert _absolute(ROOT / "adaptive" / "x.py", "_ledger", (), 1) == ["adaptive._ledger"]
