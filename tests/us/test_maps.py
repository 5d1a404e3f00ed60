"""write_us_maps output layout, resample_to_square, and all-or-nothing writing."""
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from breastseg.errors import InputError
from breastseg.us.maps import resample_to_square, write_us_maps
from breastseg.us.rf import window_from_pulses
from breastseg.config import us_map_settings as with_maps


def _speckle_rf(rng, shape=(96, 16), fs=40e6, f0=7e6):
    t = np.arange(shape[0])[:, None] / fs
    return rng.normal(size=shape) * np.cos(2 * np.pi * f0 * t) * 1000


def _roi(shape=(96, 16)):
    m = np.zeros(shape, np.uint8)
    m[30:60, 4:11] = 1
    return m


def _npz(path, rng, **kw):
    content = dict(rf=_speckle_rf(rng), roi=_roi(), fs=40e6, f0=7e6, pitch=0.2e-3, bandwidth=0.75, c=1540.0)
    content.update(kw)
    np.savez(path, **content)
    return path


def _mat(path, rng, ids):
    fields = ("id", "rf1", "rf2", "roi1", "roi2", "birads", "class")
    data = np.zeros((1, len(ids)), dtype=[(f, object) for f in fields])
    for i, pid in enumerate(ids):
        vals = dict(id=pid, rf1=_speckle_rf(rng).astype(np.int16), rf2=_speckle_rf(rng).astype(np.int16),
                    roi1=_roi(), roi2=_roi(), birads="3", **{"class": np.array([[1.0]])})
        for f in fields:
            data[f][0, i] = vals[f]
    scipy.io.savemat(str(path), {"data": data})
    return path


def test_npz_writes_full_layout(tmp_path):
    rng = np.random.default_rng(0)
    src = _npz(tmp_path / "pat.npz", rng)
    out = tmp_path / "maps"
    result = write_us_maps(src, out, **with_maps(bins=32, window_pulses=1.0, entropy_on="envelope"))
    assert [s["key"] for s in result["scans"]] == ["scan-1"]
    d = out / "scan-1"
    assert sorted(p.name for p in d.iterdir()) == ["bmode.npy", "entropy.npy", "mask.npy", "meta.json", "preview.png"]
    bm, ent, mask = (np.load(d / f"{n}.npy") for n in ("bmode", "entropy", "mask"))
    assert bm.dtype == ent.dtype == np.float32 and mask.dtype == np.uint8
    assert bm.shape == ent.shape == mask.shape == (96, 16)
    assert 0.0 <= bm.min() and bm.max() == pytest.approx(1.0)
    assert 0.0 <= ent.min() and ent.max() <= np.log2(32) + 1e-6 and ent.std() > 0
    np.testing.assert_array_equal(mask, _roi())
    meta = json.loads((d / "meta.json").read_text())
    window = window_from_pulses(1.0, f0=7e6, bandwidth=0.75, fs=40e6, pitch=0.2e-3, c=1540.0)
    assert meta["window"] == list(window) == [15, 1]
    assert meta["patient"] == "pat" and meta["scan"] == "scan-1" and meta["bins"] == 32
    assert meta["spacing_mm"] == pytest.approx([1540 / 80e6 * 1e3, 0.2])
    assert meta["fs"] == 40e6 and meta["f0"] == 7e6 and meta["pitch"] == 0.2e-3 and meta["c"] == 1540.0
    assert meta["dynamic_range_db"] == 50.0 and meta["source_format"] == "npz" and meta["entropy_on"] == "envelope"
    assert meta["pulse_length_mm"] == pytest.approx(0.2933, abs=1e-4)
    with Image.open(d / "preview.png") as im:
        assert im.mode == "RGB" and im.height == 256 and im.width > 3 * 16


