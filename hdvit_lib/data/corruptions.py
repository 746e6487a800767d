"""CIFAR-C-style corruptions and the CIFAR-100-C files (Park & Kim 2022, Fig. 12b; Hendrycks &
Dietterich, ICLR 2019); the robustness they measure is ``hdvit_lib.analysis.corruption``.

``corrupt(x, name, severity, seed)`` works on float tensors ``(B, 3, H, W)`` in ``[0, 1]``. The
five severities of each corruption use the parameters of Hendrycks & Dietterich's CIFAR-10-C
generator (``make_cifar_c.py``); the code is our own, in torch, so that the offline book can
corrupt its own test set. Where the reference calls a library we re-derive what it computes:

- ``impulse_noise``: scikit-image's salt & pepper (each value flipped with probability ``c``,
  to 1 or 0 with equal odds).
- ``defocus_blur``: an aliased disk of radius ``r`` on a 17x17 grid, smoothed by a 3x3 Gaussian
  of ``sigma = alias_blur`` (OpenCV's ``GaussianBlur``), applied with reflect-101 borders.
- ``motion_blur``: ImageMagick's ``MotionBlurImage``: a one-sided kernel of ``2 * ceil(radius)
  + 1`` taps with weights ``exp(-i^2 / (2 sigma^2))`` at the rounded offsets ``i (cos a, sin a)``,
  angle ``a ~ U(-45, 45)`` degrees per image, edge pixels repeated. With the reference's
  parameters, severities 3 and 4 (sigma 2, radius 6 vs 8) differ only by taps of weight < 1e-9:
  they are the same corruption up to float rounding.
- ``brightness``: ``V <- clip(V + c)`` in HSV with H, S fixed, which for RGB is the closed form
  ``x * clip(V + c) / V`` with ``V = max_channel(x)`` (and ``c`` for black pixels).
- ``pixelate``: PIL's BOX resampling down to ``int(H * c)`` and back, as an exact linear map.
- ``jpeg_compression``: PIL's JPEG encoder at the reference's qualities (8-bit, like CIFAR-C).

Randomness comes from a ``torch.Generator`` seeded with ``seed`` (drawn on the CPU), so a
corruption is deterministic given ``(x, name, severity, seed)`` on any device.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

SEVERITIES = (1, 2, 3, 4, 5)

# Hendrycks & Dietterich (2019), CIFAR-10-C generator, severities 1..5.
PARAMS: dict[str, tuple] = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),  # noise std
    "shot_noise": (500, 250, 100, 75, 50),  # photons per unit intensity
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),  # fraction of values flipped
    "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),  # radius, alias
    "motion_blur": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),  # radius, sigma
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),  # added to V (HSV)
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),  # factor on the deviation from the mean
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),  # resize factor
    "jpeg_compression": (80, 65, 58, 50, 40),  # JPEG quality
}
CORRUPTIONS = tuple(PARAMS)

# Every file of the released CIFAR-10-C / CIFAR-100-C (``<name>.npy``, plus ``labels.npy``).
CIFAR_C_NAMES = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
    "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform",
    "pixelate", "jpeg_compression", "speckle_noise", "gaussian_blur", "spatter", "saturate",
)
CIFAR_C_VARIANTS = {"CIFAR-10-C": 10, "CIFAR-100-C": 100}


# ----------------------------------------------------------------------------- corruptions


def _gaussian_noise(x: Tensor, c: float, g: torch.Generator) -> Tensor:
    noise = torch.randn(x.shape, generator=g, dtype=torch.float32).to(x)
    return x + c * noise


def _shot_noise(x: Tensor, c: float, g: torch.Generator) -> Tensor:
    rate = (x.detach().float().cpu() * c).clamp_min(0)
    return (torch.poisson(rate, generator=g) / c).to(x)


def _impulse_noise(x: Tensor, c: float, g: torch.Generator) -> Tensor:
    flip = torch.rand(x.shape, generator=g) < c
    salt = torch.rand(x.shape, generator=g) < 0.5
    return torch.where(flip.to(x.device), salt.to(x), x)


def _gaussian_taps(size: int, sigma: float) -> np.ndarray:
    i = np.arange(size) - (size - 1) / 2
    w = np.exp(-(i**2) / (2 * sigma**2))
    return w / w.sum()


@lru_cache(maxsize=32)
def defocus_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """The reference's defocus kernel: an aliased disk, then a 3x3 (5x5 if r > 8) Gaussian,
    cropped to its non-zero support."""
    half = 8 if radius <= 8 else math.ceil(radius)
    ks = 3 if radius <= 8 else 5
    xx, yy = np.meshgrid(np.arange(-half, half + 1), np.arange(-half, half + 1))
    disk = (xx**2 + yy**2 <= radius**2).astype(np.float64)
    disk /= disk.sum()
    taps = _gaussian_taps(ks, alias_blur)
    p = ks // 2
    padded = np.pad(disk, p)  # the disk is far from the border: zero padding is exact
    size = disk.shape[0]
    rows = sum(t * padded[k : k + size, :] for k, t in enumerate(taps))
    out = sum(t * rows[:, k : k + size] for k, t in enumerate(taps))
    nz = np.nonzero(out)
    r = int(max(np.abs(nz[0] - half).max(), np.abs(nz[1] - half).max()))
    return out[half - r : half + r + 1, half - r : half + r + 1]


def _filter(x: Tensor, kernel: Tensor, mode: str) -> Tensor:
    """Correlate every channel of every image with its own 2-D kernel ``(B, k, k)``."""
    b, ch, h, w = x.shape
    k = kernel.shape[-1]
    r = k // 2
    if mode == "reflect" and r >= min(h, w):
        mode = "replicate"  # tiny images: reflection needs the border to be narrower
    xp = F.pad(x.reshape(1, b * ch, h, w), (r, r, r, r), mode=mode)
    weight = kernel.to(x).repeat_interleave(ch, dim=0).unsqueeze(1)
    return F.conv2d(xp, weight, groups=b * ch).reshape(b, ch, h, w)


def _defocus_blur(x: Tensor, c: tuple, g: torch.Generator) -> Tensor:
    k = torch.as_tensor(defocus_kernel(*c), dtype=torch.float32)
    return _filter(x, k.expand(x.shape[0], *k.shape), "reflect")


def motion_kernel(radius: float, sigma: float, angle_deg: float) -> np.ndarray:
    """ImageMagick's motion-blur kernel on a square grid (rows point down, as in images)."""
    width = 2 * math.ceil(radius) + 1
    i = np.arange(width)
    w = np.exp(-(i.astype(np.float64) ** 2) / (2 * sigma**2))
    w /= w.sum()
    a = math.radians(angle_deg)
    dx = np.ceil(i * math.cos(a) - 0.5).astype(int)
    dy = np.ceil(i * math.sin(a) - 0.5).astype(int)
    k = np.zeros((2 * width - 1, 2 * width - 1))
    np.add.at(k, (dy + width - 1, dx + width - 1), w)
    return k


