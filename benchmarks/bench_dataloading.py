"""The share of a training step spent waiting for the next batch: data loading and augmentation against the
network's forward and backward pass.

A Lightning-free loop that does what training does: a ``SliceDataset`` of random images (``mass_us_entropy``'s
channels and classes) with its augmentation, a DataLoader over it with the ``EpochSampler`` (one seed per sample,
``set_epoch`` each epoch) and persistent workers, as ``SliceDataModule`` makes it; each step waits for the next
batch, then runs the forward pass, the masked Dice + CE loss, the backward pass and an AdamW step of the
project's network (``build_model``: attention_unet [8, 16, 32, 64], at the images' size), with ``--threads``
torch threads in the training process (workers have one each, torch's default for them).

For each image size (64 and 128 px), augmentation (off: no mirroring and every p 0; the defaults of params.yaml)
and ``num_workers`` (0, 1, 2): one untimed epoch (workers start, caches warm), then ``--epochs`` timed epochs.
The share is the time spent in ``next()`` over the wall time of the timed epochs. Also measured apart: the
augmentation alone per sample (ms) and the step without waiting (ms).

    .venv/bin/python benchmarks/bench_dataloading.py [--sizes 64 128] [--workers 0 1 2] [--samples 96]
        [--epochs 3] [--batch 8] [--threads 1] [--out benchmarks/dataloading.json] [--quick]

Prints a table and writes ``--out`` (JSON: the figures, the command, the commit, the machine, date and load);
the rows it returns for ``benchmarks/run.py``: the default recipe's share at the project's default
``train.num_workers``, against a 30 % target.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PARAMS = ROOT / "params.yaml"
EXPERIMENT = "mass_us_entropy"
FEATURES = (8, 16, 32, 64)
WAIT_TARGET = 0.30


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--samples", type=int, default=96, help="samples per epoch (the demo's samples_per_epoch)")
    ap.add_argument("--slices", type=int, default=64, help="slices in the dataset")
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs per setting (after one untimed)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the training process")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=HERE / "dataloading.json", help="JSON written (not in --quick)")
    ap.add_argument("--quick", action="store_true", help="32 px, workers 0 and 1, 16 samples, one timed epoch")
    return ap


def machine() -> dict[str, Any]:
    from breastseg.environment import environment

    cpu = environment()["cpu_model"]
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return {"cpu": cpu, "cores": cores, "python": platform.python_version()}


def commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=30).stdout.strip()
        return out.stdout.strip() + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def python() -> str:
    """The interpreter as the repository's commands name it (``.venv/bin/python``), else its full path."""
    exe = Path(sys.executable)
    try:
        return str(exe.relative_to(ROOT))
    except ValueError:
        return str(exe)


def loadavg() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover
        return []


