"""run.folds: k folds over the ledger's train and val patients, their ensemble registered as the model, its
post-processing chosen and its gate decided out of fold."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from breastseg.data.split import fold_assignment, fold_split, read_split, subset_patients
from breastseg.errors import InputError
from tiny_setup import NAME
from breastseg.config import EvaluationSettings
from breastseg.config import Settings


def _split_file(tmp_path, n=11):
    patients = {f"P{i:02d}": {"subset": ("test" if i < 3 else "val" if i < 5 else "train"),
                              "stratum": "a" if i % 2 else "b"} for i in range(n)}
    f = tmp_path / "split.json"
    f.write_text(json.dumps({"patients": patients}))
    return f


def test_folds_partition_the_train_and_val_patients_the_same_everywhere(tmp_path):
    f = _split_file(tmp_path)
    folds = fold_assignment(f, 3, seed=42)
    pool = set(subset_patients(f, "train")) | set(subset_patients(f, "val"))
    assert set(folds) == pool and set(folds.values()) == {0, 1, 2}
    sizes = np.bincount(list(folds.values()))
    assert sizes.max() - sizes.min() <= 1
    assert fold_assignment(f, 3, seed=42) == folds and fold_assignment(f, 3, seed=7) != folds
    for stratum in "ab":  # each stratum spread over the folds
        members = [folds[p] for p, v in read_split(f).items() if p in folds and v["stratum"] == stratum]
        assert np.bincount(members, minlength=3).max() - np.bincount(members, minlength=3).min() <= 1
    out = fold_split(f, folds, 1, tmp_path / "fold-1.json")
    doc = read_split(out)
    assert subset_patients(out, "val") == sorted(p for p, i in folds.items() if i == 1)
    assert subset_patients(out, "test") == subset_patients(f, "test")  # test patients never move
    assert {p for p, v in doc.items() if v["subset"] == "train"} == {p for p, i in folds.items() if i != 1}
    with pytest.raises(ValueError):
        fold_assignment(f, 1, seed=0)
    with pytest.raises(InputError, match="cannot make 20 folds"):
        fold_assignment(f, 20, seed=0)


def test_the_ensemble_averages_its_members_probabilities(tmp_path):
    from breastseg.config import Experiment
    from breastseg.models.bundle import bundle_config, load_bundle, write_bundle
    from breastseg.models.ensemble import FoldEnsemble
    from breastseg.config import load_params
    from breastseg.models.factory import build_model

    params = load_params(Path(__file__).resolve().parents[2] / "params.yaml")
    exp = Experiment.from_dict({"name": NAME, "dataset": "us", "channels": ["bmode"], "classes": 2,
                                "image_size": 16, "model": {"name": "attention_unet", "features": [4, 8]}},
                               maps=params["us_maps"])
    torch.manual_seed(0)
    members = [build_model(exp).eval() for _ in range(3)]
    ens = FoldEnsemble(members).eval()
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        expected = torch.stack([m(x).softmax(1) for m in members]).mean(0)
        np.testing.assert_allclose(ens(x).softmax(1).numpy(), expected.numpy(), atol=1e-6)
        config = bundle_config(EvaluationSettings.from_params(params), exp, {}, "run")
        config["folds"] = {"k": 3, "assignment": {"P1": 0, "P2": 1, "P3": 2}}
        write_bundle(ens, config, tmp_path / "b")
        loaded = load_bundle(tmp_path / "b")
        np.testing.assert_array_equal(loaded.net(x).numpy(), ens(x).numpy())
    assert len(loaded.net.members) == 3


def test_fold_training_registers_the_ensemble_and_decides_out_of_fold(cohort):
    from breastseg.models.bundle import load_model
    from breastseg.training.train import train_experiment

    params, root = cohort
    params["run"]["folds"] = 2
    params["train"].update(max_epochs=1, batch_size=4, threads=1, precision="32-true", init_from="scratch",
                           samples_per_epoch=0)
    params["experiments"][NAME]["train"] = {"max_epochs": 1}
    split = root / f"data/splits/{NAME}.json"
    out = root / "models" / NAME
    model = train_experiment(Settings.from_params(params), NAME, split_file=split, processed_dir=root / f"data/processed/{NAME}",
                             best_params=None, out_dir=out)
    assert model["version"] == "1" and model["folds"] == 2 and len(model["members"]) == 2
    (root / "model.json").write_text(json.dumps(model))
    pool = sorted(set(subset_patients(split, "train")) | set(subset_patients(split, "val")))
    loaded = load_model(model["model_uri"])
    assert sorted(loaded.config["folds"]["assignment"]) == pool and len(loaded.net.members) == 2
    for i in range(2):  # each member trained without its fold's patients
        member_split = out / "folds" / str(i) / "split.json"
        held_out = [p for p, f in loaded.config["folds"]["assignment"].items() if f == i]
        assert subset_patients(member_split, "val") == sorted(held_out)
        assert not set(held_out) & set(subset_patients(member_split, "train"))
    chosen = json.loads((out / "postprocessing.json").read_text())
    assert chosen["validation"]["n_images"] == 2 * len(pool)  # two scans per patient, every one out of fold
    from breastseg.registry import promote_if_better

    d = promote_if_better(Settings.from_params(params), NAME, model_json=root / "model.json", split_file=split,
                          processed_dir=root / f"data/processed/{NAME}", decision_json=root / "decision.json")
    assert d["decided_on"] == "out of fold" and d["val_patients"] == pool and d["promoted"]
    assert d["challenger"]["scored_out_of_fold"] is True and d["challenger"]["slices"] == "prepared"
    assert not set(d["val_patients"]) & set(subset_patients(split, "test"))
    # a plain challenger next: decided on the val patients, the fold champion scored there as it is
    params["run"]["folds"] = 0
    plain = train_experiment(Settings.from_params(params), NAME, split_file=split, processed_dir=root / f"data/processed/{NAME}",
                             best_params=None, out_dir=root / "models" / "plain")
    (root / "model.json").write_text(json.dumps(plain))
    d2 = promote_if_better(Settings.from_params(params), NAME, model_json=root / "model.json", split_file=split,
                           processed_dir=root / f"data/processed/{NAME}", decision_json=root / "decision2.json")
    assert d2["decided_on"] == "val" and d2["val_patients"] == subset_patients(split, "val")
    assert d2["champion_before"]["version"] == "1" and d2["champion_before"]["scored_out_of_fold"] is False
