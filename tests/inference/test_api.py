"""`breastseg predict`: a registered model on new studies reproduces evaluation, from a fresh shell; bad input
gives one line and exit 2."""
import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from inference_fixtures import MATRIX, write_studies

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def mri_model(tmp_path_factory):
    """A tiny bpe_mri model trained by the pipeline's own functions, registered with alias champion."""
    import mlflow

    from breastseg.config import experiment, load_params
    from breastseg.data.augment import mirroring_only
    from breastseg.data.slices import prepare_patient
    from breastseg.data.split import split_dataset
    from breastseg.dicom.dce import convert_dce_patient
    from breastseg.config import Settings
    from breastseg.evaluation.evaluate import evaluate_model
    from breastseg.training.train import train_experiment

    tmp = tmp_path_factory.mktemp("predict")
    cwd = os.getcwd()
    os.chdir(tmp)
    try:
        params = copy.deepcopy(load_params(ROOT / "params.yaml"))
        params["experiments"]["bpe_mri"].update(image_size=MATRIX, model={"name": "unet", "features": [8, 16]},
                                                train={"max_epochs": 40})
        no_augment = mirroring_only().as_dict()
        params["train"].update(max_epochs=40, batch_size=4, threads=1, lr=0.02, augment=no_augment,
                               early_stopping_patience=40, precision="32-true", init_from="scratch")
        params["tracking"].update(mlflow_uri=f"sqlite:///{tmp}/mlflow.db", optuna_storage=f"sqlite:///{tmp}/optuna.db",
                                  artifact_root=str(tmp / "mlartifacts"))
        name = "bpe_mri"
        exp = experiment(params, name)
        studies = write_studies(tmp / "raw", 5)
        processed = tmp / "processed" / name
        files, study_of = [], {}
        for i, study in enumerate(studies):
            pid = f"P{i:012x}"
            convert_dce_patient(study.parent, tmp / "interim" / "mri" / pid, patient_id=pid)
            files.append(prepare_patient(exp, tmp / "interim" / "mri" / pid, processed / f"{pid}.npz", patient_id=pid))
            study_of[pid] = study
        split_dataset(Settings.from_params(params), "mri", files, splits_dir=tmp / "splits", processed_dir=tmp / "processed")
        split = tmp / "splits" / f"{name}.json"
        model = train_experiment(Settings.from_params(params), name, split_file=split, processed_dir=processed, best_params=None,
                                 out_dir=tmp / "models" / name)
        mlflow.MlflowClient().set_registered_model_alias(model["model_name"], "champion", model["version"])
        s = Settings.from_params(params)
        _, patients, _, _, _ = evaluate_model(s.experiments[name], s.evaluation, s.tracking, model["model_uri"], split,
                                              processed)
    finally:
        os.chdir(cwd)
    return {"tmp": tmp, "params": params, "model": model, "patients": patients, "study_of": study_of,
            "uri": params["tracking"]["mlflow_uri"]}


def _dice(pred: np.ndarray, truth: np.ndarray, c: int) -> float:
    valid = truth != 255
    p, t = (pred == c) & valid, (truth == c) & valid
    return 2 * (p & t).sum() / ((p.sum() + t.sum()) or 1)


