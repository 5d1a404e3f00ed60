"""Per-patient DCE conversion: studies, phases, subtraction, labels (NIfTI and DICOM SEG), PHI absence."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from breastseg.dicom.dce import convert_dce_patient
from breastseg.errors import InputError
from breastseg.synth import dicom_files as syn


def vol(path):
    img = nib.load(path)
    return img, np.asanyarray(img.dataobj)


def make_study(root, *, study_uid, study_date, times=("101500", "102000", "102500"), numbers=(9, 4, 6), **kw):
    """Phases written as separate series; SeriesNumbers deliberately out of time order."""
    ident = syn.Identity(study_date=study_date)
    specs = []
    for n, (t, num) in enumerate(zip(times, numbers)):
        spec = syn.SeriesSpec(study_uid=study_uid, series_number=num, acquisition_time=t + ".000000", seed=10 + n,
                              identity=ident, study_time="100000", **kw)
        syn.write_series(root / f"s{num}" / "deep", spec, name_pattern=f"{n}_" + "{index}")
        specs.append(spec)
    return specs


@pytest.fixture
def patient(tmp_path):
    pdir = tmp_path / "mri" / "DOE_folder"
    a = make_study(pdir / "visitB", study_uid="1.2.826.0.1.10", study_date="20240917")
    b = make_study(pdir / "visitA", study_uid="1.2.826.0.1.20", study_date="20230101", times=("090000", "090130"),
                   numbers=(3, 2))
    # a T2 series with another matrix and a three-plane localiser in the later study are not DCE phases
    syn.write_series(pdir / "visitB" / "t2", syn.SeriesSpec(study_uid="1.2.826.0.1.10", series_number=1, rows=12,
                                                            identity=syn.Identity(study_date="20240917")))
    for i, iop in enumerate((syn.AXIAL, syn.CORONAL, syn.SAGITTAL)):
        syn.write_series(pdir / "visitB" / "loc", syn.SeriesSpec(study_uid="1.2.826.0.1.10", series_uid="1.2.826.0.1.99",
                                                                 series_number=100, iop=iop, slices=2),
                         name_pattern=f"{i}_" + "{index}.dcm")
    (pdir / "visitB" / "notes.txt").write_text("patient DOE^JANE^MARKERNAME, see report")
    return pdir, a, b


def test_layout_phases_sub_and_patient_json(patient, tmp_path):
    pdir, a, b = patient
    summary = convert_dce_patient(pdir, tmp_path / "out", patient_id="P0123456789ab")
    out = tmp_path / "out"
    assert summary == json.loads((out / "patient.json").read_text())
    assert summary["patient"] == "P0123456789ab"
    # the 2023 study comes first, whatever the folder names
    assert [s["key"] for s in summary["studies"]] == ["study-1", "study-2"]
    assert summary["studies"][0]["phases"] == ["pre", "post1"]
    assert summary["studies"][1]["phases"] == ["pre", "post1", "post2"]
    assert summary["studies"][1]["shape"] == [8, 10, 5] and summary["studies"][1]["spacing"] == [0.7, 0.8, 2.5]
    assert sorted(p.name for p in (out / "study-2").iterdir()) == [
        "labels.nii.gz", "post1.json", "post1.nii.gz", "post2.json", "post2.nii.gz", "pre.json", "pre.nii.gz", "sub.nii.gz"]
    # phases by acquisition time, not SeriesNumber: pre is series 9 (seed 10), post1 series 4 (seed 11)
    _, pre = vol(out / "study-2" / "pre.nii.gz")
    _, post1 = vol(out / "study-2" / "post1.nii.gz")
    np.testing.assert_array_equal(pre, syn.expected_volume(a[0]))
    np.testing.assert_array_equal(post1, syn.expected_volume(a[1]))
    sub_img, sub = vol(out / "study-2" / "sub.nii.gz")
    assert sub.dtype == np.float32
    np.testing.assert_array_equal(sub, post1.astype(np.float32) - pre.astype(np.float32))
    np.testing.assert_allclose(sub_img.affine, nib.load(out / "study-2" / "pre.nii.gz").affine)
    side = json.loads((out / "study-2" / "post2.json").read_text())
    assert side["acquisition_time_s"] == 600.0 and side["phase"] == "post2"
    assert json.loads((out / "study-2" / "pre.json").read_text())["acquisition_time_s"] == 0.0
    # no labels: an all-255 volume, no annotated slices
    _, labels = vol(out / "study-2" / "labels.nii.gz")
    assert labels.dtype == np.uint8 and np.all(labels == 255)
    assert summary["studies"][1]["annotated_slices"] == []


def test_no_phi_in_any_output(patient, tmp_path):
    pdir, _, _ = patient
    convert_dce_patient(pdir, tmp_path / "out", patient_id="P0123456789ab")
    markers = syn.Identity().markers() + ["20230101", "DOE", "1.2.826.0.1", "visitA", "visitB"]
    assert syn.find_markers(tmp_path / "out", markers) == []


def test_nifti_labels_checked_and_counted(patient, tmp_path):
    pdir, _, _ = patient
    pre_aff = np.array([[-0.7, 0, 0, 12.5], [0, -0.8, 0, 30.0], [0, 0, 2.5, 40.0], [0, 0, 0, 1]])
    lab = np.full((8, 10, 5), 255, np.uint8)
    lab[:, :, 1] = 0
    lab[2:5, 3:6, 1] = 1
    lab[:, :, 3] = 2
    nib.save(nib.Nifti1Image(lab, pre_aff), pdir / "visitB" / "labels.nii.gz")
    summary = convert_dce_patient(pdir, tmp_path / "out", patient_id="P1")
    study = summary["studies"][1]
    assert study["annotated_slices"] == [1, 3] and study["labels_source"] == "nifti"
    _, got = vol(tmp_path / "out" / "study-2" / "labels.nii.gz")
    np.testing.assert_array_equal(got, lab)
    # the same labels stored dcm2niix-style (rows flipped, affine adjusted) are accepted and reoriented
    flip = np.diag([1.0, -1.0, 1.0, 1.0])
    flip[1, 3] = 9
    nib.save(nib.Nifti1Image(lab[:, ::-1, :].copy(), pre_aff @ flip), pdir / "visitB" / "labels.nii.gz")
    convert_dce_patient(pdir, tmp_path / "out2", patient_id="P1")
    np.testing.assert_array_equal(vol(tmp_path / "out2" / "study-2" / "labels.nii.gz")[1], lab)


def test_labels_on_another_grid_refused_and_nothing_written(patient, tmp_path):
    pdir, _, _ = patient
    aff = np.diag([-0.7, -0.8, 2.5, 1.0])
    aff[:3, 3] = [12.5, 30.0, 41.0]  # 1 mm off along z
    nib.save(nib.Nifti1Image(np.zeros((8, 10, 5), np.uint8), aff), pdir / "visitB" / "labels.nii.gz")
    with pytest.raises(InputError) as err:
        convert_dce_patient(pdir, tmp_path / "out", patient_id="P1")
    assert err.value.path.endswith("labels.nii.gz") and "not on the pre-contrast grid" in err.value.reason
    assert "1.000 mm" in err.value.reason
    assert not (tmp_path / "out").exists()
    bad = nib.Nifti1Image(np.full((8, 10, 5), 7, np.uint8), np.array(
        [[-0.7, 0, 0, 12.5], [0, -0.8, 0, 30.0], [0, 0, 2.5, 40.0], [0, 0, 0, 1]]))
    nib.save(bad, pdir / "visitB" / "labels.nii.gz")
    with pytest.raises(InputError, match="label values must be 0, 1, 2 or 255"):
        convert_dce_patient(pdir, tmp_path / "out", patient_id="P1")
    summary = convert_dce_patient(pdir, tmp_path / "out", patient_id="P1", on_error="skip")
    assert [s["key"] for s in summary["studies"]] == ["study-1"]
    q = json.loads((tmp_path / "out" / "quarantine.json").read_text())["skipped"]
    assert q[0]["kind"] == "study" and "study-2: label values" in q[0]["reason"]


def test_post_on_another_grid_resampled_onto_pre(tmp_path):
    pdir = tmp_path / "p"
    ramp = np.broadcast_to((np.arange(5) * 100)[:, None, None], (5, 10, 8)).astype(np.int16)
    common = dict(study_uid="1.2.826.0.5", values=ramp)
    syn.write_series(pdir / "a", syn.SeriesSpec(series_number=1, acquisition_time="100000", **common))
    syn.write_series(pdir / "b", syn.SeriesSpec(series_number=2, acquisition_time="100100", origin=(-12.5, -30.0, 41.25),
                                                **common))
    convert_dce_patient(pdir, tmp_path / "out", patient_id="P1")
    side = json.loads((tmp_path / "out" / "study-1" / "post1.json").read_text())
    assert side["on_pre_grid"] is False
    _, sub = vol(tmp_path / "out" / "study-1" / "sub.nii.gz")
    # post is shifted half a slice up: on the pre grid it reads 100*(k - 0.5); minus pre (100*k) = -50
    np.testing.assert_allclose(sub[:, :, 1:], -50.0, atol=1e-3)


def test_temporal_position_rule_and_override(tmp_path):
    pdir = tmp_path / "p"
    for tp, t in ((2, "100000"), (1, "100500"), (3, "101000")):
        syn.write_series(pdir / str(tp), syn.SeriesSpec(study_uid="1.2.826.0.6", series_number=10 + tp, seed=tp,
                                                        temporal_position=tp, acquisition_time=t))
    summary = convert_dce_patient(pdir, tmp_path / "out", patient_id="P1")
    assert summary["studies"][0]["phase_timing"] == "temporal_position"
    np.testing.assert_array_equal(vol(tmp_path / "out" / "study-1" / "pre.nii.gz")[1],
                                  syn.expected_volume(syn.SeriesSpec(seed=1)))
    summary = convert_dce_patient(pdir, tmp_path / "out", patient_id="P1", phase_rule="acquisition-time")
    assert summary["studies"][0]["phase_timing"] == "acquisition_time"
    np.testing.assert_array_equal(vol(tmp_path / "out" / "study-1" / "pre.nii.gz")[1],
                                  syn.expected_volume(syn.SeriesSpec(seed=2)))
    # a callable picks and orders phases itself
    rule = lambda cands: [c["index"] for c in sorted(cands, key=lambda c: -c["series_number"])][:2]  # noqa: E731
    summary = convert_dce_patient(pdir, tmp_path / "out", patient_id="P1", phase_rule=rule)
    assert summary["studies"][0]["phases"] == ["pre", "post1"]
    np.testing.assert_array_equal(vol(tmp_path / "out" / "study-1" / "pre.nii.gz")[1],
                                  syn.expected_volume(syn.SeriesSpec(seed=3)))


def test_single_phase_study_refused(tmp_path):
    syn.write_series(tmp_path / "p" / "a", syn.SeriesSpec())
    with pytest.raises(InputError, match="found 1 DCE phase"):
        convert_dce_patient(tmp_path / "p", tmp_path / "out", patient_id="P1")


def test_dicom_seg_labels(tmp_path):
    hd = pytest.importorskip("highdicom")
    import pydicom

    pdir = tmp_path / "p"
    pre_spec = syn.SeriesSpec(study_uid="1.2.826.0.7", series_number=1, acquisition_time="100000", rows=16, cols=16)
    paths = syn.write_series(pdir / "pre", pre_spec)
    syn.write_series(pdir / "post", syn.SeriesSpec(study_uid="1.2.826.0.7", series_number=2, acquisition_time="100100",
                                                   rows=16, cols=16))
    sources = sorted((pydicom.dcmread(p) for p in paths), key=lambda d: float(d.ImagePositionPatient[2]))
    mask = np.zeros((len(sources), 16, 16), np.uint8)  # (slice, row, col), label values per pixel
    mask[1, 2:6, 3:9] = 1
    mask[3, 8:12, 1:4] = 2
    descs = [
        hd.seg.SegmentDescription(
            segment_number=i, segment_label=label,
            segmented_property_category=hd.sr.CodedConcept("91723000", "SCT", "Anatomical Structure"),
            segmented_property_type=hd.sr.CodedConcept("85756007", "SCT", "Tissue"),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
        )
        for i, label in ((1, "FGT"), (2, "BPE"))
    ]
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=mask, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descs, series_instance_uid=hd.UID(), series_number=50, sop_instance_uid=hd.UID(),
        instance_number=1, manufacturer="breastseg", manufacturer_model_name="tests", software_versions="1",
        device_serial_number="1",
    )
    seg.save_as(pdir / "seg.dcm")
    summary = convert_dce_patient(pdir, tmp_path / "out", patient_id="P1")
    study = summary["studies"][0]
    assert study["labels_source"] == "dicom-seg" and study["phases"] == ["pre", "post1"]
    _, labels = vol(tmp_path / "out" / "study-1" / "labels.nii.gz")
    expected = np.transpose(mask, (2, 1, 0))
    np.testing.assert_array_equal(labels[:, :, [1, 3]], expected[:, :, [1, 3]])
    assert set(study["annotated_slices"]) >= {1, 3}
    for k in range(5):
        if k not in study["annotated_slices"]:
            assert np.all(labels[:, :, k] == 255)
        else:
            assert set(np.unique(labels[:, :, k])) <= {0, 1, 2}


def test_derived_series_is_not_a_phase(tmp_path):
    import pydicom

    pdir = tmp_path / "p"
    for num, t in ((1, "100000"), (2, "100100"), (3, "100200")):
        syn.write_series(pdir / str(num), syn.SeriesSpec(study_uid="1.2.826.0.8", series_number=num, acquisition_time=t,
                                                         seed=num))
    for f in (pdir / "3").iterdir():  # the scanner's own subtraction, acquired "last"
        ds = pydicom.dcmread(f)
        ds.ImageType = ["DERIVED", "SECONDARY", "SUB"]
        ds.save_as(f)
    summary = convert_dce_patient(pdir, tmp_path / "out", patient_id="P1")
    assert summary["studies"][0]["phases"] == ["pre", "post1"]
    np.testing.assert_array_equal(vol(tmp_path / "out" / "study-1" / "post1.nii.gz")[1],
                                  syn.expected_volume(syn.SeriesSpec(seed=2)))
