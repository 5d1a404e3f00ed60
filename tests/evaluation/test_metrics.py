"""Per-case metrics: overlaps, surface distances (MONAI) and every empty-mask convention, on tiny masks."""
import math
import subprocess
import sys

import numpy as np
import pytest

from breastseg.evaluation.metrics import CONVENTIONS, case_metrics, dice_per_class
from breastseg.labels import NOT_ANNOTATED

NAN_OK = {"nan_ok": True}


def blank(shape=(12, 12)):
    return np.zeros(shape, np.uint8)


def two_squares(offset: int, axis: int):
    """Truth: a 2x2 square at rows/cols 2..3; prediction: the same square moved ``offset`` pixels along ``axis``."""
    t, p = blank(), blank()
    t[2:4, 2:4] = 1
    sl = [slice(2, 4), slice(2, 4)]
    sl[axis] = slice(2 + offset, 4 + offset)
    p[tuple(sl)] = 1
    return p, t


def test_import_stays_light():
    code = ("import sys, breastseg.evaluation.metrics, breastseg.evaluation.statistics; "
            "print(sorted(m for m in ('torch', 'monai', 'scipy', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_overlaps_and_areas_by_hand():
    t, p = blank((4, 5)), blank((4, 5))
    t[0, :4] = 1          # 4 true pixels of class 1
    p[0, 2:] = 1          # 3 predicted: 2 hits (cols 2, 3), 1 false positive (col 4); 2 misses (cols 0, 1)
    t[2, :] = 2           # class 2: 5 true pixels
    p[2, :] = 2           # all hit
    p[3, 0] = 2           # plus one false positive
    m = case_metrics(p, t, 3, (0.5, 2.0))
    assert m["dice_1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 2))
    assert m["precision_1"] == pytest.approx(2 / 3)
    assert m["recall_1"] == pytest.approx(2 / 4)
    assert m["dice_2"] == pytest.approx(2 * 5 / (2 * 5 + 1))
    assert m["precision_2"] == pytest.approx(5 / 6)
    assert m["recall_2"] == 1.0
    assert m["area_true_1"] == 4 * 1.0 and m["area_pred_1"] == 3 * 1.0   # pixel area 0.5 mm x 2 mm
    assert m["area_true_2"] == 5.0 and m["area_pred_2"] == 6.0
    assert set(m) == {f"{k}_{c}" for c in (1, 2) for k in
                      ("dice", "precision", "recall", "hd95", "asd", "area_pred", "area_true")}
    assert all(type(v) is float for v in m.values())
    # the same Dice as the function the training loop uses
    np.testing.assert_allclose([m["dice_1"], m["dice_2"]], dice_per_class(p, t, 3))


def test_ignored_pixels_change_nothing():
    t, p = blank(), blank()
    t[2:6, 2:6] = 1
    p[3:7, 3:7] = 1
    t[:, 8:] = NOT_ANNOTATED
    base = case_metrics(p, t, 2, (1.0, 1.0))
    p2 = p.copy()
    p2[:, 8:] = 1         # predictions inside the unannotated region: no FP, no area, no surface
    p2[0, 10] = 0
    assert case_metrics(p2, t, 2, (1.0, 1.0)) == base
    assert base["area_pred_1"] == 16.0 and base["area_true_1"] == 16.0
    # a class that exists only under 255 is empty, not a miss
    t3 = blank()
    t3[:, 6:] = NOT_ANNOTATED
    p3 = blank()
    p3[:, 6:] = 1
    m = case_metrics(p3, t3, 2, (1.0, 1.0))
    assert all(math.isnan(m[f"{k}_1"]) for k in ("dice", "precision", "recall", "hd95", "asd"))
    assert m["area_pred_1"] == 0.0


@pytest.mark.parametrize("k", [2, 3, 5])
def test_offset_squares_known_distance(k):
    # 2x2 squares: every pixel is an edge pixel; distances from one square to the other along the offset
    # are k-1, k-1, k, k in each direction -> HD95 (0.95 quantile, max of both directions) = k, ASD = k - 0.5
    p, t = two_squares(k, axis=0)
    m = case_metrics(p, t, 2, (1.0, 1.0))
    assert m["hd95_1"] == pytest.approx(k, rel=1e-6)
    assert m["asd_1"] == pytest.approx(k - 0.5, rel=1e-6)


def test_anisotropic_spacing_scales_each_axis():
    spacing = (2.0, 0.5)
    p, t = two_squares(3, axis=0)
    m = case_metrics(p, t, 2, spacing)
    assert m["hd95_1"] == pytest.approx(3 * 2.0, rel=1e-6)
    assert m["asd_1"] == pytest.approx(2.5 * 2.0, rel=1e-6)
    p, t = two_squares(3, axis=1)
    m = case_metrics(p, t, 2, spacing)
    assert m["hd95_1"] == pytest.approx(3 * 0.5, rel=1e-6)
    assert m["asd_1"] == pytest.approx(2.5 * 0.5, rel=1e-6)
    assert m["area_true_1"] == pytest.approx(4 * 2.0 * 0.5)


def test_surface_is_the_edge_pixels():
    # truth: 3x3 square, its surface is the 8-pixel ring (the centre survives erosion); prediction: the centre.
    # pred->truth: [1]; truth->pred: 4 x 1 and 4 x sqrt(2). HD95 = max(1, quantile_0.95) = sqrt(2).
    t, p = blank((7, 7)), blank((7, 7))
    t[2:5, 2:5] = 1
    p[3, 3] = 1
    m = case_metrics(p, t, 2, (1.0, 1.0))
    assert m["hd95_1"] == pytest.approx(math.sqrt(2), rel=1e-6)
    assert m["asd_1"] == pytest.approx((1 + 4 * 1 + 4 * math.sqrt(2)) / 9, rel=1e-6)


def test_identical_masks_zero_distance():
    t = blank()
    t[2:8, 3:9] = 1
    m = case_metrics(t, t, 2, (0.7, 1.3))
    assert m["hd95_1"] == 0.0 and m["asd_1"] == 0.0
    assert m["dice_1"] == m["precision_1"] == m["recall_1"] == 1.0


def test_volume_with_three_spacings():
    t, p = np.zeros((6, 6, 6), np.uint8), np.zeros((6, 6, 6), np.uint8)
    t[1, 2, 2] = 1
    p[4, 2, 2] = 1        # 3 voxels apart along axis 0
    m = case_metrics(p, t, 2, (2.0, 1.0, 0.5))
    assert m["hd95_1"] == pytest.approx(6.0, rel=1e-6) and m["asd_1"] == pytest.approx(6.0, rel=1e-6)
    assert m["area_pred_1"] == m["area_true_1"] == 1.0       # one voxel of 2 x 1 x 0.5 mm^3
    t2, p2 = np.zeros((6, 6, 6), np.uint8), np.zeros((6, 6, 6), np.uint8)
    t2[1:3, 1:3, 1:3] = 1  # 2x2x2 cube, moved 2 voxels along axis 2 (0.5 mm): distances 1 and 2 voxels
    p2[1:3, 1:3, 3:5] = 1
    m = case_metrics(p2, t2, 2, (2.0, 1.0, 0.5))
    assert m["hd95_1"] == pytest.approx(1.0, rel=1e-6) and m["asd_1"] == pytest.approx(0.75, rel=1e-6)


@pytest.mark.parametrize("spacing", [(1.0,), (1.0, 1.0, 1.0), (0.0, 1.0)])
def test_bad_spacing_refused(spacing):
    with pytest.raises(ValueError):
        case_metrics(blank(), blank(), 2, spacing)


def test_shape_mismatch_refused():
    with pytest.raises(ValueError):
        case_metrics(blank((4, 4)), blank((4, 5)), 2, (1.0, 1.0))


def test_empty_prediction():
    t = blank()
    t[2:5, 2:5] = 1
    m = case_metrics(blank(), t, 2, (1.0, 1.0))
    assert m["dice_1"] == 0.0
    assert math.isnan(m["precision_1"])
    assert m["recall_1"] == 0.0
    assert math.isnan(m["hd95_1"]) and math.isnan(m["asd_1"])
    assert m["area_pred_1"] == 0.0 and m["area_true_1"] == 9.0


def test_empty_truth():
    p = blank()
    p[2:5, 2:5] = 1
    m = case_metrics(p, blank(), 2, (1.0, 1.0))
    assert m["dice_1"] == 0.0
    assert m["precision_1"] == 0.0
    assert math.isnan(m["recall_1"])
    assert math.isnan(m["hd95_1"]) and math.isnan(m["asd_1"])
    assert m["area_pred_1"] == 9.0 and m["area_true_1"] == 0.0


def test_both_empty():
    m = case_metrics(blank(), blank(), 3, (1.0, 1.0))
    for c in (1, 2):
        for k in ("dice", "precision", "recall", "hd95", "asd"):
            assert math.isnan(m[f"{k}_{c}"]), (k, c)
        assert m[f"area_pred_{c}"] == m[f"area_true_{c}"] == 0.0


def test_conventions_describe_every_metric():
    assert {"dice", "precision", "recall", "hd95", "asd", "ignore"} <= set(CONVENTIONS)
    assert all(isinstance(v, str) and v for v in CONVENTIONS.values())
