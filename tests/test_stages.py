"""Each stage's rerun trigger (:mod:`breastseg.stages`) holds exactly the settings the stage reads.

- The schema walk: every setting of the demo's resolved params is changed in turn, and exactly the stages that
  read it (the table below) get another trigger, for exactly the experiments whose settings it is.
- The code check: every ``params["section"]["key"]`` a stage's modules read is in its trigger.
"""
from __future__ import annotations

import ast
import copy
from pathlib import Path

import pytest
import yaml

from breastseg import stages
from breastseg.config import SCHEMA, Settings, load_params

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "breastseg"

#: setting (dotted path; the longest prefix given wins; ``E`` any experiment) -> the stages that read it.
READ_BY = {
    "cohort": set(),                                 # where the data is and how it is named: the rules' inputs
    "cohort.label_map": {"convert"},
    "cohort.patient_map": {"evaluate", "register"},
    "run": set(),                                    # which experiments: which jobs exist
    "run.seeds": {"train", "compare"},
    "run.folds": {"train"},
    "synth": {"synth"},
    "convert.on_error": {"convert"},
    "convert.shards": set(),                         # how patients are grouped into jobs: the fingerprint files
    "us_maps": {"prepare"},
    "tracking": set(),                               # where runs are logged
    "split": {"split"},
    "split.seed": {"split", "train"},
    "train": {"tune", "train"},
    "train.augment.mirror": {"tune", "train", "suggest"},
    "train.augment.brightness": {"tune", "train", "suggest"},
    "experiments.E": {"tune", "train"},
    "experiments.E.channels": {"prepare", "tune", "train"},
    "experiments.E.image_size": {"prepare", "tune", "train"},
    "experiments.E.preprocess": {"prepare", "tune", "train"},
    "experiments.E.train.augment.mirror": {"tune", "train", "suggest"},
    "experiments.E.train.augment.brightness": {"tune", "train", "suggest"},
    "tune": {"tune"},
    "evaluation.seed": {"evaluate", "register", "compare"},
    "evaluation.bpe_cutoffs": {"evaluate", "register", "train"},  # the model bundle records them for predict
    "evaluation.bpe_degree": {"evaluate", "register", "train"},
    "suggest": {"suggest"},
    "register.metric": {"tune", "train", "register"},
    "register.margin": {"register"},
}
#: Not walked: what an experiment is (its dataset) and which comparisons exist decide which jobs there are.
NOT_WALKED = ("experiments.E.dataset", "evaluation.comparisons")


def triggers(params: dict) -> dict[tuple[str, str], object]:
    """(stage, experiment / dataset / comparison) -> the stage's trigger, for every job of the demo."""
    s = Settings.from_params(params)
    out: dict[tuple[str, str], object] = {("synth", ""): stages.synth(s), ("split", ""): stages.split(s)}
    for dataset in ("mri", "us"):
        out["convert", dataset] = stages.convert(s, dataset)
    for name in params["experiments"]:
        out["prepare", name] = stages.prepare(s, name)
        for stage in ("tune", "train", "evaluate", "register", "suggest"):
            out[stage, name] = getattr(stages, stage)(s, name)
    for pair in params["evaluation"]["comparisons"]:
        out["compare", pair["name"]] = stages.compare(s, pair)
    return out


def _leaves(node, path=()):
    if isinstance(node, dict) and node:
        for k, v in node.items():
            yield from _leaves(v, (*path, k))
    else:
        yield path


def _schema_node(path: tuple[str, ...]):
    schema = yaml.safe_load(SCHEMA.read_text())
    node = schema
    for i, key in enumerate(path):
        if "$ref" in node:
            node = schema["$defs"][node["$ref"].split("/")[-1]]
        props = node.get("properties") or {}
        if key in props:
            node = props[key]
        elif isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]
        else:
            return {}
    return schema["$defs"][node["$ref"].split("/")[-1]] if "$ref" in node else node


def _changed(value, path):
    enum = _schema_node(path).get("enum")
    if enum:
        return next(v for v in enum if v != value)
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 1.5 + 0.125
    if isinstance(value, str):
        return value + "-x"
    if isinstance(value, list):
        return [*value, value[-1]] if value else ["x"]
    if isinstance(value, dict):
        return {"x": {"low": 0.1, "high": 0.2}}
    return "x"


def _generic(path: tuple[str, ...]) -> str:
    return ".".join("E" if i == 1 and path[0] == "experiments" else k for i, k in enumerate(path))


def _expected(params: dict, path: tuple[str, ...]) -> set[tuple[str, str]]:
    generic = _generic(path)
    key = max((k for k in READ_BY if generic == k or generic.startswith(k + ".")), key=len)
    readers = READ_BY[key]
    out = set()
    for (stage, job) in triggers(params):
        if stage not in readers:
            continue
        if path[0] == "experiments" and job in params["experiments"] and job != path[1]:
            continue  # another experiment's setting
        if path[0] == "train" and job in params["experiments"]:  # the global block, unless the experiment overrides
            own = params["experiments"][job].get("train") or {}
            for k in path[1:]:
                own = own.get(k, {}) if isinstance(own, dict) and k in own else None
                if own is None:
                    break
            if own is not None:
                continue
        if stage == "convert" and path[:2] == ("cohort", "label_map") and job != "mri":
            continue
        if path[0] == "us_maps" and stage == "prepare":
            exp = params["experiments"][job]
            if exp["dataset"] != "us" or stages.prepare(Settings.from_params(params), job)["us_maps"].get(path[1], "absent") == "absent":
                continue
        if path[:2] == ("cohort", "patient_map") and params["experiments"][job]["dataset"] != "us":
            continue
        if path[:2] in (("evaluation", "bpe_cutoffs"), ("evaluation", "bpe_degree")) \
                and params["experiments"][job]["dataset"] != "mri":
            continue
        out.add((stage, job))
    return out


