import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


USER_KEY_DIR = Path("~/.config/breastseg").expanduser()


def _key_dir_state() -> dict[str, tuple[int, int]]:
    """Every file under the user's breastseg config folder with its size and modification time."""
    if not USER_KEY_DIR.exists():
        return {}
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(USER_KEY_DIR.rglob("*"))}


_USER_KEYS_BEFORE = _key_dir_state()


def pytest_sessionfinish(session, exitstatus):
    """The suite never reads, creates or changes the user's own pseudonym key: fail the run if it did."""
    after = _key_dir_state()
    if after != _USER_KEYS_BEFORE:
        session.config.get_terminal_writer().line(
            f"FAILED: the tests changed {USER_KEY_DIR} ({sorted(set(after) ^ set(_USER_KEYS_BEFORE)) or 'mtimes'})",
            red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True)
def _pseudonym_key(tmp_path_factory, monkeypatch):
    """Every test gets its own pseudonym key, never the user's: the environment variable wins over
    cohort.pseudonym_key_file, in this process and in the Snakemake and CLI processes the tests start."""
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


@pytest.fixture
def tiny(tmp_path, monkeypatch, params):
    """Six blob patients prepared for both ultrasound experiments and split, the working folder (tiny_setup)."""
    from tiny_setup import make_tiny

    monkeypatch.chdir(tmp_path)
    return make_tiny(tmp_path, params)


@pytest.fixture
def cohort(tmp_path, monkeypatch, params):
    """10 converted ultrasound patients, prepared at 32 px for both ultrasound experiments and split, the
    working folder (tiny_setup.make_converted)."""
    from tiny_setup import make_converted

    monkeypatch.chdir(tmp_path)
    return make_converted(tmp_path, params)
