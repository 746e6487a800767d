"""DataLoaders from a preset: normalised, augmented per ``augment``, seeded."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from hdvit_lib.modes import resolve_device

from .datasets import get_dataset, subsample
from .transforms import build_mixup, build_transform, mean_std


class TransformedDataset(Dataset):
    """``dataset`` with ``transform`` applied to each image (targets and ``num_classes`` kept)."""

    def __init__(self, dataset: Any, transform: Callable[[torch.Tensor], torch.Tensor]):
        self.dataset, self.transform = dataset, transform
        self.targets, self.num_classes = dataset.targets, dataset.num_classes

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x, y = self.dataset[i]
        return self.transform(x), y


@dataclasses.dataclass
class Loaders:
    """``train`` (shuffled, augmented), ``train_eval`` (training images, no random augmentation, fixed
    order), ``test`` (no augmentation); ``mixup`` is ``(x, y) -> (x, soft_y)`` or None; ``mean``/``std``
    the normalisation applied to every image."""

    train: DataLoader
    train_eval: DataLoader
    test: DataLoader
    num_classes: int
    mixup: (
        Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None
    )
    mean: tuple[float, ...]
    std: tuple[float, ...]


def get_loaders(
    cfg: dict[str, Any],
    root: str | Path | None = None,
    download: bool = False,
    seed: int = 0,
    data_fraction: float = 1.0,
    num_workers: int = 0,
    device: torch.device | str | None = None,
    **dataset_kwargs: Any,
) -> Loaders:
    """Loaders for preset ``cfg`` (from ``presets.get_preset``: ``dataset``, ``n_train``, ``n_test``,
    ``batch_size``, ``augment``, ``label_smoothing``; optional ``num_classes``).

    ``data_fraction < 1`` keeps a class-balanced subset of the training set (``subsample``).
    A preset with ``download: True`` (``paper``) downloads a missing data set; ``root=None`` means
    ``default_data_root()`` (``$HDVIT_DATA``, else ``~/.cache/hdvit/data``).
    ``dataset_kwargs`` go to ``get_dataset`` (e.g. ``verify``, ``image_size``).
    ``cfg["device_augment"] = g > 0``: the training batches are augmented on ``device`` (default:
    CUDA if present, else the CPU) by a :class:`~hdvit_lib.data.device_loader.DeviceLoader`
    (RandAugment drawn per group of ``g`` images); the evaluation loaders stay DataLoaders.
    """
    name, augment = cfg["dataset"], cfg.get("augment", "none")
    common = dict(
        root=root,
        download=download or bool(cfg.get("download", False)),
        seed=seed,
        num_classes=cfg.get("num_classes"),
        **dataset_kwargs,
    )
    train = get_dataset(name, "train", n=cfg.get("n_train"), **common)
    test = get_dataset(name, "test", n=cfg.get("n_test"), **common)
    if data_fraction < 1.0:
        train = subsample(train, data_fraction, seed)
    mean, std = mean_std(name)
    num_classes = train.num_classes
    mixup = build_mixup(augment, num_classes, cfg.get("label_smoothing", 0.0))
    bs = int(cfg["batch_size"])
    pin = torch.cuda.is_available()
    kw: dict[str, Any] = {
        "batch_size": bs,
        "num_workers": num_workers,
        "pin_memory": pin,
        "persistent_workers": num_workers > 0,
    }
    eval_tf = build_transform(augment, mean, std, train=False)
    drop_last = mixup is not None and len(train) >= bs
    group = int(cfg.get("device_augment") or 0)
    if group > 0:
        from .device_loader import DeviceLoader

        train_loader: Any = DeviceLoader(train, bs, augment, mean, std, resolve_device(device), drop_last=drop_last,
                                         seed=seed, group=group)
    else:
        train_loader = DataLoader(
            TransformedDataset(train, build_transform(augment, mean, std, train=True)),
            shuffle=True,
            generator=torch.Generator().manual_seed(seed),
            drop_last=drop_last,
            **kw,
        )
    return Loaders(
        train=train_loader,
        train_eval=DataLoader(TransformedDataset(train, eval_tf), shuffle=False, **kw),
        test=DataLoader(TransformedDataset(test, eval_tf), shuffle=False, **kw),
        num_classes=num_classes,
        mixup=mixup,
        mean=tuple(mean),
        std=tuple(std),
    )
