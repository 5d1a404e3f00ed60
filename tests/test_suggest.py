"""`breastseg suggest`: the unannotated slices (MRI) and scans (ultrasound) ranked by a model's uncertainty."""
import argparse
import csv
import json
from pathlib import Path

import numpy as np
import pytest

from inference_fixtures import mri_bundle, us_bundle

from breastseg.errors import InputError
from breastseg.suggest import Candidate, mri_candidates, select, suggest, us_candidates

IDENTITY = {"patient_id": "BRS-7", "name": "Doe^Jane", "birth_date": "19700101", "age": "050Y",
            "study_date": "20200101", "accession": "ACC777", "study_id": "1", "institution": "Test Hospital",
            "referring": "Keller^Thomas"}


@pytest.fixture(scope="module")
def mri_cohort(tmp_path_factory):
    """Two converted patients whose studies are partly annotated (a tiny phantom each) and a 24-px model."""
    from breastseg.dicom.dce import convert_dce_patient
    from breastseg.synth import mri as mri_mod

    root = tmp_path_factory.mktemp("suggest-mri")
    for i in range(2):
        rng = np.random.default_rng(20 + i)
        phantom = mri_mod.simulate_mri(rng, 24, 8, 1, slice_mm=3.0)
        raw = root / "raw" / f"BRS-{i}" / "study"
        mri_mod.write_study(raw, phantom, {**IDENTITY, "patient_id": f"BRS-{i}"}, rng, (7, i),
                            annotated_fraction=0.5, layout="flat")
        convert_dce_patient(raw.parent, root / "interim" / f"P00000000000{i}", patient_id=f"P00000000000{i}")
    return root, mri_bundle(root / "model", image_size=24, seed=3)


def _run(root, model, out, **kw):
    settings = dict(budget=6, strategy="entropy", min_gap=2, seed=0, mc_passes=3, log_to_mlflow=False)
    settings.update(kw)
    rows = suggest(str(model), root / "interim", out, **settings)
    with open(out, newline="") as fh:
        assert list(csv.DictReader(fh)) == [{k: str(v) for k, v in r.items()} for r in rows]
    return rows


def test_select_takes_the_best_and_skips_near_duplicates():
    cands = [Candidate("P1", "s", k) for k in range(6)] + [Candidate("P2", "s", 0)]
    scores = np.array([0.1, 0.9, 0.8, 0.7, 0.2, 0.2, 0.5])
    assert select(cands, scores, budget=4, min_gap=2) == [1, 3, 6, 5]  # 2 is next to 1; ties by patient, slice
    assert select(cands, scores, budget=10, min_gap=1) == [1, 2, 3, 6, 4, 5, 0]
    assert select(cands, scores, budget=2, min_gap=3) == [1, 6]


def test_tta_passes_follow_the_training_mirroring_and_brightness(params):
    """tta mirrors along the axes training allows (mapped back) and scales by the ends of the brightness range."""
    import torch

    from breastseg.config import experiment
    from breastseg.data.augment import mirroring_only
    from breastseg.suggest import TTA_DEFAULTS, tta_scores, tta_settings

    aug = experiment(params, "mass_us_entropy").train.augment
    assert tta_settings(aug) == (aug.mirror, (aug.brightness.low, aug.brightness.high))
    assert tta_settings(None) == TTA_DEFAULTS == (("lr",), (0.9, 1.1))
    assert tta_settings(mirroring_only("ud")) == (("ud",), (0.9, 1.1))  # training changed no brightness

    class Rows(torch.nn.Module):  # background probability grows downwards: only up-down mirroring changes it
        def forward(self, x):
            rows = torch.linspace(-2, 2, x.shape[-2]).view(1, 1, -1, 1).expand(x.shape[0], 1, -1, x.shape[-1])
            return torch.cat([rows, -rows], 1)

    images = np.random.default_rng(0).random((2, 1, 8, 8)).astype(np.float32)
    assert np.allclose(tta_scores(Rows(), images, ("lr",), (1.0, 1.0)), 0)
    assert (tta_scores(Rows(), images, ("lr", "ud"), (1.0, 1.0)) > 0.01).all()


