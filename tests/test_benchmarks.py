"""The benchmark harness: result format, the Markdown table and the quality rows; timings are never asserted."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_cohort  # noqa: E402
import bench_quality  # noqa: E402
import run as harness  # noqa: E402

KEYS = {"name", "ratio", "target", "reference", "detail", "benchmark", "measured"}


def _check_results(out: Path) -> list[dict]:
    rows = json.loads(out.read_text())
    assert isinstance(rows, list) and rows
    for r in rows:
        assert KEYS <= set(r) <= KEYS | {"result"}, r
        assert isinstance(r["name"], str) and r["name"]
        assert r["ratio"] is None or (isinstance(r["ratio"], (int, float)) and r["ratio"] >= 0)
        assert r["target"] is None or r["target"] > 0
        assert isinstance(r["reference"], str) and isinstance(r["detail"], str)
    table = out.with_suffix(".md").read_text().splitlines()
    assert table[0].startswith("Measured ") and "cores" in table[0]
    assert table[2] == "| benchmark | ratio | target | result | reference | detail | measured |"
    body = [line for line in table[4:] if line.startswith("| ")]
    assert len(body) == len(rows)
    for line, r in zip(body, rows):
        assert line.count(" | ") == 6 and r["name"].replace("|", "/") in line and r["measured"] in line
    return rows


def _write_quality_run(root: Path) -> Path:
    (root / "metrics").mkdir(parents=True)
    for exp, dice in {"bpe_mri": 0.8, "mass_us_entropy": 0.75, "mass_us_bmode": 0.6}.items():
        (root / "metrics" / f"{exp}.json").write_text(json.dumps({"dice_mean": dice, "dice": {"x": dice},
                                                                  "n_patients": 12}))
    (root / "results" / "comparisons").mkdir(parents=True)
    (root / "results" / "comparisons" / "entropy_vs_bmode.json").write_text(json.dumps(
        {"a": "mass_us_entropy", "b": "mass_us_bmode",
         "wilcoxon": {"n": 12, "mean_x": 0.75, "mean_y": 0.6, "p_value": 0.01}}))
    return root


def test_quality_rows_give_no_verdict_against_published_real_data(tmp_path):
    rows = {r["name"]: r for r in bench_quality.bench(["--quality-dir", str(_write_quality_run(tmp_path))])}
    for label, dice, published in (("BPE/FGT (MRI)", "0.800", "0.76"), ("US mass, entropy map", "0.750", "0.60"),
                                   ("US mass, B-mode", "0.600", "0.53")):
        r = rows[f"quality: {label} test Dice (synthetic phantoms)"]
        # phantom Dice beside a published real-data Dice: shown, never compared
        assert r["ratio"] is None and r["target"] is None and r["result"] == "not comparable: synthetic vs real"
        assert r["detail"].startswith(f"mean Dice {dice}") and f"published mean Dice {published}" in r["reference"]
        assert "context only" in r["reference"]
    paired = rows["quality: entropy vs B-mode (paired, same patients)"]
    assert paired["ratio"] == pytest.approx(0.6 / 0.75) and paired["target"] is None and "result" not in paired
    assert "+0.150" in paired["detail"] and "not comparable" in paired["reference"]
    ceiling = rows["quality: highest Dice vs the 0.95 ceiling (task difficulty)"]
    assert ceiling["ratio"] == pytest.approx(0.8 / 0.95) and ceiling["detail"].startswith("bpe_mri 0.800")
    verdicts = {name: harness.verdict(harness.normalise(r)) for name, r in rows.items()}
    assert list(verdicts.values()) == ["not comparable: synthetic vs real"] * 3 + ["", "met"]
    assert not any("published" in name for name in rows)


def test_quality_not_measured_without_a_run(tmp_path):
    rows = bench_quality.bench(["--quality-dir", str(tmp_path)]) + bench_quality.bench([])
    assert all(r["ratio"] is None and r["detail"] == "not measured" for r in rows)


def test_table_marks_met_missed_not_measured_and_labels():
    rows = [harness.normalise(r) for r in (
        {"name": "a", "ratio": 0.5, "target": 1.0, "reference": "x", "detail": "d"},
        {"name": "b|c", "ratio": 2.0, "target": 1.0, "reference": "x", "detail": "d"},
        {"name": "q", "ratio": None, "target": 1.0, "reference": "x", "detail": "not measured"},
        {"name": "f", "ratio": float("nan"), "target": None, "reference": None, "detail": "failed: boom"},
        {"name": "n", "ratio": None, "target": None, "reference": "x", "detail": "d", "result": "not comparable"},
        {"name": "e", "ratio": 0.5, "target": None, "reference": "x", "detail": "d", "result": ""})]
    assert "result" in rows[4] and "result" not in rows[5]
    info = {**harness.machine(), "date": "today", "load_before": "1", "load_after": "1", "quick": True}
    lines = harness.markdown(rows, info).splitlines()
    assert [line.split(" | ")[3] for line in lines[4:]] == ["met", "missed", "not measured", "failed",
                                                            "not comparable", ""]
    assert "| b/c |" in lines[5]


def test_harness_writes_json_and_markdown(tmp_path):
    out = tmp_path / "bench" / "results.json"
    quality = _write_quality_run(tmp_path / "quality")
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--only", "quality",
                        "--out", str(out), "--quality-dir", str(quality)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = _check_results(out)
    assert len(rows) == 5 and all(row["ratio"] is not None or row.get("result") for row in rows)
    assert out.with_suffix(".md").read_text().count("| not comparable: synthetic vs real |") == 3


def test_merge_keeps_the_rows_of_benchmarks_not_rerun(tmp_path):
    out = tmp_path / "results.json"
    old = {"name": "entropy map vs skimage", "ratio": 0.03, "target": 0.05, "reference": "skimage", "detail": "x",
           "benchmark": "entropy", "measured": "2026-01-01 00:00 UTC, load 0.1"}
    stale = {**old, "name": "old quality row", "benchmark": "quality"}
    out.write_text(json.dumps([stale, old]))
    out.with_suffix(".md").write_text("Measured 2026-01-01 on 64 cores (Old(R) CPU), 9 GiB RAM, Python 3.0; ...\n")
    quality = _write_quality_run(tmp_path / "quality")
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--only", "quality", "--merge",
                        "--out", str(out), "--quality-dir", str(quality)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = _check_results(out)
    assert rows[0] == old and [row["benchmark"] for row in rows[1:]] == ["quality"] * 5  # in the harness's order
    assert "old quality row" not in out.read_text() and "2026-01-01 00:00 UTC" in out.with_suffix(".md").read_text()
    # the kept rows' machine stays named in the header
    head = out.with_suffix(".md").read_text().splitlines()[0]
    assert "from other machines: 64 cores (Old(R) CPU), 9 GiB RAM." in head


@pytest.mark.slow
def test_quick_benchmarks_run(tmp_path):
    """Every benchmark but the end-to-end pipeline (tests/pipeline/test_e2e.py runs that) in quick mode."""
    out = tmp_path / "results.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--skip", "pipeline",
                        "--out", str(out)], capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = _check_results(out)
    failed = [row for row in rows if row["detail"].startswith("failed")]
    assert not failed, failed
    names = " ".join(row["name"] for row in rows)
    for part in ("dcm2niix", "skimage", "Lightning", "predict", "snakemake -n", "synthetic cohort", "quality",
                 "us-maps", "annotation worklist (entropy) vs random"):
        assert part in names


def test_cohort_benchmark_writes_the_busi_layout_and_rf_files(tmp_path):
    """The generated cohorts are what the readers take: BUSI's folders and names, 0/255 masks, a few
    ``_mask_1.png``; per-patient RF ``.npz``."""
    import numpy as np
    from PIL import Image

    from breastseg.us.readers import read_busi, read_npz

    root = bench_cohort.write_busi_like(tmp_path / "busi", {"benign": 3, "malignant": 2, "normal": 2}, (40, 50))
    us = root / "us"
    assert sorted(p.name for p in us.iterdir()) == ["benign", "malignant", "normal"]
    assert sorted(p.name for p in (us / "normal").iterdir()) == ["normal (1).png", "normal (1)_mask.png",
                                                                  "normal (2).png", "normal (2)_mask.png"]
    image = Image.open(us / "benign" / "benign (1).png")
    mask = np.asarray(Image.open(us / "benign" / "benign (1)_mask.png"))
    assert image.mode == "L" and 36 <= image.size[1] <= 44 and set(np.unique(mask)) == {0, 255}
    assert not np.asarray(Image.open(us / "normal" / "normal (1)_mask.png")).any()
    scans = read_busi(us)
    assert len(scans) == 7 and {s.label_class for s in scans} == {"benign", "malignant", "normal"}
    extra = bench_cohort.write_busi_like(tmp_path / "extra", {"benign": bench_cohort.EXTRA_MASK_EVERY}, (20, 20))
    assert len(list((extra / "us" / "benign").glob("*_mask_1.png"))) == 1

    rf = bench_cohort.write_rf_cohort(tmp_path / "rf", 2, samples=64, lines=8)
    files = sorted((rf / "us").glob("*.npz"))
    assert [f.name for f in files] == ["R0000.npz", "R0001.npz"]
    scan = read_npz(files[0])[0]
    assert scan.rf.shape == (64, 8) and scan.mask.any() and scan.fs == 40e6 and scan.pitch == 3e-4
    with np.load(files[0]) as z:
        assert z["rf"].dtype == np.int16 and set(z.files) == {"rf", "roi", "fs", "f0", "pitch"}


def test_cohort_benchmark_quick(tmp_path):
    """The tiny mode end to end (BUSI-like cohort): workflow `prepared` and one us-maps process, one row."""
    rows = bench_cohort.bench(["--which", "busi", "--keep", str(tmp_path)], quick=True)
    work = list(tmp_path.iterdir())  # --keep: the copy of the repository and the last us-maps output stay
    assert len(work) == 1 and (work[0] / "repo" / "busi.yaml").exists()
    assert len(list((work[0] / "busi-maps").rglob("bmode.npy"))) == 10
    assert len(rows) == 1
    r = harness.normalise(rows[0])
    assert r["name"] == "BUSI-like cohort (10 images) conversion vs one us-maps process" and r["target"] == 1.5
    assert r["ratio"] > 0 and "us-maps --maps bmode" in r["reference"]
    assert re.search(r"convert [1-8] jobs [0-9.]+ job-s, prepare [1-8] jobs", r["detail"]), r["detail"]


def test_pipeline_job_spans_read_a_snakemake_log():
    import bench_pipeline

    log = """[Mon Nov 30 18:44:11 2026]
