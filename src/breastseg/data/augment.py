"""Training-time augmentation (``train.augment``) as a MONAI ``Compose`` of dictionary transforms.

:func:`build_transforms` makes the ``Compose`` once (per dataset); :func:`augment_sample` applies it to one
sample with the sample's own seed. The transforms, in the order they run (each with its probability ``p``;
a transform with ``p`` 0 is left out, so it costs nothing and draws nothing):

========== ================================== =====================================================
setting    MONAI transform                    parameter
========== ================================== =====================================================
rotate     ``RandRotated``                    angle uniform in [-high, high] degrees (low unused)
scale      ``RandZoomd``                      zoom uniform in [low, high] (> 1 magnifies), size kept
elastic    ``Rand2DElasticd``                 magnitude in [low, high] pixels, control points
                                              image size / 4 apart
gamma      ``RandAdjustContrastd``            gamma in [low, high] on the image's intensity range
contrast   ``RandScaleIntensityFixedMeand``   (x - mean) x f + mean, f in [low, high], range kept
brightness ``RandScaleIntensityd``            x x f, f in [low, high]
noise      ``RandGaussianNoised``             std uniform in [0, high] (low must be 0, or equal
                                              high for a fixed std), in units of the normalised
                                              intensity
blur       ``RandGaussianSmoothd``            sigma in [low, high] pixels, drawn per axis
low_res    ``RandSimulateLowResolutiond``     downsampled (nearest) by a zoom in [low, high],
                                              back up (bicubic)
mirror     ``RandFlipd`` per allowed axis     probability 0.5 each: lr = columns, ud = rows
========== ================================== =====================================================

Intensity transforms touch the image only, with one draw for all channels (the channels' ratios, e.g. the
MRI enhancement ratio, survive a brightness change). Geometric ones (rotate, scale, elastic, mirror) move the
label with the image, nearest-neighbour. Pixels that come from outside the image become 255 (not annotated,
ignored by the loss): inside the ``Compose`` the label is shifted by +1 and padded with 0, so after the shift
back -1 (from outside) becomes 255; 255 itself (256 shifted) survives nearest-neighbour interpolation unchanged.

Reproducibility: every transform of the ``Compose`` draws from one ``RandomState`` (the Compose's own, given to
each with ``set_random_state(state=...)``), which :func:`augment_sample` reseeds with the sample's seed, so a
(sample, seed) pair gives the same output bit for bit whatever was drawn before, in whichever data-loader worker;
nothing reads numpy's or torch's global RNG. Cost, one 64 px channel on one core: ~0.6 ms per sample with the
defaults of params.yaml (``benchmarks/bench_dataloading.py``).
"""
from __future__ import annotations

import math
from typing import Any

import torch

from ..config import AUGMENTATIONS, AugRange, Augment
from ..errors import InputError
from ..labels import NOT_ANNOTATED

#: ``train.augment.mirror`` axes -> MONAI's spatial axis of a (C, H, W) image.
MIRROR_AXES = {"lr": 1, "ud": 0}


def mirroring_only(*axes: str) -> Augment:
    """An :class:`~breastseg.config.Augment` that mirrors along ``axes`` (none: no augmentation at all)."""
    off = AugRange(p=0.0, low=0.0, high=0.0)
    return Augment(mirror=tuple(axes), rotate=off, scale=off, elastic=off, gamma=off, contrast=off,
                   brightness=off, noise=off, blur=off, low_res=off)


def is_identity(augment: Augment | None) -> bool:
    """Whether ``augment`` leaves every sample as it is (no mirroring axis, every ``p`` 0)."""
    return augment is None or (not augment.mirror and all(getattr(augment, k).p == 0 for k in AUGMENTATIONS))


