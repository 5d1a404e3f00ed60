"""breastseg's U-Net and attention U-Net are MONAI's, bit for bit: printed model, initial weights drawn from the same
seed, outputs and gradients in training (dropout drawn from the same generator) and in evaluation; bundles saved
with MONAI's classes load into them; building one does not import MONAI."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from breastseg.models import networks

CASES = [
    ("unet", 2, dict(in_channels=2, out_channels=3, channels=[8, 16, 32], num_res_units=1, dropout=0.0), (3, 2, 32, 32)),
    ("unet", 2, dict(in_channels=1, out_channels=2, channels=[4, 8, 16, 32], num_res_units=1, dropout=0.2),
     (2, 1, 32, 48)),
    ("unet", 2, dict(in_channels=2, out_channels=3, channels=[4, 8], num_res_units=0, dropout=0.1), (2, 2, 16, 16)),
    ("unet", 3, dict(in_channels=1, out_channels=2, channels=[4, 8, 16], num_res_units=2, dropout=0.0),
     (1, 1, 8, 16, 16)),
    ("attention_unet", 2, dict(in_channels=2, out_channels=2, channels=[8, 16, 32, 64], dropout=0.0), (3, 2, 32, 32)),
    ("attention_unet", 2, dict(in_channels=1, out_channels=3, channels=[4, 8, 16], dropout=0.3), (2, 1, 16, 24)),
]


def _pair(kind: str, dims: int, kw: dict, seed: int = 7):
    from monai.networks import nets

    ours_cls, theirs_cls = ((networks.UNet, nets.UNet) if kind == "unet" else (networks.AttentionUnet, nets.AttentionUnet))
    kw = {**kw, "spatial_dims": dims, "strides": [2] * (len(kw["channels"]) - 1)}
    torch.manual_seed(seed)
    theirs = theirs_cls(**kw)
    torch.manual_seed(seed)
    ours = ours_cls(**kw)
    return ours, theirs


@pytest.mark.parametrize("kind,dims,kw,shape", CASES)
def test_network_is_monais_bit_for_bit(kind, dims, kw, shape):
    ours, theirs = _pair(kind, dims, kw)
    assert str(ours) == str(theirs)
    a, b = ours.state_dict(), theirs.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    for train in (True, False):
        ours.train(train)
        theirs.train(train)
        torch.manual_seed(3)
        ya = ours(x)
        torch.manual_seed(3)
        yb = theirs(x)
        assert torch.equal(ya, yb), (kind, train)
        if train:
            ya.square().mean().backward()
            yb.square().mean().backward()
            ga = {n: p.grad for n, p in ours.named_parameters()}
            gb = {n: p.grad for n, p in theirs.named_parameters()}
            assert list(ga) == list(gb) and all(torch.equal(ga[n], gb[n]) for n in ga)
    b2 = theirs.state_dict()  # batch-norm running statistics after the training step, loaded across
    ours.load_state_dict(b2)
    assert all(torch.equal(ours.state_dict()[k], b2[k]) for k in b2)


def test_factory_builds_these_networks_without_importing_monai():
    code = ("import sys\n"
            "from breastseg.config import Experiment\n"
            "from breastseg.models.factory import build_model\n"
            "for name in ('unet', 'attention_unet'):\n"
            "    exp = Experiment.from_dict({'name': 'x', 'dataset': 'us', 'channels': ['bmode'], 'classes': 2,\n"
            "                                'image_size': 32, 'model': {'name': name, 'features': [4, 8, 16]}})\n"
            "    build_model(exp)\n"
            "assert 'monai' not in sys.modules, 'monai imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_logged_model_loads_where_breastseg_is_not_installed(tmp_path):
    """MLflow's logged model carries the network classes by value: it loads with torch and MLflow alone."""
    import mlflow.pytorch

    from breastseg.training.train import networks_by_value

    ours, _ = _pair("attention_unet", 2, CASES[4][2])
    ours.eval()
    x = torch.randn(CASES[4][3], generator=torch.Generator().manual_seed(2))
    torch.save(x, tmp_path / "x.pt")
    torch.save(ours(x).detach(), tmp_path / "y.pt")
    with networks_by_value():
        mlflow.pytorch.save_model(ours, str(tmp_path / "model"), serialization_format="pickle")
    code = ("import sys, torch\n"
            f"torch.set_num_threads({torch.get_num_threads()})  # as here: other thread counts round differently\n"
            "sys.modules['breastseg'] = None  # not installed\n"
            "import mlflow.pytorch\n"
            f"net = mlflow.pytorch.load_model({str(tmp_path / 'model')!r}).eval()\n"
            f"x, y = torch.load({str(tmp_path / 'x.pt')!r}), torch.load({str(tmp_path / 'y.pt')!r})\n"
            "assert torch.equal(net(x), y)\n"
            "assert not any(m.startswith(('breastseg', 'monai')) for m in sys.modules if sys.modules[m])\n")
    subprocess.run([sys.executable, "-c", code], check=True)
    import cloudpickle

    from breastseg.models import networks as mod

    assert mod.__name__ not in cloudpickle.cloudpickle._PICKLE_BY_VALUE_MODULES  # registered only inside the block
