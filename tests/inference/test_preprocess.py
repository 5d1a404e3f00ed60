"""Inference pieces without training: ultrasound predict, DICOM US SEG, grid round trips, read-outs, bundles."""
import json

import nibabel as nib
import numpy as np
import pytest

from inference_fixtures import us_bundle, us_dicom
from inference_fixtures import rf_npz


def test_us_predict_rf_without_mask(tmp_path):
    from breastseg.inference.api import predict

    bundle = us_bundle(tmp_path / "m", channels=["entropy"])
    (rec,) = predict(str(bundle), rf_npz(tmp_path / "scan.npz", roi=False), tmp_path / "out")
    img = nib.load(tmp_path / "out" / "labels.nii.gz")
    assert img.shape == (24, 200, 1)  # i = line, j = sample: the RF grid
    dz = 1540 / (2 * 40e6) * 1e3
    np.testing.assert_allclose(np.diag(img.affine)[:2], [0.2, dz])
    mask = np.asarray(img.dataobj)[:, :, 0].T
    r = rec["readout"]
    assert r["mass_area_mm2"] == pytest.approx(mask.sum() * 0.2 * dz) and r["mass_pixels"] == int(mask.sum())
    if mask.any():
        rows = np.flatnonzero(mask.any(axis=1))
        assert r["bounding_box"]["row_min"] == rows[0] and r["bounding_box"]["row_max"] == rows[-1]
    assert rec["preprocessing"]["us_maps"]["entropy_on"] == "bmode" and rec["outputs"]["dicom_seg"] is None
    assert json.loads((tmp_path / "out" / "readout.json").read_text())["input"]["rf"] is True
    assert (tmp_path / "out" / "overlay.png").exists()


def test_us_png_without_spacing_reports_px2(tmp_path):
    from PIL import Image

    from breastseg.inference.api import predict

    png = tmp_path / "img.png"
    Image.fromarray((np.random.default_rng(1).random((40, 50)) * 255).astype(np.uint8)).save(png)
    (rec,) = predict(str(us_bundle(tmp_path / "m")), png, tmp_path / "out")
    assert "mass_area_px2" in rec["readout"] and "mass_area_mm2" not in rec["readout"]
    assert rec["input"]["spacing_known"] is False


def test_us_dicom_seg_round_trip(tmp_path):
    import highdicom as hd
    import pydicom

    from breastseg.inference.api import predict

    src = us_dicom(tmp_path / "in" / "img.dcm")
    (rec,) = predict(str(us_bundle(tmp_path / "m")), src, tmp_path / "out")
    ds = pydicom.dcmread(tmp_path / "out" / "seg.dcm")
    source = pydicom.dcmread(src)
    assert ds.Modality == "SEG" and ds.SegmentSequence[0].SegmentLabel == "mass"
    assert ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    seg = hd.seg.segread(tmp_path / "out" / "seg.dcm")
    frame = seg.pixel_array
    labels = np.asarray(nib.load(tmp_path / "out" / "labels.nii.gz").dataobj)[:, :, 0].T
    np.testing.assert_array_equal(np.asarray(frame).reshape(labels.shape), labels)
    assert rec["readout"]["spacing_known"] and rec["input"]["pixel_spacing_mm"] == [0.2, 0.2]
    assert b"BRS-77777" not in (tmp_path / "out" / "readout.json").read_bytes()


def test_batch_folder_of_scans(tmp_path):
    from breastseg.inference.api import predict

    folder = tmp_path / "scans"
    folder.mkdir()
    rf_npz(folder / "a.npz", 1)
    rf_npz(folder / "b.npz", 2, roi=False)
    records = predict(str(us_bundle(tmp_path / "m")), folder, tmp_path / "out", progress=False)
    assert len(records) == 2
    assert (tmp_path / "out" / "a" / "readout.json").exists() and (tmp_path / "out" / "b" / "seg.dcm").exists() is False
    assert json.loads((tmp_path / "out" / "predictions.json").read_text())["succeeded"] == 2


@pytest.mark.parametrize("shape,spacing", [((64, 64), (0.1, 0.1)), ((200, 24), (0.02, 0.2)), ((37, 90), (1.0, 1.0))])
def test_square_to_native_inverts_resample_to_square(shape, spacing):
    from breastseg.inference.preprocess import square_to_native
    from breastseg.us.maps import resample_to_square

    yy, xx = np.mgrid[:shape[0], :shape[1]]
    mask = (((yy - shape[0] / 2) / (shape[0] / 4)) ** 2 + ((xx - shape[1] / 2) / (shape[1] / 4)) ** 2 < 1).astype(np.uint8)
    _, sq, _ = resample_to_square(mask.astype(float), mask, spacing, 64)
    back = square_to_native(sq, shape, spacing)
    assert back.shape == shape
    if shape == (64, 64):
        np.testing.assert_array_equal(back, mask)
    inter = (back & mask).sum()
    assert 2 * inter / (back.sum() + mask.sum()) > 0.9


