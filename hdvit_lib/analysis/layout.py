"""A model's block layout, read from ``model.blocks()`` (Park & Kim 2022, Fig. 3: the three repeating
patterns; Fig. 11: AlterNet-50): kinds, stages, parameters, heads and windows per block, and the
repeating pattern they form."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

from hdvit_lib.analysis.result import Result

#: Fig. 11: AlterNet-50's parameter count for CIFAR-100 in the paper (millions).
PAPER_PARAMS_M = 33.0
#: MSAs per stage of AlterNet-50 worth comparing (Fig. 11's control).
PAPER_LABEL = "paper, CIFAR-100 (0, 1, 1, 2)"
MSA_PRESETS: dict[str, tuple[int, ...]] = {
    PAPER_LABEL: (0, 1, 1, 2),
    "official code default (0, 1, 3, 2)": (0, 1, 3, 2),
    "one MSA (0, 0, 0, 1)": (0, 0, 0, 1),
    "ResNet-50, no MSA (0, 0, 0, 0)": (0, 0, 0, 0),
}


@dataclass
class BlockLayout(Result):
    """A model's block listing: per block ``names``, ``kinds``, ``stages``, ``params``; the total."""

    model: str = ""
    tiny: bool = True
    names: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    stages: list[int] = field(default_factory=list)
    params: list[int] = field(default_factory=list)
    heads: list[int] = field(default_factory=list)  # 0 where the block has no attention
    windows: list[int] = field(default_factory=list)  # 0: global attention or none
    n_params: int = 0
    config: dict = field(default_factory=dict)


def _attention_setting(module: nn.Module, attrs: Sequence[str]) -> int:
    for m in module.modules():
        for a in attrs:
            v = getattr(m, a, None)
            if isinstance(v, int) and not isinstance(v, bool):
                return int(v)
    return 0


def block_layout(model: nn.Module, name: str = "", tiny: bool = True, config: Mapping | None = None) -> BlockLayout:
    """The block listing of ``model`` (``model.blocks()``): kind, stage, parameters per block, and
    for MSA blocks the number of heads and the attention window (0: global)."""
    out = BlockLayout(model=name, tiny=tiny, config=dict(config or {}))
    for b in model.blocks():
        out.names.append(b.name)
        out.kinds.append(b.kind)
        out.stages.append(int(b.stage))
        out.params.append(int(sum(p.numel() for p in b.module.parameters())))
        msa = b.kind == "msa"
        out.heads.append(_attention_setting(b.module, ("heads", "num_heads")) if msa else 0)
        out.windows.append(_attention_setting(b.module, ("window", "window_size")) if msa else 0)
    out.n_params = int(sum(p.numel() for p in model.parameters()))
    return out


def block_layouts(names: Sequence[str], tiny: bool = True, num_classes: int = 100) -> dict[str, BlockLayout]:
    """``{name: BlockLayout}`` of untrained zoo models (the structure only; nothing is trained)."""
    from hdvit_lib.models import get_model

    return {n: block_layout(get_model(n, num_classes=num_classes, tiny=tiny), n, tiny) for n in names}


def alternet_layouts(
    placements: Mapping[str, Sequence[int]] = MSA_PRESETS, num_classes: int = 100, tiny: bool = False, **cfg: Any
) -> dict[str, BlockLayout]:
    """``{label: BlockLayout}`` of AlterNet-50 for every MSAs-per-stage placement (Park & Kim 2022,
    Sec. 4, Fig. 11 and its control); paper size by default (only built, never trained: about a second)."""
    from hdvit_lib.models import get_model

    out = {}
    for label, msa in placements.items():
        model = get_model("alternet50", num_classes=num_classes, tiny=tiny, msa_per_stage=tuple(msa), **cfg)
        out[label] = block_layout(model, "alternet50", tiny, {"msa_per_stage": list(msa), **cfg})
    return out


