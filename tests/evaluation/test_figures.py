"""Overlay figures: a legend, colour-blind-safe class colours, ultrasound in its physical aspect, and only cases
with a defined Dice ranked as worst / median / best."""
import json

import numpy as np
import pytest
from matplotlib.colors import to_hex, to_rgb

from breastseg.evaluation import figures
from breastseg.us.maps import resample_to_square


def _close(fig):
    import matplotlib.pyplot as plt

    plt.close(fig)


def _legend_texts(fig) -> list[str]:
    assert len(fig.legends) == 1
    return [t.get_text() for t in fig.legends[0].get_texts()]


def _mri(n: int = 3, size: int = 24) -> tuple[dict, np.ndarray, np.ndarray]:
    label = np.zeros((n, size, size), np.uint8)
    label[:, 4:12, 4:12] = 1
    label[:, 12:18, 6:14] = 2
    pred = np.roll(label, 2, axis=1)
    data = {"image": np.random.default_rng(0).random((n, 1, size, size), dtype=np.float32), "label": label,
            "spacing_mm": np.full((n, 2), 1.0, np.float32)}
    return data, pred, np.linspace(0.3, 0.9, n)


def _lightness(hex_colour: str) -> float:
    r, g, b = to_rgb(hex_colour)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def test_every_overlay_has_a_legend_of_classes_and_styles():
    data, pred, dice = _mri()
    fig = figures.overlay_plot(data, pred, dice, "t", dataset="mri", class_names=["background", "fgt", "bpe"])
    texts = _legend_texts(fig)
    assert texts == ["non-enhancing FGT", "BPE", figures.TRUTH_STYLE, figures.PRED_STYLE]
    _close(fig)
    # no class names given: the dataset's own
    fig = figures.overlay_plot(data, np.minimum(pred, 1), dice, "t", dataset="us")
    assert _legend_texts(fig)[0] == "mass"
    _close(fig)


def test_class_colours_are_distinct_okabe_ito_and_fgt_bpe_far_apart():
    palette = set(figures.OKABE_ITO.values())
    mri = figures.class_colours(["background", "fgt", "bpe"])
    assert set(mri) == {1, 2} and set(mri.values()) <= palette and len(set(mri.values())) == 2
    assert abs(_lightness(mri[1]) - _lightness(mri[2])) > 0.25  # apart in lightness, not only in hue
    import colorsys

    hues = [colorsys.rgb_to_hsv(*to_rgb(mri[c]))[0] for c in (1, 2)]
    assert min(abs(hues[0] - hues[1]), 1 - abs(hues[0] - hues[1])) > 0.3
    assert figures.class_colours(["background", "mass"])[1] in palette
    many = figures.class_colours(["background", "fgt", "bpe", "mass", "x", "y", "fgt"])
    assert len(set(many.values())) == 6 and set(many.values()) <= palette

    data, pred, dice = _mri()
    fig = figures.overlay_plot(data, pred, dice, "t", dataset="mri", class_names=["background", "fgt", "bpe"])
    legend_colours = [to_hex(h.get_facecolor()[:3]) for h in fig.legends[0].legend_handles[:2]]
    assert [c.lower() for c in legend_colours] == [mri[1].lower(), mri[2].lower()]
    # the prediction's fill is drawn in the class colours
    fill = fig.axes[1].get_images()[1].get_array()
    drawn = {to_hex(px[:3]) for px in np.asarray(fill).reshape(-1, 4) if px[3] > 0}
    assert drawn == {mri[1].lower(), mri[2].lower()}
    _close(fig)


def _us_case(shape=(40, 80), spacing=(0.2, 0.2), size=32, mass=True):
    rng = np.random.default_rng(1)
    native = rng.random(shape).astype(np.float32) * 0.8 + 0.1
    mask = np.zeros(shape, np.uint8)
    if mass:
        mask[5:15, 30:50] = 1
    img, m, s = resample_to_square(native, mask, spacing, size)
    return img, m, s


