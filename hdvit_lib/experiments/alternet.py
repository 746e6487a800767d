"""Orchestration of the AlterNet chapters (Park & Kim 2022, Sec. 4, Figs. 3, 11, 12) and the
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
from typing import Any

import numpy as np

from hdvit_lib.analysis.buildup import (
    BuildUpTrace,
    build_up,
    buildup_step,
    evaluate_placement,
)
from hdvit_lib.analysis.corruption import RobustnessCResult, corruption_robustness
from hdvit_lib.analysis.fit import DataFractionResult
from hdvit_lib.analysis.hessian import HessianSpectrum, spectrum_summary
from hdvit_lib.analysis.layout import (
    PAPER_PARAMS_M,
    BlockLayout,
    repeating_pattern,
    stage_table,
)
from hdvit_lib.claims import (
    Claim,
    binomial_se,
    difference_part,
    summary_less,
    verdict,
    verdict_text,
)
from hdvit_lib.data.batches import Batches, corruption_images
from hdvit_lib.data.corruptions import CORRUPTIONS, SEVERITIES

# Chapters 12/13 call ``alt.train_models``.
from hdvit_lib.experiments.common import train_models  # noqa: F401 (re-exported for the chapters)
from hdvit_lib.train.cache import module_of

#: Fig. 3's three patterns, one model each (plus PiT and Swin, canonical Transformers with pooling).
PATTERN_MODELS = ("resnet50", "vit_ti", "alternet50")
#: Fig. 12b's models.
ROBUSTNESS_MODELS = ("resnet50", "vit_ti", "pit_ti", "swin_ti", "alternet50")


def _n_test(cfg: Mapping[str, Any]) -> int:
    """Test images behind an accuracy (the whole CIFAR test split, 10000, when ``n_test`` is None)."""
    return int(cfg.get("n_test") or 10000)


def _budget(cfg: Mapping[str, Any], key: str) -> Any:
    """The preset's setting ``key`` (``hdvit_lib.presets.ANALYSIS``), with a clear error for a config
    that is not a preset's."""
    if key not in cfg:
        raise ValueError(f"the config has no {key!r}: pass a preset from hdvit_lib.presets.get_preset "
                         f"(smoke, cpu, gpu, paper)")
    return cfg[key]


# --------------------------------------------------------------------------- Fig. 3: block layouts


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
    present = {"CNN", "canonical Transformer", "alternating"} <= kinds
    holds, head = verdict([*checks, present] if checks else [])
    words_all = ("; ".join(words) + ". " + ("Each model follows its pattern as drawn in Fig. 3."
                 if holds else "Not every pattern of Fig. 3 is present or followed (see the numbers)."))
    return Claim(paper="CNN stages are Conv blocks ending in subsampling (where spatial smoothing sits); "
                 "ViT stages repeat MSA -> MLP; AlterNet's stages are Conv blocks ending with an MSA block (Fig. 3).",
                 measured=measured, holds=holds, verdict=f"{head}: {words_all}", preset=preset)


# --------------------------------------------------------------------------- Fig. 11: AlterNet-50


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


# --------------------------------------------------------------------------- Fig. 12a: build-up


def run_buildup(cfg: Mapping[str, Any], seed: int = 0, model: str = "alternet50", progress: bool = False) -> BuildUpTrace:
    """Fig. 12a: the build-up rule (``analysis.buildup.build_up``) on AlterNet, each candidate
    trained by ``evaluate_placement`` with the preset's budget (preset key ``analysis_buildup``; ``smoke``:
    1 epoch per candidate, at most 3 candidates) and cached in the zoo, so reruns and chapter 13
    reuse the models. Blocks per stage come from the model itself."""
    from hdvit_lib.models import get_model

    budget = _budget(cfg, "analysis_buildup")
    stages = [b.stage for b in get_model(model, tiny=bool(cfg["tiny"])).blocks() if b.kind in ("conv", "msa")]
    blocks = [stages.count(s) for s in sorted(set(stages))]  # residual blocks per stage, from blocks()

    def evaluate(placement: tuple[int, ...]) -> float:
        return evaluate_placement(placement, cfg["name"], model=model, seed=seed, device=cfg.get("device"),
                                  train_overrides=dict(budget["train_overrides"]), progress=progress)

    return build_up(evaluate, n_stages=len(blocks), blocks_per_stage=tuple(blocks), seed=seed,
                    max_evals=budget["max_evals"])