def repeating_pattern(layout: BlockLayout) -> dict[str, Any]:
    """Classify a block listing into Fig. 3's patterns, from its kinds only.

    ``conv`` blocks and no ``msa``: *CNN* (Conv blocks; each stage ends where the next subsamples,
    the place of the paper's spatial smoothing); ``msa`` + ``mlp`` and no ``conv``: *canonical
    Transformer*; ``conv`` + ``msa``: *alternating*. Also returned: ``msa_then_mlp``, the share of
    MSA blocks directly followed by an MLP, and ``msa_stage_end``, the share of stages holding an
    MSA whose last block is an MSA (Fig. 3 right: 1.0).
    """
    body = [(k, s) for k, s in zip(layout.kinds, layout.stages) if k in ("conv", "msa", "mlp")]
    kinds = [k for k, _ in body]
    n = {k: kinds.count(k) for k in ("conv", "msa", "mlp")}
    msa_idx = [i for i, k in enumerate(layout.kinds) if k == "msa"]
    then_mlp = [i + 1 < len(layout.kinds) and layout.kinds[i + 1] == "mlp" for i in msa_idx]
    stages = sorted({s for _, s in body})
    with_msa = [s for s in stages if any(k == "msa" and t == s for k, t in body)]
    ends = [[k for k, t in body if t == s][-1] == "msa" for s in with_msa]
    if n["msa"] == 0:
        pattern = "CNN: Conv blocks, subsampling between stages"
    elif n["conv"] == 0:
        pattern = "canonical Transformer: MSA -> MLP, repeated"
    else:
        pattern = "alternating: Conv blocks, then an MSA at the stage's end"
    return {
        "pattern": pattern, "n_conv": n["conv"], "n_msa": n["msa"], "n_mlp": n["mlp"], "n_stages": len(stages),
        "msa_then_mlp": float(np.mean(then_mlp)) if then_mlp else float("nan"),
        "msa_stage_end": float(np.mean(ends)) if ends else float("nan"),
    }


def conv_and_msa(kinds: Mapping[str, Collection[str]]) -> tuple[str | None, str | None]:
    """The first label whose block kinds make a Conv model (``conv`` blocks, no ``msa``: ResNet)
    and the first with ``msa`` blocks (ViT, PiT, Swin, AlterNet), or None where there is none: the
    claim checks compare the two and tell models apart by their blocks, never by name."""
    conv = next((k for k, ks in kinds.items() if "conv" in ks and "msa" not in ks), None)
    msa = next((k for k, ks in kinds.items() if "msa" in ks), None)
    return conv, msa


def describe_patterns(layouts: Mapping[str, BlockLayout]) -> str:
    """One line per model: the pattern :func:`repeating_pattern` finds and its block counts."""
    lines = []
    for name, lay in layouts.items():
        p = repeating_pattern(lay)
        lines.append(f"{name:>12}: {p['pattern']} ({p['n_conv']} Conv, {p['n_msa']} MSA, {p['n_mlp']} MLP blocks, "
                     f"{p['n_stages']} stage(s), {lay.n_params / 1e6:.2f}M parameters)")
    return "\n".join(lines)


def stage_table(layout: BlockLayout) -> list[dict[str, Any]]:
    """One row per stage: blocks, which are MSA (index in the stage), heads, window, parameters."""
    rows = []
    for s in sorted(set(layout.stages)):
        idx = [i for i, t in enumerate(layout.stages) if t == s and layout.kinds[i] in ("conv", "msa", "mlp")]
        body = [layout.kinds[i] for i in idx]
        msa = [j for j, k in enumerate(body) if k == "msa"]
        rows.append({
            "stage": s + 1, "blocks": len(body), "pattern": " ".join("M" if k == "msa" else "C" for k in body),
            "msa_blocks": msa, "heads": sorted({layout.heads[idx[j]] for j in msa}),
            "window": sorted({layout.windows[idx[j]] for j in msa}),
            "params_M": round(sum(layout.params[i] for i in idx) / 1e6, 3),
        })
    return rows
