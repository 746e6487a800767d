"""One forward pass that keeps every block's output (shared by the Fourier, variance and CKA chapters).

``extract_features(model, batches)`` runs ``model.blocks()`` (``hdvit_lib/models/blocks.py``) once,
in **eval mode** (BatchNorm uses its running statistics, Dropout/DropPath are off; the previous
mode of every module is restored afterwards), and keeps each block's output on the CPU as a
(B, C, H, W) feature map (``as_feature_map``: class tokens dropped, tokens reshaped to their grid)
or, for "vector" blocks (pooled features, logits), as a (B, C) matrix.

The result is cached in memory (and optionally on disk) under a key made of a hash of the
model's structure and weights and a hash of the input images, so that several analyses of the
same model on the same images share one pass.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hdvit_lib.models.blocks import Block, as_feature_map
from hdvit_lib.modes import (  # also imported from here by the other analyses
    eval_mode,
    model_device,
)

_MEMORY: OrderedDict[str, Features] = OrderedDict()
MEMORY_SLOTS = 4


@dataclass(eq=False)
class Features:
    """Every block's output for the same ``n`` images.

    outputs[i]: (n, C, H, W) feature map, or (n, C) for blocks with layout "vector".
    depth[i]: normalised depth ``i / (L - 1)``, the paper's x-axis in Figs 8 and 9, where L counts
        the blocks *before* the trailing classifier head(s) (kind "head", the logits): the
        official ``fourier_analysis.ipynb`` and ``featuremap_variance.ipynb`` drop the logits
        (``latents = latents[:-1]``) before normalising, so the embedding is at 0 and the last
        block before the head at 1.0; the head itself lies beyond 1 (outside the plotted range).
    subsamples[i]: True where block i is a "pool" block or shrinks the previous block's spatial
        grid (strided conv, patch merging); plots shade these blue. The first block (the
        embedding) never counts, as in the official notebooks.
    inputs: the (n, 3, H, W) images; targets: their labels (or None).
    """

    names: list[str]
    kinds: list[str]
    stages: list[int]
    outputs: list[torch.Tensor]
    inputs: torch.Tensor
    targets: torch.Tensor | None
    key: str = ""
    depth: np.ndarray = field(init=False)
    subsamples: list[bool] = field(init=False)

    def __post_init__(self) -> None:
        n = len(self.outputs)
        self.depth = np.arange(n) / max(n_before_head(self.kinds) - 1, 1)
        sizes = [o.shape[-2] if o.ndim == 4 else None for o in self.outputs]
        self.subsamples = [
            self.kinds[i] == "pool"
            or (i > 0 and sizes[i] is not None and sizes[i - 1] is not None and sizes[i] < sizes[i - 1])
            for i in range(n)
        ]

    def __len__(self) -> int:
        return len(self.outputs)

    @property
    def n_images(self) -> int:
        return int(self.inputs.shape[0])

    def is_map(self, i: int) -> bool:
        """True when block i's output is a spatial (B, C, H, W) feature map."""
        return self.outputs[i].ndim == 4


def n_before_head(kinds: list[str]) -> int:
    """The number of blocks before the trailing run of "head" blocks (the logits), at least 1."""
    n = len(kinds)
    while n > 1 and kinds[n - 1] == "head":
        n -= 1
    return n


def get_blocks(model: nn.Module) -> list[Block]:
    """``model.blocks()``, with a clear error for models that do not list their blocks."""
    if not hasattr(model, "blocks") or not callable(model.blocks):
        raise TypeError(
            f"{type(model).__name__} has no blocks() method; the analyses need a model from "
            "hdvit_lib.models.get_model (or any model whose blocks() returns list[Block])"
        )
    blocks = model.blocks()
    if not blocks or not all(isinstance(b, Block) for b in blocks):
        raise TypeError(f"{type(model).__name__}.blocks() must return a non-empty list[Block]")
    return blocks


def collect_batches(
    batches: Iterable | torch.Tensor, n_images: int | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """Yield ``(x, y)`` from a loader / iterable of batches / single tensor, stopping at ``n_images``.

    A batch is a tensor ``x`` or a tuple/list ``(x, y, ...)``; ``y`` is None when absent.
    """
    if isinstance(batches, torch.Tensor):
        batches = [batches]
    seen = 0
    for batch in batches:
        if n_images is not None and seen >= n_images:
            return
        if isinstance(batch, (tuple, list)):
            x, y = batch[0], (batch[1] if len(batch) > 1 else None)
        elif isinstance(batch, torch.Tensor):
            x, y = batch, None
        else:
            raise TypeError(f"a batch must be a tensor or a (images, labels) tuple, not {type(batch).__name__}")
        if n_images is not None:
            x = x[: n_images - seen]
            y = None if y is None else y[: n_images - seen]
        seen += x.shape[0]
        yield x, (torch.as_tensor(y) if y is not None else None)


def model_hash(model: nn.Module, blocks: list[Block] | None = None) -> str:
    """SHA-256 of the model class, its block list (names, kinds) and every state-dict tensor."""
    h = hashlib.sha256(type(model).__name__.encode())
    for b in blocks or get_blocks(model):
        h.update(f"{b.name}|{b.kind}|{b.layout}|{b.prefix_tokens};".encode())
    for k, v in model.state_dict().items():
        h.update(k.encode())
        _hash_tensor(h, v)
    return h.hexdigest()[:16]


def tensor_hash(*tensors: torch.Tensor | None) -> str:
    """SHA-256 of the tensors' shapes, dtypes and bytes."""
    h = hashlib.sha256()
    for t in tensors:
        if t is None:
            h.update(b"none")
        else:
            _hash_tensor(h, t)
    return h.hexdigest()[:16]


def _hash_tensor(h: hashlib._Hash, t: torch.Tensor) -> None:
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())