def buildup_model(placement: Sequence[int], cfg: Mapping[str, Any], seed: int = 0, model: str = "alternet50"):
    """The zoo entry (``Trained``) of one build-up candidate, with the same budget as :func:`run_buildup`."""
    budget = _budget(cfg, "analysis_buildup")
    return trained(model, cfg, seed, model_cfg={"msa_per_stage": tuple(int(m) for m in placement)},
                   train_overrides=dict(budget["train_overrides"]))


def describe_buildup_budget(cfg: Mapping[str, Any], model: str = "alternet50") -> str:
    """In words: how much training each build-up candidate gets in this preset."""
    b = _budget(cfg, "analysis_buildup")
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
    part, words = difference_part(best - base, se, "best minus CNN baseline")
    holds, text = verdict_text([part], [f"best placement {tuple(trace.best_placement)} ({trace.stop_reason})", words])
    measured = {"baseline accuracy": base, "best accuracy": best, "MSAs accepted": float(sum(trace.best_placement)),
                "candidates evaluated": float(len(trace.metrics))}
    return Claim(paper="Replacing Convs at the end of stages with MSAs, one by one by the build-up rule, raises "
                 "CIFAR-100 accuracy from 82.5% (ResNet-50) to 84.0% (AlterNet-50) (Fig. 12a).",
                 measured=measured, holds=holds, verdict=text, preset=preset,
                 uncertainty={"baseline accuracy": binomial_se(base, n_test), "best accuracy": binomial_se(best, n_test)})


# --------------------------------------------------------------------------- Fig. 12b: robustness


def corruption_robustness_by_model(
    models: Mapping[str, Any], cfg: Mapping[str, Any], seed: int = 0, root: str | None = None
) -> dict[str, RobustnessCResult]:
    """Fig. 12b: ``corruption_robustness`` of every model (an ``nn.Module`` or a zoo ``Trained``)
    on the same corrupted test images (preset key ``analysis_corruptions``; ``root``: read the
    released CIFAR-100-C files)."""
    from hdvit_lib.data import mean_std

    b = _budget(cfg, "analysis_corruptions")
    names, severities = tuple(b["names"] or CORRUPTIONS), tuple(b["severities"] or SEVERITIES)
    x, y = corruption_images(cfg, b["n_images"], seed)
    norm = mean_std(cfg["dataset"])
    return {name: corruption_robustness(module_of(m), x, y, names=names, severities=severities,
                                        normalize=norm, seed=seed, device=cfg.get("device"), root=root,
                                        n=b["n_images"])
            for name, m in models.items()}


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
    holds_r, words = difference_part(rob[alternet] - other_r, se, "robustness lead over the best other model")
    holds, head = verdict([rank_a == 1, holds_r])
    measured = {f"{k} acc": acc[k] for k in acc} | {f"{k} robustness": rob[k] for k in rob}
    # binomial SEs: clean accuracy on n images; robustness on n x corruptions x severities (optimistic)
    uncertainty = ({f"{k} acc": binomial_se(acc[k], results[k].n_images) for k in acc}
                   | {f"{k} robustness": binomial_se(rob[k], results[k].n_images * len(results[k].names)
                                                     * len(results[k].severities)) for k in rob})
    return Claim(paper="AlterNet is both more accurate and more robust to corruptions than ResNet, ViT, PiT and Swin "
                 "(Fig. 12b, CIFAR-100-C).", measured=measured, holds=holds,
                 verdict=f"{head}: {alternet} ranks {rank_a} of {len(acc)} in clean accuracy and {rank_r} in "
                 f"robustness ({n} images); {words} (correlated corruptions: the SE is optimistic).", preset=preset,
                 uncertainty=uncertainty)


