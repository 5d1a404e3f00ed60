"""Generic conversion: discovery, slice order, values, enhanced MR, splits, PHI absence, atomic output."""
from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest
from pydicom.data import get_testdata_file

from breastseg.dicom.convert import convert_dicom_dir
from breastseg.errors import InputError
from breastseg.synth import dicom_files as syn


def load(path):
    img = nib.load(path)
    return img, np.asanyarray(img.dataobj)


def test_any_names_nesting_and_non_dicom_ignored(tmp_path):
    spec = syn.SeriesSpec(slices=6)
    paths = syn.write_series(tmp_path / "in" / "a", spec, name_pattern="x{index}")
    # scatter the files over nested folders with meaningless names
    for n, p in enumerate(paths):
        dst = tmp_path / "in" / f"d{n % 3}" / "deeper" / f"{n:03d}.bin"
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(p, dst)
    (tmp_path / "in" / "notes.txt").write_text("scanned on tuesday")
    (tmp_path / "in" / "d1" / "README").write_bytes(b"\x00" * 300)
    summary = convert_dicom_dir(tmp_path / "in", tmp_path / "out")
    assert summary["n_series"] == 1 and summary["ignored"] == 2
    _, data = load(tmp_path / "out" / "series-3-1.nii.gz")
    # InstanceNumber runs backwards and names are shuffled: order must come from positions
    np.testing.assert_array_equal(data, syn.expected_volume(spec))


def test_reversed_positions_sorted_by_normal(tmp_path):
    spec = syn.SeriesSpec(slice_step=-3.0, origin=(0, 0, 100))
    syn.write_series(tmp_path / "in", spec)
    convert_dicom_dir(tmp_path / "in", tmp_path / "out")
    img, data = load(tmp_path / "out" / "series-3-1.nii.gz")
    side = json.loads((tmp_path / "out" / "series-3-1.json").read_text())
    assert side["slice_positions_mm"] == [88.0, 91.0, 94.0, 97.0, 100.0]
    np.testing.assert_allclose(img.affine[:3, 2], [0, 0, 3.0])
    np.testing.assert_allclose(img.affine[:3, 3], [0, 0, 88.0])
    np.testing.assert_array_equal(data, syn.expected_volume(spec)[:, :, ::-1])


@pytest.mark.parametrize(
    "slope,intercept,signed,dtype",
    [(None, None, True, "int16"), (1, -1024, True, "int16"), (1, 40000, False, "uint16"), (1, 65000, False, "int32"),
     (None, None, False, "uint16"), (2.5, -3.0, True, "float32")],
)
def test_modality_lut_and_dtype(tmp_path, slope, intercept, signed, dtype):
    spec = syn.SeriesSpec(slope=slope, intercept=intercept, signed=signed)
    syn.write_series(tmp_path / "in", spec)
    convert_dicom_dir(tmp_path / "in", tmp_path / "out")
    img, data = load(tmp_path / "out" / "series-3-1.nii.gz")
    assert data.dtype == np.dtype(dtype)
    expected = syn.expected_volume(spec).astype(np.float64) * (slope or 1) + (intercept or 0)
    np.testing.assert_allclose(data.astype(np.float64), expected, rtol=1e-6)
    side = json.loads((tmp_path / "out" / "series-3-1.json").read_text())
    assert side["rescale_slope"] == (slope or 1) and side["rescale_intercept"] == (intercept or 0)
    assert np.isnan(img.header["scl_slope"]) or img.header["scl_slope"] in (0, 1)


def test_monochrome1_inverted(tmp_path):
    spec = syn.SeriesSpec(photometric="MONOCHROME1", signed=False, bits_stored=12,
                          values=np.arange(5 * 10 * 8).reshape(5, 10, 8).astype(np.uint16) * 10)
    syn.write_series(tmp_path / "in", spec)
    convert_dicom_dir(tmp_path / "in", tmp_path / "out")
    _, data = load(tmp_path / "out" / "series-3-1.nii.gz")
    np.testing.assert_array_equal(data, 4095 - syn.expected_volume(spec))


@pytest.mark.parametrize("shared", [True, False])
def test_enhanced_mr_frames_split_by_functional_groups(tmp_path, shared):
    spec = syn.SeriesSpec(iop=syn.oblique_iop(15, 5), slices=6, slope=1, intercept=5)
    syn.write_enhanced(tmp_path / "in" / "multi.dcm", spec, shared_geometry=shared, frame_order=[3, 0, 5, 1, 4, 2])
    # the same series as classic files, for reference
    ref = syn.SeriesSpec(**{**spec.__dict__, "series_uid": "1.2.3.9", "series_number": 4})
    syn.write_series(tmp_path / "ref", ref)
    convert_dicom_dir(tmp_path / "in", tmp_path / "out")
    convert_dicom_dir(tmp_path / "ref", tmp_path / "out_ref")
    img, data = load(tmp_path / "out" / "series-3-1.nii.gz")
    ref_img, ref_data = load(tmp_path / "out_ref" / "series-4-1.nii.gz")
    np.testing.assert_allclose(img.affine, ref_img.affine, atol=1e-5)
    np.testing.assert_array_equal(data, ref_data)
    np.testing.assert_array_equal(data, syn.expected_volume(spec) + 5)
    assert json.loads((tmp_path / "out" / "series-3-1.json").read_text())["multiframe"] is True


