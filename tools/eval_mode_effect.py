"""How much the model's mode (eval vs train) changes the representation figures (Figs. 2a, 8, 9).

The authors' Fourier and variance notebooks never call ``.eval()``, so BatchNorm there normalises
with the statistics of the batch being analysed; the book analyses in eval mode. This measures, on
one trained model of a preset, the high-frequency relative log amplitude (Fig. 8) and the
feature-map variance (Fig. 9) of every block in both modes, and prints a Markdown summary.

    python tools/eval_mode_effect.py --model resnet50 --preset smoke
"""

from __future__ import annotations

import argparse
import copy

import numpy as np
import torch

from hdvit_lib.analysis.fourier import relative_log_amplitude
from hdvit_lib.analysis.variance import map_variance
from hdvit_lib.data.batches import analysis_batches
from hdvit_lib.experiments.common import train_models
from hdvit_lib.models.blocks import as_feature_map
from hdvit_lib.presets import get_preset


@torch.no_grad()
def per_block(model: torch.nn.Module, x: torch.Tensor, train: bool) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Kinds, high-frequency amplitude and variance of every spatial block, in train or eval mode
    (on a copy: train-mode BatchNorm would update the running statistics)."""
    m = copy.deepcopy(model).train(train)
    kinds, high, var = [], [], []
    for b in m.blocks():
        x = b.module(x)
        fmap = as_feature_map(x, b)
        if fmap is None or fmap.ndim != 4:
            continue
        kinds.append(b.kind)
        high.append(float(relative_log_amplitude(fmap)[-1]))
        var.append(map_variance(fmap))
    return kinds, np.array(high), np.array(var)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet50")
    p.add_argument("--preset", default="smoke")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    cfg = get_preset(a.preset)
    model = train_models([a.model], cfg, seed=a.seed)[a.model].model
    x = torch.cat([b[0] for b in analysis_batches(cfg, a.seed)])
    kinds, h_eval, v_eval = per_block(model, x, train=False)
    _, h_train, v_train = per_block(model, x, train=True)
    dh = h_train - h_eval
    rel_v = (v_train - v_eval) / v_eval
    print(f"{a.model}, preset {a.preset}, {len(x)} test images, {len(kinds)} spatial blocks")
    print(f"- Fig. 8 high-frequency log amplitude, train minus eval mode: mean |diff| {np.abs(dh).mean():.3f}, "
          f"max {np.abs(dh).max():.3f} (eval-mode values span {h_eval.min():.2f} to {h_eval.max():.2f})")
    print(f"- Fig. 9 feature-map variance, (train - eval) / eval: median {np.median(rel_v):+.1%}, "
          f"range {rel_v.min():+.1%} to {rel_v.max():+.1%}")
    signs = np.sign(np.diff(h_eval)) != np.sign(np.diff(h_train))
    vsigns = np.sign(np.diff(v_eval)) != np.sign(np.diff(v_train))
    print(f"- block-to-block changes whose sign differs between the modes: {int(signs.sum())} of {len(signs)} "
          f"(amplitude), {int(vsigns.sum())} of {len(vsigns)} (variance)")


if __name__ == "__main__":
    main()
