"""The path from network inputs to native-grid labels (breastseg.models.segment): test-time mirroring,
post-processing, the image-level decision, the choice on validation, the way back; predict equals evaluation."""
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from breastseg.config import Experiment, InferenceSettings
from breastseg.models import segment as sg

US_EXP = Experiment.from_dict({"name": "mass_us_bmode", "dataset": "us", "channels": ["bmode"], "classes": 2,
                               "image_size": 16, "model": {"name": "attention_unet", "features": [4, 8]},
                               "preprocess": {"aspect": "keep", "normalization": "fixed"}})


def _blob(shape, centre, r):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= r * r


def test_postprocess_off_is_the_identity_and_each_step_does_what_it_says():
    lab = np.zeros((32, 32), np.uint8)
    lab[_blob(lab.shape, (10, 10), 5)] = 1  # 81 px
    lab[_blob(lab.shape, (25, 25), 1)] = 1  # 5 px
    lab[0:2, 30:32] = 2  # 4 px of class 2
    np.testing.assert_array_equal(sg.postprocess(lab, 3), lab)
    largest = sg.postprocess(lab, 3, keep_largest=True)
    assert (largest == 1).sum() == 81 and (largest == 2).sum() == 4  # per class: class 2's only component stays
    small = sg.postprocess(lab, 3, min_component=6 / 1024)
    assert (small == 1).sum() == 81 and (small == 2).sum() == 0
    assert not sg.postprocess(lab, 3, empty_below=0.1).any()  # 90 px < 10 % of 1024: empty
    np.testing.assert_array_equal(sg.postprocess(lab, 3, empty_below=0.05), lab)  # 90 px >= 51 px: kept


class Lopsided(torch.nn.Module):
    """A network whose output depends on where a pixel lies: mirroring changes it."""

    def forward(self, x):
        ramp = torch.linspace(-2, 2, x.shape[-1]).expand_as(x[:, :1])
        return torch.cat([ramp * 0, ramp + x[:, :1]], dim=1)


def test_test_time_mirroring_averages_the_flipped_back_probabilities():
    x = np.random.default_rng(0).normal(size=(3, 1, 8, 8)).astype(np.float32)
    net = Lopsided()
    plain = sg.probabilities(net, x)
    mirrored = sg.probabilities(net, x, ["lr"])
    t = torch.from_numpy(x)
    expected = (net(t).softmax(1) + net(t.flip(-1)).softmax(1).flip(-1)).numpy() / 2
    np.testing.assert_allclose(mirrored, expected, atol=1e-6)
    assert not np.allclose(plain, mirrored)
    assert sg.mirror_combinations(["lr", "ud"]) == [(), (-1,), (-2,), (-1, -2)]


def _probs_of(labels):
    fg = np.stack(labels).astype(np.float32)
    return np.stack([1 - fg, fg], axis=1) * 0.9 + 0.05


def test_choice_on_validation_keeps_a_step_only_where_it_helps():
    """Images with a mass and a spurious speck, images without a mass with a small false blob: keep_largest and the
    image-level decision are both chosen; fixed settings are kept as they are."""
    truth, pred = [], []
    for i in range(6):
        t = np.zeros((16, 16), np.uint8)
        p = np.zeros((16, 16), np.uint8)
        if i < 3:
            t[_blob(t.shape, (8, 8), 4)] = 1
            p[_blob(t.shape, (8, 8), 4)] = 1
            p[0, 0] = 1  # a speck
        else:
            p[_blob(t.shape, (4, 12), 1)] = 1  # 5 px on an image without a mass
        truth.append(t)
        pred.append(p)
    probs = _probs_of(pred)
    shapes, spacings = [(16, 16)] * 6, [(1.0, 1.0)] * 6
    auto = InferenceSettings(tta=False, keep_largest="auto", min_component="auto", empty_below="auto")
    chosen = sg.choose_postprocessing(US_EXP, probs, truth, shapes, spacings, auto)
    assert chosen["keep_largest"] is True and chosen["empty_below"] > 5 / 256
    assert chosen["validation"]["with"] == pytest.approx(1.0) and chosen["validation"]["without"] < 0.6
    fixed = InferenceSettings(tta=False, keep_largest=False, min_component=0.0, empty_below="auto")
    kept = sg.choose_postprocessing(US_EXP, probs, truth, shapes, spacings, fixed)
    assert kept["keep_largest"] is False and kept["min_component"] == 0.0 and kept["empty_below"] > 0
    assert set(kept["validation"]["tried"]) == {"empty_below"}


def test_nothing_to_gain_keeps_everything_off():
    truth = [np.pad(np.ones((4, 4), np.uint8), 6) for _ in range(3)]
    auto = InferenceSettings(tta=False, keep_largest="auto", min_component="auto", empty_below="auto")
    chosen = sg.choose_postprocessing(US_EXP, _probs_of(truth), truth, [(16, 16)] * 3, [(1.0, 1.0)] * 3, auto)
    assert (chosen["keep_largest"], chosen["min_component"], chosen["empty_below"]) == (False, 0.0, 0.0)


