"""Ultrasound readers: round trips of every input layout and one clear error per bad input."""
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from breastseg.errors import InputError
from breastseg.us.readers import OASBUD_DEFAULTS, read_busi, read_dicom_us, read_npz, read_oasbud_mat, read_scans
from us_cohorts import write_us_dicom

FIELDS = ("id", "rf1", "rf2", "roi1", "roi2", "birads", "class")


def _rf(rng, shape=(64, 12)):
    return (rng.normal(size=shape) * 800).astype(np.int16)


def _roi(shape=(64, 12)):
    m = np.zeros(shape, np.uint8)
    m[20:40, 3:8] = 1
    return m


def write_oasbud(path, records, fields=FIELDS):
    data = np.zeros((1, len(records)), dtype=[(f, object) for f in fields])
    for i, rec in enumerate(records):
        for f in fields:
            data[f][0, i] = rec[f]
    scipy.io.savemat(str(path), {"data": data})
    return path


def oasbud_record(rng, pid, cls, shape=(64, 12)):
    return {"id": pid, "rf1": _rf(rng, shape), "rf2": _rf(rng, shape), "roi1": _roi(shape),
            "roi2": _roi(shape).astype(bool), "birads": "4a", "class": np.array([[cls]], dtype=np.float64)}


def write_npz(path, rng, **overrides):
    content = {"rf": _rf(rng).astype(np.float32), "roi": _roi(), "fs": 40e6, "f0": 7e6, "pitch": 0.2e-3}
    content.update(overrides)
    np.savez(path, **{k: v for k, v in content.items() if v is not None})
    return path


def write_png(path, arr):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def write_busi(root):
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    write_png(root / "benign" / "benign (12).png", rgb)
    m0 = np.zeros((20, 30), np.uint8)
    m0[2:6, 2:6] = 255
    m1 = np.zeros((20, 30), np.uint8)
    m1[10:15, 20:25] = 255
    write_png(root / "benign" / "benign (12)_mask.png", m0)
    write_png(root / "benign" / "benign (12)_mask_1.png", m1)
    write_png(root / "normal" / "normal (1).png", np.full((16, 16), 77, np.uint8))
    write_png(root / "normal" / "normal (1)_mask.png", np.zeros((16, 16), np.uint8))
    return root


def test_oasbud_mat_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    recs = [oasbud_record(rng, "P01", 0), oasbud_record(rng, "P02", 1)]
    path = write_oasbud(tmp_path / "oasbud.mat", recs)
    scans = read_oasbud_mat(path)
    assert [(s.patient, s.scan) for s in scans] == [("P01", "scan-1"), ("P01", "scan-2"),
                                                    ("P02", "scan-1"), ("P02", "scan-2")]
    assert [s.label_class for s in scans] == ["benign", "benign", "malignant", "malignant"]
    s = scans[1]
    np.testing.assert_array_equal(s.rf, recs[0]["rf2"].astype(np.float64))
    assert s.mask.dtype == np.uint8 and s.mask.shape == s.rf.shape
    np.testing.assert_array_equal(s.mask, _roi())
    assert s.fs == OASBUD_DEFAULTS["fs"] and s.pitch == OASBUD_DEFAULTS["pitch"]
    assert s.spacing_mm == pytest.approx((1540 / (2 * 40e6) * 1e3, OASBUD_DEFAULTS["pitch"] * 1e3))
    assert s.extra["birads"] == "4a" and s.source == "oasbud-mat" and s.bmode is None
    overridden = read_oasbud_mat(path, fs=20e6, pitch=0.3e-3, bandwidth=0.75)[0]
    assert (overridden.fs, overridden.pitch, overridden.bandwidth) == (20e6, 0.3e-3, 0.75)


