"""A second offline data set: formula-driven fractal categories, FractalDB-style, at 32 x 32.

Kataoka et al. (ACCV 2020, "Pre-training without Natural Images") define each category of
FractalDB by an iterated function system (IFS): ``N`` affine maps ``w_j(p) = A_j p + b_j`` with
parameters drawn uniformly in ``[-1, 1]``, chosen with probabilities ``~ |det A_j|``, rendered by the
chaos game; a category is kept if its rendering fills enough of the image ("filling rate"), and the
instances of a category vary by scaling one map's parameters (here ``x U[0.85, 1.15]``). ViTs
pre-trained on it learn useful features (Nakashima et al., AAAI 2022). Here, per image:

    x = clip(0.5 + 0.12 * background + mask * (colour - 0.5 - 0.12 * background), 0, 1)

- ``mask``: the fractal of the image's category (a perturbed instance of the class IFS), rendered
  with ``N_POINTS`` chaos-game points on a 64 x 64 grid, fitted into the image with a random
  scale in [0.7, 1.0] and offset, flipped at random, then area-averaged to 32 x 32 (anti-aliased);
- ``colour``: a random RGB colour per image (colour carries no class evidence: shape does);
- ``background``: 1/f noise (luminance + weaker chroma), the second-order statistics of natural
  images, as in :mod:`hdvit_lib.data.synthetic`.

Class IFSs depend only on ``num_classes`` (a fixed world seed); ``seed`` and ``split`` draw the
instances. Deterministic; about a second per thousand images on one CPU core.
"""

from __future__ import annotations

import numpy as np

from hdvit_lib.data.synthetic import SIZE, SPLIT_OFFSET, _freq_grid, _pink_noise

WORLD_SEED = 20201130  # class IFSs: fixed, so train/test and all seeds share one distribution
RENDER = 2 * SIZE  # the chaos game is rendered at twice the size, then area-averaged
N_POINTS = 1200  # chaos-game points per image (after burn-in)
BURN_IN = 20
FILL = (0.12, 0.6)  # accepted filling rate of a class prototype at 32 x 32 (FractalDB: >= 0.2 at 362 px)


def _contract(a: np.ndarray, limit: float = 0.9) -> np.ndarray:
    """Scale each 2 x 2 map down to spectral norm <= ``limit``, so the chaos game stays bounded."""
    s = np.linalg.norm(a, ord=2, axis=(-2, -1))
    return a * np.minimum(1.0, limit / np.maximum(s, 1e-9))[..., None, None]


def _chaos_game(
    a: np.ndarray, b: np.ndarray, p: np.ndarray, rng: np.random.Generator, n_points: int
) -> np.ndarray:
    """Points (B, n_points, 2) of B IFSs (maps ``a`` (B, N, 2, 2), ``b`` (B, N, 2), probabilities
    ``p`` (B, N)), after ``BURN_IN`` discarded steps: one walker per IFS, map ``j`` drawn with
    probability ``p_j`` at every step, ``x <- A_j x + b_j``."""
    n_img, n_maps = p.shape
    cum = np.cumsum(p, axis=1)
    coef = np.concatenate([a.reshape(n_img, n_maps, 4), b], axis=2).astype(np.float32)
    coef = coef.reshape(n_img * n_maps, 6)
    base = np.arange(n_img) * n_maps
    x = np.zeros(n_img, dtype=np.float32)
    y = np.zeros(n_img, dtype=np.float32)
    out = np.empty((n_img, n_points, 2), dtype=np.float32)
    for t in range(BURN_IN + n_points):
        j = np.minimum((rng.random((n_img, 1)) > cum).sum(1), n_maps - 1)
        c = coef[base + j]
        x, y = c[:, 0] * x + c[:, 1] * y + c[:, 4], c[:, 2] * x + c[:, 3] * y + c[:, 5]
        if t >= BURN_IN:
            out[:, t - BURN_IN, 0] = x
            out[:, t - BURN_IN, 1] = y
    return out


