"""Lightning training throughput against a plain PyTorch loop on the same model, batch and data.

Both sides train the same SegmentationModule (same seed, the same initial state_dict copied into a fresh
module for every run), on the same in-memory slices (random images with elliptical "mass" blobs), through
the same DataLoader settings (batch size, shuffling generator seed, the experiment's augmentation,
num_workers), with the module's loss, the optimizer and LR scheduler from ``configure_optimizers``,
gradient-norm clipping at 1.0, the same precision (autocast for bf16-mixed), the same
``torch.use_deterministic_algorithms`` setting and the same number of optimizer steps. The Lightning side is
the project's ``make_trainer`` with no validation loop, no logger, no checkpointing and no progress bar.

Each side is warmed up for one epoch (not timed; the warm-up also checks that both sides produce the same
weights), then timed runs alternate (plain, Lightning, plain, ...) and medians are reported.

Targets: Lightning time / plain time <= 1.05 for the training loop; data time < 10 % of the step time
(plain: waiting on the DataLoader iterator's ``next()``; Lightning: the gap from ``on_train_batch_end`` to the
next ``on_train_batch_start``, which holds the fetch plus Lightning's per-batch bookkeeping).

    .venv/bin/python benchmarks/bench_training.py [--experiment mass_us_entropy] [--size N] [--slices 256]
        [--batch 16] [--epochs 3] [--threads 2] [--precision 32-true|bf16-mixed] [--repeats 5] [--quick]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

RATIO_TARGET = 1.05
DATA_TARGET = 0.10
PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


# --------------------------------------------------------------------------------------------------- data
def blob_slices(n: int, channels: int, size: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random slices (n, channels, size, size) float32 with 1-2 elliptical blobs per slice as labels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    image = rng.normal(0.0, 0.3, size=(n, channels, size, size)).astype(np.float32)
    label = np.zeros((n, size, size), dtype=np.int64)
    for i in range(n):
        for _ in range(int(rng.integers(1, 3))):
            cy, cx = rng.uniform(0.2, 0.8, 2) * size
            ry, rx = rng.uniform(0.05, 0.2, 2) * size
            a = rng.uniform(0, np.pi)
            dy, dx = yy - cy, xx - cx
            u = (dx * np.cos(a) + dy * np.sin(a)) / rx
            v = (-dx * np.sin(a) + dy * np.cos(a)) / ry
            inside = u * u + v * v <= 1.0
            label[i][inside] = int(rng.integers(1, classes))
            image[i, :, inside] += 1.0
    return image, label


def timed_loader_class():
    """A DataLoader whose iterators record how long every ``next()`` takes (same cost on both sides)."""
    from torch.utils.data import DataLoader

    class TimedDataLoader(DataLoader):
        fetch_s: list[float]

        def __iter__(self):
            it = super().__iter__()
            record = self.fetch_s
            while True:
                t0 = time.perf_counter()
                try:
                    batch = next(it)
                except StopIteration:
                    return
                record.append(time.perf_counter() - t0)
                yield batch

    return TimedDataLoader


def make_loader(dataset, batch: int, num_workers: int, seed: int):
    import torch

    loader = timed_loader_class()(dataset, batch_size=batch, shuffle=True, num_workers=num_workers,
                                  generator=torch.Generator().manual_seed(seed),
                                  persistent_workers=num_workers > 0)
    loader.fetch_s = []
    return loader


# --------------------------------------------------------------------------------------------------- runs
def fresh_module(exp: Any, hp: Any, epochs: int, state: dict):
    from breastseg.training.module import SegmentationModule
    from breastseg.training.train import module_kwargs

    module = SegmentationModule(exp, **module_kwargs(hp, epochs))
    module.load_state_dict(copy.deepcopy(state))
    return module


def plain_run(exp, hp, state, dataset, args, epochs: int) -> dict[str, Any]:
    """A hand-written loop doing what Lightning's automatic optimisation does for this module."""
    import torch

    torch.use_deterministic_algorithms(True)  # what Trainer(deterministic=True) sets
    torch.manual_seed(args.seed)  # the augmentation draws from the global RNG
    t_setup = time.perf_counter()
    module = fresh_module(exp, hp, epochs, state)
    module.train()
    opt_conf = module.configure_optimizers()
    opt, sched = opt_conf["optimizer"], opt_conf["lr_scheduler"]["scheduler"]
    params = [p for p in module.parameters()]
    clip = float(hp.gradient_clip_val)
    autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if args.precision == "bf16-mixed" else nullcontext())
    loader = make_loader(dataset, args.batch, int(hp.num_workers), args.seed)
    deterministic = torch.are_deterministic_algorithms_enabled()
    data_s, cycle_s, steps, losses = [], [], 0, []

    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(epochs):
        it = iter(loader)
        loss_sum, n_seen, first = torch.zeros(()), 0, True
        while True:
            ta = time.perf_counter()
            try:
                x, y = next(it)
            except StopIteration:
                break
            tb = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            with autocast:
                loss = module.loss(module(x), y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, clip)
            opt.step()
            loss_sum += loss.detach() * len(x)  # the epoch mean that the module logs as train_loss
            n_seen += len(x)
            steps += 1
            tc = time.perf_counter()
            if not first:  # the first batch of an epoch is skipped on both sides
                data_s.append(tb - ta)
                cycle_s.append(tc - ta)
            first = False
        sched.step()
        losses.append(float(loss_sum / max(n_seen, 1)))
    loop_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    return {"loop_s": loop_s, "cpu_s": cpu_s, "total_s": time.perf_counter() - t_setup, "steps": steps,
            "data_frac": sum(data_s) / sum(cycle_s), "fetch_frac": sum(data_s) / sum(cycle_s),
            "deterministic": deterministic, "state": module.state_dict(), "loss": losses[-1]}


