import json
from collections import Counter

import numpy as np
import pytest

from breastseg.data.split import patient_split, read_split, split_dataset, subset_patients
from breastseg.config import Settings

FRACTIONS = {"train": 0.6, "val": 0.2, "test": 0.2}


def _strata(n, k=4):
    return {f"P{i:012x}": f"bpe{i % k}" for i in range(n)}


def test_no_patient_in_two_subsets_and_all_assigned():
    strata = _strata(40)
    split = patient_split(strata, FRACTIONS, seed=1)
    assert set(split) == set(strata)
    by_subset = {s: {p for p, v in split.items() if v == s} for s in ("train", "val", "test")}
    assert not (by_subset["train"] & by_subset["val"]) and not (by_subset["train"] & by_subset["test"])
    assert not (by_subset["val"] & by_subset["test"])
    counts = Counter(split.values())
    assert counts == {"train": 24, "val": 8, "test": 8}


def test_stratified_each_stratum_in_every_subset():
    split = patient_split(_strata(40), FRACTIONS, seed=3)
    for stratum in ("bpe0", "bpe1", "bpe2", "bpe3"):
        members = [v for p, v in split.items() if _strata(40)[p] == stratum]
        assert set(members) == {"train", "val", "test"}


def test_seeded_and_seed_matters():
    strata = _strata(30)
    assert patient_split(strata, FRACTIONS, 5) == patient_split(strata, FRACTIONS, 5)
    assert patient_split(strata, FRACTIONS, 5) != patient_split(strata, FRACTIONS, 6)


def test_append_only_existing_patients_never_move():
    strata = _strata(20)
    first = patient_split(strata, FRACTIONS, seed=0)
    grown = {**strata, **{f"Q{i:012x}": "bpe0" for i in range(15)}}
    second = patient_split(grown, FRACTIONS, seed=0, existing=first)
    assert all(second[p] == s for p, s in first.items())
    assert set(second) == set(grown)
    # even a tampered-looking existing assignment is kept as written
    odd = dict(first, **{next(iter(first)): "test"})
    assert patient_split(grown, FRACTIONS, 0, existing=odd)[next(iter(first))] == "test"


def test_tiny_cohort_gets_all_three_subsets():
    split = patient_split(_strata(3, k=1), FRACTIONS, seed=0)
    assert sorted(split.values()) == ["test", "train", "val"]


def _prepared(tmp_path, exp, pid, stratum, n=2):
    d = tmp_path / "processed" / exp
    d.mkdir(parents=True, exist_ok=True)
    f = d / f"{pid}.npz"
    np.savez(f, image=np.zeros((n, 1, 16, 16), np.float32), label=np.zeros((n, 16, 16), np.uint8),
             case=np.array(["scan-1"] * n), index=np.arange(n, dtype=np.int32),
             spacing_mm=np.ones((n, 2), np.float32), patient=np.asarray(pid), stratum=np.asarray(stratum))
    return f


def test_split_dataset_shares_assignment_and_writes_manifests(tmp_path, params):
    files = [_prepared(tmp_path, e, f"P{i:012x}", "benign" if i % 2 else "malignant")
             for e in ("mass_us_entropy", "mass_us_bmode") for i in range(10)]
    split_dataset(Settings.from_params(params), "us", files, splits_dir=tmp_path / "splits", processed_dir=tmp_path / "processed")
    a = read_split(tmp_path / "splits" / "mass_us_entropy.json")
    b = read_split(tmp_path / "splits" / "mass_us_bmode.json")
    assert a == b and len(a) == 10
    manifest = (tmp_path / "processed" / "mass_us_bmode" / "manifest.csv").read_text().splitlines()
    assert manifest[0] == "patient,case,slice,annotated,stratum,subset,file"
    assert len(manifest) == 1 + 10 * 2
    test = subset_patients(tmp_path / "splits" / "mass_us_entropy.json", "test")
    assert test and all(a[p]["subset"] == "test" for p in test)
    # a new patient arrives: nobody else moves
    files += [_prepared(tmp_path, e, "Pffffffffffff", "benign") for e in ("mass_us_entropy", "mass_us_bmode")]
    split_dataset(Settings.from_params(params), "us", files, splits_dir=tmp_path / "splits", processed_dir=tmp_path / "processed")
    grown = read_split(tmp_path / "splits" / "mass_us_entropy.json")
    assert len(grown) == 11 and all(grown[p]["subset"] == v["subset"] for p, v in a.items())


