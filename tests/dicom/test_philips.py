"""Philips floating-point scaling: FP = (PV * RS + RI) / (RS * SS), as dcm2niix applies it by default.

Files are written like Philips writes them: the private creator "Philips MR Imaging DD 001" at (2005,0010),
the scale slope (2005,100E) and intercept (2005,100D) as FL, RescaleSlope/RescaleIntercept as DS; in an
Enhanced file the private values sit in each frame's private sequence (2005,140F).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from breastseg.dicom.convert import convert_dicom_dir, write_stack
from breastseg.dicom.dce import convert_dce_patient
from breastseg.dicom.fastheader import fast_slice_ref
from breastseg.dicom.headers import read_header, slice_refs
from breastseg.dicom.philips import PHILIPS_CREATOR, precise_lut
from breastseg.dicom.pixels import native_plan, read_stack
from breastseg.dicom.scan import scan
from breastseg.dicom.slices import Quarantine
from breastseg.dicom.series import build_stacks
from breastseg.errors import InputError
from breastseg.synth import dicom_files as syn

PHILIPS = "Philips Medical Systems"
SHAPE = (3, 8, 8)  # slices, rows, cols
STUDY = "1.2.826.0.1.77"


def fp(pv, rs, ri, ss):
    """The floating-point value, straight from the formula (float64)."""
    return (np.asarray(pv, np.float64) * rs + ri) / (rs * ss)


def add_private(ds: Dataset, ss: float, si: float) -> None:
    block = ds.private_block(0x2005, PHILIPS_CREATOR, create=True)
    block.add_new(0x0E, "FL", ss)
    block.add_new(0x0D, "FL", si)


def philipsify(paths, *, ss: float | None, si: float = 0.0, manufacturer: str = PHILIPS,
               syntax: str = ExplicitVRLittleEndian) -> None:
    """Rewrite classic files with a manufacturer and (when ``ss`` is given) the Philips private scale tags."""
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.Manufacturer = manufacturer
        if ss is not None:
            add_private(ds, ss, si)
        ds.file_meta.TransferSyntaxUID = syntax
        ds.save_as(path, enforce_file_format=True)


def philips_enhanced(path: Path, spec: syn.SeriesSpec, frame_ss, si: float = 0.0) -> Path:
    """An Enhanced MR file whose frames carry SS in the private per-frame sequence (2005,140F)."""
    syn.write_enhanced(path, spec)
    ds = pydicom.dcmread(path)
    ds.Manufacturer = PHILIPS
    for item, ss in zip(ds.PerFrameFunctionalGroupsSequence, frame_ss):
        inner = Dataset()
        add_private(inner, ss, si)
        item.add_new(0x20050014, "LO", "Philips MR Imaging DD 005")
        item.add_new(0x2005140F, "SQ", Sequence([inner]))
    ds.save_as(path, enforce_file_format=True)
    return path


def vol(path):
    return np.asanyarray(nib.load(path).dataobj)


# Two phases whose stored values, rescale and private slopes all differ, but whose floating-point values are
# the same tissue signal (2 * base) plus an enhancement of 80 in a block of the post-contrast phase.
BASE = 4 * (np.arange(np.prod(SHAPE)).reshape(SHAPE) % 50)
ENH = np.zeros(SHAPE, np.int64)
ENH[1, 2:5, 3:6] = 1
PRE = dict(rs=2.0, ri=-20.0, ss=0.5, values=(BASE + 10).astype(np.int16))  # FP = 2 PV - 20 = 2 base
POST = dict(rs=4.0, ri=0.0, ss=0.125, values=(BASE // 4 + 10 * ENH).astype(np.int16))  # FP = 8 PV = 2 base + 80 enh


def dce_specs():
    ident = syn.Identity()
    return [syn.SeriesSpec(rows=SHAPE[1], cols=SHAPE[2], slices=SHAPE[0], study_uid=STUDY, series_number=num,
                           acquisition_time=t, temporal_position=tp, slope=ph["rs"], intercept=ph["ri"],
                           values=ph["values"], identity=ident)
            for num, t, tp, ph in ((5, "101500.000000", 1, PRE), (6, "102000.000000", 2, POST))]


def write_dce(pdir: Path, layout: str, *, post_ss: float | None = POST["ss"]) -> list[syn.SeriesSpec]:
    specs = dce_specs()
    for spec, ss in zip(specs, (PRE["ss"], post_ss)):
        folder = pdir / f"s{spec.series_number}"
        if layout == "enhanced":
            folder.mkdir(parents=True)
            philips_enhanced(folder / "MF.dcm", spec, [ss] * spec.slices)
        else:
            paths = syn.write_series(folder, spec)
            philipsify(paths, ss=ss, syntax=ImplicitVRLittleEndian if layout == "implicit" else ExplicitVRLittleEndian)
    return specs


@pytest.mark.parametrize("layout", ["explicit", "implicit", "enhanced"])
def test_dce_phases_and_subtraction_in_one_floating_point_scale(tmp_path, layout):
    specs = write_dce(tmp_path / "pat", layout)
    summary = convert_dce_patient(tmp_path / "pat", tmp_path / "out", patient_id="P1")
    out = tmp_path / "out" / "study-1"
    assert summary["studies"][0]["philips_scaling"] == "floating-point"
    got = {}
    for name, spec, ph in (("pre", specs[0], PRE), ("post1", specs[1], POST)):
        got[name] = vol(out / f"{name}.nii.gz")
        assert got[name].dtype == np.float32
        pv = syn.expected_volume(spec)
        np.testing.assert_allclose(got[name], fp(pv, ph["rs"], ph["ri"], ph["ss"]), rtol=1e-6, atol=1e-4)
        side = json.loads((out / f"{name}.json").read_text())
        assert side["philips_scaling"] == "floating-point"
        assert side["philips_scale_slope"] == ph["ss"] and side["philips_scale_intercept"] == 0.0
        assert side["rescale_slope"] == ph["rs"] and side["rescale_intercept"] == ph["ri"]
    # both phases hold 2 * base: the subtraction is the enhancement alone, in floating-point units
    sub = vol(out / "sub.nii.gz")
    np.testing.assert_allclose(sub, np.transpose(80.0 * ENH, (2, 1, 0)), atol=1e-3)
    np.testing.assert_allclose(sub, got["post1"] - got["pre"], atol=1e-4)
    # the display scaling alone would not have cancelled the tissue signal
    display = [syn.expected_volume(spec) * ph["rs"] + ph["ri"] for spec, ph in zip(specs, (PRE, POST))]
    display = display[1] - display[0]
    assert np.abs(display - sub).max() > 50


def test_fast_header_reads_the_private_tags(tmp_path):
    for syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
        paths = syn.write_series(tmp_path / syntax, syn.SeriesSpec(slices=2, slope=2.0, intercept=-20))
        philipsify(paths, ss=0.5, si=3.25, syntax=syntax)
        for path in paths:
            fast = fast_slice_ref(path)
            assert fast is not None, "a classic Philips file keeps the fast path"
            ds, info = read_header(path)
            (slow,) = slice_refs(path, ds, info)
            fields = [f.name for f in dataclasses.fields(fast) if f.name != "header_ds"]
            assert {f: getattr(fast, f) for f in fields} == {f: getattr(slow, f) for f in fields}
            assert (fast.philips, fast.scale_slope, fast.scale_intercept) == (True, 0.5, 3.25)


def test_other_manufacturer_with_the_same_private_tag_is_not_rescaled(tmp_path):
    spec = syn.SeriesSpec(slices=3, rows=8, cols=8, slope=2.0, intercept=-20)
    paths = syn.write_series(tmp_path / "in", spec)
    philipsify(paths, ss=0.5, manufacturer="SIEMENS")
    assert fast_slice_ref(paths[0]).scale_slope is None
    summary = convert_dicom_dir(tmp_path / "in", tmp_path / "out")
    key = summary["series"][0]["key"]
    data = vol(tmp_path / "out" / f"{key}.nii.gz")
    np.testing.assert_allclose(data, syn.expected_volume(spec) * 2.0 - 20)
    side = json.loads((tmp_path / "out" / f"{key}.json").read_text())
    assert "philips_scaling" not in side and side["rescale_slope"] == 2.0


def test_philips_without_private_slope_keeps_the_display_scaling(tmp_path):
    spec = syn.SeriesSpec(slices=3, rows=8, cols=8)
    philipsify(syn.write_series(tmp_path / "in", spec), ss=None)
    summary = convert_dicom_dir(tmp_path / "in", tmp_path / "out", compress=False)
    key = summary["series"][0]["key"]
    data = vol(tmp_path / "out" / f"{key}.nii")
    assert data.dtype == np.int16  # stored values copied as they are
    np.testing.assert_array_equal(data, syn.expected_volume(spec))
    assert json.loads((tmp_path / "out" / f"{key}.json").read_text())["philips_scaling"] == "display"


@pytest.mark.parametrize("compress", [False, True])
def test_unit_float_scaling_never_takes_the_integer_passthrough(tmp_path, compress):
    # RS = 1, RI = 0, SS = 1: the values are the stored ones, yet the volume is the floating-point one
    spec = syn.SeriesSpec(slices=3, rows=8, cols=8)
    philipsify(syn.write_series(tmp_path / "in", spec), ss=1.0)
    (stack,) = build_stacks(scan(tmp_path / "in", Quarantine("fail")).slices, Quarantine("fail"))
    plan = native_plan(stack)
    assert plan is not None and plan.scale and not plan.passthrough and plan.out_dtype == np.float32
    expected, info = read_stack(stack)
    assert expected.dtype == np.float32 and plan.info == info and info["philips_scaling"] == "floating-point"
    out = tmp_path / ("v.nii.gz" if compress else "v.nii")
    _, info2 = write_stack(out, stack)
    got = vol(out)
    assert info2 == info and got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(got, syn.expected_volume(spec).astype(np.float32))


def test_enhanced_frames_with_their_own_private_slope(tmp_path):
    spec = syn.SeriesSpec(slices=3, rows=8, cols=8, slope=1.5, intercept=-7)
    slopes = [0.5, 0.25, 2.0]
    philips_enhanced(tmp_path / "in" / "MF.dcm", spec, slopes, si=1.0)
    summary = convert_dicom_dir(tmp_path / "in", tmp_path / "out")
    key = summary["series"][0]["key"]
    data = vol(tmp_path / "out" / f"{key}.nii.gz")
    pv = syn.expected_volume(spec)
    for k, ss in enumerate(slopes):
        np.testing.assert_allclose(data[:, :, k], fp(pv[:, :, k], 1.5, -7, ss), rtol=1e-6, atol=1e-4)
    side = json.loads((tmp_path / "out" / f"{key}.json").read_text())
    assert side["philips_scaling"] == "floating-point" and side["philips_scale_slope"] == slopes
    assert side["multiframe"] is True


def test_dce_refuses_phases_mixing_floating_point_and_display(tmp_path):
    write_dce(tmp_path / "pat", "explicit", post_ss=None)  # post-contrast phase without (2005,100E)
    with pytest.raises(InputError) as exc:
        convert_dce_patient(tmp_path / "pat", tmp_path / "out", patient_id="P1")
    err = exc.value
    assert "\n" not in str(err) and "2005,100E" in err.reason and "1 of 2 DCE phases" in err.reason
    assert Path(err.path) == tmp_path / "pat" / "s6"
    assert not (tmp_path / "out").exists()


def test_series_with_private_slope_on_some_frames_only_is_refused(tmp_path):
    paths = sorted(syn.write_series(tmp_path / "in", syn.SeriesSpec(slices=3)))
    philipsify(paths[:2], ss=0.5)
    philipsify(paths[2:], ss=None)
    with pytest.raises(InputError, match=r"2005,100E\) present on 2 of 3 frames"):
        convert_dicom_dir(tmp_path / "in", tmp_path / "out")


def test_precise_lut_is_the_formula_with_dcm2niix_float32_factors():
    # dcm2niix stores FP(0) and FP(1) - FP(0) as float32 (scl_inter, scl_slope): the intercept is the formula's
    # to float32 rounding, the slope to the cancellation of two float32 values near FP(0)
    for rs, ri, ss in ((2.0, -20.0, 0.5), (4.0, 0.0, 0.125), (1.37, -1024.0, 0.0123)):
        slope, inter = precise_lut(rs, ri, ss)
        np.testing.assert_allclose(inter, ri / (rs * ss), rtol=1e-6)
        assert abs(slope - 1 / ss) <= 2 * np.spacing(np.float32(abs(inter) + abs(1 / ss)))
