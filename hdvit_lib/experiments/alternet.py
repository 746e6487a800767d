"""Orchestration of the AlterNet chapters (Park & Kim 2022, Sec. 5, Figs. 3, 11, 12) and the
critical analysis.

- ``notebooks/03_three_patterns``: Fig. 3, the three repeating patterns (Conv stages that end in
  subsampling, the canonical Transformer, the alternating pattern), drawn from ``model.blocks()``.
- ``notebooks/11_alternet_architecture``: Fig. 11, AlterNet-50 for CIFAR-100 from the model object.
- ``notebooks/12_buildup_and_robustness``: Fig. 12a (a real build-up run), 12b (accuracy vs
  corruption robustness), 12c (Hessian spectra).
- ``notebooks/13_critical_analysis``: questions the paper leaves open, at this book's scale.

One function per chapter step. Models come from the zoo cache (``load_or_train``) with the same
names and settings as the other chapters, so a model trained once is shared. Patterns and claim
checks read block kinds (``conv``, ``msa``, ``mlp``), never model names; where a claim is about a
named model (AlterNet vs ResNet), the caller names it. Accuracy differences are compared with
their binomial standard error on the test set, and a verdict says when a difference is noise.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import plotly.graph_objects as go
import torch
from torch import nn

from hdvit_lib.analysis.buildup import BuildUpTrace, build_up, evaluate_placement
from hdvit_lib.analysis.hessian import HessianSpectrum
from hdvit_lib.analysis.result import Result
from hdvit_lib.claims import Claim
from hdvit_lib.data.corruptions import (
    CORRUPTIONS,
    SEVERITIES,
    RobustnessCResult,
    corruption_robustness,
)

# Chapters 12/13 call ``alt.train_models`` and ``alt.hessian_batches`` (chapter 04's batches, Fig. 12c).
from hdvit_lib.experiments.common import train_models  # noqa: F401 (re-exported for the chapters)
from hdvit_lib.experiments.landscape import hessian_batches  # noqa: F401 (re-exported for the chapters)

Batches = list[tuple[torch.Tensor, torch.Tensor]]

#: Colours of the block kinds in every block diagram of these chapters.
KIND_COLORS: dict[str, str] = {
    "embed": "#7f7f7f", "conv": "#1f77b4", "msa": "#d62728", "mlp": "#ff7f0e", "pool": "#2ca02c", "head": "#17becf",
}
_KIND_ORDER = tuple(KIND_COLORS)

#: Fig. 3's three patterns, one model each (plus PiT and Swin, canonical Transformers with pooling).
PATTERN_MODELS = ("resnet50", "vit_ti", "alternet50")
#: Fig. 12b's models.
ROBUSTNESS_MODELS = ("resnet50", "vit_ti", "pit_ti", "swin_ti", "alternet50")
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

#: Budget of the build-up run per preset: training overrides per candidate, and the most
#: candidates evaluated (``None``: until the rule stops). ``smoke`` is a demonstration only.
BUILDUP_BUDGET: dict[str, dict[str, Any]] = {
    "smoke": {"train_overrides": {"epochs": 1, "warmup_epochs": 0}, "max_evals": 3},
    "cpu": {"train_overrides": {"epochs": 8}, "max_evals": None},
    "gpu": {"train_overrides": {}, "max_evals": 4},  # ~6 T4-minutes per candidate (hdvit_lib.presets)
    "paper": {"train_overrides": {}, "max_evals": None},
}
#: Corruptions, severities and images for Fig. 12b per preset (``None`` images: the whole split).
ROBUSTNESS_BUDGET: dict[str, dict[str, Any]] = {
    "smoke": {"names": ("gaussian_noise", "motion_blur", "contrast"), "severities": (1, 3, 5), "n_images": 128},
    "cpu": {"names": CORRUPTIONS, "severities": SEVERITIES, "n_images": 1000},
    "gpu": {"names": CORRUPTIONS, "severities": SEVERITIES, "n_images": 2000},
    "paper": {"names": CORRUPTIONS, "severities": SEVERITIES, "n_images": None},
}
#: Training-set fractions of the critical analysis (Q2: data size; Q3: local vs global MSA).
DATA_FRACTIONS: dict[str, tuple[float, ...]] = {
    "smoke": (0.25, 1.0),
    "cpu": (0.1, 0.3, 1.0),
    "gpu": (0.1, 1.0),
    "paper": (0.1, 0.3, 1.0),
}


#: Q3 (local vs global MSA): two fractions, the smallest and the whole set.
LOCAL_FRACTIONS: dict[str, tuple[float, ...]] = {
    "smoke": (0.25, 1.0),
    "cpu": (0.1, 1.0),
    "gpu": (0.1, 1.0),
    "paper": (0.1, 1.0),
}


def _n_test(cfg: Mapping[str, Any]) -> int:
    """Test images behind an accuracy (the whole CIFAR test split, 10000, when ``n_test`` is None)."""
    return int(cfg.get("n_test") or 10000)


def _budget(table: Mapping[str, Any], cfg: Mapping[str, Any]) -> Any:
    name = cfg["name"]
    if name not in table:
        raise ValueError(f"preset {name!r} has no budget here; choose one of {', '.join(table)}")
    return table[name]


def binomial_se(p: float, n: int) -> float:
    """Standard error of an accuracy ``p`` measured on ``n`` independent images: ``sqrt(p(1-p)/n)``."""
    if n <= 0 or not math.isfinite(p):
        return float("nan")
    return math.sqrt(max(p * (1.0 - p), 0.0) / n)


def _diff_verdict(diff: float, se: float, what: str) -> tuple[bool | None, str]:
    """``holds`` and words for "``diff`` > 0" given its standard error: noise within 2 SE."""
    if not math.isfinite(diff):
        return None, f"{what}: not measured"
    if abs(diff) <= 2 * se:
        return None, f"{what}: {diff:+.3f}, within noise (2 SE = {2 * se:.3f})"
    return diff > 0, f"{what}: {diff:+.3f} ({'beyond' if diff > 0 else 'against, beyond'} 2 SE = {2 * se:.3f})"


# --------------------------------------------------------------------------- Fig. 3: block layouts


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


def describe_patterns(layouts: Mapping[str, BlockLayout]) -> str:
    """One line per model: the pattern :func:`repeating_pattern` finds and its block counts."""
    lines = []
    for name, lay in layouts.items():
        p = repeating_pattern(lay)
        lines.append(f"{name:>12}: {p['pattern']} ({p['n_conv']} Conv, {p['n_msa']} MSA, {p['n_mlp']} MLP blocks, "
                     f"{p['n_stages']} stage(s), {lay.n_params / 1e6:.2f}M parameters)")
    return "\n".join(lines)


def _strip_rows(layouts: Mapping[str, BlockLayout]) -> tuple[list[list[float | None]], list[list[str]]]:
    width = max(len(lay.kinds) for lay in layouts.values())
    z, text = [], []
    for lay in layouts.values():
        row: list[float | None] = [_KIND_ORDER.index(k) + 0.5 for k in lay.kinds] + [None] * (width - len(lay.kinds))
        hov = [f"{nm}<br>kind {k}, stage {s + 1}<br>{p / 1e6:.3g}M params"
               + (f"<br>{h} heads, {'window ' + str(w) if w else 'global'}" if k == "msa" else "")
               for nm, k, s, p, h, w in zip(lay.names, lay.kinds, lay.stages, lay.params, lay.heads, lay.windows)]
        z.append(row)
        text.append(hov + [""] * (width - len(hov)))
    return z, text


def _kind_colorscale() -> list[list[Any]]:
    n = len(_KIND_ORDER)
    scale: list[list[Any]] = []
    for i, k in enumerate(_KIND_ORDER):
        scale += [[i / n, KIND_COLORS[k]], [(i + 1) / n, KIND_COLORS[k]]]
    return scale


def plot_block_strips(layouts: Mapping[str, BlockLayout], title: str = "Repeating patterns, from model.blocks()") -> go.Figure:
    """Fig. 3, generated: one row of cells per model, one cell per block coloured by kind
    (embed, conv, msa, mlp, pool, head); white lines mark stage changes (subsampling). The row
    label names the pattern :func:`repeating_pattern` finds; hover shows each block."""
    if not layouts:
        raise ValueError("layouts is empty: pass {model name: BlockLayout}")
    z, text = _strip_rows(layouts)
    labels = [f"{name}<br><sub>{repeating_pattern(lay)['pattern'].split(':')[0]}</sub>" for name, lay in layouts.items()]
    n = len(_KIND_ORDER)
    fig = go.Figure(go.Heatmap(
        z=z, text=text, hoverinfo="text", y=labels, colorscale=_kind_colorscale(), zmin=0, zmax=n,
        showscale=False, xgap=2, ygap=8))
    for k in _KIND_ORDER:  # legend entries
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=k,
                                 marker={"size": 12, "symbol": "square", "color": KIND_COLORS[k]}))
    for row, lay in enumerate(layouts.values()):
        for i in range(1, len(lay.stages)):
            if lay.stages[i] != lay.stages[i - 1]:
                fig.add_shape(type="line", x0=i - 0.5, x1=i - 0.5, y0=row - 0.45, y1=row + 0.45,
                              line={"color": "black", "width": 3})
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title_text="block (in forward order); black bars: a new stage (subsampling)", showgrid=False)
    fig.update_layout(title=title, template="plotly_white", height=140 + 90 * len(layouts),
                      legend={"orientation": "h", "y": -0.35}, plot_bgcolor="white")
    return fig


def claim_patterns(layouts: Mapping[str, BlockLayout], preset: str = "") -> Claim:
    """Fig. 3's claim, checked on the zoo's block listings: the CNN has no MSA, every MSA of
    the canonical Transformer is followed by an MLP, and every stage of the alternating model
    that holds an MSA ends with one."""
    pats = {name: repeating_pattern(lay) for name, lay in layouts.items()}
    measured: dict[str, float] = {}
    checks: list[bool] = []
    words = []
    for name, p in pats.items():
        kind = p["pattern"].split(":")[0]
        words.append(f"{name} is {kind}")
        if kind == "CNN":
            measured[f"{name} MSAs"] = p["n_msa"]
        elif kind == "canonical Transformer":
            measured[f"{name} share of MSAs followed by an MLP"] = p["msa_then_mlp"]
            checks.append(p["msa_then_mlp"] == 1.0)
        else:
            measured[f"{name} share of MSA stages ending in MSA"] = p["msa_stage_end"]
            measured[f"{name} MSAs / Convs"] = p["n_msa"] / max(p["n_conv"], 1)
            checks.append(p["msa_stage_end"] == 1.0)
    kinds = {p["pattern"].split(":")[0] for p in pats.values()}
    holds = bool(checks) and all(checks) and {"CNN", "canonical Transformer", "alternating"} <= kinds
    verdict = ("; ".join(words) + ". " + ("Each model follows its pattern as drawn in Fig. 3."
               if holds else "Not every pattern of Fig. 3 is present or followed (see the numbers)."))
    return Claim(paper="CNN stages are Conv blocks ending in subsampling (where spatial smoothing sits); "
                 "ViT stages repeat MSA -> MLP; AlterNet's stages are Conv blocks ending with an MSA block (Fig. 3).",
                 measured=measured, holds=holds, verdict=verdict, preset=preset)


# --------------------------------------------------------------------------- Fig. 11: AlterNet-50


def alternet_layouts(
    placements: Mapping[str, Sequence[int]] = MSA_PRESETS, num_classes: int = 100, tiny: bool = False, **cfg: Any
) -> dict[str, BlockLayout]:
    """``{label: BlockLayout}`` of AlterNet-50 for every MSAs-per-stage placement (Fig. 11's
    control); paper size by default (only built, never trained: it takes about a second)."""
    from hdvit_lib.models import get_model

    out = {}
    for label, msa in placements.items():
        model = get_model("alternet50", num_classes=num_classes, tiny=tiny, msa_per_stage=tuple(msa), **cfg)
        out[label] = block_layout(model, "alternet50", tiny, {"msa_per_stage": list(msa), **cfg})
    return out


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


def plot_stage_table(layout: BlockLayout, title: str = "") -> go.Figure:
    """:func:`stage_table` as a plotly table (C: Conv block, M: MSA block)."""
    rows = stage_table(layout)
    cols = ["stage", "blocks", "pattern", "msa_blocks", "heads", "window", "params_M"]
    header = ["stage", "blocks", "pattern (C Conv, M MSA)", "MSA block index", "heads", "window", "params (M)"]
    cells = [[", ".join(map(str, r[c])) if isinstance(r[c], list) else r[c] for r in rows] for c in cols]
    fig = go.Figure(go.Table(header={"values": header}, cells={"values": cells}))
    fig.update_layout(title=title or f"{layout.model}: {layout.n_params / 1e6:.2f}M parameters",
                      height=120 + 40 * len(rows), margin={"t": 50, "b": 10})
    return fig


def plot_alternet(layouts: Mapping[str, BlockLayout], paper_params_m: float | None = PAPER_PARAMS_M) -> go.Figure:
    """Fig. 11 from the model object: parameters per block (bars coloured by kind, hover: heads,
    window), stage changes marked; a dropdown switches between MSAs-per-stage placements, and
    the title gives the total against the paper's 33.0M."""
    if not layouts:
        raise ValueError("layouts is empty: pass {label: BlockLayout}")
    fig = go.Figure()
    buttons = []
    labels = list(layouts)
    for i, (label, lay) in enumerate(layouts.items()):
        hover = [f"{nm}<br>{k}, stage {s + 1}<br>{p / 1e6:.3g}M params"
                 + (f"<br>{h} heads, window {w}x{w}" if k == "msa" else "")
                 for nm, k, s, p, h, w in zip(lay.names, lay.kinds, lay.stages, lay.params, lay.heads, lay.windows)]
        fig.add_trace(go.Bar(
            x=lay.names, y=[p / 1e6 for p in lay.params], marker_color=[KIND_COLORS[k] for k in lay.kinds],
            hovertext=hover, hoverinfo="text", name=label, visible=i == 0,
            text=[f"{h}h" if k == "msa" else "" for k, h in zip(lay.kinds, lay.heads)], textposition="outside"))
        ref = f" (paper: {paper_params_m}M)" if paper_params_m else ""
        buttons.append({"label": label, "method": "update",
                        "args": [{"visible": [j == i for j in range(len(labels))]},
                                 {"title": f"AlterNet-50, MSAs per stage {tuple(lay.config.get('msa_per_stage', []))}: "
                                           f"{lay.n_params / 1e6:.2f}M parameters{ref}"}]})
    first = layouts[labels[0]]
    fig.update_layout(
        title=buttons[0]["args"][1]["title"], template="plotly_white", height=460, showlegend=False,
        updatemenus=[{"buttons": buttons, "direction": "down", "x": 1.0, "xanchor": "right", "y": 1.18}],
        yaxis_title="parameters per block (M)", xaxis_title="block (red: MSA, blue: Conv; label: heads)")
    for i in range(1, len(first.stages)):
        if first.stages[i] != first.stages[i - 1]:
            fig.add_vline(x=i - 0.5, line={"color": "black", "dash": "dot"})
    return fig


