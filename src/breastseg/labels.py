"""The label vocabulary: class ids and names, the "not annotated" value and the BPE area categories.

Label maps (MRI volumes, prepared slices, predictions) hold class ids:

- MRI: 0 background, 1 non-enhancing fibroglandular tissue (``fgt``), 2 background parenchymal enhancement
  (``bpe``); fibroglandular tissue as a whole is labels 1 and 2.
- Ultrasound: 0 background, 1 mass.
- :data:`NOT_ANNOTATED` (255): a pixel or slice nobody labelled. It is left out of losses, metrics and BPE
  fractions; a slice that is all 255 is not prepared for training.

BPE area categories: the BPE fraction (BPE over all fibroglandular voxels) binned at ascending cut-offs
(default :data:`BPE_CUTOFFS`, 25 / 50 / 75 %); with three cut-offs the four categories are named
:data:`BPE_CATEGORY_NAMES` (minimal, mild, moderate, marked). A fraction exactly at a cut-off goes to the
higher category.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: Label value of pixels (and whole slices) that carry no annotation.
NOT_ANNOTATED = 255

BACKGROUND = 0
#: MRI: non-enhancing fibroglandular tissue.
FGT = 1
#: MRI: background parenchymal enhancement.
BPE = 2
#: Ultrasound: the mass.
MASS = 1

#: MRI labels that are fibroglandular tissue (non-enhancing FGT and BPE).
FGT_LABELS = (FGT, BPE)
#: The values an MRI label volume may hold.
MRI_LABEL_VALUES = (BACKGROUND, FGT, BPE, NOT_ANNOTATED)
#: Class keys by class id (metrics, CSV columns and params use them: ``dice_fgt``, ``dice_mass``).
MRI_CLASS_NAMES = ("background", "fgt", "bpe")
US_CLASS_NAMES = ("background", "mass")

#: Default cut-offs of the BPE fraction between the area categories.
BPE_CUTOFFS = (0.25, 0.5, 0.75)
BPE_CATEGORY_NAMES = ("minimal", "mild", "moderate", "marked")


def bpe_category(fraction: float, cutoffs: Sequence[float] = BPE_CUTOFFS) -> int:
    """Category 0..len(cutoffs) of a BPE fraction; a fraction exactly at a cut-off goes to the higher one
    (0: < 25 %, 1: 25-50 %, 2: 50-75 %, 3: >= 75 % with the default cut-offs)."""
    if fraction is None or not math.isfinite(float(fraction)):
        raise ValueError(f"BPE fraction must be a finite number, got {fraction!r}")
    return int(np.searchsorted(np.asarray(tuple(cutoffs)), float(fraction), side="right"))


def category_name(index: int, n_categories: int) -> str:
    """The name of category ``index`` of ``n_categories``: minimal..marked when there are four, else
    ``"category <index>"``."""
    return BPE_CATEGORY_NAMES[index] if n_categories == len(BPE_CATEGORY_NAMES) else f"category {index}"