def test_npz_round_trip_and_optional_keys(tmp_path):
    rng = np.random.default_rng(1)
    path = write_npz(tmp_path / "patient-3.npz", rng, c=1500.0, bandwidth=0.8)
    (s,) = read_npz(path)
    assert (s.patient, s.scan, s.fs, s.f0, s.pitch, s.c, s.bandwidth) == (
        "patient-3", "scan-1", 40e6, 7e6, 0.2e-3, 1500.0, 0.8)
    assert s.spacing_mm == pytest.approx((1500 / 80e6 * 1e3, 0.2))
    (d,) = read_npz(write_npz(tmp_path / "p4.npz", rng))
    assert d.c == 1540.0 and d.bandwidth == OASBUD_DEFAULTS["bandwidth"]
    assert read_scans(tmp_path / "p4.npz")[0].patient == "p4"


def test_busi_folder_rgb_and_extra_masks(tmp_path):
    root = write_busi(tmp_path / "busi")
    scans = {s.patient: s for s in read_busi(root)}
    assert set(scans) == {"benign-12", "normal-1"}
    b = scans["benign-12"]
    assert b.rf is None and b.bmode.shape == (20, 30) and b.label_class == "benign"
    assert b.bmode == pytest.approx(np.full((20, 30), (0.299 * 200 + 0.587 * 100 + 0.114 * 50) / 255))
    assert b.mask.sum() == 16 + 25 and b.mask[3, 3] == 1 and b.mask[12, 22] == 1
    n = scans["normal-1"]
    assert n.label_class == "normal" and n.mask.sum() == 0 and n.bmode.max() == pytest.approx(77 / 255)
    assert not b.spacing_known and b.spacing_mm == (1.0, 1.0)
    assert len(read_scans(root)) == 2
    assert read_scans(root / "benign" / "benign (12).png")[0].mask.sum() == 41


def test_dicom_round_trip_with_npy_and_png_masks(tmp_path):
    pixels = np.arange(12 * 10, dtype=np.uint8).reshape(12, 10)
    mask = np.zeros((12, 10), np.uint8)
    mask[4:8, 2:5] = 1
    path = write_us_dicom(tmp_path / "img01.dcm", pixels)
    np.save(tmp_path / "img01_mask.npy", mask)
    (s,) = read_dicom_us(path)
    assert s.patient == "PAT-7" and s.scan == "img01" and s.source == "dicom-us"
    np.testing.assert_allclose(s.bmode, pixels / 255.0)
    np.testing.assert_array_equal(s.mask, mask)
    assert s.spacing_mm == pytest.approx((0.1, 0.2)) and s.spacing_known
    path2 = write_us_dicom(tmp_path / "img02.dcm", pixels, regions=False)
    write_png(tmp_path / "img02_mask.png", mask * 255)
    (s2,) = read_scans(path2)
    np.testing.assert_array_equal(s2.mask, mask)
    assert not s2.spacing_known
    assert len(read_scans(tmp_path)) == 2  # a folder of DICOMs: masks are not taken for BUSI images


# ------------------------------------------------------------------------------------------ bad inputs


def _raises(path, match):
    return pytest.raises(InputError, match=match)


def test_empty_files(tmp_path):
    for name in ("a.mat", "b.npz", "c.dcm", "d.png"):
        (tmp_path / name).write_bytes(b"")
        with pytest.raises(InputError, match="empty file") as err:
            read_scans(tmp_path / name)
        assert err.value.path == str(tmp_path / name)


def test_corrupt_and_unsupported_files(tmp_path):
    (tmp_path / "x.mat").write_bytes(b"not a matlab file at all" * 10)
    with pytest.raises(InputError, match="cannot read as a MATLAB file"):
        read_scans(tmp_path / "x.mat")
    (tmp_path / "x.npz").write_bytes(b"garbage" * 10)
    with pytest.raises(InputError, match="cannot read as .npz"):
        read_scans(tmp_path / "x.npz")
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(InputError, match="unsupported input type"):
        read_scans(tmp_path / "x.txt")
    with pytest.raises(InputError, match="no such file"):
        read_scans(tmp_path / "missing.npz")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(InputError, match="no ultrasound inputs"):
        read_scans(tmp_path / "empty_dir")