def claim_params(layout: BlockLayout, paper_params_m: float = PAPER_PARAMS_M, preset: str = "") -> Claim:
    """Fig. 11 / Table: AlterNet-50 for CIFAR-100 has 33.0M parameters; holds when the model built
    here is within 0.5% (the paper rounds to 0.1M) and its MSAs end stages and grow in heads."""
    n = layout.n_params / 1e6
    rows = [r for r in stage_table(layout) if r["msa_blocks"]]
    ends = all(r["pattern"].endswith("M") for r in rows)
    heads = [h for r in rows for h in r["heads"]]
    grow = all(a <= b for a, b in itertools.pairwise(heads))
    rel = abs(n - paper_params_m) / paper_params_m
    holds = rel <= 0.005 and ends and grow
    verdict = (f"Built from the model object: {n:.2f}M parameters vs the paper's {paper_params_m}M "
               f"({100 * rel:.2f}% off); MSAs at stage ends: {ends}; heads per MSA {heads} "
               f"{'grow' if grow else 'do not grow'} with depth. "
               + ("The architecture matches Fig. 11." if holds else "The architecture differs from Fig. 11."))
    return Claim(paper=f"AlterNet-50 for CIFAR-100: MSAs per stage (0, 1, 1, 2) at stage ends, more heads in late "
                 f"stages, {paper_params_m}M parameters (Fig. 11).",
                 measured={"parameters (M)": n, "relative difference": rel, "MSAs": float(sum(k == "msa" for k in layout.kinds))},
                 holds=holds, verdict=verdict, preset=preset)


