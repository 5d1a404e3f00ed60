"""Degree of BPE: relative enhancement of the BPE voxels at the first post-contrast phase, from the converted phases;
its category, the combined category, the settings, and the check against phantoms whose enhancement is known."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from breastseg.errors import InputError
from breastseg.evaluation.degree import evaluate_degree
from breastseg.mri import bpe_degree as bd
from breastseg.config import EvaluationSettings

IDENTITY = {"patient_id": "BRS-00001", "name": "Doe^Jane", "birth_date": "19700101", "age": "050Y",
            "study_date": "20200101", "accession": "A1", "study_id": "1", "institution": "Test Hospital",
            "referring": "Keller^Thomas"}


def _converted(root: Path, seed: int, category: int, matrix: int = 64, slices: int = 6):
    """A synthetic DCE study (the demo's 2.5 mm x 3 mm voxels, one post-contrast phase, every slice annotated),
    converted as the pipeline converts it: (phantom, truth, converted study folder)."""
    from breastseg.dicom.dce import convert_dce_patient
    from breastseg.synth import mri as mri_mod

    rng = np.random.default_rng([5, seed, category])
    phantom = mri_mod.simulate_mri(rng, matrix, slices, 1, category, spacing_mm=2.5, slice_mm=3.0)
    study = root / "raw" / f"s{seed}-{category}" / "study"
    truth = mri_mod.write_study(study, phantom, IDENTITY, rng, (5, seed, category), annotated_fraction=1.0,
                                layout="flat")
    out = root / "interim" / f"P{seed:06d}{category:06d}"
    summary = convert_dce_patient(study.parent, out, patient_id=out.name)
    return phantom, truth, out / summary["studies"][0]["key"]


def _volumes(sdir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tuple(np.asarray(nib.load(sdir / f"{n}.nii.gz").dataobj) for n in ("labels", "pre", "sub"))


def _resolved(evaluation: dict) -> dict:
    import yaml

    from breastseg.config import resolve_params

    raw = yaml.safe_load((Path(__file__).resolve().parents[2] / "params.yaml").read_text())
    return resolve_params({**{k: v for k, v in raw.items() if k != "evaluation"}, "evaluation": evaluation})


def test_settings_from_the_schema_and_checked():
    from breastseg.config import load_params, schema_defaults

    default = schema_defaults("evaluation")["bpe_degree"]
    assert bd.default_settings() == bd.settings(EvaluationSettings.from_params(_resolved({}))) == {**default,
                                                                    "cutoffs": [float(c) for c in default["cutoffs"]]}
    root = Path(__file__).resolve().parents[2]
    assert bd.settings(EvaluationSettings.from_params(load_params(root / "params.yaml"))) == bd.default_settings()  # params.yaml repeats the defaults
    partial = bd.settings(EvaluationSettings.from_params(_resolved({"bpe_degree": {"combine": "degree"}})))  # a partial block is completed at load
    assert partial["combine"] == "degree" and partial["cutoffs"] == default["cutoffs"]
    with pytest.raises(InputError, match="as many cut-offs"):
        bd.settings(EvaluationSettings.from_params(_resolved({"bpe_cutoffs": [0.5], "bpe_degree": {"cutoffs": [0.3, 0.6]}})))
    assert bd.settings(EvaluationSettings.from_params(_resolved({"bpe_cutoffs": [0.5], "bpe_degree": {"cutoffs": [0.3, 0.6], "combine": "area"}})))
    with pytest.raises(InputError, match="ascending"):
        bd.settings(EvaluationSettings.from_params(_resolved({"bpe_degree": {"cutoffs": [0.8, 0.5, 0.3]}})))


def test_bundle_records_the_degree_settings_and_old_bundles_get_the_defaults(tmp_path):
    from breastseg.config import experiment, load_params
    from breastseg.models.bundle import bundle_config, read_config

    params = load_params(Path(__file__).resolve().parents[2] / "params.yaml")
    params["evaluation"]["bpe_degree"].update(cutoffs=[0.3, 0.5, 0.9], combine="degree")
    exp = experiment(params, "bpe_mri")
    config = bundle_config(EvaluationSettings.from_params(params), exp, {}, "run")
    assert config["bpe_degree"]["cutoffs"] == [0.3, 0.5, 0.9] and config["bpe_degree"]["combine"] == "degree"
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert read_config(tmp_path / "config.json")["bpe_degree"] == config["bpe_degree"]
    del config["bpe_degree"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert read_config(tmp_path / "config.json")["bpe_degree"] == bd.default_settings()


def test_stats_guard_low_pre_and_fixed_histogram():
    cfg = bd.default_settings()
    pre = np.array([100.0, 100.0, 100.0, 100.0, 0.5, 2.0])  # the last two: below 0.1 x the tissue median
    sub = np.array([20.0, 40.0, 60.0, 300.0, 10.0, 10.0])
    s = bd.degree_stats(pre, sub, np.full(50, 100.0), cfg)
    assert s["n_voxels"] == 4 and s["n_excluded_low_pre"] == 2 and s["pre_threshold"] == pytest.approx(10.0)
    assert s["mean"] == pytest.approx(1.05) and s["median"] == pytest.approx(0.5)
    h = s["histogram"]
    assert h["edges"] == cfg["histogram_edges"] and h["above"] == 1 and h["below"] == 0
    assert sum(h["counts"]) + h["above"] + h["below"] == s["n_voxels"]
    assert h["counts"][1] == 1 and h["counts"][2] == 1 and h["counts"][3] == 1  # 0.2, 0.4, 0.6: left-closed bins
    empty = bd.degree_stats(np.zeros(0), np.zeros(0), np.zeros(0), cfg)
    assert empty["mean"] is None and empty["quantiles"]["p25"] is None and sum(empty["histogram"]["counts"]) == 0
    json.dumps(s), json.dumps(empty)


def test_categories_and_combination():
    cutoffs = (0.35, 0.55, 0.80)
    assert [bd.category(v, cutoffs) for v in (0.1, 0.35, 0.6, 1.3, None, float("nan"))] == [0, 1, 2, 3, None, None]
    assert bd.combined(1, 3, "max") == 3 and bd.combined(2, 0, "max") == 2
    assert bd.combined(1, None, "max") == 1 and bd.combined(None, None, "max") is None
    assert bd.combined(1, 3, "area") == 1 and bd.combined(1, 3, "degree") == 3


def test_readout_fields_next_to_the_area():
    cfg = bd.default_settings()
    labels = np.zeros((4, 4, 2), np.uint8)
    labels[:2, :, 0] = 1
    labels[2:, :, 0] = 2
    pre = np.full(labels.shape, 200.0)
    sub = np.where(labels == 2, 180.0, 10.0)  # RE 0.9 in the BPE: marked degree
    r = bd.degree_readout(labels, pre, sub, cfg, area_index=1, n_area_categories=4)
    assert r["bpe_degree"]["mean"] == pytest.approx(0.9) and r["bpe_degree"]["category"] == "marked"
    assert r["bpe_combined_category"] == "marked" and r["bpe_combined_rule"] == "max"
    none = bd.degree_readout(np.where(labels == 2, 1, labels).astype(np.uint8), pre, sub, cfg, 0, 4)
    assert none["bpe_degree"]["mean"] is None and "note" in none["bpe_degree"]
    assert none["bpe_combined_category"] == "minimal"  # an undefined degree leaves the area category


@pytest.mark.parametrize("seed,category", [(0, 3), (2, 3), (4, 2)])
def test_phantom_enhancement_recovered_from_the_converted_phases(tmp_path, seed, category):
    """Over the TRUE BPE voxels, RE from the converted phases (sub / pre, on the pre grid) is (a) the RE of the
    phantom's own images over the same voxels, up to the DICOM integer storage, and (b) the enhancement the phantom
    recorded (mean of its RE map over the annotated BPE voxels) lowered only by what the acquisition does to it:
    partial volume (PSF ~0.5 voxel, slice profile) and motion between the phases mix BPE with less enhancing
    neighbours (non-enhancing FGT, fat), which lowers the measured mean, never raises it beyond the noise. Within
    the BPE, away from its edges (in-plane erosion by one voxel), the two agree within 10 %."""
    phantom, truth, sdir = _converted(tmp_path, seed, category)
    labels, pre, sub = _volumes(sdir)
    cfg = bd.default_settings()
    s = bd.labels_degree(labels, pre, sub, cfg)
    bpe = labels == 2
    assert s["n_voxels"] == int(bpe.sum()) > 300 and s["n_excluded_low_pre"] == 0

    image_re = (phantom.phases[1][bpe] - phantom.phases[0][bpe]) / phantom.phases[0][bpe]
    assert s["mean"] == pytest.approx(float(image_re.mean()), abs=5e-3)

    recorded = truth["re_bpe_annotated"][0]
    noise = 4.0 * float(np.std(image_re)) / np.sqrt(bpe.sum())
    assert 0.70 * recorded <= s["mean"] <= recorded + noise, (s["mean"], recorded)
    interior = np.stack([ndimage.binary_erosion(bpe[:, :, k]) for k in range(bpe.shape[2])], axis=-1)
    inner = bd.degree_stats(pre[interior], sub[interior], pre[(labels == 1) | bpe], cfg)
    assert inner["mean"] == pytest.approx(recorded, rel=0.10)
    # the degree category of the phantom's own design range (the default cut-offs are its range boundaries)
    assert bd.category(truth["re_bpe"][0], cfg["cutoffs"]) == category


def test_evaluation_compares_true_and_predicted_bpe_on_the_pre_grid(tmp_path):
    """Predictions at the prepared image size (here 128 for a 64-pixel study) are mapped back to the pre-contrast
    grid as predict maps them: a prediction that is the prepared truth gives the truth's degree exactly; a
    prediction without BPE leaves the degree undefined."""
    from breastseg.config import Experiment
    from breastseg.data.slices import prepare_mri

    _, _, sdir = _converted(tmp_path, 1, 2)
    interim = tmp_path / "interim"
    first = sdir.parent
    second = interim / "P000000000002"
    shutil.copytree(first, second)
    exp = Experiment.from_dict({"name": "bpe_mri", "dataset": "mri", "channels": ["pre", "sub"], "classes": 3,
                                "image_size": 128, "model": {"name": "unet", "features": [4, 8]}})
    prepared = prepare_mri(exp, first)
    n = len(prepared["labels"])
    lab = np.asarray(prepared["labels"])
    pred = np.concatenate([lab, np.where(lab == 2, 1, lab)]).astype(np.uint8)
    data = {"patient": np.array([first.name] * n + [second.name] * n), "case": np.array(prepared["cases"] * 2),
            "index": np.array(prepared["index"] * 2), "label": np.concatenate([lab, lab])}
    rows = [{"patient": first.name, "bpe_category_true": 2, "bpe_category_pred": 2},
            {"patient": second.name, "bpe_category_true": 2, "bpe_category_pred": 0}]
    out = evaluate_degree(EvaluationSettings.from_params(_resolved({})), data, pred, interim, rows)
    assert out["n"] == 1 and out["n_undefined"] == 1
    first_row = out["per_patient"][0]
    assert first_row["re_mean_true"] == rows[1]["bpe_re_mean_true"]  # same converted study under both names
    assert first_row["difference"] == pytest.approx(0.0, abs=1e-12) and out["mae"] == pytest.approx(0.0, abs=1e-12)
    assert first_row["voxels_pred"] == first_row["voxels_true"] > 0
    assert out["mean_difference_ci95"][0] <= out["mean_difference"] <= out["mean_difference_ci95"][1]
    assert rows[1]["bpe_re_mean_pred"] is None and rows[1]["bpe_degree_category_pred"] is None
    assert rows[1]["bpe_combined_category_pred"] == 0  # area only, the degree being undefined
    assert out["degree_category"]["n"] == 1 and out["settings"] == bd.default_settings()
    json.dumps(out)
    with pytest.raises(InputError, match="converted"):
        evaluate_degree(EvaluationSettings.from_params(_resolved({})), data, pred, tmp_path / "nowhere", [dict(r) for r in rows])


def test_edge_counts_equal_numpy_histogram_on_and_beside_every_edge():
    rng = np.random.default_rng(3)
    for edges in (np.arange(11) * 0.2, np.array([-0.5, 0.0, 0.1, 0.35, 1.0, 3.0])):
        values = np.concatenate([rng.uniform(edges[0], edges[-1], 5000), edges, np.nextafter(edges[1:], -np.inf),
                                 np.nextafter(edges[:-1], np.inf)])
        assert np.array_equal(bd.edge_counts(values, edges), np.histogram(values, bins=edges)[0])
        assert bd.edge_counts(values[:0], edges).tolist() == [0] * (len(edges) - 1)


def _plain_labels_degree(labels, pre, sub, cfg):
    """The read-out written the obvious way (boolean indexing, numpy's median and percentiles on copies)."""
    bpe, tissue = labels == 2, (labels == 1) | (labels == 2)
    pre_bpe, sub_bpe = pre[bpe].astype(np.float64), sub[bpe].astype(np.float64)
    threshold = float(cfg["pre_floor"]) * float(np.median(pre[tissue].astype(np.float64)))
    ok = (pre_bpe > threshold) & (pre_bpe > 0) & np.isfinite(pre_bpe) & np.isfinite(sub_bpe)
    re = sub_bpe[ok] / pre_bpe[ok]
    edges = np.asarray(cfg["histogram_edges"], dtype=np.float64)
    return {"n_voxels": re.size, "pre_threshold": threshold, "mean": float(re.mean()), "median": float(np.median(re)),
            "std": float(re.std(ddof=1)), "quantiles": {f"p{q}": float(v) for q, v in
                                                        zip(bd.QUANTILES, np.percentile(re, bd.QUANTILES))},
            "counts": np.histogram(re[(re >= edges[0]) & (re <= edges[-1])], bins=edges)[0].tolist(),
            "below": int((re < edges[0]).sum()), "above": int((re > edges[-1]).sum())}


@pytest.mark.parametrize("layout", ["C", "F", "strided"])
@pytest.mark.parametrize("shape", [(47, 33, 16), (46, 32, 15)])
def test_degree_readout_is_the_plain_computation_bit_for_bit_whatever_the_memory_layout(layout, shape):
    """Mean and std sum the BPE voxels in C order, whatever the arrays' layout (NIfTI volumes are Fortran-ordered),
    and the median and percentiles are numpy's exactly, although they are taken from one reordered copy."""
    rng = np.random.default_rng(sum(shape))
    labels = rng.choice(np.array([0, 1, 2, 255], np.uint8), size=shape, p=[0.2, 0.3, 0.45, 0.05])
    pre = rng.gamma(4.0, 50.0, shape).astype(np.float32)
    pre[rng.random(shape) < 0.05] = 0.0  # excluded: no usable pre-contrast signal
    sub = (pre * rng.uniform(-0.2, 2.5, shape)).astype(np.float32)
    cfg = bd.default_settings()
    want = _plain_labels_degree(labels, pre, sub, cfg)
    if layout == "F":
        labels, pre, sub = (np.asfortranarray(a) for a in (labels, pre, sub))
    elif layout == "strided":
        big = [np.zeros((2 * shape[0], shape[1], shape[2]), a.dtype) for a in (labels, pre, sub)]
        for b, a in zip(big, (labels, pre, sub)):
            b[::2] = a
        labels, pre, sub = (b[::2] for b in big)
    got = bd.labels_degree(labels, pre, sub, cfg)
    assert want["n_voxels"] > 100 and got["n_excluded_low_pre"] > 0
    assert {k: got[k] for k in ("n_voxels", "pre_threshold", "mean", "median", "std", "quantiles")} == \
        {k: want[k] for k in ("n_voxels", "pre_threshold", "mean", "median", "std", "quantiles")}
    assert got["histogram"]["counts"] == want["counts"]
    assert (got["histogram"]["below"], got["histogram"]["above"]) == (want["below"], want["above"])
