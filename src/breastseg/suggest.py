"""Which slices to annotate next: the cohort's unannotated MRI slices and ultrasound scans ranked by a model's
uncertainty, written as a worklist for the annotators.

Candidates come from the converted cache only (``data/interim/<dataset>``: pseudonymised, nothing identifying):

- MRI: every slice of a converted study that holds no annotated pixel (``patient.json`` lists the annotated
  slices of each study); its network input is made exactly as for training and prediction (the model bundle's
  channels and image size);
- ultrasound: every converted scan recorded without a mask (``meta.json``: ``"annotated": false``); its maps are
  made from the decoded cache with the model's own ``us_maps`` settings.

Strategies (``suggest.strategy``), all on the model's softmax ``p`` (classes ``k``, pixels ``i``):

- ``entropy``: mean predictive entropy over the slice's pixels, ``mean_i -sum_k p_ik log p_ik``;
- ``tta``: disagreement under test-time augmentation, the augmentations training allows (mirroring along each
  axis of ``train.augment.mirror``, intensity scaled by the ends of ``train.augment.brightness``, low and high,
  or by 0.9 and 1.1 when training changed no brightness): ``mean_i sum_k var_t p_tik`` over the passes ``t``;
- ``mc_dropout``: the mutual information (BALD) between prediction and weights over ``suggest.mc_passes``
  forward passes with dropout on, for models trained with dropout only (refused otherwise: without dropout every
  pass is the same);
- ``random``: a seeded random order (the baseline a strategy must beat).

A batch holds no near-duplicates: within one study, two suggested slices are at least ``suggest.min_slice_gap``
slices apart (the best-scored first). Ties are broken by patient, study and slice, so a ranking depends only on
the model, the cohort and the seed.
"""
from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .config import Augment, Experiment
from .errors import InputError
from .paths import PATHS

log = logging.getLogger(__name__)

STRATEGIES = ("entropy", "tta", "mc_dropout", "random")
#: ``tta``'s mirroring axes and intensity factors without a training augmentation to follow.
TTA_DEFAULTS = (("lr",), (0.9, 1.1))
#: ``train.augment.mirror`` axes -> numpy axis of an (N, C, H, W) batch.
_MIRROR_AXES = {"lr": -1, "ud": -2}
#: The worklist's columns (CSV).
COLUMNS = ("rank", "patient", "study", "slice_index", "score", "strategy", "model", "model_version")


@dataclass(frozen=True)
class Candidate:
    """One unannotated unit: an MRI slice (``study``, ``index``) or an ultrasound scan (``study`` = the scan's
    folder, ``index`` 0) of a pseudonymised ``patient``."""

    patient: str
    study: str
    index: int


# ------------------------------------------------------------------------------------------ candidates


def mri_candidates(interim_dir: Path, patients: Iterable[str] | None = None) -> list[Candidate]:
    """The slices of every converted MRI study that hold no annotated pixel."""
    out = []
    for manifest in sorted(Path(interim_dir).glob("*/patient.json")):
        pid = manifest.parent.name
        if patients is not None and pid not in patients:
            continue
        for study in json.loads(manifest.read_text()).get("studies") or []:
            shape = study.get("shape") or []
            if len(shape) != 3:
                continue
            annotated = set(study.get("annotated_slices") or [])
            out += [Candidate(pid, study["key"], k) for k in range(int(shape[2])) if k not in annotated]
    return out


def us_candidates(interim_dir: Path, patients: Iterable[str] | None = None) -> list[Candidate]:
    """The converted ultrasound scans recorded without a mask."""
    out = []
    for meta_file in sorted(Path(interim_dir).glob("*/*/meta.json")):
        pid = meta_file.parent.parent.name
        if patients is not None and pid not in patients:
            continue
        if json.loads(meta_file.read_text()).get("annotated", True) is False:
            out.append(Candidate(pid, meta_file.parent.name, 0))
    return out


def mri_inputs(exp: Experiment, interim_dir: Path, candidates: list[Candidate]) -> np.ndarray:
    """The network input of each candidate slice, (N, C, S, S) float32, made as in training."""
    import nibabel as nib

    from .data.slices import mri_slice_image, mri_study_channels

    out = np.empty((len(candidates), len(exp.channels), exp.image_size, exp.image_size), np.float32)
    by_study: dict[tuple[str, str], list[int]] = {}
    for i, c in enumerate(candidates):
        by_study.setdefault((c.patient, c.study), []).append(i)
    for (pid, study), rows in by_study.items():
        sdir = Path(interim_dir) / pid / study
        pre = np.asarray(nib.load(str(sdir / "pre.nii.gz")).dataobj)
        others = {ch: np.asarray(nib.load(str(sdir / f"{ch}.nii.gz")).dataobj) for ch in exp.channels if ch != "pre"}
        vols = mri_study_channels(exp, pre, others)
        for i in rows:
            out[i] = mri_slice_image(exp, vols, candidates[i].index)
    return out