# --------------------------------------------------------------------------- models and data


def trained(name: str, cfg: Mapping[str, Any], seed: int = 0, **kwargs: Any):
    """``load_or_train(name, preset=cfg["name"], ...)``: the zoo entry shared with the other chapters."""
    from hdvit_lib.zoo import load_or_train

    return load_or_train(name, preset=cfg["name"], seed=seed, device=cfg.get("device"),
                         progress=kwargs.pop("progress", False), **kwargs)


def corruption_images(cfg: Mapping[str, Any], n: int | None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` test images in [0, 1] (not normalised: corruptions act on pixels) and labels."""
    from hdvit_lib.data import get_dataset

    ds = get_dataset(cfg["dataset"], "test", seed=seed, n=cfg.get("n_test"), num_classes=cfg.get("num_classes"))
    k = len(ds) if n is None else min(int(n), len(ds))
    xs, ys = zip(*(ds[i] for i in range(k)))
    return torch.stack(xs), torch.as_tensor(ys)


# --------------------------------------------------------------------------- Fig. 12a: build-up


def run_buildup(cfg: Mapping[str, Any], seed: int = 0, model: str = "alternet50", progress: bool = False) -> BuildUpTrace:
    """Fig. 12a: the build-up rule (``analysis.buildup.build_up``) on AlterNet, each candidate
    trained by ``evaluate_placement`` with the preset's budget (:data:`BUILDUP_BUDGET`; ``smoke``:
    1 epoch per candidate, at most 3 candidates) and cached in the zoo, so reruns and chapter 13
    reuse the models. Blocks per stage come from the model itself."""
    from hdvit_lib.models import get_model

    budget = _budget(BUILDUP_BUDGET, cfg)
    base = get_model(model, tiny=bool(cfg["tiny"]))
    blocks = [len(getattr(base, f"layer{i + 1}")) for i in range(base.num_stages)]

    def evaluate(placement: tuple[int, ...]) -> float:
        return evaluate_placement(placement, cfg["name"], model=model, seed=seed, device=cfg.get("device"),
                                  train_overrides=dict(budget["train_overrides"]), progress=progress)

    return build_up(evaluate, n_stages=len(blocks), blocks_per_stage=tuple(blocks), seed=seed,
                    max_evals=budget["max_evals"])


def buildup_model(placement: Sequence[int], cfg: Mapping[str, Any], seed: int = 0, model: str = "alternet50"):
    """The zoo entry (``Trained``) of one build-up candidate, with the same budget as :func:`run_buildup`."""
    budget = _budget(BUILDUP_BUDGET, cfg)
    return trained(model, cfg, seed, model_cfg={"msa_per_stage": tuple(int(m) for m in placement)},
                   train_overrides=dict(budget["train_overrides"]))


def describe_buildup_budget(cfg: Mapping[str, Any], model: str = "alternet50") -> str:
    """In words: how much training each build-up candidate gets in this preset."""
    b = _budget(BUILDUP_BUDGET, cfg)
    epochs = b["train_overrides"].get("epochs", cfg["epochs"])
    n = cfg.get("n_train") or "all"
    most = f"at most {b['max_evals']} candidates" if b["max_evals"] else "until the rule stops"
    size = "tiny" if cfg["tiny"] else "paper-size"
    return (f"Build-up budget ({cfg['name']} preset): {size} {model}, each candidate trained from scratch for "
            f"{epochs} epoch(s) on {n} training images of {cfg['dataset']}, {most}; accuracy on "
            f"{_n_test(cfg)} test images (1 SE ~ {binomial_se(0.5, _n_test(cfg)):.3f}).")


def claim_buildup(trace: BuildUpTrace, n_test: int, preset: str = "") -> Claim:
    """Fig. 12a: the build-up rule's accepted MSAs raise accuracy above the CNN baseline; the
    gain is compared with its noise, ``2 * sqrt(2) * SE`` of one accuracy on ``n_test`` images."""
    base = trace.metrics[0]
    best = trace.best_metric
    se = math.sqrt(2) * binomial_se(base, n_test)
    holds, words = _diff_verdict(best - base, se, "best minus CNN baseline")
    measured = {"baseline accuracy": base, "best accuracy": best, "MSAs accepted": float(sum(trace.best_placement)),
                "candidates evaluated": float(len(trace.metrics))}
    return Claim(paper="Replacing Convs at the end of stages with MSAs, one by one by the build-up rule, raises "
                 "CIFAR-100 accuracy from 82.5% (ResNet-50) to 84.0% (AlterNet-50) (Fig. 12a).",
                 measured=measured, holds=holds,
                 verdict=f"Best placement {tuple(trace.best_placement)} ({trace.stop_reason}); {words}.",
                 preset=preset)


# --------------------------------------------------------------------------- Fig. 12b: robustness


def robustness_by_model(
    models: Mapping[str, Any], cfg: Mapping[str, Any], seed: int = 0, root: str | None = None
) -> dict[str, RobustnessCResult]:
    """Fig. 12b: ``corruption_robustness`` of every model (an ``nn.Module`` or a zoo ``Trained``)
    on the same corrupted test images (:data:`ROBUSTNESS_BUDGET` per preset; ``root``: read the
    released CIFAR-100-C files)."""
    from hdvit_lib.data import mean_std

    b = _budget(ROBUSTNESS_BUDGET, cfg)
    x, y = corruption_images(cfg, b["n_images"], seed)
    norm = mean_std(cfg["dataset"])
    return {name: corruption_robustness(getattr(m, "model", m), x, y, names=b["names"], severities=b["severities"], normalize=norm,
                                        seed=seed, device=cfg.get("device"), root=root, n=b["n_images"])
            for name, m in models.items()}


def robustness_points(results: Mapping[str, RobustnessCResult]) -> dict[str, tuple[float, float]]:
    """``{model: (clean accuracy, robustness)}`` for ``plots.alternet.plot_accuracy_vs_robustness``."""
    return {k: (r.clean_accuracy, r.mean_accuracy) for k, r in results.items()}


def claim_robustness(results: Mapping[str, RobustnessCResult], alternet: str = "alternet50", preset: str = "") -> Claim:
    """Fig. 12b: AlterNet is the most accurate and the most robust of the models; reports its
    rank in each, and whether its lead over the runner-up exceeds 2 SE."""
    acc = {k: r.clean_accuracy for k, r in results.items()}
    rob = {k: r.mean_accuracy for k, r in results.items()}
    if alternet not in results:
        raise ValueError(f"alternet={alternet!r} is not among the results: {', '.join(results)}")
    n = results[alternet].n_images
    rank_a = 1 + sum(v > acc[alternet] for v in acc.values())
    rank_r = 1 + sum(v > rob[alternet] for v in rob.values())
    other_r = max((v for k, v in rob.items() if k != alternet), default=float("nan"))
    se = math.sqrt(2) * binomial_se(rob[alternet], n * len(results[alternet].names) * len(results[alternet].severities))
    holds_r, words = _diff_verdict(rob[alternet] - other_r, se, "robustness lead over the best other model")
    holds = None if holds_r is None else bool(holds_r and rank_a == 1)
    measured = {f"{k} acc": acc[k] for k in acc} | {f"{k} robustness": rob[k] for k in rob}
    return Claim(paper="AlterNet is both more accurate and more robust to corruptions than ResNet, ViT, PiT and Swin "
                 "(Fig. 12b, CIFAR-100-C).", measured=measured, holds=holds,
                 verdict=f"{alternet} ranks {rank_a} of {len(acc)} in clean accuracy and {rank_r} in robustness "
                 f"({n} images); {words} (correlated corruptions: the SE is optimistic).", preset=preset)


# --------------------------------------------------------------------------- Fig. 12c: Hessian


def hessian_spectra(trained: Mapping[str, Any], batches: Batches, cfg: Mapping[str, Any], seed: int = 0,
                    tag: int | str = "warmup") -> dict[str, HessianSpectrum]:
    """Fig. 12c: the spectrum of every zoo model (``Trained``) at snapshot ``tag`` (default the end
    of warm-up, as chapter 04 measures Fig. 4), with chapter 04's protocol
    (``hdvit_lib.experiments.landscape.hessian_spectrum``: top-``hessian_k`` eigenvalues per
    mini-batch by Lanczos, BatchNorm in eval mode, the landscape's loss NLL + ``weight_decay * sum_k ||w_k||``).
    The authors' checkpoints have no warm-up snapshot: for a ``tag`` other than ``final`` those
    models are trained here (``common.with_snapshots``)."""
    from hdvit_lib.experiments.common import with_snapshots
    from hdvit_lib.experiments.landscape import hessian_spectrum, model_at

    if tag != "final":
        trained = with_snapshots(trained, dict(cfg), seed)
    return {name: hessian_spectrum(model_at(t, tag), batches, dict(cfg), seed, name=name) for name, t in trained.items()}


def spectrum_summary(spec: HessianSpectrum) -> dict[str, float]:
    """``top``: median over mini-batches of the largest eigenvalue; ``neg_share``: share of the
    computed eigenvalues that are negative; ``mean_abs``: mean magnitude."""
    ev = np.asarray(spec.eigenvalues, dtype=float)
    return {"top": float(np.median(ev.max(axis=1))), "neg_share": float((ev < 0).mean()),
            "mean_abs": float(np.abs(ev).mean())}


def claim_hessian(spectra: Mapping[str, HessianSpectrum], alternet: str = "alternet50", cnn: str = "resnet50",
                  vit: str = "vit_ti", preset: str = "") -> Claim:
    """Fig. 12c: AlterNet's MSAs suppress the large Hessian eigenvalues of the CNN (smaller top
    eigenvalue than ResNet) and it has fewer negative eigenvalues than ViT."""
    s = {k: spectrum_summary(v) for k, v in spectra.items()}
    smaller = s[alternet]["top"] < s[cnn]["top"]
    fewer_neg = s[alternet]["neg_share"] <= s[vit]["neg_share"]
    measured = {f"{k} top eigenvalue": v["top"] for k, v in s.items()} | {f"{k} negative share": v["neg_share"] for k, v in s.items()}
    n = spectra[alternet].eigenvalues.size
    verdict = (f"{alternet}'s median top eigenvalue is {'below' if smaller else 'above'} {cnn}'s "
               f"({s[alternet]['top']:.3g} vs {s[cnn]['top']:.3g}); its negative share is "
               f"{s[alternet]['neg_share']:.2f} vs {vit}'s {s[vit]['neg_share']:.2f}; from {n} eigenvalues per model.")
    return Claim(paper="MSAs in AlterNet suppress the large Hessian eigenvalues of ResNet (a flatter loss) without "
                 "ViT's many negative eigenvalues (Fig. 12c).", measured=measured, holds=bool(smaller and fewer_neg),
                 verdict=verdict, preset=preset)


# --------------------------------------------------------------------------- chapter 13: critical analysis


def buildup_step(trace: BuildUpTrace) -> tuple[list[int], list[int]]:
    """The first build-up step: (baseline placement, first accepted candidate, or the first
    candidate when none was accepted)."""
    if len(trace.placements) < 2:
        raise ValueError("the trace holds only the baseline; run the build-up with max_evals >= 2")
    after = next((p for p, a in zip(trace.placements[1:], trace.accepted[1:]) if a), trace.placements[1])
    return list(trace.placements[0]), list(after)


def step_spectra(trace: BuildUpTrace, batches: Batches, cfg: Mapping[str, Any], seed: int = 0,
                 model: str = "alternet50", tag: int | str = "final") -> dict[str, HessianSpectrum]:
    """Q1: Hessian spectra of the models before and after the first build-up step (read from the
    zoo cache that :func:`run_buildup` filled), keyed ``"MSAs (0, 0, 0, 0)"`` etc.; at the end of
    their training by default (in ``smoke`` a candidate has no warm-up to stop at)."""
    out = {f"MSAs {tuple(p)}": buildup_model(p, cfg, seed, model) for p in buildup_step(trace)}
    return hessian_spectra(out, batches, cfg, seed, tag=tag)


def claims_fig12(trace: BuildUpTrace, robustness: Mapping[str, RobustnessCResult],
                 spectra: Mapping[str, HessianSpectrum], cfg: Mapping[str, Any]) -> list[Claim]:
    """The three claim checks of Fig. 12: (a) build-up, (b) robustness, (c) Hessian."""
    return [claim_buildup(trace, _n_test(cfg), cfg["name"]), claim_robustness(robustness, preset=cfg["name"]),
            claim_hessian(spectra, preset=cfg["name"])]


@dataclass
class DataFractionResult(Result):
    """Test accuracy (``accuracy[model, fraction]``) of models trained on fractions of the training set."""

    models: list[str] = field(default_factory=list)
    fractions: list[float] = field(default_factory=list)
    accuracy: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    n_train: list[int] = field(default_factory=list)
    n_test: int = 0
    preset: str = ""


def accuracy_vs_data(names: Sequence[str], fractions: Sequence[float], cfg: Mapping[str, Any], seed: int = 0) -> DataFractionResult:
    """Train (or load) every model on every class-balanced fraction of the training set
    (``load_or_train(..., data_fraction=f)``) and collect the final test accuracy."""
    acc = np.zeros((len(names), len(fractions)))
    for i, name in enumerate(names):
        for j, f in enumerate(fractions):
            acc[i, j] = trained(name, cfg, seed, data_fraction=float(f)).history.final("test_acc")
    n = cfg.get("n_train")
    return DataFractionResult(models=list(names), fractions=[float(f) for f in fractions], accuracy=acc,
                              n_train=[round(n * f) if n else -1 for f in fractions],
                              n_test=_n_test(cfg), preset=cfg["name"])


def plot_accuracy_vs_data(result: DataFractionResult, title: str = "Accuracy vs training-set size") -> go.Figure:
    """Test accuracy against the fraction of the training set, one line per model, with
    binomial error bars (one SE on the test set)."""
    fig = go.Figure()
    for i, name in enumerate(result.models):
        a = result.accuracy[i]
        fig.add_trace(go.Scatter(
            x=result.fractions, y=a, mode="lines+markers", name=name,
            error_y={"type": "data", "array": [binomial_se(float(v), result.n_test) for v in a]},
            hovertemplate=f"{name}<br>fraction %{{x}}<br>accuracy %{{y:.3f}}<extra></extra>"))
    fig.update_xaxes(type="log", title_text="fraction of the training set", tickvals=result.fractions)
    fig.update_yaxes(title_text="test accuracy")
    fig.update_layout(title=f"{title} ({result.preset} preset; error bars: 1 SE)", template="plotly_white")
    return fig


def claim_flattening(before: HessianSpectrum, after: HessianSpectrum, preset: str = "") -> Claim:
    """Q1: does the MSA added by one build-up step flatten the loss (smaller top eigenvalue)?"""
    b, a = spectrum_summary(before), spectrum_summary(after)
    holds = a["top"] < b["top"]
    return Claim(paper="MSAs flatten the loss landscape: they suppress large Hessian eigenvalues (Sec. 2, Fig. 12c).",
                 measured={"top eigenvalue before": b["top"], "top eigenvalue after": a["top"],
                           "negative share before": b["neg_share"], "negative share after": a["neg_share"]},
                 holds=holds,
                 verdict=(f"Adding the MSA ({before.model} -> {after.model}) {'lowered' if holds else 'did not lower'} "
                          f"the median top eigenvalue ({b['top']:.3g} -> {a['top']:.3g}); the two models are trained "
                          f"separately, so this mixes the architecture with the run."), preset=preset)


def claim_small_data(result: DataFractionResult, alternet: str = "alternet50", cnn: str = "resnet50",
                     vit: str = "vit_ti", preset: str = "") -> Claim:
    """Q2: at the smallest training fraction, is AlterNet at least as accurate as the CNN and
    better than ViT? Differences within 2 SE (two independent accuracies) count as noise."""
    j = int(np.argmin(result.fractions))
    a = {m: float(result.accuracy[i, j]) for i, m in enumerate(result.models)}
    se = math.sqrt(2) * binomial_se(a[alternet], result.n_test)
    h_cnn, w_cnn = _diff_verdict(a[alternet] - a[cnn], se, f"{alternet} - {cnn}")
    h_vit, w_vit = _diff_verdict(a[alternet] - a[vit], se, f"{alternet} - {vit}")
    holds = None if (h_cnn is None and h_vit is None) else bool((h_cnn is not False) and h_vit)
    return Claim(paper="AlterNet outperforms CNNs not only in large data regimes but also in small data regimes "
                 "(abstract, Sec. 5).",
                 measured={f"{m} at fraction {result.fractions[j]:g}": v for m, v in a.items()}, holds=holds,
                 verdict=f"At {result.fractions[j]:g} of the training set: {w_cnn}; {w_vit}.", preset=preset)


def claim_local_global(result: DataFractionResult, local: str = "vit_local", glob: str = "vit_ti", preset: str = "") -> Claim:
    """Q3: local MSAs beat global ones on small data; does the gap shrink as data grows?"""
    i, g = result.models.index(local), result.models.index(glob)
    gaps = result.accuracy[i] - result.accuracy[g]
    se = math.sqrt(2) * binomial_se(float(result.accuracy[g, 0]), result.n_test)
    order = np.argsort(result.fractions)
    small, large = float(gaps[order[0]]), float(gaps[order[-1]])
    holds, words = _diff_verdict(small, se, f"{local} - {glob} at the smallest fraction")
    trend = "shrinks" if large < small else "does not shrink"
    return Claim(paper="Locality constraints (local MSAs) help ViTs, above all on small data: data specificity, not "
                 "long-range dependency, is what MSAs need (Sec. 2).",
                 measured={f"gap at fraction {result.fractions[k]:g}": float(gaps[k]) for k in order}, holds=holds,
                 verdict=f"{words}; as data grows the gap {trend} ({small:+.3f} -> {large:+.3f}). Two fractions of a "
                         f"small synthetic set cannot say where (or whether) global attention overtakes local.",
                 preset=preset)


def claims_critical(step: Mapping[str, HessianSpectrum], data: DataFractionResult, local: DataFractionResult,
                    preset: str = "") -> list[Claim]:
    """The three questions of chapter 13: flattening by one MSA, small data, local vs global."""
    before, after = step.values()
    return [claim_flattening(before, after, preset), claim_small_data(data, preset=preset),
            claim_local_global(local, preset=preset)]