localcheckpoint synth:
    output: data/raw/demo
    jobid: 4
[Mon Nov 30 18:44:17 2026]
Finished jobid: 4 (Rule: synth)
[Mon Nov 30 18:44:17 2026]
localrule train:
    output: models/a/model.json
    jobid: 7
    wildcards: experiment=bpe_mri
[Mon Nov 30 18:44:18 2026]
rule train:
    jobid: 8
    wildcards: experiment=mass_us_bmode
[Mon Nov 30 18:44:40 2026]
Finished jobid: 8 (Rule: train)
[Mon Nov 30 18:45:17 2026]
Finished jobid: 7 (Rule: train)
"""
    spans = bench_pipeline.job_spans(log)
    assert spans == [(0.0, 6.0, "synth", ""), (6.0, 66.0, "train", "experiment=bpe_mri"),
                     (7.0, 29.0, "train", "experiment=mass_us_bmode")]
    line = bench_pipeline.summarise_jobs(spans)
    assert line.startswith("job-seconds by rule: train 82, synth 6 (all 88)")
    assert "critical path: train bpe_mri 60 s, synth 6 s" in line


def test_committed_table_gives_no_verdict_against_published_real_data_figures():
    """Phantom Dice is not comparable with Dice published on real patients: no committed row that quotes a
    published figure has a target or a met/missed result, and the README's table is the committed one."""
    root = Path(__file__).resolve().parents[1]
    rows = json.loads((root / "benchmarks" / "results.json").read_text())
    quoting = [r for r in rows if "published" in (r.get("reference") or "").lower()]
    assert quoting, "the quality rows quote the published figures as context"
    for r in quoting:
        assert r["target"] is None, r["name"]
        assert "not comparable" in (r.get("result") or "") + r["reference"], r["name"]
    table = (root / "benchmarks" / "results.md").read_text().split("\n", 1)[1].strip()
    assert table in (root / "README.md").read_text()