def test_split_files_follow_the_ledger_not_the_other_way(tmp_path, params):
    """A split file is an output: edited or stale, it is rewritten from the ledger, which alone decides."""
    files = [_prepared(tmp_path, e, f"P{i:012x}", "x") for e in ("mass_us_entropy", "mass_us_bmode") for i in range(4)]
    split_dataset(Settings.from_params(params), "us", files, splits_dir=tmp_path / "splits", processed_dir=tmp_path / "processed")
    f = tmp_path / "splits" / "mass_us_bmode.json"
    before = read_split(f)
    doc = json.loads(f.read_text())
    pid = next(iter(doc["patients"]))
    doc["patients"][pid]["subset"] = {"train": "test", "test": "val", "val": "train"}[doc["patients"][pid]["subset"]]
    f.write_text(json.dumps(doc))
    split_dataset(Settings.from_params(params), "us", files, splits_dir=tmp_path / "splits", processed_dir=tmp_path / "processed")
    assert read_split(f) == before


@pytest.mark.parametrize("order", [("mass_us_entropy",), ("mass_us_bmode",), ("mass_us_bmode", "mass_us_entropy"),
                                   ("mass_us_entropy", "mass_us_bmode")])
def test_any_subset_of_experiments_gets_the_same_split(tmp_path, params, order):
    """Each experiment alone, or both in any order: the same patients and subsets; other split files untouched."""
    kw = dict(splits_dir=tmp_path / "splits", processed_dir=tmp_path / "processed")
    files = {e: [_prepared(tmp_path, e, f"P{i:012x}", "benign" if i % 3 else "malignant") for i in range(10)]
             for e in ("mass_us_entropy", "mass_us_bmode")}
    reference = patient_split({f"P{i:012x}": "benign" if i % 3 else "malignant" for i in range(10)},
                              params["split"]["fractions"], params["split"]["seed"])
    other = tmp_path / "splits" / "mass_us_other.json"
    other.parent.mkdir(parents=True)
    for e in ("mass_us_entropy", "mass_us_bmode"):
        if e not in order:
            (tmp_path / "splits" / f"{e}.json").write_text("left as it was")
    assignment = split_dataset(Settings.from_params(params), "us", [f for e in order for f in files[e]], **kw)
    assert assignment == reference
    for e in ("mass_us_entropy", "mass_us_bmode"):
        written = (tmp_path / "splits" / f"{e}.json").read_text()
        if e in order:
            assert {p: v["subset"] for p, v in read_split(tmp_path / "splits" / f"{e}.json").items()} == reference
        else:
            assert written == "left as it was"


def test_ledger_keeps_assignments_when_the_split_files_are_deleted(tmp_path, params):
    """Snakemake deletes a rule's outputs before rerunning it: the ledger (no rule's output) remembers."""
    exps = ("mass_us_entropy", "mass_us_bmode")
    kw = dict(splits_dir=tmp_path / "splits", processed_dir=tmp_path / "processed")
    files = [_prepared(tmp_path, e, f"P{i:012x}", "benign" if i % 2 else "malignant") for e in exps for i in range(8)]
    split_dataset(Settings.from_params(params), "us", files, data_version="v1", **kw)
    first = read_split(tmp_path / "splits" / "mass_us_bmode.json")
    for e in exps:
        (tmp_path / "splits" / f"{e}.json").unlink()
    files += [_prepared(tmp_path, e, f"P{i:012x}", "benign") for e in exps for i in range(8, 11)]
    split_dataset(Settings.from_params(params), "us", files, data_version="v2", **kw)
    doc = json.loads((tmp_path / "splits" / "mass_us_bmode.json").read_text())
    assert doc["data_versions"] == ["v1", "v2"]
    assert all(doc["patients"][p]["subset"] == v["subset"] and doc["patients"][p]["joined"] == "v1"
               for p, v in first.items())
    assert sorted(p for p, v in doc["patients"].items() if v["joined"] == "v2") == [f"P{i:012x}" for i in range(8, 11)]
    # An older data version checked out again: the split lists the patients present, with their old subsets.
    older = [f for f in files if int(f.stem[1:], 16) < 8]
    split_dataset(Settings.from_params(params), "us", older, data_version="v1", **kw)
    again = read_split(tmp_path / "splits" / "mass_us_bmode.json")
    assert again == {p: {**v, "joined": "v1"} for p, v in first.items()}
    ledger = json.loads((tmp_path / "splits" / "demo" / "us-ledger.json").read_text())
    assert len(ledger["patients"]) == 11 and ledger["cohort"] == "demo"


def _mycohort(params):
    return {**params, "cohort": {"name": "mycohort", "root": "data/raw/mycohort"}}


