"""`.nii.gz` output is compressed with ISA-L (python-isal): any gzip reader gets the same bytes as the `.nii`."""
import gzip

import nibabel as nib
import numpy as np

from breastseg.dicom.nifti import write_nifti


def test_nii_gz_holds_the_nii_bytes_is_deterministic_and_reads_back(tmp_path):
    rng = np.random.default_rng(0)
    data = np.asfortranarray(rng.integers(-1000, 3000, (40, 33, 7)).astype(np.int16))
    affine = np.diag([0.7, 0.7, 3.0, 1.0])
    affine[:3, 3] = (-12.5, 30.0, 4.0)
    plain = write_nifti(tmp_path / "v.nii", data, affine)
    packed = write_nifti(tmp_path / "v.nii.gz", data, affine)
    again = write_nifti(tmp_path / "w.nii.gz", data, affine)
    assert gzip.decompress(packed.read_bytes()) == plain.read_bytes()  # header and voxels, byte for byte
    assert packed.read_bytes() == again.read_bytes()                   # no time stamp in the gzip header
    img = nib.load(str(packed))
    np.testing.assert_array_equal(np.asarray(img.dataobj), data)
    np.testing.assert_allclose(img.affine, affine)
    assert packed.stat().st_size < plain.stat().st_size
