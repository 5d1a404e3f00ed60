"""The champion gate decides on the validation patients only, each model through its own preprocessing.

A tiny converted ultrasound cohort (interim maps and masks per patient), prepared at 32 px and split; models are
small inference bundles registered in a temporary MLflow store (no training, except in the last test).
"""
import copy
import hashlib
import json
from pathlib import Path

import numpy as np
from inference_fixtures import us_bundle

from breastseg.config import experiment
from breastseg.data.slices import prepare_patient
from breastseg.data.split import split_dataset, subset_patients

from tiny_setup import MAPS, NAME  # noqa: F401 - the cohort fixture (conftest) is made with them
from breastseg.config import TrackingSettings
from breastseg.config import Settings


def _digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _register(params, root: Path, name: str, bundles: list[Path]) -> list[str]:
    """Register each bundle folder as a new version of breastseg-<name>; the first becomes champion."""
    import mlflow

    from breastseg.tracking import configure

    configure(TrackingSettings.from_params(params))
    client = mlflow.MlflowClient()
    registered = f"breastseg-{name}"
    client.create_registered_model(registered)
    versions = [str(client.create_model_version(registered, source=str(b), run_id=None).version) for b in bundles]
    client.set_registered_model_alias(registered, "champion", versions[0])
    last = versions[-1]
    (root / "model.json").write_text(json.dumps({"model_uri": f"models:/{registered}/{last}", "version": last,
                                                 "model_name": registered, "run_id": None}))
    return versions


def _gate(params, root: Path, name: str = NAME, out: str = "decision.json", **kw):
    import mlflow

    from breastseg.registry import promote_if_better

    mlflow.MlflowClient().set_registered_model_alias(f"breastseg-{name}", "champion", "1")  # same start each time
    return promote_if_better(Settings.from_params(params), name, model_json=root / "model.json",
                             split_file=root / f"data/splits/{name}.json",
                             processed_dir=root / f"data/processed/{name}", decision_json=root / out, **kw)


def _spoil_test_patients(root: Path, name: str = NAME) -> list[str]:
    """Every test patient's labels inverted and images replaced, in the prepared and in the converted data."""
    test = subset_patients(root / f"data/splits/{name}.json", "test")
    for pid in test:
        f = root / f"data/processed/{name}/{pid}.npz"
        with np.load(f) as z:
            d = dict(z)
        d["label"] = (1 - d["label"]).astype(np.uint8)
        d["image"] = np.random.default_rng(9).random(d["image"].shape).astype(np.float32)
        np.savez(f, **d)
        for m in (root / "data/interim/us" / pid).glob("*/mask.npy"):
            np.save(m, (1 - np.load(m)).astype(np.uint8))
    return test


def test_decision_names_the_val_patients_and_both_scores(cohort):
    params, root = cohort
    _register(params, root, NAME, [us_bundle(root / "b1", seed=1), us_bundle(root / "b2", seed=2)])
    d = _gate(params, root)
    val = subset_patients(root / f"data/splits/{NAME}.json", "val")
    assert d["decided_on"] == "val" and d["val_patients"] == val and d["n"] == len(val)
    assert d["comparable"] is True and d["reason"] is None
    assert d["challenger"]["version"] == "2" and d["champion_before"]["version"] == "1"
    for side in ("challenger", "champion_before"):
        assert 0.0 <= d[side]["score"] <= 1.0 and d[side]["slices"] == "prepared" and d[side]["image_size"] == 32
    from breastseg.registry import decide

    assert d["promoted"] == decide(d["challenger"]["score"], d["champion_before"]["score"], 0.0)
    assert d["champion_after"] == ("2" if d["promoted"] else "1")
    assert d["reported_test"] is None  # no evaluation given: nothing from the test set at all


