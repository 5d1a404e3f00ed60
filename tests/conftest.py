import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _pseudonym_key(tmp_path_factory, monkeypatch):
    """Every test gets its own pseudonym key, never the user's."""
    key = tmp_path_factory.getbasetemp() / "pseudonym.key"
    monkeypatch.setenv("BREASTSEG_PSEUDONYM_KEY_FILE", str(key))


@pytest.fixture(autouse=True)
def _tracking_environment():
    """A test that points MLflow at a server (``mlflow.set_tracking_uri`` also sets the environment variable)
    leaves the variables as it found them, so later tests and their subprocesses use their own stores."""
    names = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    before = {k: os.environ.get(k) for k in names}
    yield
    for k, v in before.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def params():
    from breastseg.config import load_params

    return load_params(ROOT / "params.yaml")