def _render(pts: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """Soft masks (B, SIZE, SIZE) in [0, 1] of point sets (B, P, 2): fitted to the frame (random
    scale, offset and flips when ``rng`` is given, else centred at full scale), histogrammed at
    ``RENDER`` px, clipped to a hit/no-hit mask and area-averaged to ``SIZE``."""
    n_img = len(pts)
    lo, hi = pts.min(1, keepdims=True), pts.max(1, keepdims=True)
    span = (hi - lo).max(-1, keepdims=True)
    u = (pts - lo) / np.maximum(span, 1e-9)  # in [0, 1], aspect kept
    extent = (hi - lo) / np.maximum(span, 1e-9)
    if rng is None:
        scale = np.full((n_img, 1, 1), 0.9)
        flip = np.zeros((n_img, 1, 2), dtype=bool)
        offset = (1 - scale * extent) / 2
    else:
        scale = rng.uniform(0.7, 1.0, size=(n_img, 1, 1))
        flip = rng.random((n_img, 1, 2)) < 0.5
        offset = rng.random((n_img, 1, 2)) * (1 - scale * extent)
    u = np.where(flip, extent - u, u) * scale + offset
    idx = np.clip((u * RENDER).astype(np.int64), 0, RENDER - 1)
    flat = np.arange(n_img)[:, None] * RENDER * RENDER + idx[..., 1] * RENDER + idx[..., 0]
    hits = np.bincount(flat.ravel(), minlength=n_img * RENDER * RENDER) > 0
    hits = hits.reshape(n_img, SIZE, 2, SIZE, 2).astype(np.float32)
    return hits.mean((2, 4))


def _class_systems(num_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One IFS per class, 2-4 maps each (padded to 4 with probability 0), drawn until its
    prototype's filling rate at 32 x 32 lies in ``FILL``."""
    rng = np.random.default_rng([WORLD_SEED, num_classes])
    a = np.zeros((num_classes, 4, 2, 2))
    b = np.zeros((num_classes, 4, 2))
    p = np.zeros((num_classes, 4))
    todo = list(range(num_classes))
    while todo:
        n = len(todo)
        n_maps = rng.integers(2, 5, size=n)
        cand_a = _contract(rng.uniform(-1, 1, size=(n, 4, 2, 2)))
        cand_b = rng.uniform(-1, 1, size=(n, 4, 2))
        w = np.abs(np.linalg.det(cand_a)) + 1e-3
        w[np.arange(4)[None, :] >= n_maps[:, None]] = 0.0
        cand_p = w / w.sum(1, keepdims=True)
        fill = (_render(_chaos_game(cand_a, cand_b, cand_p, rng, N_POINTS)) > 0).mean((1, 2))
        ok = (fill >= FILL[0]) & (fill <= FILL[1])
        for k in np.flatnonzero(ok):
            c = todo[k]
            a[c], b[c], p[c] = cand_a[k], cand_b[k], cand_p[k]
        todo = [c for k, c in enumerate(todo) if not ok[k]]
    return a, b, p


def generate(
    n: int, seed: int = 0, split: str = "train", num_classes: int = 100, *, background: float = 0.12
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` images (uint8, ``(n, 3, 32, 32)``) and labels (int64, balanced round-robin,
    shuffled) of the fractal categories; deterministic in ``(n, seed, split, num_classes)``."""
    if split not in SPLIT_OFFSET:
        raise ValueError(f"split={split!r} is unknown; choose one of {', '.join(SPLIT_OFFSET)}")
    if not 2 <= num_classes <= 1000:
        raise ValueError(f"num_classes={num_classes} must be between 2 and 1000")
    a, b, p = _class_systems(num_classes)
    rng = np.random.default_rng([seed, SPLIT_OFFSET[split], num_classes, 7])
    labels = rng.permutation(np.arange(n) % num_classes).astype(np.int64)
    ia, ib = a[labels].copy(), b[labels].copy()
    # intra-category variation (FractalDB's weight perturbation): one map's parameters x U[0.85, 1.15]
    j = (rng.random(n) * (p[labels] > 0).sum(1)).astype(np.int64)
    k = rng.uniform(0.85, 1.15, size=n)
    ia[np.arange(n), j] = _contract(ia[np.arange(n), j] * k[:, None, None])
    ib[np.arange(n), j] *= k[:, None]
    mask = _render(_chaos_game(ia, ib, p[labels], rng, N_POINTS), rng)[:, None]
    _, _, fr = _freq_grid()
    bg = _pink_noise(rng, (n, 1, SIZE, SIZE), fr) + 0.4 * _pink_noise(rng, (n, 3, SIZE, SIZE), fr)
    base = 0.5 + background * bg
    colour = rng.uniform(0.0, 1.0, size=(n, 3, 1, 1)).astype(np.float32)
    img = np.clip(base + mask * (colour - base), 0.0, 1.0)
    return np.round(img * 255).astype(np.uint8), labels