def test_no_decision_reads_the_test_set(cohort, monkeypatch):
    """Fails as soon as the gate asks for the test subset or opens a test patient's file."""
    import breastseg.data.slices as slices
    import breastseg.data.split as split_mod

    params, root = cohort
    _register(params, root, NAME, [us_bundle(root / "b1", image_size=48, seed=1), us_bundle(root / "b2", seed=2)])
    test = set(subset_patients(root / f"data/splits/{NAME}.json", "test"))

    def guard(fn):
        def wrapped(*a, **k):
            assert "test" not in a and k.get("subset") != "test", f"{fn.__name__} asked for the test subset"
            return fn(*a, **k)
        return wrapped

    real_load = np.load

    def load(f, *a, **k):
        assert not test & set(Path(str(f)).parts) and Path(str(f)).stem not in test, f"opened test data {f}"
        return real_load(f, *a, **k)

    monkeypatch.setattr(split_mod, "subset_patients", guard(split_mod.subset_patients))
    monkeypatch.setattr(slices, "subset_patients", guard(slices.subset_patients))
    monkeypatch.setattr(slices, "load_subset", guard(slices.load_subset))
    monkeypatch.setattr(np, "load", load)
    d = _gate(params, root)
    assert d["champion_before"]["slices"] == "interim" and d["challenger"]["slices"] == "prepared"


def test_changing_test_labels_changes_no_decision(cohort):
    params, root = cohort
    # the champion takes the interim path (another image size), the challenger the prepared slices
    _register(params, root, NAME, [us_bundle(root / "b1", image_size=48, seed=3), us_bundle(root / "b2", seed=4)])
    first = _gate(params, root, out="d1.json")
    assert _spoil_test_patients(root)
    second = _gate(params, root, out="d2.json")
    first.pop("reported_test"), second.pop("reported_test")
    assert first == second


def test_champion_with_another_image_size_is_scored_on_its_own_slices(cohort):
    from breastseg.data.slices import load_subset
    from breastseg.evaluation.evaluate import figures_of, native_view, score, segment_subset
    from breastseg.models.bundle import load_bundle

    params, root = cohort
    split = root / f"data/splits/{NAME}.json"
    processed_before = _digests(root / "data/processed")
    champion = us_bundle(root / "b1", image_size=48, seed=5)
    _register(params, root, NAME, [champion, us_bundle(root / "b2", seed=6)])
    d = _gate(params, root)
    before = d["champion_before"]
    assert before["image_size"] == 48 and before["slices"] == "interim" and before["comparable"]
    assert _digests(root / "data/processed") == processed_before  # nothing written over the prepared slices

    # the same champion evaluated alone on its own 48-px val slices, prepared as the workflow prepares them
    exp48 = experiment(params, NAME).with_data(image_size=48)
    own = root / "own48"
    for pid in subset_patients(split, "val"):
        prepare_patient(exp48, root / "data/interim/us" / pid, own / f"{pid}.npz", patient_id=pid)
    data = load_subset(own, split, "val")
    assert data["image"].shape[-1] == 48
    seg = segment_subset(load_bundle(champion), exp48, data)  # scored on the native grids, as the gate does
    _, _, summary = score(experiment(params, NAME), native_view(data), seg.native)
    assert before["score"] == figures_of(summary)["dice_mean"]
    assert before["n_slices"] == len(data["label"])


def test_champion_on_other_map_settings_is_not_compared_and_not_promoted(cohort):
    import mlflow

    params, root = cohort
    name = "mass_us_entropy"
    champion = us_bundle(root / "b1", channels=("entropy",), seed=7)
    cfg = json.loads((champion / "config.json").read_text())
    cfg["us_maps"]["entropy_on"] = "envelope"
    (champion / "config.json").write_text(json.dumps(cfg))
    _register(params, root, name, [champion, us_bundle(root / "b2", channels=("entropy",), seed=8)])
    d = _gate(params, root, name=name)
    assert d["comparable"] is False and not d["promoted"] and d["champion_after"] == "1"
    assert d["reason"] == ("champion v1 was trained on maps with entropy_on=envelope; today's maps use "
                           "entropy_on=bmode: not compared, not promoted")
    assert d["champion_before"]["score"] is None and d["challenger"]["score"] is not None
    champ = mlflow.MlflowClient().get_model_version_by_alias(f"breastseg-{name}", "champion")
    assert str(champ.version) == "1"
    tags = mlflow.MlflowClient().get_model_version(f"breastseg-{name}", "2").tags
    assert tags["breastseg.gate.comparable"] == "False" and tags["breastseg.gate.decided_on"] == "val"


