"""The one-page summary: content from results/<experiment>/evaluation.json and decision.json, and figures that
render in a real browser."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from breastseg.evaluation import figures
from breastseg.evaluation.metrics import SPLIT_BY_IMAGE_WARNING
from breastseg.report import write_summary


def _stats(mean):
    return {"n": 3, "n_undefined": 0, "mean": mean, "median": mean, "std": 0.1, "ci95": [mean - 0.1, mean + 0.1]}


@pytest.fixture
def results(tmp_path, params):
    res = tmp_path / "results"
    metrics = []
    for name, classes in (("bpe_mri", ["fgt", "bpe"]), ("mass_us_entropy", ["mass"]), ("mass_us_bmode", ["mass"])):
        (res / name).mkdir(parents=True)
        per_patient = {c: {"dice": _stats(0.8), "precision": _stats(0.7), "recall": _stats(0.9),
                           "hd95_mm": _stats(3.0), "asd_mm": _stats(1.0)} for c in classes}
        m = {"experiment": name, "dice_mean": 0.8, "per_patient": per_patient, "n_patients": 3, "model_version": "2",
             "conventions": {"dice": "both empty: undefined"}}
        if name == "bpe_mri":
            m["bpe"] = {"cutoffs": [0.25, 0.5, 0.75], "n": 3, "kappa_linear": 0.5, "category_accuracy": 0.67,
                        "fraction_mae": 0.1, "confusion_matrix": [[1, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]]}
            figures.calibration_plot([0.1, 0.4, 0.6], [0.2, 0.4, 0.7], [0.25, 0.5, 0.75], res / name /
                                     "bpe_calibration.png", "calibration")
        figures.box_plot({c: [0.7, 0.8, 0.9] for c in classes}, res / name / "dice_boxplot.png", name)
        unit = "slice" if name == "bpe_mri" else "mass"
        m["conventions_side_by_side"] = {"per_patient": {"mean": 0.8, "median": 0.81, "n": 3},
                                         f"per_{unit}": {"mean": 0.74, "median": 0.77, "n": 9}}
        if unit == "mass":
            m["no_mass_images"] = {"n": 4, "with_predicted_mass": 1, "fp_rate": 0.25}
        if name == "mass_us_bmode":  # e.g. BUSI without a patient map
            m["split"] = {"by_image": True, "warning": SPLIT_BY_IMAGE_WARNING,
                          "reason": "cohort.patient_map is not set and 3 of 3 patients are single BUSI images"}
        comparable = name != "mass_us_entropy"
        (res / name / "decision.json").write_text(json.dumps({
            "promoted": name == "bpe_mri", "decided_on": "val", "n": 4, "comparable": comparable,
            "reason": None if comparable else "champion v1 was trained on maps with entropy_on=bmode; today's maps "
                                              "use entropy_on=envelope: not compared, not promoted",
            "challenger": {"version": "2", "score": 0.8},
            "champion_before": {"version": "1", "score": 0.85 if name == "mass_us_bmode" else 0.7}}))
        f = res / name / "evaluation.json"
        f.write_text(json.dumps(m))
        metrics.append(f)
    (res / "comparisons").mkdir()
    (res / "comparisons" / "entropy_vs_bmode.json").write_text(json.dumps({
        "comparison": "entropy_vs_bmode", "a": "mass_us_entropy", "b": "mass_us_bmode",
        "model_versions": {"mass_us_entropy": "2", "mass_us_bmode": "1"},
        "wilcoxon": {"n": 3, "mean_x": 0.61, "median_x": 0.71, "mean_y": 0.53, "median_y": 0.59, "p_value": 0.0123}}))
    out = write_summary(params["cohort"]["name"], metrics, tmp_path / "summary.html", results_dir=res)
    return out


def test_summary_holds_every_number_people_ask_for(results):
    page = results.read_text()
    for text in ("bpe_mri", "mass_us_entropy", "0.800 [0.700, 0.900]", "kappa 0.500", "p = 0.0123", "0.610",
                 "0.590", "kept v1 (0.850 vs challenger 0.800) on 4 val patients",
                 "promoted v2 (0.800 vs v1 0.700) on 4 val patients", "true mild",
                 "kept v1 (not compared: champion v1 was trained on maps with entropy_on=bmode"):
        assert text in page, text
    assert page.count("<img") == 4
    assert "the test patients decide nothing" in page


def test_summary_names_classes_conventions_and_a_split_that_may_leak(results):
    page = results.read_text()
    assert "<td>non-enhancing FGT</td>" in page and "<td>BPE</td>" in page and "<td>fgt</td>" not in page
    assert "BPE area fraction and area category" in page and "not the radiologist's BPE category" in page
    # the papers' conventions beside ours, and the no-mass images apart
    assert "Dice by convention" in page and "<td>per slice</td><td>0.740</td><td>0.770</td>" in page
    assert "<td>per mass</td>" in page and "0.250 (1 of 4)" in page
    # a split by image is said on the page, for that experiment only
    assert page.count(SPLIT_BY_IMAGE_WARNING) == 1
    assert f"mass_us_bmode: {SPLIT_BY_IMAGE_WARNING}" in page


def test_summary_reads_the_evaluation_beside_a_flat_metrics_file(results, tmp_path, params):
    """`breastseg report metrics/*.json` still works: a flat file points at results/<experiment>/evaluation.json."""
    flat = tmp_path / "metrics"
    flat.mkdir()
    for name in ("bpe_mri", "mass_us_entropy", "mass_us_bmode"):
        (flat / f"{name}.json").write_text(json.dumps({"dice_mean": 0.8, "n_patients": 3}))
    out = write_summary(params["cohort"]["name"], sorted(flat.glob("*.json")), tmp_path / "again.html", results_dir=tmp_path / "results")
    assert out.read_text() == results.read_text()


@pytest.mark.skipif(not (shutil.which("chromium") and shutil.which("chromedriver")),
                    reason="needs Debian chromium and chromium-driver (make test installs them as root)")
def test_summary_figures_render_in_headless_chromium(results):
    import os

    os.environ.setdefault("SE_OFFLINE", "true")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=shutil.which("chromedriver")))
    try:
        driver.get(Path(results).as_uri())
        widths = driver.execute_script(
            "return Array.from(document.images).map(i => i.complete ? i.naturalWidth : -1)")
        assert len(widths) == 4 and all(w > 100 for w in widths), widths
        assert "breastseg: experiment summary" in driver.find_element("tag name", "h1").text
        assert np.all([c.text for c in driver.find_elements("tag name", "figcaption")])
    finally:
        driver.quit()


def test_summary_page_works_offline(results):
    """Everything the page shows is inside it (figures as data: URIs, no script or stylesheet to fetch): it opens
    the same on a machine without internet, unlike `dvc plots show`'s page, which loads vega from a CDN."""
    from html.parser import HTMLParser

    refs: list[tuple[str, str, str]] = []

    class Refs(HTMLParser):
        def handle_starttag(self, tag, attrs):
            refs.extend((tag, k, v or "") for k, v in attrs if k in ("src", "href", "data", "srcset", "action"))

    Refs().feed(results.read_text())
    assert refs and all(tag == "img" and k == "src" and v.startswith("data:image/png;base64,")
                        or tag == "a" and k == "href" and not v.startswith(("http:", "https:", "//"))
                        for tag, k, v in refs), refs
    assert "<script" not in results.read_text() and "@import" not in results.read_text()


def test_summary_draws_the_learning_curves_dvc_plots_draws(results, params, tmp_path):
    import base64
    import re

    from breastseg.report import write_summary

    curves = []
    for name, dice in (("bpe_mri", "0.41"), ("mass_us_bmode", "0.63")):
        f = tmp_path / "plots" / name / "learning_curve.csv"
        f.parent.mkdir(parents=True)
        f.write_text(f"epoch,train_loss,val_loss,val_dice\n0,1.2,1.1,0.20\n1,0.9,0.95,{dice}\n")
        curves.append(f)
    res = results.parent / "results"
    evaluations = sorted(res.glob("*/evaluation.json"))
    page = write_summary(params["cohort"]["name"], evaluations, tmp_path / "with.html", results_dir=res, curves=curves).read_text()
    assert page.count("<img") == results.read_text().count("<img") + 1
    png = re.search(r"<img alt='learning curves' src='data:image/png;base64,([^']+)'", page).group(1)
    assert base64.b64decode(png)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "validation Dice per epoch" in page
