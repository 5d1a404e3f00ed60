"""Run the benchmarks and write their results as JSON and as a Markdown table.

Every figure is a ratio against a reference measured in the same run (or against the target itself for
absolute-time targets), from medians over repeats; lower is better. Each benchmark runs in its own Python
process (thread settings, deterministic-algorithm flags and imports of one never leak into the next) and
returns a list of ``{"name", "ratio", "target", "reference", "detail"}`` objects; ``ratio`` is null where
nothing could be measured, or where no like-for-like reference exists. A row may also set ``result``, a label
that replaces the met/missed verdict (e.g. "not comparable: synthetic vs real" for a phantom Dice shown beside
a published real-data one: no target, no verdict). Each row also records its ``benchmark`` and when it was
``measured`` (UTC time and the load average then). ``results.json`` holds the list, ``results.md`` the table with the machine it was
measured on (CPU model, cores, memory, load average before and after, date).

    .venv/bin/python benchmarks/run.py [--quick] [--only NAME ...] [--skip NAME ...] [--merge]
        [--out benchmarks/results.json] [--quality-dir PATH]

``--merge``: keep the rows of the benchmarks not run now from the existing ``--out`` file (rerun one benchmark
on a quiet machine without losing the others).

``--quick``: one repeat on small sizes (what CI runs to keep the harness working; its timings mean little).
"""
from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: name -> module, in the order they run (quality last: it reads a run that may still be finishing).
BENCHMARKS = {
    "entropy": "bench_entropy",
    "convert": "bench_convert",
    "synth": "bench_synth",
    "maps": "bench_maps",
    "workflow": "bench_workflow",
    "cohort": "bench_cohort",
    "training": "bench_training",
    "dataloading": "bench_dataloading",
    "predict": "bench_predict",
    "pipeline": "bench_pipeline",
    "active": "bench_active",
    "quality": "bench_quality",
}
KEYS = ("name", "ratio", "target", "reference", "detail")
ROW_KEYS = (*KEYS, "benchmark", "measured")
OPTIONAL_KEYS = ("result",)  # a fixed label in place of the verdict; kept only when a benchmark sets it


def standalone(bench, parser) -> int:
    """Entry point of a ``bench_<name>.py`` script run on its own: its options, ``--quick`` among them."""
    argv = sys.argv[1:]
    bench(argv, quick=parser().parse_args(argv).quick)
    return 0


def run_one(name: str, quick: bool, extra: list[str]) -> list[dict]:
    """Run one benchmark in a child process; an error becomes a result row saying so."""
    measured = f"{dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M')} UTC, load {load().split()[0]}"
    with tempfile.TemporaryDirectory(prefix="bench_run_") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, str(HERE / "run.py"), "--child", name, "--child-out", str(out)]
        if quick:
            cmd.append("--quick")
        t0 = time.perf_counter()
        rc = subprocess.run([*cmd, "--", *extra]).returncode
        seconds = time.perf_counter() - t0
        if out.exists():
            rows = json.loads(out.read_text())
        else:
            rows = [{"name": name, "ratio": None, "target": None, "reference": "",
                     "detail": f"failed: exit status {rc}"}]
    print(f"[bench] {name}: {len(rows)} result(s) in {seconds:.0f} s", flush=True)
    return [{**r, "benchmark": name, "measured": measured} for r in rows]


