"""Champion-gate scoring: each model on the same validation patients, each through its own preprocessing.

The gate never reads the test patients. A model is scored on the ``val`` patients of the current split with
:func:`breastseg.evaluation.evaluate.score` (the figures evaluation computes), on slices prepared the way the model
was trained: the image size and channels its inference bundle records (``config.json``). When they equal the
current experiment's, the prepared slices in ``data/processed/<experiment>/`` are used; when they differ, the val
patients are prepared again, in memory, from the converted data in ``data/interim/<dataset>/`` (never written
over ``data/processed``). A model trained on ultrasound maps made with other ``us_maps`` settings is scored on maps
made again, with its own settings, from the decoded cache (the RF envelopes); where the converted data holds
ready maps instead (made by an earlier version), or the model's entropy binning is one this version no longer
makes, it is not comparable (and not promoted).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..config import EvaluationSettings, Experiment, MapSettings, Preprocess
from ..errors import InputError
from ..us.maps import EARLIER_BINNING, ENTROPY_BINNING, MAP_SETTINGS

log = logging.getLogger(__name__)
SUBSET = "val"


def model_settings(config: dict[str, Any], exp: Experiment) -> dict[str, Any]:
    """What preparation needs of a model (dataset, channels, image_size, classes, us_maps), from its bundle
    ``config``; a model logged without a bundle is taken to use the current experiment's settings."""
    mexp = (config or {}).get("experiment") or {}
    dataset = mexp.get("dataset", exp.dataset)
    return {
        "dataset": dataset,
        "channels": list(mexp.get("channels", exp.channels)),
        "image_size": int(mexp.get("image_size", exp.image_size)),
        "classes": int(mexp.get("classes", exp.classes)),
        "us_maps": (config or {}).get("us_maps"),
        "preprocess": Preprocess.from_dict(mexp["preprocess"]) if "preprocess" in mexp
        else Preprocess.legacy(dataset) if config else exp.preprocess,
    }


def converted_maps_settings(maps: MapSettings, interim_dir: Path, patients: list[str]) -> dict[str, Any]:
    """The ``us_maps`` settings of the maps the current experiment was prepared from: the configuration in force
    (``maps``) where the converted data is the decoded cache (maps are made at
    preparation), else what a scan's ``meta.json`` records (a folder of ready maps: the first found among
    ``patients``)."""
    settings = maps.as_dict()
    for pid in patients:
        metas = sorted(Path(interim_dir, pid).glob("*/meta.json"))
        if metas:
            meta = json.loads(metas[0].read_text())
            if "maps" not in meta:  # the decoded cache: maps made with today's settings
                break
            settings.update({k: meta[k] for k in ("dynamic_range_db", "window_pulses", "bins", "entropy_on")
                             if meta.get(k) is not None})
            settings["entropy_binning"] = meta.get("entropy_binning") or EARLIER_BINNING[settings["entropy_on"]]
            break
    return settings


def decoded_cache(interim_dir: Path, patients: list[str]) -> bool:
    """Whether the converted ultrasound data of ``patients`` is the decoded cache (maps can be made again with any
    settings) rather than ready maps."""
    metas = [m for pid in patients for m in sorted(Path(interim_dir, pid).glob("*/meta.json"))]
    return bool(metas) and all("maps" not in json.loads(m.read_text()) for m in metas)


def _same(a: Any, b: Any) -> bool:
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return str(a) == str(b)


def maps_differences(model_maps: dict[str, Any] | None, today: dict[str, Any], channels: list[str]
                     ) -> list[tuple[str, Any, Any]]:
    """(setting, the model's value, today's value) for each ``us_maps`` setting the model's channels depend on
    and that differs; empty when comparable (or when the model records no maps settings)."""
    if not model_maps:
        return []
    model_maps = {**model_maps, "entropy_binning": model_maps.get("entropy_binning")
                  or EARLIER_BINNING.get(str(model_maps.get("entropy_on")), "unknown")}
    today = {**today, "entropy_binning": today.get("entropy_binning")
             or ENTROPY_BINNING.get(str(today.get("entropy_on")), "unknown")}
    keys: list[str] = []
    for ch in channels:
        keys += MAP_SETTINGS.get(ch, ())
    if "entropy" in channels and "bmode" in (model_maps.get("entropy_on"), today.get("entropy_on")):
        keys.append("dynamic_range_db")
    keys = list(dict.fromkeys(keys))
    if not _same(model_maps.get("entropy_on"), today.get("entropy_on")):
        keys = [k for k in keys if k != "entropy_binning"]  # another signal: its binning differs anyway
    return [(k, model_maps.get(k), today.get(k)) for k in keys
            if k in model_maps and not _same(model_maps.get(k), today.get(k))]


