import subprocess
import sys

import pytest

from breastseg.data.cohort import raw_files, raw_patients
from breastseg.pseudonym import load_key, pseudonym


def test_pseudonyms_are_keyed_stable_and_hide_the_name(tmp_path):
    k1 = load_key(tmp_path / "a.key")
    k2 = load_key(tmp_path / "b.key")
    assert load_key(tmp_path / "a.key") == k1
    assert (tmp_path / "a.key").stat().st_mode & 0o777 == 0o600
    p = pseudonym("BRS-48213", k1)
    assert p == pseudonym("BRS-48213", k1) and p != pseudonym("BRS-48213", k2)
    assert "48213" not in p and len(p) == 13


def test_raw_patients_maps_pseudonyms_to_folders(tmp_path):
    (tmp_path / "mri" / "Doe^Jane" / "study").mkdir(parents=True)
    (tmp_path / "mri" / "Doe^Jane" / "study" / "x.dcm").write_bytes(b"")
    (tmp_path / "mri" / ".hidden").mkdir()
    (tmp_path / "us").mkdir()
    (tmp_path / "us" / "BRS-1.npz").write_bytes(b"")
    (tmp_path / "us" / "notes.txt").write_text("")
    mri = raw_patients(tmp_path, "mri")
    us = raw_patients(tmp_path, "us")
    assert list(mri.values()) == [tmp_path / "mri" / "Doe^Jane"]
    assert list(us.values()) == [tmp_path / "us" / "BRS-1.npz"]
    assert all(k.startswith("P") and "Doe" not in k for k in mri)
    assert raw_files(tmp_path / "mri" / "Doe^Jane") == [str(tmp_path / "mri" / "Doe^Jane" / "study" / "x.dcm")]
    assert raw_patients(tmp_path / "missing", "mri") == {}


def test_cli_help_imports_nothing_heavy():
    code = ("import sys, breastseg.cli as c\n"
            "try:\n    c.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'lightning', 'monai', 'mlflow') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip().endswith("[]")
    assert "convert" in r.stdout and "us-maps" in r.stdout


@pytest.mark.parametrize("command", ["synth", "convert", "us-maps", "prepare", "split", "tune", "train", "evaluate",
                                     "register", "report", "predict", "tracking-init"])
def test_every_command_has_help(command):
    r = subprocess.run([sys.executable, "-m", "breastseg.cli", command, "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "usage: breastseg" in r.stdout


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    r = subprocess.run([sys.executable, "-m", "breastseg.cli", "--params", str(tmp_path / "missing.yaml"), "report",
                        "m.json", "--out", str(tmp_path / "o.html")], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "missing.yaml: no such file" in r.stderr
    assert "Traceback" not in r.stderr
