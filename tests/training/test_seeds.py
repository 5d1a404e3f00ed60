"""run.seeds: every seed trains on the same split, the first is registered, the trainings nest under one parent
run, and the metrics are the mean over seeds; withdrawn patients tag the model versions trained with them."""
import json

import pytest
from breastseg.config import Settings


@pytest.fixture
def seeded(tiny):
    p, root = tiny
    p["run"] = {**p.get("run", {}), "seeds": [3, 5]}
    return p, root


def test_seeds_nest_under_one_parent_and_only_the_first_is_registered(seeded):
    import mlflow

    from breastseg.evaluation.evaluate import evaluate_experiment
    from breastseg.tracking import init_stores
    from breastseg.training.train import train_experiment

    params, root = seeded
    name = "mass_us_bmode"
    split, processed = root / f"data/splits/{name}.json", root / f"data/processed/{name}"
    init_stores(Settings.from_params(params))
    first = train_experiment(Settings.from_params(params), name, split_file=split, processed_dir=processed, best_params=None,
                             out_dir=root / "models" / name, seed=3)
    other = train_experiment(Settings.from_params(params), name, split_file=split, processed_dir=processed, best_params=None,
                             out_dir=root / "models" / name / "seeds" / "5", seed=5, register=False)
    assert first["version"] == "1" and first["seed"] == 3
    assert other["version"] is None and other["seed"] == 5 and (root / other["model_uri"] / "weights.pt").exists()
    client = mlflow.MlflowClient()
    assert [str(v.version) for v in client.search_model_versions(f"name='breastseg-{name}'")] == ["1"]
    runs = client.search_runs([client.get_experiment_by_name(name).experiment_id])
    parents = [r for r in runs if r.data.tags.get("breastseg.stage") == "train-seeds"]
    trains = [r for r in runs if r.data.tags.get("breastseg.stage") == "train"]
    assert len(parents) == 1 and sorted(r.data.tags["breastseg.seed"] for r in trains) == ["3", "5"]
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in trains)

    seed_dir = root / "results" / name / "seeds" / "5"
    evaluate_experiment(Settings.from_params(params), name, model_json=root / "models" / name / "seeds" / "5" / "model.json",
                        split_file=split, processed_dir=processed, metrics_json=seed_dir / "headline.json",
                        out_dir=seed_dir, with_figures=False)
    assert not (seed_dir / "overlays.png").exists()
    summary = evaluate_experiment(Settings.from_params(params), name, model_json=root / "models" / name / "model.json", split_file=split,
                                  processed_dir=processed, metrics_json=root / "metrics.json",
                                  out_dir=root / "results" / name, seed_evaluations=[seed_dir / "evaluation.json"])
    per_seed = summary["seeds"]["per_seed"]
    assert summary["seeds"]["seeds"] == [3, 5] and set(per_seed) == {"3", "5"}
    flat = json.loads((root / "metrics.json").read_text())
    values = [per_seed[s]["dice_mean"] for s in ("3", "5")]
    assert flat["dice_mean"] == pytest.approx(sum(values) / 2, abs=1e-4)


def test_withdrawal_tags_the_model_versions_trained_with_the_patient(seeded):
    import mlflow

    from breastseg.data.ledger import withdraw
    from breastseg.tracking import init_stores, model_name

    params, root = seeded
    params["cohort"] = {"name": "mycohort", "root": str(root / "raw")}
    from breastseg.data.split import split_dataset

    files = sorted((root / "data/processed").glob("*/P*.npz"))
    split_dataset(Settings.from_params(params), "us", files, splits_dir=root / "data/splits", processed_dir=root / "data/processed",
                  data_version="v1")
    ledger = json.loads((root / "data/splits/mycohort/us-ledger.json").read_text())
    trained_on = next(p for p, v in ledger["patients"].items() if v["subset"] == "train")
    init_stores(Settings.from_params(params))
    mlflow.set_tracking_uri(params["tracking"]["mlflow_uri"])
    client = mlflow.MlflowClient()
    name = model_name("mass_us_bmode")
    client.create_registered_model(name)
    for version_tag in ("v1", "v0"):  # one version of the patient's data version, one of an earlier one
        mv = client.create_model_version(name, source=str(root), run_id=None)
        client.set_model_version_tag(name, mv.version, "breastseg.data_version", version_tag)
    report = withdraw(Settings.from_params(params), trained_on, splits_dir=root / "data/splits", interim_dir=root / "data/interim",
                      processed_dir=root / "data/processed")
    assert report["model_versions"] == [f"{name}/1"]
    assert client.get_model_version(name, "1").tags["breastseg.withdrawn_patients"] == trained_on
    assert "breastseg.withdrawn_patients" not in client.get_model_version(name, "2").tags
