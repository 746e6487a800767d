"""Data: the offline generated set, CIFAR-10/100, ImageNet-style folders, and their loaders.

``get_dataset(name, split, ...)`` yields ``(float tensor (3, H, W) in [0, 1], int)`` with
``.targets`` and ``.num_classes``; ``get_loaders(preset_cfg, ...)`` builds normalised, augmented
loaders; ``subsample`` keeps a class-balanced fraction.
"""

from .datasets import (
    NAMES,
    ImageDataset,
    balanced_indices,
    default_data_root,
    get_dataset,
    subsample,
)
from .loaders import Loaders, get_loaders
from .synthetic import generate, radial_power_spectrum, spectrum_slope
from .transforms import (
    AUGMENTS,
    MEAN_STD,
    authors_mixup,
    build_mixup,
    build_transform,
    mean_std,
)

__all__ = [
    "AUGMENTS",
    "MEAN_STD",
    "NAMES",
    "ImageDataset",
    "Loaders",
    "authors_mixup",
    "balanced_indices",
    "build_mixup",
    "build_transform",
    "default_data_root",
    "generate",
    "get_dataset",
    "get_loaders",
    "mean_std",
    "radial_power_spectrum",
    "spectrum_slope",
    "subsample",
]