def build_transforms(augment: Augment, image_size: int | tuple[int, int]) -> Any:
    """The ``monai.transforms.Compose`` of ``augment`` for samples ``{"image": (C, H, W) float32, "label": (1, H, W)}``
    of ``image_size`` (H, W; an int for a square), its label values as stored (255: not annotated).

    The label comes out float32 with the same values (255 also where pixels came from outside the image).
    Build it once per dataset and apply it with :func:`augment_sample`.
    """
    import monai.transforms as mt

    unknown = sorted(set(augment.mirror) - set(MIRROR_AXES))
    if unknown:
        raise InputError(None, f"train.augment.mirror: unknown axis {unknown[0]!r} (lr or ud)")
    a = augment
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(int(s) for s in image_size)
    both, img, lab = ("image", "label"), ("image",), ("label",)
    # geometric: bilinear image, nearest label, zeros outside (the shifted label's 0: not annotated); the zoom's
    # label "nearest-exact", as torch's bilinear, samples at pixel centres ("nearest" is off by up to half a pixel)
    geometric: list[Any] = []
    if a.rotate.p > 0:
        geometric.append(mt.RandRotated(both, range_x=math.radians(a.rotate.high), prob=a.rotate.p, keep_size=True,
                                        mode=("bilinear", "nearest"), padding_mode="zeros"))
    if a.scale.p > 0:
        geometric.append(mt.RandZoomd(both, prob=a.scale.p, min_zoom=a.scale.low, max_zoom=a.scale.high,
                                      mode=("bilinear", "nearest-exact"), padding_mode="constant", keep_size=True))
    if a.elastic.p > 0:
        geometric.append(mt.Rand2DElasticd(both, spacing=tuple(max(1, round(s / 4)) for s in size),
                                           magnitude_range=(a.elastic.low, a.elastic.high), prob=a.elastic.p,
                                           mode=("bilinear", "nearest"), padding_mode="zeros"))
    intensity: list[Any] = []
    if a.gamma.p > 0:
        intensity.append(mt.RandAdjustContrastd(img, prob=a.gamma.p, gamma=(a.gamma.low, a.gamma.high)))
    if a.contrast.p > 0:
        intensity.append(mt.RandScaleIntensityFixedMeand(img, factors=(a.contrast.low - 1, a.contrast.high - 1),
                                                         fixed_mean=True, preserve_range=True, prob=a.contrast.p))
    if a.brightness.p > 0:
        intensity.append(mt.RandScaleIntensityd(img, factors=(a.brightness.low - 1, a.brightness.high - 1),
                                                prob=a.brightness.p))
    if a.noise.p > 0:
        if a.noise.low not in (0, a.noise.high):
            raise InputError(None, f"train.augment.noise: low {a.noise.low} must be 0 (std uniform in [0, high]) or "
                                   f"equal high (a fixed std): MONAI's RandGaussianNoise draws no other range")
        intensity.append(mt.RandGaussianNoised(img, prob=a.noise.p, mean=0.0, std=a.noise.high,
                                               sample_std=a.noise.low != a.noise.high))
    if a.blur.p > 0:
        sigma = (a.blur.low, a.blur.high)
        intensity.append(mt.RandGaussianSmoothd(img, sigma_x=sigma, sigma_y=sigma, prob=a.blur.p))
    if a.low_res.p > 0:
        intensity.append(mt.RandSimulateLowResolutiond(img, prob=a.low_res.p, downsample_mode="nearest",
                                                       upsample_mode="bicubic",
                                                       zoom_range=(a.low_res.low, a.low_res.high)))
    mirror = [mt.RandFlipd(both, prob=0.5, spatial_axis=axis) for name, axis in MIRROR_AXES.items()
              if name in a.mirror]
    if geometric:  # label + 1, so that the zeros padded in mean "from outside"; back after
        geometric = [mt.ShiftIntensityd(lab, offset=1.0), *geometric, mt.ShiftIntensityd(lab, offset=-1.0),
                     mt.ThresholdIntensityd(lab, threshold=-0.5, above=True, cval=float(NOT_ANNOTATED))]
    compose = mt.Compose([*geometric, *intensity, *mirror])
    # One random stream for the whole Compose (its own), reseeded per sample by augment_sample: each transform
    # draws from it in turn. (Compose.set_random_state(seed) would give every transform a fresh RandomState,
    # 0.15 ms each: 12 per sample.)
    for t in compose.transforms:
        if isinstance(t, mt.Randomizable):
            t.set_random_state(state=compose.R)
    return compose


def augment_sample(transforms: Any, x: torch.Tensor, y: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``transforms`` (:func:`build_transforms`) applied to image ``x`` (C, H, W) float32 and label ``y`` (H, W)
    int64 with the draws of ``seed`` alone: the same shapes and dtypes back, as plain tensors. An empty
    ``Compose`` returns ``x`` and ``y`` themselves."""
    from monai.data import get_track_meta, set_track_meta

    if not transforms.transforms:
        return x, y
    transforms.R.seed(int(seed) % 2**32)
    # MONAI's metadata (affines, the inverse's record) is not needed here and costs more than the transforms
    # themselves on images this small: off for the call, as it was after.
    tracking = get_track_meta()
    set_track_meta(False)
    try:
        out = transforms({"image": x, "label": y[None].to(torch.float32)})
    finally:
        set_track_meta(tracking)
    xo, yo = torch.as_tensor(out["image"]), torch.as_tensor(out["label"])
    return xo.to(torch.float32).contiguous(), yo[0].round().to(torch.int64).contiguous()