def test_ledger_records_the_key_fingerprint_and_refuses_another_key(tmp_path, params, monkeypatch):
    from breastseg.errors import InputError
    from breastseg.pseudonym import DEMO_FINGERPRINT, cohort_key

    kw = dict(splits_dir=tmp_path / "splits", processed_dir=tmp_path / "processed")
    files = [_prepared(tmp_path, "mass_us_bmode", f"P{i:012x}", "x") for i in range(5)]
    split_dataset(Settings.from_params(params), "us", files, **kw)
    assert json.loads((tmp_path / "splits" / "demo" / "us-ledger.json").read_text())["key_fingerprint"] == \
        DEMO_FINGERPRINT
    own = _mycohort(params)
    split_dataset(Settings.from_params(own), "us", files, **kw)
    ledger = json.loads((tmp_path / "splits" / "mycohort" / "us-ledger.json").read_text())
    fingerprint = cohort_key(own["cohort"]).fingerprint
    assert ledger["key_fingerprint"] == fingerprint != DEMO_FINGERPRINT
    assert "key" not in json.dumps(ledger).replace("key_fingerprint", "")  # the fingerprint, never the key
    other = tmp_path / "other.key"
    other.write_text("f" * 64)
    monkeypatch.setenv("BREASTSEG_PSEUDONYM_KEY_FILE", str(other))
    with pytest.raises(InputError, match=f"made with pseudonym key {fingerprint}.*{other}"):
        split_dataset(Settings.from_params(own), "us", files, **kw)


def test_withdrawn_patients_are_never_split_again(tmp_path, params):
    from breastseg.data.ledger import withdraw
    from breastseg.errors import InputError

    own = _mycohort(params)
    kw = dict(splits_dir=tmp_path / "splits", processed_dir=tmp_path / "processed")
    files = [_prepared(tmp_path, "mass_us_bmode", f"P{i:012x}", "x") for i in range(6)]
    first = split_dataset(Settings.from_params(own), "us", files, **kw)
    gone = "P000000000002"
    report = withdraw(Settings.from_params(own), gone, interim_dir=tmp_path / "interim", tag_models=False, **kw)
    assert report["datasets"]["us"]["subset"] == first[gone]
    assert not (tmp_path / "processed" / "mass_us_bmode" / f"{gone}.npz").exists()
    ledger = json.loads((tmp_path / "splits" / "mycohort" / "us-ledger.json").read_text())
    assert gone not in ledger["patients"] and ledger["withdrawn"] == [gone]
    assert gone not in read_split(tmp_path / "splits" / "mass_us_bmode.json")
    rest = [f for f in files if f.exists()]
    assert split_dataset(Settings.from_params(own), "us", rest, **kw) == {p: s for p, s in first.items() if p != gone}
    back = _prepared(tmp_path, "mass_us_bmode", gone, "x")  # its raw files were left: refused, never re-added
    with pytest.raises(InputError, match="withdrawn"):
        split_dataset(Settings.from_params(own), "us", [*rest, back], **kw)


def test_rekey_keeps_every_patient_in_its_subset_under_its_new_name(tmp_path, params, monkeypatch):
    """Key rotation: the ledger follows each woman (found by her raw files) to her new pseudonym."""
    from breastseg.data.cohort import discover
    from breastseg.data.ledger import rekey
    from breastseg.errors import InputError
    from breastseg.pseudonym import key_fingerprint, load_key

    root = tmp_path / "cohort"
    for name in ("Doe^Jane", "Roe^Ann", "Poe^Eve", "Loe^Kim", "Moe^Ida"):
        (root / "mri" / name / "study").mkdir(parents=True)
        (root / "mri" / name / "study" / "x.dcm").write_bytes(name.encode())
    old, new = tmp_path / "old.key", tmp_path / "new.key"
    monkeypatch.setenv("BREASTSEG_PSEUDONYM_KEY_FILE", str(old))
    own = {**params, "cohort": {"name": "mycohort", "root": str(root)}}
    kw = dict(splits_dir=tmp_path / "splits", processed_dir=tmp_path / "processed")
    before = discover(root, "mri", load_key(old))
    files = [_prepared(tmp_path, "bpe_mri", pid, "x") for pid in before]
    first = split_dataset(Settings.from_params(own), "mri", files, **kw)
    renamed = rekey(Settings.from_params(own), old, new, interim_dir=tmp_path / "interim", **kw)["mri"]
    after = discover(root, "mri", load_key(new))
    assert set(renamed) == set(before) and set(renamed.values()) == set(after)
    assert all(before[o].sources == after[n].sources for o, n in renamed.items())
    ledger = json.loads((tmp_path / "splits" / "mycohort" / "mri-ledger.json").read_text())
    assert ledger["key_fingerprint"] == key_fingerprint(load_key(new))
    assert {p: v["subset"] for p, v in ledger["patients"].items()} == {renamed[p]: s for p, s in first.items()}
    assert not any((tmp_path / "processed" / "bpe_mri" / f"{p}.npz").exists() for p in before)  # rebuilt next run
    with pytest.raises(InputError, match="made with pseudonym key"):  # the old key is no longer the ledger's
        rekey(Settings.from_params(own), old, tmp_path / "third.key", interim_dir=tmp_path / "interim", **kw)