def test_map_settings_that_a_model_does_not_use_do_not_block_it():
    from breastseg.evaluation.gate import maps_differences

    today = dict(MAPS)
    assert maps_differences({**MAPS, "bins": 64}, today, ["bmode"]) == []
    assert maps_differences({**MAPS, "bins": 64}, today, ["entropy"]) == [("bins", 64, 32)]
    assert maps_differences({**MAPS, "dynamic_range_db": 60.0}, today, ["entropy"]) == [
        ("dynamic_range_db", 60.0, 50.0)]
    assert maps_differences({**MAPS, "dynamic_range_db": 60.0}, {**today, "entropy_on": "envelope"},
                            ["entropy"]) == [("entropy_on", "bmode", "envelope"), ("dynamic_range_db", 60.0, 50.0)]
    assert maps_differences({**MAPS, "entropy_on": "envelope", "dynamic_range_db": 60.0,
                             "entropy_binning": "envelope-p99"}, {**today, "entropy_on": "envelope"}, ["entropy"]) == []
    assert maps_differences(None, today, ["entropy"]) == []


def test_reported_test_figures_are_copied_not_used(cohort):
    params, root = cohort
    _register(params, root, NAME, [us_bundle(root / "b1", seed=1), us_bundle(root / "b2", seed=2)])
    ev = root / "evaluation.json"
    ev.write_text(json.dumps({"dice_mean": 0.0, "dice": {"mass": 0.0}, "per_patient": {}, "n_patients": 2,
                              "n_slices": 4, "test_patients": ["Pa", "Pb"], "model_version": "2"}))
    low = _gate(params, root, out="d1.json", evaluation_json=ev)
    ev.write_text(json.dumps({"dice_mean": 1.0, "dice": {"mass": 1.0}, "per_patient": {}, "n_patients": 2,
                              "n_slices": 4, "test_patients": ["Pa", "Pb"], "model_version": "2"}))
    high = _gate(params, root, out="d2.json", evaluation_json=ev)
    assert low["reported_test"]["dice_mean"] == 0.0 and high["reported_test"]["dice_mean"] == 1.0
    assert low["reported_test"]["test_patients"] == ["Pa", "Pb"]
    low.pop("reported_test"), high.pop("reported_test")
    assert low == high


def test_training_ignores_the_test_labels(tmp_path, monkeypatch, params):
    """Early stopping and the best checkpoint monitor validation only: spoiling every test patient's labels
    leaves the learning curve and the best weights bit-identical (CPU)."""
    import torch
    from tiny_setup import make_tiny

    from breastseg.tracking import init_stores
    from breastseg.training.train import train_experiment

    monkeypatch.chdir(tmp_path)
    p, root = make_tiny(tmp_path, params)
    name = "mass_us_bmode"
    split, processed = root / f"data/splits/{name}.json", root / f"data/processed/{name}"
    init_stores(Settings.from_params(p))
    runs = []
    for k in (0, 1):
        if k:
            assert _spoil_test_patients(root, name)
        out = root / f"run{k}"
        model = train_experiment(Settings.from_params(p), name, split_file=split, processed_dir=processed, best_params=None, out_dir=out,
                                 curve_csv=out / "curve.csv")
        runs.append((model["best_val_dice"], (out / "curve.csv").read_text(),
                     torch.load(out / "inference" / "weights.pt", weights_only=True)))
    (d0, c0, w0), (d1, c1, w1) = runs
    assert d0 == d1 and c0 == c1 and len(c0.splitlines()) == 3
    assert w0.keys() == w1.keys() and all(torch.equal(w0[k], w1[k]) for k in w0)
    # each train run records what it computed on (same fingerprint: bit-identical on CPU)
    import mlflow

    client = mlflow.MlflowClient()
    trains = [r for r in client.search_runs([client.get_experiment_by_name(name).experiment_id])
              if r.data.tags.get("breastseg.stage") == "train"]
    assert len(trains) == 2 and trains[0].data.tags["breastseg.torch"] == torch.__version__
    assert len({r.data.tags["breastseg.isa_fingerprint"] for r in trains}) == 1
    assert all(r.data.tags["breastseg.cpu_isa"] and r.data.tags["breastseg.cpu_model"] for r in trains)


