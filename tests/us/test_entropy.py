"""Local entropy maps: equivalence with skimage, closed-form values, binning rules."""
import numpy as np
import pytest
from skimage.filters.rank import entropy as sk_entropy

from breastseg.us.entropy import bin_indices, entropy_map


def _brute_force(image, window, bins, value_range):
    rows, cols = image.shape
    hr, hc = window[0] // 2, window[1] // 2
    out = np.zeros(image.shape)
    for i in range(rows):
        for j in range(cols):
            patch = image[max(i - hr, 0):i + hr + 1, max(j - hc, 0):j + hc + 1]
            counts, _ = np.histogram(patch, bins=bins, range=value_range)
            p = counts[counts > 0] / patch.size
            out[i, j] = -(p * np.log2(p)).sum()
    return out


@pytest.mark.parametrize("window", [(1, 1), (3, 1), (1, 3), (5, 3), (3, 7), (9, 5), (31, 9), (41, 29)])
@pytest.mark.parametrize("levels", [4, 256])
def test_matches_skimage_rank_entropy_including_borders(window, levels):
    rng = np.random.default_rng(levels + window[0] * 100 + window[1])
    img = rng.integers(0, levels, size=(37, 23)).astype(np.uint8)
    ours = entropy_map(img, window, bins=256, value_range=(0, 256))
    ref = sk_entropy(img, np.ones(window))
    assert ours.dtype == np.float64 and ours.shape == img.shape
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-9)
    # the border really is clipped: the corner counts only the in-image quarter of the window
    hr, hc = window[0] // 2, window[1] // 2
    corner = img[: hr + 1, : hc + 1]
    _, counts = np.unique(corner, return_counts=True)
    p = counts / corner.size
    assert ours[0, 0] == pytest.approx(-(p * np.log2(p)).sum(), abs=1e-9)


def test_matches_brute_force_on_float_image():
    rng = np.random.default_rng(3)
    img = rng.gamma(2.0, 1.0, size=(29, 17))
    ours = entropy_map(img, (7, 5), bins=8)
    ref = _brute_force(img, (7, 5), 8, (img.min(), img.max()))
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-9)


def test_constant_image_has_zero_entropy():
    img = np.full((20, 11), 3.7)
    out = entropy_map(img, (5, 3), bins=16)
    assert np.all(out == 0.0)


@pytest.mark.parametrize("k", [1, 3, 5, 7])
def test_k_equally_frequent_values_give_log2_k(k):
    # a k x k window over an image whose k rows hold k different values: each value k times
    img = np.repeat(np.arange(k, dtype=np.float64)[:, None], k, axis=1)
    out = entropy_map(img, (k, k), bins=k)
    assert out[k // 2, k // 2] == pytest.approx(np.log2(k), abs=1e-12)


def test_k_equally_frequent_values_spread_over_many_bins():
    # 8 distinct values, each twice, in a 4 x 4 image seen whole by a 7 x 7 window from its centre
    img = np.repeat(np.arange(0, 80, 10, dtype=np.uint8), 2).reshape(4, 4)
    out = entropy_map(img, (7, 7), bins=256, value_range=(0, 256))
    assert out[2, 2] == pytest.approx(3.0, abs=1e-12)


def test_binning_top_edge_and_out_of_range():
    img = np.array([[0.0, 0.5, 1.0, 0.99, -5.0, 7.0]])
    idx = bin_indices(img, 2, (0.0, 1.0))
    assert idx.tolist() == [[0, 1, 1, 1, 0, 1]]
    assert bin_indices(np.array([[2, 2]]), 4).tolist() == [[0, 0]]  # constant image: one bin
    # integer images with one value per bin take the exact fast path
    u8 = np.arange(256, dtype=np.uint8).reshape(16, 16)
    assert np.array_equal(bin_indices(u8, 256, (0, 256)), u8.astype(np.int32))


def test_bad_arguments():
    img = np.zeros((5, 5))
    with pytest.raises(ValueError, match="odd"):
        entropy_map(img, (4, 3), bins=8)
    with pytest.raises(ValueError, match="odd"):
        entropy_map(img, (3, 0), bins=8)
    with pytest.raises(ValueError, match="NaN"):
        entropy_map(np.array([[np.nan, 1.0]]), (1, 1), bins=8)
    with pytest.raises(ValueError, match="2-D"):
        entropy_map(np.zeros(5), (1, 1), bins=8)
    with pytest.raises(ValueError, match="value_range"):
        entropy_map(img, (3, 3), bins=8, value_range=(1, 1))
    with pytest.raises(ValueError, match="bins"):
        entropy_map(img, (3, 3), bins=0)