# --------------------------------------------------------------------------- Fig. 12c: Hessian


def hessian_spectra(trained: Mapping[str, Any], batches: Batches, cfg: Mapping[str, Any], seed: int = 0,
                    tag: int | str = "warmup") -> dict[str, HessianSpectrum]:
    """Fig. 12c: the spectrum of every zoo model (``Trained``) at snapshot ``tag`` (default the end
    of warm-up, as chapter 04 measures Fig. 4), with chapter 04's protocol
    (``hdvit_lib.analysis.spectra.hessian_spectrum``: top-``hessian_k`` eigenvalues per
    mini-batch by Lanczos, BatchNorm in eval mode, the landscape's loss NLL + ``weight_decay * sum_k ||w_k||``).
    The authors' checkpoints have no warm-up snapshot: for a ``tag`` other than ``final`` those
    models are trained here (``landscape.spectra_over_training``)."""
    from hdvit_lib.experiments.landscape import spectra_over_training

    return spectra_over_training(trained, batches, dict(cfg), (tag,), seed)[str(tag)]


def claim_hessian(spectra: Mapping[str, HessianSpectrum], alternet: str = "alternet50", cnn: str = "resnet50",
                  vit: str = "vit_ti", preset: str = "") -> Claim:
    """Fig. 12c: AlterNet's MSAs suppress the large Hessian eigenvalues of the CNN (smaller top
    eigenvalue than ResNet) and it has fewer negative eigenvalues than ViT (NEP, negative
    eigenvalue proportion, at most ViT's). The verdict reads the median over mini-batches of the
    largest eigenvalue; APE (average positive eigenvalue) is reported beside it."""
    s = {k: spectrum_summary(v) for k, v in spectra.items()}
    smaller = s[alternet]["median max eigenvalue"] < s[cnn]["median max eigenvalue"]
    # fewer negative eigenvalues than ViT: decided only beyond 2 SE (bootstrap over mini-batches)
    fewer_neg, nep_words = summary_less(s[alternet], s[vit], "NEP", f"NEP of {alternet} vs {vit}")
    measured = {f"{k} {q}": v[q] for q in ("median max eigenvalue", "APE", "NEP") for k, v in s.items()}
    n = spectra[alternet].eigenvalues.size
    top = {k: s[k]["median max eigenvalue"] for k in (alternet, cnn)}
    holds, head = verdict([bool(smaller), fewer_neg])
    words = (f"{head}: {alternet}'s median top eigenvalue is {'below' if smaller else 'above'} {cnn}'s "
             f"({top[alternet]:.3g} vs {top[cnn]:.3g}; APE {s[alternet]['APE']:.3g} vs {s[cnn]['APE']:.3g}); "
             f"{nep_words}; from {n} eigenvalues per model.")
    return Claim(paper="MSAs in AlterNet suppress the large Hessian eigenvalues of ResNet (a flatter loss) without "
                 "ViT's many negative eigenvalues (Fig. 12c).", measured=measured, holds=holds,
                 verdict=words, preset=preset, uncertainty={f"{k} NEP": v["NEP SE"] for k, v in s.items()})


# --------------------------------------------------------------------------- chapter 13: critical analysis


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


def claim_flattening(before: HessianSpectrum, after: HessianSpectrum, preset: str = "") -> Claim:
    """Q1: does the MSA added by one build-up step flatten the loss (smaller top eigenvalue)? The
    verdict reads the median over mini-batches of the largest eigenvalue; APE (average positive
    eigenvalue) and NEP (negative eigenvalue proportion) are reported beside it."""
    b, a = spectrum_summary(before), spectrum_summary(after)
    top = "median max eigenvalue"
    holds, head = verdict([bool(a[top] < b[top])])
    return Claim(paper="MSAs flatten the loss landscape: they suppress large Hessian eigenvalues (Sec. 2, Fig. 12c).",
                 measured={"top eigenvalue before": b[top], "top eigenvalue after": a[top],
                           "APE before": b["APE"], "APE after": a["APE"],
                           "NEP before": b["NEP"], "NEP after": a["NEP"]},
                 holds=holds, uncertainty={"NEP before": b["NEP SE"], "NEP after": a["NEP SE"]},
                 verdict=(f"{head}: adding the MSA ({before.model} -> {after.model}) "
                          f"{'lowered' if holds else 'did not lower'} "
                          f"the median top eigenvalue ({b[top]:.3g} -> {a[top]:.3g}; APE {b['APE']:.3g} -> "
                          f"{a['APE']:.3g}); the two models are trained "
                          f"separately, so this mixes the architecture with the run."), preset=preset)


