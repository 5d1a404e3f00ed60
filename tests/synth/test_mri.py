"""Synthetic DCE-MRI cohort: DICOM conformance, geometry, labels, enhancement, determinism."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from breastseg.dicom.geometry import slice_normal
from breastseg.labels import BPE_CUTOFFS, bpe_category
from breastseg.synth.cohort import write_cohort
from breastseg.synth.mri import _top_share, draw_bpe_fraction

TINY = dict(mri_matrix=48, mri_slices=8, mri_spacing_mm=6.5, mri_slice_mm=4.0, us_lines=64, us_depth_mm=10.0,
            annotated_fraction=0.5, progress=False)
N_PATIENTS = 4


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "cohort"
    summary = write_cohort(out, N_PATIENTS, 11, **TINY)
    assert summary["patients"] == N_PATIENTS
    return out


def _studies(cohort: Path) -> list[tuple[str, Path]]:
    out = []
    for pdir in sorted((cohort / "mri").iterdir()):
        (study,) = [d for d in pdir.iterdir() if d.is_dir()]
        out.append((pdir.name, study))
    return out


def _read_series(study: Path) -> dict[str, list[pydicom.Dataset]]:
    series: dict[str, list[pydicom.Dataset]] = {}
    for f in study.rglob("*.dcm"):
        ds = pydicom.dcmread(f)
        series.setdefault(ds.SeriesInstanceUID, []).append(ds)
    for dss in series.values():
        n = slice_normal([float(v) for v in dss[0].ImageOrientationPatient])
        dss.sort(key=lambda d: float(np.dot([float(v) for v in d.ImagePositionPatient], n)))
    return dict(sorted(series.items(), key=lambda kv: int(kv[1][0].TemporalPositionIdentifier)))


def _volume(dss: list[pydicom.Dataset]) -> np.ndarray:
    """[i, j, k] volume in physical units (RescaleSlope/Intercept applied)."""
    return np.stack([d.pixel_array.T * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in dss], axis=-1)


def _truth(cohort: Path, pid: str) -> dict:
    return json.loads((cohort / "truth" / "mri" / f"{pid}.json").read_text())


def test_layout_and_identifying_tags(cohort):
    studies = _studies(cohort)
    assert len(studies) == N_PATIENTS
    layouts = set()
    for pid, study in studies:
        assert pid.startswith("BRS-")
        assert (study / "labels.nii.gz").is_file()
        files = sorted(study.rglob("*.dcm"))
        truth = _truth(cohort, pid)
        assert len(files) == truth["dicom_files"] == 3 * TINY["mri_slices"]
        layouts.add(truth["file_layout"])
        ds = pydicom.dcmread(files[0])
        assert ds.PatientID == pid
        assert "^" in str(ds.PatientName) and len(ds.PatientBirthDate) == 8
        # names do not reveal the order (no instance or series numbers in them)
        assert all(f.stem not in {str(i) for i in range(100)} for f in files)
    assert layouts >= {"flat", "nested"} or len(layouts) >= 2
    assert any(len(f.relative_to(s).parts) > 1 for _, s in studies for f in s.rglob("*.dcm"))


def test_every_file_is_a_conformant_mr_image(cohort):
    for pid, study in _studies(cohort):
        series = _read_series(study)
        assert len(series) == 3
        study_uids, frame_uids, descriptions, times, temporal = set(), set(), set(), [], []
        for uid, dss in series.items():
            for ds in dss:
                assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
                assert ds.file_meta.MediaStorageSOPClassUID == pydicom.uid.MRImageStorage
                assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
                assert ds.SOPClassUID == pydicom.uid.MRImageStorage
                assert ds.Modality == "MR"
                assert ds.pixel_array.dtype in (np.int16, np.uint16)
                for kw in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness"):
                    assert kw in ds
                assert ds.SOPInstanceUID.is_valid and ds.SeriesInstanceUID.is_valid
                study_uids.add(ds.StudyInstanceUID)
                frame_uids.add(ds.FrameOfReferenceUID)
            descriptions.add(dss[0].SeriesDescription)
            times.append(dss[0].AcquisitionTime)
            temporal.append(int(dss[0].TemporalPositionIdentifier))
            assert len({d.SOPInstanceUID for d in dss}) == len(dss)
            assert sorted(int(d.InstanceNumber) for d in dss) == list(range(1, len(dss) + 1))
        assert len(study_uids) == 1 and len(frame_uids) == 1 and len(descriptions) == 3
        assert temporal == [1, 2, 3] and times == sorted(times) and len(set(times)) == 3
    # some studies store rescaled signed values, others plain unsigned values
    slopes = {(float(s["rescale_slope"]), float(s["rescale_intercept"])) for pid, _ in _studies(cohort)
              for s in _truth(cohort, pid)["series"]}
    assert (1.0, 0.0) in slopes and len(slopes) > 1


def test_sitk_geometry_matches_labels_affine(cohort):
    lps_to_ras = np.diag([-1.0, -1.0, 1.0])
    for pid, study in _studies(cohort):
        truth = _truth(cohort, pid)
        labels = nib.load(study / "labels.nii.gz")
        geoms, arrays = [], []
        for s in truth["series"]:
            names = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(study), s["series_instance_uid"], False, True)
            assert len(names) == TINY["mri_slices"]
            img = sitk.ReadImage(names, sitk.sitkFloat64)
            geoms.append((np.array(img.GetOrigin()), np.array(img.GetSpacing()), np.array(img.GetDirection()).reshape(3, 3)))
            arrays.append(sitk.GetArrayFromImage(img).transpose(2, 1, 0))  # [k, j, i] -> [i, j, k]
        for origin, spacing, direction in geoms[1:]:
            np.testing.assert_allclose(origin, geoms[0][0], atol=1e-4)
            np.testing.assert_allclose(spacing, geoms[0][1], atol=1e-6)
            np.testing.assert_allclose(direction, geoms[0][2], atol=1e-6)
        origin, spacing, direction = geoms[0]
        expected = np.eye(4)
        expected[:3, :3] = lps_to_ras @ direction @ np.diag(spacing)
        expected[:3, 3] = lps_to_ras @ origin
        np.testing.assert_allclose(labels.affine, expected, atol=1e-3)
        assert labels.shape == arrays[0].shape
        # SimpleITK and pydicom (sorted by IPP along the normal, rescale applied) agree voxel for voxel
        pre = _volume(list(_read_series(study).values())[0])
        np.testing.assert_allclose(arrays[0], pre, atol=1e-3)


def test_labels_are_annotated_on_a_subset_of_slices(cohort):
    for pid, study in _studies(cohort):
        truth = _truth(cohort, pid)
        img = nib.load(study / "labels.nii.gz")
        lab = np.asarray(img.dataobj)
        assert lab.dtype == np.uint8 and img.header.get_data_dtype() == np.uint8
        annotated = [k for k in range(lab.shape[2]) if (lab[:, :, k] != 255).all()]
        assert annotated == truth["annotated_slices"]
        assert len(annotated) == round(TINY["annotated_fraction"] * TINY["mri_slices"])
        rest = [k for k in range(lab.shape[2]) if k not in annotated]
        assert (lab[:, :, rest] == 255).all()
        assert set(np.unique(lab[:, :, annotated])) <= {0, 1, 2}
        ann = lab[:, :, annotated]
        fgt = np.isin(ann, (1, 2)).sum()
        assert fgt > 0
        assert (ann == 2).sum() / fgt == pytest.approx(truth["bpe_fraction_annotated"])


def test_bpe_fraction_covers_all_categories(cohort):
    cats = set()
    for pid, _ in _studies(cohort):
        t = _truth(cohort, pid)
        assert t["bpe_fraction"] == pytest.approx(t["bpe_voxels"] / t["fgt_voxels"])
        assert t["bpe_category"] == bpe_category(t["bpe_fraction"])
        edges = (0.0, *BPE_CUTOFFS, 1.0)
        assert edges[t["bpe_category"]] <= t["bpe_fraction"] < edges[t["bpe_category"] + 1]
        cats.add(t["bpe_category"])
    assert cats == {0, 1, 2, 3}


def test_bpe_fractions_are_drawn_up_to_the_cut_offs():
    """No margin around the cut-offs: a category's fractions fill it, and some fall next to a cut-off."""
    rng = np.random.default_rng(0)
    draws = [(c, draw_bpe_fraction(rng, c)) for _ in range(16) for c in range(4)]  # a 64-patient cohort's draws
    edges = (0.02, *BPE_CUTOFFS, 0.98)
    for c, f in draws:
        assert edges[c] <= f < edges[c + 1] and bpe_category(f) == c
    near = [f for _, f in draws if min(abs(f - e) for e in BPE_CUTOFFS) < 0.03]
    assert len(near) >= 3, near  # ~12 % of the range lies within 0.03 of a cut-off
    per_cat = np.array([f for c, f in draws if c == 1])
    assert per_cat.min() < 0.30 and per_cat.max() > 0.45  # the old draw kept mild within 0.29-0.46
    many = np.array([draw_bpe_fraction(np.random.default_rng([1, i]), 2) for i in range(400)])
    assert many.min() < 0.505 and many.max() > 0.745
    with pytest.raises(ValueError):
        draw_bpe_fraction(rng, 4)


