"""Per-sample augmentations on tensors, normalisation constants, and batch-level mixup/cutmix.

Augmentation presets (the ``augment`` key of :mod:`hdvit_lib.presets`):

- ``none``: normalise only.
- ``crop_flip``: random 32x32 crop of the image zero-padded by 4 px, horizontal flip with p=1/2.
- ``paper``: ``crop_flip`` + RandAugment (2 ops, magnitude 9, torchvision's tensor implementation)
  per sample, then mixup (alpha 1.0) / cutmix (alpha 0.8), one of them on every batch, with label
  smoothing 0.1 (timm ``Mixup``), as in the authors' ``configs/cifar100_vit.yaml`` (Park & Kim
  2022, Appendix A; note the alphas are the reverse of DeiT's 0.8 / 1.0).

All per-sample work stays on tensors (no PIL round trip). The random draws use torch's global
generator (in DataLoader workers, the per-worker seed that the loader's generator sets).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

AUGMENTS = ("none", "crop_flip", "paper")

# The authors' batch mixing, ``train.mixup`` of configs/cifar100_vit.yaml (xxxnell/how-do-vits-work,
# branch ``transformer``): mixup_alpha 1.0, cutmix_alpha 0.8, prob 1.0 (timm's switch_prob default
# 0.5 picks one of the two per batch), with ``train.smoothing: 0.1``.
MIXUP_ALPHA = 1.0
CUTMIX_ALPHA = 0.8
MIX_PROB = 1.0
LABEL_SMOOTHING = 0.1


def check_augment(augment: str) -> None:
    """Raise for an ``augment`` preset that is not one of :data:`AUGMENTS`, naming them."""
    if augment not in AUGMENTS:
        raise ValueError(f"augment={augment!r} is unknown; choose one of {', '.join(AUGMENTS)}")


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """A float image (or batch) in [0, 1] as uint8 (rounded, clamped), as PIL would hold it."""
    return (x * 255.0).round_().clamp_(0, 255).to(torch.uint8)

# Per-channel mean/std of the training images.
MEAN_STD: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagefolder": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # ImageNet
    # computed once from synthetic.generate(10000, seed=0) (10 classes); tests recompute it
    "synthetic": ((0.5072, 0.5020, 0.5036), (0.2028, 0.2020, 0.2043)),
    # computed once from fractal.generate(10000, seed=0) (100 classes); tests recompute it
    "fractal": ((0.5001, 0.5004, 0.4998), (0.1436, 0.1439, 0.1438)),
}


def mean_std(dataset: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Normalisation constants of ``dataset`` (see ``MEAN_STD``)."""
    if dataset not in MEAN_STD:
        raise ValueError(
            f"dataset={dataset!r} has no mean/std; choose one of {', '.join(MEAN_STD)}"
        )
    return MEAN_STD[dataset]


class Normalize:
    """``(x - mean) / std`` per channel."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class RandomCropFlip:
    """Random crop of the zero-padded image (``padding`` px each side) and a coin-flip mirror."""

    def __init__(self, padding: int = 4, flip: bool = True):
        self.padding, self.flip = padding, flip

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        p = self.padding
        h, w = x.shape[-2:]
        if p > 0:
            i, j = torch.randint(0, 2 * p + 1, (2,)).tolist()
            x = F.pad(x, (p, p, p, p))[..., i : i + h, j : j + w]
        if self.flip and torch.rand(()) < 0.5:
            x = x.flip(-1)
        return x


class RandAugmentFloat:
    """torchvision's RandAugment on a float image in [0, 1] (run on its uint8 version, as in PIL)."""

    def __init__(self, num_ops: int = 2, magnitude: int = 9):
        from torchvision.transforms.v2 import RandAugment

        self.op = RandAugment(num_ops=num_ops, magnitude=magnitude)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(to_uint8(x)).float().div_(255.0)


class Compose:
    def __init__(self, *fns: Callable[[torch.Tensor], torch.Tensor]):
        self.fns = fns

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for f in self.fns:
            x = f(x)
        return x


def build_transform(
    augment: str, mean: tuple[float, ...], std: tuple[float, ...], train: bool = True
) -> Compose:
    """The per-sample transform of preset ``augment`` (``train=False``: normalisation only)."""
    check_augment(augment)
    norm = Normalize(mean, std)
    if not train or augment == "none":
        return Compose(norm)
    if augment == "crop_flip":
        return Compose(RandomCropFlip(), norm)
    return Compose(RandomCropFlip(), RandAugmentFloat(), norm)


def authors_mixup(num_classes: int, label_smoothing: float = LABEL_SMOOTHING) -> Callable:
    """The authors' batch-level mixup/cutmix ``(x, y) -> (mixed x, soft targets)``, whatever the
    preset's augmentation: timm ``Mixup(mixup_alpha=MIXUP_ALPHA, cutmix_alpha=CUTMIX_ALPHA,
    prob=MIX_PROB, switch_prob=0.5, label_smoothing)`` (configs/cifar100_vit.yaml). The batch size
    must be even."""
    from timm.data import Mixup

    return Mixup(
        mixup_alpha=MIXUP_ALPHA,
        cutmix_alpha=CUTMIX_ALPHA,
        prob=MIX_PROB,
        switch_prob=0.5,
        label_smoothing=label_smoothing,
        num_classes=num_classes,
    )


def build_mixup(
    augment: str, num_classes: int, label_smoothing: float = LABEL_SMOOTHING
) -> Callable | None:
    """Batch-level mixup/cutmix ``(x, y) -> (x, soft targets)`` for ``augment="paper"``
    (:func:`authors_mixup`: mixup alpha 1.0, cutmix alpha 0.8), else None. The batch size must be
    even (the train loader drops the last incomplete batch).
    """
    check_augment(augment)
    if augment != "paper":
        return None
    return authors_mixup(num_classes, label_smoothing)