@pytest.mark.parametrize("with_native", [True, False])
def test_ultrasound_is_drawn_in_its_physical_aspect_without_the_margins(with_native):
    shape, spacing = (40, 80), (0.2, 0.2)  # 8 mm deep, 16 mm wide
    img, m, s = _us_case(shape, spacing)
    data = {"image": img[None, None], "label": m[None], "spacing_mm": np.array([s], np.float32)}
    native = [(shape, spacing)] if with_native else None
    fig = figures.overlay_plot(data, m[None], np.array([1.0]), "t", dataset="us", class_names=["background", "mass"],
                               native=native)
    for ax in fig.axes:
        if not ax.get_images():
            continue
        left, right, bottom, top = ax.get_images()[0].get_extent()
        assert (right - left) / (bottom - top) == pytest.approx(2.0, rel=0.07)  # width : depth of the scan
        assert (right - left) == pytest.approx(16.0, rel=0.07) and top == 0 < bottom  # mm; depth downward
        assert ax.get_aspect() == 1.0
        assert ax.get_images()[0].get_array().shape[:2] == (16, 32)  # the square grid's margins cut off
    _close(fig)
    assert figures.content_box(img[None], (shape, spacing)) == (8, 24, 0, 32)


def test_anisotropic_pixels_are_drawn_with_their_spacing():
    data, pred, dice = _mri(n=1)
    data["spacing_mm"] = np.array([[1.0, 2.0]], np.float32)  # stored axis 0 (display columns) 1 mm, axis 1 2 mm
    fig = figures.overlay_plot(data, pred, dice, "t", dataset="mri", class_names=["background", "fgt", "bpe"])
    left, right, bottom, top = fig.axes[0].get_images()[0].get_extent()
    assert (right - left, bottom - top) == (24.0, 48.0)
    _close(fig)


def test_images_without_a_mass_are_never_ranked_and_false_positives_shown_apart():
    cases = [_us_case(mass=True), _us_case(mass=True), _us_case(mass=False), _us_case(mass=False)]
    image = np.stack([c[0] for c in cases])[:, None]
    label = np.stack([c[1] for c in cases])
    pred = label.copy()
    pred[3, 12:16, 10:20] = 1  # a false positive on an image without a mass
    # per-case Dice as evaluation computes it: no mass and no prediction -> NaN; a false positive -> 0
    dice = np.array([0.5, 0.9, np.nan, 0.0])
    data = {"image": image, "label": label, "spacing_mm": np.full((4, 2), cases[0][2][0], np.float32)}
    picks, fps, n_no_mass = figures._picks(data, pred, dice, "us")
    assert {i for _, i in picks} == {0, 1} and fps == [3] and n_no_mass == 2
    assert [name for name, _ in picks] == ["worst", "median = best"]
    fig = figures.overlay_plot(data, pred, dice, "t", dataset="us", class_names=["background", "mass"])
    titles = [ax.get_title() for ax in fig.axes]
    assert "no mass: false positive (40 px predicted)" in titles
    assert any(t.startswith("worst: truth and prediction (Dice 0.50)") for t in titles)
    assert any("(Dice 0.90)" in t for t in titles) and not any("Dice 0.00" in t or "nan" in t for t in titles)
    assert any("2 image(s) without a mass" in t.get_text() for t in fig.texts)
    _close(fig)

    # no false positives: nothing shown apart, only the note; MRI slices with an undefined Dice are not ranked
    picks, fps, _ = figures._picks(data, label, np.array([0.5, 0.9, np.nan, np.nan]), "us")
    assert fps == [] and {i for _, i in picks} == {0, 1}
    picks, _, n = figures._picks({"label": label}, label, np.array([np.nan, 0.4, 0.6, 0.8]), "mri")
    assert 0 not in {i for _, i in picks} and n == 0 and [n for n, _ in picks] == ["worst", "median", "best"]


def test_overlay_png_is_written_and_native_geometry_read_from_the_converted_scans(tmp_path):
    scan = tmp_path / "interim" / "P1" / "scan-1"
    scan.mkdir(parents=True)
    (scan / "meta.json").write_text(json.dumps({"shape": [40, 80], "spacing_mm": [0.2, 0.2]}))
    native = figures.us_native_geometry(tmp_path / "interim", ["P1", "P2"], ["scan-1", "scan-1"])
    assert native == [((40, 80), (0.2, 0.2)), None]
    img, m, s = _us_case()
    data = {"image": img[None, None], "label": m[None], "spacing_mm": np.array([s], np.float32)}
    out = tmp_path / "overlays.png"
    figures.overlay_figure(data, m[None], np.array([1.0]), out, "t", dataset="us", native=native[:1])
    assert out.read_bytes()[:4] == b"\x89PNG"