def _motion_blur(x: Tensor, c: tuple, g: torch.Generator) -> Tensor:
    angles = torch.empty(x.shape[0]).uniform_(-45, 45, generator=g).tolist()
    k = np.stack([motion_kernel(c[0], c[1], a) for a in angles])
    return _filter(x, torch.as_tensor(k, dtype=torch.float32), "replicate")


def _brightness(x: Tensor, c: float, g: torch.Generator) -> Tensor:
    v = x.amax(dim=1, keepdim=True)
    v_new = (v + c).clamp(0, 1)
    return torch.where(v > 0, x * v_new / v.clamp_min(1e-12), v_new.expand_as(x))


def _contrast(x: Tensor, c: float, g: torch.Generator) -> Tensor:
    mean = x.mean(dim=(2, 3), keepdim=True)
    return (x - mean) * c + mean


@lru_cache(maxsize=64)
def box_resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """PIL's BOX resampling along one axis as an ``(n_out, n_in)`` matrix (``Resample.c``:
    output pixel ``j`` averages the inputs whose centres fall in its footprint)."""
    scale = n_in / n_out
    fscale = max(scale, 1.0)
    support = 0.5 * fscale
    m = np.zeros((n_out, n_in))
    for j in range(n_out):
        center = (j + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), n_in)
        t = (np.arange(lo, hi) - center + 0.5) / fscale
        wts = ((t > -0.5) & (t <= 0.5)).astype(np.float64)
        if wts.sum() > 0:
            m[j, lo:hi] = wts / wts.sum()
    return m


def _pixelate(x: Tensor, c: float, g: torch.Generator) -> Tensor:
    h, w = x.shape[-2:]
    sh, sw = max(int(h * c), 1), max(int(w * c), 1)
    mh = box_resize_matrix(sh, h) @ box_resize_matrix(h, sh)
    mw = box_resize_matrix(sw, w) @ box_resize_matrix(w, sw)
    mh_t, mw_t = (torch.as_tensor(m, dtype=torch.float32, device=x.device) for m in (mh, mw))
    return torch.einsum("ij,bcjk,lk->bcil", mh_t, x, mw_t)


