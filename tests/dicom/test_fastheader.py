"""The fast paths of conversion give exactly what the pydicom paths give.

* headers read by :mod:`breastseg.dicom.fastheader` produce the same SliceRef as pydicom's, and every file it
  does not fully understand is left to pydicom;
* volumes streamed slice by slice (or copied by the kernel) equal :func:`read_stack`'s;
* NIfTI files written directly are byte-identical to nibabel's.
"""
from __future__ import annotations

import dataclasses
import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless

from breastseg.dicom.convert import convert_dicom_dir, write_stack
from breastseg.dicom.fastheader import fast_slice_ref, read_fast
from breastseg.dicom.headers import read_header, slice_refs
from breastseg.dicom.nifti import make_image, nifti_header, write_nifti
from breastseg.dicom.pixels import native_plan, read_stack
from breastseg.dicom.scan import scan
from breastseg.dicom.slices import Quarantine
from breastseg.dicom.series import build_stacks
from breastseg.errors import InputError
from breastseg.synth import dicom_files as syn

def _fields(ref) -> dict:
    return {f.name: getattr(ref, f.name) for f in dataclasses.fields(ref) if f.name != "header_ds"}


def _slow_ref(path: Path):
    ds, info = read_header(path)
    (ref,) = slice_refs(path, ds, info)
    return ref


SPECS = {
    "plain": dict(),
    "unsigned-12bit": dict(signed=False, bits_stored=12),
    "8bit": dict(signed=False, bits_allocated=8),
    "slope": dict(slope=2.5, intercept=-3.0),
    "intercept": dict(slope=1, intercept=-1024),
    "monochrome1": dict(photometric="MONOCHROME1", signed=False, bits_stored=12),
    "temporal": dict(temporal_position=3, content_time="101700", series_time="101000"),
}


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
@pytest.mark.parametrize("name", sorted(SPECS))
def test_fast_header_matches_pydicom(tmp_path, syntax, name):
    spec = syn.SeriesSpec(slices=3, **SPECS[name])
    for path in syn.write_series(tmp_path, spec, transfer_syntax=syntax):
        fast = fast_slice_ref(path)
        assert fast is not None, "the simple case must take the fast path"
        assert _fields(fast) == _fields(_slow_ref(path))
        assert fast.header_ds is None
        assert fast.header.SeriesInstanceUID == fast.series_uid  # parsed on demand


def _rewrite(path: Path, syntax: str, edit) -> None:
    ds = pydicom.dcmread(path)
    edit(ds)
    ds.file_meta.TransferSyntaxUID = syntax
    ds.save_as(path, enforce_file_format=True)


def _add_sequences(ds: Dataset) -> None:
    inner = Dataset()
    inner.CodeValue = "X1"
    inner.CodingSchemeDesignator = "99TEST"
    nested = Dataset()
    nested.ReferencedSOPClassUID = "1.2.3"
    nested.ReferencedSOPInstanceUID = "1.2.3.4"
    inner.ReferencedImageSequence = Sequence([nested])
    ds.AnatomicRegionSequence = Sequence([inner, Dataset()])
    ds.ReferencedImageSequence = Sequence([nested])
    ds.add_new(0x00291010, "OB", b"\x01\x02" * 20000)  # a large private blob: header beyond the first read
    ds.add_new(0x00290010, "LO", "PRIVATE CREATOR")


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
@pytest.mark.parametrize("undefined", [True, False])
def test_fast_header_skips_sequences_and_large_elements(tmp_path, syntax, undefined, monkeypatch):
    spec = syn.SeriesSpec(slices=2)
    paths = syn.write_series(tmp_path, spec, transfer_syntax=syntax)
    for p in paths:
        _rewrite(p, syntax, _add_sequences)
        if undefined:  # pydicom writes defined lengths; re-encode the sequences with undefined lengths
            ds = pydicom.dcmread(p)
            for elem in ds.iterall():
                if elem.VR == "SQ":
                    elem.is_undefined_length = True
                    for item in elem.value:
                        item.is_undefined_length_sequence_item = True
            ds.save_as(p, enforce_file_format=True)
        h = read_fast(p)
        assert h is not None and h.pixel_value_offset > 16384
        assert _fields(fast_slice_ref(p)) == _fields(_slow_ref(p))


def _no_fast(path: Path) -> bool:
    return fast_slice_ref(path) is None


