"""The package's structural rules (docs/development.md, "Architecture"): a model family is one seam, and the layers
import only downwards.

1. No family name (a name or title of the family table) appears in code outside ``corrvos/families/``: not as an
   identifier, not in a string (help texts included); docstrings, comments and the CLI's ``HELP`` /
   ``DESCRIPTION`` texts (documentation, which may cite the official code) are exempt. So there is no
   ``if arch == "..."`` branch anywhere in the engines, and a new family touches only its own package, one line
   of the table and its configs.
2. Each layer imports only the layers it may (the table ``ALLOWED`` below, checked on every ``import`` statement,
   including imports inside functions; ``if TYPE_CHECKING:`` blocks are exempt).
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

from corrvos.families import NAMES, cards

SRC = Path(__file__).resolve().parents[1] / "src" / "corrvos"
TEXT_CONSTANTS = re.compile(r"^([A-Z_]*DESCRIPTION|HELP)$")


def _family_pattern() -> re.Pattern[str]:
    words = {*NAMES, *(c.title for c in cards().values())}
    return re.compile("|".join(sorted(map(re.escape, words), key=len, reverse=True)), re.IGNORECASE)


def _exempt_lines(tree: ast.Module) -> set[int]:
    """Lines of docstrings (any string statement) and of module-level HELP / DESCRIPTION texts."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            lines.update(range(node.lineno, node.end_lineno + 1))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and TEXT_CONSTANTS.match(t.id) for t in node.targets
        ):
            lines.update(range(node.lineno, node.end_lineno + 1))
    return lines


_TEXT_TOKENS = {tokenize.NAME, tokenize.STRING, getattr(tokenize, "FSTRING_MIDDLE", tokenize.STRING)}


def family_mentions(source: str, pattern: re.Pattern[str]) -> list[tuple[int, str]]:
    """(line, token) of every identifier or string token of ``source`` that names a family, outside the exempt
    lines."""
    exempt = _exempt_lines(ast.parse(source))
    found = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in _TEXT_TOKENS and tok.start[0] not in exempt:
            if pattern.search(tok.string):
                found.append((tok.start[0], tok.string[:70]))
    return found


def _package_files() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "families" not in p.relative_to(SRC).parts)


def test_no_family_name_outside_the_family_packages() -> None:
    pattern = _family_pattern()
    offenders = {
        str(path.relative_to(SRC)): hits
        for path in _package_files()
        if (hits := family_mentions(path.read_text(encoding="utf-8"), pattern))
    }
    assert offenders == {}


def test_the_scanner_sees_branches_strings_and_identifiers_but_not_docs() -> None:
    pattern = _family_pattern()
    code = (
        '"""Module doc citing hkchengrex/STCN."""\n'
        'HELP = "train XMem"\n'
        "def f(arch):\n"
        '    """Doc naming XMem."""\n'
        "    # comment naming stcn\n"
        '    if arch == "stcn":\n'
        "        return xmem_thing\n"
        '    return f"{arch} is not XMem"\n'
    )
    assert [line for line, _ in family_mentions(code, pattern)] == [6, 7, 8]


# ------------------------------------------------------------------------------------------ layering

#: package (first component under corrvos/, or a top-level module) -> corrvos packages it may import.
BASE = {
    "errors",
    "types",
    "utils",
    "yaml_dataclasses",
    "checkpoint_io",
    "devices",
    "weight_file",
    "progress",
    "cpu_threads",
    "__init__",
}
ALLOWED: dict[str, set[str]] = {
    **{name: BASE for name in BASE},
    "config": BASE | {"data", "losses", "families", "config_checks"},
    "config_checks": BASE | {"data", "losses", "families"},  # the checks of corrvos.config (types only from it)
    "data": BASE,
    "weights": BASE | {"families"},
    "models": BASE | {"weights", "families"},  # only models/__init__ (the entry points) reaches the table
    "losses": BASE | {"models", "config"},
    "evaluation": BASE | {"data"},
    "families": BASE | {"models", "data", "losses", "inference", "config", "families"},
    "inference": BASE | {"models", "data", "families", "config"},
    "training": BASE | {"models", "data", "losses", "inference", "families", "config", "weights", "visualize"},
    "visualize": BASE | {"models", "data", "inference", "evaluation", "losses", "families", "config", "weights"},
    "annotate": BASE | {"data", "inference", "visualize"},
    "demo": {"*"},
    "cli": {"*"},
    "__main__": {"cli"},
}
#: inside ``families``: what a family module may import from the engines (interfaces only).
FAMILY_ENGINE_MODULES = {
    "corrvos.inference.config",
    "corrvos.inference.objects",
    "corrvos.inference.memory_store",
    "corrvos.inference.recurrence",
}


def _imports(tree: ast.Module) -> list[tuple[int, str]]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                skip.update(range(child.lineno, child.end_lineno + 1))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
    return [(line, mod) for line, mod in out if line not in skip and mod.split(".")[0] == "corrvos"]


def _layer(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def layering_violations() -> list[str]:
    problems = []
    for path in sorted(SRC.rglob("*.py")):
        layer, rel = _layer(path), path.relative_to(SRC)
        allowed = ALLOWED.get(layer)
        assert allowed is not None, f"{rel}: layer {layer!r} has no entry in ALLOWED"
        for line, module in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            target = module.split(".")[1] if module.count(".") else "__init__"
            if target == layer or "*" in allowed:
                continue
            if target not in allowed:
                problems.append(f"{rel}:{line} ({layer}) imports {module}")
            elif layer == "families" and target == "inference" and module not in FAMILY_ENGINE_MODULES:
                problems.append(f"{rel}:{line}: a family imports the engine module {module}")
            elif layer == "models" and target == "families" and rel.name != "__init__.py":
                problems.append(f"{rel}:{line}: a shared model block imports the family table ({module})")
            elif layer != "families" and module.startswith("corrvos.families.") and module.split(".")[2] in NAMES:
                problems.append(f"{rel}:{line}: imports a family package directly ({module}); use corrvos.families")
    return problems


def test_layers_import_only_downwards() -> None:
    assert layering_violations() == []


@pytest.mark.parametrize(
    ("layer", "module", "allowed"),
    [
        ("data", "corrvos.inference.geometry", False),
        ("inference", "corrvos.data.io", True),
        ("models", "corrvos.cli", False),
    ],
)
def test_layer_table_entries(layer: str, module: str, allowed: bool) -> None:
    assert (module.split(".")[1] in ALLOWED[layer]) is allowed
