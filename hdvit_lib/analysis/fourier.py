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


def frequencies(size: int, include_nyquist: bool = False) -> np.ndarray:
    """The true frequencies, in units of pi, of the samples ``relative_log_amplitude`` returns
    for a ``size`` x ``size`` map: ``2 k / size`` along each axis, k = 0, 1, ...

    Default (``include_nyquist=False``, the official samples ``diag()[size//2:]``): k = 0 ...
    ``size - size//2 - 1``, so for an even size the last sample is ``pi (1 - 2/size)``
    (0.875 pi for 16x16). The official notebook *plots* these samples at
    ``np.linspace(0, 1, n)``, i.e. stretched so that the last one is labelled "1.0 pi"; we keep
    the true frequencies as x-values. ``include_nyquist=True``: k = 0 ... ``size // 2``, ending
    at the Nyquist frequency pi for an even size.
    """
    c = size // 2
    n = c + 1 if include_nyquist else size - c
    return 2.0 * np.arange(n) / size


def relative_log_amplitude(feature_map: torch.Tensor, include_nyquist: bool = False) -> np.ndarray:
    """Relative log amplitude of a (B, C, H, W) feature map along the half-diagonal of its spectrum.

    Park & Kim (2022), Sec. 3, Fig. 2a, as the official ``fourier_analysis.ipynb`` computes it:
    ``A = mean_{b, c} log(|FFT2(x[b, c])| + 1e-6)``, rolled by (H/2, W/2) so that frequency 0 sits
    in the centre, read along the diagonal from the centre towards the positive corner
    (``diag()[H//2:]``), minus its value at frequency 0 (so the first value is 0). Sample k has
    frequency ``2 pi k / H`` along each axis (``frequencies(H)``); for an even H the last one is
    ``pi (1 - 2/H)``, which the paper's figures label pi.

    ``include_nyquist=True`` reads towards the negative corner instead (for real maps the same
    amplitudes, |F(-k)| = |F(k)|) and so adds the exact Nyquist sample (pi, pi) for an even H.
    That bin of a real signal is real-valued (no imaginary part), which lowers its mean log
    amplitude: by about -0.35 on white noise (E log|N(0,1)| vs E log|complex normal|). Not what
    the published figures show, hence not the default.
    """
    if feature_map.ndim != 4:
        raise ValueError(f"expected a (B, C, H, W) feature map, got shape {tuple(feature_map.shape)}")
    h, w = feature_map.shape[-2:]
    if h != w:
        raise ValueError(f"the half-diagonal needs a square map; got H={h}, W={w}")
    amp = torch.log(torch.fft.fft2(feature_map.double()).abs() + EPS).mean(dim=(0, 1))
    amp = torch.roll(amp, shifts=(h // 2, w // 2), dims=(-2, -1)).numpy()
    c = h // 2
    diag = np.diag(amp)
    curve = diag[c::-1] if include_nyquist else diag[c:]
    return curve - curve[0]


@dataclass
class FourierResult(Result):
    """Per spatial block (vector outputs are skipped): name, kind, normalised depth
    (``Features.depth``: the embedding at 0, the last block before the head at 1, as the official
    notebook), the relative log amplitude curve and its true frequencies (units of pi; see
    ``frequencies``), and ``high_frequency``: the curve's value at its last sample (Fig. 8; pi (1 - 2/H)
    by default, plotted at pi in the paper).
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
    include_nyquist: bool = False,
) -> FourierResult:
    """Relative log amplitude of every block's feature map (Park & Kim 2022, Fig. 2a and Fig. 8).

    For each block whose output is a spatial map: ``relative_log_amplitude`` (see there for the
    formula; ``include_nyquist=False``: the official samples) and its value at the highest
    frequency, against the block's normalised depth (``Features.depth``: i / (L - 1) over the L
    blocks before the classifier head, as the official notebook, which drops the logits first).
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
