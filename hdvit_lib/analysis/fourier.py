"""Fourier analysis of feature maps (Park & Kim 2022, Sec. 3 "MSAs are low-pass filters",
Fig. 2a, Fig. 8, Fig. D.2).

The paper's claim: MSAs reduce the high-frequency amplitude of feature maps, Convs (and MLPs)
amplify it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from hdvit_lib.analysis.features import Features, as_features
from hdvit_lib.analysis.result import Result
from hdvit_lib.analysis.variance import fraction_where

EPS = 1e-6  # added to |FFT| before the log, as in the official fourier_analysis.ipynb


def frequencies(size: int, include_nyquist: bool = True) -> np.ndarray:
    """The frequencies, in units of pi, at which ``relative_log_amplitude`` samples a
    ``size`` x ``size`` map: ``2 k / size`` for k = 0, 1, ... (up to 1.0 = pi with the Nyquist one)."""
    c = size // 2
    n = c + 1 if include_nyquist else size - c
    return 2.0 * np.arange(n) / size


def relative_log_amplitude(feature_map: torch.Tensor, include_nyquist: bool = True) -> np.ndarray:
    """Relative log amplitude of a (B, C, H, W) feature map along the half-diagonal of its spectrum.

    Park & Kim (2022), Sec. 3, Fig. 2a: ``A = mean_{b, c} log(|FFT2(x[b, c])| + 1e-6)``, centred
    with fftshift, read along the diagonal from frequency (0, 0) to the corner, minus its value
    at frequency 0 (so the first value is 0). Sample k has frequency ``2 pi k / H`` along each
    axis (``frequencies(H)``).

    The official notebook reads the diagonal towards the positive corner (``diag()[H//2:]``),
    whose last point is ``pi (1 - 2/H)`` (plotted at pi). With ``include_nyquist=True`` (default)
    we read towards the negative corner instead, which for real maps has the same amplitudes
    (|F(-k)| = |F(k)|) and ends exactly at the Nyquist frequency pi; ``include_nyquist=False``
    reproduces the official samples exactly.
    """
    if feature_map.ndim != 4:
        raise ValueError(f"expected a (B, C, H, W) feature map, got shape {tuple(feature_map.shape)}")
    h, w = feature_map.shape[-2:]
    if h != w:
        raise ValueError(f"the half-diagonal needs a square map; got H={h}, W={w}")
    amp = torch.log(torch.fft.fft2(feature_map.double()).abs() + EPS).mean(dim=(0, 1))
    amp = torch.fft.fftshift(amp, dim=(-2, -1)).numpy()
    c = h // 2
    diag = np.diag(amp)
    curve = diag[c::-1] if include_nyquist else diag[c:]
    return curve - curve[0]


@dataclass
class FourierResult(Result):
    """Per spatial block (vector outputs are skipped): name, kind, normalised depth (over all
    blocks), the relative log amplitude curve and its frequencies (units of pi), and
    ``high_frequency``: the curve's value at its highest frequency (Fig. 8).
    ``high_frequency_delta[i]``: the change block i caused (NaN where the previous block's map
    has another size or there is none). Summary: the fraction of MSA blocks that lowered the
    high-frequency amplitude and of conv/MLP blocks that raised it (NaN when none).
    """

    model: str
    names: list[str]
    kinds: list[str]
    depth: np.ndarray
    subsamples: list[bool]
    curves: list[np.ndarray]
    freqs: list[np.ndarray]
    high_frequency: np.ndarray
    high_frequency_delta: np.ndarray
    msa_lower_fraction: float
    conv_mlp_raise_fraction: float
    include_nyquist: bool
    n_images: int


def fourier_analysis(
    features_or_model: Features | nn.Module,
    loader_or_batches: Iterable | torch.Tensor | None = None,
    n_images: int | None = None,
    device: str | torch.device | None = None,
    model_name: str = "",
    include_nyquist: bool = True,
) -> FourierResult:
    """Relative log amplitude of every block's feature map (Park & Kim 2022, Fig. 2a and Fig. 8).

    For each block whose output is a spatial map: ``relative_log_amplitude`` (see there for the
    formula) and its value at the highest frequency, against the block's normalised depth.
    The pass is in eval mode (see ``extract_features``); features are shared through its cache.
    """
    f = as_features(features_or_model, loader_or_batches, n_images, device)
    idx = [i for i in range(len(f)) if f.is_map(i)]
    curves = [relative_log_amplitude(f.outputs[i], include_nyquist) for i in idx]
    high = np.array([c[-1] for c in curves])
    delta = np.full(len(idx), np.nan)
    for j in range(1, len(idx)):
        if idx[j - 1] == idx[j] - 1 and f.outputs[idx[j]].shape[-1] == f.outputs[idx[j - 1]].shape[-1]:
            delta[j] = high[j] - high[j - 1]
    kinds = np.array([f.kinds[i] for i in idx])
    msa, cm = kinds == "msa", np.isin(kinds, ["conv", "mlp"])
    return FourierResult(
        model=model_name,
        names=[f.names[i] for i in idx],
        kinds=kinds.tolist(),
        depth=f.depth[idx],
        subsamples=[f.subsamples[i] for i in idx],
        curves=curves,
        freqs=[frequencies(f.outputs[i].shape[-1], include_nyquist) for i in idx],
        high_frequency=high,
        high_frequency_delta=delta,
        msa_lower_fraction=fraction_where(delta[msa] < 0, delta[msa]),
        conv_mlp_raise_fraction=fraction_where(delta[cm] > 0, delta[cm]),
        include_nyquist=include_nyquist,
        n_images=f.n_images,
    )
