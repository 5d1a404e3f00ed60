"""Public ultrasound layouts through Snakemake: BUSI (B-mode only) and OASBUD (.mat RF), and the one-line refusals."""
import json
from pathlib import Path

import pytest
from workspace import _copy_repo, _snakemake
from us_cohorts import write_busi_cohort, write_oasbud_cohort


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return _copy_repo(tmp_path_factory.mktemp("us-cohorts") / "repo")


def _config(repo: Path, name: str, text: str) -> str:
    (repo / f"{name}.yaml").write_text(text)
    return f"{name}.yaml"


def _one_error_line(r) -> str:
    assert r.returncode == 2
    lines = [line for line in r.stderr.splitlines() if "breastseg: error" in line]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    return lines[0]


def test_entropy_on_bmode_only_cohort_stops_at_dag_build(repo):
    write_busi_cohort(repo / "data" / "raw" / "busi-x", n=3)
    cfg = _config(repo, "busi-x", "cohort: {name: busi-x, root: data/raw/busi-x}\n"
                                  "run: {experiments: [mass_us_entropy, mass_us_bmode]}\n")
    line = _one_error_line(_snakemake(repo, "-n", "--configfile", cfg))
    assert "cohort 'busi-x'" in line and "mass_us_entropy needs raw RF" in line and "[mass_us_bmode]" in line


def test_cohort_without_patients_stops_at_dag_build(repo):
    (repo / "data" / "raw" / "empty" / "us").mkdir(parents=True)
    cfg = _config(repo, "empty", "cohort: {name: empty, root: data/raw/empty}\nrun: {experiments: [mass_us_bmode]}\n")
    line = _one_error_line(_snakemake(repo, "-n", "--configfile", cfg))
    assert "data/raw/empty/us" in line and "no US patient found for mass_us_bmode" in line and "BUSI" in line
    line = _one_error_line(_snakemake(repo, "-n", "--configfile", cfg, "--config", "run={'experiments': ['bogus']}"))
    assert "run.experiments names 'bogus'" in line


def _run_cohort(repo: Path, name: str, config: str, *configs: str) -> dict:
    """Run the pipeline with ``configs`` (files of the repository) and then ``config`` (written as <name>.yaml)."""
    cfg = _config(repo, name, config)
    r = _snakemake(repo, "--configfile", *configs, cfg)
    assert r.returncode == 0, r.stderr[-5000:]
    dry = _snakemake(repo, "-n", "--configfile", *configs, cfg)
    assert dry.returncode == 0 and "Nothing to be done" in dry.stdout + dry.stderr
    # every figure of each experiment that ran: results/<experiment>/evaluation.json (metrics/ holds the headline)
    return {p.stem: {**json.loads((repo / "results" / p.stem / "evaluation.json").read_text()),
                     "headline": json.loads(p.read_text())} for p in (repo / "metrics").glob("*.json")}


@pytest.mark.slow
def test_busi_recipe_runs_through_snakemake(tmp_path):
    """configs/busi.yaml (the BUSI recipe: DynUNet with deep supervision, SGD + poly, z-score, test-time mirroring,
    post-processing chosen on validation) on a BUSI-like cohort in the public snapshot's layout, made tiny."""
    repo = _copy_repo(tmp_path / "repo")
    write_busi_cohort(repo / "data" / "raw" / "busi", n=8, normal=3, layout="snapshot")
    metrics = _run_cohort(repo, "busi-tiny", "experiments:\n  mass_us_bmode: {image_size: 32, model: {features: [8, 16, 32]},"
                                             " train: {max_epochs: 2, batch_size: 4}}\n", "configs/busi.yaml")
    assert list(metrics) == ["mass_us_bmode"]  # only the chosen experiment ran
    m = metrics["mass_us_bmode"]
    bundle = json.loads((repo / "models" / "mass_us_bmode" / "inference" / "config.json").read_text())
    assert bundle["experiment"]["model"] == {"name": "dynunet", "features": [8, 16, 32], "deep_supervision": True}
    assert bundle["experiment"]["preprocess"] == {"aspect": "keep", "normalization": "zscore"}
    assert bundle["inference"]["tta"] is True and bundle["inference"]["mirror"] == ["lr"]
    assert "auto" not in {str(bundle["inference"][k]) for k in ("keep_largest", "min_component", "empty_below")}
    chosen = json.loads((repo / "models" / "mass_us_bmode" / "postprocessing.json").read_text())
    assert set(chosen["validation"]["tried"]) == {"keep_largest", "min_component", "empty_below"}
    # scored on each image's own grid (48 x 64 PNGs), the network grid's figure beside it
    assert m["n_patients"] >= 1 and 0 <= m["dice_mean"] <= 1 and "dice_mean" in m["network_grid"]
    # BUSI PNGs store no pixel spacing: distances in source pixels, named so, and said so on the summary page.
    assert set(m["per_patient"]["mass"]) >= {"hd95_px", "asd_px"} and "hd95_mm" not in m["per_patient"]["mass"]
    assert "hd95_px" in m["headline"] and "hd95_mm" not in m["headline"]
    # BUSI images are split one by one without a patient map: the metrics say the split may leak
    assert m["headline"]["split_by_image"] == 1
    assert "Pixel spacing unknown" in (repo / "results" / "summary.html").read_text()
    converted = sorted((repo / "data" / "interim" / "us").glob("P*"))
    assert len(converted) == 11 and not (repo / "data" / "interim" / "mri").exists()
    assert len(list((repo / "data" / "interim" / "us").glob("shard-*.json"))) <= 8  # one job per shard, not per image
    for d in converted:  # pseudonymised: no file name of the cohort in the converted scans
        meta = (d / "scan-1" / "meta.json").read_text()
        assert "(" not in meta and ".png" not in meta  # BUSI names look like "benign (3).png"
        assert (d / "scan-1" / "bmode.npy").exists() and not (d / "scan-1" / "entropy.npy").exists()


@pytest.mark.slow
def test_oasbud_mat_runs_through_snakemake(tmp_path):
    repo = _copy_repo(tmp_path / "repo")
    root = write_oasbud_cohort(repo / "data" / "raw" / "oasbud", n=7)
    (root / "us" / "patients.csv").write_text("id,patient\nL100,woman-1\nL101,woman-1\n")
    metrics = _run_cohort(repo, "oasbud", "cohort: {name: oasbud, root: data/raw/oasbud, "
                                          "patient_map: data/raw/oasbud/us/patients.csv}\n"
                                          "run: {experiments: [mass_us_entropy, mass_us_bmode]}\n")
    assert sorted(metrics) == ["mass_us_bmode", "mass_us_entropy"]
    assert metrics["mass_us_entropy"]["test_patients"] == metrics["mass_us_bmode"]["test_patients"]
    assert "hd95_mm" in metrics["mass_us_entropy"]["per_patient"]["mass"]  # RF: spacing known
    scans = sorted(len(list(d.glob("scan-*"))) for d in (repo / "data" / "interim" / "us").glob("P*"))
    assert scans == [2] * 5 + [4]  # 7 lesions, two of one woman: 6 patients, two views per lesion
    split = json.loads((repo / "data" / "splits" / "mass_us_entropy.json").read_text())["patients"]
    assert len(split) == 6
    assert (repo / "results" / "comparisons" / "entropy_vs_bmode.json").exists()