def test_maps_made_with_another_entropy_binning_are_not_comparable():
    """Envelope entropy binned over [min, max] (maps and bundles from before the binning was recorded) is another
    map than today's, binned over [0, the 99th percentile], although every setting's value is the same."""
    from breastseg.evaluation.gate import maps_differences

    today = {"dynamic_range_db": 50.0, "window_pulses": 4.0, "bins": 32, "entropy_on": "envelope",
             "entropy_binning": "envelope-p99"}
    before = {k: v for k, v in today.items() if k != "entropy_binning"}
    assert [d[0] for d in maps_differences(before, today, ["entropy"])] == ["entropy_binning"]
    assert maps_differences(dict(today), today, ["entropy"]) == []
    assert maps_differences(before, today, ["bmode"]) == []  # B-mode does not depend on the entropy's binning


def test_champion_on_other_map_settings_is_scored_on_its_own_maps_made_from_the_cache(tmp_path, monkeypatch, params):
    """Where the converted data is the decoded cache (RF envelopes), the champion's maps are made again with its
    own us_maps settings: compared, not refused."""
    from breastseg.us.maps import write_decoded_patient

    monkeypatch.chdir(tmp_path)
    p = copy.deepcopy(params)
    name = "mass_us_entropy"
    p["experiments"][name].update(image_size=32)
    p["experiments"][name]["model"]["features"] = [4, 8]
    p["us_maps"] = dict(MAPS)
    p["register"] = {"metric": "dice_mean", "margin": 0.0}
    p["tracking"].update(mlflow_uri=f"sqlite:///{tmp_path}/mlflow.db", artifact_root=str(tmp_path / "mlartifacts"))
    rng = np.random.default_rng(3)
    interim, processed, files = tmp_path / "data/interim/us", tmp_path / "data/processed", []
    for i in range(10):
        pid = f"P{i:012x}"
        roi = np.zeros((96, 16), np.uint8)
        roi[30:60, 4:11] = 1
        np.savez(tmp_path / f"{pid}.npz", rf=rng.normal(size=(96, 16)) * (1 + roi), roi=roi, fs=40e6, f0=7e6, pitch=2e-4)
        write_decoded_patient([tmp_path / f"{pid}.npz"], interim / pid, patient_id=pid)
        files.append(prepare_patient(experiment(p, name), interim / pid,
                                     processed / name / f"{pid}.npz", patient_id=pid, maps_settings=MAPS))
    split_dataset(Settings.from_params(p), "us", files, splits_dir=tmp_path / "data/splits", processed_dir=processed)
    champion = us_bundle(tmp_path / "b1", channels=("entropy",), seed=7)
    cfg = json.loads((champion / "config.json").read_text())
    cfg["us_maps"]["window_pulses"] = 2.0  # trained on maps with a smaller entropy window
    (champion / "config.json").write_text(json.dumps(cfg))
    _register(p, tmp_path, name, [champion, us_bundle(tmp_path / "b2", channels=("entropy",), seed=8)])
    d = _gate(p, tmp_path, name=name)
    assert d["comparable"] is True and d["reason"] is None
    before, after = d["champion_before"], d["challenger"]
    assert before["slices"] == "interim" and "window_pulses=2.0" in before["maps"]
    assert after["slices"] == "prepared" and before["score"] is not None
