"""The offline data set: natural-image-like 32x32 RGB images with class evidence in two bands.

Generative model (all frequencies ``f`` in cycles per image, ``H = W = 32``)::

    x_i = clip(0.5 + s * G_i (B_i + L_i + T_i) + b_i, 0, 1), quantised to uint8

- ``B_i`` *background* (nuisance): Gaussian noise with amplitude spectrum ``1/f`` (power ``1/f^2``),
  a luminance component shared by the three channels plus weaker per-channel chroma.
- ``L_i`` *layout* (low-frequency class evidence, "shape"): the ``K`` Gaussian blobs of class
  ``y_i`` (class-specific centres, widths ``sigma`` in 2.5-5 px, colours), all shifted together by a
  random ``(dx, dy)`` in ``[-shift, shift]^2`` px, each with a random amplitude gain, plus one
  distractor blob with random centre/colour. Above ``f ~ 6`` the blobs have almost no energy.
- ``T_i`` *texture* (high-frequency class evidence): random-phase noise filtered by two Gaussian
  bumps at ``+-f_c (cos theta_c, sin theta_c)`` (class-specific ``f_c`` in 8-12, ``theta_c`` on a
  grid over ``[0, pi)``; per-sample jitter of ``theta``), with a class colour. Because its phase is
  random, only its oriented energy (not its pixels) carries the class; below ``f ~ 6`` it has
  almost no energy.
- ``G_i, b_i``: colour jitter (per-channel gain in [0.8, 1.2], brightness offset ~ N(0, 0.05)).

Default amplitudes: ``B`` has unit std per image, each class blob peaks at 0.9 (x U[0.6, 1.4]),
``T`` has std 0.14 (x U[0.6, 1.4]), ``s = 0.18``; pixel std ~0.20, ~1.7% of values clipped.

The class prototypes (blob layouts, texture orientation/frequency/colour) depend only on
``num_classes`` (a fixed "world" seed), so every ``seed`` and split draws from the *same*
distribution; ``seed`` and ``split`` choose the samples. The radially averaged power spectrum falls
roughly as ``1/f^2`` (log-log slope about -2), and classifiers restricted to either band
(``f <= 4`` or ``f >= 7``) beat chance, so the Fourier chapters (Park & Kim 2022, Secs. 2 and 3) have
both low- and high-frequency information to lean on.
"""

from __future__ import annotations

import numpy as np
import torch

SIZE = 32
WORLD_SEED = 20220214  # class prototypes: fixed, so train/test and all seeds share one distribution
SPLIT_OFFSET = {"train": 0, "test": 1}