def us_inputs(exp: Experiment, interim_dir: Path, candidates: list[Candidate]) -> np.ndarray:
    """The network input of each candidate scan, (N, C, S, S) float32, its maps made with the model's settings."""
    from .data.slices import map_kwargs, scan_maps, us_scan_image

    if exp.maps is None:
        raise InputError(None, f"model '{exp.name}' records no us_maps settings")
    settings = map_kwargs(exp.maps)
    out = np.empty((len(candidates), len(exp.channels), exp.image_size, exp.image_size), np.float32)
    for i, c in enumerate(candidates):
        maps, meta = scan_maps(exp, Path(interim_dir) / c.patient / c.study, settings)
        out[i] = us_scan_image(exp, maps, meta, None)[0]
    return out


# ------------------------------------------------------------------------------------------ scores


def probabilities(net: Any, images: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """Softmax of the network, (N, K, H, W) float32 (the network as it is: eval mode unless set otherwise)."""
    import torch

    parts = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(images[i:i + batch_size], dtype=np.float32))
            parts.append(net(x).float().softmax(1).numpy())
    return np.concatenate(parts) if parts else np.zeros((0, 1) + tuple(images.shape[2:]), np.float32)


def _entropy(p: np.ndarray) -> np.ndarray:
    """Pixelwise entropy (nats) of class probabilities along axis -3."""
    return -(p * np.log(np.clip(p, 1e-12, 1.0))).sum(axis=-3)


def entropy_scores(net: Any, images: np.ndarray) -> np.ndarray:
    """Mean predictive entropy per slice."""
    return _entropy(probabilities(net, images)).mean(axis=(-2, -1))


def tta_settings(augment: Augment | None) -> tuple[tuple[str, ...], tuple[float, float]]:
    """``tta``'s mirroring axes and intensity factors for a training augmentation: its ``mirror`` axes and the
    ends (low, high) of its ``brightness`` range; :data:`TTA_DEFAULTS` without an augmentation, and its factors
    where training used no brightness change (p 0, or the range 1 to 1)."""
    if augment is None:
        return TTA_DEFAULTS
    b = augment.brightness
    used = b.p > 0 and (b.low, b.high) != (1, 1)
    return tuple(augment.mirror), ((float(b.low), float(b.high)) if used else TTA_DEFAULTS[1])


def tta_scores(net: Any, images: np.ndarray, mirror: Sequence[str], brightness: tuple[float, float]) -> np.ndarray:
    """Variance of the class probabilities over the training augmentations, summed over classes, mean over pixels.

    Passes: the slice as it is, mirrored along each axis of ``mirror`` ("lr" left-right, "ud" up-down; mapped
    back), and its intensities scaled by each factor of ``brightness`` (training's brightness range, low and
    high: :func:`tta_settings`)."""
    passes = [probabilities(net, images)]
    for axis in (_MIRROR_AXES[a] for a in _MIRROR_AXES if a in mirror):
        passes.append(np.flip(probabilities(net, np.flip(images, axis).copy()), axis))
    passes += [probabilities(net, images * np.float32(f)) for f in brightness]
    return np.stack(passes).var(axis=0).sum(axis=1).mean(axis=(-2, -1))


def mc_dropout_scores(net: Any, images: np.ndarray, passes: int, seed: int) -> np.ndarray:
    """BALD: entropy of the mean prediction minus the mean entropy, over ``passes`` passes with dropout on."""
    import torch

    dropouts = [m for m in net.modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd)]
    if not dropouts or all(m.p == 0 for m in dropouts):
        raise InputError(None, "strategy mc_dropout needs a model trained with dropout (model.dropout > 0); "
                               "use entropy or tta")
    torch.manual_seed(int(seed))
    for m in dropouts:
        m.train()
    try:
        runs = np.stack([probabilities(net, images) for _ in range(int(passes))])
    finally:
        for m in dropouts:
            m.eval()
    return (_entropy(runs.mean(axis=0)) - _entropy(runs).mean(axis=0)).mean(axis=(-2, -1))


def scores_for(strategy: str, net: Any, images: np.ndarray, *, seed: int, mc_passes: int,
               augment: Augment | None = None) -> np.ndarray:
    """The scores of ``strategy``; ``augment``: the training augmentation whose mirroring and brightness ``tta``
    follows (:func:`tta_settings`)."""
    if strategy == "entropy":
        return entropy_scores(net, images)
    if strategy == "tta":
        return tta_scores(net, images, *tta_settings(augment))
    if strategy == "mc_dropout":
        return mc_dropout_scores(net, images, mc_passes, seed)
    if strategy == "random":
        return np.random.default_rng(int(seed)).random(len(images))
    raise InputError(None, f"unknown strategy {strategy!r} (one of {', '.join(STRATEGIES)})")


def select(candidates: list[Candidate], scores: np.ndarray, budget: int, min_gap: int) -> list[int]:
    """Indices of the ``budget`` best-scored candidates, no two slices of one study closer than ``min_gap``."""
    order = sorted(range(len(candidates)), key=lambda i: (-float(scores[i]), candidates[i].patient,
                                                          candidates[i].study, candidates[i].index))
    chosen: list[int] = []
    taken: dict[tuple[str, str], list[int]] = {}
    for i in order:
        if len(chosen) >= budget:
            break
        c = candidates[i]
        near = taken.setdefault((c.patient, c.study), [])
        if any(abs(c.index - k) < min_gap for k in near):
            continue
        near.append(c.index)
        chosen.append(i)
    return chosen


