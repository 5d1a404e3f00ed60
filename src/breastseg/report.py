"""One-page HTML summary of all experiments: test metrics, model versions, champion gate, comparisons, figures.

Reads each experiment's ``results/<experiment>/evaluation.json`` (the full evaluation summary; given a flat
``metrics/<experiment>.json`` instead, the evaluation file beside its results is read) and ``decision.json``.
"""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from .evaluation.figures import display_name
from .evaluation.metrics import SPLIT_BY_IMAGE_WARNING
from .io import atomic_path
from .labels import BPE_CATEGORY_NAMES

CAPTIONS = {
    "overlays.png": "Worst, median and best test slices by Dice: image, ground truth, prediction.",
    "dice_boxplot.png": "Dice per test patient, per foreground class.",
    "bpe_calibration.png": "BPE area fraction (BPE / all fibroglandular tissue) per test patient, predicted vs ground "
                           "truth, with the area-category cut-offs.",
}


def _f(v: Any, digits: int = 3) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return html.escape(str(v))


def _img(path: Path, alt: str, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return (f"<figure><img alt='{html.escape(alt)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def learning_curves_png(curves: list[Path]) -> bytes | None:
    """Validation Dice and the two losses per epoch of each experiment's final training (its ``learning_curve.csv``,
    the file ``dvc plots show`` draws), as one PNG: the same curves, offline."""
    import csv
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .evaluation.figures import OKABE_ITO

    series = {}
    for f in curves:
        with open(f, newline="") as fh:
            rows = list(csv.DictReader(fh))
        if rows:
            series[Path(f).parent.name] = rows
    if not series:
        return None
    colours = list(OKABE_ITO.values())
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), dpi=100)
    for i, (name, rows) in enumerate(sorted(series.items())):
        colour = colours[i % len(colours)]

        def col(key: str) -> tuple[list[int], list[float]]:
            pts = [(int(r["epoch"]), float(r[key])) for r in rows if r.get(key) not in (None, "")]
            return [e for e, _ in pts], [v for _, v in pts]

        axes[0].plot(*col("val_dice"), color=colour, marker="o", ms=3, label=name)
        axes[1].plot(*col("train_loss"), color=colour, label=f"{name} train")
        axes[1].plot(*col("val_loss"), color=colour, linestyle="--", label=f"{name} val")
    axes[0].set(xlabel="epoch", ylabel="validation Dice (selection metric)", ylim=(0, 1))
    axes[1].set(xlabel="epoch", ylabel="loss (Dice + cross-entropy)")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _distance(stats: dict[str, Any], metric: str) -> str:
    """Median over patients with its unit: mm where the pixel spacing is known, px (source pixels) where not."""
    cells = [f"{_f(stats[f'{metric}_{u}']['median'], 2)} {u}" for u in ("mm", "px") if f"{metric}_{u}" in stats]
    return " / ".join(cells) or "n/a"


def _experiment_rows(m: dict[str, Any], decision: dict[str, Any]) -> str:
    rows = []
    for cls, stats in m.get("per_patient", {}).items():
        d = stats["dice"]
        ci = d.get("ci95") or [None, None]
        rows.append(f"<tr><td>{html.escape(m['experiment'])}</td><td>{html.escape(display_name(cls))}</td>"
                    f"<td>{_f(d['mean'])} "
                    f"[{_f(ci[0])}, {_f(ci[1])}]</td><td>{_f(d['median'])}</td><td>{_f(d['std'])}</td>"
                    f"<td>{_f(stats['precision']['mean'])}</td><td>{_f(stats['recall']['mean'])}</td>"
                    f"<td>{_distance(stats, 'hd95')}</td><td>{_distance(stats, 'asd')}</td><td>{m.get('n_patients')}</td>"
                    f"<td>v{_f(m.get('model_version'))}</td><td>{_gate(decision)}</td></tr>")
    return "".join(rows)


def _gate(decision: dict[str, Any]) -> str:
    """The gate's outcome with both validation scores (the test set decides nothing)."""
    if not decision:
        return "n/a"
    ch, before = decision["challenger"], decision["champion_before"]
    on = f" on {decision['n']} {decision.get('decided_on', 'val')} patients" if decision.get("n") else ""
    if decision.get("comparable") is False:
        return f"kept v{_f(before['version'])} (not compared: {_f(decision.get('reason'))})"
    if decision["promoted"]:
        return (f"promoted v{ch['version']} ({_f(ch['score'])}"
                + (f" vs v{before['version']} {_f(before['score'])})" if before["version"] else ", first champion)")
                + on)
    return f"kept v{before['version']} ({_f(before['score'])} vs challenger {_f(ch['score'])}){on}"