def _freq_grid(n: int = SIZE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    fy = np.fft.fftfreq(n, 1.0 / n)[:, None]
    fx = np.fft.fftfreq(n, 1.0 / n)[None, :]
    fr = np.sqrt(fx**2 + fy**2)
    return fx.astype(np.float32), fy.astype(np.float32), fr.astype(np.float32)


def _prototypes(num_classes: int, n_blobs: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([WORLD_SEED, num_classes])
    c = num_classes
    colours = rng.normal(size=(c, n_blobs, 3))
    colours /= np.linalg.norm(colours, axis=-1, keepdims=True)
    tex_col = rng.normal(size=(c, 3)) + 1.0  # mostly luminance, some chroma
    tex_col /= np.linalg.norm(tex_col, axis=-1, keepdims=True)
    theta = (np.arange(c) + rng.uniform(-0.2, 0.2, size=c)) * np.pi / max(c, 1)
    return {
        "centre": rng.uniform(7, SIZE - 7, size=(c, n_blobs, 2)).astype(np.float32),
        "sigma": rng.uniform(2.5, 5.0, size=(c, n_blobs)).astype(np.float32),
        "colour": colours.astype(np.float32),
        "theta": rng.permutation(theta).astype(np.float32),
        "freq": rng.uniform(8.0, 12.0, size=c).astype(np.float32),
        "tex_colour": tex_col.astype(np.float32),
    }


def _filter(w: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """Filter real images ``w`` (``(..., H, W)``) by a real, even frequency response ``gain``.

    float32 FFT through torch (numpy's pocketfft works in float64 and is several times slower).
    """
    half = torch.from_numpy(np.ascontiguousarray(gain[..., : w.shape[-1] // 2 + 1]))
    spec = torch.fft.rfft2(torch.from_numpy(w)) * half
    return torch.fft.irfft2(spec, s=w.shape[-2:]).numpy()


def _pink_noise(
    rng: np.random.Generator, shape: tuple[int, ...], fr: np.ndarray
) -> np.ndarray:
    """Real noise with amplitude spectrum 1/f (power 1/f^2), unit variance per image."""
    amp = 1.0 / np.maximum(fr, 1.0)
    amp[0, 0] = 0.0
    out = _filter(rng.standard_normal(shape, dtype=np.float32), amp)
    return out / out.std(axis=(-2, -1), keepdims=True)


def generate(
    n: int,
    seed: int = 0,
    split: str = "train",
    num_classes: int = 10,
    *,
    n_blobs: int = 3,
    shift: float = 5.0,
    background: float = 1.0,
    layout: float = 0.45,
    texture: float = 0.14,
    theta_jitter: float = 0.2,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` images (uint8, ``(n, 3, 32, 32)``) and labels (int64, balanced round-robin, shuffled).

    The keyword amplitudes set the difficulty (defaults tuned so that a tiny CNN reaches ~50-80%
    on 10 classes, see the module docstring for the model). Deterministic in
    ``(n, seed, split, num_classes)`` and the keywords.
    """
    if split not in SPLIT_OFFSET:
        raise ValueError(
            f"split={split!r} is unknown; choose one of {', '.join(SPLIT_OFFSET)}"
        )
    if not 2 <= num_classes <= 100:
        raise ValueError(f"num_classes={num_classes} must be between 2 and 100")
    proto = _prototypes(num_classes, n_blobs)
    rng = np.random.default_rng([seed, SPLIT_OFFSET[split], num_classes])
    fx, fy, fr = _freq_grid()
    labels = rng.permutation(np.arange(n) % num_classes).astype(np.int64)

    # background: shared luminance + weaker chroma, each 1/f
    lum = _pink_noise(rng, (n, 1, SIZE, SIZE), fr)
    chroma = _pink_noise(rng, (n, 3, SIZE, SIZE), fr)
    img = background * (lum + 0.4 * chroma)

    # layout: class blobs (jointly shifted) + one distractor blob
    centre = proto["centre"][labels] + rng.uniform(
        -shift, shift, size=(n, 1, 2)
    ).astype(np.float32)
    sigma = proto["sigma"][labels]
    colour = proto["colour"][labels] * rng.uniform(
        0.6, 1.4, size=(n, n_blobs, 1)
    ).astype(np.float32)
    d_centre = rng.uniform(4, SIZE - 4, size=(n, 1, 2)).astype(np.float32)
    d_sigma = rng.uniform(2.5, 5.0, size=(n, 1)).astype(np.float32)
    d_colour = rng.normal(size=(n, 1, 3)).astype(np.float32) * 0.6
    centre = np.concatenate([centre, d_centre], 1)
    sigma = np.concatenate([sigma, d_sigma], 1)
    colour = np.concatenate([colour, d_colour], 1)
    pix = np.arange(SIZE, dtype=np.float32)
    gy = np.exp(
        -((pix - centre[..., 1, None]) ** 2) / (2 * sigma[..., None] ** 2)
    )  # separable
    gx = np.exp(-((pix - centre[..., 0, None]) ** 2) / (2 * sigma[..., None] ** 2))
    img += np.einsum(
        "nkh,nkw,nkc->nchw", gy, gx, (layout * 2.0) * colour, optimize=True
    )

    # texture: random-phase noise through an oriented band-pass around +-f_c (cos th, sin th)
    theta = proto["theta"][labels] + theta_jitter * rng.standard_normal(n).astype(
        np.float32
    )
    fc = proto["freq"][labels]
    ux, uy = (fc * np.cos(theta))[:, None, None], (fc * np.sin(theta))[:, None, None]
    bump = np.exp(-((fy - uy) ** 2) / 2) * np.exp(
        -((fx - ux) ** 2) / 2
    )  # separable Gaussians
    bump += np.exp(-((fy + uy) ** 2) / 2) * np.exp(-((fx + ux) ** 2) / 2)
    w = rng.standard_normal((n, SIZE, SIZE), dtype=np.float32)
    tex = _filter(w, bump.astype(np.float32))
    tex /= tex.std(axis=(-2, -1), keepdims=True) + 1e-8
    tex_amp = texture * rng.uniform(0.6, 1.4, size=(n, 1, 1, 1)).astype(np.float32)
    img += tex_amp * tex[:, None] * proto["tex_colour"][labels][:, :, None, None]

    # colour jitter, scale, quantise
    gain = rng.uniform(0.8, 1.2, size=(n, 3, 1, 1)).astype(np.float32)
    offset = rng.normal(0, 0.05, size=(n, 1, 1, 1)).astype(np.float32)
    img = 0.5 + 0.18 * gain * img + offset
    img = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    return img, labels


def radial_power_spectrum(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum of ``images`` (``(..., H, W)``, mean over leading axes).

    Returns ``(f, P(f))`` for integer radii ``f = 1 .. H//2`` (cycles per image); each image's mean
    is removed first.
    """
    x = np.asarray(images, dtype=np.float64)
    x = x - x.mean(axis=(-2, -1), keepdims=True)
    p = np.abs(np.fft.fft2(x)) ** 2
    p = p.reshape(-1, *p.shape[-2:]).mean(0)
    h = p.shape[-1]
    _, _, fr = _freq_grid(h)
    r = np.rint(fr).astype(int)
    f = np.arange(1, h // 2 + 1)
    return f.astype(np.float64), np.array([p[r == k].mean() for k in f])


def spectrum_slope(images: np.ndarray) -> float:
    """Least-squares slope of ``log P(f)`` against ``log f`` (natural images: about -2)."""
    f, p = radial_power_spectrum(images)
    return float(np.polyfit(np.log(f), np.log(p), 1)[0])
