"""The papers' conventions beside ours, the no-mass images apart, and validation scoring what evaluation scores."""
import numpy as np
import pytest
import torch

from breastseg.config import experiment
from breastseg.evaluation.evaluate import figures_of, headline, score
from breastseg.evaluation.metrics import dice_figures, overlap_counts


def _data(classes, patients, size=16, seed=0, empty=()):
    """Random labels with ignored rows; ``empty``: images whose truth holds no foreground (no mass)."""
    rng = np.random.default_rng(seed)
    n = len(patients)
    label = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        if i in empty:
            continue
        r0, c0 = rng.integers(2, size // 2, 2)
        label[i, r0:r0 + size // 3, c0:c0 + size // 3] = rng.integers(1, classes, (size // 3, size // 3))
    label[:, :2] = 255
    pred = np.where(rng.random(label.shape) < 0.85, label, rng.integers(0, classes, label.shape)).astype(np.uint8)
    pred[label == 255] = rng.integers(0, classes, int((label == 255).sum()))
    data = {"image": np.zeros((n, 1, size, size), np.float32), "label": label, "case": np.array(["c"] * n),
            "index": np.arange(n, dtype=np.int32), "spacing_mm": np.full((n, 2), 0.5, np.float32),
            "spacing_known": np.ones(n, bool), "patient": np.asarray(patients)}
    return data, pred


def test_per_mass_figures_leave_no_mass_images_apart(params):
    exp = experiment(params, "mass_us_bmode")
    patients = ["Pa", "Pa", "Pb", "Pc", "Pd", "Pd"]
    data, pred = _data(2, patients, empty=(1, 3, 4))
    pred[1] = 0                      # Pa's no-mass image: nothing predicted
    pred[3, 5, 5] = 1                # Pc (no mass at all): one false-positive pixel
    pred[4, 6:9, 6:9] = 1            # Pd's no-mass image: false positives
    rows, prow, summary = score(exp, data, pred)
    mass = [i for i in range(len(patients)) if i not in (1, 3, 4)]
    per_image = [r["dice_mass"] for i, r in enumerate(rows) if i in mass]
    assert [r["mass"] for r in rows] == [int(i in mass) for i in range(len(patients))]
    assert summary["dice_per_mass"]["mean"] == pytest.approx(np.mean(per_image))
    assert summary["dice_per_mass"]["median"] == pytest.approx(np.median(per_image))
    assert summary["no_mass_images"]["n"] == 3 and summary["no_mass_images"]["with_predicted_mass"] == 2
    assert summary["no_mass_images"]["fp_rate"] == pytest.approx(2 / 3)
    lo, hi = summary["no_mass_images"]["fp_rate_ci95"]   # bootstrap over the three images: 0, 1/3, 2/3 or 1
    assert 0 <= lo < 2 / 3 < hi <= 1 and {lo, hi} <= {0, 1 / 3, 2 / 3, 1}
    by_patient = {r["patient"]: r for r in prow}
    assert np.isnan(by_patient["Pc"]["dice_mass"])     # no mass: no Dice (not 0), counted in the FP rate
    assert by_patient["Pd"]["dice_mass"] == pytest.approx(rows[5]["dice_mass"])  # its no-mass image left out
    assert summary["dice_mean"] == pytest.approx(np.mean([by_patient[p]["dice_mass"] for p in ("Pa", "Pb", "Pd")]))
    side = summary["conventions_side_by_side"]
    assert side["per_mass"]["n"] == 3 and side["per_patient"]["mean"] == summary["dice_mean"]
    flat = figures_of(summary)
    assert flat["dice_per_mass_mean"] == round(summary["dice_per_mass"]["mean"], 4)
    assert flat["no_mass_fp_rate"] == round(2 / 3, 4) and flat["split_by_image"] == 0
    assert headline(summary)["no_mass_fp_rate"] == flat["no_mass_fp_rate"]  # in the DVC metrics when it exists


def test_per_slice_figures_for_mri(params):
    exp = experiment(params, "bpe_mri")
    data, pred = _data(3, ["Pa"] * 3 + ["Pb"] * 2, seed=1)
    rows, _, summary = score(exp, data, pred)
    by_class = [np.nanmean([r[f"dice_{c}"] for r in rows]) for c in ("fgt", "bpe")]
    assert summary["dice_per_slice"]["mean"] == pytest.approx(np.mean(by_class))
    per_slice = [np.nanmean([r["dice_fgt"], r["dice_bpe"]]) for r in rows]
    assert summary["dice_per_slice"]["median"] == pytest.approx(np.median(per_slice))
    assert "no_mass_images" not in summary and "dice_per_slice_mean" in figures_of(summary)


class _Echo(torch.nn.Module):
    """A 'network' whose logits are its input: the test feeds one-hot predictions as images."""

    def forward(self, x):
        return x


def _validate(exp, data, pred, batch_size):
    import lightning.pytorch as pl

    from breastseg.data.datamodule import SliceDataModule
    from breastseg.training.module import SegmentationModule

    onehot = np.eye(exp.classes, dtype=np.float32)[pred].transpose(0, 3, 1, 2) * 10
    subset = {**data, "image": onehot}
    dm = SliceDataModule("unused", "unused", batch_size=batch_size)
    dm.data = {"train": subset, "val": subset, "test": subset}
    module = SegmentationModule(exp, lr=1e-3, weight_decay=0.0, max_epochs=1)
    module.net = _Echo()
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False)
    trainer.validate(module, datamodule=dm, verbose=False)
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


@pytest.mark.parametrize("name", ["bpe_mri", "mass_us_bmode"])
def test_validation_dice_is_what_evaluation_scores(params, name):
    """val_dice (checkpoints, early stopping, pruning) equals evaluation's dice_mean on the same predictions:
    per patient, batches cutting through patients, no-mass images apart."""
    exp = experiment(params, name)
    patients = ["Pa", "Pa", "Pa", "Pb", "Pb", "Pc", "Pd", "Pd"]
    data, pred = _data(exp.classes, patients, seed=2, empty=(2, 5) if name != "bpe_mri" else ())
    pred[5, 4:6, 4:6] = 1  # a false positive on Pc's no-mass image (ultrasound)
    _, _, summary = score(exp, data, pred)
    logged = _validate(exp, data, pred, batch_size=3)
    assert logged["val_dice"] == pytest.approx(summary["dice_mean"], abs=1e-6)
    assert logged["val_dice_median"] == pytest.approx(summary["dice_patient_mean"]["median"], abs=1e-6)
    for cls, value in summary["dice"].items():
        assert logged[f"val_dice_{cls}"] == pytest.approx(value, abs=1e-6)
    unit = "mass" if name != "bpe_mri" else "slice"
    assert logged[f"val_dice_per_{unit}_mean"] == pytest.approx(summary[f"dice_per_{unit}"]["mean"], abs=1e-6)
    # pooled over all val pixels at once (the former val_dice) it would differ
    pooled = dice_figures(overlap_counts(pred, data["label"], exp.classes), ["all"] * len(pred),
                          no_mass_apart=False)["dice_mean"]
    assert pooled != pytest.approx(summary["dice_mean"], abs=1e-6)


def test_validation_can_follow_another_headline_dice(params):
    from breastseg.training.module import SegmentationModule

    exp = experiment(params, "mass_us_bmode")
    assert SegmentationModule(exp, lr=1e-3, weight_decay=0.0, max_epochs=1, metric="dice_per_mass_median").metric == "dice_per_mass_median"
    with pytest.raises(ValueError, match="val_dice cannot follow 'hd95_mm_median_mass'"):
        SegmentationModule(exp, lr=1e-3, weight_decay=0.0, max_epochs=1, metric="hd95_mm_median_mass")
