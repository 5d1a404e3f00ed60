"""The package's layering and the single home of the label vocabulary, checked on the source (``ast``).

- Only ``inference/`` and ``cli.py`` import :mod:`breastseg.inference` (training, evaluation, data and the rest
  load and build models through :mod:`breastseg.models.bundle`).
- ``inference/`` imports nothing from ``evaluation/``.
- The "not annotated" value 255 is given a module-level name only in :mod:`breastseg.labels`.
- ``bpe_category`` is defined only in :mod:`breastseg.labels`.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "breastseg"


def _modules() -> dict[str, ast.Module]:
    """Every module of the package by its path relative to the package folder ("inference/model.py")."""
    return {p.relative_to(PACKAGE).as_posix(): ast.parse(p.read_text(), filename=str(p))
            for p in sorted(PACKAGE.rglob("*.py"))}


def _package_of(rel: str) -> list[str]:
    """``["breastseg", "inference"]`` for "inference/model.py" (the package a relative import starts from)."""
    return ["breastseg", *rel.split("/")[:-1]]


def imported_modules(rel: str, tree: ast.Module) -> set[str]:
    """Absolute names of everything ``tree`` imports, at any depth (imports inside functions too); for
    ``from X import a`` both ``X`` and ``X.a`` (``a`` may be a submodule)."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(rel)
                base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            out.add(module)
            out.update(f"{module}.{alias.name}" for alias in node.names)
    return out


def _imports_from(names: set[str], package: str) -> list[str]:
    return sorted(n for n in names if n == package or n.startswith(package + "."))


def test_relative_imports_resolve_to_absolute_names():
    tree = ast.parse("from ..inference.model import load_model\nfrom . import readout\n"
                     "def f():\n    from .. import inference\n")
    names = imported_modules("evaluation/gate.py", tree)
    assert {"breastseg.inference.model", "breastseg.evaluation.readout", "breastseg.inference"} <= names


def test_only_inference_and_cli_import_inference():
    offenders = {}
    for rel, tree in _modules().items():
        if rel.startswith("inference/") or rel == "cli.py":
            continue
        found = _imports_from(imported_modules(rel, tree), "breastseg.inference")
        if found:
            offenders[rel] = found
    assert not offenders, f"modules below inference/ import it: {offenders}"


@pytest.mark.parametrize("path", ["Snakefile", *sorted(p.relative_to(ROOT).as_posix()
                                                       for p in (ROOT / "workflow").rglob("*.smk"))])
def test_workflow_does_not_import_inference(path):
    text = (ROOT / path).read_text()
    assert not re.search(r"^\s*(from|import)\s+breastseg\.inference\b", text, re.M), path


def test_inference_imports_nothing_from_evaluation():
    offenders = {}
    for rel, tree in _modules().items():
        if rel.startswith("inference/"):
            found = _imports_from(imported_modules(rel, tree), "breastseg.evaluation")
            if found:
                offenders[rel] = found
    assert not offenders, f"inference/ imports evaluation/: {offenders}"


def _module_level_names_of(tree: ast.Module, value: int) -> list[str]:
    """Names bound to the literal ``value`` by module-level assignments (``A = v``, ``A: int = v``,
    ``A, B = 1, v``)."""
    names = []
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, assigned = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, assigned = [node.target], node.value
        else:
            continue
        for target in targets:
            if isinstance(target, ast.Tuple) and isinstance(assigned, ast.Tuple):
                pairs = zip(target.elts, assigned.elts)
            else:
                pairs = [(target, assigned)]
            for t, v in pairs:
                if isinstance(t, ast.Name) and isinstance(v, ast.Constant) and v.value == value \
                        and not isinstance(v.value, bool):
                    names.append(t.id)
    return names


def test_not_annotated_value_is_named_only_in_labels():
    named = {rel: _module_level_names_of(tree, 255) for rel, tree in _modules().items()}
    named = {rel: found for rel, found in named.items() if found}
    assert named == {"labels.py": ["NOT_ANNOTATED"]}
    from breastseg.labels import NOT_ANNOTATED

    assert NOT_ANNOTATED == 255


def test_bpe_category_is_defined_only_in_labels():
    defined = sorted(rel for rel, tree in _modules().items() for node in ast.walk(tree)
                     if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "bpe_category")
    assert defined == ["labels.py"]