def test_only_unannotated_slices_are_suggested_and_the_ranking_is_deterministic(mri_cohort, tmp_path):
    root, model = mri_cohort
    found = mri_candidates(root / "interim")
    annotated = {(m.parent.name, st["key"], k) for m in (root / "interim").glob("*/patient.json")
                 for st in json.loads(m.read_text())["studies"] for k in st["annotated_slices"]}
    assert found and annotated and not {(c.patient, c.study, c.index) for c in found} & annotated
    assert len(found) + len(annotated) == 2 * 8  # every slice is one or the other

    first = _run(root, model, tmp_path / "a.csv", montage=tmp_path / "a.png")
    again = _run(root, model, tmp_path / "b.csv", montage=False)
    assert first == again and len(first) == 6
    assert all((r["patient"], r["study"], r["slice_index"]) not in annotated for r in first)
    scores = [float(r["score"]) for r in first]
    assert scores == sorted(scores, reverse=True) and scores[0] > scores[-1] > 0
    by_study: dict = {}
    for r in first:
        by_study.setdefault((r["patient"], r["study"]), []).append(r["slice_index"])
    assert all(abs(a - b) >= 2 for ks in by_study.values() for a in ks for b in ks if a != b)
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG" and not (tmp_path / "b.png").exists()
    assert {r["strategy"] for r in first} == {"entropy"} and set(first[0]) == {
        "rank", "patient", "study", "slice_index", "score", "strategy", "model", "model_version"}


def test_strategies_differ_and_random_follows_its_seed(mri_cohort, tmp_path):
    root, model = mri_cohort
    units = {s: [(r["patient"], r["slice_index"]) for r in _run(root, model, tmp_path / f"{s}.csv", strategy=s,
                                                                  budget=4, montage=False)]
             for s in ("entropy", "tta", "random")}
    assert len(set(map(tuple, units.values()))) >= 2
    seeded = [[(r["patient"], r["slice_index"]) for r in _run(root, model, tmp_path / f"r{seed}.csv", budget=4,
                                                              strategy="random", seed=seed, montage=False)]
              for seed in (0, 0, 1)]
    assert seeded[0] == seeded[1] != seeded[2]
    with pytest.raises(InputError, match="mc_dropout needs a model trained with dropout"):
        _run(root, model, tmp_path / "mc.csv", strategy="mc_dropout", montage=False)


def test_no_identifying_value_in_the_worklist_or_montage(mri_cohort, tmp_path):
    root, model = mri_cohort
    _run(root, model, tmp_path / "w.csv", montage=tmp_path / "w.png")
    for f in (tmp_path / "w.csv", tmp_path / "w.png"):
        blob = f.read_bytes()
        for value in ("BRS-0", "BRS-1", "Doe^Jane", "ACC777", "19700101", "Keller"):
            assert value.encode() not in blob, (value, f)


def test_an_ultrasound_scan_without_a_mask_is_converted_suggested_and_never_trained_on(tmp_path):
    from breastseg.config import Experiment
    from breastseg.data.slices import prepare_us
    from breastseg.us.maps import write_decoded_patient

    rng = np.random.default_rng(4)
    common = dict(fs=40e6, f0=7e6, pitch=2e-4)
    roi = np.zeros((120, 24), np.uint8)
    roi[40:70, 8:16] = 1
    np.savez(tmp_path / "a.npz", rf=rng.normal(size=(120, 24)) * (1 + roi), roi=roi, **common)
    np.savez(tmp_path / "b.npz", rf=rng.normal(size=(120, 24)), **common)  # nobody annotated it yet
    write_decoded_patient([tmp_path / "a.npz", tmp_path / "b.npz"], tmp_path / "interim" / "P000000000009",
                          patient_id="P000000000009")
    metas = {p.parent.name: json.loads(p.read_text()) for p in (tmp_path / "interim").rglob("meta.json")}
    assert sorted(m["annotated"] for m in metas.values()) == [False, True]
    unannotated = next(k for k, m in metas.items() if not m["annotated"])
    assert us_candidates(tmp_path / "interim") == [Candidate("P000000000009", unannotated, 0)]

    bundle = us_bundle(tmp_path / "m", channels=("bmode",), image_size=32)
    exp = Experiment.from_dict(json.loads((bundle / "config.json").read_text())["experiment"],
                               maps=json.loads((bundle / "config.json").read_text())["us_maps"])
    prepared = prepare_us(exp, tmp_path / "interim" / "P000000000009")
    assert prepared["cases"] == [k for k, m in metas.items() if m["annotated"]]  # training sees the annotated one
    rows = suggest(str(bundle), tmp_path / "interim", tmp_path / "w.csv", budget=5, strategy="tta", min_gap=2,
                   seed=0, mc_passes=2, log_to_mlflow=False)
    assert [(r["patient"], r["study"], r["slice_index"]) for r in rows] == [("P000000000009", unannotated, 0)]
    assert Path(tmp_path / "w.png").exists()


