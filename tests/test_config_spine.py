"""One configuration spine: the schema ships with the package, every default is declared there once and filled
once when params are loaded, the library reads settings without defaults of its own, rules pass --params only."""
import ast
import copy
import re
from pathlib import Path

import pytest
import yaml

from breastseg import config
from breastseg.config import load_params, resolve_params

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "breastseg"
#: The names settings travel under in the library (the whole params, hyperparameters, an experiment, a block).
SETTINGS_NAMES = {"params", "hp", "exp", "cfg"}


def test_the_schema_is_package_data_and_the_workflow_reads_the_same_file():
    assert config.SCHEMA.is_file() and SRC in config.SCHEMA.resolve().parents
    assert (ROOT / "workflow" / "schemas" / "params.schema.yaml").resolve() == config.SCHEMA.resolve()
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'package-data\]\s*\nbreastseg = \["schemas/\*\.yaml"\]', pyproject)


def _settings_gets(path: Path, root: Path = ROOT) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
                and isinstance(node.func.value, ast.Name) and node.func.value.id in SETTINGS_NAMES):
            found.append(f"{path.relative_to(root)}:{node.lineno}: {node.func.value.id}.get(...)")
        # params["x"].get(...), exp["train"].get(...): a block of the settings read with a default of its own
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
                and isinstance(node.func.value, ast.Subscript) and isinstance(node.func.value.value, ast.Name)
                and node.func.value.value.id in SETTINGS_NAMES):
            found.append(f"{path.relative_to(root)}:{node.lineno}: {node.func.value.value.id}[...].get(...)")
    return found


def test_no_library_code_reads_a_setting_with_a_default_of_its_own():
    offenders = [hit for p in sorted(SRC.rglob("*.py")) if p.name != "config.py" for hit in _settings_gets(p)]
    assert offenders == []


def _untyped_reads(path: Path, root: Path = ROOT) -> list[str]:
    """``exp[...]`` / ``hp[...]``: an experiment or its training settings read as a raw dict."""
    return [f"{path.relative_to(root)}:{node.lineno}: {node.value.id}[...]"
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id in {"exp", "hp"}]


def test_library_stages_take_typed_experiments_not_dicts(tmp_path):
    offenders = [hit for p in sorted(SRC.rglob("*.py")) if p.name != "config.py" for hit in _untyped_reads(p)]
    assert offenders == []
    probe = tmp_path / "probe.py"  # the check finds what it looks for
    probe.write_text("def f(exp, hp):\n    return exp['name'], hp['lr'], exp.name\n")
    assert len(_untyped_reads(probe, tmp_path)) == 2


def test_experiment_is_frozen_typed_and_hashes_as_the_params_hold_it(params):
    """experiment() gives frozen settings whose dict form is the params' block with its name and merged train
    block: what run tags, study names and resume fingerprints hash (so they stay the same)."""
    import dataclasses

    from breastseg.config import Experiment, MapSettings, TrainSettings, experiment

    exp = experiment(params, "mass_us_entropy")
    assert isinstance(exp.train, TrainSettings) and exp.maps == MapSettings.from_params(params)
    assert exp.train.max_epochs == params["experiments"]["mass_us_entropy"]["train"]["max_epochs"]
    assert exp.train.lr == params["train"]["lr"] and "ud" not in exp.train.augment.mirror
    with pytest.raises(dataclasses.FrozenInstanceError):
        exp.image_size = 32
    block = copy.deepcopy(params["experiments"]["mass_us_entropy"])
    expected = {**block, "name": "mass_us_entropy", "train": {**params["train"], **block["train"]}}
    assert exp.as_dict() == expected
    assert Experiment.from_dict(exp.as_dict(), maps=exp.maps) == exp
    assert experiment(params, "bpe_mri").maps is None
    # a study's best parameters and a seed replace the block's own; an unknown key is refused in one line
    tuned = exp.train.with_values({"lr": 0.01, "seed": 5})
    assert (tuned.lr, tuned.seed, exp.train.lr) == (0.01, 5, params["train"]["lr"])
    from breastseg.errors import InputError

    with pytest.raises(InputError, match="unknown train key 'lrate'"):
        exp.train.with_values({"lrate": 0.01})


def test_tune_space_names_only_train_settings(params):
    p = copy.deepcopy(params)
    p["tune"]["space"]["dropout"] = {"type": "float", "low": 0.0, "high": 0.5}
    from breastseg.errors import InputError

    with pytest.raises(InputError, match="tune.space names 'dropout', which is not a train setting"):
        resolve_params(p)


