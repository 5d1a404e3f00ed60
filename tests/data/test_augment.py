"""Training augmentation (breastseg.data.augment): MONAI's dictionary transforms with the label in tow."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from breastseg.config import AUGMENTATIONS, AugRange, Augment
from breastseg.data.augment import augment_sample, build_transforms, mirroring_only
from breastseg.labels import NOT_ANNOTATED

SIZE = 48
#: p = 1 and a range that moves (or changes) every sample visibly.
STRONG = {"rotate": AugRange(1.0, 0.0, 40.0), "scale": AugRange(1.0, 0.6, 1.5), "elastic": AugRange(1.0, 2.0, 4.0),
          "gamma": AugRange(1.0, 0.5, 2.0), "contrast": AugRange(1.0, 0.5, 1.5),
          "brightness": AugRange(1.0, 0.5, 1.5), "noise": AugRange(1.0, 0.0, 0.2), "blur": AugRange(1.0, 0.8, 1.5),
          "low_res": AugRange(1.0, 0.4, 0.6)}
GEOMETRIC = ("rotate", "scale", "elastic")
INTENSITY = tuple(k for k in AUGMENTATIONS if k not in GEOMETRIC)


def only(name: str, r: AugRange) -> Augment:
    return replace(mirroring_only(), **{name: r})


def pattern(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """An asymmetric 0/1 block pattern with a not-annotated patch (label), and the image: its float copy (the
    patch 3), twice (two channels). Neighbouring values differ by 1, so bilinear rounded is nearest almost
    everywhere."""
    blocks = (np.random.default_rng(seed).random((SIZE // 8, SIZE // 8)) > 0.5).astype(np.int64)
    y = torch.from_numpy(np.kron(blocks, np.ones((8, 8), np.int64)))
    y[20:28, 4:12] = NOT_ANNOTATED
    x = torch.where(y == NOT_ANNOTATED, 3, y).float()
    return torch.stack([x, x]), y


def run(augment: Augment, x: torch.Tensor, y: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    return augment_sample(build_transforms(augment, tuple(x.shape[-2:])), x, y, seed)


@pytest.mark.parametrize("name", GEOMETRIC)
def test_the_label_moves_with_the_image(name):
    """Where the label is annotated, the transformed image (a float copy of the label) rounds to the label: they
    moved together. The transform did move them (against the label as it was, the image agrees far less)."""
    torch.set_num_threads(1)
    x, y = pattern()
    moved = []
    for seed in range(6):
        xo, yo = run(only(name, STRONG[name]), x, y, seed)
        seen = yo != NOT_ANNOTATED
        assert seen.float().mean() > 0.25
        agree = (xo[0].round().long()[seen] == yo[seen]).float().mean().item()
        assert agree > 0.98, (seed, agree)
        both = seen & (y != NOT_ANNOTATED)
        moved.append((xo[0].round().long()[both] == y[both]).float().mean().item())
        assert torch.equal(xo[0], xo[1])  # channels moved alike
    assert min(moved) < 0.85, moved


@pytest.mark.parametrize("axes", [("lr",), ("ud",), ("lr", "ud")])
def test_mirroring_moves_the_label_along_the_allowed_axes_only(axes):
    x, y = pattern()
    flips = {(): (x, y), ("lr",): (x.flip(-1), y.flip(-1)), ("ud",): (x.flip(-2), y.flip(-2)),
             ("lr", "ud"): (x.flip(-1, -2), y.flip(-1, -2))}
    allowed = [k for k in flips if set(k) <= set(axes)]
    seen = set()
    for seed in range(40):
        xo, yo = run(mirroring_only(*axes), x, y, seed)
        hit = [k for k in allowed if torch.equal(xo, flips[k][0]) and torch.equal(yo, flips[k][1])]
        assert len(hit) == 1, (seed, axes)
        seen.add(hit[0])
    assert seen == set(allowed)  # each allowed outcome occurs (probability 0.5 per axis), no other


@pytest.mark.parametrize("name", AUGMENTATIONS)
def test_a_transform_with_p_0_is_the_identity(name):
    x, y = pattern()
    x = x + torch.rand(x.shape, generator=torch.Generator().manual_seed(1))
    for seed in range(3):
        xo, yo = run(only(name, replace(STRONG[name], p=0.0)), x, y, seed)
        assert torch.equal(xo, x) and torch.equal(yo, y)
        assert xo.dtype == torch.float32 and yo.dtype == torch.int64


def test_no_augmentation_returns_the_sample_bit_for_bit():
    from breastseg.data.datamodule import SliceDataset

    x, y = pattern()
    x = x + torch.rand(x.shape, generator=torch.Generator().manual_seed(1))
    off = Augment(mirror=(), **{k: replace(STRONG[k], p=0.0) for k in AUGMENTATIONS})
    ds = SliceDataset(x[None].numpy(), y[None].numpy(), off)
    assert ds.transforms is None
    xo, yo = ds[(0, 123)]
    assert torch.equal(xo, x) and torch.equal(yo, y)


@pytest.mark.parametrize("name", AUGMENTATIONS)
def test_each_transform_changes_its_part_only(name):
    """With p = 1 every transform changes the image; the intensity ones leave the label alone. Shapes and dtypes
    are kept."""
    x, y = pattern()
    x = x * 0.3 + 0.05 * torch.rand(x.shape, generator=torch.Generator().manual_seed(1))
    xo, yo = run(only(name, STRONG[name]), x, y, 4)
    assert xo.shape == x.shape and yo.shape == y.shape
    assert xo.dtype == torch.float32 and yo.dtype == torch.int64
    assert not torch.equal(xo, x)
    if name in INTENSITY:
        assert torch.equal(yo, y)
    else:
        assert not torch.equal(yo, y)
        assert set(yo.unique().tolist()) <= {0, 1, NOT_ANNOTATED}  # nearest: no new label values


def test_pixels_from_outside_the_image_are_not_annotated_and_255_stays():
    """Zoomed out by 2: a border ring comes from outside the image (255, though the label had no 255 there); the
    not-annotated patch shrinks with the image and stays 255; nothing else becomes 255."""
    x, y = pattern()
    xo, yo = run(only("scale", AugRange(1.0, 0.5, 0.5)), x, y, 0)
    ring = torch.ones(SIZE, SIZE, dtype=torch.bool)
    ring[12:36, 12:36] = False
    assert (yo[ring] == NOT_ANNOTATED).all() and (xo[:, ring] == 0).all()
    inner = yo[12:36, 12:36]
    assert torch.equal(inner, y[::2, ::2]) or (inner == y[1::2, 1::2]).float().mean() > 0.95
    assert (yo == NOT_ANNOTATED).sum() == ring.sum() + (y[::2, ::2] == NOT_ANNOTATED).sum()
    # rotated: the corners come from outside
    _, yr = run(only("rotate", AugRange(1.0, 0.0, 45.0)), x, torch.zeros_like(y), 0)
    assert yr[0, 0] == NOT_ANNOTATED and yr[SIZE // 2, SIZE // 2] == 0
    assert set(yr.unique().tolist()) == {0, NOT_ANNOTATED}


def _everything() -> Augment:
    return Augment(mirror=("lr", "ud"), **{k: replace(STRONG[k], p=0.5) for k in AUGMENTATIONS})


def test_same_seed_same_output_whatever_came_before():
    x, y = pattern()
    transforms = build_transforms(_everything(), SIZE)
    forward = {s: augment_sample(transforms, x, y, s) for s in range(8)}
    backward = {s: augment_sample(transforms, x, y, s) for s in reversed(range(8))}
    fresh = {s: augment_sample(build_transforms(_everything(), SIZE), x, y, s) for s in (5, 2)}
    for s in range(8):
        assert torch.equal(forward[s][0], backward[s][0]) and torch.equal(forward[s][1], backward[s][1])
    for s in fresh:
        assert torch.equal(forward[s][0], fresh[s][0]) and torch.equal(forward[s][1], fresh[s][1])
    images = [forward[s][0] for s in range(8)]
    assert all(not torch.equal(images[i], images[j]) for i in range(8) for j in range(i))
    # the global RNGs neither steer nor feel it; MONAI's metadata switch is left as it was
    from monai.data import get_track_meta

    assert get_track_meta()
    torch.manual_seed(0)
    np.random.seed(0)
    state = (torch.get_rng_state(), np.random.get_state()[1].copy())
    again = augment_sample(transforms, x, y, 3)
    assert torch.equal(again[0], forward[3][0])
    assert torch.equal(torch.get_rng_state(), state[0]) and np.array_equal(np.random.get_state()[1], state[1])
    assert get_track_meta()


def test_a_data_loader_gives_the_same_batches_with_any_number_of_workers():
    from torch.utils.data import DataLoader

    from breastseg.data.datamodule import EpochSampler, SliceDataset

    x, y = pattern()
    images = torch.stack([x + i for i in range(6)]).numpy()
    labels = torch.stack([y] * 6).numpy()
    ds = SliceDataset(images, labels, _everything())
    stored = ds.image.clone()

    def batches(workers):
        sampler = EpochSampler(len(ds), 12, seed=7)
        sampler.set_epoch(2)
        return list(DataLoader(ds, batch_size=4, sampler=sampler, num_workers=workers))

    one, two = batches(0), batches(2)
    assert len(one) == 3
    for (xa, ya), (xb, yb) in zip(one, two):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert torch.equal(ds.image, stored)  # the stored slices are never changed in place


def test_unknown_mirror_axis_and_a_noise_range_monai_cannot_draw_are_refused():
    from breastseg.errors import InputError

    with pytest.raises(InputError, match="mirror"):
        build_transforms(mirroring_only("fb"), SIZE)
    with pytest.raises(InputError, match="noise"):
        build_transforms(only("noise", AugRange(0.5, 0.05, 0.1)), SIZE)
    build_transforms(only("noise", AugRange(0.5, 0.1, 0.1)), SIZE)  # a fixed std is fine
