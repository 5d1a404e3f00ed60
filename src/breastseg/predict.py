"""Inference with a logged model on prepared slices: label maps and a preview."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError
from .io import atomic_path


def predict(model_uri: str, input_npz: Path, out_dir: Path, **_: Any) -> Path:
    """Segment every slice of a prepared ``.npz``; write ``prediction.npz`` (uint8 labels) to ``out_dir``."""
    from .evaluation.evaluate import load_model, predict_slices

    if not input_npz.exists():
        raise InputError(input_npz, "no such file")
    try:
        with np.load(input_npz) as z:
            images = z["image"]
            case, index = z["case"], z["index"]
    except (KeyError, ValueError, OSError) as exc:
        raise InputError(input_npz, f"not a prepared slice file ({exc})") from None
    pred = predict_slices(load_model(model_uri), images)
    out = out_dir / "prediction.npz"
    with atomic_path(out, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, label=pred, case=case, index=index)
    return out