def child(name: str, out: Path, quick: bool, extra: list[str]) -> int:
    sys.path.insert(0, str(HERE))
    module = importlib.import_module(BENCHMARKS[name])
    try:
        rows = module.bench(extra, quick=quick)
        rc = 0
    except Exception as exc:  # noqa: BLE001 - one failing benchmark must not lose the others' results
        import traceback

        traceback.print_exc()
        rows = [{"name": name, "ratio": None, "target": None, "reference": "",
                 "detail": f"failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]}]
        rc = 1
    out.write_text(json.dumps([normalise(r) for r in rows], indent=1))
    return rc


def normalise(row: dict) -> dict:
    r = {k: row.get(k) for k in KEYS}
    for k in ("ratio", "target"):
        v = r[k]
        r[k] = None if v is None or (isinstance(v, float) and not math.isfinite(v)) else round(float(v), 4)
    r["name"], r["reference"], r["detail"] = str(r["name"]), str(r["reference"] or ""), str(r["detail"] or "")
    for k in OPTIONAL_KEYS:
        if row.get(k):
            r[k] = str(row[k])
    return r


def machine() -> dict:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        mem = f"{kb / 2**20:.0f} GiB"
    except (OSError, IndexError, ValueError):
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return {"cpu": model, "cores": cores, "memory": mem, "python": platform.python_version()}


def load() -> str:
    try:
        return " ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:  # pragma: no cover
        return "n/a"


def verdict(row: dict) -> str:
    if row.get("result"):
        return row["result"]
    if row["ratio"] is None:
        return "failed" if row["detail"].startswith("failed") else "not measured"
    if row["target"] is None:
        return ""
    return "met" if row["ratio"] <= row["target"] else "missed"


def earlier_machines(table: Path, info: dict) -> list[str]:
    """The machines named in the header of an existing table (its own and those it kept) other than this one."""
    import re

    try:
        head = table.read_text().splitlines()[0]
    except (OSError, IndexError):
        return []
    found = re.findall(r"(\d+ cores \(.*?\), [\d.]+ GiB RAM)", head)
    this = f"{info['cores']} cores ({info['cpu']}), {info['memory']} RAM"
    return [m for m in dict.fromkeys(found) if m != this]


def markdown(rows: list[dict], info: dict) -> str:
    head = (f"Measured {info['date']} on {info['cores']} cores ({info['cpu']}), {info['memory']} RAM, Python "
            f"{info['python']}; load average (1/5/15 min) {info['load_before']} before, {info['load_after']} "
            f"after; {'quick mode (one repeat, small sizes)' if info['quick'] else 'full run'}. Ratios: lower is "
            f"better.")
    if info.get("earlier_machines"):
        head += f" Rows kept from earlier runs may come from other machines: {'; '.join(info['earlier_machines'])}."
    lines = [head, "", "| benchmark | ratio | target | result | reference | detail | measured |",
             "| --- | ---: | ---: | --- | --- | --- | --- |"]
    for r in rows:
        ratio = "—" if r["ratio"] is None else f"{r['ratio']:.3g}×"
        target = "" if r["target"] is None else f"≤ {r['target']:g}×"
        cells = [r["name"], ratio, target, verdict(r), r["reference"], r["detail"], r.get("measured") or ""]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def write(rows: list[dict], info: dict, out: Path) -> str:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1, ensure_ascii=False) + "\n")
    table = markdown(rows, info)
    out.with_suffix(".md").write_text(table)
    return table


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one repeat, small sizes")
    ap.add_argument("--only", nargs="+", choices=list(BENCHMARKS), metavar="NAME",
                    help=f"run only these ({', '.join(BENCHMARKS)})")
    ap.add_argument("--skip", nargs="+", choices=list(BENCHMARKS), metavar="NAME", default=[],
                    help="leave these out")
    ap.add_argument("--out", type=Path, default=HERE / "results.json",
                    help="results JSON (the Markdown table goes beside it, .md)")
    ap.add_argument("--merge", action="store_true",
                    help="keep the rows of the benchmarks not run now from the existing --out file")
    ap.add_argument("--quality-dir", type=Path, default=None,
                    help="repository folder of a finished quality-profile run (for the quality rows)")
    ap.add_argument("--child", choices=list(BENCHMARKS), help=argparse.SUPPRESS)
    ap.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("extra", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args.child, args.child_out, args.quick, args.extra)

    names = [n for n in (args.only or BENCHMARKS) if n not in args.skip]
    if not names:
        ap.error("nothing to run")
    info = {**machine(), "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "load_before": load(), "quick": args.quick}
    kept: list[dict] = []
    if args.merge and args.out.exists():
        kept = [r for r in json.loads(args.out.read_text()) if r.get("benchmark") not in names]
        info["date"] += f" ({', '.join(names)}; other rows: see their measured column)"
        info["earlier_machines"] = earlier_machines(args.out.with_suffix(".md"), info)
    rows: list[dict] = []
    order = list(BENCHMARKS)
    for name in names:
        extra = ["--quality-dir", str(args.quality_dir.resolve())] if name == "quality" and args.quality_dir else []
        rows += run_one(name, args.quick, extra)
        info["load_after"] = load()
        merged = sorted(kept + rows, key=lambda r: order.index(r["benchmark"]) if r.get("benchmark") in order else 0)
        table = write(merged, info, args.out)  # after every benchmark: an interrupted run keeps what it measured
    print()
    print(table)
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