def test_mat_layout_errors(tmp_path):
    rng = np.random.default_rng(2)
    scipy.io.savemat(str(tmp_path / "novar.mat"), {"other": np.zeros(3)})
    with pytest.raises(InputError, match="no 'data' variable"):
        read_oasbud_mat(tmp_path / "novar.mat")
    rec = oasbud_record(rng, "P1", 0)
    path = write_oasbud(tmp_path / "nofield.mat", [rec], fields=("id", "rf1", "rf2", "roi1", "birads", "class"))
    with pytest.raises(InputError, match="lacks field.*roi2"):
        read_oasbud_mat(path)
    bad = dict(rec, roi2=np.zeros((10, 12), np.uint8))
    with pytest.raises(InputError, match=r"roi2 \(id P1\).*shape \(10, 12\).*\(64, 12\)"):
        read_oasbud_mat(write_oasbud(tmp_path / "shape.mat", [bad]))
    rf = rec["rf1"].astype(np.float64)
    rf[3, 3] = np.inf
    with pytest.raises(InputError, match="NaN or infinite"):
        read_oasbud_mat(write_oasbud(tmp_path / "inf.mat", [dict(rec, rf1=rf)]))
    with pytest.raises(InputError, match="duplicate id"):
        read_oasbud_mat(write_oasbud(tmp_path / "dup.mat", [rec, rec]))


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"rf": None}, "missing key.*rf"),
        ({"fs": None, "pitch": None}, "missing key.*fs, pitch"),
        ({"rf": np.zeros((4, 5, 6))}, "2-D"),
        ({"rf": np.zeros((1, 5))}, "too small"),
        ({"rf": np.zeros((64, 12))}, "all zeros"),
        ({"rf": np.full((64, 12), np.nan)}, "NaN"),
        ({"roi": np.ones((64, 11), np.uint8)}, r"shape \(64, 11\).*\(64, 12\)"),
        ({"roi": np.full((64, 12), 3, np.uint8)}, "binary"),
        ({"fs": -1.0}, "'fs' must be one positive"),
        ({"pitch": np.array([1e-4, 2e-4])}, "'pitch' must be one positive"),
        ({"bandwidth": 75.0}, "fractional bandwidth"),
    ],
)
def test_npz_bad_content(tmp_path, overrides, match):
    path = write_npz(tmp_path / "bad.npz", np.random.default_rng(5), **overrides)
    with pytest.raises(InputError, match=match) as err:
        read_scans(path)
    assert err.value.path == str(path)


def test_busi_and_dicom_mask_errors(tmp_path):
    img = write_png(tmp_path / "b" / "benign" / "benign (1).png", np.zeros((8, 8), np.uint8))
    (unannotated,) = read_scans(img)  # no mask: nobody annotated it yet
    assert (unannotated.mask == 255).all() and unannotated.mask.shape == (8, 8)
    with pytest.raises(InputError, match="none of its 1 BUSI images has a mask") as err:
        read_busi(tmp_path / "b")  # a BUSI folder without a single mask: the masks are elsewhere
    assert err.value.path == str(tmp_path / "b")
    write_png(tmp_path / "b" / "benign" / "benign (1)_mask.png", np.zeros((8, 9), np.uint8))
    with pytest.raises(InputError, match=r"mask has shape \(8, 9\).*\(8, 8\)") as err:
        read_scans(img)
    assert err.value.path.endswith("benign (1)_mask.png")
    dcm = write_us_dicom(tmp_path / "d.dcm", np.zeros((6, 5), np.uint8))
    assert (read_dicom_us(dcm)[0].mask == 255).all()
    np.save(tmp_path / "d_mask.npy", np.zeros((5, 6), np.uint8))
    with pytest.raises(InputError, match="shape"):
        read_dicom_us(dcm)
    (tmp_path / "nopix.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 8)
    with pytest.raises(InputError, match="nopix.dcm"):
        read_scans(tmp_path / "nopix.dcm")