def lightning_run(exp, hp, state, dataset, args, epochs: int) -> dict[str, Any]:
    import torch
    from lightning.pytorch.callbacks import Callback

    from breastseg.training.train import make_trainer

    class Clock(Callback):
        """Training-loop time and, per batch, the gap between the end of one batch and the start of the next."""

        def __init__(self):
            self.gap_s, self.cycle_s = [], []
            self.start = self.end = self.prev_end = None
            self.deterministic = None

        def on_train_start(self, trainer, pl_module):
            self.deterministic = torch.are_deterministic_algorithms_enabled()
            self.start, self.cpu_start = time.perf_counter(), time.process_time()

        def on_train_epoch_start(self, trainer, pl_module):
            self.prev_end = None  # the first batch of an epoch is skipped on both sides

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.batch_start = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            now = time.perf_counter()
            if self.prev_end is not None:
                self.gap_s.append(self.batch_start - self.prev_end)
                self.cycle_s.append(now - self.prev_end)
            self.prev_end = now

        def on_train_end(self, trainer, pl_module):
            self.end, self.cpu_end = time.perf_counter(), time.process_time()

    torch.manual_seed(args.seed)
    t_setup = time.perf_counter()
    module = fresh_module(exp, hp, epochs, state)
    loader = make_loader(dataset, args.batch, int(hp.num_workers), args.seed)
    clock = Clock()
    trainer = make_trainer(hp, epochs, logger=False, callbacks=[clock], limit_val_batches=0,
                           enable_checkpointing=False, enable_progress_bar=False)
    t_fit = time.perf_counter()
    trainer.fit(module, train_dataloaders=loader)
    t_end = time.perf_counter()
    # per-batch fetch time measured the same way as in the plain loop (first batch of each epoch dropped)
    per_epoch = len(loader)
    fetch = [t for i, t in enumerate(loader.fetch_s) if i % per_epoch != 0]
    return {"loop_s": clock.end - clock.start, "cpu_s": clock.cpu_end - clock.cpu_start, "total_s": t_end - t_setup, "fit_s": t_end - t_fit,
            "trainer_init_s": t_fit - t_setup, "steps": trainer.global_step,
            "data_frac": sum(clock.gap_s) / sum(clock.cycle_s), "fetch_frac": sum(fetch) / sum(clock.cycle_s),
            "deterministic": clock.deterministic, "state": module.state_dict(),
            "loss": float(trainer.callback_metrics["train_loss"])}