def claim_small_data(result: DataFractionResult, alternet: str = "alternet50", cnn: str = "resnet50",
                     vit: str = "vit_ti", preset: str = "") -> Claim:
    """Q2: at the smallest training fraction, is AlterNet at least as accurate as the CNN and
    better than ViT? Differences within 2 SE (two independent accuracies) count as noise."""
    j = int(np.argmin(result.fractions))
    a = {m: float(result.accuracy[i, j]) for i, m in enumerate(result.models)}
    se = math.sqrt(2) * binomial_se(a[alternet], result.n_test)
    h_cnn, w_cnn = difference_part(a[alternet] - a[cnn], se, f"{alternet} - {cnn}")
    h_vit, w_vit = difference_part(a[alternet] - a[vit], se, f"{alternet} - {vit}")
    holds, text = verdict_text([h_cnn, h_vit], [f"at {result.fractions[j]:g} of the training set: {w_cnn}", w_vit])
    return Claim(paper="AlterNet outperforms CNNs not only in large data regimes but also in small data regimes "
                 "(abstract, Sec. 4).",
                 measured={f"{m} at fraction {result.fractions[j]:g}": v for m, v in a.items()}, holds=holds,
                 verdict=text, preset=preset,
                 uncertainty={f"{m} at fraction {result.fractions[j]:g}": binomial_se(v, result.n_test)
                              for m, v in a.items()})


def claim_local_global(result: DataFractionResult, local: str = "vit_local", glob: str = "vit_ti", preset: str = "") -> Claim:
    """Q3: local MSAs beat global ones on small data; does the gap shrink as data grows?"""
    i, g = result.models.index(local), result.models.index(glob)
    gaps = result.accuracy[i] - result.accuracy[g]
    se = math.sqrt(2) * binomial_se(float(result.accuracy[g, 0]), result.n_test)
    order = np.argsort(result.fractions)
    small, large = float(gaps[order[0]]), float(gaps[order[-1]])
    part, words = difference_part(small, se, f"{local} - {glob} at the smallest fraction")
    holds, head = verdict([part])
    trend = "shrinks" if large < small else "does not shrink"
    return Claim(paper="Locality constraints (local MSAs) help ViTs, above all on small data: data specificity, not "
                 "long-range dependency, is what MSAs need (Sec. 2).",
                 measured={f"gap at fraction {result.fractions[k]:g}": float(gaps[k]) for k in order}, holds=holds,
                 verdict=f"{head}: {words}; as data grows the gap {trend} ({small:+.3f} -> {large:+.3f}). Two fractions of a "
                         f"small synthetic set cannot say where (or whether) global attention overtakes local.",
                 preset=preset,
                 # a gap of two independent accuracies: sqrt(2) x the binomial SE of one (global's)
                 uncertainty={f"gap at fraction {result.fractions[k]:g}":
                              math.sqrt(2) * binomial_se(float(result.accuracy[g, k]), result.n_test) for k in order})


def claims_critical(step: Mapping[str, HessianSpectrum], data: DataFractionResult, local: DataFractionResult,
                    preset: str = "") -> list[Claim]:
    """The three questions of chapter 13: flattening by one MSA, small data, local vs global."""
    before, after = step.values()
    return [claim_flattening(before, after, preset), claim_small_data(data, preset=preset),
            claim_local_global(local, preset=preset)]
