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


@pytest.fixture
def params():
    from breastseg.config import load_params

    return load_params(ROOT / "params.yaml")
