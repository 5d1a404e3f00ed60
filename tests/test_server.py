"""A team server with accounts (`make server AUTH=1`: MLflow's basic-auth app): anonymous requests are refused,
users and per-experiment permissions are managed with `breastseg accounts`, credentials travel in the environment
only, and an authenticated pipeline run logs and registers as usual."""
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from scaleout_services import mlflow_server
from tiny_setup import make_tiny
from breastseg.config import Settings

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
NAME = "mass_us_bmode"
ADMIN_PASSWORD = "Adm1n-only-in-the-environment"


def _breastseg(*args, cwd, env=None):
    return subprocess.run([str(BIN / "breastseg"), *args], cwd=cwd, capture_output=True, text=True,
                          env={k: v for k, v in {**os.environ, **(env or {})}.items() if v is not None})


def test_accounts_need_the_admin_password_in_the_environment_and_write_none(tmp_path):
    no_password = {"MLFLOW_AUTH_ADMIN_PASSWORD": None}
    r = _breastseg("server", "--auth", "--dry-run", cwd=tmp_path, env=no_password)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "mlflow-auth.db" in r.stderr and "MLFLOW_AUTH_ADMIN_PASSWORD" in r.stderr
    assert list(tmp_path.iterdir()) == []  # nothing half-written

    r = _breastseg("server", "--auth", "--dry-run", cwd=tmp_path, env={"MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[1:3] == ["server", "--host"] and "--app-name basic-auth" in r.stdout
    ini = (tmp_path / ".mlflow" / "basic_auth.ini").read_text()
    assert "default_permission = READ" in ini and "database_uri = sqlite:///mlflow-auth.db" in ini
    assert not any(ADMIN_PASSWORD in p.read_text() for p in tmp_path.rglob("*") if p.is_file())
    assert (tmp_path / ".mlflow" / "flask_secret_key").stat().st_mode & 0o077 == 0  # the owner's only
    ignored = subprocess.run(["git", "check-ignore", ".mlflow/basic_auth.ini", "mlflow-auth.db"], cwd=ROOT,
                             capture_output=True, text=True).stdout.split()
    assert ignored == [".mlflow/basic_auth.ini", "mlflow-auth.db"]  # never committed by `git add -A`


def test_make_server_auth_starts_the_auth_app():
    out = subprocess.run(["make", "-n", "server", "AUTH=1", "PERMISSION=NO_PERMISSIONS"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    line = next(l for l in out.splitlines() if l.startswith("breastseg server"))
    assert "--auth --auth-db sqlite:///mlflow-auth.db --default-permission NO_PERMISSIONS" in line
    assert "--auth" not in next(l for l in subprocess.run(["make", "-n", "server"], cwd=ROOT, capture_output=True,
                                                          text=True, check=True).stdout.splitlines()
                                if l.startswith("breastseg server"))


def _status(url: str, auth: tuple[str, str] | None = None) -> int:
    import base64

    req = urllib.request.Request(f"{url}/api/2.0/mlflow/experiments/search?max_results=5")
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.slow
def test_authenticated_pipeline_logs_and_registers_anonymous_is_refused(tmp_path, params, monkeypatch):
    import mlflow

    from breastseg.tracking import init_stores
    from breastseg.training.train import train_experiment

    with mlflow_server(tmp_path / "server", auth_env={"MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD}) as srv:
        assert _status(srv.url) == 401                                   # anonymous: refused
        assert _status(srv.url, ("admin", "wrong-password")) == 401
        assert _status(srv.url, ("admin", ADMIN_PASSWORD)) == 200
        admin = {"MLFLOW_TRACKING_URI": srv.url, "MLFLOW_TRACKING_USERNAME": "admin",
                 "MLFLOW_TRACKING_PASSWORD": ADMIN_PASSWORD}
        for user in ("alice", "bob"):
            r = _breastseg("accounts", "add", user, "--password-env", "NEW_PASSWORD", cwd=tmp_path,
                           env={**admin, "NEW_PASSWORD": f"{user}-Pass-2026"})
            assert r.returncode == 0 and r.stdout.strip() == f"added user {user}", r.stderr

        # alice runs the pipeline with her credentials in the environment (params.yaml names no password)
        root = tmp_path / "alice"
        root.mkdir()
        monkeypatch.chdir(root)
        for k, v in {"MLFLOW_TRACKING_URI": srv.url, "MLFLOW_TRACKING_USERNAME": "alice",
                     "MLFLOW_TRACKING_PASSWORD": "alice-Pass-2026"}.items():
            monkeypatch.setenv(k, v)
        p, _ = make_tiny(root, params)
        p["experiments"][NAME].pop("train", None)
        p["train"]["max_epochs"] = 1
        init_stores(Settings.from_params(p))
        model = train_experiment(Settings.from_params(p), NAME, split_file=root / f"data/splits/{NAME}.json",
                                 processed_dir=root / f"data/processed/{NAME}", best_params=None, out_dir=root / "m")
        client = mlflow.MlflowClient(tracking_uri=srv.url, registry_uri=srv.url)
        version = client.get_model_version_by_alias(f"breastseg-{NAME}", "challenger")
        assert version.version == model["version"] and version.run_id == model["run_id"]
        assert "val_dice" in client.get_run(model["run_id"]).data.metrics
        # the password stays in the environment: no file the run wrote holds it
        assert not [f for f in root.rglob("*") if f.is_file() and b"alice-Pass-2026" in f.read_bytes()]

        # bob reads everything (default READ) but cannot log to alice's experiment until she grants it
        exp_id = client.get_experiment_by_name(NAME).experiment_id
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "bob")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "bob-Pass-2026")
        bob = mlflow.MlflowClient(tracking_uri=srv.url)
        assert bob.get_run(model["run_id"]).info.run_id == model["run_id"]
        with pytest.raises(mlflow.exceptions.MlflowException, match="(?i)permission"):
            bob.create_run(exp_id)
        r = _breastseg("accounts", "grant", "bob", "--experiment", NAME, "--permission", "EDIT", cwd=tmp_path,
                       env={"MLFLOW_TRACKING_URI": srv.url, "MLFLOW_TRACKING_USERNAME": "alice",
                            "MLFLOW_TRACKING_PASSWORD": "alice-Pass-2026"})
        assert r.returncode == 0 and "EDIT on experiment mass_us_bmode" in r.stdout, r.stderr
        assert bob.create_run(exp_id).info.experiment_id == exp_id
