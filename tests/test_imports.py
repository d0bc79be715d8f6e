"""Import hygiene: no import cycles between corrvos modules, every module imports on its own, cheap config import.

The cycle check reads the sources (module-level and function-level imports, not ``if TYPE_CHECKING:`` blocks), so
a cycle hidden behind a lazy import inside a function is found too. The import checks run in a fresh interpreter.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import corrvos

PACKAGE_ROOT = Path(corrvos.__file__).resolve().parent
SOURCE_ROOT = PACKAGE_ROOT.parent

# module pairs that once imported each other (one of them lazily, inside a function); both orders must work
PAIRS = [
    ("corrvos.data.bl30k", "corrvos.data.clips"),
    ("corrvos.data.synthetic", "corrvos.data.synthetic_layouts"),
]


def _modules() -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (file, is_package) of every module of the corrvos package."""
    found = {}
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        parts = list(path.relative_to(SOURCE_ROOT).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported(module: str, path: Path, is_package: bool, known: set[str]) -> set[str]:
    """The corrvos modules that ``module`` imports anywhere in its body (``if TYPE_CHECKING:`` blocks excluded)."""
    edges: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            edges.update(alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source in known:
                edges.add(source)
            edges.update(f"{source}.{alias.name}" for alias in node.names if f"{source}.{alias.name}" in known)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    edges.discard(module)
    return edges


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=300)


def test_cycle_finder_sees_a_lazy_cycle():
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_no_import_cycles_between_corrvos_modules():
    modules = _modules()
    known = set(modules)
    graph = {name: _imported(name, path, is_package, known) for name, (path, is_package) in modules.items()}
    assert _cycles(graph) == []


def test_every_module_and_pair_imports_from_a_fresh_start():
    """Each module (and each former cycle pair, in both orders) imports with no corrvos module loaded before it."""
    orders = [[name] for name in sorted(_modules()) if name != "corrvos.__main__"]
    orders += [list(pair) for pair in PAIRS] + [list(reversed(pair)) for pair in PAIRS]
    code = f"""
import importlib, json, sys, traceback
failures = {{}}
for order in {json.dumps(orders)}:
    for name in [m for m in sys.modules if m == "corrvos" or m.startswith("corrvos.")]:
        del sys.modules[name]
    try:
        for name in order:
            importlib.import_module(name)
    except Exception:
        failures[" then ".join(order)] = traceback.format_exc(limit=3)
print(json.dumps(failures))
"""
    result = _run(code)
    assert result.returncode == 0, result.stderr
    failures = json.loads(result.stdout.strip().splitlines()[-1])
    assert failures == {}, "\n".join(f"{k}:\n{v}" for k, v in failures.items())


@pytest.mark.parametrize("pair", PAIRS, ids=lambda pair: " + ".join(pair))
def test_former_cycle_pairs_import_in_both_orders_in_fresh_interpreters(pair: tuple[str, str]):
    for first, second in (pair, pair[::-1]):
        result = _run(f"import {first}, {second}")
        assert result.returncode == 0, result.stderr


def test_config_import_does_not_load_the_model_stack():
    code = (
        "import json, sys, corrvos.config\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('corrvos', 'torch')))))"
    )
    result = _run(code)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert [m for m in loaded if m.startswith("corrvos.models")] == []
    assert [m for m in loaded if m.startswith("corrvos.losses.") and m != "corrvos.losses.config"] == []
    assert [m for m in loaded if m == "torch" or m.startswith("torch.")] == []


def test_lazy_losses_package_still_exports_its_names():
    result = _run(
        "import corrvos.losses as losses\n"
        "from corrvos.losses import LossConfig, compute_losses\n"
        "assert set(losses.__all__) <= set(dir(losses))\n"
        "assert all(callable(getattr(losses, name)) for name in losses.__all__)\n"
        "assert losses.LossConfig is LossConfig and losses.compute_losses is compute_losses\n"
    )
    assert result.returncode == 0, result.stderr
