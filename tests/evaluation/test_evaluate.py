"""Honest units (mm only where the pixel spacing is known) and figures oriented the way each modality is read."""
import json

import numpy as np
import pytest
from PIL import Image
from us_cohorts import write_busi_cohort

from breastseg.config import experiment
from breastseg.data.slices import prepare_patient
from breastseg.evaluation import figures
from breastseg.evaluation.evaluate import score
from breastseg.report import write_summary
from breastseg.us.maps import write_us_maps
from breastseg.config import us_map_settings as with_maps


def _data(known: bool, n: int = 2, size: int = 32) -> tuple[dict, np.ndarray]:
    label = np.zeros((n, size, size), np.uint8)
    label[:, 8:16, 8:16] = 1
    pred = np.zeros_like(label)
    pred[:, 10:18, 8:16] = 1
    data = {"image": np.zeros((n, 1, size, size), np.float32), "label": label, "case": np.array(["scan-1"] * n),
            "index": np.zeros(n, np.int32), "spacing_mm": np.full((n, 2), 2.0, np.float32),
            "spacing_known": np.full(n, known), "patient": np.array([f"P{i:012x}" for i in range(n)])}
    return data, pred


def test_distances_are_in_pixels_and_named_so_when_spacing_is_unknown(params):
    exp = experiment(params, "mass_us_bmode")
    rows, patients, summary = score(exp, *_data(known=False))
    stats = summary["per_patient"]["mass"]
    assert "hd95_px" in stats and "asd_px" in stats and "hd95_mm" not in stats and "asd_mm" not in stats
    assert stats["hd95_px"]["median"] == pytest.approx(4.0)  # 2 network pixels of 2 source pixels each
    assert list(summary["distance_units"]) == ["px"]
    assert "hd95_px_mass" in rows[0] and "hd95_mm_mass" not in rows[0] and "hd95_px_mass" in patients[0]
    _, _, known = score(exp, *_data(known=True))
    assert "hd95_mm" in known["per_patient"]["mass"] and "hd95_px" not in known["per_patient"]["mass"]
    assert known["per_patient"]["mass"]["hd95_mm"]["median"] == pytest.approx(4.0)


def test_summary_page_says_when_distances_are_pixels(params, tmp_path):
    exp = experiment(params, "mass_us_bmode")
    _, _, summary = score(exp, *_data(known=False))
    summary.update(experiment="mass_us_bmode", model_version="1")
    f = tmp_path / "mass_us_bmode.json"
    f.write_text(json.dumps(summary))
    page = write_summary(params["cohort"]["name"], [f], tmp_path / "summary.html", results_dir=tmp_path / "results").read_text()
    assert "4.00 px" in page and "Pixel spacing unknown" in page and "4.00 mm" not in page


def test_ultrasound_overlay_shows_depth_downward_like_the_preview(params, tmp_path):
    """A mass just under the skin line is at the top of the us-maps preview and of the evaluation overlay."""
    root = write_busi_cohort(tmp_path / "busi", n=1, shape=(40, 80))
    png = next((root / "us").rglob("benign (1).png"))
    mask = np.zeros((40, 80), np.uint8)
    mask[2:10, 30:50] = 255  # near the transducer: top rows of the image
    Image.fromarray(mask).save(png.with_name("benign (1)_mask.png"))
    write_us_maps(png, tmp_path / "interim", maps=("bmode",), patient_id="P000000000001", **with_maps())
    preview = np.asarray(Image.open(tmp_path / "interim" / "scan-1" / "preview.png").convert("RGB")).astype(int)
    red = (preview[..., 0] == 255) & (preview[..., 1] == 0) & (preview[..., 2] == 0)
    assert red.any() and np.flatnonzero(red.any(axis=1)).max() < preview.shape[0] / 3

    exp = experiment(params, "mass_us_bmode")
    prepared = prepare_patient(exp, tmp_path / "interim", tmp_path / "p.npz", patient_id="P000000000001")
    with np.load(prepared) as z:
        label, image = z["label"][0], z["image"][0, 0]
    shown = figures.display(label, "us")
    rows = np.flatnonzero(shown.any(axis=1))
    content = np.flatnonzero(figures.display(image, "us").std(axis=1) > 0)  # the image band (letterboxed)
    assert rows.max() < content.min() + (content.max() - content.min()) / 3

    data = {"image": image[None, None], "label": label[None], "patient": np.array(["P000000000001"])}
    out = tmp_path / "overlays.png"
    figures.overlay_figure(data, label[None], np.array([1.0]), out, "mass_us_bmode: test slices", dataset="us")
    assert out.stat().st_size > 0
    # MRI slices are stored NIfTI-style and transposed for display; ultrasound is shown as stored.
    a = np.arange(6).reshape(2, 3)
    assert figures.display(a, "mri").shape == (3, 2) and figures.display(a, "us") is a
