import json
import subprocess
import sys

from pathlib import Path

import numpy as np
import pytest
from us_cohorts import write_us_dicom
from us_cohorts import oasbud_records, write_busi_cohort, write_oasbud_mat

from breastseg.data.cohort import check_cohort, discover
from breastseg.errors import InputError
from breastseg.pseudonym import load_key, pseudonym
from breastseg.config import Settings


def test_pseudonyms_are_keyed_stable_and_hide_the_name(tmp_path):
    k1 = load_key(tmp_path / "a.key")
    k2 = load_key(tmp_path / "b.key")
    assert load_key(tmp_path / "a.key") == k1
    assert (tmp_path / "a.key").stat().st_mode & 0o777 == 0o600
    p = pseudonym("BRS-48213", k1)
    assert p == pseudonym("BRS-48213", k1) and p != pseudonym("BRS-48213", k2)
    assert "48213" not in p and len(p) == 13


def test_mri_patients_are_folders_under_pseudonyms(tmp_path):
    (tmp_path / "mri" / "Doe^Jane" / "study").mkdir(parents=True)
    (tmp_path / "mri" / "Doe^Jane" / "study" / "x.dcm").write_bytes(b"")
    (tmp_path / "mri" / ".hidden").mkdir()
    mri = discover(tmp_path, "mri")
    [(pid, p)] = mri.items()
    assert pid.startswith("P") and "Doe" not in pid
    assert p.sources == (str(tmp_path / "mri" / "Doe^Jane"),)
    assert p.files == (str(tmp_path / "mri" / "Doe^Jane" / "study" / "x.dcm"),)
    assert discover(tmp_path / "missing", "mri") == {}


def test_every_ultrasound_layout_is_discovered(tmp_path):
    us = tmp_path / "us"
    rng = np.random.default_rng(0)
    write_busi_cohort(tmp_path, n=3)
    write_oasbud_mat(us / "oasbud.mat", oasbud_records(2, shape=(32, 8)))
    np.savez(us / "BRS-1.npz", rf=np.zeros((8, 4)), roi=np.zeros((8, 4)), fs=40e6, f0=7e6, pitch=2e-4)
    for name, pid in (("a.dcm", "PAT-7"), ("b.dcm", "PAT-7"), ("c.dcm", "PAT-9")):
        write_us_dicom(us / name, rng.integers(0, 255, (12, 10)), patient_id=pid)
        np.save(us / name.replace(".dcm", "_mask.npy"), np.ones((12, 10), np.uint8))
    (us / "Smith, Ann").mkdir()
    np.savez(us / "Smith, Ann" / "scan.npz", rf=np.zeros((8, 4)), roi=np.zeros((8, 4)), fs=40e6, f0=7e6, pitch=2e-4)
    (us / "notes.txt").write_text("ignored")

    found = discover(tmp_path, "us")
    by_layout = {}
    for p in found.values():
        by_layout.setdefault(p.layouts, []).append(p)
    assert {k: len(v) for k, v in by_layout.items()} == {
        ("busi",): 3, ("oasbud-mat",): 2, ("rf-npz",): 1, ("dicom-us",): 2, ("folder",): 1}
    assert all(not p.has_rf for p in by_layout[("busi",)] + by_layout[("dicom-us",)])
    assert all(p.has_rf for p in by_layout[("oasbud-mat",)] + by_layout[("rf-npz",)] + by_layout[("folder",)])
    # BUSI: the image and every mask beside it are the patient's files (a change reconverts it).
    busi3 = next(p for p in by_layout[("busi",)] if p.sources[0].endswith("benign (3).png"))
    assert [Path(f).name for f in busi3.files] == ["benign (3).png", "benign (3)_mask.png", "benign (3)_mask_1.png"]
    # OASBUD: one patient per lesion record of the one file, selected by id.
    assert sorted(p.select for p in by_layout[("oasbud-mat",)]) == [("L100",), ("L101",)]
    # DICOM US: files grouped by PatientID, masks included.
    pat7 = next(p for p in by_layout[("dicom-us",)] if len(p.sources) == 2)
    assert [Path(f).name for f in pat7.files] == ["a.dcm", "a_mask.npy", "b.dcm", "b_mask.npy"]
    assert all("PAT" not in pid and "Smith" not in pid for pid in found)


