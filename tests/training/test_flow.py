"""Tune -> train -> evaluate -> register on a tiny prepared data set, with the embedded SQLite stores."""
import json

from breastseg.config import TrackingSettings
from breastseg.config import Settings


def test_tune_train_evaluate_register(tiny):
    import mlflow

    from breastseg.evaluation.evaluate import evaluate_experiment
    from breastseg.registry import promote_if_better
    from breastseg.tracking import init_stores
    from breastseg.training.train import train_experiment
    from breastseg.training.tune import tune_experiment

    params, root = tiny
    name = "mass_us_bmode"
    split = root / f"data/splits/{name}.json"
    processed = root / f"data/processed/{name}"
    init_stores(Settings.from_params(params))
    best = tune_experiment(Settings.from_params(params), name, split_file=split, processed_dir=processed,
                           out_json=root / "best.json", work_dir=root / "work")
    assert json.loads((root / "work" / "worker-0.json").read_text())["trials"] == [0, 1]
    assert best["n_finished"] == 2 and set(best["params"]) == {"lr", "weight_decay"}
    # a rerun completes the study instead of restarting it: nothing more to do
    again = tune_experiment(Settings.from_params(params), name, split_file=split, processed_dir=processed,
                            out_json=root / "best.json", work_dir=root / "work")
    assert again["n_finished"] == 2

    model = train_experiment(Settings.from_params(params), name, split_file=split, processed_dir=processed, best_params=root / "best.json",
                             out_dir=root / "models" / name, curve_csv=root / "curve.csv")
    curve = (root / "curve.csv").read_text().splitlines()
    assert curve[0] == "epoch,train_loss,val_loss,val_dice" and len(curve) == 3
    metrics = evaluate_experiment(Settings.from_params(params), name, model_json=root / "models" / name / "model.json", split_file=split,
                                  processed_dir=processed, metrics_json=root / "metrics.json", out_dir=root / "res")
    assert 0.0 <= metrics["dice_mean"] <= 1.0 and metrics["n_patients"] >= 1
    assert (root / "res" / "overlays.png").read_bytes()[:4] == b"\x89PNG"
    decision = promote_if_better(Settings.from_params(params), name, model_json=root / "models" / name / "model.json",
                                 metrics_json=root / "metrics.json", split_file=split, processed_dir=processed,
                                 decision_json=root / "decision.json")
    assert decision["promoted"] and decision["champion_before"]["version"] is None

    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias("breastseg-mass_us_bmode", "champion").version) == model["version"]
    assert str(client.get_model_version_by_alias("breastseg-mass_us_bmode", "challenger").version) == model["version"]
    exp_id = client.get_experiment_by_name(name).experiment_id
    runs = client.search_runs([exp_id])
    parents = [r for r in runs if r.data.tags.get("breastseg.stage") == "tune"]
    trials = [r for r in runs if r.data.tags.get("breastseg.stage") == "trial"]
    assert len(parents) == 1 and len(trials) == 2
    assert all(t.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for t in trials)
    train_run = next(r for r in runs if r.data.tags.get("breastseg.stage") == "train")
    for tag in ("breastseg.git_commit", "breastseg.data_hash", "breastseg.split_hash", "breastseg.params_hash"):
        assert train_run.data.tags[tag]
    assert "val_dice" in train_run.data.metrics
    assert json.loads((root / "decision.json").read_text())["champion_after"] == model["version"]

    # What the MLflow UI shows: a model-training experiment (it opens on its runs, not the GenAI view); trials and
    # the final training named alike, column by column; the split in the Dataset column of every run; the
    # evaluation run linked to the model version it scored.
    assert client.get_experiment(exp_id).tags["mlflow.experimentKind"] == "custom_model_development"
    assert all(set(t.data.params) == set(train_run.data.params) for t in trials)
    assert "train.lr" in train_run.data.params and "model.features" in train_run.data.params
    # one name per setting, its path in params.yaml (no second scheme from Lightning's hyperparameters)
    assert not [k for k in train_run.data.params if "/" in k or k.startswith("exp")]
    assert train_run.data.params["register.metric"] == "dice_mean"
    assert {k: float(train_run.data.params[f"train.{k}"]) for k in best["params"]} == best["params"]  # used
    evaluation = next(r for r in runs if r.data.tags.get("breastseg.stage") == "evaluate")
    assert evaluation.info.run_name == f"evaluate-{name}-v{model['version']}"  # the experiment's name in it
    split_hash = train_run.data.tags["breastseg.split_hash"]
    from breastseg.tracking import split_input

    other = split_input(params["cohort"]["name"], Settings.from_params(params).experiments["mass_us_entropy"],
                        root / "data/splits/mass_us_entropy.json")[0]
    for run, context in ((train_run, "training"), (trials[0], "training"), (evaluation, "test")):
        [given] = run.inputs.dataset_inputs
        tags = {t.key: t.value for t in given.tags}
        assert given.dataset.name == f"{params['cohort']['name']}-us" and tags["split_hash"] == split_hash
        assert given.dataset.digest == other.digest  # the same patients, one digest, whichever experiment
        assert tags["mlflow.data.context"] == context and int(tags["n_train"]) >= 1 and tags["data_version"]
    version = client.get_model_version("breastseg-mass_us_bmode", model["version"])
    assert model["model_id"] and version.source == f"models:/{model['model_id']}"
    linked = client.get_logged_model(model["model_id"]).metrics
    assert any(m.key == "test_dice_mean" and m.run_id == evaluation.info.run_id for m in linked)
    assert f"runs/{evaluation.info.run_id})" in version.description
    assert client.get_model_version("breastseg-mass_us_bmode", model["version"]).tags[
        "breastseg.evaluation_run"] == evaluation.info.run_id


