"""Subtraction, relative enhancement and resampling onto the pre-contrast grid."""
from __future__ import annotations

import numpy as np
import pytest

from breastseg.dicom.resample import resample_to_grid
from breastseg.dicom.subtraction import relative_enhancement, subtraction


def test_subtraction_float32_no_wraparound():
    pre = np.array([[[30000]], [[10]]], dtype=np.int16)
    post = np.array([[[-30000]], [[20]]], dtype=np.int16)
    out = subtraction(post, pre)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[:, 0, 0], [-60000.0, 10.0])
    with pytest.raises(ValueError):
        subtraction(post[:1], pre)


def test_relative_enhancement_masks_dark_pre():
    pre = np.array([100.0, 200.0, 0.5, 0.0]).reshape(4, 1, 1)
    post = np.array([150.0, 100.0, 50.0, 10.0]).reshape(4, 1, 1)
    out = relative_enhancement(post, pre)
    np.testing.assert_allclose(out.ravel(), [0.5, -0.5, 0.0, 0.0])


def test_resample_identity_and_shift():
    data = np.broadcast_to(np.arange(6, dtype=np.float32) * 10, (4, 3, 6)).copy()
    aff = np.diag([0.7, 0.8, 2.0, 1.0])
    np.testing.assert_allclose(resample_to_grid(data, aff, data.shape, aff), data)
    dst = aff.copy()
    dst[2, 3] = 1.0  # half a slice further along z
    out = resample_to_grid(data, aff, data.shape, dst)
    np.testing.assert_allclose(out[:, :, :5], data[:, :, :5] + 5.0, atol=1e-4)
    assert np.all(out[:, :, 5] == 0)  # outside the source
    labels = np.zeros((4, 3, 6), np.uint8)
    labels[1, 1, 2] = 2
    near = resample_to_grid(labels, aff, labels.shape, aff, order=0)
    assert near.dtype == np.uint8 and near[1, 1, 2] == 2
