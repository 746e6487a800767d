"""Presets: one name, read by every chapter (``smoke`` | ``cpu`` | ``paper`` | ``auto``).

- ``smoke``: CI and the default book build. Offline generated data, tiny models, seconds per chapter.
- ``cpu``: a laptop, ~10-20 minutes per chapter on the offline data; sized so the paper's
  qualitative claims can show.
- ``paper``: CIFAR-100, the paper's models and recipe (Park & Kim 2022, Appendix A), a GPU.
- ``auto``: ``paper`` when a CUDA GPU is present, else ``cpu``.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {
        "dataset": "synthetic",
        "download": False,
        "num_classes": None,  # None: the dataset's own (synthetic: 10)
        "n_train": 4000,
        "n_test": 500,
        "tiny": True,
        "epochs": 3,
        "warmup_epochs": 1,
        "batch_size": 64,
        "lr": 1e-3,
        "weight_decay": 0.05,
        "label_smoothing": 0.1,
        "augment": "crop_flip",
        "device_augment": 0,
        "clip_grad": 5.0,
        "snapshot_every": 1,
        "hessian_batches": 2,
        "hessian_batch_size": 16,
        "hessian_k": 2,
        "landscape_points": 5,
        "landscape_images": 256,
        "landscape_amp": False,
        "analysis_images": 128,
        "weights": "trained",
    },
    "cpu": {
        "dataset": "synthetic",
        "download": False,
        "num_classes": None,  # None: the dataset's own (synthetic: 10)
        "n_train": 10000,
        "n_test": 2000,
        "tiny": True,
        "epochs": 15,
        "warmup_epochs": 1,
        "batch_size": 64,
        "lr": 1e-3,
        "weight_decay": 0.05,
        "label_smoothing": 0.1,
        "augment": "crop_flip",
        "device_augment": 0,
        "clip_grad": 5.0,
        "snapshot_every": 5,
        "hessian_batches": 20,
        "hessian_batch_size": 16,
        "hessian_k": 5,
        "landscape_points": 11,
        "landscape_images": 1000,
        "landscape_amp": False,
        "analysis_images": 512,
        "weights": "trained",
    },
    "paper": {
        # Park & Kim (2022), Appendix A: AdamW, lr 1.25e-4 at batch 96, wd 0.05, 5 warm-up +
        # 300 epochs, cosine, clip 5, RandAugment, mixup/cutmix, label smoothing 0.1.
        "dataset": "cifar100",
        "download": True,  # torchvision's CIFAR-100 download (MD5-checked) into $HDVIT_DATA
        "num_classes": None,
        "n_train": None,
        "n_test": None,
        "tiny": False,
        "epochs": 300,
        "warmup_epochs": 5,
        "batch_size": 96,
        "lr": 1.25e-4,
        "weight_decay": 0.05,
        "label_smoothing": 0.1,
        "augment": "paper",
        # augment on the training device, RandAugment drawn per group of 8 images
        # (hdvit_lib.data.device_loader; 0: per-sample on the CPU, in the DataLoader)
        "device_augment": 8,
        "clip_grad": 5.0,
        "snapshot_every": 50,
        "hessian_batches": 312,  # 10% of the CIFAR-100 training set at batch 16
        "hessian_batch_size": 16,
        "hessian_k": 5,
        "landscape_points": 21,
        "landscape_images": 10000,
        "landscape_amp": True,  # bf16 forward passes (Fig. 1a at 21x21 x 10k images on a GPU)
        "analysis_images": 1000,
        # "official": the authors' CIFAR-100 checkpoints (hdvit_lib.pretrained) for the models
        # that have one, at their default settings on all of the data; every other run is trained.
        "weights": "trained",
    },
}

NAMES = ("smoke", "cpu", "paper", "auto")
#: Where a chapter's models come from: trained here (cached), or the authors' released checkpoints.
WEIGHTS = ("trained", "official")


def resolve(name: str) -> str:
    """Map ``auto`` to ``paper`` (CUDA present) or ``cpu``; check the name."""
    if name not in NAMES:
        raise ValueError(f"preset={name!r} is unknown; choose one of {', '.join(NAMES)}")
    if name == "auto":
        return "paper" if torch.cuda.is_available() else "cpu"
    return name


def get_preset(name: str, **overrides: Any) -> dict[str, Any]:
    """The settings of preset ``name`` (a copy), with ``overrides`` applied.

    An override whose key the preset does not have raises, naming the valid keys.
    ``weights="official"`` (the authors' CIFAR-100 checkpoints) needs CIFAR-100 and paper-size
    models, i.e. the ``paper`` preset.
    """
    cfg = copy.deepcopy(PRESETS[resolve(name)])
    for k, v in overrides.items():
        if k not in cfg:
            raise ValueError(f"{k!r} is not a preset setting; valid: {', '.join(sorted(cfg))}")
        cfg[k] = v
    cfg["name"] = resolve(name)
    if cfg["weights"] not in WEIGHTS:
        raise ValueError(f"weights={cfg['weights']!r} is unknown; choose one of {', '.join(WEIGHTS)}")
    if cfg["weights"] == "official" and (cfg["dataset"] != "cifar100" or cfg["tiny"]):
        raise ValueError(
            f"weights='official' loads the authors' CIFAR-100 checkpoints of paper-size models; preset "
            f"{cfg['name']!r} has dataset={cfg['dataset']!r}, tiny={cfg['tiny']}: use preset='paper' "
            "(or weights='trained')")
    return cfg