def test_fast_header_leaves_everything_else_to_pydicom(tmp_path):
    spec = syn.SeriesSpec(slices=2)
    # compressed, multi-frame, no preamble, truncated, missing geometry, not DICOM
    rle = syn.write_series(tmp_path / "rle", spec, transfer_syntax=RLELossless)[0]
    enhanced = tmp_path / "enh.dcm"
    syn.write_enhanced(enhanced, syn.SeriesSpec(slices=3))
    plain = syn.write_series(tmp_path / "plain", spec)
    raw = tmp_path / "raw.dcm"
    raw.write_bytes(plain[0].read_bytes()[128:])
    truncated = tmp_path / "trunc.dcm"
    truncated.write_bytes(plain[1].read_bytes()[:-10])
    nogeo = syn.write_series(tmp_path / "nogeo", spec)[0]
    _rewrite(nogeo, ExplicitVRLittleEndian, lambda ds: delattr(ds, "ImagePositionPatient"))
    multi_uid = syn.write_series(tmp_path / "multi", spec)[0]
    _rewrite(multi_uid, ExplicitVRLittleEndian, lambda ds: setattr(ds, "SeriesInstanceUID", ["1.2", "1.3"]))
    text = tmp_path / "notes.dcm"
    text.write_text("not dicom" * 100)
    for p in (rle, enhanced, raw, truncated, nogeo, multi_uid, text):
        assert _no_fast(p), p.name
    assert not _no_fast(plain[0])
    # and the conversion still reports the bad ones exactly as before
    with pytest.raises(InputError, match="truncated pixel data"):
        scan(truncated, Quarantine("fail"))
    with pytest.raises(InputError, match="no patient geometry"):
        scan(nogeo, Quarantine("fail"))


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("name", sorted(SPECS))
def test_streamed_volume_equals_read_stack(tmp_path, compress, name):
    spec = syn.SeriesSpec(slices=4, **SPECS[name])
    syn.write_series(tmp_path / "in", spec)
    result = scan(tmp_path / "in", Quarantine("fail"))
    (stack,) = build_stacks(result.slices, Quarantine("fail"))
    expected, info = read_stack(stack)
    plan = native_plan(stack)
    if name == "intercept":  # the output type depends on the value range: read into memory
        assert plan is None
    else:
        assert plan is not None and plan.info == info
    out = tmp_path / ("v.nii.gz" if compress else "v.nii")
    like, info2 = write_stack(out, stack)
    assert info2 == info and like.shape == expected.shape and like.dtype == expected.dtype
    img = nib.load(out)
    got = np.asanyarray(img.dataobj)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)
    ref = tmp_path / ("ref.nii.gz" if compress else "ref.nii")
    img_ref = make_image(np.asfortranarray(expected), stack.affine)
    img_ref.to_filename(str(ref))
    if compress:
        assert gzip.decompress(out.read_bytes()) == gzip.decompress(ref.read_bytes())
    else:
        assert out.read_bytes() == ref.read_bytes()


def test_stream_reports_truncation_after_scan(tmp_path):
    spec = syn.SeriesSpec(slices=3)
    paths = syn.write_series(tmp_path / "in", spec)
    result = scan(tmp_path / "in", Quarantine("fail"))
    (stack,) = build_stacks(result.slices, Quarantine("fail"))
    paths[1].write_bytes(paths[1].read_bytes()[:-50])  # the file shrinks after discovery
    for name in ("v.nii", "v.nii.gz"):
        with pytest.raises(InputError, match="truncated pixel data"):
            write_stack(tmp_path / name, stack)
        assert not list(tmp_path.glob("*.nii*")), "no partial output"


@pytest.mark.parametrize("dtype", ["uint8", "int16", "uint16", "int32", "float32", "float64"])
def test_direct_nifti_bytes_equal_nibabel(tmp_path, dtype):
    data = np.asfortranarray(np.arange(7 * 5 * 3).reshape(7, 5, 3).astype(dtype))
    affine = np.array([[-0.7, 0, 0.1, 10], [0, -0.8, 0, 20], [0, 0.05, 1.5, -30], [0, 0, 0, 1]])
    write_nifti(tmp_path / "a.nii", data, affine)
    make_image(data, affine).to_filename(str(tmp_path / "b.nii"))
    assert (tmp_path / "a.nii").read_bytes() == (tmp_path / "b.nii").read_bytes()
    assert nifti_header(data.shape, data.dtype, affine) == (tmp_path / "b.nii").read_bytes()[:352]
    write_nifti(tmp_path / "a.nii.gz", data, affine)
    assert gzip.decompress((tmp_path / "a.nii.gz").read_bytes()) == (tmp_path / "b.nii").read_bytes()


def test_convert_mixed_fast_and_pydicom_files_in_one_series(tmp_path):
    spec = syn.SeriesSpec(slices=6)
    paths = syn.write_series(tmp_path / "in", spec)
    for p in paths[::2]:  # half the files without preamble: read by pydicom
        p.write_bytes(p.read_bytes()[132:])
        assert fast_slice_ref(p) is None
    convert_dicom_dir(tmp_path / "in", tmp_path / "out", compress=False)
    got = np.asanyarray(nib.load(tmp_path / "out" / "series-3-1.nii").dataobj)
    np.testing.assert_array_equal(got, syn.expected_volume(spec))
