"""A model that learned nothing must not pass: test Dice beats two trivial baselines on the same test patients.

The baselines: all background, and the per-pixel majority class of the training labels (a fixed map: where the
masses usually are). The synthetic masses sit near the image centre, so the majority map is a real competitor
(Dice about 0.5 on these test cases); only a model that finds each mass beats it.
"""
import copy
from dataclasses import replace

import numpy as np
import pytest

from breastseg.config import ModelSettings, experiment
from breastseg.data.augment import mirroring_only
from breastseg.evaluation.evaluate import score
from breastseg.labels import NOT_ANNOTATED

NAME = "mass_us_bmode"
SIZE = 32
MARGIN = 0.1  # Dice points above the better baseline


def _patient(rng, n=2):
    yy, xx = np.mgrid[:SIZE, :SIZE]
    images, labels = [], []
    for _ in range(n):
        cy, cx, r = rng.uniform(11, 21), rng.uniform(11, 21), rng.uniform(5, 8)
        mask = ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r).astype(np.uint8)
        image = rng.normal(0.5, 0.12, (SIZE, SIZE)) - 0.3 * mask  # a darker (hypoechoic) mass in speckle
        images.append(image[None].astype(np.float32))
        labels.append(mask)
    return np.stack(images), np.stack(labels)


def _subset(patients):
    keys = ("image", "label", "case", "index", "spacing_mm", "spacing_known", "patient")
    out = {k: [] for k in keys}
    for pid, (img, lab) in patients.items():
        n = len(lab)
        for k, v in (("image", img), ("label", lab), ("case", np.array(["scan-1"] * n)),
                     ("index", np.zeros(n, np.int32)), ("spacing_mm", np.full((n, 2), 0.3, np.float32)),
                     ("spacing_known", np.ones(n, bool)), ("patient", np.full(n, pid))):
            out[k].append(v)
    return {k: np.concatenate(v) for k, v in out.items()}


@pytest.fixture(scope="module")
def cohort():
    rng = np.random.default_rng(2024)
    subsets = {"train": 12, "val": 3, "test": 10}
    return {s: _subset({f"{s}-{i:02d}": _patient(rng) for i in range(n)}) for s, n in subsets.items()}


def majority_map(labels: np.ndarray, classes: int) -> np.ndarray:
    """The most frequent class of each pixel over the annotated training labels."""
    votes = np.stack([((labels == c) & (labels != NOT_ANNOTATED)).sum(axis=0) for c in range(classes)])
    return votes.argmax(axis=0).astype(np.uint8)


def beats_trivial_baselines(exp, train_labels, test, pred, margin=MARGIN):
    """(ok, scores): test Dice of ``pred`` against all-background and the training labels' per-pixel majority."""
    def dice(p):
        return score(exp, test, p)[2]["dice_mean"] or 0.0

    scores = {"model": dice(pred), "background": dice(np.zeros_like(test["label"])),
              "majority": dice(np.broadcast_to(majority_map(train_labels, exp.classes), test["label"].shape))}
    return scores["model"] > max(scores["background"], scores["majority"]) + margin, scores


def _exp(params):
    p = copy.deepcopy(params)
    exp = experiment(p, NAME)
    train = exp.train.with_values(dict(max_epochs=6, batch_size=8, lr=0.01, weight_decay=0.0, threads=1,
                                       precision="32-true", samples_per_epoch=96, seed=0,
                                       augment=mirroring_only("lr")))
    return replace(exp, image_size=SIZE, model=ModelSettings("attention_unet", (8, 16)), train=train)


def _predict(module, images):
    import torch

    with torch.no_grad():
        return module.net.eval()(torch.from_numpy(images)).argmax(1).numpy().astype(np.uint8)


def _module(exp):
    import lightning.pytorch as pl

    from breastseg.training.module import SegmentationModule
    from breastseg.training.train import module_kwargs

    pl.seed_everything(0, workers=True, verbose=False)
    return SegmentationModule(exp, **module_kwargs(exp.train, int(exp.train.max_epochs)))


def test_trained_model_beats_trivial_baselines(params, cohort):
    from breastseg.data.datamodule import SliceDataModule
    from breastseg.training.train import make_trainer

    exp = _exp(params)
    t = exp.train
    dm = SliceDataModule("unused", "unused", batch_size=t.batch_size, seed=t.seed, augment=t.augment,
                         samples_per_epoch=t.samples_per_epoch)
    dm.data = dict(cohort)
    module = _module(exp)
    trainer = make_trainer(t, int(t.max_epochs), False, [], enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(module, datamodule=dm)
    ok, scores = beats_trivial_baselines(exp, cohort["train"]["label"], cohort["test"],
                                         _predict(module, cohort["test"]["image"]))
    assert scores["background"] == 0.0 and scores["majority"] > 0.3, scores  # the majority map is a competitor
    assert ok, scores


def test_untrained_model_does_not_pass(params, cohort):
    exp = _exp(params)
    ok, scores = beats_trivial_baselines(exp, cohort["train"]["label"], cohort["test"],
                                         _predict(_module(exp), cohort["test"]["image"]))
    assert not ok, scores
    # nor does the majority map itself, fed as if a model had predicted it
    majority = np.broadcast_to(majority_map(cohort["train"]["label"], exp.classes), cohort["test"]["label"].shape)
    assert not beats_trivial_baselines(exp, cohort["train"]["label"], cohort["test"], np.array(majority))[0]
