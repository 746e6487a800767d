"""Small modules shared by the model zoo: residual wrappers for the block listing, config checks.

The wrappers returned inside ``Block`` objects hold *references* to a model's own submodules
(they are built on each ``model.blocks()`` call and are not registered in the model), so they add
no parameters to the model's ``state_dict``. Call ``model.blocks()`` after moving the model to
its device.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class Residual(nn.Module):
    """``x + branch(x)``: a pre-norm transformer sub-block (the branch includes the norm)."""

    def __init__(self, branch: nn.Module) -> None:
        super().__init__()
        self.branch = branch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.branch(x)


class TokensToMap(nn.Module):
    """Run ``fn`` on the patch tokens of a (B, P + H*W, C) sequence laid out as (B, C, H, W)."""

    def __init__(self, fn: nn.Module, prefix: nn.Module, prefix_tokens: int = 1) -> None:
        super().__init__()
        self.fn = fn
        self.prefix = prefix
        self.prefix_tokens = prefix_tokens

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.prefix_tokens
        cls, t = x[:, :p], x[:, p:]
        b, n, c = t.shape
        side = round(n**0.5)
        fmap = self.fn(t.transpose(1, 2).reshape(b, c, side, side))
        return torch.cat([self.prefix(cls), fmap.flatten(2).transpose(1, 2)], dim=1)


def drop_path_rates(rate: float, num_blocks: int) -> list[float]:
    """Stochastic-depth probability of each of ``num_blocks`` residual blocks, counted over the whole
    model: ``rate * j / (num_blocks - 1)`` for block ``j`` (0 for the first, ``rate`` for the last),
    the rule of the authors' ``AlterNet``/``ResNet`` constructors (and of timm's ``linspace``)."""
    if num_blocks <= 1:
        return [0.0] * num_blocks
    return [rate * j / (num_blocks - 1) for j in range(num_blocks)]


def divisors(n: int) -> list[int]:
    """All positive divisors of ``n``, ascending."""
    return [d for d in range(1, n + 1) if n % d == 0]


def check_patch(patch_size: int, img_size: int) -> None:
    """Raise unless ``patch_size`` divides ``img_size`` (naming the valid sizes)."""
    if patch_size < 1 or img_size % patch_size:
        valid = ", ".join(map(str, divisors(img_size)))
        raise ValueError(f"patch_size={patch_size} does not divide img_size={img_size}; choose one of {valid}")


def check_heads(widths: Sequence[int], heads: Sequence[int]) -> None:
    """Raise unless every width is a multiple of its number of heads."""
    for w, h in zip(widths, heads):
        if h < 1 or w % h:
            valid = ", ".join(map(str, divisors(w)))
            raise ValueError(f"num_heads={h} does not divide the width {w}; choose one of {valid}")


def check_len(name: str, value: Sequence, n: int) -> None:
    """Raise unless a per-stage setting has one entry per stage."""
    if len(value) != n:
        raise ValueError(f"{name}={tuple(value)} needs {n} entries (one per stage), got {len(value)}")