@pytest.mark.parametrize("missing", ["PlanePositionSequence", "PlaneOrientationSequence", "PixelMeasuresSequence"])
def test_enhanced_without_geometry_is_refused(tmp_path, missing):
    syn.write_enhanced(tmp_path / "in" / "multi.dcm", syn.SeriesSpec(), drop=[missing])
    with pytest.raises(InputError) as err:
        convert_dicom_dir(tmp_path / "in", tmp_path / "out")
    assert "multi.dcm" in str(err.value.path) and "no patient geometry" in err.value.reason
    assert {"PlanePositionSequence": "ImagePositionPatient", "PlaneOrientationSequence": "ImageOrientationPatient",
            "PixelMeasuresSequence": "PixelSpacing"}[missing] in err.value.reason
    assert not (tmp_path / "out").exists()


def test_enhanced_test_file_without_functional_groups_refused(tmp_path):
    path = get_testdata_file("emri_small.dcm")
    if path is None:
        pytest.skip("pydicom-data not installed (emri_small.dcm)")
    shutil.copy(path, tmp_path / "e.dcm")
    with pytest.raises(InputError, match="without per-frame geometry"):
        convert_dicom_dir(tmp_path, tmp_path / "out")


def test_three_plane_localiser_split_by_orientation(tmp_path):
    common = dict(series_uid="1.2.826.0.1.1", study_uid="1.2.826.0.1", series_number=1, slices=3)
    for name, iop in (("a", syn.AXIAL), ("c", syn.CORONAL), ("s", syn.SAGITTAL)):
        syn.write_series(tmp_path / "in", syn.SeriesSpec(iop=iop, **common), name_pattern=name + "{index}.dcm")
    summary = convert_dicom_dir(tmp_path / "in", tmp_path / "out")
    assert sorted(s["key"] for s in summary["series"]) == ["series-1-1", "series-1-2", "series-1-3"]
    assert sorted(s["plane"] for s in summary["series"]) == ["axial", "coronal", "sagittal"]


def test_temporal_positions_in_one_series_split(tmp_path):
    common = dict(series_uid="1.2.826.0.2.1", study_uid="1.2.826.0.2", series_number=7)
    for t in (1, 2, 3):
        syn.write_series(tmp_path / "in", syn.SeriesSpec(temporal_position=t, seed=t, **common),
                         name_pattern=f"t{t}_" + "{index}.dcm")
    summary = convert_dicom_dir(tmp_path / "in", tmp_path / "out")
    assert summary["n_series"] == 3
    side = json.loads((tmp_path / "out" / "series-7-2.json").read_text())
    assert side["temporal_position"] == 2
    _, data = load(tmp_path / "out" / "series-7-3.nii.gz")
    np.testing.assert_array_equal(data, syn.expected_volume(syn.SeriesSpec(seed=3)))


def test_no_phi_anywhere_in_outputs(tmp_path):
    ident = syn.Identity()
    spec = syn.SeriesSpec(description=f"dyn {ident.patient_id} {ident.patient_name} 19610203", identity=ident)
    syn.write_series(tmp_path / "in", spec)
    syn.write_enhanced(tmp_path / "in" / "enh.dcm", syn.SeriesSpec(series_number=9, identity=ident, study_uid=spec.study_uid))
    convert_dicom_dir(tmp_path / "in", tmp_path / "out", on_error="skip")
    blobs = syn.output_texts(tmp_path / "out")
    assert any(k.endswith(".nii.gz") for k in blobs)
    assert syn.find_markers(tmp_path / "out", ident.markers() + ["DOE", "JANE", "1.2.826", "2.25."]) == []
    for name, blob in blobs.items():
        if name.endswith(".nii.gz"):
            hdr = nib.Nifti1Header.from_fileobj(__import__("io").BytesIO(blob))
            assert hdr["descrip"].tobytes().rstrip(b"\0") == b"breastseg"
            assert hdr["db_name"].tobytes().strip(b"\0") == b"" and hdr["aux_file"].tobytes().strip(b"\0") == b""
    side = json.loads((tmp_path / "out" / "series-3-1.json").read_text())
    assert side["description"] == "dyn"
    assert "StudyInstanceUID" not in json.dumps(side) and "uid" not in json.dumps(side).lower()


def test_uncompressed_output_and_refuses_foreign_out_dir(tmp_path):
    syn.write_series(tmp_path / "in", syn.SeriesSpec())
    summary = convert_dicom_dir(tmp_path / "in", tmp_path / "out", compress=False)
    assert (tmp_path / "out" / "series-3-1.nii").exists() and summary["series"][0]["file"] == "series-3-1.nii"
    convert_dicom_dir(tmp_path / "in", tmp_path / "out")  # a previous output is replaced
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["conversion.json", "series-3-1.json", "series-3-1.nii.gz"]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("x")
    with pytest.raises(InputError, match="not empty"):
        convert_dicom_dir(tmp_path / "in", tmp_path / "mine")
    assert (tmp_path / "mine" / "thesis.tex").exists()


def test_parallel_workers_same_result(tmp_path):
    for n in range(4):
        syn.write_series(tmp_path / "in" / str(n), syn.SeriesSpec(series_number=n + 1, study_uid="1.2.826.0.3", seed=n))
    convert_dicom_dir(tmp_path / "in", tmp_path / "o1", workers=1)
    convert_dicom_dir(tmp_path / "in", tmp_path / "o4", workers=4)
    for n in range(4):
        a = load(tmp_path / "o1" / f"series-{n + 1}-1.nii.gz")[1]
        b = load(tmp_path / "o4" / f"series-{n + 1}-1.nii.gz")[1]
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, syn.expected_volume(syn.SeriesSpec(seed=n)))