def random_slices(n: int, channels: int, size: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random images in [0, 1] with a blob label each (the augmentation's cost does not depend on
    the content; the loss needs some foreground)."""
    rng = np.random.default_rng(seed)
    image = rng.random((n, channels, size, size), dtype=np.float32)
    yy, xx = np.mgrid[0:size, 0:size]
    label = np.zeros((n, size, size), np.int64)
    for i in range(n):
        cy, cx, r = *rng.uniform(0.3, 0.7, 2) * size, rng.uniform(0.1, 0.2) * size
        label[i][(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = int(rng.integers(1, classes))
        image[i, :, label[i] > 0] += 0.5
    return image, label


def one_setting(exp: Any, data: tuple[np.ndarray, np.ndarray], augment: Any, workers: int, args: Any,
                state: dict) -> dict[str, Any]:
    import torch
    from torch.utils.data import DataLoader

    from breastseg.data.datamodule import EpochSampler, SliceDataset
    from breastseg.models.factory import build_model
    from breastseg.training.loss import MaskedDiceCELoss

    torch.manual_seed(args.seed)
    net = build_model(exp)
    net.load_state_dict(state)
    net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    loss_fn = MaskedDiceCELoss(exp.classes)
    ds = SliceDataset(data[0], data[1], augment=augment)
    sampler = EpochSampler(len(ds), args.samples, args.seed)
    loader = DataLoader(ds, batch_size=args.batch, sampler=sampler, num_workers=workers,
                        persistent_workers=workers > 0)
    wait = wall = 0.0
    steps, step_s = 0, []
    for epoch in range(1 + args.epochs):
        sampler.set_epoch(epoch)
        timed = epoch > 0
        t_epoch = time.perf_counter()
        it = iter(loader)
        while True:
            t0 = time.perf_counter()
            try:
                x, y = next(it)
            except StopIteration:
                break
            t1 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(x), y)
            loss.backward()
            opt.step()
            t2 = time.perf_counter()
            if timed:
                wait += t1 - t0
                steps += 1
                step_s.append(t2 - t1)
        if timed:
            wall += time.perf_counter() - t_epoch
    del it, loader  # persistent workers end here
    return {"wait_share": wait / wall, "wall_s": wall, "wait_s": wait, "steps": steps,
            "step_ms": 1e3 * wall / steps, "compute_ms": 1e3 * statistics.median(step_s)}


def augment_ms(augment: Any, data: tuple[np.ndarray, np.ndarray], n: int) -> float:
    """The augmentation alone: median ms per sample over ``n`` samples, in this process (threads as set)."""
    from breastseg.data.datamodule import SliceDataset

    ds = SliceDataset(data[0], data[1], augment=augment)
    times = []
    for s in range(n):
        t0 = time.perf_counter()
        ds[(s % len(ds), s)]
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def bench(argv: list[str] | None = None, quick: bool = False) -> list[dict]:
    ap = parser()
    if quick:
        ap.set_defaults(sizes=[32], workers=[0, 1], samples=16, slices=16, epochs=1)
    args = ap.parse_args([] if argv is None else argv)
    t_start = time.perf_counter()
    load_before = loadavg()

    import torch

    from breastseg.config import ModelSettings, experiment, load_params
    from breastseg.data.augment import mirroring_only
    from breastseg.models.factory import build_model

    torch.set_num_threads(args.threads)
    params = load_params(PARAMS)
    base = experiment(params, EXPERIMENT)
    recipes = {"off": mirroring_only(), "defaults": base.train.augment}
    default_workers = int(base.train.num_workers)
    print(f"{EXPERIMENT}: attention_unet {list(FEATURES)}, {len(base.channels)} channel(s), batch {args.batch}, {args.samples} "
          f"samples/epoch, {args.epochs} timed epochs after one untimed, torch threads {args.threads}; "
          f"params.yaml train.num_workers {default_workers}, train.threads {base.train.threads}")
    print(f"augmentation defaults: {base.train.augment.as_dict()}")

    results: list[dict[str, Any]] = []
    for size in args.sizes:
        exp = replace(base.with_data(image_size=size), model=ModelSettings("attention_unet", FEATURES))
        torch.manual_seed(args.seed)
        state = build_model(exp).state_dict()
        data = random_slices(args.slices, len(exp.channels), size, int(exp.classes), args.seed)
        for recipe, augment in recipes.items():
            per_sample = augment_ms(augment, data, 16 if quick else 200)
            for workers in args.workers:
                r = one_setting(exp, data, augment, workers, args, state)
                r.update(size=size, augment=recipe, num_workers=workers, augment_ms_per_sample=per_sample)
                results.append(r)
                print(f"  {size:>3} px  augment {recipe:<8}  workers {workers}  waiting {100 * r['wait_share']:5.1f} %"
                      f"  step {r['step_ms']:6.1f} ms (compute {r['compute_ms']:6.1f} ms)  augmentation "
                      f"{per_sample:5.2f} ms/sample", flush=True)

    print()
    print("share of a training step spent waiting for the next batch (wall time per step, ms)")
    header = f"{'size':>5} {'augmentation':<13}" + "".join(f"{'workers ' + str(w):>22}" for w in args.workers)
    print(header)
    for size in args.sizes:
        for recipe in recipes:
            cells = []
            for w in args.workers:
                r = next(x for x in results if (x["size"], x["augment"], x["num_workers"]) == (size, recipe, w))
                cells.append(f"{100 * r['wait_share']:6.1f} % ({r['step_ms']:6.1f} ms)")
            print(f"{size:>5} {recipe:<13}" + "".join(f"{c:>22}" for c in cells))
    seconds = time.perf_counter() - t_start

    record = {
        "benchmark": "dataloading",
        "what": "share of wall time waiting for the next batch (next() on the DataLoader iterator) in a "
                "Lightning-free training loop; forward + masked Dice/CE + backward + AdamW step",
        "command": " ".join([python(), "benchmarks/bench_dataloading.py", *(argv or [])]),
        "commit": commit(),
        "machine": machine(),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load": {"before": load_before, "after": loadavg()},
        "torch": torch.__version__,
        "settings": {"experiment": EXPERIMENT, "model": {"name": "attention_unet", "features": list(FEATURES)},
                     "batch": args.batch, "samples_per_epoch": args.samples, "slices": args.slices,
                     "timed_epochs": args.epochs, "threads": args.threads, "sizes": args.sizes,
                     "workers": args.workers, "augment_defaults": base.train.augment.as_dict(),
                     "params_num_workers": default_workers, "params_threads": int(base.train.threads)},
        "results": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in results],
        "seconds": round(seconds, 1),
    }
    if not quick:
        args.out.write_text(json.dumps(record, indent=1) + "\n")
        print(f"wrote {args.out}")

    rows = []
    for size in args.sizes:
        mine = {r["num_workers"]: r for r in results if r["size"] == size and r["augment"] == "defaults"}
        off = {r["num_workers"]: r for r in results if r["size"] == size and r["augment"] == "off"}
        w = default_workers if default_workers in mine else min(mine)
        r = mine[w]
        others = ", ".join(f"{k} workers {100 * v['wait_share']:.0f} %" for k, v in sorted(mine.items()) if k != w)
        rows.append({
            "name": f"data wait share of a training step, default augmentation, {size} px, num_workers {w}",
            "ratio": r["wait_share"], "target": WAIT_TARGET,
            "reference": f"{100 * WAIT_TARGET:.0f} % of the step's wall time",
            "detail": f"{100 * r['wait_share']:.1f} % of {r['step_ms']:.0f} ms/step (attention_unet "
                      f"{list(FEATURES)}, batch {args.batch}, {args.threads} thread); augmentation "
                      f"{r['augment_ms_per_sample']:.1f} ms/sample; without augmentation "
                      f"{100 * off[w]['wait_share']:.1f} %; default augmentation with {others}",
        })
    return rows


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    from run import standalone

    raise SystemExit(standalone(bench, parser))
