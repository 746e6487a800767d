"""The training set on the training device, augmented there a batch at a time.

Why: the ``paper`` recipe's per-sample RandAugment is Python-bound: 4.4-5.2k images/s on one CPU
core of this machine (torchvision v2 on 32x32 uint8 tensors), while a GPU trains ResNet-50 or
ViT-Ti on CIFAR at thousands of images/s in bf16 and a Colab VM has two cores. Here the whole
training set sits on the device as uint8 (CIFAR-100: 150 MB), and each batch is

1. cut from the set by index (a seeded permutation per epoch),
2. randomly cropped from its 4-px zero padding and mirrored, every image with its own draws
   (one gather for the batch; :func:`crop_flip_batch`),
3. for ``augment="paper"``: RandAugment (2 ops, magnitude 9) applied to groups of ``group``
   images (:func:`rand_augment_groups`): the images of a group share the drawn ops and
   magnitudes, every group draws its own. ``group=1`` is the per-sample recipe exactly; 8 ran
   5.4x faster than 1 on one CPU core (256-image batches: 28.2k vs 5.2k images/s),
4. converted to float and normalised.

So crop and flip follow the same distribution as ``transforms.RandomCropFlip``; with ``group > 1``
RandAugment's draws are shared within a group (each image's marginal distribution is unchanged,
the draws of images in one group are not independent) — a documented departure, off with
``group=1``. Mixup/CutMix stay with the trainer (they already work on device batches).

Random draws: the permutation and the crop/flip draws come from ``self.generator`` (a CPU
generator, saved and restored with the trainer's checkpoints like a DataLoader's); RandAugment
uses torch's global generator, as on the CPU path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F

from .transforms import check_augment, to_uint8


def crop_flip_batch(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, flip: torch.Tensor,
                    padding: int = 4) -> torch.Tensor:
    """Per-image random crop of the zero-padded batch ``x`` (B, C, H, W) at offsets ``rows[b]``,
    ``cols[b]`` in ``[0, 2 * padding]``, then a mirror where ``flip[b]``: one gather for the batch.

    Equals, image by image, ``F.pad(x[b], (p, p, p, p))[:, r:r + H, c:c + W]`` (flipped if asked).
    """
    b, c, h, w = x.shape
    dev = x.device
    padded = F.pad(x, (padding, padding, padding, padding))
    r = rows.to(dev).view(b, 1, 1, 1) + torch.arange(h, device=dev).view(1, 1, h, 1)
    q = cols.to(dev).view(b, 1, 1, 1) + torch.arange(w, device=dev).view(1, 1, 1, w)
    q = torch.where(flip.to(dev).view(b, 1, 1, 1), 2 * cols.to(dev).view(b, 1, 1, 1) + w - 1 - q, q)
    bi = torch.arange(b, device=dev).view(b, 1, 1, 1)
    ci = torch.arange(c, device=dev).view(1, c, 1, 1)
    return padded[bi, ci, r, q]


def _check_group(group: int) -> None:
    if group < 1:
        raise ValueError(f"group={group} must be at least 1 (1: every image draws its own ops)")


def rand_augment_groups(x: torch.Tensor, group: int, op: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``op`` (e.g. torchvision's ``RandAugment``) on consecutive groups of ``group`` images of the
    uint8 batch ``x``: one draw of ops and magnitudes per group."""
    _check_group(group)
    return torch.cat([op(part) for part in x.split(group)])


def _as_stored(dataset: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The images (uint8 when they are exactly k/255, as CIFAR's are; else float32) and labels.
    An ``ImageDataset`` (CIFAR, the synthetic set) hands over its uint8 tensor as it is."""
    ys = torch.as_tensor([int(t) for t in dataset.targets], dtype=torch.long)
    data = getattr(dataset, "data", None)
    if isinstance(data, torch.Tensor) and data.dtype == torch.uint8 and data.ndim == 4 and len(data) == len(ys):
        return data, ys
    xs = torch.stack([dataset[i][0] for i in range(len(dataset))])
    u8 = to_uint8(xs)
    return (u8, ys) if torch.equal(u8.float().div_(255), xs) else (xs, ys)


class DeviceLoader:
    """Batches of ``dataset`` (items: float images in [0, 1], int labels; ``.targets``,
    ``.num_classes``) augmented on ``device``: ``for x, y in loader`` gives normalised float
    batches there. ``augment``: ``none | crop_flip | paper`` (``transforms.AUGMENTS``);
    ``group``: images per RandAugment draw (module docstring).

    Behaves like the training DataLoader for the trainer: ``len()`` batches, ``.dataset``,
    ``.batch_size``, ``.generator`` (its RNG state is checkpointed), ``drop_last``, and
    :meth:`shard` for DDP (rank ``r`` of ``N`` takes items ``r, r + N, ...`` of each global batch).
    """

    def __init__(self, dataset: Any, batch_size: int, augment: str, mean, std, device: torch.device | str,
                 *, shuffle: bool = True, drop_last: bool = False, seed: int = 0, group: int = 8,
                 padding: int = 4):
        check_augment(augment)
        _check_group(group)
        self.dataset, self.batch_size, self.augment = dataset, int(batch_size), augment
        self.device = torch.device(device)
        self.shuffle, self.drop_last, self.group, self.padding = shuffle, drop_last, int(group), padding
        self.generator = torch.Generator().manual_seed(seed)
        images, labels = _as_stored(dataset)
        self.images, self.labels = images.to(self.device), labels.to(self.device)
        self.mean = torch.tensor(mean, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=self.device).view(1, -1, 1, 1)
        self.rank, self.world = 0, 1
        self._op = None
        if augment == "paper":
            from torchvision.transforms.v2 import RandAugment

            self._op = RandAugment(num_ops=2, magnitude=9)

    @property
    def sampler(self) -> None:  # the trainer asks for ``sampler.set_epoch``; the permutation is ours
        return None

    def shard(self, rank: int, world: int, global_batch: int) -> DeviceLoader:
        """This rank's loader under DDP: the same permutation on every rank (same seed), items
        ``rank, rank + world, ...`` of each global batch of ``global_batch``."""
        if global_batch % world:
            raise ValueError(f"batch_size={global_batch} does not split across {world} processes; use a multiple of {world}")
        out = object.__new__(DeviceLoader)
        out.__dict__.update(self.__dict__)
        out.batch_size, out.rank, out.world = global_batch, rank, world
        return out

    def __len__(self) -> int:
        n, b = len(self.labels), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        if self.augment != "none":
            n = x.shape[0]
            hi = 2 * self.padding + 1
            rows = torch.randint(0, hi, (n,), generator=self.generator)
            cols = torch.randint(0, hi, (n,), generator=self.generator)
            flip = torch.rand(n, generator=self.generator) < 0.5
            x = crop_flip_batch(x, rows, cols, flip, self.padding)
        if self._op is not None:
            x = rand_augment_groups(x if x.dtype == torch.uint8 else to_uint8(x), self.group, self._op)
        x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
        return (x - self.mean) / self.std

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.labels)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for k in range(len(self)):
            idx = order[k * self.batch_size:(k + 1) * self.batch_size].to(self.device)
            # every rank draws the whole batch's augmentation (same generator state), then keeps its share
            x, y = self._augment(self.images[idx]), self.labels[idx]
            yield x[self.rank::self.world], y[self.rank::self.world]