def test_dynamic_range_and_bmode_only_selection(tmp_path):
    rng = np.random.default_rng(1)
    src = _npz(tmp_path / "pat.npz", rng)
    write_us_maps(src, tmp_path / "a", maps=("bmode",), **with_maps(dynamic_range_db=20.0))
    write_us_maps(src, tmp_path / "b", maps=("bmode",), **with_maps(dynamic_range_db=60.0))
    assert not (tmp_path / "a" / "scan-1" / "entropy.npy").exists()
    a, b = (np.load(tmp_path / x / "scan-1" / "bmode.npy") for x in "ab")
    assert (a == 0).mean() > (b == 0).mean()  # a narrower range clips more of the image to black


def test_oasbud_keys_and_patient_selection(tmp_path):
    rng = np.random.default_rng(2)
    src = _mat(tmp_path / "oasbud.mat", rng, ["P1", "P2"])
    res = write_us_maps(src, tmp_path / "all", maps=("bmode",), **with_maps())
    assert [s["key"] for s in res["scans"]] == ["P1/scan-1", "P1/scan-2", "P2/scan-1", "P2/scan-2"]
    assert (tmp_path / "all" / "P2" / "scan-2" / "bmode.npy").exists()
    res = write_us_maps(src, tmp_path / "one", patients=["P2"], **with_maps(bins=16))
    assert [s["key"] for s in res["scans"]] == ["scan-1", "scan-2"]
    meta = json.loads((tmp_path / "one" / "scan-2" / "meta.json").read_text())
    assert meta["patient"] == "P2" and meta["class"] == "malignant" and meta["birads"] == "3"
    
    wp = with_maps()["window_pulses"]
    assert meta["window"] == list(window_from_pulses(wp, f0=10e6, bandwidth=0.6, fs=40e6, pitch=38e-3 / 510))
    with pytest.raises(InputError, match="no scans of patient"):
        write_us_maps(src, tmp_path / "none", patients=["P9"], **with_maps())


def test_bmode_only_inputs_refuse_entropy(tmp_path):
    root = tmp_path / "busi" / "malignant"
    root.mkdir(parents=True)
    Image.fromarray(np.full((10, 12, 3), 90, np.uint8)).save(root / "malignant (3).png")
    m = np.zeros((10, 12), np.uint8)
    m[2:5, 2:5] = 255
    Image.fromarray(m).save(root / "malignant (3)_mask.png")
    out = tmp_path / "out"
    with pytest.raises(InputError, match="entropy maps need raw RF") as err:
        write_us_maps(tmp_path / "busi", out, **with_maps())
    assert err.value.path.endswith("malignant (3).png")
    assert not out.exists()
    res = write_us_maps(tmp_path / "busi", out, maps=("bmode",), **with_maps())
    d = out / res["scans"][0]["key"]
    assert res["scans"][0]["key"] == "scan-1"
    assert np.load(d / "mask.npy").sum() == 9 and json.loads((d / "meta.json").read_text())["class"] == "malignant"
    assert (d / "preview.png").exists()


def test_bad_input_in_a_folder_writes_nothing(tmp_path):
    rng = np.random.default_rng(3)
    cohort = tmp_path / "us"
    cohort.mkdir()
    _npz(cohort / "a.npz", rng)
    _npz(cohort / "b.npz", rng, roi=np.ones((95, 16), np.uint8))
    out = tmp_path / "out"
    with pytest.raises(InputError, match=r"b\.npz: mask 'roi' has shape"):
        write_us_maps(cohort, out, **with_maps())
    assert not out.exists() or not any(out.rglob("*"))
    with pytest.raises(ValueError):
        write_us_maps(cohort / "a.npz", out, maps=("doppler",), **with_maps())