def _bpe(m: dict[str, Any]) -> str:
    b = m.get("bpe")
    if not b:
        return ""
    labels = list(BPE_CATEGORY_NAMES)[: len(b["confusion_matrix"])]
    head = "".join(f"<th>pred {html.escape(l)}</th>" for l in labels)
    body = "".join(f"<tr><th>true {html.escape(labels[i])}</th>" + "".join(f"<td>{v}</td>" for v in row) + "</tr>"
                   for i, row in enumerate(b["confusion_matrix"]))
    return (f"<h3>{html.escape(m['experiment'])}: BPE area fraction and area category ({b['n']} test patients)</h3>"
            f"<p>Area category: linear-weighted Cohen's kappa {_f(b['kappa_linear'])}, accuracy "
            f"{_f(b['category_accuracy'])}; mean absolute error of the BPE area fraction {_f(b['fraction_mae'])} "
            f"(cut-offs {', '.join(_f(c, 2) for c in b['cutoffs'])}). The BPE area fraction is BPE over all "
            "fibroglandular tissue (non-enhancing FGT + BPE) by area; its area category bins it at the cut-offs and "
            "is not the radiologist's BPE category.</p>"
            f"<table><tr><th></th>{head}</tr>{body}</table>")


def _split_note(metrics: list[dict[str, Any]]) -> str:
    """The warning for experiments whose split could not tell women apart (evaluation's ``split_check``)."""
    out = []
    for m in metrics:
        split = m.get("split") or {}
        if split.get("by_image"):
            out.append(f"<p class='warning'><b>{html.escape(m['experiment'])}: "
                       f"{html.escape(split.get('warning') or SPLIT_BY_IMAGE_WARNING)}</b>"
                       + (f" ({html.escape(split['reason'])})" if split.get("reason") else "") + ".</p>")
    return "".join(out)


def _conventions_table(metrics: list[dict[str, Any]]) -> str:
    """Mean and median Dice per patient (ours) beside the published conventions: per slice (MRI), per mass
    (ultrasound), and the ultrasound images without a mass."""
    rows = []
    for m in metrics:
        side = m.get("conventions_side_by_side")
        if not side:
            continue
        unit = "mass" if "per_mass" in side else "slice"
        pp, pi = side["per_patient"], side[f"per_{unit}"]
        nm = m.get("no_mass_images")
        no_mass = (f"{_f(nm['fp_rate'])} ({nm['with_predicted_mass']} of {nm['n']})" if nm and nm["n"] else
                   ("none" if nm else "n/a"))
        rows.append(f"<tr><td>{html.escape(m['experiment'])}</td><td>{_f(pp['mean'])}</td><td>{_f(pp['median'])}</td>"
                    f"<td>{pp['n']}</td><td>per {unit}</td><td>{_f(pi['mean'])}</td><td>{_f(pi['median'])}</td>"
                    f"<td>{pi['n']}</td><td>{no_mass}</td></tr>")
    if not rows:
        return ""
    return ("<h2>Dice by convention</h2><p>Per patient (ours: the headline above) and as the published studies "
            "report it: per slice (MRI) and per mass (ultrasound, one mass per scan). Ultrasound images without a "
            "mass are not scored for Dice; their image-level false-positive rate is the share with any predicted "
            "mass pixel.</p><table><tr><th>experiment</th><th>per patient mean</th><th>median</th><th>patients</th>"
            "<th>convention</th><th>mean</th><th>median</th><th>images</th><th>no-mass images: false-positive rate"
            "</th></tr>" + "".join(rows) + "</table>")


def _units_note(metrics: list[dict[str, Any]]) -> str:
    px = [m["experiment"] for m in metrics if "px" in (m.get("distance_units") or {})]
    if not px:
        return ""
    return (f"<p class='units'><b>Pixel spacing unknown</b> for test images of {html.escape(', '.join(px))}: their "
            "HD95 and ASD are in pixels of the source image (px), not millimetres.</p>")


def _comparison(c: dict[str, Any]) -> str:
    w = c["wilcoxon"]
    p = w.get("p_value")
    return (f"<h3>{html.escape(c['comparison'])}: {html.escape(c['a'])} vs {html.escape(c['b'])}</h3>"
            "<table><tr><th>input</th><th>mean Dice</th><th>median Dice</th><th>test patients</th><th>model</th></tr>"
            f"<tr><td>{html.escape(c['a'])}</td><td>{_f(w['mean_x'])}</td><td>{_f(w['median_x'])}</td>"
            f"<td>{w['n']}</td><td>v{_f(c['model_versions'].get(c['a']))}</td></tr>"
            f"<tr><td>{html.escape(c['b'])}</td><td>{_f(w['mean_y'])}</td><td>{_f(w['median_y'])}</td>"
            f"<td>{w['n']}</td><td>v{_f(c['model_versions'].get(c['b']))}</td></tr></table>"
            + _difference(c)
            + f"<p>Paired Wilcoxon signed-rank test on per-patient Dice (first seed): "
            f"p = {'n/a' if p is None else f'{p:.4g}'}"
            + (f" ({html.escape(w['note'])})" if w.get("note") else "") + _per_seed_p(c) + ".</p>")


