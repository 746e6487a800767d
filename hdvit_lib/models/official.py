"""Map the authors' released CIFAR-100 checkpoints (timm 0.5.4 layouts) onto the zoo's models.

See ``shared/official_checkpoints/README.md``: ``resnet50`` keys load as they are; ViT's
``blocks.N`` are ``transformer.N`` here (``model.blocks()`` is the block listing); PiT and Swin
moved their pooling / patch merging from the end of stage i to the start of stage i + 1 in
timm >= 0.9, and timm 1.0's Swin names its classifier ``head.fc``.
"""

from __future__ import annotations

import re

import torch

ARCHS = ("resnet50", "vit_ti", "pit_ti", "swin_ti")


def _shift_stage(key: str, pattern: str, fmt: str) -> str:
    return re.sub(pattern, lambda m: fmt.format(int(m.group(1)) + 1), key)


def convert_official_state_dict(name: str, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the keys of an official checkpoint's ``state_dict`` for ``get_model(name, num_classes=100)``.

    Non-persistent buffers of timm 1.0 (Swin's ``relative_position_index``, ``attn_mask``) are dropped:
    the model recomputes them.
    """
    if name not in ARCHS:
        raise ValueError(f"no official checkpoint for {name!r}; choose one of {', '.join(ARCHS)}")
    out: dict[str, torch.Tensor] = {}
    for k, v in state_dict.items():
        if name == "vit_ti":
            k = re.sub(r"^blocks\.", "transformer.", k)
        elif name == "pit_ti":
            k = _shift_stage(k, r"^transformers\.(\d+)\.pool\.", "transformers.{}.pool.")
        elif name == "swin_ti":
            if k.endswith(("relative_position_index", "attn_mask")):
                continue
            k = _shift_stage(k, r"^layers\.(\d+)\.downsample\.", "layers.{}.downsample.")
            k = re.sub(r"^head\.(weight|bias)$", r"head.fc.\1", k)
        out[k] = v
    return out