def test_resample_to_square_keeps_aspect_and_labels():
    img = np.linspace(0, 1, 80 * 10).reshape(80, 10) + 2.0
    mask = np.zeros((80, 10), np.uint8)
    mask[20:60, 2:8] = 1
    mask[30:40, 4:6] = 2
    # 80 x 0.1 mm by 10 x 0.2 mm = 8 mm x 2 mm -> 32 x 8 pixels of 0.25 mm, centred in 32 x 32
    out, out_mask, spacing = resample_to_square(img, mask, (0.1, 0.2), 32)
    assert out.shape == out_mask.shape == (32, 32) and out.dtype == np.float32 and out_mask.dtype == np.uint8
    assert spacing == pytest.approx((0.25, 0.25))
    cols = np.flatnonzero((out != img.min()).any(axis=0))
    assert (cols.min(), cols.max()) == (12, 19)  # 8 columns, left margin (32 - 8) // 2
    assert set(np.unique(out_mask)) == {0, 1, 2}
    assert np.all(out_mask[:, :12] == 0) and np.all(out_mask[:, 20:] == 0)
    assert np.all(out[:, :12] == np.float32(img.min()))
    # the physical extent of the mask is kept: 4 mm x 1.2 mm -> 16 x ~5 pixels
    rows_m, cols_m = np.nonzero(out_mask)
    assert rows_m.max() - rows_m.min() + 1 == 16 and cols_m.max() - cols_m.min() + 1 in (4, 5)
    # wide image: the rows get the margin
    wide, wmask, ws = resample_to_square(img.T, mask.T, (0.2, 0.1), 32)
    assert np.all(wmask[:12] == 0) and ws == pytest.approx((0.25, 0.25))
    # upsampling a tiny image still fills the long side and keeps values in range
    up, _, us = resample_to_square(np.array([[0.0, 1.0]]), None, (1.0, 1.0), 8)
    assert up.min() >= 0.0 and up.max() <= 1.0 and us == (0.25, 0.25)
    assert np.all(up[:2] == 0.0) and np.all(up[6:] == 0.0)


def test_patient_id_pseudonym_replaces_names(tmp_path):
    rng = np.random.default_rng(4)
    src = _npz(tmp_path / "Doe_Jane.npz", rng)
    res = write_us_maps(src, tmp_path / "out", maps=("bmode",), patient_id="P-0007", **with_maps())
    meta = json.loads((tmp_path / "out" / "scan-1" / "meta.json").read_text())
    assert res["scans"][0]["patient"] == meta["patient"] == "P-0007"
    assert "Doe_Jane" not in (tmp_path / "out" / "scan-1" / "meta.json").read_text()
    mat = _mat(tmp_path / "oasbud.mat", rng, ["P1", "P2"])
    with pytest.raises(InputError, match="several patients"):
        write_us_maps(mat, tmp_path / "x", patient_id="P-0008", **with_maps())
    res = write_us_maps(mat, tmp_path / "y", maps=("bmode",), patients=["P2"], patient_id="P-0008", **with_maps())
    assert [s["key"] for s in res["scans"]] == ["scan-1", "scan-2"]


def test_cli_and_library_defaults_are_the_params_defaults(params, tmp_path):
    from breastseg.cli import build_parser
    
    pipeline = params["us_maps"]
    assert with_maps() == pipeline
    args = build_parser().parse_args(["us-maps", "in.npz", "out"])
    assert {k: getattr(args, k) for k in pipeline} == pipeline
    rng = np.random.default_rng(5)
    res = write_us_maps(_npz(tmp_path / "p.npz", rng), tmp_path / "maps", **with_maps())
    meta = json.loads((Path(res["scans"][0]["dir"]) / "meta.json").read_text())
    assert {k: meta[k] for k in ("dynamic_range_db", "bins", "entropy_on", "window_pulses")} == pipeline


def test_pseudonymised_scans_of_several_inputs_are_numbered(tmp_path):
    rng = np.random.default_rng(6)
    src = _mat(tmp_path / "o.mat", rng, ["L1", "L2", "L3"])
    res = write_us_maps([src], tmp_path / "p", patients=["L1", "L3"], patient_id="Pabc", maps=("bmode",), **with_maps())
    assert [s["key"] for s in res["scans"]] == ["scan-1", "scan-2", "scan-3", "scan-4"]
    metas = [json.loads((tmp_path / "p" / f"scan-{i}" / "meta.json").read_text()) for i in range(1, 5)]
    assert {m["patient"] for m in metas} == {"Pabc"} and [m["scan"] for m in metas] == [s["key"] for s in res["scans"]]
    assert not any("L1" in json.dumps(m) or "o.mat" in json.dumps(m) for m in metas)
    with pytest.raises(InputError, match="holds several patients"):
        write_us_maps(src, tmp_path / "q", patient_id="Pabc", maps=("bmode",), **with_maps())