def test_realised_fraction_next_to_a_cut_off_stays_in_its_category():
    scores = np.random.default_rng(2).normal(size=1001)
    for fraction, category in ((0.2499, 0), (0.25, 1), (0.5004, 2), (0.7496, 2), (0.7501, 3), (0.021, 0)):
        top, thr = _top_share(scores, fraction, category)
        realised = top.sum() / scores.size
        assert bpe_category(realised) == category and abs(realised - fraction) <= 1.0 / scores.size
        assert top.sum() == (scores > thr).sum() and scores[top].min() > thr > scores[~top].max()


def test_relative_enhancement_matches_generating_parameters(cohort):
    for pid, study in _studies(cohort):
        truth = _truth(cohort, pid)
        vols = [_volume(dss) for dss in _read_series(study).values()]
        lab = np.asarray(nib.load(study / "labels.nii.gz").dataobj)
        ann = truth["annotated_slices"]
        lab = lab[:, :, ann]
        pre = vols[0][:, :, ann]
        for p, post in enumerate(vols[1:]):
            with np.errstate(divide="ignore", invalid="ignore"):
                re = post[:, :, ann] / pre - 1.0
            bpe, fgt = lab == 2, lab == 1
            if bpe.sum() < 5 or fgt.sum() < 5:
                continue
            # at these coarse voxels partial volume and motion mix neighbouring tissue into most BPE voxels (the
            # quantitative check is in test_synth_physics.py, on finer voxels)
            expected = truth["re_bpe_annotated"][p]
            assert np.median(re[bpe]) < expected + 0.2, (pid, p, expected)
            # the enhancing region really enhances more than the non-enhancing FGT
            assert np.median(re[bpe]) > np.median(re[fgt])
        assert 0.2 <= truth["re_bpe"][0] <= 1.2
        assert max(truth["re_fgt"]) < 0.1


def _tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_differs(tmp_path, cohort):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    write_cohort(a, 2, 5, **TINY)
    write_cohort(b, 2, 5, **TINY)
    write_cohort(c, 2, 6, **TINY)
    ha, hb, hc = _tree_hashes(a), _tree_hashes(b), _tree_hashes(c)
    assert ha == hb
    assert any(k.endswith(".nii.gz") for k in ha) and any(k.endswith(".npz") for k in ha)
    assert set(ha.values()).isdisjoint(hc.values())
    # an existing output folder is replaced, not merged
    write_cohort(a, 1, 5, **TINY)
    assert len(list((a / "mri").iterdir())) == 1
    assert not list(tmp_path.glob(".a*"))
