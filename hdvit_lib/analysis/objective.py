"""The training loss that the loss landscape and the Hessian spectra measure (Park & Kim 2022,
Sec. 2, Figs. 1, 4, 5, 12c): one definition, used by both.

The authors plot "NLL + L2" (``losslandscape.ipynb``): the mean cross-entropy against the *soft*
targets of their training pipeline (augmented training images, Mixup/CutMix, label smoothing 0.1;
timm's ``SoftTargetCrossEntropy``) plus ``weight_decay`` times ``ops/norm.py``'s ``l2``, which is the
sum over parameter tensors of their L2 norms, *not squared*:

    L(w) = -1/B sum_i sum_c t_ic log softmax(f(x_i; w))_c  +  weight_decay * sum_k ||w_k||_2

The weight-decay form the optimiser applies (AdamW: ``weight_decay / 2 * ||w||^2``'s gradient) is
kept as ``penalty="squared"``; it is not what the figures show.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

PENALTIES = ("authors", "squared")


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``logits`` (B, C) against ``target``: class indices (B,) or soft
    targets (B, C) whose rows sum to 1 (mixup / label smoothing), as timm's SoftTargetCrossEntropy."""
    if target.ndim == logits.ndim:
        return -(target * F.log_softmax(logits, dim=-1)).sum(-1).mean()
    return F.cross_entropy(logits, target)


def hard_labels(target: torch.Tensor) -> torch.Tensor:
    """Class indices of ``target``: itself, or the arg-max of soft targets (the official code's
    accuracy under mixup)."""
    return target.argmax(-1) if target.ndim > 1 else target


def l2_penalty(tensors: Sequence[torch.Tensor], penalty: str = "authors") -> torch.Tensor:
    """``sum_k ||w_k||_2`` (``"authors"``: ``ops/norm.py l2``) or ``1/2 sum_k ||w_k||^2``
    (``"squared"``) over the parameter tensors ``w_k``. A tensor may carry leading batch dimensions
    (e.g. (G, n_k) for G grid points): the norm runs over its last dimension only then, so pass
    flattened tensors."""
    if penalty not in PENALTIES:
        raise ValueError(f"penalty={penalty!r} is not one of {', '.join(PENALTIES)}")
    if penalty == "authors":
        return sum(torch.linalg.vector_norm(t, dim=-1) for t in tensors)
    return 0.5 * sum((t * t).sum(-1) for t in tensors)


def training_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    tensors: Sequence[torch.Tensor],
    weight_decay: float,
    penalty: str = "authors",
) -> torch.Tensor:
    """``soft_cross_entropy(logits, target) + weight_decay * l2_penalty(tensors, penalty)``: the loss
    of Park & Kim (2022), Figs. 1 and 4 (see the module docstring); ``tensors`` flattened."""
    return soft_cross_entropy(logits, target) + weight_decay * l2_penalty(tensors, penalty)
