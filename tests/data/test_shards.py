"""Conversion and preparation in shards: one process per shard of patients; only new or changed patients are
decoded; a new image size or map setting prepares again from the cache and decodes nothing."""
import copy
import json
from pathlib import Path

import numpy as np
import pytest

from breastseg.config import Settings, load_params
from breastseg.data import shards
from breastseg.data.cohort import discover, shard_of, write_fingerprints
from breastseg.errors import InputError
from breastseg.pseudonym import DEMO_KEY

ROOT = Path(__file__).resolve().parents[2]


def _rf_patient(folder: Path, name: str, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    roi = np.zeros((96, 16), np.uint8)
    roi[30:60, 4:11] = 1
    path = folder / f"{name}.npz"
    np.savez(path, rf=rng.normal(size=(96, 16)), roi=roi, fs=40e6, f0=7e6, pitch=2e-4)
    return path


@pytest.fixture
def cohort(tmp_path):
    us = tmp_path / "raw" / "us"
    us.mkdir(parents=True)
    for i in range(5):
        _rf_patient(us, f"woman{i}", i)
    params = copy.deepcopy(load_params(ROOT / "params.yaml"))
    for e in ("mass_us_entropy", "mass_us_bmode"):
        params["experiments"][e]["image_size"] = 32
    return tmp_path, params


def _convert(tmp_path, params, n_shards=1, **kw):
    found = discover(tmp_path / "raw", "us", DEMO_KEY)
    files = write_fingerprints(found, tmp_path / "fp", n_shards)
    docs = {s: shards.convert_shard(Settings.from_params(params), "us", f, tmp_path / "interim" / f"shard-{s}.json",
                                    interim_dir=tmp_path / "interim", log_dir=tmp_path / "logs", **kw)
            for s, f in files.items()}
    return found, docs


def _prepare(tmp_path, params, name, shard="00"):
    return shards.prepare_shard(Settings.from_params(params), name, tmp_path / "interim" / f"shard-{shard}.json",
                                tmp_path / "processed" / name / f"shard-{shard}.json",
                                interim_dir=tmp_path / "interim", processed_dir=tmp_path / "processed" / name)


def test_only_new_or_changed_patients_are_converted(cohort):
    tmp_path, params = cohort
    found, docs = _convert(tmp_path, params)
    assert len(docs["00"]["converted"]) == 5 and len(docs["00"]["patients"]) == 5
    assert _convert(tmp_path, params)[1]["00"]["converted"] == []  # nothing changed: nothing decoded
    _rf_patient(tmp_path / "raw" / "us", "woman5", 5)     # a new patient
    _rf_patient(tmp_path / "raw" / "us", "woman2", 99)    # new bytes for an old one
    found, docs = _convert(tmp_path, params)
    changed = {pid for pid, p in found.items() if Path(p.sources[0]).stem in ("woman2", "woman5")}
    assert set(docs["00"]["converted"]) == changed and len(docs["00"]["patients"]) == 6


def test_a_new_image_size_or_map_setting_prepares_again_and_decodes_nothing(cohort, monkeypatch):
    tmp_path, params = cohort
    _convert(tmp_path, params)
    for name in ("mass_us_entropy", "mass_us_bmode"):
        assert len(_prepare(tmp_path, params, name)["prepared"]) == 5
        assert _prepare(tmp_path, params, name)["prepared"] == []

    def no_decoding(*a, **k):
        raise AssertionError("raw files decoded again")

    import breastseg.us.maps as maps

    monkeypatch.setattr(maps, "read_scans", no_decoding)
    monkeypatch.setattr(maps, "envelope", no_decoding)
    bigger = copy.deepcopy(params)
    bigger["experiments"]["mass_us_bmode"]["image_size"] = 48
    assert len(_prepare(tmp_path, bigger, "mass_us_bmode")["prepared"]) == 5
    assert _prepare(tmp_path, bigger, "mass_us_entropy")["prepared"] == []  # its own settings did not change
    with np.load(next((tmp_path / "processed" / "mass_us_bmode").glob("P*.npz"))) as z:
        assert z["image"].shape[-2:] == (48, 48)
    wider = copy.deepcopy(bigger)
    wider["us_maps"]["window_pulses"] = 2.0
    assert len(_prepare(tmp_path, wider, "mass_us_entropy")["prepared"]) == 5
    assert _prepare(tmp_path, wider, "mass_us_bmode")["prepared"] == []  # B-mode does not read the window
    # the workflow's rerun trigger sees the same
    assert shards.preparation(Settings.from_params(wider), "mass_us_bmode") == shards.preparation(Settings.from_params(bigger), "mass_us_bmode")
    assert shards.preparation(Settings.from_params(wider), "mass_us_entropy") != shards.preparation(Settings.from_params(bigger), "mass_us_entropy")


def test_maps_made_from_the_cache_equal_those_made_from_the_rf(cohort):
    """Training prepares from the cached envelope, inference from the RF: the same numbers."""
    from breastseg.config import experiment
    from breastseg.data.slices import prepare_us
    from breastseg.us.maps import write_us_maps

    tmp_path, params = cohort
    found, docs = _convert(tmp_path, params)
    pid, patient = next(iter(found.items()))
    settings = {"window_pulses": 3.0, "bins": 16, "entropy_on": "envelope", "dynamic_range_db": 40.0}
    write_us_maps(list(patient.sources), tmp_path / "maps", patient_id=pid, **settings)
    exp = experiment(params, "mass_us_entropy")
    cached = prepare_us(exp, tmp_path / "interim" / pid, settings)
    direct = prepare_us(exp, tmp_path / "maps")
    assert np.array_equal(np.asarray(cached["images"]), np.asarray(direct["images"]))
    assert np.array_equal(np.asarray(cached["labels"]), np.asarray(direct["labels"]))


def test_a_bad_patient_fails_its_shard_after_the_others_with_its_own_log(cohort):
    tmp_path, params = cohort
    bad = tmp_path / "raw" / "us" / "woman3.npz"
    bad.write_bytes(b"not an npz file")
    found = discover(tmp_path / "raw", "us", DEMO_KEY)
    bad_pid = next(pid for pid, p in found.items() if Path(p.sources[0]) == bad)
    with pytest.raises(InputError) as err:
        _convert(tmp_path, params)
    assert bad_pid in str(err.value) and "woman3.npz" in str(err.value) and "\n" not in str(err.value)
    log = (tmp_path / "logs" / f"{bad_pid}.log").read_text()
    assert "woman3.npz" in log
    assert not (tmp_path / "interim" / "shard-00.json").exists()  # no marker: the shard is not done
    converted = [p for p in found if (tmp_path / "interim" / p / ".converted").exists()]
    assert sorted(converted) == sorted(p for p in found if p != bad_pid)  # the others were converted
    # skip: the run goes on without it; converting it again later needs no other patient decoded
    _, docs = _convert(tmp_path, params, on_error="skip")
    assert bad_pid in docs["00"]["failed"] and bad_pid not in docs["00"]["patients"]
    assert docs["00"]["converted"] == []
    _rf_patient(tmp_path / "raw" / "us", "woman3", 3)
    _, docs = _convert(tmp_path, params)
    assert docs["00"]["converted"] == [bad_pid] and not (tmp_path / "logs" / f"{bad_pid}.log").exists()


def test_a_patients_shard_follows_from_its_pseudonym_alone(cohort):
    tmp_path, params = cohort
    before = {pid: shard_of(pid, 4) for pid in discover(tmp_path / "raw", "us", DEMO_KEY)}
    for i in range(5, 25):
        _rf_patient(tmp_path / "raw" / "us", f"woman{i}", i)
    found = discover(tmp_path / "raw", "us", DEMO_KEY)
    files = write_fingerprints(found, tmp_path / "fp", 4)
    for shard, f in files.items():
        for pid in json.loads(f.read_text())["patients"]:
            assert shard_of(pid, 4) == shard and before.get(pid, shard) == shard
    assert len(files) == 4 and sum(len(json.loads(f.read_text())["patients"]) for f in files.values()) == 25
    text = "".join(f.read_text() for f in files.values())
    assert str(tmp_path / "raw") in text  # raw paths stay in .snakemake, read by the job, never an argument
