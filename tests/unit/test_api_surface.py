"""The public surface of pel, and the import-direction rule of its pure core."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import pytest

import pel

SRC = Path(__file__).resolve().parents[2] / "src"
PEL = SRC / "pel"

#: Modules the pure core (graph, scheduler) must never import.
FORBIDDEN = (
    "pel._runtime",
    "pel._executor",
    "pel.backends",
    "pel.transport",
    "threading",
    "time",
    "os",
    "selectors",
    "subprocess",
)


def pure_modules() -> list[str]:
    names = ["pel.graph"]
    for path in sorted((PEL / "scheduler").glob("*.py")):
        stem = path.stem
        names.append("pel.scheduler" if stem == "__init__" else f"pel.scheduler.{stem}")
    return names


def module_file(name: str) -> Path | None:
    rel = Path(*name.split("."))
    for candidate in (SRC / rel.with_suffix(".py"), SRC / rel / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def is_package(name: str) -> bool:
    path = module_file(name)
    return path is not None and path.name == "__init__.py"


def imports_of(name: str) -> list[tuple[str, int]]:
    """Every module ``name``'s source imports (anywhere in it), absolute, with line."""
    path = module_file(name)
    assert path is not None, name
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if is_package(name) else name.rpartition(".")[0]
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base_parts = parts[: len(parts) - (node.level - 1)]
                assert base_parts, f"{name}: relative import beyond the top package"
                base = ".".join(base_parts)
                if node.module:
                    base = f"{base}.{node.module}"
            else:
                base = node.module or ""
            found.append((base, node.lineno))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if module_file(sub) is not None:
                    found.append((sub, node.lineno))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "__import__"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            found.append((str(node.args[0].value), node.lineno))
    return found


def forbidden(module: str) -> bool:
    return any(module == bad or module.startswith(bad + ".") for bad in FORBIDDEN)


# -- pel.__all__ ------------------------------------------------------------------------


def test_all_names_are_unique() -> None:
    dupes = [name for name, count in Counter(pel.__all__).items() if count > 1]
    assert dupes == []


def test_all_names_exist() -> None:
    missing = [name for name in pel.__all__ if not hasattr(pel, name)]
    assert missing == []


def test_all_is_a_list_of_strings() -> None:
    assert all(type(name) is str for name in pel.__all__)
    assert pel.__all__


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from pel import *", namespace)
    namespace.pop("__builtins__")
    assert sorted(namespace) == sorted(pel.__all__)


@pytest.mark.parametrize("module", ["pel.scheduler", "pel.graph", "pel._arguments"])
def test_submodule_all_is_consistent(module: str) -> None:
    import importlib

    mod = importlib.import_module(module)
    names = mod.__all__
    assert len(names) == len(set(names))
    assert [n for n in names if not hasattr(mod, n)] == []


# -- import direction ------------------------------------------------------------------


def test_pure_module_list_covers_the_scheduler_package() -> None:
    mods = pure_modules()
    assert "pel.graph" in mods
    for expected in ("events", "instructions", "policy", "state"):
        assert f"pel.scheduler.{expected}" in mods
    assert "pel.scheduler" in mods


def test_import_scanner_sees_relative_and_absolute_imports() -> None:
    found = {m for m, _ in imports_of("pel.scheduler.state")}
    assert {"pel.graph", "pel.scheduler.policy", "pel.scheduler.events", "heapq"} <= found
    assert {"pel._errors"} <= {m for m, _ in imports_of("pel.graph")}


@pytest.mark.parametrize("module", pure_modules())
def test_pure_core_imports_nothing_impure(module: str) -> None:
    bad = [f"{m} (line {line})" for m, line in imports_of(module) if forbidden(m)]
    assert bad == [], f"{module} imports {bad}"


@pytest.mark.parametrize("module", pure_modules())
def test_pure_core_does_not_import_the_pel_package_root(module: str) -> None:
    # ``from .. import X`` or ``import pel`` would pull in pel/__init__, and with
    # it the executor and runtime.
    bad = [f"line {line}" for m, line in imports_of(module) if m == "pel"]
    assert bad == [], f"{module} imports the pel package root at {bad}"


def test_pure_core_closure_within_pel_stays_pure() -> None:
    """Follow pel-internal imports from the pure modules: none reaches a forbidden one."""
    seen: set[str] = set()
    todo = list(pure_modules())
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for imported, line in imports_of(name):
            assert not forbidden(imported), f"{name} imports {imported} (line {line})"
            if imported.startswith("pel.") and module_file(imported) is not None:
                todo.append(imported)
    assert "pel._errors" in seen


def test_forbidden_matches_modules_and_submodules_only() -> None:
    assert forbidden("time")
    assert forbidden("os.path")
    assert forbidden("pel.backends.processes.pool")
    assert forbidden("pel.transport")
    assert not forbidden("timeit")
    assert not forbidden("pel._errors")
    assert not forbidden("pel.scheduler.policy")


def test_lazy_error_names_match_the_error_module() -> None:
    """pel lists its errors itself (to import them lazily); the lists must agree."""
    from pel import _errors

    assert sorted(pel._ERRORS) == sorted(_errors.__all__)
