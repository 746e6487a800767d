"""Learning-rate schedule: linear warm-up, then cosine decay to zero, updated every step.

Park & Kim (2022), Appendix A train every model with AdamW, a few warm-up epochs and a cosine
schedule. With ``W`` warm-up steps and ``T`` steps in all, the learning rate used by step ``s``
(0-based) is

    lr(s) = lr * (s + 1) / W                                    for s < W
    lr(s) = lr * (1 + cos(pi * (s - W) / (T - W))) / 2          for W <= s < T
"""

from __future__ import annotations

import math

import torch


def warmup_cosine(step: int, warmup_steps: int, total_steps: int) -> float:
    """The factor multiplying the base learning rate at ``step`` (see the module docstring)."""
    if total_steps <= 0:
        raise ValueError(f"total_steps={total_steps} must be positive")
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps={warmup_steps} must be >= 0")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    decay = total_steps - warmup_steps
    if decay <= 0:
        return 1.0
    progress = min(step - warmup_steps, decay) / decay
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def make_scheduler(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step ``LambdaLR`` following :func:`warmup_cosine` (call ``.step()`` after each step)."""

    def factor(step: int) -> float:
        return warmup_cosine(step, warmup_steps, total_steps)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
