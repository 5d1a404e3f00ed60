import numpy as np
import pytest
import torch

from breastseg.config import experiment
from breastseg.evaluation.metrics import dice_per_class
from breastseg.models.factory import build_model
from breastseg.training.loss import MaskedDiceCELoss


@pytest.mark.parametrize("name", ["bpe_mri", "mass_us_entropy"])
def test_model_shapes_and_gradients(params, name):
    exp = experiment(params, name)
    net = build_model(exp)
    x = torch.randn(2, len(exp.channels), exp.image_size, exp.image_size, requires_grad=True)
    y = net(x)
    assert y.shape == (2, exp.classes, exp.image_size, exp.image_size)
    y.sum().backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_attention_unet_has_attention_gates(params):
    net = build_model(experiment(params, "mass_us_entropy"))
    assert any("AttentionBlock" in type(m).__name__ for m in net.modules())


def test_loss_ignores_unannotated_pixels():
    torch.manual_seed(0)
    loss = MaskedDiceCELoss(3)
    logits = torch.randn(2, 3, 8, 8)
    target = torch.randint(0, 3, (2, 8, 8))
    ignored = target.clone()
    ignored[:, :4] = 255
    changed = ignored.clone()
    logits2 = logits.clone()
    logits2[:, :, :4] = torch.randn(2, 3, 4, 8) * 10  # whatever happens in ignored pixels must not matter
    assert torch.isclose(loss(logits, ignored), loss(logits2, changed))
    assert not torch.isclose(loss(logits, target), loss(logits2, target))
    all_ignored = torch.full((2, 8, 8), 255)
    assert loss(logits, all_ignored).item() == 0.0


def test_loss_low_for_perfect_prediction():
    target = torch.randint(0, 3, (2, 8, 8))
    perfect = torch.nn.functional.one_hot(target, 3).permute(0, 3, 1, 2).float() * 50
    assert MaskedDiceCELoss(3)(perfect, target).item() < 0.01
    assert MaskedDiceCELoss(3)(-perfect, target).item() > 1.0


def test_dice_per_class_by_hand():
    label = np.array([[1, 1, 0, 255], [2, 2, 0, 255]])
    pred = np.array([[1, 0, 0, 1], [2, 2, 2, 2]])
    d = dice_per_class(pred, label, 3)
    assert d[0] == pytest.approx(2 * 1 / (1 + 2))          # class 1: |P∩T|=1, |P|=1 (ignored px dropped), |T|=2
    assert d[1] == pytest.approx(2 * 2 / (3 + 2))          # class 2
    assert np.isnan(dice_per_class(np.zeros((2, 2)), np.zeros((2, 2)), 2)[0])  # both empty: undefined
    assert dice_per_class(np.ones((2, 2)), np.zeros((2, 2)), 2)[0] == 0.0      # empty truth, false positives


def test_samples_per_epoch_draws_whole_reshuffled_passes():
    import numpy as np

    from breastseg.data.datamodule import SliceDataModule

    dm = SliceDataModule("unused", "unused", batch_size=4, seed=3, samples_per_epoch=22)
    image = np.arange(5, dtype=np.float32)[:, None, None, None] * np.ones((5, 1, 4, 4), np.float32)
    dm.data = {"train": {"image": image, "label": np.zeros((5, 4, 4), np.uint8)}}
    seen = [int(x[0, 0, 0]) for xb, _ in dm._loader("train", True, None, dm.samples_per_epoch) for x in xb]
    assert len(seen) == 22
    for start in range(0, 20, 5):  # four complete passes, each a permutation, then two more samples
        assert sorted(seen[start:start + 5]) == [0, 1, 2, 3, 4]
    # without it (or with fewer samples than slices), an epoch is one pass
    assert sum(len(xb) for xb, _ in dm._loader("train", True, None, 0)) == 5
    assert sum(len(xb) for xb, _ in dm._loader("train", True, None, 3)) == 5


def test_augmentation_mirrors_left_right_and_up_down_only_when_asked():
    from breastseg.data.augment import mirroring_only
    from breastseg.data.datamodule import SliceDataset

    rows, cols = np.mgrid[0:8, 0:8]
    image = (10 * rows + cols).astype(np.float32)[None, None]  # depth grows downwards, lateral to the right
    label = np.zeros((1, 8, 8), np.int64)
    seen = {"lr": 0, "ud": 0}
    for seed in range(40):
        x, _ = SliceDataset(image, label, mirroring_only("lr"))[(0, seed)]
        x = x[0].numpy()
        assert x[0, 0] < x[-1, 0]  # never upside down by default
        seen["lr"] += int(x[0, 0] > x[0, -1])
        x, _ = SliceDataset(image, label, mirroring_only("lr", "ud"))[(0, seed)]
        seen["ud"] += int(x[0].numpy()[0, 0] > x[0].numpy()[-1, 0])
    assert 5 < seen["lr"] < 35 and 5 < seen["ud"] < 35, seen