# ------------------------------------------------------------------------------------------ the worklist


def worklist_patients(path: Path) -> list[str]:
    """The pseudonymised patients a worklist CSV lists, in its order."""
    try:
        with open(path, newline="") as fh:
            return [r["patient"] for r in csv.DictReader(fh)]
    except (OSError, KeyError) as exc:
        raise InputError(path, f"not a worklist (no patient column): {exc}") from None


def suggest(model_uri: str, interim_dir: Path | None, out_csv: Path | None, *, budget: int, strategy: str, min_gap: int,
            seed: int, mc_passes: int, tta_augment: Augment | None = None, montage: Path | bool = True,
            montage_tiles: int = 12, origin: str | None = None, log_to_mlflow: bool = True,
            announce: bool = False) -> list[dict[str, Any]]:
    """Rank the unannotated units of ``interim_dir`` by ``model_uri``'s uncertainty; write the worklist CSV (and
    the montage PNG of the top ones with the current prediction: ``montage``, True for beside the CSV); log both
    on the model's MLflow run; ``announce``: say where they went in one line on stdout.
    ``tta_augment``: the experiment's training augmentation (``train.augment``), whose mirroring axes and
    brightness range ``tta`` uses (None: left-right mirroring, factors 0.9 and 1.1)."""
    from .io import atomic_path
    from .models.bundle import load_model

    if strategy not in STRATEGIES:
        raise InputError(None, f"unknown strategy {strategy!r} (one of {', '.join(STRATEGIES)})")
    model = load_model(model_uri, allow_pickle=False, origin=origin)
    exp = model.experiment
    interim_dir = Path(interim_dir or PATHS.interim(exp.dataset))
    out_csv = Path(out_csv or PATHS.worklist(exp.name))
    montage = out_csv.with_suffix(".png") if montage is True else (Path(montage) if montage else None)
    if not interim_dir.is_dir():
        raise InputError(interim_dir, f"no converted {exp.dataset} patients here (run the conversion first)")
    found = mri_candidates(interim_dir) if exp.dataset == "mri" else us_candidates(interim_dir)
    log.info("%s: %d unannotated %s", exp.name, len(found), "slices" if exp.dataset == "mri" else "scans")
    images = (mri_inputs if exp.dataset == "mri" else us_inputs)(exp, interim_dir, found) if found else \
        np.zeros((0, len(exp.channels), exp.image_size, exp.image_size), np.float32)
    net = model.net.eval()
    scores = scores_for(strategy, net, images, seed=seed, mc_passes=mc_passes, augment=tta_augment) if found else \
        np.zeros(0)
    chosen = select(found, scores, int(budget), int(min_gap))
    version = str(model.source.get("version") or "")
    name = str(model.source.get("registered_model") or exp.name)
    rows = [{"rank": r + 1, "patient": found[i].patient, "study": found[i].study, "slice_index": found[i].index,
             "score": f"{float(scores[i]):.6g}", "strategy": strategy, "model": name, "model_version": version}
            for r, i in enumerate(chosen)]
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_csv) as tmp:
        with open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=COLUMNS)
            w.writeheader()
            w.writerows(rows)
    if montage is not None:
        from .evaluation.figures import worklist_montage
        from .models.bundle import predict_slices

        top = chosen[:montage_tiles]
        unit = "slices" if exp.dataset == "mri" else "scans"
        pred = predict_slices(net, images[top]) if top else np.zeros((0, exp.image_size, exp.image_size), np.uint8)
        titles = [f"#{r + 1} {found[i].patient} {found[i].study}"
                  + (f" slice {found[i].index}" if exp.dataset == "mri" else "") + f"\n{strategy} {float(scores[i]):.3g}"
                  for r, i in enumerate(top)]
        worklist_montage(images[top][:, 0] if top else np.zeros((0, 1, 1)), pred, titles, exp.dataset,
                         list(exp.class_names), Path(montage),
                         f"{exp.name}: the first {len(top)} of the {len(rows)} {unit} to annotate next ({strategy}, "
                         f"{name} v{version})")
    run_id = model.source.get("run_id") or model.config.get("run_id")
    if log_to_mlflow and run_id and model.source.get("registered_model"):
        import mlflow

        client = mlflow.MlflowClient()
        for f in (out_csv, montage):
            if f is not None and Path(f).exists():
                client.log_artifact(run_id, str(f), artifact_path=f"worklist/{strategy}")
        client.set_tag(run_id, "breastseg.worklist", f"{len(rows)} {strategy}")
    if announce:
        shown = f" (the first {min(montage_tiles, len(rows))} in {montage})" if montage is not None and rows else ""
        print(f"breastseg: {len(rows)} to annotate next in {out_csv}{shown}", flush=True)
    return rows
