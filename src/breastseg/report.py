"""One-page HTML summary comparing all experiments: test Dice, model versions, champion decisions, figures."""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from .io import atomic_path


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else html.escape(str(v))


def write_summary(params: dict[str, Any], metrics_files: list[Path], out: Path) -> Path:
    """Write ``out`` (HTML): one row per experiment, then each experiment's overlay figure inline."""
    rows, figures = [], []
    for f in sorted(metrics_files):
        m = json.loads(Path(f).read_text())
        name = m["experiment"]
        decision_file = Path("results") / name / "decision.json"
        decision = json.loads(decision_file.read_text()) if decision_file.exists() else {}
        per_class = ", ".join(f"{k} {_fmt(v)}" for k, v in m.get("dice", {}).items())
        rows.append(f"<tr><td>{html.escape(name)}</td><td>{_fmt(m.get('dice_mean'))}</td><td>{per_class}</td>"
                    f"<td>{m.get('n_patients')}</td><td>{m.get('n_slices')}</td><td>v{m.get('model_version')}</td>"
                    f"<td>{'promoted' if decision.get('promoted') else 'kept v' + str(decision.get('champion_after'))}"
                    f"</td></tr>")
        fig = Path("results") / name / "overlays.png"
        if fig.exists():
            data = base64.b64encode(fig.read_bytes()).decode()
            figures.append(f"<h2>{html.escape(name)}</h2><img alt='{html.escape(name)} overlays' "
                           f"src='data:image/png;base64,{data}'>")
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>breastseg summary</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px}}</style></head><body>
<h1>breastseg: experiment summary</h1>
<p>Cohort <b>{html.escape(params['cohort']['name'])}</b>. Test-set Dice per patient, averaged over patients and
foreground classes.</p>
<table><tr><th>experiment</th><th>mean Dice</th><th>Dice per class</th><th>test patients</th><th>test slices</th>
<th>challenger</th><th>champion gate</th></tr>
{''.join(rows)}
</table>
{''.join(figures)}
</body></html>
"""
    with atomic_path(out) as tmp:
        tmp.write_text(page)
    return out