def test_locate_finds_the_raw_folders_of_a_worklist_on_the_key_holding_machine(mri_cohort, tmp_path, capsys,
                                                                              params):
    import copy

    import yaml

    from breastseg.cli import main
    from breastseg.data.cohort import discover
    from breastseg.pseudonym import load_key

    root, _ = mri_cohort
    (tmp_path / "cohort").mkdir()
    (tmp_path / "cohort" / "mri").symlink_to(root / "raw")
    key = load_key()  # the test's own key file ($BREASTSEG_PSEUDONYM_KEY_FILE)
    pids = sorted(discover(tmp_path / "cohort", "mri", key))
    p = copy.deepcopy(params)
    p["cohort"] = {"name": "mine", "root": str(tmp_path / "cohort")}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(p))
    (tmp_path / "w.csv").write_text("rank,patient\n1," + pids[1] + "\n")
    assert main(["--params", str(tmp_path / "p.yaml"), "locate", str(tmp_path / "w.csv"), pids[0]]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == [pids[1], pids[0]]
    assert all(line.split("\t")[1].startswith(str(tmp_path / "cohort" / "mri" / "BRS-")) for line in lines)
    assert main(["--params", str(tmp_path / "p.yaml"), "locate", "P000000000000"]) == 2
    assert "no raw data for P000000000000" in capsys.readouterr().err


def test_synth_withholds_labels_outside_the_cohort_and_leaves_the_cohort_unchanged(tmp_path):
    import hashlib

    import nibabel as nib

    from breastseg.synth.cohort import write_cohort

    def digests(folder: Path) -> dict:
        return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(folder.rglob("*")) if p.is_file()}

    small = dict(mri_matrix=24, mri_slices=6, us_lines=16, us_depth_mm=6.0, annotated_fraction=0.5, progress=False)
    write_cohort(tmp_path / "plain", 2, 5, **small)
    write_cohort(tmp_path / "cohort", 2, 5, withheld_labels_dir=tmp_path / "withheld", **small)
    assert digests(tmp_path / "plain") == digests(tmp_path / "cohort")  # the cohort's bytes do not change
    for stored in (tmp_path / "cohort" / "mri").glob("*/*/labels.nii.gz"):
        full = tmp_path / "withheld" / stored.parent.parent.name / stored.parent.name / "labels.nii.gz"
        part, whole = (np.asarray(nib.load(str(f)).dataobj) for f in (stored, full))
        annotated = ~(part == 255).all(axis=(0, 1))
        assert 0 < annotated.sum() < part.shape[2] and not (whole == 255).any()
        np.testing.assert_array_equal(part[:, :, annotated], whole[:, :, annotated])
    with pytest.raises(InputError, match="outside the cohort"):
        write_cohort(tmp_path / "c2", 1, 5, withheld_labels_dir=tmp_path / "c2" / "truth", **small)


def test_the_suggest_command_names_its_files_counts_what_the_montage_shows_and_keeps_libraries_quiet(
        tmp_path, capsys, monkeypatch):
    import breastseg.evaluation.figures as figures
    from breastseg.cli import build_parser, main
    from breastseg.us.maps import write_decoded_patient

    rng = np.random.default_rng(5)
    for i in range(3):  # three unannotated scans
        np.savez(tmp_path / f"s{i}.npz", rf=rng.normal(size=(96, 16)), fs=40e6, f0=7e6, pitch=2e-4)
        write_decoded_patient([tmp_path / f"s{i}.npz"], tmp_path / "interim" / f"P00000000000{i}",
                              patient_id=f"P00000000000{i}")
    bundle = us_bundle(tmp_path / "m", channels=("bmode",), image_size=32)
    titles = []
    monkeypatch.setattr(figures, "worklist_montage", lambda *a, **k: titles.append(a[6]))
    out = tmp_path / "lists" / "w.csv"
    argv = ["suggest", str(bundle), "--interim-dir", str(tmp_path / "interim"), "--out", str(out), "--budget", "3",
            "--no-mlflow"]
    params = tmp_path / "p.yaml"
    params.write_text((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    assert main(["--params", str(params), *argv]) == 0
    captured = capsys.readouterr()
    last = captured.out.strip().splitlines()[-1]
    assert last == f"breastseg: 3 to annotate next in {out} (the first 3 in {out.with_suffix('.png')})"
    assert " INFO " not in captured.err
    assert titles and titles[0].startswith("mass_us_bmode: the first 3 of the 3 scans to annotate next")
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    help_lines = " ".join(commands.choices["suggest"].format_help().split())
    assert "(default: suggest.budget)" in help_lines and "(default: None)" not in help_lines


def test_help_lists_the_commands_people_type_and_names_the_workflow_steps_apart():
    from breastseg.cli import WORKFLOW_STEPS, build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    listed = {choice.dest for choice in commands._choices_actions}  # the rows of `breastseg --help`
    assert {"predict", "suggest", "train", "convert", "us-maps"} <= listed
    assert not listed & set(WORKFLOW_STEPS)
    assert set(WORKFLOW_STEPS) <= set(commands.choices)  # still commands, each with its own --help
    epilog = parser.format_help().split("options:")[1]
    assert ", ".join(WORKFLOW_STEPS) in epilog and "==SUPPRESS==" not in parser.format_help()
