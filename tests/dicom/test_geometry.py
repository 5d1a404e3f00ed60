"""NIfTI affines and voxel values agree with SimpleITK (always) and dcm2niix (when installed)."""
from __future__ import annotations

import shutil
import subprocess

import nibabel as nib
import numpy as np
import pytest

from breastseg.dicom.convert import convert_dicom_dir
from breastseg.dicom.gridmatch import reorient_to_grid
from breastseg.synth import dicom_files as syn

ORIENTATIONS = {
    "axial": syn.AXIAL,
    "coronal": syn.CORONAL,
    "sagittal": syn.SAGITTAL,
    "oblique": syn.oblique_iop(20.0, 10.0),
}


@pytest.fixture(scope="module", params=list(ORIENTATIONS))
def converted(request, tmp_path_factory):
    name = request.param
    root = tmp_path_factory.mktemp(name)
    spec = syn.SeriesSpec(iop=ORIENTATIONS[name], rows=10, cols=8, slices=5, seed=3)
    syn.write_series(root / "in", spec)
    convert_dicom_dir(root / "in", root / "out")
    img = nib.load(root / "out" / "series-3-1.nii.gz")
    return name, root, spec, img


def test_axial_affine_numbers(tmp_path):
    spec = syn.SeriesSpec(iop=syn.AXIAL, origin=(-12.5, -30.0, 40.0), pixel_spacing=(0.8, 0.7), slice_step=2.5)
    syn.write_series(tmp_path / "in", spec)
    convert_dicom_dir(tmp_path / "in", tmp_path / "out")
    img = nib.load(tmp_path / "out" / "series-3-1.nii.gz")
    expected = np.array([[-0.7, 0, 0, 12.5], [0, -0.8, 0, 30.0], [0, 0, 2.5, 40.0], [0, 0, 0, 1]])
    np.testing.assert_allclose(img.affine, expected, atol=1e-6)
    assert int(img.header["sform_code"]) == 1 and int(img.header["qform_code"]) == 1
    np.testing.assert_array_equal(np.asanyarray(img.dataobj), syn.expected_volume(spec))


def test_matches_expected_grid(converted):
    name, _, spec, img = converted
    row, col = np.asarray(spec.iop[:3]), np.asarray(spec.iop[3:])
    normal = np.cross(row, col)
    lps = np.diag([-1, -1, 1])
    # voxel (i, j, k) centre = origin + i*dc*row + j*dr*col + k*step*normal, in RAS
    for ijk in [(0, 0, 0), (7, 0, 0), (0, 9, 0), (7, 9, 4), (3, 5, 2)]:
        i, j, k = ijk
        world = np.asarray(spec.origin) + i * spec.pixel_spacing[1] * row + j * spec.pixel_spacing[0] * col + k * spec.slice_step * normal
        np.testing.assert_allclose((img.affine @ [*ijk, 1])[:3], lps @ world, atol=1e-4)
    np.testing.assert_array_equal(np.asanyarray(img.dataobj), syn.expected_volume(spec))


def test_agrees_with_simpleitk(converted):
    sitk = pytest.importorskip("SimpleITK")
    _, root, _, img = converted
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(root / "in")))
    im = reader.Execute()
    direction = np.array(im.GetDirection()).reshape(3, 3)
    aff = np.eye(4)
    aff[:3, :3] = direction * np.array(im.GetSpacing())
    aff[:3, 3] = im.GetOrigin()
    aff = np.diag([-1, -1, 1, 1]) @ aff  # ITK is LPS
    np.testing.assert_allclose(img.affine, aff, atol=1e-4)
    theirs = sitk.GetArrayFromImage(im).transpose(2, 1, 0)
    np.testing.assert_array_equal(theirs, np.asanyarray(img.dataobj))


def test_agrees_with_dcm2niix(converted):
    if shutil.which("dcm2niix") is None:
        pytest.skip("dcm2niix not on PATH (Debian package: dcm2niix)")
    name, root, _, img = converted
    out = root / "dcm2niix"
    out.mkdir(exist_ok=True)
    subprocess.run(["dcm2niix", "-z", "n", "-f", "%s", "-o", str(out), str(root / "in")], check=True, capture_output=True)
    files = sorted(out.glob("*.nii"))
    assert len(files) == 1, files
    theirs = nib.load(files[0])
    # dcm2niix stores rows flipped; the same voxel centres must carry the same values
    same = reorient_to_grid(np.asanyarray(theirs.dataobj), theirs.affine, img.shape, img.affine, tol_mm=1e-3)
    assert same is not None, f"{name}: dcm2niix affine {theirs.affine} does not describe our grid {img.affine}"
    np.testing.assert_array_equal(same, np.asanyarray(img.dataobj))
    # and the world position of the first stored voxel agrees exactly
    np.testing.assert_allclose(
        theirs.affine @ [0, theirs.shape[1] - 1, 0, 1], img.affine @ [0, 0, 0, 1], atol=1e-3
    )