def features_cache_dir(cfg: dict[str, Any]) -> Path | None:
    """Where a preset ``cfg`` caches features on disk (``extract_features``' ``cache_dir``): beside
    the model cache for ``smoke``/``cpu``; ``None`` (memory only) for ``paper``, whose per-block
    outputs of 1000 images take gigabytes."""
    from hdvit_lib.presets import PAPER_SCALE
    from hdvit_lib.zoo import default_cache_dir

    return None if cfg["name"] in PAPER_SCALE else default_cache_dir() / "features"


@torch.no_grad()
def extract_features(
    model: nn.Module,
    loader_or_batches: Iterable | torch.Tensor,
    n_images: int | None = None,
    device: str | torch.device | None = None,
    batch_size: int | None = None,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    dtype: torch.dtype = torch.float32,
) -> Features:
    """Run ``model.blocks()`` once over ``n_images`` images and keep every block's output.

    The pass is in eval mode (restored afterwards). Outputs are viewed with ``as_feature_map``
    (tokens -> (B, C, H, W) grid without class tokens; "vector" blocks stay (B, C)), moved to
    the CPU as ``dtype``. ``n_images=None`` takes everything the loader yields.
    ``batch_size``: forward chunk size (default: the loader's first batch size).
    Cached in memory (``use_cache``) and in ``cache_dir`` (if given) under
    (model hash, image hash, dtype).
    """
    blocks = get_blocks(model)
    xs, ys = [], []
    for x, y in collect_batches(loader_or_batches, n_images):
        xs.append(x.detach().cpu())
        ys.append(y)
    if not xs:
        raise ValueError("the loader yielded no images")
    inputs = torch.cat(xs)
    targets = torch.cat([y.cpu() for y in ys]) if all(y is not None for y in ys) else None
    key = f"{model_hash(model, blocks)}-{tensor_hash(inputs, targets)}-{str(dtype).split('.')[-1]}"

    if use_cache and key in _MEMORY:
        _MEMORY.move_to_end(key)
        return _MEMORY[key]
    path = Path(cache_dir) / f"features-{key}.pt" if cache_dir is not None else None
    if path is not None and path.exists():
        feats = _load(path)
    else:
        feats = _forward(model, blocks, inputs, targets, device, batch_size or xs[0].shape[0], dtype)
        feats.key = key
        if path is not None:
            _save(feats, path)
    if use_cache:
        _MEMORY[key] = feats
        while len(_MEMORY) > MEMORY_SLOTS:
            _MEMORY.popitem(last=False)
    return feats


def clear_cache() -> None:
    """Forget the features cached in memory."""
    _MEMORY.clear()


def _forward(
    model: nn.Module,
    blocks: list[Block],
    inputs: torch.Tensor,
    targets: torch.Tensor | None,
    device: str | torch.device | None,
    batch_size: int,
    dtype: torch.dtype,
) -> Features:
    dev = torch.device(device) if device is not None else model_device(model)
    per_block: list[list[torch.Tensor]] = [[] for _ in blocks]
    with eval_mode(model, blocks):
        for start in range(0, inputs.shape[0], batch_size):
            x = inputs[start : start + batch_size].to(dev)
            for i, b in enumerate(blocks):
                x = b.module(x)
                fmap = as_feature_map(x, b)
                out = fmap if fmap is not None else x
                per_block[i].append(out.detach().to("cpu", dtype).contiguous())
    return Features(
        names=[b.name for b in blocks],
        kinds=[b.kind for b in blocks],
        stages=[b.stage for b in blocks],
        outputs=[torch.cat(o) for o in per_block],
        inputs=inputs,
        targets=targets,
    )


def _save(feats: Features, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    state = {
        "names": feats.names,
        "kinds": feats.kinds,
        "stages": feats.stages,
        "outputs": feats.outputs,
        "inputs": feats.inputs,
        "targets": feats.targets,
        "key": feats.key,
    }
    torch.save(state, tmp)
    tmp.replace(path)


def _load(path: Path) -> Features:
    s = torch.load(path, weights_only=True)
    return Features(
        names=s["names"],
        kinds=s["kinds"],
        stages=s["stages"],
        outputs=s["outputs"],
        inputs=s["inputs"],
        targets=s["targets"],
        key=s["key"],
    )


def as_features(
    features_or_model: Features | nn.Module,
    loader_or_batches: Iterable | torch.Tensor | None = None,
    n_images: int | None = None,
    device: str | torch.device | None = None,
) -> Features:
    """Pass ``Features`` through; extract them (cached) from a model and its batches otherwise."""
    if isinstance(features_or_model, Features):
        return features_or_model
    if loader_or_batches is None:
        raise ValueError("give either Features, or a model together with loader_or_batches")
    return extract_features(features_or_model, loader_or_batches, n_images=n_images, device=device)


def labelled_batches(
    loader_or_batches: Iterable | torch.Tensor, n_images: int | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``collect_batches`` for analyses that score predictions: every batch must carry labels."""
    for x, y in collect_batches(loader_or_batches, n_images):
        if y is None:
            raise ValueError("this analysis scores predictions: batches must be (images, labels) tuples")
        yield x, y


def score(logits: torch.Tensor, y: torch.Tensor) -> tuple[int, float]:
    """(number of correct top-1 predictions, summed cross-entropy) of a batch."""
    loss = nn.functional.cross_entropy(logits.float(), y, reduction="sum")
    return int((logits.argmax(-1) == y).sum()), float(loss)