def test_patient_map_groups_units_of_one_patient(tmp_path):
    write_oasbud_mat(tmp_path / "us" / "oasbud.mat", oasbud_records(3, shape=(32, 8)))
    (tmp_path / "map.csv").write_text("id,patient\nL100,woman-1\nL101,woman-1\n")
    found = discover(tmp_path, "us", patient_map=tmp_path / "map.csv")
    assert sorted(p.select for p in found.values()) == [("L100", "L101"), ("L102",)]
    (tmp_path / "bad.csv").write_text("lesion,woman\nL100,w\n")
    with pytest.raises(InputError, match="bad.csv: patient map needs the columns 'id' and 'patient'"):
        discover(tmp_path, "us", patient_map=tmp_path / "bad.csv")


def test_two_inputs_with_one_id_are_refused(tmp_path):
    (tmp_path / "us" / "A").mkdir(parents=True)
    (tmp_path / "us" / "A" / "x.npz").write_bytes(b"x")
    (tmp_path / "us" / "A.npz").write_bytes(b"x")
    with pytest.raises(InputError, match="two inputs give the same id"):
        discover(tmp_path, "us")


def test_cohort_checks_name_the_cohort_and_the_reason(tmp_path, params):
    cfg = {**params, "cohort": {"name": "busi", "root": str(tmp_path)}}
    write_busi_cohort(tmp_path, n=2)
    found = {"us": discover(tmp_path, "us")}
    check_cohort(Settings.from_params(cfg), ["mass_us_bmode"], found)  # B-mode-only data, B-mode experiment: fine
    with pytest.raises(InputError, match=r"experiment mass_us_entropy needs raw RF .* 2 of 2 ultrasound patients "
                                         r"have B-mode images only \(busi\); choose run.experiments: \[mass_us_bmode\]"):
        check_cohort(Settings.from_params(cfg), ["mass_us_entropy", "mass_us_bmode"], found)
    with pytest.raises(InputError, match=r"no MRI patient found for bpe_mri; expected <root>/mri/<patient>"):
        check_cohort(Settings.from_params(cfg), ["bpe_mri"], {"mri": discover(tmp_path, "mri")})
    missing = {**cfg, "cohort": {"name": "x", "root": str(tmp_path / "nope")}}
    with pytest.raises(InputError, match="nope: cohort 'x': the cohort folder does not exist"):
        check_cohort(Settings.from_params(missing), ["mass_us_bmode"], {"us": {}})


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


def test_a_patient_folder_of_several_rf_files_converts_as_one_patient(tmp_path):
    """The conversion step reads what discovery found (the shard's fingerprint file): a folder is one patient,
    however many files (e.g. two orthogonal scans) it holds, and no raw name reaches the output."""
    from breastseg.cli import main
    from breastseg.data.cohort import write_fingerprints

    folder = tmp_path / "us" / "Smith, Ann"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for view in ("radial", "antiradial"):
        roi = np.zeros((64, 12), np.uint8)
        roi[20:40, 3:8] = 1
        np.savez(folder / f"{view}.npz", rf=rng.normal(size=(64, 12)), roi=roi, fs=40e6, f0=7e6, pitch=2e-4)
    found = discover(tmp_path, "us")
    [(pid, patient)] = found.items()
    [fp] = write_fingerprints(found, tmp_path / "fp", shards=4).values()
    assert main(["-q", "convert-shard", "us", str(fp), str(tmp_path / "marker.json"),
                 "--interim-dir", str(tmp_path / "out"), "--log-dir", str(tmp_path / "logs")]) == 0
    scans = sorted(p.name for p in (tmp_path / "out" / pid).iterdir() if p.is_dir())
    assert scans == ["scan-1", "scan-2"]
    metas = [(tmp_path / "out" / pid / s / "meta.json").read_text() for s in scans]
    assert all(pid in m and "Smith" not in m and "radial" not in m for m in metas)
    # the fingerprint changes with the content only
    before = fp.read_text()
    assert write_fingerprints(found, tmp_path / "fp", shards=4)[fp.stem[6:]].read_text() == before
    np.savez(folder / "radial.npz", rf=rng.normal(size=(64, 12)), roi=np.zeros((64, 12)), fs=40e6, f0=7e6, pitch=2e-4)
    assert write_fingerprints(found, tmp_path / "fp", shards=4)[fp.stem[6:]].read_text() != before


