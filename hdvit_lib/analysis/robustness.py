"""Robustness against noise restricted to a frequency band (Park & Kim 2022, Sec. 3, Fig. 2b).

The paper's claim: ViTs (MSAs, low-pass filters) are robust against high-frequency noise and
vulnerable to low-frequency noise; ResNets (Convs) are the opposite -- more vulnerable to
high-frequency noise.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from hdvit_lib.analysis.features import eval_mode, labelled_batches, model_device, score
from hdvit_lib.analysis.result import Result

DEFAULT_F_CENTERS = tuple(np.round(np.arange(1, 10) * 0.1, 1))  # 0.1 pi ... 0.9 pi


def band_mask(size: tuple[int, int], f_center: float, bandwidth: float = 0.1 * np.pi) -> torch.Tensor:
    """Boolean (H, W) mask, in ``torch.fft.fft2`` order, of the frequencies ``k`` with
    ``f_center - bandwidth/2 <= max(|k_y|, |k_x|) < f_center + bandwidth/2`` (radians per pixel).

    The max-norm matches the frequency axis of Fig. 2a, read along the spectrum's diagonal.
    """
    h, w = size
    ky = 2 * np.pi * np.fft.fftfreq(h)
    kx = 2 * np.pi * np.fft.fftfreq(w)
    k = np.maximum(np.abs(ky)[:, None], np.abs(kx)[None, :])
    lo, hi = f_center - bandwidth / 2, f_center + bandwidth / 2
    return torch.from_numpy((k >= lo - 1e-9) & (k < hi - 1e-9))


def band_noise(
    shape: Sequence[int],
    f_center: float,
    bandwidth: float = 0.1 * np.pi,
    magnitude: float = 0.1,
    seed: int = 0,
) -> torch.Tensor:
    """Random noise of ``shape`` (..., H, W) whose spectrum lies in one frequency band.

    White Gaussian noise (random phases) is Fourier transformed, every frequency outside
    ``band_mask(f_center, bandwidth)`` (radians per pixel, max-norm) is zeroed, and the result is
    transformed back; each (H, W) map is then scaled to a root-mean-square of ``magnitude``
    (in the units of the input it is added to). The band is symmetric under k -> -k, so the
    noise is real. Raises if no frequency of an H x W grid falls into the band.
    """
    *_, h, w = shape
    mask = band_mask((h, w), f_center, bandwidth)
    if not mask.any():
        step = 2 / max(h, w)
        raise ValueError(
            f"no frequency of a {h}x{w} grid lies in [{(f_center - bandwidth / 2) / np.pi:.3f}, "
            f"{(f_center + bandwidth / 2) / np.pi:.3f}) pi; the grid's frequencies are multiples of "
            f"{step:.3f} pi: widen bandwidth or move f_center"
        )
    g = torch.Generator().manual_seed(int(seed))
    white = torch.randn(*shape, generator=g, dtype=torch.float64)
    noise = torch.fft.ifft2(torch.fft.fft2(white) * mask).real
    rms = noise.pow(2).mean(dim=(-2, -1), keepdim=True).sqrt().clamp_min(1e-12)
    return (noise * (magnitude / rms)).float()


@dataclass
class RobustnessResult(Result):
    """Accuracy and loss on clean images and with band noise at each centre frequency.

    f_centers: centre frequencies in units of pi. delta_accuracy = accuracy - clean_accuracy
    (the paper's y-axis in Fig. 2b, in fractions, not percent).
    """

    model: str
    f_centers: np.ndarray
    bandwidth: float
    magnitude: float
    clean_accuracy: float
    clean_loss: float
    accuracy: np.ndarray
    loss: np.ndarray
    delta_accuracy: np.ndarray
    n_images: int


@torch.no_grad()
def frequency_robustness(
    model: nn.Module,
    loader_or_batches: Iterable | torch.Tensor,
    f_centers: Sequence[float] = DEFAULT_F_CENTERS,
    magnitude: float = 0.1,
    bandwidth: float = 0.1,
    n_images: int | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    model_name: str = "",
) -> RobustnessResult:
    """Accuracy change under frequency-band noise (Park & Kim 2022, Sec. 3, Fig. 2b).

    For each centre ``f`` (in units of pi): ``delta_acc(f) = acc(x + n_f) - acc(x)``, with
    ``n_f = band_noise(x.shape, f pi, bandwidth pi, magnitude)`` -- random phases, band of width
    ``bandwidth`` pi (0.1 pi as in the paper), RMS ``magnitude`` per image and channel, added to
    the (normalised) input. Noise is drawn independently per image, channel, band and batch
    from ``seed``. One pass over the data; the model runs in eval mode (restored afterwards).
    """
    dev = torch.device(device) if device is not None else model_device(model)
    fc = np.asarray(f_centers, dtype=float)
    correct, losses = np.zeros(len(fc)), np.zeros(len(fc))
    clean_correct, clean_loss, n = 0, 0.0, 0
    with eval_mode(model):
        for b, (x, y) in enumerate(tqdm(labelled_batches(loader_or_batches, n_images), desc="band noise", leave=False)):
            y = y.to(dev)
            c, loss = score(model(x.to(dev)), y)
            clean_correct, clean_loss, n = clean_correct + c, clean_loss + loss, n + len(y)
            for j, f in enumerate(fc):
                noise = band_noise(x.shape, f * np.pi, bandwidth * np.pi, magnitude, seed=_seed(seed, j, b))
                c, loss = score(model((x + noise.to(x.dtype)).to(dev)), y)
                correct[j] += c
                losses[j] += loss
    acc = correct / n
    return RobustnessResult(
        model=model_name,
        f_centers=fc,
        bandwidth=float(bandwidth),
        magnitude=float(magnitude),
        clean_accuracy=clean_correct / n,
        clean_loss=clean_loss / n,
        accuracy=acc,
        loss=losses / n,
        delta_accuracy=acc - clean_correct / n,
        n_images=n,
    )


def _seed(seed: int, band: int, batch: int) -> int:
    return (seed * 1_000_003 + band * 10_007 + batch) % (2**63)
