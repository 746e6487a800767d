"""Module modes for analyses and evaluation: eval mode with every module's mode restored afterwards.

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