def test_the_check_finds_what_it_looks_for(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f(params, hp):\n    return params.get('train', {}), params['train'].get('lr', 1), hp.get('x')\n")
    assert len(_settings_gets(bad, tmp_path)) == 3


def _defaults(node: dict, prefix: tuple = ()) -> dict[tuple, object]:
    out = {}
    for key, sub in (node.get("properties") or {}).items():
        if isinstance(sub, dict):
            if "default" in sub:
                out[prefix + (key,)] = sub["default"]
            out.update(_defaults(sub, prefix + (key,)))
    return out


def test_params_yaml_repeats_the_schemas_defaults_and_leaving_them_out_changes_nothing():
    """Every key of params.yaml that has a schema default can be left out: loading fills the same value."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    full = resolve_params(raw)
    schema = yaml.safe_load(config.SCHEMA.read_text())
    stripped = copy.deepcopy(raw)
    removed = 0
    for path, value in sorted(_defaults(schema).items(), key=lambda kv: -len(kv[0])):
        block = stripped
        for k in path[:-1]:
            block = block.get(k) if isinstance(block, dict) else None
        if isinstance(block, dict) and path[-1] in block and block[path[-1]] == value:
            del block[path[-1]]
            removed += 1
    assert removed >= 20  # the demo's params repeat most defaults
    assert resolve_params(stripped) == full


def test_defaults_are_filled_once_when_params_are_loaded(tmp_path):
    minimal = {k: v for k, v in yaml.safe_load((ROOT / "params.yaml").read_text()).items()
               if k in ("cohort", "tracking", "split", "experiments", "tune", "register")}
    minimal["train"] = {"max_epochs": 3}
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump(minimal))
    p = load_params(f)
    assert p["train"]["precision"] == "32-true" and p["train"]["max_epochs"] == 3
    assert p["us_maps"]["window_pulses"] == 4.0 and p["convert"] == {"on_error": "fail", "shards": 8}
    assert p["run"]["seeds"] == [p["train"]["seed"]] and p["evaluation"]["bpe_cutoffs"] == [0.25, 0.5, 0.75]
    # an experiment's own train block overrides the global one and is not filled with defaults
    assert "precision" not in p["experiments"]["bpe_mri"].get("train", {})
    assert load_params(f) == resolve_params(p)  # resolving twice changes nothing


def test_rules_pass_params_only():
    """Per-setting flags are for people who run a command by hand; rules read the settings in force from --params."""
    flags = ("--window-pulses", "--bins", "--dynamic-range-db", "--entropy-on", "--maps", "--patients", "--on-error")
    rules = "\n".join(p.read_text() for p in sorted((ROOT / "workflow" / "rules").glob("*.smk")))
    rules += (ROOT / "Snakefile").read_text()
    assert [f for f in flags if f in rules] == []
    assert "--params" in (ROOT / "Snakefile").read_text()


def test_predict_uses_the_settings_the_model_was_trained_with_not_todays_defaults(tmp_path, monkeypatch):
    """Change every us_maps default: the same model gives the same network input (its bundle records them all);
    a bundle that records a map setting no longer is refused rather than completed with today's defaults."""
    import json

    import numpy as np
    from inference_fixtures import us_bundle

    import breastseg.config
    from breastseg.inference.model import load_model
    from breastseg.inference.preprocess import read_us_input, us_network_input
    from breastseg.errors import InputError

    rng = np.random.default_rng(2)
    roi = np.zeros((96, 16), np.uint8)
    roi[30:60, 4:11] = 1
    np.savez(tmp_path / "scan.npz", rf=rng.normal(size=(96, 16)) * (1 + roi), roi=roi, fs=40e6, f0=7e6, pitch=2e-4)
    (scan,), _ = read_us_input(tmp_path / "scan.npz")
    model = load_model(str(us_bundle(tmp_path / "m", channels=("bmode", "entropy"))))
    before = us_network_input(model.config, scan)[0]
    other = {"dynamic_range_db": 30.0, "window_pulses": 1.5, "bins": 8, "entropy_on": "envelope"}
    real = breastseg.config.schema_defaults
    monkeypatch.setattr(breastseg.config, "schema_defaults",
                        lambda section, *a, **k: dict(other) if section == "us_maps" else real(section, *a, **k))
    assert breastseg.config.us_map_settings() == other  # today's defaults did change
    np.testing.assert_array_equal(us_network_input(model.config, scan)[0], before)
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    del cfg["us_maps"]["window_pulses"]
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError, match="records no us_maps window_pulses"):
        load_model(str(tmp_path / "m"))


def test_typed_settings_are_frozen_views_of_the_resolved_params(monkeypatch):
    """MapSettings, TrackingSettings and SplitSettings: read once from resolved params, never changed after."""
    import dataclasses

    from breastseg.config import MapSettings, SplitSettings, TrackingSettings, mlflow_uri
    params = load_params(ROOT / "params.yaml")
    maps = MapSettings.from_params(params)
    assert maps.as_dict() == {**params["us_maps"], "entropy_binning": maps.entropy_binning}
    assert MapSettings.from_dict(maps.as_dict()) == maps
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    stores = TrackingSettings.from_params(params)
    assert stores.mlflow_uri == params["tracking"]["mlflow_uri"] == mlflow_uri(params)
    assert stores.artifact_root == params["tracking"]["artifact_root"]
    split = SplitSettings.from_params(params)
    assert split.seed == params["split"]["seed"] and split.fractions.as_dict() == params["split"]["fractions"]
    for obj, field in ((maps, "bins"), (stores, "mlflow_uri"), (split, "seed"), (split.fractions, "train")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(obj, field, None)

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert TrackingSettings.from_params(params).mlflow_uri == "http://127.0.0.1:5000" == mlflow_uri(params)