@pytest.fixture(scope="module")
def params():
    return load_params(ROOT / "params.yaml")


def _walked(params):
    paths = [p for p in _leaves(params) if not any(_generic(p) == n or _generic(p).startswith(n + ".")
                                                      for n in NOT_WALKED)]
    assert len(paths) > 100
    return paths


def test_changing_a_setting_reruns_exactly_the_stages_that_read_it(params):
    before = triggers(params)
    wrong = []
    for path in _walked(params):
        p = copy.deepcopy(params)
        node = p
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = _changed(node[path[-1]], path)
        after = triggers(p)
        changed = {job for job in before if before[job] != after[job]}
        expected = _expected(params, path)
        if changed != expected:
            wrong.append(f"{'.'.join(path)}: reruns {sorted(changed)}, should rerun {sorted(expected)}")
    assert not wrong, "\n".join(wrong)


def test_register_metric_reruns_training_and_tuning(params):
    p = copy.deepcopy(params)
    p["register"]["metric"] = "image_dice_mean"
    before, after = triggers(params), triggers(p)
    assert {stage for (stage, _), t in before.items() if after[stage, _] != t} == {"tune", "train", "register"}


#: The modules each stage runs that read params, and what they may read without a rerun: the cohort (the rules'
#: inputs are its files; its name and folder tag the runs), the tracking stores, the experiments' names.
STAGE_MODULES = {
    "convert": ["data/shards.py"],
    "split": ["data/split.py"],
    "tune": ["training/tune.py"],
    "train": ["training/train.py"],
    "evaluate": ["evaluation/evaluate.py", "evaluation/degree.py"],
    "register": ["evaluation/gate.py", "registry.py"],
}
PROVENANCE = {"cohort", "cohort.root", "cohort.name", "tracking", "experiments"}  # experiments: their names


def _params_reads(path: Path) -> set[str]:
    """Dotted paths of the settings a module reads: ``params["a"]["b"]`` (or ``params["a"]``), and ``s.a.b`` of a
    name ``s`` bound to ``Settings.from_params(...)`` or a parameter annotated ``Settings``."""
    out = set()
    tree = ast.parse(path.read_text())
    typed = {t.id for node in ast.walk(tree) if isinstance(node, ast.Assign)
             and isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Attribute)
             and isinstance(node.value.func.value, ast.Name) and node.value.func.value.id == "Settings"
             for t in node.targets if isinstance(t, ast.Name)}
    typed |= {a.arg for node in ast.walk(tree) if isinstance(node, ast.arg)  # parameters annotated Settings
              for a in [node] if isinstance(a.annotation, ast.Name) and a.annotation.id == "Settings"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) \
                and isinstance(node.value.value, ast.Name) and node.value.value.id in typed:
            whole = node.attr in ("as_dict", "items", "keys", "values", "get")  # the section as a whole
            out.add(node.value.attr if whole else f"{node.value.attr}.{node.attr}")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in typed:
            out.add(node.attr)
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            keys, inner = [node.slice.value], node.value
            while isinstance(inner, ast.Subscript) and isinstance(inner.slice, ast.Constant):
                keys.insert(0, inner.slice.value)
                inner = inner.value
            if isinstance(inner, ast.Name) and inner.id == "params" and all(isinstance(k, str) for k in keys):
                out.add(".".join(keys[:2]))
    return out


def _covered(read: str, keys: set[str]) -> bool:
    head = read.split(".")[0]
    return (read in keys or head in keys or read in PROVENANCE or head == "tracking"
            or ("." not in read and any(k.startswith(read + ".") for k in keys))  # the section read into a local
            or ("experiment" in keys and head in ("experiments", "train", "us_maps")))


@pytest.mark.parametrize("stage", sorted(STAGE_MODULES))
def test_a_stage_reads_only_what_its_trigger_holds(params, stage):
    keys = set().union(*(set(t) for (name, _), t in triggers(params).items() if name == stage))
    read = set().union(*(_params_reads(PACKAGE / m) for m in STAGE_MODULES[stage]))
    assert read, f"{stage}: no params read found in {STAGE_MODULES[stage]}"
    missing = sorted(r for r in read if not _covered(r, keys))
    assert not missing, f"{stage} reads {missing}, which its trigger leaves out (breastseg.stages.{stage})"


def test_the_code_check_sees_a_missing_setting():
    assert not _covered("register.metric", {"experiment", "run.seeds"})
    assert _covered("register.metric", {"register.metric"}) and _covered("evaluation", {"evaluation.seed"})
