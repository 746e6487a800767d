"""The model zoo: ``get_model(name, num_classes, img_size, tiny, **cfg)`` for 32x32 inputs.

Paper-size models (Park & Kim 2022, Appendix A; params with 100 classes): ``resnet18``,
``resnet50`` (23.7M), ``vit_ti`` (5.4M), ``vit_local`` (ViT-Ti with k x k local MSAs),
``pit_ti`` (4.6M), ``swin_ti`` (27.6M), ``alternet50`` (33.0M). Each has a tiny smoke variant
(same block kinds, a few hundred img/s on one CPU core): ``get_model(name, tiny=True)`` or the
name with the suffix ``_tiny``. Every model lists its blocks in order: ``model.blocks()``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from .alternet import AlterNet
from .blocks import Block, as_feature_map, run_blocks
from .pit import PiT
from .resnet import resnet
from .swin import Swin
from .vit import ViT

__all__ = [
    "REGISTRY_NAMES",
    "Block",
    "as_feature_map",
    "count_params",
    "get_model",
    "list_models",
    "model_settings",
    "run_blocks",
    "set_fused_attn",
]


def _resnet18(num_classes: int, img_size: int, **cfg: Any) -> nn.Module:
    return resnet(18, num_classes, **cfg)


def _resnet50(num_classes: int, img_size: int, **cfg: Any) -> nn.Module:
    return resnet(50, num_classes, **cfg)


_RESNET_KEYS = ("widths", "num_blocks", "drop_path_rate")

#: Stochastic depth of the paper-size models: ``model.block.sd: 0.1`` in the authors'
#: ``configs/cifar100_vit.yaml``, the recipe of every CIFAR-100 model of the paper (their ResNet,
#: PreAct-ResNet/AlterNet, ViT, PiT and Swin constructors all consume it, rising linearly with
#: the block index to 0.1 at the last block; timm's ``drop_path_rate`` follows the same rule).
PAPER_DROP_PATH = 0.1
#: Stochastic depth of the tiny (smoke/cpu) variants: off. Measured (smoke preset, 3 epochs, test
#: accuracy, mean of seeds 0 and 1, without -> with 0.1): alternet50_tiny 0.420 -> 0.376,
#: resnet50_tiny 0.251 -> 0.219, vit_ti_tiny 0.496 -> 0.478; a regulariser for 300-epoch runs
#: only slows these short ones down.
TINY_DROP_PATH = 0.0

_VIT_TINY = {"patch_size": 4, "embed_dim": 64, "depth": 4, "num_heads": 2, "drop_path_rate": TINY_DROP_PATH}
_SD = {"drop_path_rate": PAPER_DROP_PATH}
_SD_TINY = {"drop_path_rate": TINY_DROP_PATH}

# name -> (constructor, its configurable keys (empty: the constructor's arguments), paper-size
# settings, tiny settings). Tiny variants keep the block kinds and the stage layout of the big
# ones (e.g. Swin's last stage global, AlterNet's MSAs at stage ends) and train at roughly
# 500-1300 img/s (batch 64, one CPU core; see the issue note for measured figures). The tiny
# settings spell out ``drop_path_rate`` (settings merge paper, then tiny).
_REGISTRY: dict[str, tuple[Callable[..., nn.Module], tuple[str, ...], dict[str, Any], dict[str, Any]]] = {
    "resnet18": (_resnet18, _RESNET_KEYS, {"widths": (64, 128, 256, 512), "num_blocks": (2, 2, 2, 2), **_SD},
                 {"widths": (16, 32, 64, 128), "num_blocks": (1, 1, 1, 1), **_SD_TINY}),
    "resnet50": (_resnet50, _RESNET_KEYS, {"widths": (64, 128, 256, 512), "num_blocks": (3, 4, 6, 3), **_SD},
                 {"widths": (4, 8, 16, 32), "num_blocks": (2, 2, 2, 2), **_SD_TINY}),
    "vit_ti": (ViT, (), _SD, _VIT_TINY),
    "vit_local": (ViT, (), {"window": 3, **_SD}, {**_VIT_TINY, "window": 3}),
    "pit_ti": (
        PiT, (), _SD,
        {"patch_size": 4, "stride": 4, "base_dims": (16, 16, 16), "depth": (2, 2, 2), "heads": (2, 4, 8), **_SD_TINY},
    ),
    "swin_ti": (
        Swin, (), _SD,
        {"patch_size": 4, "window_size": 2, "embed_dim": 32, "depths": (2, 2, 2), "num_heads": (1, 2, 4),
         **_SD_TINY},
    ),
    "alternet50": (
        AlterNet, (), _SD,
        {"widths": (4, 8, 16, 32), "num_blocks": (1, 2, 2, 2), "msa_per_stage": (0, 1, 1, 1),
         "heads": (1, 2, 4, 8), "dim_head": 16, **_SD_TINY},
    ),
}


#: The paper-size names (each also has a ``_tiny`` variant).
REGISTRY_NAMES: tuple[str, ...] = tuple(_REGISTRY)


def list_models() -> list[str]:
    """All registered names: the paper-size models, then their ``_tiny`` variants."""
    return list(_REGISTRY) + [f"{n}_tiny" for n in _REGISTRY]


def _valid_keys(name: str) -> list[str]:
    ctor, keys, _, _ = _REGISTRY[name]
    if not keys:
        keys = tuple(p for p in inspect.signature(ctor).parameters if p not in ("self", "num_classes", "img_size"))
    return sorted(keys)


def _ctor_defaults(name: str) -> dict[str, Any]:
    """The constructor's own defaults of the configurable keys (none for the ResNet factories,
    whose paper-size settings the registry spells out)."""
    ctor, keys, _, _ = _REGISTRY[name]
    if keys:
        return {}
    params = inspect.signature(ctor).parameters
    return {k: params[k].default for k in _valid_keys(name) if params[k].default is not inspect.Parameter.empty}


def model_settings(name: str, tiny: bool = False, **cfg: Any) -> dict[str, Any]:
    """The full settings ``get_model(name, tiny=tiny, **cfg)`` builds with: every configurable
    key, from the constructor's defaults, then the size's settings (paper or tiny), then ``cfg``
    (checked). Caches key on this, so ``patch_size=2`` given or defaulted is one entry, and a
    change of any default is a new one."""
    base = name.removesuffix("_tiny")
    if base not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(list_models())}")
    _, _, paper, small = _REGISTRY[base]
    valid = _valid_keys(base)
    unknown = sorted(set(cfg) - set(valid))
    if unknown:
        raise ValueError(f"{base}: unknown setting(s) {', '.join(unknown)}; valid: {', '.join(valid)}")
    size = small if tiny or name.endswith("_tiny") else {}
    return {**_ctor_defaults(base), **paper, **size, **cfg}


def get_model(name: str, num_classes: int = 10, img_size: int = 32, tiny: bool = False, **cfg: Any) -> nn.Module:
    """Build model ``name`` for ``img_size`` x ``img_size`` inputs with ``num_classes`` outputs.

    ``tiny=True`` (or the suffix ``_tiny``) gives the smoke variant; ``cfg`` overrides settings
    (e.g. ``patch_size``, ``window``, ``msa_per_stage``); impossible settings raise a ValueError
    that names the valid values. The model is returned in train mode (PyTorch's default):
    analyses set the mode they need.
    """
    settings = model_settings(name, tiny, **cfg)
    ctor = _REGISTRY[name.removesuffix("_tiny")][0]
    if "img_size" in inspect.signature(ctor).parameters:
        settings["img_size"] = img_size
    return ctor(num_classes=num_classes, **settings)


def count_params(model: nn.Module) -> int:
    """Number of parameters (buffers such as BatchNorm statistics excluded)."""
    return sum(p.numel() for p in model.parameters())


def set_fused_attn(model: nn.Module, enabled: bool) -> int:
    """Switch every attention module of ``model`` between fused scaled-dot-product attention
    (fast, no double backward) and the plain softmax path (needed for Hessian-vector products).

    Returns the number of modules switched.
    """
    n = 0
    for m in model.modules():
        if hasattr(m, "fused_attn"):
            m.fused_attn = bool(enabled)
            n += 1
    return n