def _jpeg_compression(x: Tensor, c: int, g: torch.Generator) -> Tensor:
    from PIL import Image

    arr = (x.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
    arr = arr.permute(0, 2, 3, 1).numpy()
    out = []
    for img in arr:
        buf = io.BytesIO()
        Image.fromarray(img, mode="RGB").save(buf, format="JPEG", quality=int(c))
        buf.seek(0)
        out.append(np.asarray(Image.open(buf).convert("RGB")))
    y = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 255
    return y.to(x)


_FUNCS: dict[str, Callable[[Tensor, object, torch.Generator], Tensor]] = {
    "gaussian_noise": _gaussian_noise,
    "shot_noise": _shot_noise,
    "impulse_noise": _impulse_noise,
    "defocus_blur": _defocus_blur,
    "motion_blur": _motion_blur,
    "brightness": _brightness,
    "contrast": _contrast,
    "pixelate": _pixelate,
    "jpeg_compression": _jpeg_compression,
}


def _check(name: str, severity: int, valid: Sequence[str]) -> None:
    if name not in valid:
        raise ValueError(f"unknown corruption {name!r}; choose one of {tuple(valid)}")
    if severity not in SEVERITIES or isinstance(severity, bool):
        raise ValueError(f"severity={severity!r}; choose one of {SEVERITIES}")


def corrupt(x: Tensor, name: str, severity: int, seed: int = 0) -> Tensor:
    """Corrupt images ``x`` (``(B, 3, H, W)`` or ``(3, H, W)``, float in ``[0, 1]``) with
    corruption ``name`` (one of ``CORRUPTIONS``) at ``severity`` (1..5), Hendrycks & Dietterich
    (2019)'s CIFAR-10-C parameters; the result has ``x``'s shape, dtype and device, in [0, 1]."""
    _check(name, severity, CORRUPTIONS)
    if x.dim() not in (3, 4) or x.shape[-3] != 3:
        raise ValueError(f"x has shape {tuple(x.shape)}; expected (B, 3, H, W) or (3, H, W)")
    single = x.dim() == 3
    work = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    xb = (x.unsqueeze(0) if single else x).to(work)
    g = torch.Generator().manual_seed(int(seed))
    y = _FUNCS[name](xb, PARAMS[name][severity - 1], g).clamp(0, 1).to(x.dtype)
    return y[0] if single else y


# ----------------------------------------------------------------------------- CIFAR-C files


class CifarCDataset(Dataset):
    """One (corruption, severity) slice of CIFAR-10-C / CIFAR-100-C: ``(float (3, H, W) in
    [0, 1], int)`` items, with ``.targets`` and ``.num_classes`` like ``hdvit_lib.data``'s sets."""

    def __init__(self, images: np.ndarray, targets: np.ndarray, num_classes: int) -> None:
        self.images = images  # (N, H, W, 3) uint8, possibly memory-mapped
        self.targets = [int(t) for t in targets]
        self.num_classes = num_classes

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        img = torch.from_numpy(np.array(self.images[i])).permute(2, 0, 1).float() / 255
        return img, self.targets[i]

    def tensors(self, start: int = 0, stop: int | None = None) -> tuple[Tensor, Tensor]:
        """Images ``[start, stop)`` as one float tensor ``(n, 3, H, W)`` and their labels."""
        arr = np.array(self.images[start:stop])
        x = torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 255
        return x, torch.tensor(self.targets[start:stop])


def cifar_c_dataset(
    root: str | Path, name: str, severity: int, variant: str = "CIFAR-100-C", n: int | None = None
) -> CifarCDataset:
    """The released CIFAR-100-C (or CIFAR-10-C) images of one corruption and severity.

    Layout: ``<root>/<variant>/<name>.npy`` (or ``<root>/<name>.npy``), uint8 ``(5 N, 32, 32, 3)``
    with the ``N`` test images of severity ``s`` at rows ``[(s - 1) N, s N)``, and ``labels.npy``
    beside it. Files are memory-mapped (``allow_pickle=False``); ``n`` keeps the first ``n``.
    """
    _check(name, severity, CIFAR_C_NAMES)
    if variant not in CIFAR_C_VARIANTS:
        raise ValueError(f"variant={variant!r}; choose one of {tuple(CIFAR_C_VARIANTS)}")
    root = Path(root)
    folder = root / variant if (root / variant / f"{name}.npy").exists() else root
    path = folder / f"{name}.npy"
    if not path.exists():
        raise FileNotFoundError(f"{root / variant / f'{name}.npy'} not found (download "
                                f"{variant}.tar from Hendrycks & Dietterich's release)")
    data = np.load(path, mmap_mode="r", allow_pickle=False)
    labels = np.load(folder / "labels.npy", mmap_mode="r", allow_pickle=False)
    if data.ndim != 4 or data.shape[-1] != 3 or len(data) % 5 or len(labels) != len(data):
        raise ValueError(f"{path}: shape {data.shape} with {len(labels)} labels; expected "
                         "(5 N, H, W, 3) images and as many labels")
    per = len(data) // 5
    lo, hi = (severity - 1) * per, severity * per
    if n is not None:
        hi = min(hi, lo + n)
    return CifarCDataset(data[lo:hi], np.asarray(labels[lo:hi]), CIFAR_C_VARIANTS[variant])