def test_gate_does_not_promote_a_worse_model(tiny):
    import mlflow
    import torch

    from breastseg.evaluation.evaluate import evaluate_experiment
    from breastseg.registry import promote_if_better
    from breastseg.tracking import configure, init_stores
    from breastseg.training.train import train_experiment

    params, root = tiny
    name = "mass_us_bmode"
    split, processed = root / f"data/splits/{name}.json", root / f"data/processed/{name}"
    init_stores(Settings.from_params(params))
    good = train_experiment(Settings.from_params(params), name, split_file=split, processed_dir=processed, best_params=None,
                            out_dir=root / "good")
    kw = dict(split_file=split, processed_dir=processed)
    evaluate_experiment(Settings.from_params(params), name, model_json=root / "good/model.json", metrics_json=root / "good.json",
                        out_dir=root / "res-good", **kw)
    assert promote_if_better(Settings.from_params(params), name, model_json=root / "good/model.json", metrics_json=root / "good.json",
                             decision_json=root / "d1.json", **kw)["promoted"]

    # A challenger that always predicts background: strictly worse on the same test patients.
    configure(TrackingSettings.from_params(params))
    net = mlflow.pytorch.load_model(good["model_uri"])
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
    with mlflow.start_run(experiment_id=mlflow.MlflowClient().get_experiment_by_name(name).experiment_id) as run:
        info = mlflow.pytorch.log_model(net, name="model", serialization_format="pickle", pip_requirements=["torch"],
                                        registered_model_name=f"breastseg-{name}")
    bad = {"model_uri": f"models:/breastseg-{name}/{info.registered_model_version}", "run_id": run.info.run_id,
           "version": str(info.registered_model_version), "model_name": f"breastseg-{name}"}
    (root / "bad.json").write_text(json.dumps(bad))
    evaluate_experiment(Settings.from_params(params), name, model_json=root / "bad.json", metrics_json=root / "bad-metrics.json",
                        out_dir=root / "res-bad", **kw)
    decision = promote_if_better(Settings.from_params(params), name, model_json=root / "bad.json", metrics_json=root / "bad-metrics.json",
                                 decision_json=root / "d2.json", **kw)
    assert not decision["promoted"]
    assert decision["champion_before"]["version"] == good["version"] == decision["champion_after"]
    assert decision["challenger"]["score"] < decision["champion_before"]["score"]
    champion = mlflow.MlflowClient().get_model_version_by_alias(f"breastseg-{name}", "champion")
    assert str(champion.version) == good["version"]
    tags = mlflow.MlflowClient().get_model_version(f"breastseg-{name}", bad["version"]).tags
    assert tags["breastseg.gate.promoted"] == "False"


def test_warm_start_from_the_champion(tiny):
    """train.init_from: champion starts from the champion's weights; scratch (or no champion) does not."""
    import mlflow
    import torch

    from breastseg.models.bundle import WEIGHTS_NAME
    from breastseg.tracking import configure, init_stores
    from breastseg.training.module import SegmentationModule
    from breastseg.training.train import module_kwargs, train_experiment, warm_start

    params, root = tiny
    name = "mass_us_bmode"
    split, processed = root / f"data/splits/{name}.json", root / f"data/processed/{name}"
    init_stores(Settings.from_params(params))
    configure(TrackingSettings.from_params(params))
    from breastseg.config import experiment

    exp = experiment(params, name)
    fresh = SegmentationModule(exp, **module_kwargs(exp.train, 1))
    assert warm_start(fresh, f"breastseg-{name}", "champion") is None  # no champion yet
    first = train_experiment(Settings.from_params(params), name, split_file=split, processed_dir=processed, best_params=None,
                             out_dir=root / "m1")
    client = mlflow.MlflowClient()
    client.set_registered_model_alias(f"breastseg-{name}", "champion", first["version"])
    assert warm_start(fresh, f"breastseg-{name}", "scratch") is None
    assert warm_start(fresh, f"breastseg-{name}", "champion") == f"champion v{first['version']}"
    champion = torch.load(root / "m1" / "inference" / WEIGHTS_NAME, weights_only=True)
    state = fresh.net.state_dict()
    assert champion and all(torch.equal(state[k], champion[k]) for k in champion)
    params["train"]["init_from"] = "champion"
    second = train_experiment(Settings.from_params(params), name, split_file=split, processed_dir=processed, best_params=None,
                              out_dir=root / "m2")
    assert client.get_run(second["run_id"]).data.tags["breastseg.init_from"] == f"champion v{first['version']}"
