"""Each kind of bad input gives one clear InputError (file, reason); with on_error="skip" the rest converts and
quarantine.json says what was skipped and why."""
from __future__ import annotations

import gzip
import json
import shutil

import pydicom
import pytest
from pydicom.data import get_testdata_file

from breastseg.dicom.convert import convert_dicom_dir
from breastseg.errors import InputError
from breastseg.synth import dicom_files as syn


def _good(src):
    return syn.write_series(src / "good", syn.SeriesSpec(series_number=2))


def truncated(src):
    p = syn.write_series(src / "bad", syn.SeriesSpec(series_number=5, slices=1))[0]
    p.write_bytes(p.read_bytes()[:-50])
    return p, "truncated pixel data: 110 bytes present, 160 expected"


def no_transfer_syntax(src):
    p = syn.write_series(src / "bad", syn.SeriesSpec(series_number=5, slices=1))[0]
    ds = pydicom.dcmread(p)
    del ds.file_meta.TransferSyntaxUID
    ds.save_as(p, enforce_file_format=False)
    return p, "no TransferSyntaxUID"


def empty_dataset(src):
    p = src / "bad" / "empty.dcm"
    p.parent.mkdir(parents=True)
    ds = pydicom.dcmread(syn.write_series(src / "tmp", syn.SeriesSpec(slices=1))[0])
    shutil.rmtree(src / "tmp")
    empty = pydicom.dataset.FileDataset("", pydicom.Dataset(), file_meta=ds.file_meta, preamble=b"\0" * 128)
    empty.save_as(p, enforce_file_format=False)
    assert len(pydicom.dcmread(p)) == 0  # parses "successfully"
    return p, "empty dataset"


def truncated_j2k_multiframe(src):
    path = get_testdata_file("emri_small_jpeg_2k_lossless_too_short.dcm")
    if path is None:
        pytest.skip("pydicom-data not installed")
    p = src / "bad" / "short.dcm"
    p.parent.mkdir(parents=True)
    shutil.copy(path, p)
    return p, "per-frame geometry"


def invalid_vr(src):
    p = syn.write_series(src / "bad", syn.SeriesSpec(series_number=5, slices=1))[0]
    b = bytearray(p.read_bytes())
    i = b.find(b"\x28\x00\x10\x00US")  # Rows
    b[i + 4:i + 6] = b"ZZ"
    p.write_bytes(bytes(b))
    return p, "Unknown Value Representation 'ZZ'"


def dicomdir(src):
    path = get_testdata_file("DICOMDIR")
    p = src / "bad" / "DICOMDIR"
    p.parent.mkdir(parents=True)
    shutil.copy(path, p)
    return p, "DICOMDIR references"


def gzip_renamed(src):
    p = syn.write_series(src / "bad", syn.SeriesSpec(series_number=5, slices=1))[0]
    p.write_bytes(gzip.compress(p.read_bytes()))
    return p, "gzip-compressed data, not DICOM"


def no_geometry(src):
    path = get_testdata_file("JPEG2000.dcm")
    p = src / "bad" / "sc.dcm"
    p.parent.mkdir(parents=True)
    shutil.copy(path, p)
    return p, "no patient geometry"


CASES = [truncated, no_transfer_syntax, empty_dataset, truncated_j2k_multiframe, invalid_vr, dicomdir, gzip_renamed,
         no_geometry]


@pytest.mark.parametrize("make", CASES, ids=[c.__name__ for c in CASES])
def test_fail_names_file_and_reason(tmp_path, make):
    src = tmp_path / "in"
    _good(src)
    bad, reason = make(src)
    with pytest.raises(InputError) as err:
        convert_dicom_dir(src, tmp_path / "out")
    assert err.value.path == str(bad)
    assert reason in err.value.reason
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()  # nothing half-written


@pytest.mark.parametrize("make", CASES, ids=[c.__name__ for c in CASES])
def test_skip_converts_rest_and_quarantines(tmp_path, make):
    src = tmp_path / "in"
    _good(src)
    bad, reason = make(src)
    summary = convert_dicom_dir(src, tmp_path / "out", on_error="skip")
    assert [s["key"] for s in summary["series"]] == ["series-2-1"]
    q = json.loads((tmp_path / "out" / "quarantine.json").read_text())["skipped"]
    assert len(q) == 1
    assert q[0]["path"] == bad.relative_to(src).as_posix() and reason in q[0]["reason"]


def test_uneven_and_duplicate_series_reported_with_numbers(tmp_path):
    syn.write_series(tmp_path / "in" / "u", syn.SeriesSpec(series_number=4, slices=7), skip_slices=[2, 5])
    common = dict(series_uid="1.2.826.0.9", study_uid="1.2.826.0.8", series_number=6)
    syn.write_series(tmp_path / "in" / "dup" / "d1", syn.SeriesSpec(**common))
    syn.write_series(tmp_path / "in" / "dup" / "d2", syn.SeriesSpec(slices=2, **common))
    _good(tmp_path / "in")
    with pytest.raises(InputError, match=r"uneven slice spacing \(gaps along the normal: 2.5 mm x2, 5 mm x2\)"):
        convert_dicom_dir(tmp_path / "in" / "u", tmp_path / "o1")
    with pytest.raises(InputError, match=r"series 6: duplicate slice positions \(2 position\(s\) occur more than once"):
        convert_dicom_dir(tmp_path / "in" / "dup", tmp_path / "o2")
    summary = convert_dicom_dir(tmp_path / "in", tmp_path / "o3", on_error="skip")
    assert summary["n_series"] == 1
    reasons = [e["reason"] for e in json.loads((tmp_path / "o3" / "quarantine.json").read_text())["skipped"]]
    assert any("series 4: uneven" in r for r in reasons) and any("series 6: duplicate" in r for r in reasons)


def test_radial_series_refused(tmp_path):
    for a in range(6):
        syn.write_series(
            tmp_path / "in",
            syn.SeriesSpec(series_uid="1.2.826.0.7", study_uid="1.2.826.0.6", slices=1, iop=syn.oblique_iop(a * 30, 90)),
            name_pattern=f"r{a}_" + "{index}.dcm",
        )
    with pytest.raises(InputError, match="not parallel \\(6 different orientations"):
        convert_dicom_dir(tmp_path / "in", tmp_path / "out")


def test_nothing_convertible(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("hello")
    with pytest.raises(InputError, match="no convertible DICOM image series"):
        convert_dicom_dir(tmp_path / "in", tmp_path / "out")
