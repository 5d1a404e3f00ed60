"""nnU-Net's training recipe as settings: MONAI's DynUNet with deep supervision (every head in the loss, the
full-resolution output alone everywhere else), SGD with Nesterov momentum and the poly schedule."""
from __future__ import annotations

import copy
import subprocess
import sys

import numpy as np
import pytest
import torch

from breastseg.config import EvaluationSettings, Experiment, RegisterSettings, experiment
from breastseg.models.factory import build_model
from breastseg.training.loss import MaskedDiceCELoss, deep_supervision_loss, deep_supervision_weights

NAME = "mass_us_bmode"


def _exp(features=(4, 8, 16), deep_supervision=True, channels=("bmode", "entropy"), classes=3, dropout=None,
         maps=None):
    model = {"name": "dynunet", "features": list(features), "deep_supervision": deep_supervision}
    if dropout is not None:
        model["dropout"] = dropout
    return Experiment.from_dict({"name": "x", "dataset": "us", "channels": list(channels), "classes": classes,
                                 "image_size": 32, "model": model}, maps=maps)


@pytest.mark.parametrize("features,heads", [((4, 8, 16), 1), ((4, 8, 16, 32), 2)])
def test_dynunet_shapes_in_training_and_evaluation(features, heads):
    from monai.networks.nets import DynUNet

    net = build_model(_exp(features))
    assert isinstance(net, DynUNet) and net.deep_supervision and net.deep_supr_num == heads
    assert net.input_block.conv1.conv.in_channels == 2 and net.output_block.conv.conv.out_channels == 3
    convs = {m for m in net.modules() if type(m) is torch.nn.Conv2d}
    assert {m.kernel_size for m in convs} == {(3, 3), (1, 1)}
    assert sum(m.kernel_size == (1, 1) for m in convs) == 1 + heads  # the output and the supervision heads
    assert net.input_block.conv1.conv.stride == (1, 1) and net.bottleneck.conv1.conv.stride == (2, 2)
    assert any(isinstance(m, torch.nn.InstanceNorm2d) for m in net.modules())
    x = torch.randn(2, 2, 32, 32)
    net.train()
    assert net(x).shape == (2, 1 + heads, 3, 32, 32)
    net.eval()
    assert net(x).shape == (2, 3, 32, 32)
    plain = build_model(_exp(features, deep_supervision=None)).train()
    assert not plain.deep_supervision and plain(x).shape == (2, 3, 32, 32)


def test_dynunet_needs_three_levels():
    with pytest.raises(ValueError, match="at least 3 levels"):
        build_model(_exp((4, 8)))


def test_deep_supervision_loss_is_the_weighted_sum_of_the_heads_and_ignores_unannotated_pixels():
    torch.manual_seed(0)
    loss = MaskedDiceCELoss(3)
    heads = torch.randn(2, 3, 3, 16, 16)  # (B, 1 + k, C, H, W)
    target = torch.randint(0, 3, (2, 16, 16))
    target[:, :5] = 255
    assert deep_supervision_weights(3).tolist() == pytest.approx([4 / 7, 2 / 7, 1 / 7])
    by_hand = 4 / 7 * loss(heads[:, 0], target) + 2 / 7 * loss(heads[:, 1], target) + 1 / 7 * loss(heads[:, 2], target)
    assert torch.isclose(deep_supervision_loss(loss, heads, target), by_hand)
    changed = heads.clone()
    changed[..., :5, :] = torch.randn(2, 3, 3, 5, 16) * 10  # whatever the heads say where no label is
    assert torch.isclose(deep_supervision_loss(loss, changed, target), by_hand)
    assert deep_supervision_loss(loss, heads[:, 0], target) == loss(heads[:, 0], target)  # one output: as it is


