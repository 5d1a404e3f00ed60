"""What each stage of the workflow reads of the settings: one function per stage, whose result is the stage's
rerun trigger (its rule's ``params:``, which Snakemake compares with the last run's), keyed by the setting's
dotted path in params (``experiment``: the experiment's merged settings, :func:`breastseg.config.experiment`).

A setting changed reruns exactly the stages whose function returns it. ``tests/test_stages.py`` walks the
params schema, changes each setting, and checks which stages go out of date; it also checks that the modules of
each stage read no section of the params that its function leaves out.
"""
from __future__ import annotations

from typing import Any

from .config import Settings, _plain
from .data.shards import preparation as _preparation

#: The stages, in the order the workflow runs them; each has a function of the same name here
#: (``prepare`` is :func:`breastseg.data.shards.preparation`).
STAGES = ("synth", "convert", "prepare", "split", "tune", "train", "evaluate", "register", "compare", "suggest")


def synth(s: Settings) -> dict[str, Any]:
    """The demo cohort's phantoms: the ``synth`` block."""
    return {"synth": s.synth.as_dict()}


def convert(s: Settings, dataset: str) -> dict[str, Any]:
    """Conversion of one dataset's shard (the raw files are the rule's input): what it does with a bad file and,
    for MRI, how label files map to classes."""
    out: dict[str, Any] = {"convert.on_error": s.convert.on_error}
    if dataset == "mri":
        out["cohort.label_map"] = _plain(s.cohort.label_map or {})
    return out


def prepare(s: Settings, name: str) -> dict[str, Any]:
    """Preparation of one experiment's slices from the conversion cache (:func:`breastseg.data.shards.preparation`)."""
    return _preparation(s, name)


def split(s: Settings) -> dict[str, Any]:
    """The patient-level split: its seed and fractions."""
    return {"split.seed": s.split.seed, "split.fractions": s.split.fractions.as_dict()}


def tune(s: Settings, name: str) -> dict[str, Any]:
    """The Optuna study of one experiment: the experiment (network, data and training settings), the study's
    settings and the metric each trial's checkpoint is chosen on."""
    return {"experiment": s.experiments[name].as_dict(), "tune": s.tune.as_dict(), "register.metric": s.register.metric}


def train(s: Settings, name: str) -> dict[str, Any]:
    """The final training of one experiment (the study's best parameters are the rule's input): the experiment,
    the seeds, the folds (and the split seed they are drawn with; a new split retrains anyway), the metric
    checkpoints are chosen on and, for MRI, the BPE categories and degree settings the bundle records."""
    out = {"experiment": s.experiments[name].as_dict(), "run.seeds": list(s.run.seeds), "run.folds": s.run.folds,
           "split.seed": s.split.seed, "register.metric": s.register.metric}
    if s.experiments[name].dataset == "mri":  # the model bundle records them for predict's read-out
        out["evaluation.bpe_cutoffs"] = _plain(s.evaluation.bpe_cutoffs)
        out["evaluation.bpe_degree"] = _plain(s.evaluation.bpe_degree)
    return out


def evaluate(s: Settings, name: str) -> dict[str, Any]:
    """The evaluation of one experiment's model on the test patients: the bootstrap seed, the BPE categories
    and the degree's settings (MRI), and whether a patient map tells women apart."""
    out: dict[str, Any] = {"evaluation.seed": s.evaluation.seed}
    if s.experiments[name].dataset == "mri":
        out["evaluation.bpe_cutoffs"] = _plain(s.evaluation.bpe_cutoffs)
        out["evaluation.bpe_degree"] = _plain(s.evaluation.bpe_degree)
    else:
        out["cohort.patient_map"] = bool(s.cohort.patient_map)
    return out


def register(s: Settings, name: str) -> dict[str, Any]:
    """The champion gate of one experiment: the metric and margin it decides on, and the evaluation settings its
    validation scores are computed with."""
    return {"register": s.register.as_dict(), **evaluate(s, name)}


def compare(s: Settings, pair: dict[str, str]) -> dict[str, Any]:
    """One paired comparison: the pair, the seeds it pools and the bootstrap seed."""
    return {"pair": dict(pair), "run.seeds": list(s.run.seeds), "evaluation.seed": s.evaluation.seed}


def suggest(s: Settings, name: str) -> dict[str, Any]:
    """The annotation worklist of one experiment: the ``suggest`` block and, for test-time augmentation, the
    training's mirroring and brightness."""
    augment = s.experiments[name].train.augment
    return {"suggest": s.suggest.as_dict(), "train.augment.mirror": list(augment.mirror),
            "train.augment.brightness": augment.brightness.as_dict()}
