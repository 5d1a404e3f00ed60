"""metrics/<experiment>.json is small and flat (what `dvc metrics diff` / `dvc exp show` compare); the full
summary and the software/hardware environment go to results/<experiment>/evaluation.json."""
import json

import numpy as np

from breastseg.config import experiment
from breastseg.environment import environment, isa_fingerprint, mlflow_tags
from breastseg.evaluation.evaluate import figures_of, headline, score
from breastseg.config import TrackingSettings
from breastseg.config import EvaluationSettings
from breastseg.config import Settings


def _data(classes: int, n_patients: int = 3, known: bool = True, size: int = 32):
    rng = np.random.default_rng(0)
    n = 2 * n_patients
    label = rng.integers(0, classes, (n, size, size)).astype(np.uint8)
    label[:, :4] = 255  # unannotated rows
    noise = rng.integers(0, classes, (n, size, size))
    pred = np.where(rng.random((n, size, size)) < 0.8, label, noise).astype(np.uint8)
    data = {"image": np.zeros((n, 1, size, size), np.float32), "label": label, "case": np.array(["c"] * n),
            "index": np.arange(n, dtype=np.int32), "spacing_mm": np.full((n, 2), 0.5, np.float32),
            "spacing_known": np.full(n, known),
            "patient": np.repeat([f"P{i:012x}" for i in range(n_patients)], 2)}
    return data, pred


def _check_flat(flat: dict) -> None:
    assert 6 <= len(flat) <= 14, sorted(flat)
    for k, v in flat.items():
        assert v is None or isinstance(v, (int, float)) and not isinstance(v, bool), (k, v)
        if isinstance(v, float):
            assert v == round(v, 4), (k, v)
    json.dumps(flat, allow_nan=False)


def test_mri_headline_keys(params):
    exp = experiment(params, "bpe_mri")
    _, patients, summary = score(exp, *_data(3))
    full = figures_of(summary)
    _check_flat(full)
    assert set(full) == {"dice_mean", "dice_fgt", "dice_bpe", "dice_median", "hd95_mm_median_fgt",
                         "hd95_mm_median_bpe", "n_patients", "n_slices", "distances_in_px", "bpe_kappa_linear",
                         "bpe_fraction_mae", "dice_per_slice_mean", "split_by_image"}
    flat = headline(summary)
    _check_flat(flat)
    assert list(flat) == ["dice_mean", "dice_median", "dice_fgt", "dice_bpe", "dice_per_image", "hd95_mm",
                          "n_patients", "split_by_image"]
    assert flat["dice_per_image"] == full["dice_per_slice_mean"]
    assert flat["hd95_mm"] == round((full["hd95_mm_median_fgt"] + full["hd95_mm_median_bpe"]) / 2, 2)
    flat = full
    assert flat["dice_mean"] == round(summary["dice_mean"], 4)
    assert flat["dice_fgt"] == round(summary["dice"]["fgt"], 4)
    per_patient = [np.mean([r["dice_fgt"], r["dice_bpe"]]) for r in patients]
    assert flat["dice_median"] == round(float(np.median(per_patient)), 4)
    assert flat["n_patients"] == 3 and flat["n_slices"] == 6 and flat["distances_in_px"] == 0


def test_ultrasound_headline_in_pixels_when_spacing_unknown(params):
    exp = experiment(params, "mass_us_bmode")
    _, _, summary = score(exp, *_data(2, known=False))
    assert list(headline(summary)) == ["dice_mean", "dice_median", "dice_mass", "dice_per_image", "hd95_px",
                                       "n_patients", "split_by_image"]  # no image without a mass: no FP rate
    flat = figures_of(summary)
    _check_flat(flat)
    assert set(flat) == {"dice_mean", "dice_mass", "dice_median", "hd95_px_median_mass", "n_patients", "n_slices",
                         "distances_in_px", "dice_per_mass_mean", "dice_per_mass_median", "no_mass_fp_rate",
                         "split_by_image"}
    assert flat["distances_in_px"] == 1
    assert flat["hd95_px_median_mass"] == round(summary["per_patient"]["mass"]["hd95_px"]["median"], 4)