def test_the_environment_key_wins_over_params_so_tests_never_touch_the_users_key(tmp_path, monkeypatch):
    from breastseg.pseudonym import cohort_key

    named_in_params = tmp_path / "home" / ".config" / "breastseg" / "pseudonym.key"
    env_key = tmp_path / "env.key"
    monkeypatch.setenv("BREASTSEG_PSEUDONYM_KEY_FILE", str(env_key))
    key = cohort_key({"name": "mycohort", "root": "x", "pseudonym_key_file": str(named_in_params)})
    assert key.origin == str(env_key) and env_key.exists() and not named_in_params.exists()
    monkeypatch.delenv("BREASTSEG_PSEUDONYM_KEY_FILE")
    assert cohort_key({"name": "mycohort", "root": "x", "pseudonym_key_file": str(named_in_params)}).origin == \
        str(named_in_params)


def test_demo_key_is_fixed_and_refused_for_any_other_cohort(tmp_path, monkeypatch):
    from breastseg.errors import InputError
    from breastseg.pseudonym import DEMO_FINGERPRINT, DEMO_KEY, cohort_key

    monkeypatch.setenv("BREASTSEG_PSEUDONYM_KEY_FILE", str(tmp_path / "missing.key"))
    demo = cohort_key({"name": "demo", "root": "data/raw/demo"}, create=False)  # no file is read or written
    assert demo.key == DEMO_KEY and demo.fingerprint == DEMO_FINGERPRINT and not (tmp_path / "missing.key").exists()
    stolen = tmp_path / "demo.key"
    stolen.write_text(DEMO_KEY.decode())
    monkeypatch.setenv("BREASTSEG_PSEUDONYM_KEY_FILE", str(stolen))
    with pytest.raises(InputError, match="public demo key"):
        cohort_key({"name": "mycohort", "root": "data/raw/demo"})


def test_a_missing_key_is_refused_where_a_ledger_exists(tmp_path, monkeypatch):
    from breastseg.data.ledger import workspace_key
    from breastseg.errors import InputError

    monkeypatch.setenv("BREASTSEG_PSEUDONYM_KEY_FILE", str(tmp_path / "k.key"))
    cohort = {"name": "mycohort", "root": "x"}
    key = workspace_key(cohort, ["us"], tmp_path / "splits")  # no ledger yet: created on first use
    ledger = tmp_path / "splits" / "mycohort" / "us-ledger.json"
    ledger.parent.mkdir(parents=True)
    ledger.write_text(json.dumps({"key_fingerprint": key.fingerprint, "patients": {}}))
    assert workspace_key(cohort, ["us"], tmp_path / "splits").fingerprint == key.fingerprint
    (tmp_path / "k.key").unlink()
    with pytest.raises(InputError, match="no pseudonym key file"):
        workspace_key(cohort, ["us"], tmp_path / "splits")
    assert not (tmp_path / "k.key").exists()


def test_a_demo_workspace_from_before_the_fixed_key_is_refused_with_how(tmp_path):
    from breastseg.data.ledger import workspace_key
    from breastseg.errors import InputError

    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "mri-ledger.json").write_text(json.dumps({"patients": {}}))
    with pytest.raises(InputError, match="make clean"):
        workspace_key({"name": "demo", "root": "x"}, ["mri"], tmp_path / "splits")


def test_a_public_cohort_has_one_key_everywhere_and_its_key_is_refused_elsewhere(tmp_path, monkeypatch):
    """cohort.public: the same pseudonyms on every machine, no key file read or made; a key file holding that
    public key is refused for a cohort not marked public; a public cohort's key cannot be rotated."""
    from breastseg.pseudonym import ENV_KEY_FILE, cohort_key, key_fingerprint, public_key

    monkeypatch.setenv(ENV_KEY_FILE, str(tmp_path / "never.key"))
    busi = cohort_key({"name": "busi", "public": True})
    assert busi.key == public_key("busi") and busi.fingerprint == key_fingerprint(public_key("busi"))
    assert not (tmp_path / "never.key").exists()
    assert cohort_key({"name": "other", "public": True}).fingerprint != busi.fingerprint
    (tmp_path / "busi.key").write_bytes(public_key("busi"))
    monkeypatch.setenv(ENV_KEY_FILE, str(tmp_path / "busi.key"))
    with pytest.raises(InputError, match="public key of cohort 'busi', which is not marked public"):
        cohort_key({"name": "busi"})
