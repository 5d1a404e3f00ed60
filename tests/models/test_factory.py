"""The networks are MONAI's own classes; bundles saved before (when breastseg carried a copy of MONAI's U-Net and
attention U-Net) load into them and give the same outputs; MLflow's logged model loads where breastseg is not
installed (with MONAI, which it lists among its requirements)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from breastseg.config import Experiment
from breastseg.models.factory import build_model

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "networks-before-monai.pt"


def _exp(name: str, features=(4, 8, 16), channels=("bmode", "entropy"), classes=3) -> Experiment:
    return Experiment.from_dict({"name": "x", "dataset": "us", "channels": list(channels), "classes": classes,
                                 "image_size": 16, "model": {"name": name, "features": list(features)}})


@pytest.mark.parametrize("name,cls", [("unet", "UNet"), ("attention_unet", "AttentionUnet"), ("dynunet", "DynUNet")])
def test_factory_builds_monais_own_classes(name, cls):
    from monai.networks import nets

    net = build_model(_exp(name))
    assert type(net) is getattr(nets, cls)


@pytest.mark.parametrize("name", ["unet", "attention_unet"])
def test_bundles_saved_before_load_into_monais_classes(name):
    """tests/fixtures/networks-before-monai.pt: the state dict, an input and the output of each network as
    breastseg's former copy built it (seed 0; 2 channels in, 3 classes, widths 4, 8, 16)."""
    saved = torch.load(FIXTURE, weights_only=True)[name]
    net = build_model(_exp(name)).eval()
    assert list(net.state_dict()) == list(saved["state_dict"])
    net.load_state_dict(saved["state_dict"])
    torch.manual_seed(0)
    fresh = build_model(_exp(name)).state_dict()   # and the same initial weights from the same seed
    assert all(torch.equal(fresh[k], saved["state_dict"][k]) for k in fresh)
    with torch.no_grad():
        assert torch.allclose(net(saved["x"]), saved["y"], rtol=1e-3, atol=1e-4)  # CPU instruction sets round apart


def test_logged_model_loads_where_breastseg_is_not_installed(tmp_path):
    """A logged fold ensemble of MONAI networks: the ensemble pickles by value, the networks by reference."""
    import mlflow.pytorch

    from breastseg.models.ensemble import FoldEnsemble
    from breastseg.training.train import ensemble_by_value

    torch.manual_seed(1)
    net = FoldEnsemble([build_model(_exp("attention_unet")) for _ in range(2)]).eval()
    x = torch.randn(2, 2, 16, 16, generator=torch.Generator().manual_seed(2))
    torch.save(x, tmp_path / "x.pt")
    with torch.no_grad():
        torch.save(net(x), tmp_path / "y.pt")
    with ensemble_by_value():
        mlflow.pytorch.save_model(net, str(tmp_path / "model"), serialization_format="pickle")
    code = ("import sys, torch\n"
            f"torch.set_num_threads({torch.get_num_threads()})  # as here: other thread counts round differently\n"
            "sys.modules['breastseg'] = None  # not installed\n"
            "import mlflow.pytorch\n"
            f"net = mlflow.pytorch.load_model({str(tmp_path / 'model')!r}).eval()\n"
            f"x, y = torch.load({str(tmp_path / 'x.pt')!r}), torch.load({str(tmp_path / 'y.pt')!r})\n"
            "with torch.no_grad():\n"
            "    assert torch.equal(net(x), y)\n"
            "assert not any(m.startswith('breastseg') for m in sys.modules if sys.modules[m])\n")
    subprocess.run([sys.executable, "-c", code], check=True)
    import cloudpickle

    from breastseg.models import ensemble

    assert ensemble.__name__ not in cloudpickle.cloudpickle._PICKLE_BY_VALUE_MODULES  # only inside the block
