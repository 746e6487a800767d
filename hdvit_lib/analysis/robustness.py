"""Robustness against noise restricted to a frequency band (Park & Kim 2022, Sec. 3, Fig. 2b).

The paper's claim: ViTs (MSAs, low-pass filters) are robust against high-frequency noise and
vulnerable to low-frequency noise; ResNets (Convs) are the opposite -- more vulnerable to
high-frequency noise.

Two noise constructions (``CONSTRUCTIONS``):

- ``"authors"`` (default): the authors' ``FreqAttack(Random(eps), f=f, s=s)`` from ``ops/adversarial.py``
  of github.com/xxxnell/how-do-vits-work (branch ``transformer``). Random sign noise
  ``delta = eps * sign(randn)`` (every pixel +-eps) is Fourier transformed, rolled by (H/2, W/2),
  its amplitude multiplied by a centred square annulus (``authors_mask``: outer square of side
  ``int((f + s) H / (2 pi)) * 2``, inner ``int((f - s) H / (2 pi)) * 2``, both clamped to [0, H]),
  its phase kept, rolled back and inverse transformed; the real part is added to the (normalised)
  image. The noise power therefore grows with the band's area: at 32x32 the 0.9 pi band carries
  13.5x the power of the 0.1 pi band (RMS 0.11 eps -> 0.41 eps; ``authors_noise_rms``).
- ``"equal_power"``: white Gaussian noise band-passed with a max-norm band mask and rescaled so
  that every band has the same RMS ``magnitude``.

Not published: the code of Fig. 2b itself ("The code for Figure 2b was not released because it
relies on the IN1K dataset", github.com/xxxnell/how-do-vits-work/issues/23), hence its ``eps`` and
``s``. The paper's figure uses bands 0.1 pi wide and ``FreqAttack``'s default is ``s = 0.2`` rad;
we take ``[f - s, f + s]`` with ``2 s = bandwidth`` (0.1 pi by default) around each centre ``f``,
and ``eps = magnitude``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from hdvit_lib.analysis.features import eval_mode, labelled_batches, model_device, score
from hdvit_lib.analysis.result import Result

#: Bands at or above this centre frequency (units of pi) count as high-frequency noise (Fig. 2b's claim).
HIGH_BAND = 0.5
DEFAULT_F_CENTERS = tuple(np.round(np.arange(1, 10) * 0.1, 1))  # 0.1 pi ... 0.9 pi
CONSTRUCTIONS = ("authors", "equal_power")


def band_mask(size: tuple[int, int], f_center: float, bandwidth: float = 0.1 * np.pi) -> torch.Tensor:
    """Boolean (H, W) mask, in ``torch.fft.fft2`` order, of the frequencies ``k`` with
    ``f_center - bandwidth/2 <= max(|k_y|, |k_x|) < f_center + bandwidth/2`` (radians per pixel).

    The band of the ``"equal_power"`` construction. The max-norm matches the frequency axis of
    Fig. 2a, read along the spectrum's diagonal.
    """
    h, w = size
    ky = 2 * np.pi * np.fft.fftfreq(h)
    kx = 2 * np.pi * np.fft.fftfreq(w)
    k = np.maximum(np.abs(ky)[:, None], np.abs(kx)[None, :])
    lo, hi = f_center - bandwidth / 2, f_center + bandwidth / 2
    return torch.from_numpy((k >= lo - 1e-9) & (k < hi - 1e-9))


def _half_side(f: float, n: int) -> int:
    """Half the side of FreqAttack's centred square for frequency ``f`` (rad) on an ``n``-point
    axis: ``int(f n / (2 pi)) * 2`` clamped to [0, n], halved."""
    return min(max(int(f * n / (2 * math.pi)), 0), n // 2)


def authors_mask(size: tuple[int, int], f: float, s: float) -> torch.Tensor:
    """FreqAttack's amplitude mask (Park & Kim 2022, Fig. 2b; ``ops/adversarial.py``,
    ``FreqAttack._fourier_mask``) as a boolean (H, W) tensor in ``torch.fft.fft2`` order.

    The official mask lives in the rolled spectrum (frequency 0 at index H/2) as a square of side
    ``2 a`` padded centrally, ``a = int((f + s) H / (2 pi))`` clamped to [0, H/2], minus the
    same square for ``f - s``. In integer frequencies that keeps ``k`` with
    ``-a_out <= k_y, k_x < a_out`` and not ``-a_in <= k_y, k_x < a_in`` -- a square annulus,
    one bin wider on the negative side (the real part taken afterwards symmetrises it).
    Non-square maps use W for the x axis (the official code needs square maps).
    """
    h, w = size
    ky = np.fft.fftfreq(h, 1 / h).round().astype(int)
    kx = np.fft.fftfreq(w, 1 / w).round().astype(int)

    def square(a_y: int, a_x: int) -> np.ndarray:
        return ((ky >= -a_y) & (ky < a_y))[:, None] & ((kx >= -a_x) & (kx < a_x))[None, :]

    outer = square(_half_side(f + s, h), _half_side(f + s, w))
    inner = square(_half_side(f - s, h), _half_side(f - s, w))
    return torch.from_numpy(outer & ~inner)


def _empty_band(h: int, w: int, lo: float, hi: float, how: str) -> ValueError:
    step = 2 / max(h, w)
    return ValueError(
        f"no frequency of a {h}x{w} grid lies in the band [{lo / np.pi:.3f}, {hi / np.pi:.3f}] pi ({how}); "
        f"the grid's frequencies are multiples of {step:.3f} pi: widen bandwidth or move f_center"
    )


def freq_filter(delta: torch.Tensor, f: float, s: float) -> torch.Tensor:
    """The authors' frequency filter: the real part of ``FreqAttack._fourier_mask(delta, f, s)``
    (Park & Kim 2022, Sec. 3, Fig. 2b; ``ops/adversarial.py`` of xxxnell/how-do-vits-work).

    ``Re IFFT2( authors_mask(f, s) * |FFT2(delta)| * exp(i angle FFT2(delta)) )`` for a (..., H, W)
    ``delta``, i.e. the spectrum outside FreqAttack's square annulus between ``f - s`` and
    ``f + s`` (radians per pixel) is zeroed and the phase kept. Computed in float64, returned
    in ``delta``'s dtype. Raises if the annulus keeps no frequency of the grid.
    """
    h, w = delta.shape[-2:]
    mask = authors_mask((h, w), f, s)
    if not mask.any():
        raise _empty_band(h, w, f - s, f + s, "FreqAttack's square annulus between int((f -/+ s) H / 2 pi)")
    spec = torch.fft.fft2(delta.double()) * mask
    return torch.fft.ifft2(spec).real.to(delta.dtype)


def authors_noise_rms(size: tuple[int, int], f_center: float, bandwidth: float, magnitude: float) -> float:
    """The expected RMS of the ``"authors"`` band noise (closed form): for +-eps sign noise
    ``E|FFT2(delta)(k)|^2 = eps^2 H W`` at every k, and taking the real part averages the mask M
    with its mirror image, so ``E mean(n^2) = eps^2 mean_k ((M(k) + M(-k)) / 2)^2``."""
    m = authors_mask(size, f_center, bandwidth / 2).double()
    mirror = torch.roll(torch.flip(m, (0, 1)), (1, 1), (0, 1))  # M(-k) in fft2 order
    return float(magnitude * ((m + mirror) / 2).pow(2).mean().sqrt())


def band_noise(
    shape: Sequence[int],
    f_center: float,
    bandwidth: float = 0.1 * np.pi,
    magnitude: float = 0.1,
    seed: int = 0,
    construction: str = "authors",
) -> torch.Tensor:
    """Random noise of ``shape`` (..., H, W) whose spectrum lies in one frequency band
    (``f_center`` and ``bandwidth`` in radians per pixel).

    ``construction="authors"`` (default; Park & Kim 2022, Fig. 2b, ``FreqAttack(Random(eps), f, s)``):
    ``freq_filter(magnitude * sign(randn(shape)), f_center, bandwidth / 2)`` -- +-``magnitude``
    sign noise filtered to FreqAttack's square annulus ``[f - s, f + s]``; its power grows with
    the band's area (see the module docstring).

    ``construction="equal_power"``: white Gaussian noise, every frequency outside
    ``band_mask(f_center, bandwidth)`` (max-norm) zeroed, each (H, W) map scaled to a
    root-mean-square of ``magnitude``. The band is symmetric under k -> -k, so the noise is real.

    Either raises if no frequency of an H x W grid falls into the band.
    """
    if construction not in CONSTRUCTIONS:
        raise ValueError(f"construction={construction!r}; choose one of {', '.join(CONSTRUCTIONS)}")
    *_, h, w = shape
    g = torch.Generator().manual_seed(int(seed))
    if construction == "authors":
        mask = authors_mask((h, w), f_center, bandwidth / 2)
        if not mask.any():
            raise _empty_band(h, w, f_center - bandwidth / 2, f_center + bandwidth / 2,
                              "FreqAttack's square annulus between int((f -/+ s) H / 2 pi)")
        delta = magnitude * torch.randn(*shape, generator=g, dtype=torch.float64).sign()
        return freq_filter(delta, f_center, bandwidth / 2).float()
    mask = band_mask((h, w), f_center, bandwidth)
    if not mask.any():
        raise _empty_band(h, w, f_center - bandwidth / 2, f_center + bandwidth / 2, "max-norm band")
    white = torch.randn(*shape, generator=g, dtype=torch.float64)
    noise = torch.fft.ifft2(torch.fft.fft2(white) * mask).real
    rms = noise.pow(2).mean(dim=(-2, -1), keepdim=True).sqrt().clamp_min(1e-12)
    return (noise * (magnitude / rms)).float()


@dataclass
class RobustnessResult(Result):
    """Accuracy and loss on clean images and with band noise at each centre frequency.

    f_centers: centre frequencies and bandwidth in units of pi. delta_accuracy = accuracy -
    clean_accuracy (the paper's y-axis in Fig. 2b, in fractions, not percent). construction:
    ``"authors"`` (magnitude = eps of the +-eps sign noise before filtering) or ``"equal_power"``
    (magnitude = RMS of every band). noise_rms[j]: the RMS of the noise actually added in band j
    (over every image, channel and pixel).
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
    construction: str = "authors"
    noise_rms: np.ndarray = field(default_factory=lambda: np.zeros(0))


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
    construction: str = "authors",
) -> RobustnessResult:
    """Accuracy change under frequency-band noise (Park & Kim 2022, Sec. 3, Fig. 2b).

    For each centre ``f`` (in units of pi): ``delta_acc(f) = acc(x + n_f) - acc(x)``, with
    ``n_f = band_noise(x.shape, f pi, bandwidth pi, magnitude, construction=construction)``
    added to the (normalised) input; band of width ``bandwidth`` pi (0.1 pi as in the paper).
    ``"authors"`` (default): FreqAttack's filtered +-``magnitude`` sign noise, whose power grows
    with the band; ``"equal_power"``: RMS ``magnitude`` in every band (see ``band_noise``).
    Noise is drawn independently per image, channel, band and batch from ``seed``. One pass over
    the data; the model runs in eval mode (restored afterwards).
    """
    if construction not in CONSTRUCTIONS:
        raise ValueError(f"construction={construction!r}; choose one of {', '.join(CONSTRUCTIONS)}")
    dev = torch.device(device) if device is not None else model_device(model)
    fc = np.asarray(f_centers, dtype=float)
    correct, losses, power = np.zeros(len(fc)), np.zeros(len(fc)), np.zeros(len(fc))
    clean_correct, clean_loss, n = 0, 0.0, 0
    with eval_mode(model):
        for b, (x, y) in enumerate(tqdm(labelled_batches(loader_or_batches, n_images), desc="band noise", leave=False)):
            y = y.to(dev)
            c, loss = score(model(x.to(dev)), y)
            clean_correct, clean_loss, n = clean_correct + c, clean_loss + loss, n + len(y)
            for j, f in enumerate(fc):
                noise = band_noise(x.shape, f * np.pi, bandwidth * np.pi, magnitude, seed=_seed(seed, j, b),
                                   construction=construction)
                power[j] += float(noise.double().pow(2).mean(dim=(1, 2, 3)).sum())
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
        construction=construction,
        noise_rms=np.sqrt(power / n),
    )


def _seed(seed: int, band: int, batch: int) -> int:
    return (seed * 1_000_003 + band * 10_007 + batch) % (2**63)


def matched_rms(size: tuple[int, int], f_centers: Sequence[float], bandwidth: float, eps: float) -> float:
    """The power mean over the bands (centres and width in units of pi) of the authors' noise RMS
    for sign noise +-``eps`` on ``size`` images (``authors_noise_rms``)."""
    rms = [authors_noise_rms(size, f * np.pi, bandwidth * np.pi, eps) for f in f_centers]
    return float(np.sqrt(np.mean(np.square(rms))))


def band_means(result: RobustnessResult, high: float = HIGH_BAND) -> tuple[float, float]:
    """Mean accuracy change (fraction) under noise bands below and at/above ``high`` (units of pi)."""
    f, d = np.asarray(result.f_centers), np.asarray(result.delta_accuracy, dtype=float)
    lo = float(d[f < high].mean()) if (f < high).any() else float("nan")
    hi = float(d[f >= high].mean()) if (f >= high).any() else float("nan")
    return lo, hi
