"""Feature map variance per block (Park & Kim 2022, Sec. 3, Fig. 9 and Fig. D.1).

The paper's claim: MSAs aggregate feature maps (reduce their variance) while Convs and MLPs
diversify them (increase it); variance accumulates in each stage and drops where MSAs sit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from hdvit_lib.analysis.features import Features, as_features
from hdvit_lib.analysis.result import Result


@dataclass
class VarianceResult(Result):
    """Per block (in order): name, kind, normalised depth (``Features.depth``: the embedding at 0,
    the last block before the head at 1, as the official notebook), variance, and ``delta`` = the change the
    block caused (its variance minus its input's; the first block is compared with the images).
    "vector" blocks (pooled features, logits) have no spatial variance: NaN.
    Summary: ``msa_reduce_fraction`` (MSA blocks with delta < 0) and
    ``conv_mlp_increase_fraction`` (conv and MLP blocks with delta > 0); NaN when there are none.
    """

    model: str
    names: list[str]
    kinds: list[str]
    depth: np.ndarray
    subsamples: list[bool]
    variance: np.ndarray
    delta: np.ndarray
    input_variance: float
    msa_reduce_fraction: float
    conv_mlp_increase_fraction: float
    n_images: int


def map_variance(fmap: torch.Tensor) -> float:
    """Variance over the spatial positions of each (image, channel) map (unbiased, N-1), averaged
    over images and channels: ``mean_{b,c} Var_{h,w} x[b,c,h,w]`` (as the official notebook)."""
    if fmap.ndim != 4:
        raise ValueError(f"expected a (B, C, H, W) feature map, got shape {tuple(fmap.shape)}")
    return float(fmap.double().var(dim=(-2, -1)).mean())


def feature_map_variance(
    features_or_model: Features | nn.Module,
    loader_or_batches: Iterable | torch.Tensor | None = None,
    n_images: int | None = None,
    device: str | torch.device | None = None,
    model_name: str = "",
) -> VarianceResult:
    """Feature map variance of every block's output (Park & Kim 2022, Sec. 3, Fig. 9).

    ``v_l = mean_{b, c} Var_{h, w}[z_l(b, c, h, w)]``: for each image b and channel c, the
    (unbiased) variance over the spatial positions of block l's output, averaged over images and
    channels -- the definition of the official ``featuremap_variance.ipynb``
    (``latent.var(dim=[-1, -2]).mean(dim=[0, 1])``; class tokens dropped). ``delta_l = v_l - v_{l-1}``
    with ``v_{-1}`` the images' variance. The pass is in eval mode (see ``extract_features``).

    features_or_model: ``Features`` from ``extract_features``, or a model with ``blocks()``
        together with ``loader_or_batches`` (then ``n_images`` and ``device`` apply).
    """
    f = as_features(features_or_model, loader_or_batches, n_images, device)
    var = np.array([map_variance(o) if f.is_map(i) else np.nan for i, o in enumerate(f.outputs)])
    v_in = map_variance(f.inputs)
    delta = var - np.concatenate([[v_in], var[:-1]])
    kinds = np.array(f.kinds)
    return VarianceResult(
        model=model_name,
        names=list(f.names),
        kinds=list(f.kinds),
        depth=f.depth.copy(),
        subsamples=list(f.subsamples),
        variance=var,
        delta=delta,
        input_variance=v_in,
        msa_reduce_fraction=fraction_where(delta[kinds == "msa"] < 0, delta[kinds == "msa"]),
        conv_mlp_increase_fraction=fraction_where(
            delta[np.isin(kinds, ["conv", "mlp"])] > 0, delta[np.isin(kinds, ["conv", "mlp"])]
        ),
        n_images=f.n_images,
    )


def fraction_where(hits: np.ndarray, values: np.ndarray) -> float:
    """The fraction of ``hits`` among the entries whose ``values`` are not NaN (NaN if none)."""
    ok = ~np.isnan(values)
    return float(hits[ok].mean()) if ok.any() else float("nan")


def pooled_fraction(deltas: Iterable[np.ndarray], want: str) -> tuple[float, int]:
    """The fraction of the non-NaN ``deltas`` (per-block changes, pooled over models) that are
    negative (``want="lower"``) or positive (``want="raise"``), and how many there were: the share
    of blocks that lower or raise a quantity (Park & Kim 2022, Sec. 3, Figs. 8 and 9: MSAs lower
    the variance and the high-frequency amplitude, Convs and MLPs raise them)."""
    if want not in ("lower", "raise"):
        raise ValueError(f"want={want!r}; choose 'lower' or 'raise'")
    d = np.concatenate([np.asarray(x, dtype=float).ravel() for x in deltas] or [np.zeros(0)])
    d = d[~np.isnan(d)]
    if d.size == 0:
        return float("nan"), 0
    hits = d < 0 if want == "lower" else d > 0
    return float(hits.mean()), int(d.size)
