"""Optuna beyond one machine: two `breastseg tune` workers on one study in a real PostgreSQL server; journal files."""
import json
import os
import subprocess
import sys

import optuna
import pytest
import yaml

from breastseg.config import TrackingSettings
from scaleout_services import postgres_server
from tiny_setup import make_tiny

NAME = "mass_us_bmode"
GOOD, BAD = 0.01, 1e-9  # a learning rate that learns, one that cannot (pruned against the good ones)
# Runs `breastseg ...` (argv[3:]) once the heavy imports are done and the other worker has done its own (argv[1]
# marks this one ready, argv[2] is the other's mark): on a loaded machine one worker's imports can otherwise
# outlast all of the other's tiny trials, and the test is about sharing a study, not about start-up times.
BARRIER = """
import pathlib, sys, time
import lightning.pytorch, mlflow
import breastseg.cli, breastseg.training.train, breastseg.training.tune
pathlib.Path(sys.argv[1]).touch()
deadline = time.time() + 300
while not pathlib.Path(sys.argv[2]).exists() and time.time() < deadline:
    time.sleep(0.05)
sys.exit(breastseg.cli.main(sys.argv[3:]))
"""


@pytest.mark.slow
def test_two_workers_share_one_postgresql_study_with_pruning(tmp_path, monkeypatch, params):
    import mlflow

    monkeypatch.chdir(tmp_path)
    p, root = make_tiny(tmp_path, params, n_patients=6, slices=6)
    p["experiments"][NAME].pop("train", None)  # the global train block is the one in force
    p["tune"].update(n_trials=4, max_epochs=4, pruner="median", space={"lr": {"type": "categorical",
                                                                               "choices": [GOOD, BAD]}})
    split, processed = root / f"data/splits/{NAME}.json", root / f"data/processed/{NAME}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    with postgres_server() as url:
        p["tracking"]["optuna_storage"] = url
        (root / "p.yaml").write_text(yaml.safe_dump(p))
        base = [sys.executable, "-m", "breastseg.cli", "-q", "--params", str(root / "p.yaml")]
        subprocess.run([*base, "tracking-init"], cwd=root, check=True, env=env)
        subprocess.run([*base, "study", NAME, "--split", str(split), "--processed-dir", str(processed), "--out",
                        "study.json"], cwd=root, check=True, env=env)
        info = json.loads((root / "study.json").read_text())
        study = optuna.load_study(study_name=info["study"], storage=url)
        for lr in (GOOD, GOOD, BAD, BAD):  # the bad ones start only after a worker has finished a good one
            study.enqueue_trial({"lr": lr})
        procs = [subprocess.Popen([sys.executable, "-c", BARRIER, f"ready{w}", f"ready{1 - w}", *base[3:], "tune", NAME,
                                   "--study", "study.json", "--worker", str(w), "--split", str(split),
                                   "--processed-dir", str(processed), "--out", f"w{w}.json", "--work-dir", f"work{w}"],
                                  cwd=root, env=env, stderr=subprocess.PIPE, text=True)
                 for w in (0, 1)]
        try:
            errors = [proc.communicate(timeout=600)[1] for proc in procs]
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        assert [proc.returncode for proc in procs] == [0, 0], [e[-3000:] for e in errors]
        trials = optuna.load_study(study_name=info["study"], storage=url).get_trials(deepcopy=False)
        subprocess.run([*base, "best-params", NAME, "--study", "study.json", "--out", "best.json"], cwd=root,
                       check=True, env=env)

    finished = {t.number: t for t in trials if t.state.is_finished() and t.state != optuna.trial.TrialState.FAIL}
    assert len(finished) == 4                                   # exactly n_trials, none lost
    assert all(t.state == optuna.trial.TrialState.FAIL for t in trials if t.number not in finished)  # only spares
    done = [json.loads((root / f"w{w}.json").read_text()) for w in (0, 1)]
    claimed = done[0]["trials"] + done[1]["trials"]
    assert sorted(claimed) == sorted(finished) and len(set(claimed)) == len(claimed)  # none run twice
    assert all(d["trials"] for d in done)                       # both workers took part
    states = {n: t.state for n, t in finished.items()}
    assert all(states[n] == optuna.trial.TrialState.COMPLETE for n, t in finished.items() if t.params["lr"] == GOOD)
    assert any(s == optuna.trial.TrialState.PRUNED for s in states.values()), states  # pruning works across workers
    assert all(finished[n].params["lr"] == BAD for n, s in states.items() if s == optuna.trial.TrialState.PRUNED)
    assert json.loads((root / "best.json").read_text())["params"]["lr"] == GOOD

    mlflow.set_tracking_uri(p["tracking"]["mlflow_uri"])
    runs = mlflow.MlflowClient().search_runs([info["experiment_id"]], "tags.`breastseg.stage` = 'trial'")
    assert sorted(int(r.data.tags["breastseg.trial"]) for r in runs) == sorted(finished)  # one nested run per trial
    assert {r.data.tags["mlflow.parentRunId"] for r in runs} == {info["parent_run_id"]}
    assert {int(r.data.tags["breastseg.trial"]): r.data.tags["optuna.state"] for r in runs} == \
        {n: s.name for n, s in states.items()}


#: A resolved tracking block (the store under test replaces optuna_storage)
STORES = {"mlflow_uri": "sqlite:///unused.db", "artifact_root": "mlartifacts", "optuna_storage": "sqlite:///unused.db"}


def test_journal_file_storage_from_params(tmp_path):
    """`tracking.optuna_storage: journal:///path` gives a JournalStorage: for workers on a shared filesystem."""
    from breastseg.tracking import optuna_storage

    log = tmp_path / "shared" / "optuna.log"
    p = {"tracking": {**STORES, "optuna_storage": f"journal://{log}"}}
    for _ in range(2):  # two "workers" opening the same file see one study
        study = optuna.create_study(study_name="s", storage=optuna_storage(TrackingSettings.from_params(p)), load_if_exists=True)
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert isinstance(optuna_storage(TrackingSettings.from_params(p)), optuna.storages.JournalStorage) and log.exists()
    assert len(optuna.load_study(study_name="s", storage=optuna_storage(TrackingSettings.from_params(p))).trials) == 4


def test_unreachable_storage_is_one_line_naming_the_setting():
    from breastseg.errors import InputError
    from breastseg.tracking import optuna_storage

    from scaleout_services import free_port

    with pytest.raises(InputError) as err:
        optuna_storage(TrackingSettings.from_params({"tracking": {**STORES, "optuna_storage": f"postgresql://u:secret@127.0.0.1:{free_port()}/db"}}))
    message = str(err.value)
    assert "tracking.optuna_storage" in message and "secret" not in message and "\n" not in message
