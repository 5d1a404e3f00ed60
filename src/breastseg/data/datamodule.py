"""Lightning DataModule over prepared patient files and a split file."""
from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .split import subset_patients


def load_subset(processed_dir: Path, split_file: Path, subset: str) -> dict[str, np.ndarray]:
    """Concatenate the prepared slices of every patient of ``subset`` (in patient order)."""
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("image", "label", "case", "index", "spacing_mm", "patient")}
    for pid in subset_patients(split_file, subset):
        f = processed_dir / f"{pid}.npz"
        with np.load(f) as z:
            n = len(z["label"])
            for k in ("image", "label", "case", "index", "spacing_mm"):
                parts[k].append(z[k])
            parts["patient"].append(np.full(n, pid))
    if not parts["image"]:
        return {}
    return {k: np.concatenate(v) for k, v in parts.items()}


class SliceDataset(Dataset):
    """In-memory slices with optional flips and intensity jitter."""

    def __init__(self, image: np.ndarray, label: np.ndarray, augment: bool = False):
        self.image = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
        self.label = torch.from_numpy(np.ascontiguousarray(label).astype(np.int64))
        self.augment = augment

    def __len__(self) -> int:
        return len(self.label)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.image[i], self.label[i]
        if self.augment:  # torch's RNG: seeded per process and per worker by seed_everything(workers=True)
            if torch.rand(1) < 0.5:
                x, y = x.flip(-1), y.flip(-1)
            if torch.rand(1) < 0.5:
                x, y = x.flip(-2), y.flip(-2)
            x = x * (1 + 0.1 * (torch.rand(1) - 0.5))
        return x, y


class SliceDataModule(pl.LightningDataModule):
    def __init__(self, processed_dir: Path, split_file: Path, batch_size: int = 8, num_workers: int = 0,
                 seed: int = 0, augment: bool = True):
        super().__init__()
        self.processed_dir, self.split_file = Path(processed_dir), Path(split_file)
        self.batch_size, self.num_workers, self.seed, self.augment = batch_size, num_workers, seed, augment
        self.data: dict[str, dict[str, np.ndarray]] = {}

    def setup(self, stage: str | None = None) -> None:
        for subset in ("train", "val", "test"):
            if subset not in self.data:
                self.data[subset] = load_subset(self.processed_dir, self.split_file, subset)
        if not self.data["train"]:
            raise ValueError(f"{self.split_file}: no training slices")
        if not self.data["val"]:  # a tiny cohort: validate on the training slices rather than not at all
            self.data["val"] = self.data["train"]

    def _loader(self, subset: str, shuffle: bool, augment: bool) -> DataLoader:
        d = self.data[subset]
        ds = SliceDataset(d["image"], d["label"], augment=augment)
        g = torch.Generator().manual_seed(self.seed)
        return DataLoader(ds, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          generator=g, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True, self.augment)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False, False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False, False)