def test_predict_from_fresh_shell_reproduces_evaluation_dice(mri_model, tmp_path):
    """Only MLFLOW_TRACKING_URI set, no params.yaml in reach: champion -> NIfTI whose Dice equals evaluation's."""
    row = mri_model["patients"][0]
    study = mri_model["study_of"][row["patient"]]
    out = tmp_path / "out"
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "MLFLOW_TRACKING_URI": mri_model["uri"],
           "BREASTSEG_PSEUDONYM_KEY_FILE": str(tmp_path / "key")}
    proc = subprocess.run([sys.executable, "-m", "breastseg.cli", "-q", "predict",
                           "models:/breastseg-bpe_mri@champion", str(study), str(out)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    pred = np.asarray(nib.load(out / "labels.nii.gz").dataobj)
    truth_img = nib.load(study / "labels.nii.gz")
    truth = np.asarray(truth_img.dataobj)
    assert pred.shape == truth.shape and pred.dtype == np.uint8
    np.testing.assert_allclose(nib.load(out / "labels.nii.gz").affine, truth_img.affine, atol=1e-4)
    for c, cls in ((1, "fgt"), (2, "bpe")):
        assert _dice(pred, truth, c) == pytest.approx(row[f"dice_{cls}"], abs=1e-6)
    # a model that learned something: both classes predicted and overlapping the truth, not two empty masks
    assert (pred == 1).any() and (pred == 2).any() and min(row["dice_fgt"], row["dice_bpe"]) > 0.05

    rec = json.loads((out / "readout.json").read_text())
    model = mri_model["model"]
    assert rec["model"]["version"] == model["version"] and rec["model"]["registered_model"] == "breastseg-bpe_mri"
    assert rec["model"]["run_id"] == model["run_id"] and rec["model"]["alias"] == "champion"
    for key in ("git_commit", "data_hash", "split_hash", "params_hash"):
        assert rec["lineage"][key]
    r = rec["readout"]
    voxel_ml = float(np.prod(np.sqrt((truth_img.affine[:3, :3] ** 2).sum(axis=0)))) / 1000
    assert r["fgt_ml"] == pytest.approx((pred == 1).sum() * voxel_ml)
    assert r["bpe_ml"] == pytest.approx((pred == 2).sum() * voxel_ml)
    assert r["bpe_fraction"] == pytest.approx((pred == 2).sum() / np.isin(pred, (1, 2)).sum())
    assert r["bpe_category"] in ("minimal", "mild", "moderate", "marked")
    assert r["bpe_cutoffs"] == mri_model["params"]["evaluation"]["bpe_cutoffs"]
    # degree beside area: mean RE (post1 - pre) / pre over the predicted BPE, from the phases `convert` wrote
    sdir = next((mri_model["tmp"] / "interim" / "mri" / row["patient"]).glob("study-*"))
    pre, sub = (np.asarray(nib.load(sdir / f).dataobj, dtype=float) for f in ("pre.nii.gz", "sub.nii.gz"))
    bpe = (pred == 2) & (pre > r["bpe_degree"]["pre_threshold"])
    assert r["bpe_degree"]["mean"] == pytest.approx((sub[bpe] / pre[bpe]).mean()) and r["bpe_combined_category"]
    assert (out / "overlay.png").read_bytes()[:4] == b"\x89PNG"
    # training recorded its patients' geometry in the bundle; a study like them is not warned about
    bundle_config = mri_model["tmp"] / "models" / "bpe_mri" / "inference" / "config.json"
    ranges = json.loads(bundle_config.read_text())["training_ranges"]
    assert set(ranges["quantities"]) == {"pixel_spacing_mm", "slice_spacing_mm", "pre_p995", "enhancement_p995"}
    assert ranges["patients"] >= 1
    assert rec["warnings"] == [] and "warning" not in proc.stderr
    assert proc.stdout.strip().splitlines()[-1].startswith(f"breastseg: wrote {out}: labels.nii.gz")
    # nothing identifying leaves into the plain outputs
    for f in ("readout.json", "labels.nii.gz", "overlay.png"):
        blob = (out / f).read_bytes()
        import gzip

        blob = gzip.decompress(blob) if f.endswith(".gz") else blob
        for marker in (b"BRS-0", b"Doe^Jane", b"Test Hospital", b"Keller"):
            assert marker not in blob, (f, marker)


def test_dicom_seg_round_trip(mri_model, tmp_path):
    """The SEG references the pre-contrast instances; frame positions are the source slices'; it reads back."""
    import highdicom as hd
    import pydicom

    from breastseg.cli import main
    from breastseg.dicom.dce import select_phases
    from breastseg.dicom.seg import seg_to_labels
    from breastseg.inference.preprocess import discover_mri_studies

    study = next(iter(mri_model["study_of"].values()))
    out = tmp_path / "out"
    os.environ["MLFLOW_TRACKING_URI"] = mri_model["uri"]
    try:
        assert main(["-q", "--params", str(tmp_path / "none.yaml"), "predict",
                     f"models:/breastseg-bpe_mri/{mri_model['model']['version']}", str(study), str(out)]) == 0
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    labels = np.asarray(nib.load(out / "labels.nii.gz").dataobj)
    (_, members, _), = discover_mri_studies(study)
    pre = select_phases(members)[0][0]
    sources = {s.sop_uid: pydicom.dcmread(s.path, stop_before_pixels=True) for s in pre.slices}

    ds = pydicom.dcmread(out / "seg.dcm")
    assert ds.Modality == "SEG" and ds.StudyInstanceUID == next(iter(sources.values())).StudyInstanceUID
    ref = ds.ReferencedSeriesSequence[0]
    assert ref.SeriesInstanceUID == pre.series_uid
    assert {i.ReferencedSOPInstanceUID for i in ref.ReferencedInstanceSequence} == set(sources)
    assert [s.SegmentLabel for s in ds.SegmentSequence] == ["FGT", "BPE"]
    nonempty = [(labels[:, :, k] == v).any() for v in (1, 2) for k in range(labels.shape[2])]
    assert int(ds.NumberOfFrames) == sum(nonempty) > 0  # empty frames are left out
    for item in ds.PerFrameFunctionalGroupsSequence:
        src_uid = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        ipp = [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
        np.testing.assert_allclose(ipp, [float(v) for v in sources[src_uid].ImagePositionPatient], atol=1e-4)

    seg = hd.seg.segread(out / "seg.dcm")
    assert seg.get_source_image_uids() and {u[2] for u in seg.get_source_image_uids()} == set(sources)
    volume = seg.get_volume(combine_segments=True)
    assert volume.array.max() == labels.max()
    # the project's own SEG reader puts every frame back on its slice: the NIfTI labels exactly
    np.testing.assert_array_equal(seg_to_labels(out / "seg.dcm", pre), labels)


def test_batch_of_studies_with_progress_bar(mri_model, tmp_path, capsys, monkeypatch):
    from breastseg.cli import main
    from breastseg.inference.api import predict

    batch = tmp_path / "batch"
    for pid, study in list(mri_model["study_of"].items())[:2]:
        shutil.copytree(study, batch / pid / "study")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mri_model["uri"])
    records = predict(f"runs:/{mri_model['model']['run_id']}/model", batch, tmp_path / "out")
    assert len(records) == 2 and records[0]["model"]["run_id"] == mri_model["model"]["run_id"]
    assert sorted(p.parent.parent.name for p in (tmp_path / "out").glob("*/study/readout.json")) == \
        sorted(list(mri_model["study_of"])[:2])
    summary = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert summary["succeeded"] == 2 and summary["failed"] == []
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    bundle = Path(mri_model["tmp"]) / "models" / "bpe_mri" / "inference"  # a local folder needs no store
    assert main(["predict", str(bundle), str(batch), str(tmp_path / "out2")]) == 0
    assert "predict bpe_mri" in capsys.readouterr().err  # the tqdm bar


def _one_line_error(capsys, argv) -> str:
    from breastseg.cli import main

    assert main(["-q", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("breastseg: error: "), err
    return err[0]


def test_bad_inputs_give_one_line_and_exit_2(mri_model, tmp_path, capsys):
    import torch

    from inference_fixtures import us_bundle

    mri = str(Path(mri_model["tmp"]) / "models" / "bpe_mri" / "inference")
    study = next(iter(mri_model["study_of"].values()))
    # wrong modality for the model: an ultrasound RF file given to the MRI model, an MR study to a US model
    npz = tmp_path / "scan.npz"
    np.savez(npz, rf=np.random.default_rng(0).normal(size=(64, 16)), fs=40e6, f0=7e6, pitch=2e-4)
    assert "expected a DICOM study folder" in _one_line_error(capsys, ["predict", mri, str(npz), str(tmp_path / "o1")])
    us = str(us_bundle(tmp_path / "us", channels=["bmode"]))
    assert "holds MR images" in _one_line_error(capsys, ["predict", us, str(study), str(tmp_path / "o2")])
    assert "is a MR image" in _one_line_error(capsys, ["predict", us, str(next(study.glob("*.dcm"))), str(tmp_path / "o7")])
    # missing post-contrast phase: only the pre-contrast series of a study
    from breastseg.dicom.dce import select_phases
    from breastseg.inference.preprocess import discover_mri_studies

    (_, members, _), = discover_mri_studies(study)
    pre_only = tmp_path / "pre_only"
    pre_only.mkdir()
    for s in select_phases(members)[0][0].slices:
        shutil.copy(s.path, pre_only / s.path.name)
    line = _one_line_error(capsys, ["predict", mri, str(pre_only), str(tmp_path / "o3")])
    assert "post-contrast" in line and str(pre_only) in line
    # model/task mismatch: an entropy model needs raw RF, a B-mode image has none
    from PIL import Image

    png = tmp_path / "img.png"
    Image.fromarray((np.random.default_rng(1).random((40, 50)) * 255).astype(np.uint8)).save(png)
    entropy = str(us_bundle(tmp_path / "ent", channels=["entropy"]))
    assert "needs raw RF" in _one_line_error(capsys, ["predict", entropy, str(png), str(tmp_path / "o4")])
    # a model that does not exist, and weights that are not a plain state dict (refused, never unpickled)
    os.environ["MLFLOW_TRACKING_URI"] = mri_model["uri"]
    try:
        assert "cannot resolve the model" in _one_line_error(
            capsys, ["predict", "models:/breastseg-bpe_mri@nosuchalias", str(study), str(tmp_path / "o5")])
        line = _one_line_error(capsys, ["predict", "models:/breastseg-nosuch@champion", str(study), str(tmp_path / "o5")])
        assert f"(looked in {mri_model['uri']}, from $MLFLOW_TRACKING_URI)" in line and "bundle folder" in line
    finally:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    evil = tmp_path / "evil"
    shutil.copytree(mri, evil)
    torch.save({"net": torch.nn.Linear(2, 2)}, evil / "weights.pt")  # a pickled module, not tensors
    assert "not the weights of a unet" in _one_line_error(capsys, ["predict", str(evil), str(study), str(tmp_path / "o6")])
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 8))
