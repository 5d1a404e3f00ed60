"""Loading a trained model for prediction and running it over network slices.

The inference bundle itself (``config.json`` + ``weights.pt``: how it is written, read, resolved from
``models:/``, ``runs:/`` and local URIs, and loaded safely) lives in :mod:`breastseg.models.bundle`, below
training, evaluation and inference alike; prediction uses these names from it:

- :func:`load_model`: a model URI to a :class:`LoadedModel` (the network in eval mode, its bundle
  configuration and where it came from); :func:`resolved_model` / :func:`bundle_of` / :func:`load_bundle`: the
  same in steps (the configuration is read, and the input checked, before the network is loaded);
- :func:`predict_slices`: the argmax label maps of a batch of slices (:func:`label_map` of the logits).
"""
from __future__ import annotations

from ..models.bundle import (CONFIG_NAME, WEIGHTS_NAME, LoadedModel, bundle_of, find_bundle, label_map, load_bundle,
                             load_model, predict_slices, read_config, resolve_model, resolved_model)

__all__ = ["CONFIG_NAME", "WEIGHTS_NAME", "LoadedModel", "bundle_of", "find_bundle", "label_map", "load_bundle",
           "load_model", "predict_slices", "read_config", "resolve_model", "resolved_model"]
