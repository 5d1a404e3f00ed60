"""MRI label files in the formats annotators use: 3D Slicer .seg.nrrd (labelmap and layered), plain NRRD, NIfTI
label maps (ITK-SNAP), each placed on the pre-contrast grid and mapped through ``cohort.label_map``."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from breastseg.config import Settings
from breastseg.dicom.dce import convert_dce_patient
from breastseg.dicom.labelfiles import is_label_file_name
from breastseg.errors import InputError
from breastseg.synth import dicom_files as syn

nrrd = pytest.importorskip("nrrd")

SHAPE = (16, 16, 4)  # (columns, rows, slices) of the pre-contrast grid
# The pre-contrast grid in LPS, as Slicer writes it: voxel (i, j, k) = origin + i*0.7 x + j*0.8 y + k*2.5 z
LPS_DIRS = np.diag([0.7, 0.8, 2.5])
LPS_ORIGIN = np.array([-12.5, -30.0, 40.0])
RAS_AFFINE = np.array([[-0.7, 0, 0, 12.5], [0, -0.8, 0, 30.0], [0, 0, 2.5, 40.0], [0, 0, 0, 1]])


@pytest.fixture
def study(tmp_path):
    pdir = tmp_path / "patient"
    for n, t in enumerate(("100000", "100100")):
        syn.write_series(pdir / f"s{n}", syn.SeriesSpec(study_uid="1.2.826.0.9", series_number=n + 1, acquisition_time=t,
                                                        rows=16, cols=16, slices=4, seed=n))
    return pdir


def expected_classes() -> np.ndarray:
    exp = np.zeros(SHAPE, np.uint8)
    exp[2:7, 3:9, 1] = 1
    exp[9:12, 4:6, 1] = 2
    exp[4:10, 5:12, 2] = 1
    exp[5:7, 6:8, 2] = 2
    return exp


def write_nrrd(path, data, *, dirs=LPS_DIRS, origin=LPS_ORIGIN, space="left-posterior-superior", extra=None):
    header = {"space": space, "space directions": np.asarray(dirs, float), "space origin": np.asarray(origin, float)}
    if data.ndim == 4:  # layer axis first, as Slicer writes it
        header["space directions"] = np.vstack([np.full(3, np.nan), header["space directions"]])
        header["kinds"] = ["list", "domain", "domain", "domain"]
    header.update(extra or {})
    nrrd.write(str(path), data, header, index_order="F")
    return path


def segments(*segs):
    """Slicer header keys for (name, label value, layer) triples."""
    out = {}
    for n, (name, value, layer) in enumerate(segs):
        out.update({f"Segment{n}_Name": name, f"Segment{n}_LabelValue": str(value), f"Segment{n}_Layer": str(layer),
                    f"Segment{n}_ID": f"Segment_{n + 1}"})
    return out


def converted(tmp_path, pdir, name="out", **kw):
    summary = convert_dce_patient(pdir, tmp_path / name, patient_id="P1", **kw)
    img = nib.load(tmp_path / name / "study-1" / "labels.nii.gz")
    np.testing.assert_allclose(img.affine, RAS_AFFINE, atol=1e-5)
    return summary["studies"][0], np.asanyarray(img.dataobj)


def one_line_refusal(err, filename):
    assert err.value.path.endswith(filename), err.value.path
    assert "\n" not in str(err.value)
    return err.value.reason


def test_slicer_labelmap_mapped_by_segment_name(study, tmp_path):
    exp = expected_classes()
    stored = np.select([exp == 1, exp == 2], [5, 7], 0).astype(np.uint8)
    stored[:, :, 3] = 9  # a segment mapped to "not annotated"
    seg = segments(("Fibroglandular tissue", 5, 0), ("Enhancing", 7, 0), ("Unlabelled slice", 9, 0))
    write_nrrd(study / "Segmentation.seg.nrrd", stored, extra=seg)
    label_map = {"fibroglandular tissue": 1, "Enhancing": 2, "Unlabelled slice": 255}
    entry, got = converted(tmp_path, study, label_map=label_map)
    want = exp.copy()
    want[:, :, 3] = 255
    np.testing.assert_array_equal(got, want)
    assert entry["labels_source"] == "slicer-seg-nrrd" and entry["annotated_slices"] == [0, 1, 2]
    assert json.loads((tmp_path / "out" / "patient.json").read_text())["studies"][0]["labels_source"] == "slicer-seg-nrrd"


def test_slicer_layered_segments_overlap_bpe_wins(study, tmp_path):
    exp = expected_classes()
    layers = np.zeros((2, *SHAPE), np.uint8)
    layers[0][exp > 0] = 1  # fibroglandular tissue, BPE included
    layers[1][exp == 2] = 1  # enhancing part, its own layer
    seg = segments(("FGT", 1, 0), ("BPE", 1, 1))
    write_nrrd(study / "breast.seg.nrrd", layers, extra=seg)
    _, got = converted(tmp_path, study, label_map={"FGT": 1, "BPE": 2})
    np.testing.assert_array_equal(got, exp)
    # older Slicer files: one layer per segment, no LabelValue/Layer keys
    old = {"Segment0_Name": "FGT", "Segment1_Name": "BPE"}
    write_nrrd(study / "breast.seg.nrrd", layers, extra=old)
    _, got = converted(tmp_path, study, "out2", label_map={"FGT": 1, "BPE": 2})
    np.testing.assert_array_equal(got, exp)


def test_slicer_values_without_label_map_are_the_classes(study, tmp_path):
    exp = expected_classes()
    write_nrrd(study / "Segmentation.seg.nrrd", exp, extra=segments(("FGT", 1, 0), ("BPE", 2, 0)))
    entry, got = converted(tmp_path, study)
    np.testing.assert_array_equal(got, exp)
    assert entry["annotated_slices"] == [0, 1, 2, 3]


def test_plain_nrrd_by_value_in_ras_space(study, tmp_path):
    exp = expected_classes()
    stored = np.select([exp == 1, exp == 2], [10, 20], 0).astype(np.int16)
    stored[:, :, 0] = -1
    # the same grid written in RAS coordinates: x and y axes and origin negated
    write_nrrd(study / "pre_label.nrrd", stored, dirs=np.diag([-0.7, -0.8, 2.5]), origin=[12.5, 30.0, 40.0],
               space="right-anterior-superior")
    entry, got = converted(tmp_path, study, label_map={10: 1, "20": 2, -1: 255})
    want = exp.copy()
    want[:, :, 0] = 255
    np.testing.assert_array_equal(got, want)
    assert entry["labels_source"] == "nrrd" and entry["annotated_slices"] == [1, 2, 3]


def test_nrrd_stored_with_flipped_rows_is_reoriented(study, tmp_path):
    exp = expected_classes()
    flipped = exp[:, ::-1, :].copy()  # rows stored bottom-up: y steps backwards from the last row
    origin = LPS_ORIGIN + [0, 0.8 * 15, 0]
    write_nrrd(study / "labels.nrrd", flipped, dirs=np.diag([0.7, -0.8, 2.5]), origin=origin)
    _, got = converted(tmp_path, study)
    np.testing.assert_array_equal(got, exp)


def test_itksnap_nifti_by_name_and_value_map(study, tmp_path):
    exp = expected_classes()
    nib.save(nib.Nifti1Image(exp, RAS_AFFINE), study / "s0" / "case_seg.nii.gz")
    entry, got = converted(tmp_path, study)
    np.testing.assert_array_equal(got, exp)
    assert entry["labels_source"] == "nifti"
    stored = np.select([exp == 1, exp == 2], [3, 4], 0).astype(np.uint16)
    nib.save(nib.Nifti1Image(stored, RAS_AFFINE), study / "s0" / "case_seg.nii.gz")
    _, got = converted(tmp_path, study, "out2", label_map={3: 1, 4: 2})
    np.testing.assert_array_equal(got, exp)


@pytest.mark.parametrize("change", ["origin", "spacing"])
def test_grid_mismatch_refused_in_one_line(study, tmp_path, change):
    exp = expected_classes()
    dirs, origin = LPS_DIRS, LPS_ORIGIN
    if change == "origin":
        origin = LPS_ORIGIN + [0.0, 0.0, 1.0]
    else:
        dirs = np.diag([0.75, 0.8, 2.5])
    write_nrrd(study / "Segmentation.seg.nrrd", exp, dirs=dirs, origin=origin, extra=segments(("FGT", 1, 0)))
    with pytest.raises(InputError) as err:
        convert_dce_patient(study, tmp_path / "out", patient_id="P1")
    assert "not on the pre-contrast grid" in one_line_refusal(err, "Segmentation.seg.nrrd")
    assert not (tmp_path / "out").exists()


def test_wrong_space_does_not_pass(study, tmp_path):
    exp = expected_classes()
    # LPS numbers declared as RAS (a writer that skipped the conversion): the voxels land mirrored, refused
    write_nrrd(study / "labels.nrrd", exp, space="right-anterior-superior")
    with pytest.raises(InputError) as err:
        convert_dce_patient(study, tmp_path / "out", patient_id="P1")
    assert "not on the pre-contrast grid" in one_line_refusal(err, "labels.nrrd")
    (study / "labels.nrrd").unlink()
    # the same mistake in NIfTI: the LPS affine stored as if it were RAS
    lps_affine = np.eye(4)
    lps_affine[:3, :3], lps_affine[:3, 3] = LPS_DIRS, LPS_ORIGIN
    nib.save(nib.Nifti1Image(exp, lps_affine), study / "labels.nii.gz")
    with pytest.raises(InputError) as err:
        convert_dce_patient(study, tmp_path / "out", patient_id="P1")
    assert "not on the pre-contrast grid" in one_line_refusal(err, "labels.nii.gz")
    (study / "labels.nii.gz").unlink()
    # an NRRD without an anatomical space cannot be placed at all
    write_nrrd(study / "labels.nrrd", exp, space="scanner-xyz")
    with pytest.raises(InputError) as err:
        convert_dce_patient(study, tmp_path / "out", patient_id="P1")
    assert "anatomical space" in one_line_refusal(err, "labels.nrrd")


def test_unmapped_values_refused(study, tmp_path):
    exp = expected_classes()
    stored = np.select([exp == 1, exp == 2], [5, 7], 0).astype(np.uint8)
    write_nrrd(study / "Segmentation.seg.nrrd", stored, extra=segments(("FGT", 5, 0), ("Enhancing", 7, 0)))
    with pytest.raises(InputError) as err:
        convert_dce_patient(study, tmp_path / "out", patient_id="P1", label_map={"FGT": 1})
    reason = one_line_refusal(err, "Segmentation.seg.nrrd")
    assert "not mapped by cohort.label_map" in reason and "7 ('Enhancing')" in reason and "5" not in reason
    with pytest.raises(InputError) as err:
        convert_dce_patient(study, tmp_path / "out", patient_id="P1")
    assert "label values must be 0, 1, 2 or 255" in one_line_refusal(err, "Segmentation.seg.nrrd")
    # skipped studies name the file's problem in quarantine.json
    with pytest.raises(InputError, match="no study could be converted"):
        convert_dce_patient(study, tmp_path / "out", patient_id="P1", on_error="skip")


@pytest.mark.parametrize("label_map", [{"FGT": 3}, {"FGT": True}, {1.5: 1}, ["FGT"]])
def test_bad_label_map_refused_before_conversion(study, tmp_path, label_map):
    with pytest.raises(InputError, match="cohort.label_map"):
        convert_dce_patient(study, tmp_path / "out", patient_id="P1", label_map=label_map)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name,is_label", [
    ("labels.nii.gz", True), ("labels.nii", True), ("Segmentation.seg.nrrd", True), ("case-label.nrrd", True),
    ("FGT_SEG.NII.GZ", True), ("pre_labels.nii", True), ("t1_fl3d_dyn.nii.gz", False), ("pre.nrrd", False),
    ("seg.dcm", False), ("labels", False), ("labels.txt", False), (".labels.nii.gz", False), ("seg_001.IMA", False),
])
def test_naming_rule(name, is_label):
    assert is_label_file_name(name) is is_label


def test_images_and_dicom_never_taken_for_labels(study, tmp_path):
    # a NIfTI image conversion beside the DICOM (on another grid) and DICOM files named like labels are ignored
    nib.save(nib.Nifti1Image(np.ones((5, 5, 5), np.int16), np.eye(4)), study / "t1_fl3d_dyn.nii.gz")
    syn.write_series(study / "s2", syn.SeriesSpec(study_uid="1.2.826.0.9", series_number=3, rows=12, cols=12,
                                                  slices=2), name_pattern="labels_seg_{index}.nii")
    entry, got = converted(tmp_path, study)
    assert entry["labels_source"] is None and np.all(got == 255)
    # two label files for one study: refused, naming both
    nib.save(nib.Nifti1Image(expected_classes(), RAS_AFFINE), study / "labels.nii.gz")
    write_nrrd(study / "s0" / "Segmentation.seg.nrrd", expected_classes(), extra=segments(("FGT", 1, 0)))
    with pytest.raises(InputError) as err:
        convert_dce_patient(study, tmp_path / "out2", patient_id="P1")
    assert "2 label files" in err.value.reason and "Segmentation.seg.nrrd" in err.value.reason


def test_the_workflows_conversion_step_maps_labels_with_cohort_label_map(study, tmp_path):
    """The shard job reads cohort.label_map from the params in force (the rules pass --params only)."""
    import copy
    from pathlib import Path

    from breastseg.config import load_params
    from breastseg.data import shards
    from breastseg.data.cohort import discover, write_fingerprints
    from breastseg.pseudonym import DEMO_KEY

    root = tmp_path / "cohort"
    (root / "mri").mkdir(parents=True)
    study.rename(root / "mri" / "woman-1")
    pdir = root / "mri" / "woman-1"
    labels = np.where(expected_classes() == 1, 7, np.where(expected_classes() == 2, 9, 0)).astype(np.uint8)
    write_nrrd(next(pdir.iterdir()) / "Segmentation.seg.nrrd", labels,
               extra=segments(("Dense tissue", 7, 0), ("Enhancing", 9, 0)))
    params = copy.deepcopy(load_params(Path(__file__).resolve().parents[2] / "params.yaml"))
    params["cohort"]["label_map"] = {"Dense tissue": 1, "Enhancing": 2}
    found = discover(root, "mri", DEMO_KEY)
    [fp] = write_fingerprints(found, tmp_path / "fp", 1).values()
    shards.convert_shard(Settings.from_params(params), "mri", fp, tmp_path / "interim" / "shard-00.json", interim_dir=tmp_path / "interim",
                         log_dir=tmp_path / "logs")
    [pid] = found
    [lab] = (tmp_path / "interim" / pid).glob("*/labels.nii.gz")
    np.testing.assert_array_equal(np.asarray(nib.load(lab).dataobj), expected_classes())
