"""Segment codes of the DICOM SEG written by ``predict``: standard codes where they exist, the private scheme
declared, and (when dicom3tools is installed) a clean ``dciodvfy`` report."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pydicom
import pytest

from breastseg.inference.dicom_seg import LOCAL_SCHEME, build_seg, save_seg, us_seg
from breastseg.synth.dicom_files import SeriesSpec, write_series

from inference_fixtures import us_dicom


def _codes(item, sequence):
    code = item[sequence][0]
    return code.CodeValue, code.CodingSchemeDesignator


@pytest.fixture
def mri_seg_file(tmp_path):
    paths = write_series(tmp_path / "mr", SeriesSpec(rows=10, cols=8, slices=3), shuffle_names=False)
    sources = [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]
    frames = np.zeros((3, 10, 8), np.uint8)
    frames[0, 2:5, 2:5] = 1
    frames[1, 3:6, 1:4] = 2
    path = tmp_path / "mri_seg.dcm"
    save_seg(build_seg(sources, frames, "mri", "bpe_mri", "3"), path)
    return path


@pytest.fixture
def us_seg_file(tmp_path):
    mask = np.zeros((40, 56), np.uint8)
    mask[10:20, 10:30] = 1
    path = tmp_path / "us_seg.dcm"
    save_seg(us_seg(us_dicom(tmp_path / "us.dcm"), mask, "mass_us_bmode", "1"), path)
    return path


def test_mri_segment_codes(mri_seg_file):
    ds = pydicom.dcmread(mri_seg_file)
    fgt, bpe = ds.SegmentSequence
    assert (fgt.SegmentLabel, bpe.SegmentLabel) == ("FGT", "BPE")
    for item in (fgt, bpe):
        assert _codes(item, "SegmentedPropertyCategoryCodeSequence") == ("85756007", "SCT")  # Tissue
    assert _codes(fgt, "SegmentedPropertyTypeCodeSequence") == ("1342375003", "SCT")  # Breast fibroglandular tissue
    assert _codes(bpe, "SegmentedPropertyTypeCodeSequence") == ("BPE", LOCAL_SCHEME)
    (scheme,) = ds.CodingSchemeIdentificationSequence
    assert scheme.CodingSchemeDesignator == LOCAL_SCHEME
    assert scheme.CodingSchemeName and scheme.CodingSchemeResponsibleOrganization


def test_us_segment_codes(us_seg_file):
    ds = pydicom.dcmread(us_seg_file)
    (mass,) = ds.SegmentSequence
    assert mass.SegmentLabel == "mass"
    assert _codes(mass, "SegmentedPropertyCategoryCodeSequence") == ("49755003", "SCT")  # Morph. abnormal structure
    assert _codes(mass, "SegmentedPropertyTypeCodeSequence") == ("4147007", "SCT")  # Mass
    assert "CodingSchemeIdentificationSequence" not in ds  # no private scheme in use


@pytest.mark.parametrize("which", ["mri_seg_file", "us_seg_file"])
def test_dciodvfy_clean(which, request):
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (dicom3tools) is not installed")
    path = request.getfixturevalue(which)
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120)
    lines = [ln.strip() for ln in (run.stdout + run.stderr).splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("Error")]
    warnings = [ln for ln in lines if ln.startswith("Warning") and LOCAL_SCHEME not in ln]
    assert not errors and not warnings, "\n".join(lines)
