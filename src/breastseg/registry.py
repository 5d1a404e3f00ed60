"""Champion gate: promote the challenger only if it is at least as good as the champion on the same validation
patients, each model scored through its own preprocessing (:mod:`breastseg.evaluation.gate`).

No decision reads the test set: both scores come from the ``val`` patients of ``data/splits/<experiment>.json``,
with ``register.metric`` computed as evaluation computes it. The challenger's test figures (from
``results/<experiment>/evaluation.json``) are only copied into ``decision.json`` under ``reported_test``.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from . import tracking
from .io import write_json
from .config import Settings
from .paths import interim_beside

log = logging.getLogger(__name__)


def decide(challenger: float | None, champion: float | None, margin: float) -> bool:
    """Promote when there is no champion, or challenger >= champion + margin (higher is better)."""
    if challenger is None:
        return False
    if champion is None:
        return True
    return challenger >= champion + margin


def _reported_test(evaluation_json: Path | None, metric: str) -> dict[str, Any] | None:
    """The challenger's test figures, for the record only (never used in the decision)."""
    if not evaluation_json or not Path(evaluation_json).exists():
        return None
    from .evaluation.evaluate import figures_of

    summary = json.loads(Path(evaluation_json).read_text())
    if "per_patient" not in summary:  # a flat metrics file
        return {metric: summary.get(metric), "n_patients": summary.get("n_patients")}
    flat = figures_of(summary)
    return {metric: flat.get(metric, summary.get(metric)), "n_patients": summary.get("n_patients"),
            "test_patients": summary.get("test_patients", []), "model_version": summary.get("model_version")}


def promote_if_better(s: Settings, name: str, *, model_json: Path, split_file: Path, processed_dir: Path,
                      decision_json: Path, interim_dir: Path | None = None, evaluation_json: Path | None = None,
                      metrics_json: Path | None = None) -> dict[str, Any]:
    """Score challenger and champion on this split's val patients; move alias ``champion`` if warranted.

    ``interim_dir`` (default ``data/interim/<dataset>`` beside ``processed_dir``'s parent) holds the converted
    patients, from which the val patients are prepared again for a champion trained with another image size or
    other channels. ``evaluation_json`` (or, for older callers, ``metrics_json``) only feeds ``reported_test``.
    """
    import mlflow

    from .data.split import subset_patients
    from .evaluation.gate import SUBSET, gate_score

    metric = s.register.metric
    margin = float(s.register.margin)
    exp = s.experiments[name]
    processed_dir = Path(processed_dir)
    interim_dir = Path(interim_dir) if interim_dir else interim_beside(processed_dir, exp.dataset)
    model = json.loads(Path(model_json).read_text())
    tracking.configure(s.tracking)
    client = mlflow.MlflowClient()
    registered = model["model_name"]
    try:
        champion = client.get_model_version_by_alias(registered, "champion")
    except mlflow.exceptions.MlflowException:
        champion = None
    champion_version = str(champion.version) if champion else None
    kw = dict(split_file=Path(split_file), processed_dir=processed_dir, interim_dir=interim_dir, metric=metric)
    challenger = gate_score(exp, s.evaluation, model["model_uri"], role="challenger", version=model["version"], **kw)
    if champion is None:
        before: dict[str, Any] = {"version": None, "score": None, "comparable": True, "reason": None}
    elif champion_version == str(model["version"]):  # already champion (a rerun of this rule)
        before = dict(challenger)
    else:
        before = gate_score(exp, s.evaluation, f"models:/{registered}/{champion_version}", role="champion",
                            version=champion_version, folds=challenger["folds"], **kw)
    comparable = bool(challenger["comparable"] and before["comparable"])
    reason = challenger["reason"] or before["reason"]
    promote = (comparable and decide(challenger["score"], before["score"], margin)
               and champion_version != str(model["version"]))
    if promote:
        client.set_registered_model_alias(registered, "champion", model["version"])
    # a fold ensemble is decided on every train and val patient, each predicted by the fold that held it out
    decided_on = "out of fold" if challenger["folds"] else SUBSET
    val_patients = sorted(challenger["folds"]) if challenger["folds"] else list(subset_patients(split_file, SUBSET))
    decision = {
        "experiment": name, "model_name": registered, "metric": metric, "margin": margin,
        "decided_on": decided_on, "val_patients": val_patients, "n": len(val_patients),
        "comparable": comparable, "reason": reason,
        "challenger": challenger,
        "champion_before": before,
        "promoted": promote,
        "champion_after": model["version"] if promote else champion_version,
        "reported_test": _reported_test(evaluation_json or metrics_json, metric),
    }
    for key, value in [("breastseg.gate.promoted", str(promote)),
                       ("breastseg.gate.decided_on", decided_on),
                       ("breastseg.gate.comparable", str(comparable)),
                       ("breastseg.gate.challenger_score", str(challenger["score"])),
                       ("breastseg.gate.champion_score", str(before["score"])),
                       ("breastseg.gate.champion_version", str(champion_version))]:
        client.set_model_version_tag(registered, model["version"], key, value)
    write_json(decision_json, decision)
    if not comparable:
        log.warning("%s: challenger v%s not promoted: %s", name, model["version"], reason)
    else:
        log.info("%s: challenger v%s %s (%s %.4f vs champion %s on %d val patients)", name, model["version"],
                 "promoted to champion" if promote else "not promoted", metric,
                 challenger["score"] if challenger["score"] is not None else float("nan"),
                 before["score"], len(val_patients))
    return decision