def test_busi_row_targets_say_by_how_much_each_is_missed():
    import bench_busi

    rows = bench_busi.target_rows({"dice_mean": 0.7512, "no_mass_fp_rate": 0.1, "run_minutes": 50.0})
    assert rows["dice_mean"] == {"figure": 0.7512, "target": 0.80, "direction": ">=", "met": False,
                                 "missed_by": 0.0488}
    assert rows["no_mass_fp_rate"]["met"] is True and rows["no_mass_fp_rate"]["missed_by"] == 0.0
    assert rows["run_minutes"]["met"] is False and rows["run_minutes"]["missed_by"] == 5.0
    assert bench_busi.target_rows({"dice_mean": None})["dice_mean"]["met"] is None


def test_busi_bench_refuses_a_folder_that_is_not_busi(tmp_path, capsys):
    import bench_busi

    (tmp_path / "benign").mkdir()
    assert bench_busi.main(["--busi", str(tmp_path), "--out", str(tmp_path / "row.json")]) == 2
    assert "not a BUSI snapshot" in capsys.readouterr().err and not (tmp_path / "row.json").exists()


def test_busi_row_prices_the_next_hundredth_from_the_curve_it_ended_on():
    import bench_busi

    curve = [{"epoch": e, "val_dice": 0.5 + 0.002 * e} for e in range(40)]   # 0.002 per epoch at the end
    got = bench_busi.next_hundredth(curve, train_seconds=40 * 30.0)
    assert got["slope_per_epoch"] == pytest.approx(0.002) and got["epochs"] == pytest.approx(5.0)
    assert got["minutes"] == pytest.approx(2.5) and got["over_last_epochs"] == 20
    flat = [{"epoch": e, "val_dice": 0.7} for e in range(10)]
    assert bench_busi.next_hundredth(flat, 100.0)["epochs"] is None   # a flat curve: no price


def test_committed_busi_row_is_the_readme_table_and_measured_on_the_committed_recipe():
    """The README's BUSI figures are the committed row's (benchmarks/busi.md rendered from busi.json), and that row
    was measured with the recipe configs/busi.yaml holds now (same settings at the row's commit)."""
    import bench_busi
    import yaml

    row = json.loads((ROOT / "benchmarks" / "busi.json").read_text())
    table = (ROOT / "benchmarks" / "busi.md").read_text()
    assert bench_busi.markdown(row) == table
    assert table.strip() in (ROOT / "README.md").read_text()
    for key in ("command", "commit", "machine", "date", "load"):
        assert row[key], key
    then = subprocess.run(["git", "show", f"{row['commit']}:configs/busi.yaml"], cwd=ROOT, capture_output=True,
                          text=True)
    if then.returncode != 0:
        pytest.skip("the row's commit is not in this clone's history")
    assert yaml.safe_load(then.stdout) == yaml.safe_load((ROOT / "configs" / "busi.yaml").read_text())
    assert row["validation"]["gate"]["decided_on"] == "val"   # chosen on validation; test only reported
