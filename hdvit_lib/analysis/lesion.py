"""Lesion study: remove one block at a time (Park & Kim 2022, Sec. 4, Fig. 10b).

The paper's claim: removing an MSA near the end of a stage hurts more than removing one at its
start, and removing late Convs (of ResNet) hurts least -- MSAs at the end of a stage matter.

What is removed (``mode``, see ``hdvit_lib.models.blocks.Block``):

- ``"paper"`` (default; the Fig. 10 caption as we read it -- we could not retrieve the arXiv text
  here to check it): one 3x3 conv (with its BatchNorm) of a conv block is replaced by the
  identity, i.e. ``conv2`` of a (pre-activation) bottleneck, the second 3x3 conv of a basic
  block; an MSA or MLP block is removed whole (its shortcut kept). Conv blocks whose 3x3 conv
  changes the shape (the strided first block of a stage) are skipped: there is no identity to
  put in its place.
- ``"branch"``: every residual block's whole branch is removed (its shortcut kept).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
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
from hdvit_lib.models.blocks import LESION_MODES, run_blocks


@dataclass
class LesionResult(Result):
    """Per lesionable block (``mode``: see the module docstring): its index among all blocks,
    name, kind, normalised depth, and the accuracy / loss of the model with that block lesioned.
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
    mode: str = "paper"


@torch.no_grad()
def lesion_study(
    model: nn.Module,
    loader_or_batches: Iterable | torch.Tensor,
    n_images: int | None = None,
    device: str | torch.device | None = None,
    model_name: str = "",
    mode: str = "paper",
) -> LesionResult:
    """Accuracy and loss after lesioning each block in turn (Park & Kim 2022, Fig. 10b).

    ``mode="paper"``: block ``i`` runs ``Block.lesion`` instead (a conv block without one 3x3
    conv; an MSA/MLP block reduced to its shortcut); strided conv blocks are skipped.
    ``mode="branch"``: ``z_i = shortcut_i(z_{i-1}) + branch_i(z_{i-1})`` becomes
    ``shortcut_i(z_{i-1})`` for every residual block. All other blocks are kept
    (``run_blocks(..., lesion=i, mode=mode)``). One pass over the data: the intact pass keeps
    every block's output and each lesioned pass restarts from the output before block ``i``.
    Eval mode, restored afterwards.
    """
    if mode not in LESION_MODES:
        raise ValueError(f"mode={mode!r} is not one of {LESION_MODES}")
    blocks = get_blocks(model)
    res = [i for i, b in enumerate(blocks) if b.replacement(mode) is not None]
    if not res:
        raise ValueError(f"{type(model).__name__} has no residual blocks (no Block.shortcut / Block.lesion) "
                         f"to lesion with mode={mode!r}")
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
                c, loss = score(run_blocks(blocks[i:], start, lesion=0, mode=mode)[0], y)
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
        mode=mode,
    )


def end_of_stage_lesion(lesion: LesionResult, stages: Sequence[int], kind: str = "msa") -> tuple[float, int]:
    """Fraction of stages (with at least two residual ``kind`` blocks) where removing the last such
    block costs more accuracy than removing the first, and the number of such stages."""
    by_stage: dict[int, list[tuple[int, float]]] = {}
    for i, k, d in zip(lesion.index, lesion.kinds, lesion.delta_accuracy):
        if k == kind:
            by_stage.setdefault(int(stages[i]), []).append((i, float(d)))
    hits = [s[-1][1] < s[0][1] for s in by_stage.values() if len(s) >= 2]
    return (float(np.mean(hits)) if hits else float("nan")), len(hits)
