"""The geometry of a model's training data, recorded in its bundle, and a new input checked against it.

Training records, per quantity, the smallest and largest value over the training patients' converted scans,
read from what conversion wrote beside them (no image is read):

- MRI (``<interim>/<patient>/patient.json``, studies with annotated slices): ``pixel_spacing_mm`` (in-plane,
  both directions) and ``slice_spacing_mm`` (the distance between slices) of the pre-contrast series; and, from
  the prepared patient files (``<processed>/<patient>.npz``, written by preparation, which reads the volumes
  anyway), the intensities: ``pre_p995`` (the pre-contrast volume's 99.5th percentile, in the scanner's units: the
  scale every channel is divided by) and ``enhancement_p995`` (the subtraction's 99.5th percentile relative to
  it: how strongly the contrast agent shows);
- ultrasound (``<interim>/<patient>/<scan>/meta.json``): ``lines`` (image columns: RF lines or B-mode width in
  pixels) and, for scans whose pixel spacing is known, ``axial_spacing_mm``, ``lateral_spacing_mm``,
  ``depth_mm`` (rows x axial spacing) and ``width_mm`` (columns x lateral spacing).

Prediction compares each input with them: a value outside ``[min / tolerance, max * tolerance]`` is named in a
warning (on stderr and in the read-out's ``warnings``); the model still runs. A bundle without ranges (trained
before they were recorded, or without converted sidecars in reach) gives no warning.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Sequence

#: An input is out of range when a value lies outside [min / TOLERANCE, max * TOLERANCE] of training.
TOLERANCE = 1.5
#: quantity -> (what it is called in a warning, unit)
QUANTITIES = {
    "pixel_spacing_mm": ("in-plane pixel spacing", "mm"),
    "slice_spacing_mm": ("slice spacing", "mm"),
    "axial_spacing_mm": ("axial pixel spacing", "mm"),
    "lateral_spacing_mm": ("lateral pixel spacing", "mm"),
    "depth_mm": ("image depth", "mm"),
    "width_mm": ("image width", "mm"),
    "lines": ("lines (image columns)", ""),
    "pre_p995": ("pre-contrast intensity (99.5th percentile)", ""),
    "enhancement_p995": ("enhancement (99.5th percentile of post1 - pre, relative to pre's)", ""),
}
#: The MRI intensity quantities, per study, as prepared patient files record them (``intensity_<quantity>``).
INTENSITY = ("pre_p995", "enhancement_p995")


def mri_intensity(scale: float, sub: Any | None) -> dict[str, list[float]]:
    """The intensity quantities of one study: ``scale``, its pre-contrast 99.5th percentile (the normalisation,
    :func:`breastseg.data.slices.study_scale`), and its subtraction (None: the model's channels hold no
    subtraction, and its enhancement is not checked)."""
    import numpy as np

    out = {"pre_p995": [float(scale)]}
    if sub is not None:
        out["enhancement_p995"] = [float(np.percentile(sub, 99.5)) / scale]
    return out


def mri_values(spacing: Sequence[float]) -> dict[str, list[float]]:
    """The checked quantities of a DCE series of voxel ``spacing`` (column, row, slice) in mm."""
    return {"pixel_spacing_mm": [float(spacing[0]), float(spacing[1])], "slice_spacing_mm": [float(spacing[2])]}


def us_values(shape: Sequence[int], spacing_mm: Sequence[float], spacing_known: bool) -> dict[str, list[float]]:
    """The checked quantities of an ultrasound scan of ``shape`` (rows = depth, columns) and ``spacing_mm``
    (axial, lateral); the millimetre ones only where the spacing is known."""
    rows, cols = (int(v) for v in shape[:2])
    out = {"lines": [float(cols)]}
    if spacing_known:
        dy, dx = (float(v) for v in spacing_mm[:2])
        out.update(axial_spacing_mm=[dy], lateral_spacing_mm=[dx], depth_mm=[rows * dy], width_mm=[cols * dx])
    return out


def _scan_values(dataset: str, patient_dir: Path) -> list[dict[str, list[float]]]:
    if dataset == "mri":
        manifest = patient_dir / "patient.json"
        if not manifest.is_file():
            return []
        studies = json.loads(manifest.read_text()).get("studies") or []
        return [mri_values(st["spacing"]) for st in studies
                if len(st.get("spacing") or ()) == 3 and st.get("annotated_slices", 1)]
    out = []
    for meta_file in sorted(patient_dir.glob("*/meta.json")):
        meta = json.loads(meta_file.read_text())
        if meta.get("shape") and meta.get("spacing_mm"):
            out.append(us_values(meta["shape"], meta["spacing_mm"], bool(meta.get("spacing_known", True))))
    return out


def _intensity_values(processed_file: Path) -> list[dict[str, list[float]]]:
    """The intensity quantities a prepared MRI patient file records per study ([] for a file without them)."""
    import numpy as np

    if not processed_file.is_file():
        return []
    with np.load(processed_file) as z:
        found = {q: [float(v) for v in z[f"intensity_{q}"]] for q in INTENSITY if f"intensity_{q}" in z.files}
    return [{q: v} for q, v in found.items() if v]


def training_ranges(dataset: str, interim_dir: Path, patients: Iterable[str],
                    processed_dir: Path | None = None) -> dict[str, Any] | None:
    """The ranges of the checked quantities over ``patients``' converted scans in ``interim_dir`` (the cache
    conversion wrote, ``data/interim/<dataset>``) and, for MRI, their prepared files in ``processed_dir``
    (the intensities); None when none of them is there."""
    values: dict[str, list[float]] = {}
    n_patients = n_scans = 0
    for pid in patients:
        if dataset == "mri" and processed_dir is not None:
            for found in _intensity_values(Path(processed_dir) / f"{pid}.npz"):
                for key, vals in found.items():
                    values.setdefault(key, []).extend(vals)
        scans = _scan_values(dataset, Path(interim_dir) / str(pid))
        n_patients += bool(scans)
        n_scans += len(scans)
        for scan in scans:
            for key, vals in scan.items():
                values.setdefault(key, []).extend(vals)
    if not values:
        return None
    return {"source": "the training patients' converted scans", "patients": n_patients, "scans": n_scans,
            "tolerance": TOLERANCE,
            "quantities": {k: {"min": round(min(v), 6), "max": round(max(v), 6), "unit": QUANTITIES[k][1]}
                           for k, v in sorted(values.items())}}


def _num(x: float) -> str:
    return f"{x:.3g}"


def out_of_range(ranges: dict[str, Any] | None, values: dict[str, list[float]]) -> list[dict[str, Any]]:
    """One record per quantity of ``values`` outside the training ``ranges`` (with their tolerance): the
    quantity, the input's value, the training range and a one-line message; [] without ranges."""
    if not ranges:
        return []
    tol = float(ranges.get("tolerance") or TOLERANCE)
    found = []
    for key, vals in values.items():
        q = (ranges.get("quantities") or {}).get(key)
        if not q:
            continue
        lo, hi = float(q["min"]), float(q["max"])
        bad = [v for v in vals if v < lo / tol or v > hi * tol]
        if not bad:
            continue
        value = max(bad, key=lambda v: max(v / hi, lo / v) if v > 0 and lo > 0 else float("inf"))
        name, unit = QUANTITIES.get(key, (key, q.get("unit", "")))
        unit = f" {unit}" if unit else ""
        span = _num(lo) if _num(lo) == _num(hi) else f"{_num(lo)} to {_num(hi)}"
        found.append({"quantity": key, "value": round(value, 6), "training_min": lo, "training_max": hi,
                      "tolerance": tol,
                      "message": f"{name} {_num(value)}{unit} is outside the training range {span}{unit} "
                                 f"(tolerance x{_num(tol)}): the model has not seen such data, check the result"})
    return found