@pytest.mark.parametrize("aspect", ["keep", "squeeze"])
@pytest.mark.parametrize("shape,spacing", [((40, 24), (0.5, 1.0)), ((16, 16), (1.0, 1.0)), ((13, 50), (2.0, 0.3))])
def test_native_labels_come_back_to_the_native_grid(aspect, shape, spacing):
    from breastseg.data.slices import network_image, to_native

    exp = Experiment.from_dict({**US_EXP.settings(), "image_size": 32,
                                "preprocess": {"aspect": aspect, "normalization": "zscore"}})
    truth = _blob(shape, (shape[0] // 2, shape[1] // 2), min(shape) // 3).astype(np.uint8)
    image, grid, _ = network_image(exp, [truth.astype(np.float32) * 5 + 3], truth, spacing)
    assert image.shape == (1, 32, 32) and grid.shape == (32, 32)
    inside = image[0][grid == 1]
    assert inside.size and abs(float(image[0].std()) - 1) < 0.5 if aspect == "squeeze" else inside.size
    back = to_native(grid, shape, spacing, exp)
    assert back.shape == shape
    dice = 2 * (back & truth).sum() / (back.sum() + truth.sum())
    assert dice > 0.85


def test_legacy_bundles_load_with_their_own_preprocessing(tmp_path):
    """A bundle written before the recipe settings: MRI squeezed, no mirroring, nothing after the argmax."""
    from breastseg.models.bundle import load_bundle
    from inference_fixtures import mri_bundle

    folder = mri_bundle(tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    config["experiment"].pop("preprocess")
    config.pop("inference")
    (folder / "config.json").write_text(json.dumps(config))
    exp = load_bundle(folder).experiment
    assert exp.preprocess.aspect == "squeeze" and exp.inference.tta is False
    assert sg.settings_of(exp.inference) == {"keep_largest": False, "min_component": 0.0, "empty_below": 0.0}
    config["inference"] = {"tta": True, "keep_largest": "auto", "min_component": 0, "empty_below": 0}
    (folder / "config.json").write_text(json.dumps(config))
    from breastseg.errors import InputError

    with pytest.raises(InputError, match="keep_largest 'auto'"):
        load_bundle(folder)


def _with_inference(folder: Path) -> Path:
    """Give a fixture bundle test-time mirroring and every post-processing step."""
    config = json.loads((folder / "config.json").read_text())
    config["inference"] = {"tta": True, "mirror": ["lr"], "keep_largest": True, "min_component": 0.002,
                           "empty_below": 0.001}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_predict_writes_the_labels_evaluation_scores_mri(tmp_path):
    """One DCE study on a grid other than the network's: predict's labels.nii.gz equals, slice for slice, what
    evaluation scores for the same images (one function for both)."""
    from breastseg.config import experiment, load_params
    from breastseg.data.slices import native_labels, prepare_patient
    from breastseg.dicom.dce import convert_dce_patient
    from breastseg.evaluation.evaluate import segment_subset
    from breastseg.inference.api import predict
    from breastseg.models.bundle import load_bundle
    from inference_fixtures import mri_bundle, write_studies

    (study,) = write_studies(tmp_path / "raw", 1, matrix=28, slices=4)
    bundle = _with_inference(mri_bundle(tmp_path / "m", image_size=16, seed=3))
    model = load_bundle(bundle)
    params = load_params(Path(__file__).resolve().parents[2] / "params.yaml")
    params["experiments"]["bpe_mri"].update(image_size=16, model={"name": "unet", "features": [4, 8]})
    exp = experiment(params, "bpe_mri")
    convert_dce_patient(study.parent, tmp_path / "interim" / "P1", patient_id="P1")
    npz = prepare_patient(exp, tmp_path / "interim" / "P1", tmp_path / "P1.npz", patient_id="P1")
    with np.load(npz) as z:
        data = {k: z[k] for k in z.files}
    data["native_label"] = native_labels(data["native_label"], data["native_shape"])
    seg = segment_subset(model, exp, data)
    predict(str(bundle), study, tmp_path / "out", progress=False)
    written = np.asarray(nib.load(tmp_path / "out" / "labels.nii.gz").dataobj)
    assert written.shape[:2] == (28, 28) and len(seg.native) == len(data["index"]) > 0
    for k, native in zip(data["index"], seg.native):
        np.testing.assert_array_equal(written[:, :, int(k)], native)


def test_predict_writes_the_labels_evaluation_scores_us(tmp_path):
    from breastseg.config import MapSettings
    from breastseg.data.slices import prepare_us, slice_arrays
    from breastseg.evaluation.evaluate import segment_subset
    from breastseg.inference.api import predict
    from breastseg.models.bundle import load_bundle
    from breastseg.us.maps import write_decoded_patient
    from inference_fixtures import us_bundle
    from inference_fixtures import rf_npz as _rf_npz

    scan = _rf_npz(tmp_path / "scan.npz", seed=2, samples=150, lines=40)
    bundle = _with_inference(us_bundle(tmp_path / "m", image_size=24, seed=1))
    model = load_bundle(bundle)
    exp = model.experiment
    write_decoded_patient([scan], tmp_path / "interim" / "P1", patient_id="P1")
    d = prepare_us(exp, tmp_path / "interim" / "P1", MapSettings.from_dict(model.config["us_maps"]))
    data = slice_arrays(exp, d)
    seg = segment_subset(model, exp, data)
    predict(str(bundle), scan, tmp_path / "out", progress=False)
    written = np.asarray(nib.load(tmp_path / "out" / "labels.nii.gz").dataobj)[:, :, 0].T
    assert written.shape == (150, 40)
    np.testing.assert_array_equal(written, seg.native[0])

