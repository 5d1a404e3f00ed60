"""Lightning DataModule over prepared patient files and a split file.

Validation batches are ``(image, label, index)``: ``index`` is each image's position in the val subset, whose
patients :attr:`SliceDataModule.val_patients` lists, so validation can score per patient as evaluation does.
A split without validation patients stops training (:class:`~breastseg.errors.InputError` naming the split file):
validating on the training slices would select models on what they were fitted to.
"""
from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..config import Augment, Experiment
from ..errors import InputError
from .augment import augment_sample, build_transforms, is_identity
from .slices import load_subset


class EpochSampler(Sampler):
    """Training order and augmentation draws as a function of (seed, epoch) alone.

    Each epoch draws ``num_samples`` indices (whole reshuffled passes, then part of one) and one augmentation
    seed per sample from a generator seeded by the seed and the epoch (Lightning calls :meth:`set_epoch`).
    Nothing depends on global RNG state, so a training resumed from a checkpoint at epoch k draws exactly
    what the uninterrupted run drew from epoch k on, and the result is the same.
    """

    def __init__(self, n: int, num_samples: int, seed: int):
        self.n, self.num_samples, self.seed, self.epoch = n, max(int(num_samples), n), int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        passes = -(-self.num_samples // self.n)
        order = torch.cat([torch.randperm(self.n, generator=g) for _ in range(passes)])[: self.num_samples]
        seeds = torch.randint(0, 2**62, (self.num_samples,), generator=g)
        return iter(list(zip(order.tolist(), seeds.tolist())))


class SliceDataset(Dataset):
    """In-memory slices with optional augmentation (``train.augment``: :mod:`breastseg.data.augment`, MONAI's
    dictionary transforms, built once here and seeded per sample).

    Indexed by ``(i, seed)`` from :class:`EpochSampler`: the sample's augmentation draws come from its seed alone,
    so they are the same in any data-loader worker and whatever was drawn before. Indexed by ``i`` alone: no
    augmentation draws needed (validation, test), or, with augmentation, one seed drawn from torch's global RNG.
    ``with_index``: items are ``(image, label, i)`` (validation scores per patient with it).
    """

    def __init__(self, image: np.ndarray, label: np.ndarray, augment: Augment | None = None, with_index: bool = False):
        self.image = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
        self.label = torch.from_numpy(np.ascontiguousarray(label).astype(np.int64))
        self.augment = augment
        self.with_index = with_index
        # None: nothing to do (no augmentation, or every transform off); else the Compose, built once
        self.transforms = (None if is_identity(augment)
                           else build_transforms(augment, (int(self.image.shape[-2]), int(self.image.shape[-1]))))

    def __len__(self) -> int:
        return len(self.label)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, ...]:
        i, seed = item if isinstance(item, tuple) else (item, None)
        if self.with_index:
            x, y = self._item(i, seed)
            return x, y, torch.tensor(int(i))
        return self._item(i, seed)

    def _item(self, i: int, seed: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.image[i], self.label[i]
        if self.transforms is None:
            return x, y
        if seed is None:
            seed = int(torch.randint(0, 2**62, ()))
        return augment_sample(self.transforms, x, y, seed)


class SliceDataModule(pl.LightningDataModule):
    def __init__(self, processed_dir: Path, split_file: Path, batch_size: int = 8, num_workers: int = 0,
                 seed: int = 0, augment: Augment | None = None, samples_per_epoch: int = 0):
        super().__init__()
        self.processed_dir, self.split_file = Path(processed_dir), Path(split_file)
        self.batch_size, self.num_workers, self.seed, self.augment = batch_size, num_workers, seed, augment
        # Training samples drawn per epoch (whole reshuffled passes, then part of one): a small cohort gets
        # several augmented passes per epoch instead of paying validation and logging after each short one.
        self.samples_per_epoch = int(samples_per_epoch)
        self.data: dict[str, dict[str, np.ndarray]] = {}

    @classmethod
    def from_params(cls, exp: Experiment, processed_dir: Path, split_file: Path) -> "SliceDataModule":
        t = exp.train
        return cls(processed_dir, split_file, batch_size=int(t.batch_size), num_workers=int(t.num_workers),
                   seed=int(t.seed), augment=t.augment, samples_per_epoch=int(t.samples_per_epoch))

    def setup(self, stage: str | None = None) -> None:
        for subset in ("train", "val", "test"):
            if subset not in self.data:
                self.data[subset] = load_subset(self.processed_dir, self.split_file, subset)
        if not self.data["train"]:
            raise InputError(self.split_file, "no training slices")
        if not self.data["val"]:
            raise InputError(self.split_file, "no val patients: checkpoints, early stopping and Optuna trials are "
                                              "chosen on them (needs split.fractions.val > 0 and at least 3 "
                                              "patients)")

    @property
    def val_patients(self) -> np.ndarray | None:
        """The patient of each val image, in the val loader's index order (None before :meth:`setup`)."""
        val = self.data.get("val")
        return None if not val else np.asarray(val["patient"])

    def _loader(self, subset: str, shuffle: bool, augment: Augment | None, num_samples: int = 0) -> DataLoader:
        d = self.data[subset]
        ds = SliceDataset(d["image"], d["label"], augment=augment, with_index=subset == "val")
        if shuffle:
            sampler = EpochSampler(len(ds), num_samples, self.seed)
            return DataLoader(ds, batch_size=self.batch_size, sampler=sampler, num_workers=self.num_workers,
                              persistent_workers=self.num_workers > 0)
        return DataLoader(ds, batch_size=self.batch_size, shuffle=False, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True, self.augment, self.samples_per_epoch)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False, None)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False, None)
