"""Lesion study: remove one residual block's branch at a time (Park & Kim 2022, Sec. 4.1, Fig. 10b).

The paper's claim: removing an MSA near the end of a stage hurts more than removing one at its
start, and removing late Convs (of ResNet) hurts least -- MSAs at the end of a stage matter.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from hdvit_lib.analysis.features import (
    eval_mode,
    get_blocks,
    labelled_batches,
    model_device,
    score,
)
from hdvit_lib.analysis.result import Result
from hdvit_lib.models.blocks import run_blocks


@dataclass
class LesionResult(Result):
    """Per residual block (blocks with a ``shortcut``): its index among all blocks, name, kind,
    normalised depth, and the accuracy / loss of the model with that block's branch removed.
    delta_* = lesioned - intact (accuracy in fractions)."""

    model: str
    index: list[int]
    names: list[str]
    kinds: list[str]
    depth: np.ndarray
    accuracy: np.ndarray
    loss: np.ndarray
    delta_accuracy: np.ndarray
    delta_loss: np.ndarray
    clean_accuracy: float
    clean_loss: float
    n_images: int


@torch.no_grad()
def lesion_study(
    model: nn.Module,
    loader_or_batches: Iterable | torch.Tensor,
    n_images: int | None = None,
    device: str | torch.device | None = None,
    model_name: str = "",
) -> LesionResult:
    """Accuracy and loss after removing each residual block's branch (Park & Kim 2022, Fig. 10b).

    Lesioning block ``i`` replaces ``z_i = shortcut_i(z_{i-1}) + branch_i(z_{i-1})`` by
    ``shortcut_i(z_{i-1})`` (``run_blocks(..., lesion=i)``); all other blocks are kept. One pass
    over the data: the intact pass keeps every block's output and each lesioned pass restarts
    from the output before block ``i``. Eval mode, restored afterwards.
    """
    blocks = get_blocks(model)
    res = [i for i, b in enumerate(blocks) if b.shortcut is not None]
    if not res:
        raise ValueError(f"{type(model).__name__} has no residual blocks (no Block.shortcut) to lesion")
    dev = torch.device(device) if device is not None else model_device(model)
    correct, losses = np.zeros(len(res)), np.zeros(len(res))
    clean_correct, clean_loss, n = 0, 0.0, 0
    with eval_mode(model, blocks):
        for x, y in tqdm(labelled_batches(loader_or_batches, n_images), desc="lesion", leave=False):
            x, y = x.to(dev), y.to(dev)
            out, outs = run_blocks(blocks, x, keep=True)
            c, loss = score(out, y)
            clean_correct, clean_loss, n = clean_correct + c, clean_loss + loss, n + len(y)
            for j, i in enumerate(res):
                start = x if i == 0 else outs[i - 1]
                c, loss = score(run_blocks(blocks[i:], start, lesion=0)[0], y)
                correct[j] += c
                losses[j] += loss
    acc, loss = correct / n, losses / n
    depth = np.arange(len(blocks)) / max(len(blocks) - 1, 1)
    return LesionResult(
        model=model_name,
        index=res,
        names=[blocks[i].name for i in res],
        kinds=[blocks[i].kind for i in res],
        depth=depth[res],
        accuracy=acc,
        loss=loss,
        delta_accuracy=acc - clean_correct / n,
        delta_loss=loss - clean_loss / n,
        clean_accuracy=clean_correct / n,
        clean_loss=clean_loss / n,
        n_images=n,
    )
