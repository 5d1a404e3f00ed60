"""Compressed, big-endian, implicit and deflated transfer syntaxes decode to the same values."""
from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import DeflatedExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEG2000Lossless, RLELossless

from breastseg.dicom.convert import convert_dicom_dir
from breastseg.synth import dicom_files as syn


def _data(name):
    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} not available offline (pydicom-data not installed)")
    return path


def convert_one(tmp_path, src, name="in"):
    d = tmp_path / name
    d.mkdir()
    shutil.copy(src, d / "f.dcm")
    summary = convert_dicom_dir(d, tmp_path / f"out_{name}")
    assert summary["n_series"] == 1
    return np.asanyarray(nib.load(tmp_path / f"out_{name}" / summary["series"][0]["file"]).dataobj)


@pytest.mark.parametrize(
    "name",
    ["MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm", "MR_small_bigendian.dcm",
     "MR_small_implicit.dcm"],
)
def test_mr_small_variants_equal_uncompressed(tmp_path, name):
    ref = convert_one(tmp_path, _data("MR_small.dcm"), "ref")
    got = convert_one(tmp_path, _data(name), "got")
    assert got.shape == (64, 64, 1)
    np.testing.assert_array_equal(got, ref)
    # and the values are the file's own stored values, transposed
    np.testing.assert_array_equal(ref[:, :, 0], pydicom.dcmread(_data("MR_small.dcm")).pixel_array.T)


def test_jpeg2000_lossless_with_rescale(tmp_path):
    src = _data("MR2_J2KR.dcm")
    got = convert_one(tmp_path, src)
    assert got.dtype == np.float32  # RescaleSlope 3.774114 is applied
    raw = pydicom.dcmread(src).pixel_array.astype(np.float32)
    np.testing.assert_allclose(got[:, :, 0], (raw * np.float32(3.774114) + np.float32(0.000061)).T, rtol=1e-6)
    assert float(got.max()) > 1000  # values span the image, not just the intercept


def test_corrupt_jpeg_gives_one_clear_error(tmp_path):
    from breastseg.errors import InputError

    fixed = syn.with_geometry(_data("JPEG-lossy.dcm"), tmp_path / "in" / "f.dcm")
    with pytest.raises(InputError) as err:
        convert_dicom_dir(fixed.parent, tmp_path / "out")
    assert err.value.path.endswith("f.dcm")
    assert "cannot be decoded (JPEG Extended" in err.value.reason
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "name", ["JPGExtended.dcm", "JPEG-LL.dcm", "JPEG2000.dcm"]
)
def test_jpeg_family_decodes_like_pydicom(tmp_path, name):
    src = _data(name)
    ds = pydicom.dcmread(src)
    if int(ds.get("SamplesPerPixel", 1)) != 1 or int(ds.get("NumberOfFrames", 1) or 1) != 1:
        pytest.skip(f"{name} is not a single-frame greyscale image")
    fixed = syn.with_geometry(src, tmp_path / "src" / "f.dcm")
    got = convert_one(tmp_path, fixed)
    np.testing.assert_array_equal(got[:, :, 0], ds.pixel_array.T)


@pytest.mark.parametrize("ts", [ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, RLELossless, JPEG2000Lossless])
def test_generated_series_in_each_syntax(tmp_path, ts):
    spec = syn.SeriesSpec(slope=1, intercept=-100, seed=5, rows=40, cols=32)
    try:
        syn.write_series(tmp_path / "in", spec, transfer_syntax=ts)
    except (RuntimeError, NotImplementedError) as exc:
        pytest.skip(f"no encoder for {ts.name}: {exc}")
    assert pydicom.dcmread(next((tmp_path / "in").iterdir())).file_meta.TransferSyntaxUID == ts
    convert_dicom_dir(tmp_path / "in", tmp_path / "out")
    data = np.asanyarray(nib.load(tmp_path / "out" / "series-3-1.nii.gz").dataobj)
    np.testing.assert_array_equal(data, syn.expected_volume(spec) - 100)


def test_big_endian_enhanced_file_without_geometry_refused(tmp_path):
    from breastseg.errors import InputError

    shutil.copy(_data("emri_small_big_endian.dcm"), tmp_path / "e.dcm")
    with pytest.raises(InputError, match="per-frame geometry"):
        convert_dicom_dir(tmp_path, tmp_path / "out")
