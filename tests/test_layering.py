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


#: The package's layers, lowest first: a module may import the modules of its own package (folder) and those of
#: the layers below its own, never a layer above nor a neighbour on its own layer. ``breastseg`` itself (the
#: version) is below everything.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "labels", "io", "environment", "paths"),  # no breastseg imports but the version
    ("pseudonym", "server"),                      # the key, the team server's accounts
    ("dicom",),                                   # DICOM reading, NIfTI writing, volume resampling
    ("us",),                                      # ultrasound readers and maps
    ("config",),                                  # the params schema and the typed settings
    ("tracking",),                                # MLflow and Optuna stores
    ("synth",),                                   # the demo cohort's phantoms
    ("data",),                                    # cohorts, conversion shards, slices, splits, data module
    ("stages",),                                  # what each workflow stage reads (its rerun trigger)
    ("mri",),                                     # the degree of BPE
    ("models",),                                  # networks, bundles, segmentation
    ("evaluation",),                              # metrics, evaluation, the gate
    ("inference",),                               # predict
    ("training", "registry", "report", "suggest"),
    ("cli",),
)


def _unit(rel: str) -> str:
    """The layer unit of a module: its top-level package, or the top-level module itself."""
    return rel.split("/")[0].removesuffix(".py")


def test_every_module_has_a_layer():
    units = {u for layer in LAYERS for u in layer}
    assert {_unit(rel) for rel in _modules()} - {"__init__"} <= units
    assert len(units) == sum(map(len, LAYERS))


def test_no_import_runs_up_a_layer_or_sideways():
    level = {u: i for i, layer in enumerate(LAYERS) for u in layer}
    offenders = []
    for rel, tree in _modules().items():
        me = _unit(rel)
        for name in imported_modules(rel, tree):
            parts = name.split(".")
            if parts[0] != "breastseg" or len(parts) < 2 or parts[1] not in level or parts[1] == me:
                continue
            if me != "__init__" and level[parts[1]] >= level[me]:
                offenders.append(f"{rel} -> {name}")
    assert not offenders, "imports against the layer table:\n" + "\n".join(sorted(offenders))


def test_no_module_imports_itself_in_a_circle():
    """No circle of imports between files (inside functions too), within a package or across packages."""
    modules = _modules()

    def dotted(rel: str) -> str:
        return ("breastseg." + rel[:-3].replace("/", ".")).removesuffix(".__init__")

    known = {dotted(rel) for rel in modules}
    graph = {dotted(rel): {n for n in imported_modules(rel, tree) if n in known and n != dotted(rel)
                           and n != "breastseg"} for rel, tree in modules.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(v: str) -> list[str] | None:
        state[v] = 1
        path.append(v)
        for w in sorted(graph[v]):
            if state.get(w) == 1:
                return path[path.index(w):] + [w]
            if w not in state:
                found = visit(w)
                if found:
                    return found
        path.pop()
        state[v] = 2
        return None

    for v in sorted(graph):
        if v not in state:
            circle = visit(v)
            assert circle is None, " -> ".join(circle)