def _module(params, **train):
    from breastseg.training.module import SegmentationModule
    from breastseg.training.train import module_kwargs, selection_metric

    p = copy.deepcopy(params)
    p["experiments"][NAME].update(image_size=32, model={"name": "dynunet", "features": [4, 8, 16],
                                                       "deep_supervision": True})
    p["experiments"][NAME].pop("train", None)
    p["train"].update(threads=1, batch_size=4, **train)
    exp = experiment(p, NAME)
    return SegmentationModule(exp, **module_kwargs(exp.train, int(exp.train.max_epochs), selection_metric(RegisterSettings.from_params(p), exp))), exp


def test_sgd_with_nesterov_momentum_and_poly_schedule(params):
    module, _ = _module(params, optimizer="sgd", schedule="poly", lr=0.01, weight_decay=3e-5, max_epochs=5)
    conf = module.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    assert isinstance(opt, torch.optim.SGD) and conf["lr_scheduler"]["interval"] == "epoch"
    group = opt.param_groups[0]
    assert group["nesterov"] and group["momentum"] == 0.99 and group["weight_decay"] == 3e-5
    lrs = [group["lr"]]
    for _ in range(5):
        opt.step()
        sched.step()
        lrs.append(group["lr"])
    assert lrs == pytest.approx([0.01 * (1 - e / 5) ** 0.9 for e in range(6)])
    # today's recipe stays the default: AdamW, cosine annealing
    module, _ = _module(params, lr=0.001, max_epochs=5)
    conf = module.configure_optimizers()
    assert isinstance(conf["optimizer"], torch.optim.AdamW)
    assert isinstance(conf["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.CosineAnnealingLR)
    with pytest.raises(ValueError, match="unknown optimizer"):
        type(module)(module.exp, lr=0.1, weight_decay=0.0, max_epochs=1, optimizer="adam")


def test_checkpoint_from_before_the_recipe_settings_loads_with_todays_recipe(tmp_path):
    """A checkpoint's hyperparameters without optimizer, schedule and momentum: AdamW and cosine, as it was trained."""
    import lightning

    from breastseg.training.module import SegmentationModule

    exp = Experiment.from_dict({"name": NAME, "dataset": "us", "channels": ["bmode"], "classes": 2, "image_size": 32,
                                "model": {"name": "attention_unet", "features": [4, 8]}})
    old = SegmentationModule(exp, lr=1e-3, weight_decay=0.0, max_epochs=3)
    hparams = {k: v for k, v in old.hparams.items() if k not in ("optimizer", "schedule", "momentum")}
    torch.save({"state_dict": old.state_dict(), "hyper_parameters": hparams,
                "pytorch-lightning_version": lightning.__version__}, tmp_path / "old.ckpt")
    loaded = SegmentationModule.load_from_checkpoint(tmp_path / "old.ckpt", map_location="cpu", weights_only=False)
    assert (loaded.hparams.optimizer, loaded.hparams.schedule) == ("adamw", "cosine")
    assert isinstance(loaded.configure_optimizers()["optimizer"], torch.optim.AdamW)


def test_module_gives_the_full_resolution_output_even_in_training_mode(params):
    module, exp = _module(params)
    x = torch.randn(3, 1, 32, 32)
    y = torch.randint(0, 2, (3, 32, 32))
    module.train()
    assert module.net(x).shape == (3, 2, 2, 32, 32) and module(x).shape == (3, 2, 32, 32)
    module.validation_step((x, y), 0)  # a module left in training mode validates on the full-resolution output
    assert module._unindexed[0].shape == (3, 1, 3)
    loss = module.training_step((x, y), 0)
    assert loss.ndim == 0 and torch.isfinite(loss)


def test_bundle_round_trip_of_a_dynunet(params, tmp_path):
    from breastseg.models.bundle import bundle_config, load_bundle, predict_slices, write_bundle

    exp = _exp((4, 8, 16), channels=("bmode",), classes=2, maps=params["us_maps"])
    torch.manual_seed(3)
    net = build_model(exp)
    net.train()
    net(torch.randn(2, 1, 32, 32)).sum().backward()  # a training pass first: what a trained network has been through
    net.eval()
    write_bundle(net, bundle_config(EvaluationSettings.from_params(params), exp, {}, "run"), tmp_path / "bundle")
    loaded = load_bundle(tmp_path / "bundle")
    assert loaded.experiment.model == exp.model and not loaded.net.training
    images = np.random.default_rng(1).normal(size=(5, 1, 32, 32)).astype(np.float32)
    with torch.no_grad():
        assert torch.equal(loaded.net(torch.from_numpy(images)), net(torch.from_numpy(images)))
    assert np.array_equal(predict_slices(loaded, images, batch_size=2), predict_slices(net, images, batch_size=2))


def test_logged_dynunet_loads_with_monai_where_breastseg_is_not_installed(tmp_path):
    """MONAI's network pickles by reference: MLflow's logged model then needs MONAI (train.py asks for it)."""
    import mlflow.pytorch

    net = build_model(_exp((4, 8, 16), channels=("bmode",), classes=2))
    net.train()
    net(torch.randn(2, 1, 32, 32)).sum().backward()
    net.eval()
    x = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    torch.save(x, tmp_path / "x.pt")
    with torch.no_grad():
        torch.save(net(x), tmp_path / "y.pt")
    mlflow.pytorch.save_model(net, str(tmp_path / "model"), serialization_format="pickle",
                              pip_requirements=["torch", "monai"])
    code = ("import sys, torch\n"
            f"torch.set_num_threads({torch.get_num_threads()})\n"
            "sys.modules['breastseg'] = None  # not installed\n"
            "import mlflow.pytorch\n"
            f"net = mlflow.pytorch.load_model({str(tmp_path / 'model')!r}).eval()\n"
            f"x, y = torch.load({str(tmp_path / 'x.pt')!r}), torch.load({str(tmp_path / 'y.pt')!r})\n"
            "with torch.no_grad():\n"
            "    assert torch.equal(net(x), y)\n"
            "assert type(net).__module__.startswith('monai.')\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def _blobs(n, size=32, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images, labels = [], []
    for _ in range(n):
        cy, cx, r = rng.uniform(10, 22, 2).tolist() + [rng.uniform(4, 8)]
        mask = ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r).astype(np.int64)
        images.append((rng.normal(0.3, 0.05, (size, size)) + 0.4 * mask)[None].astype(np.float32))
        mask[:2] = 255  # a few unannotated rows
        labels.append(mask)
    return torch.utils.data.TensorDataset(torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(labels)))


class _Watch:
    """Records the learning rate at each epoch's start and the network's mode in validation."""

    def __init__(self):
        import lightning.pytorch as pl

        class Callback(pl.Callback):
            def on_train_epoch_start(cb, trainer, pl_module):
                self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

            def on_validation_batch_start(cb, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
                self.validation_modes.append(pl_module.net.training)

        self.lrs: list[float] = []
        self.validation_modes: list[bool] = []
        self.callback = Callback()


def test_short_fit_with_dynunet_deep_supervision_sgd_and_poly(params, tmp_path):
    from breastseg.training.train import make_trainer

    module, exp = _module(params, optimizer="sgd", schedule="poly", lr=0.01, max_epochs=2, accelerator="cpu",
                          devices=1, strategy="auto", num_nodes=1)
    watch = _Watch()
    trainer = make_trainer(exp.train, 2, False, [watch.callback], limit_train_batches=2, limit_val_batches=2,
                           enable_checkpointing=False, enable_progress_bar=False, default_root_dir=str(tmp_path))
    loader = torch.utils.data.DataLoader
    trainer.fit(module, loader(_blobs(16), batch_size=4, shuffle=True), loader(_blobs(8, seed=1), batch_size=4))
    assert trainer.current_epoch == 2
    assert "val_dice" in trainer.logged_metrics and 0.0 <= float(trainer.logged_metrics["val_dice"]) <= 1.0
    assert torch.isfinite(trainer.logged_metrics["train_loss"])
    assert watch.validation_modes and not any(watch.validation_modes)  # Lightning validates in evaluation mode
    assert module.net.training  # and gives training mode back
    assert watch.lrs == pytest.approx([0.01, 0.01 * 0.5 ** 0.9])
