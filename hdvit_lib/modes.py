"""Module modes for analyses and evaluation: eval mode with every module's mode restored afterwards,
the default device, and the mixed-precision dtype a device computes fastest in.

Light on purpose (torch only), so the trainer, the data module and the analyses share one
implementation without importing the model zoo.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from hdvit_lib.models.blocks import Block


@contextlib.contextmanager
def eval_mode(model: nn.Module, blocks: Sequence[Block] | None = None) -> Iterator[None]:
    """Put ``model`` (and the blocks' modules) in eval mode; restore every module's mode on exit."""
    mods: list[nn.Module] = list(model.modules())
    for b in blocks or []:
        mods += list(b.module.modules())
        if b.shortcut is not None:
            mods += list(b.shortcut.modules())
    saved = [(m, m.training) for m in mods]
    try:
        for m, _ in saved:
            m.training = False
        yield
    finally:
        for m, was in saved:
            m.training = was


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def resolve_device(device: torch.device | str | None = None) -> torch.device:
    """``device`` as a ``torch.device``; None: CUDA when present, else the CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def amp_dtype(device: torch.device | str) -> torch.dtype:
    """The autocast dtype for ``device``: bfloat16 where the hardware computes in it (GPUs from
    Ampere on, e.g. A100/L4/H100, and CPUs), float16 on older GPUs such as Colab's T4, where
    bfloat16 is only emulated (slow); float16 training needs a ``GradScaler`` (the trainer adds one).
    """
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_bf16_supported(including_emulation=False):
        return torch.float16
    return torch.bfloat16
