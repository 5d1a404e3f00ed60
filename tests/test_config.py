import copy
import subprocess
import sys

import pytest

from breastseg.config import experiment, load_params, validate_params
from breastseg.errors import InputError

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_params_are_valid(params):
    validate_params(params)
    assert set(params["experiments"]) == {"bpe_mri", "mass_us_entropy", "mass_us_bmode"}
    assert params["experiments"]["bpe_mri"]["classes"] == 3
    assert params["experiments"]["mass_us_entropy"]["classes"] == 2


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda p: p["train"].update(max_epochs="three"), "train.max_epochs"),
        (lambda p: p["train"].update(epochs=3), "unknown key 'train.epochs'"),
        (lambda p: p.update(extra=1), "unknown key 'extra'"),
        (lambda p: p["experiments"]["bpe_mri"].update(classes=1), "experiments.bpe_mri.classes"),
        (lambda p: p["experiments"]["bpe_mri"]["model"].update(name="vnet"), "experiments.bpe_mri.model.name"),
    ],
)
def test_invalid_params_name_the_key(params, mutate, expected):
    bad = copy.deepcopy(params)
    mutate(bad)
    with pytest.raises(InputError) as exc:
        validate_params(bad)
    assert expected in str(exc.value)
    assert "\n" not in str(exc.value)


def test_experiment_merges_train_overrides(params):
    p = copy.deepcopy(params)
    p["experiments"]["bpe_mri"]["train"] = {"max_epochs": 9}
    p["experiments"]["mass_us_bmode"].pop("train", None)
    exp = experiment(p, "bpe_mri")
    assert exp.train.max_epochs == 9
    assert exp.train.batch_size == params["train"]["batch_size"]
    assert experiment(p, "mass_us_bmode").train.max_epochs == params["train"]["max_epochs"]


def test_missing_params_file_is_one_line(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_params(tmp_path / "nope.yaml")


def test_snakemake_stops_on_bad_config_with_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--config", "train={'max_epochs': 'x'}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2  # bad input: status 2, as every breastseg command
    lines = [l for l in r.stderr.splitlines() if "breastseg: error" in l]
    assert len(lines) == 1 and "train.max_epochs" in lines[0], r.stderr


def test_recipe_settings_that_cannot_hold_are_refused_in_one_line():
    from breastseg.config import resolve_params

    raw = load_params(ROOT / "params.yaml", validate=False)
    up_down = copy.deepcopy(raw)
    up_down["train"]["augment"] = {"mirror": ["lr", "ud"]}  # ultrasound depth has a direction
    with pytest.raises(InputError, match="mass_us_entropy is ultrasound.*no up-down mirroring"):
        resolve_params(up_down)
    mri_z = copy.deepcopy(raw)
    mri_z["experiments"]["bpe_mri"]["preprocess"] = {"normalization": "zscore"}
    with pytest.raises(InputError, match="MRI keeps one scale per study"):
        resolve_params(mri_z)
    ds = copy.deepcopy(raw)
    ds["experiments"]["bpe_mri"]["model"]["deep_supervision"] = True
    with pytest.raises(InputError, match="only the dynunet network has deep supervision"):
        resolve_params(ds)
    ok = resolve_params(copy.deepcopy(raw))  # defaults filled per experiment
    assert ok["experiments"]["bpe_mri"]["preprocess"] == {"aspect": "keep", "normalization": "fixed"}
    assert ok["experiments"]["mass_us_bmode"]["preprocess"]["normalization"] == "zscore"
    assert ok["experiments"]["bpe_mri"]["inference"]["keep_largest"] == "auto"


def test_a_typo_names_the_file_and_line_and_the_nearest_key(tmp_path):
    from breastseg.config import load_params

    text = (ROOT / "params.yaml").read_text().replace("train:\n", "train:\n  lrr: 0.1\n", 1)
    (tmp_path / "p.yaml").write_text(text)
    line = text.splitlines().index("  lrr: 0.1") + 1
    with pytest.raises(InputError) as exc:
        load_params(tmp_path / "p.yaml")
    assert str(exc.value) == f"{tmp_path / 'p.yaml'}:{line}: unknown key 'train.lrr' (did you mean 'train.lr'?)"


def test_the_workflow_names_the_configfile_that_holds_a_typo(tmp_path):
    import os
    import subprocess
    import sys

    from workspace import _copy_repo

    repo = _copy_repo(tmp_path / "repo")
    (repo / "mine.yaml").write_text("split:\n  seed: 42\n  fractons: {train: 0.6, val: 0.2, test: 0.2}\n")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "HOME": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile", "mine.yaml"], cwd=repo,
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode != 0
    assert ("breastseg: error: mine.yaml:3: unknown key 'split.fractons' (did you mean 'split.fractions'?)"
            in r.stderr), r.stderr[-2000:]