def test_environment_records_torch_and_the_relevant_isa_flags(tmp_path):
    import torch

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Test CPU @ 2.0GHz\n"
                       "flags\t\t: fpu sse4_2 avx avx2 avx512f avx512_bf16 amx_tile amx_bf16 ht\n\n"
                       "processor\t: 1\nmodel name\t: Test CPU @ 2.0GHz\nflags\t\t: fpu\n")
    env = environment("bf16-mixed", cpuinfo=cpuinfo)
    assert env["torch"] == torch.__version__ and env["cpu_model"] == "Test CPU @ 2.0GHz"
    assert env["cpu_isa"] == ["amx_bf16", "amx_tile", "avx", "avx2", "avx512_bf16", "avx512f", "sse4_2"]
    assert env["precision"] == "bf16-mixed" and len(env["isa_fingerprint"]) == 12
    assert env["isa_fingerprint"] == environment("32-true", cpuinfo=cpuinfo)["isa_fingerprint"]
    assert isa_fingerprint({**env, "cpu_isa": env["cpu_isa"][:-1]}) != env["isa_fingerprint"]
    assert isa_fingerprint({**env, "torch": "0.0"}) != env["isa_fingerprint"]
    tags = mlflow_tags(env)
    assert tags["breastseg.torch"] == torch.__version__ and tags["breastseg.cpu_model"] == "Test CPU @ 2.0GHz"
    assert tags["breastseg.cpu_isa"] == "amx_bf16,amx_tile,avx,avx2,avx512_bf16,avx512f,sse4_2"
    assert all(isinstance(v, str) for v in tags.values())
    assert environment(cpuinfo=tmp_path / "missing")["cpu_isa"] == []


def test_evaluate_writes_flat_metrics_and_the_full_summary(tmp_path, monkeypatch, params):
    """evaluate_experiment: flat metrics file, evaluation.json with everything and the environment, and an
    MLflow evaluation run with the environment tags and evaluation.json as artifact."""
    import mlflow
    from tiny_setup import make_tiny

    from breastseg.evaluation.evaluate import evaluate_experiment
    from breastseg.models.bundle import bundle_config, write_bundle
    from breastseg.models.factory import build_model
    from breastseg.tracking import configure, init_stores

    monkeypatch.chdir(tmp_path)
    name = "mass_us_bmode"
    p, root = make_tiny(tmp_path, params)
    init_stores(Settings.from_params(p))
    configure(TrackingSettings.from_params(p))
    exp = experiment(p, name)
    bundle = root / "bundle"
    write_bundle(build_model(exp), bundle_config(EvaluationSettings.from_params(p), exp, {}, "run"), bundle)
    client = mlflow.MlflowClient()
    client.create_registered_model(f"breastseg-{name}")
    v = client.create_model_version(f"breastseg-{name}", source=str(bundle), run_id=None).version
    (root / "model.json").write_text(json.dumps({"model_uri": f"models:/breastseg-{name}/{v}", "version": str(v),
                                                 "model_name": f"breastseg-{name}", "run_id": "none"}))
    summary = evaluate_experiment(Settings.from_params(p), name, model_json=root / "model.json", split_file=root / f"data/splits/{name}.json",
                                  processed_dir=root / f"data/processed/{name}", metrics_json=root / "metrics" /
                                  f"{name}.json", out_dir=root / "results" / name)
    flat = json.loads((root / "metrics" / f"{name}.json").read_text())
    _check_flat(flat)
    assert flat == headline(summary) and len((root / "metrics" / f"{name}.json").read_text()) < 500
    full = json.loads((root / "results" / name / "evaluation.json").read_text())
    for key in ("per_patient", "per_slice", "conventions", "test_patients", "model_version", "model_uri"):
        assert key in full, key
    assert full["environment"]["precision"] == exp.train.precision
    run = next(r for r in client.search_runs([client.get_experiment_by_name(name).experiment_id])
               if r.data.tags.get("breastseg.stage") == "evaluate")
    assert run.data.tags["breastseg.isa_fingerprint"] == full["environment"]["isa_fingerprint"]
    assert run.data.tags["breastseg.torch"] and run.data.tags["breastseg.cpu_model"]
    assert "test_dice_mean" in run.data.metrics
    assert "evaluation.json" in [f.path for f in client.list_artifacts(run.info.run_id)]


def test_the_metrics_of_several_seeds_are_their_mean(tmp_path, params):
    from breastseg.evaluation.evaluate import seeds_summary

    exp = experiment(params, "bpe_mri")
    data, pred = _data(3)
    _, _, first = score(exp, data, pred)
    _, _, other = score(exp, data, np.roll(pred, 3, axis=-1))  # another seed's model: other predictions
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "evaluation.json").write_text(json.dumps({**other, "seed": 1}, default=float))
    seeds = seeds_summary(0, figures_of(first), [tmp_path / "1" / "evaluation.json"])
    assert seeds["seeds"] == [0, 1] and seeds["n_seeds"] == 2
    a, b = figures_of(first)["dice_mean"], figures_of(other)["dice_mean"]
    assert seeds["mean"]["dice_mean"] == round((a + b) / 2, 4) and a != b
    assert seeds["mean"]["n_patients"] == 3 and isinstance(seeds["mean"]["split_by_image"], int)
    assert headline(full=seeds["mean"])["dice_mean"] == seeds["mean"]["dice_mean"]