def _scan(rf, shape=(96, 16)):
    from breastseg.us.readers import Scan

    return Scan("p", "scan-1", rf, None, _roi(shape), 40e6, 7e6, 0.2e-3, 1540.0, 0.75, None,
                (1540 / 80e6 * 1e3, 0.2), "npz")


def test_envelope_entropy_is_the_default_binned_over_a_robust_scale():
    from breastseg.us.maps import compute_maps, envelope_range
    from breastseg.us.rf import envelope

    assert with_maps()["entropy_on"] == "envelope"
    rf = _speckle_rf(np.random.default_rng(7), (200, 16))
    maps, meta = compute_maps(_scan(rf, (200, 16)), **with_maps())
    env = envelope(rf)
    assert meta["entropy_on"] == "envelope"
    assert meta["entropy_value_range"] == pytest.approx([0.0, np.percentile(env, 99)])
    assert envelope_range(env) == (0.0, pytest.approx(np.percentile(env, 99)))
    # independent of the receiver gain (and of the display's dynamic range, which only the B-mode uses)
    louder, _ = compute_maps(_scan(rf * 4.0, (200, 16)), **with_maps(dynamic_range_db=30.0))
    np.testing.assert_array_equal(louder["entropy"], maps["entropy"])
    # one strong specular echo (a short pulse 40x the speckle) barely moves the scale: the map away from it
    # keeps its values, while bins over the scan's min..max squeeze the tissue into the lowest bins
    from breastseg.us.entropy import entropy_map

    t = np.arange(rf.shape[0])
    echo = rf.std() * 40 * np.exp(-(((t - 100) / 4.0) ** 2)) * np.cos(2 * np.pi * 7e6 * t / 40e6)
    spiked = rf.copy()
    spiked[:, 8] += echo
    far = np.ones(rf.shape, bool)
    far[60:140, 4:13] = False
    robust, _ = compute_maps(_scan(spiked, (200, 16)), **with_maps())
    assert np.abs(robust["entropy"][far] - maps["entropy"][far]).mean() < 0.05 * maps["entropy"][far].mean()
    fragile = entropy_map(envelope(spiked), tuple(meta["window"]), meta["bins"])
    assert fragile[far].mean() < 0.6 * robust["entropy"][far].mean()
    assert envelope_range(np.zeros((4, 4))) == (0.0, 0.0)


def test_bmode_entropy_stays_an_option():
    from breastseg.us.maps import compute_maps

    rf = _speckle_rf(np.random.default_rng(8))
    env_maps, _ = compute_maps(_scan(rf), **with_maps(window_pulses=1.0, bins=16))
    bm_maps, meta = compute_maps(_scan(rf), **with_maps(window_pulses=1.0, bins=16, entropy_on="bmode"))
    assert meta["entropy_on"] == "bmode" and meta["entropy_value_range"] == [0.0, 1.0]
    assert not np.array_equal(env_maps["entropy"], bm_maps["entropy"])


def test_the_entropy_binning_is_recorded_and_another_one_refused(tmp_path):
    """Maps record how the entropy histogram was binned; a model's maps of another binning cannot be remade."""
    rng = np.random.default_rng(4)
    src = _npz(tmp_path / "pat.npz", rng)
    write_us_maps(src, tmp_path / "maps", entropy_binning="envelope-p99", **with_maps(entropy_on="envelope"))
    assert json.loads((tmp_path / "maps" / "scan-1" / "meta.json").read_text())["entropy_binning"] == "envelope-p99"
    with pytest.raises(InputError, match="binned 'envelope-minmax'"):
        write_us_maps(src, tmp_path / "old", entropy_binning="envelope-minmax", **with_maps(entropy_on="envelope"))
    assert not (tmp_path / "old").exists()