def max_state_diff(a: dict, b: dict) -> float:
    return max(float((a[k].float() - b[k].float()).abs().max()) if a[k].numel() else 0.0 for k in a)


# --------------------------------------------------------------------------------------------------- main
def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--experiment", default="mass_us_entropy")
    ap.add_argument("--size", type=int, default=None, help="image size (default: the experiment's)")
    ap.add_argument("--slices", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=3, help="epochs per timed run")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", default="32-true", choices=["32-true", "bf16-mixed"])
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per side (alternating)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-augment", action="store_true", help="train without the experiment's augmentation")
    ap.add_argument("--quick", action="store_true", help="32 slices of 32x32, one epoch, one run per side")
    return ap


def main() -> None:
    args = parser().parse_args()
    bench(sys.argv[1:], quick=args.quick)


def bench(argv: list[str] | None = None, quick: bool = False) -> list[dict]:
    ap = parser()
    if quick:
        ap.set_defaults(size=32, slices=32, epochs=1, repeats=1)
    args = ap.parse_args([] if argv is None else argv)

    import logging
    import warnings

    import lightning.pytorch as pl
    import torch

    from breastseg.config import experiment, load_params
    from breastseg.data.datamodule import SliceDataset
    from breastseg.training.module import SegmentationModule
    from breastseg.training.train import module_kwargs

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*val_dataloader.*|.*LeafSpec.*")

    exp = experiment(load_params(PARAMS), args.experiment)
    size = args.size or int(exp.image_size)
    exp = exp.with_data(image_size=size)
    hp = exp.train.with_values({"batch_size": args.batch, "threads": args.threads, "precision": args.precision,
                                "accelerator": "cpu", "devices": 1, "strategy": "auto", "num_nodes": 1})
    augment = None if args.no_augment else hp.augment
    torch.set_num_threads(args.threads)

    image, label = blob_slices(args.slices, len(exp.channels), size, int(exp.classes), args.seed)
    dataset = SliceDataset(image, label, augment=augment)
    pl.seed_everything(args.seed, workers=True, verbose=False)
    state = copy.deepcopy(SegmentationModule(exp, **module_kwargs(hp, args.epochs)).state_dict())
    n_params = sum(v.numel() for v in state.values())

    print(f"experiment {args.experiment}: {exp.model.name} {list(exp.model.features)}, {n_params} parameters; "
          f"{args.slices} slices {len(exp.channels)}x{size}x{size}, batch {args.batch}, "
          f"{-(-args.slices // args.batch)} steps/epoch, {args.epochs} epochs/run, {args.repeats} runs/side")
    print(f"threads {args.threads}, precision {args.precision}, num_workers {int(hp.num_workers)}, "
          f"augment {augment or 'off'}, torch {torch.__version__}, lightning {pl.__version__}")

    # warm-up: one epoch each, untimed; also checks that both sides do the same work
    wp = plain_run(exp, hp, state, dataset, args, 1)
    wl = lightning_run(exp, hp, state, dataset, args, 1)
    diff = max_state_diff(wp["state"], wl["state"])
    print(f"warm-up (1 epoch each): steps {wp['steps']} vs {wl['steps']}, train loss {wp['loss']:.6f} vs "
          f"{wl['loss']:.6f}, max |weight difference| {diff:.3g}")

    plain, light = [], []
    for r in range(args.repeats):
        plain.append(plain_run(exp, hp, state, dataset, args, args.epochs))
        light.append(lightning_run(exp, hp, state, dataset, args, args.epochs))
        print(f"  run {r + 1}: plain {plain[-1]['loop_s']:.3f} s (cpu {plain[-1]['cpu_s']:.2f}), "
              f"Lightning {light[-1]['loop_s']:.3f} s (cpu {light[-1]['cpu_s']:.2f}) "
              f"(fit {light[-1]['fit_s']:.3f} s, Trainer() {light[-1]['trainer_init_s']:.3f} s)")
    for p, lt in zip(plain, light):
        assert p["steps"] == lt["steps"], (p["steps"], lt["steps"])
        assert p["deterministic"] == lt["deterministic"], "use_deterministic_algorithms differs"

    def med(runs, key):
        return statistics.median(r[key] for r in runs)

    steps = plain[0]["steps"]
    p_loop, l_loop = med(plain, "loop_s"), med(light, "loop_s")
    ratios = [lt["loop_s"] / p["loop_s"] for p, lt in zip(plain, light)]
    ratio = statistics.median(ratios)
    cpu_ratio = statistics.median(lt["cpu_s"] / p["cpu_s"] for p, lt in zip(plain, light))
    best_ratio = min(lt["loop_s"] for lt in light) / min(p["loop_s"] for p in plain)
    ratio_total = statistics.median(lt["total_s"] / p["total_s"] for p, lt in zip(plain, light))
    p_data, l_gap, l_fetch = med(plain, "data_frac"), med(light, "data_frac"), med(light, "fetch_frac")

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    w = 58
    print()
    print(f"{'measure (medians of ' + str(args.repeats) + ' alternating runs)':<{w}} {'value':>12}  target   result")
    print("-" * (w + 30))
    print(f"{'optimizer steps per run (both sides)':<{w}} {steps:>12d}")
    print(f"{'use_deterministic_algorithms (both sides)':<{w}} {str(plain[0]['deterministic']):>12}")
    print(f"{'plain loop: training-loop time (s)':<{w}} {p_loop:>12.3f}")
    print(f"{'Lightning: on_train_start -> on_train_end (s)':<{w}} {l_loop:>12.3f}")
    print(f"{'plain loop: steps/s':<{w}} {steps / p_loop:>12.2f}")
    print(f"{'Lightning: steps/s':<{w}} {steps / l_loop:>12.2f}")
    print(f"{'ratio Lightning / plain (training loop, per-pair median)':<{w}} {ratio:>12.3f}  <= {RATIO_TARGET:.2f}  "
          f"{verdict(ratio <= RATIO_TARGET)}")
    print(f"{'  per-pair ratios':<{w}} {' '.join(f'{x:.3f}' for x in ratios)}")
    print(f"{'ratio of the fastest runs (min / min)':<{w}} {best_ratio:>12.3f}  (info)")
    print(f"{'ratio of process CPU time (less sensitive to other load)':<{w}} {cpu_ratio:>12.3f}  (info)")
    print(f"{'ratio end to end (module + loader + Trainer() + fit)':<{w}} {ratio_total:>12.3f}  (info)")
    print(f"{'  Lightning fixed cost: Trainer() (s)':<{w}} {med(light, 'trainer_init_s'):>12.3f}  (info)")
    print(f"{'  Lightning fixed cost: fit() minus training loop (s)':<{w}} "
          f"{statistics.median(lt['fit_s'] - lt['loop_s'] for lt in light):>12.3f}  (info)")
    print(f"{'plain loop: data time / step time (next() wait)':<{w}} {p_data:>12.3f}  < {DATA_TARGET:.2f}   "
          f"{verdict(p_data < DATA_TARGET)}")
    print(f"{'Lightning: batch_end -> batch_start gap / batch time':<{w}} {l_gap:>12.3f}  < {DATA_TARGET:.2f}   "
          f"{verdict(l_gap < DATA_TARGET)}")
    print(f"{'  of which DataLoader next() / batch time':<{w}} {l_fetch:>12.3f}  (info)")
    print(f"{'warm-up max |weight difference| plain vs Lightning':<{w}} {diff:>12.3g}  (info: same work)")
    ok = ratio <= RATIO_TARGET and p_data < DATA_TARGET and l_gap < DATA_TARGET
    print(f"\noverall: {verdict(ok)}")
    return [{"name": "Lightning training step vs plain PyTorch loop", "ratio": ratio, "target": RATIO_TARGET,
             "reference": "plain PyTorch loop, same model/batch/data, same run",
             "detail": f"{steps / l_loop:.1f} vs {steps / p_loop:.1f} steps/s ({args.experiment}, {size}x{size}, "
                       f"batch {args.batch}, {args.precision}); data time {l_gap:.0%} of a step; "
                       f"median of {args.repeats} pairs"}]


if __name__ == "__main__":
    main()