def _per_seed_p(c: dict[str, Any]) -> str:
    rows = c.get("per_seed") or []
    if len(rows) < 2:
        return ""
    return "; per seed: " + ", ".join(
        f"seed {r['seed']} p = {'n/a' if r.get('wilcoxon_p') is None else format(r['wilcoxon_p'], '.4g')}" for r in rows)


def _difference(c: dict[str, Any]) -> str:
    """The mean paired difference with its interval over patients and seeds."""
    d = c.get("difference")
    if not d or d.get("mean") is None:
        return ""
    ci = "n/a" if d.get("ci_low") is None else f"{d['ci_low']:+.3f} to {d['ci_high']:+.3f}"
    return (f"<p><b>Mean paired difference {html.escape(d['of'])}: {d['mean']:+.3f}</b> (95 % interval {ci}; "
            f"{d['n_patients']} test patients x {d['n_seeds']} training seed(s); {html.escape(d['method'])})"
            + (f". {html.escape(d['note'])}" if d.get("note") else "") + ".</p>")


def _evaluation(path: Path, results_dir: Path) -> dict[str, Any]:
    """An experiment's full evaluation summary: ``path`` itself, or for a flat metrics file the
    ``results/<experiment>/evaluation.json`` it heads."""
    doc = json.loads(Path(path).read_text())
    if "per_patient" not in doc and (results_dir / Path(path).stem / "evaluation.json").exists():
        doc = json.loads((results_dir / Path(path).stem / "evaluation.json").read_text())
    return doc


def write_summary(cohort: str, evaluation_files: list[Path], out: Path,
                  results_dir: Path = Path("results"), curves: list[Path] | None = None) -> Path:
    """Write ``out`` (self-contained HTML, figures inline: it opens offline) for ``cohort`` from ``results/<experiment>/
    evaluation.json`` files; ``curves``: the final trainings' ``learning_curve.csv`` files, drawn as one figure."""
    metrics = sorted((_evaluation(Path(f), results_dir) for f in evaluation_files), key=lambda m: m["experiment"])
    rows, bpe, figures = [], [], []
    for m in metrics:
        name = m["experiment"]
        dfile = results_dir / name / "decision.json"
        rows.append(_experiment_rows(m, json.loads(dfile.read_text()) if dfile.exists() else {}))
        bpe.append(_bpe(m))
        for fname, caption in CAPTIONS.items():
            if (results_dir / name / fname).exists():
                figures.append(_img(results_dir / name / fname, f"{name} {fname}", f"{name}: {caption}"))
    comparisons = [json.loads(f.read_text()) for f in sorted((results_dir / "comparisons").glob("*.json"))]
    for c in comparisons:
        png = results_dir / "comparisons" / f"{c['comparison']}.png"
        if png.exists():
            figures.append(_img(png, f"{c['comparison']} box plot", f"{c['comparison']}: per-patient Dice, same test "
                                "patients."))
    png = learning_curves_png(list(curves or []))
    if png is not None:
        data = base64.b64encode(png).decode()
        figures.append(f"<figure><img alt='learning curves' src='data:image/png;base64,{data}'><figcaption>Learning "
                       "curves of the final trainings: validation Dice per epoch (checkpoints and early stopping "
                       "follow it), training and validation loss.</figcaption></figure>")
    conventions = metrics[0].get("conventions") if metrics else None
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>breastseg summary</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:80em}} table{{border-collapse:collapse;margin:0.5em 0}}
td,th{{border:1px solid #ccc;padding:3px 7px;text-align:left}} figure{{display:inline-block;margin:0.5em;
vertical-align:top}} figcaption{{font-size:0.85em;max-width:36em}}</style></head><body>
<h1>breastseg: experiment summary</h1>
<p>Cohort <b>{html.escape(cohort)}</b>. Test patients only. Dice per patient (pixels of all its
annotated slices pooled; ultrasound: of its images with a mass): mean [95 % bootstrap CI], median, std over patients; HD95 and ASD as the median over
patients, in millimetres (mm) where the images store their pixel spacing, in pixels of the source image (px)
where they do not. Champion gate: challenger and champion scored on the same validation patients, each
through its own preprocessing; the test patients decide nothing.</p>{_split_note(metrics)}{_units_note(metrics)}
<table><tr><th>experiment</th><th>class</th><th>Dice mean [CI]</th><th>median</th><th>std</th><th>precision</th>
<th>recall</th><th>HD95</th><th>ASD</th><th>patients</th><th>challenger</th><th>champion gate</th></tr>
{''.join(rows)}
</table>
{_conventions_table(metrics)}
{''.join(_comparison(c) for c in comparisons)}
{''.join(bpe)}
<h2>Figures</h2>
{''.join(figures)}
<h2>Conventions</h2><pre>{html.escape(json.dumps(conventions, indent=1) if conventions else 'n/a')}</pre>
</body></html>
"""
    with atomic_path(out) as tmp:
        tmp.write_text(page)
    return out