def test_mri_readout():
    from breastseg.inference.readout import mri_readout, us_readout

    labels = np.zeros((4, 4, 2), np.uint8)
    labels[0, :, 0] = 1  # 4 FGT voxels
    labels[1, :2, 0] = 2  # 2 BPE voxels
    r = mri_readout(labels, (1.0, 2.0, 5.0), (0.25, 0.5, 0.75))
    assert r["fgt_ml"] == pytest.approx(0.04) and r["bpe_ml"] == pytest.approx(0.02)
    assert r["bpe_fraction"] == pytest.approx(2 / 6) and r["bpe_category"] == "mild"
    assert mri_readout(np.zeros((2, 2, 1), np.uint8), (1, 1, 1), (0.25, 0.5, 0.75))["bpe_category"] is None
    from breastseg.evaluation.statistics import bpe_fraction

    rand = np.random.default_rng(0).integers(0, 3, (8, 8, 3)).astype(np.uint8)
    assert mri_readout(rand, (1, 1, 1), (0.25, 0.5, 0.75))["bpe_fraction"] == pytest.approx(bpe_fraction(rand))
    u = us_readout(np.pad(np.ones((2, 3)), 1), (0.5, 0.25), True)
    assert u["mass_area_mm2"] == pytest.approx(6 * 0.125)
    assert u["bounding_box"] == {"row_min": 1, "row_max": 2, "col_min": 1, "col_max": 3, "height_px": 2,
                                 "width_px": 3, "height_mm": 1.0, "width_mm": 0.75}


def test_bundle_reloads_the_same_network(tmp_path):
    import torch

    from breastseg.inference.model import load_model

    bundle = us_bundle(tmp_path / "m", seed=5)
    model = load_model(str(bundle))
    x = torch.rand(2, 1, 32, 32)
    from breastseg.models.factory import build_model

    torch.manual_seed(5)
    ref = build_model(model.experiment).eval()
    with torch.no_grad():
        torch.testing.assert_close(model.net(x), ref(x))


def test_label_map_equals_argmax():
    import torch

    from breastseg.inference.model import label_map

    logits = torch.randn(3, 4, 17, 9)
    logits[0, 2] = logits[0, 1]  # ties: the first maximum wins, as in argmax
    np.testing.assert_array_equal(label_map(logits), logits.argmax(1).numpy().astype(np.uint8))


@pytest.mark.parametrize("matrix", [24, 20])
def test_mri_network_input_is_the_training_preprocessing(matrix):
    from breastseg.config import Experiment
    from breastseg.data.slices import mri_slice_image, mri_study_channels
    from breastseg.inference.preprocess import MriStudy, mri_network_input

    class Pre:  # anisotropic in-plane voxels: the aspect kept needs the spacing
        shape = (matrix, matrix, 5)
        affine = np.diag([2.0, 1.5, 3.0, 1.0])

    rng = np.random.default_rng(0)
    vols = {"pre": rng.random(Pre.shape).astype(np.float32) * 100, "sub": rng.random(Pre.shape).astype(np.float32)}
    exp = Experiment.from_dict({"name": "bpe_mri", "dataset": "mri", "channels": ["pre", "sub"], "classes": 3,
                                "image_size": 24, "model": {"name": "unet", "features": [4, 8]},
                                "preprocess": {"aspect": "keep", "normalization": "fixed"}})
    channels = mri_study_channels(exp, vols["pre"], {"sub": vols["sub"]})
    expected = np.stack([mri_slice_image(exp, channels, k, (2.0, 1.5)) for k in range(5)])
    assert expected.shape == (5, 2, 24, 24) and np.all(expected[..., 0] == expected[..., :1, 0])  # padded columns
    np.testing.assert_array_equal(mri_network_input(exp, MriStudy("study-1", None, Pre(), vols, [], "")), expected)


def test_unreadable_scan_is_one_line(tmp_path, capsys):
    from breastseg.cli import main

    bad = tmp_path / "broken.npz"
    bad.write_bytes(b"not a zip file")
    assert main(["-q", "predict", str(us_bundle(tmp_path / "m")), str(bad), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "broken.npz" in err[0] and not (tmp_path / "out").exists()


@pytest.mark.parametrize("channels", [["entropy"], ["bmode"]])
def test_us_network_input_is_the_training_preprocessing(tmp_path, channels):
    """us-maps + prepare (the pipeline) and predict's preprocessing give the same network input for one scan."""
    from breastseg.data.slices import prepare_us
    from breastseg.inference.model import load_model
    from breastseg.inference.preprocess import read_us_input, us_network_input
    from breastseg.us.maps import write_us_maps

    npz = rf_npz(tmp_path / "scan.npz", seed=4)
    model = load_model(str(us_bundle(tmp_path / "m", channels=channels)))
    write_us_maps(npz, tmp_path / "interim", patient_id="P1", **model.config["us_maps"])
    expected = prepare_us(model.experiment, tmp_path / "interim")["images"][0]
    (scan,), _ = read_us_input(npz)
    np.testing.assert_array_equal(us_network_input(model.config, scan)[0][0], expected)