def prepare_subset(exp: Experiment, interim_dir: Path, patients: list[str],
                   maps_settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """The slices of ``patients`` prepared for ``exp`` from ``interim_dir/<patient>/``, in memory, in the layout
    (and dtypes) of :func:`breastseg.data.slices.load_subset` (``maps_settings``: ultrasound maps made from the
    decoded cache with these ``us_maps`` settings)."""
    from ..data.slices import object_array, prepare_mri, prepare_us, slice_arrays

    parts: dict[str, list[Any]] = {}
    for pid in patients:
        folder = Path(interim_dir) / pid
        d = prepare_mri(exp, folder) if exp.dataset == "mri" else prepare_us(exp, folder, maps_settings)
        arrays = {**slice_arrays(exp, d), "patient": np.full(len(d["images"]), pid)}
        for k, v in arrays.items():
            parts.setdefault(k, []).append(v)
    if not parts or not sum(len(v) for v in parts["label"]):
        return {}
    natives = [a for chunk in parts.pop("native_label") for a in chunk]
    return {**{k: np.concatenate(v) for k, v in parts.items()}, "native_label": object_array(natives)}


def gate_score(exp: Experiment, evaluation: EvaluationSettings, model_uri: str, *, role: str, version: str | None,
               split_file: Path, processed_dir: Path, interim_dir: Path, metric: str,
               folds: dict[str, int] | None = None) -> dict[str, Any]:
    """Score one model on the val patients of experiment ``exp`` (its maps: ``exp.maps``) through its own
    preprocessing, with evaluation's conventions (``evaluation``: the BPE categories and the bootstrap seed); a fold ensemble (``run.folds``) on the
    train and val patients of its folds, each predicted by the member that held it out (out of fold), and the
    champion on those same patients (``folds``: the challenger's assignment; a champion that is an ensemble of
    the same folds out of fold too, any other as it is).

    Returns ``score`` (``metric`` as evaluation computes it: a :func:`~breastseg.evaluation.evaluate.figures_of`
    key such as ``dice_mean``), ``comparable`` and ``reason`` (why not), the model's ``image_size`` and
    ``channels``, ``slices``: ``prepared`` (the experiment's prepared slices) or ``interim`` (prepared again
    from the converted data for this model), ``patients`` and ``folds`` (the assignment scored out of fold).
    """
    from ..data.slices import load_patients
    from ..data.split import subset_patients
    from ..models.bundle import load_model
    from .evaluate import figures_of, native_view, score, segment_subset

    model = load_model(model_uri, allow_pickle=True)
    own_folds = ((model.config or {}).get("folds") or {}).get("assignment")
    if role == "challenger":  # the champion is scored on the challenger's patients (folds=None: the val ones)
        folds = own_folds
    patients = sorted(folds) if folds else list(subset_patients(split_file, SUBSET))
    if not patients:
        raise InputError(split_file, "no val patients: the champion gate decides on the validation patients")
    s = model_settings(model.config, exp)
    out: dict[str, Any] = {"version": version, "score": None, "comparable": True, "reason": None,
                           "image_size": s["image_size"], "channels": s["channels"], "slices": None,
                           "patients": "out of fold" if folds else SUBSET, "folds": folds,
                           "scored_out_of_fold": bool(folds) and own_folds == folds}
    label = f"{role} v{version}" if version else role

    def refuse(reason: str) -> dict[str, Any]:
        out.update(comparable=False, reason=reason)
        return out

    if s["dataset"] != exp.dataset or s["classes"] != exp.classes:
        return refuse(f"{label} segments {s['classes']} classes of {s['dataset']} data, this experiment "
                      f"{exp.classes} of {exp.dataset}: not compared, not promoted")
    remake = None  # the model's own us_maps settings, when its maps are made again from the decoded cache
    if exp.dataset == "us":
        today = converted_maps_settings(exp.maps, interim_dir, patients)
        diff = maps_differences(s["us_maps"], today, s["channels"])
        binning = (s["us_maps"] or {}).get("entropy_binning") or EARLIER_BINNING.get(
            str((s["us_maps"] or {}).get("entropy_on")), "unknown")
        current = binning == ENTROPY_BINNING.get(str((s["us_maps"] or {}).get("entropy_on")))
        if diff and current and decoded_cache(interim_dir, patients):
            remake = s["us_maps"]
            out["maps"] = "made again with the model's settings: " + ", ".join(f"{k}={a}" for k, a, _ in diff)
        elif diff:
            return refuse(f"{label} was trained on maps with " + ", ".join(f"{k}={a}" for k, a, _ in diff)
                          + "; today's maps use " + ", ".join(f"{k}={b}" for k, _, b in diff)
                          + ": not compared, not promoted")
    own = exp.with_data(channels=s["channels"], image_size=s["image_size"], preprocess=s["preprocess"])
    if remake is None and (s["image_size"], s["channels"], s["preprocess"]) == (
            int(exp.image_size), list(exp.channels), exp.preprocess):
        data, out["slices"] = load_patients(processed_dir, patients), "prepared"
    else:
        try:
            data = prepare_subset(own, interim_dir, patients, remake)
        except InputError as exc:
            return refuse(f"{label} needs its own {s['image_size']}-px {'+'.join(s['channels'])} slices, which "
                          f"cannot be prepared from {interim_dir} ({exc}): not compared, not promoted")
        out["slices"] = "interim"
    if out["scored_out_of_fold"]:
        native = out_of_fold(model, own, data, folds)
    else:
        native = segment_subset(model, own, data).native
    _, _, summary = score(exp, native_view(data), native, cutoffs=tuple(evaluation.bpe_cutoffs),
                          seed=int(evaluation.seed))
    flat = figures_of(summary)
    value = flat[metric] if metric in flat else summary.get(metric)
    out["score"] = None if value is None else float(value)
    out["n_slices"] = int(summary["n_slices"])
    return out


def out_of_fold(model: Any, exp: Experiment, data: dict[str, Any], folds: dict[str, int]) -> list[np.ndarray]:
    """Each image of ``data`` segmented by the member of the fold ensemble ``model`` that held its patient out
    (the bundle's inference settings; in ``data``'s order)."""
    from ..models.bundle import LoadedModel
    from .evaluate import segment_subset

    native: list[Any] = [None] * len(data["label"])
    fold_of_image = np.asarray([folds[str(p)] for p in data["patient"]])
    for i, member in enumerate(model.net.members):
        idx = np.flatnonzero(fold_of_image == i)
        if not len(idx):
            continue
        part = {k: (v[idx] if isinstance(v, np.ndarray) and len(v) == len(fold_of_image) else v)
                for k, v in data.items()}
        seg = segment_subset(LoadedModel(member, model.config, model.source), exp, part)
        for j, labels in zip(idx, seg.native):
            native[j] = labels
    return native
