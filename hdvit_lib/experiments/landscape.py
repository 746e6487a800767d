"""Orchestration of the loss-landscape chapters (Park & Kim 2022, Sec. 2).

- ``notebooks/01_loss_landscape``: Fig. 1: loss landscapes (the authors' and Li et al.'s direction scaling) of a ResNet and a ViT,
  their Hessian max-eigenvalue spectra at initialisation, end of warm-up and later, and the
  optimisation trajectories in polar coordinates (a panel of the first arXiv version only).
- ``notebooks/04_hessian_spectra``: Fig. 4: spectra at the end of warm-up of ResNet, ViT and a ViT
  trained on 6% of the data.
- ``notebooks/05_inductive_bias``: Figs. 5-7 and C.2: test error against training NLL across models,
  data fractions and patch sizes.
- ``notebooks/06_gap_classifier``: Fig. 6: spectra at the end of warm-up of a ViT with a class-token
  classifier and one with a global-average-pooling (GAP) classifier.
- ``notebooks/07_local_msa``: ViT with local MSA (window 3, 5, ... up to global attention).

One function per chapter step. Models come from the zoo cache (``load_or_train``), keyed by a *run*:
``{"model": name, "data_fraction": f, "model_cfg": {...}}`` (:func:`run_spec`). The Hessian and the
landscape use the training loss on fixed augmented training batches (as the paper), in eval mode
(BatchNorm running statistics, dropout off, fused attention off: ``analysis_mode``). Claim checks
classify models by their block kinds, never by name.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from torch import nn

from hdvit_lib.analysis.fit import FitResult, default_setting, spearman
from hdvit_lib.analysis.hessian import HessianSpectrum, spectrum_summary
from hdvit_lib.analysis.landscape import (
    Landscape,
    Trajectory,
    landscape_curvature,
    loss_landscape,
    trajectory,
)
from hdvit_lib.analysis.layout import conv_and_msa
from hdvit_lib.analysis.spectra import hessian_spectrum, spectra
from hdvit_lib.claims import (
    Claim,
    binomial_se,
    less_part,
    less_than,
    per_model,
    standard_errors,
    summary_less,
    verdict,
    verdict_text,
)
from hdvit_lib.data.batches import Batches, hessian_batches

# Chapters call ``ex.train_runs`` / ``ex.train_models`` (re-exported: the chapter group's training step).
from hdvit_lib.experiments.common import (  # noqa: F401
    run_spec,
    train_models,
    train_runs,
    with_snapshots,
)
from hdvit_lib.train.cache import model_at, module_of

#: Fig. 1 and Fig. 4 compare these two.
MODELS = ("resnet50", "vit_ti")
#: Figs. 5-7: the model families.
FAMILY_MODELS = ("resnet50", "vit_ti", "pit_ti", "swin_ti", "alternet50")
#: Snapshots whose spectra Fig. 1b shows.
SNAPSHOT_TAGS = ("init", "warmup", "final")
#: Fig. 6: the ViT's classifiers (``global_pool`` setting) and their names.
CLASSIFIERS = {"token": "CLS token", "avg": "GAP"}
#: Patch sizes (dividing 32) and windows the live controls offer.
LIVE_PATCH_SIZES = (1, 2, 4, 8, 16)
LIVE_WINDOWS = (1, 3, 5, 7)


def sweep(cfg: dict[str, Any], what: str, given: Sequence | None = None) -> list:
    """``given`` if not None, else the preset's default for ``what`` (preset key ``analysis_sweeps``)."""
    if given is not None:
        return list(given)
    table = cfg["analysis_sweeps"]
    if what not in table:
        raise ValueError(f"sweep {what!r} is unknown; choose one of {', '.join(table)}")
    return list(table[what])


# --------------------------------------------------------------------------- runs (models)


def fraction_runs(models: Sequence[str], fractions: Sequence[float]) -> dict[str, dict[str, Any]]:
    """Runs of every model on every data fraction, labelled ``"vit_ti"`` (100%) or ``"vit_ti (6%)"``."""
    out = {}
    for m in models:
        for f in fractions:
            out[m if f == 1.0 else f"{m} ({f:.0%})"] = run_spec(m, f)
    return out


def patch_runs(model: str, patch_sizes: Sequence[int]) -> dict[str, dict[str, Any]]:
    """Runs of ``model`` with each patch size, labelled ``"vit_ti p4"``."""
    return {f"{model} p{p}": run_spec(model, patch_size=int(p)) for p in patch_sizes}


def inductive_bias_runs(models: Sequence[str], fraction_models: Sequence[str], fractions: Sequence[float],
                        patch_model: str, patch_sizes: Sequence[int],
                        cfg: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], dict[int, str]]:
    """The runs of chapter 05 (Figs. 5-7, C.2), each configuration once: every model of ``models`` on
    all data; ``fraction_models`` on every fraction; ``patch_model`` with every patch size (its default
    patch size is the plain ``patch_model`` run, shared with other chapters' cache).
    Returns ``(runs, {patch size: label of its run})``."""
    runs = {**fraction_runs(models, [1.0]), **fraction_runs(fraction_models, fractions)}
    default = default_setting(patch_model, "patch_size", cfg)
    by_patch = {}
    for p in patch_sizes:
        label = patch_model if int(p) == default else f"{patch_model} p{int(p)}"
        runs.setdefault(label, run_spec(patch_model) if int(p) == default else run_spec(patch_model, patch_size=int(p)))
        by_patch[int(p)] = label
    return runs, by_patch


def window_runs(windows: Sequence[int], local_model: str = "vit_local",
                global_model: str = "vit_ti") -> dict[str, dict[str, Any]]:
    """ViT with local MSA for each window (``"window 3"``, ...), then global MSA (``"global"``,
    which is ``global_model``, the same ViT without the mask: shared with other chapters' cache)."""
    out = {f"window {int(k)}": run_spec(local_model, window=int(k)) for k in windows}
    out["global"] = run_spec(global_model)
    return out


def classifier_runs(model: str = "vit_ti", pools: Sequence[str] = tuple(CLASSIFIERS)) -> dict[str, dict[str, Any]]:
    """Fig. 6: ``model`` with each classifier of ``pools`` (its ``global_pool`` setting), same budget,
    labelled ``"vit_ti (CLS token)"``, ``"vit_ti (GAP)"``. The class-token run is the plain ``model``
    run (the default setting spelled out: one cache entry, shared with other chapters)."""
    unknown = [p for p in pools if p not in CLASSIFIERS]
    if unknown:
        raise ValueError(f"unknown classifier(s) {unknown}; choose from {', '.join(map(repr, CLASSIFIERS))}")
    return {f"{model} ({CLASSIFIERS[p]})": run_spec(model, global_pool=p) for p in pools}


# --------------------------------------------------------------------------- data


# --------------------------------------------------------------------------- Hessian spectra


def spectra_over_training(trained: Mapping[str, Any], batches: Batches | Mapping[str, Batches],
                          cfg: dict[str, Any], tags: Sequence[int | str] = SNAPSHOT_TAGS,
                          seed: int = 0) -> dict[str, dict[str, HessianSpectrum]]:
    """Fig. 1b: ``{tag: {label: spectrum}}`` of every run's snapshot at each of ``tags``. The authors'
    checkpoints (final weights only) are replaced by the same models trained here when a tag other
    than ``"final"`` is asked (:func:`~hdvit_lib.experiments.common.with_snapshots`, which says so)."""
    if any(str(tag) != "final" for tag in tags):
        trained = with_snapshots(trained, cfg, seed)
    out: dict[str, dict[str, HessianSpectrum]] = {}
    for tag in tags:
        models = {label: model_at(t, tag) for label, t in trained.items()}
        out[str(tag)] = spectra(models, batches, cfg, seed)
    return out


def sweep_spectra(trained: Mapping[str, Any], labels: Mapping[Any, str], batches: Batches, cfg: dict[str, Any],
                  seed: int = 0) -> dict[Any, HessianSpectrum]:
    """``{value: spectrum}`` of the final weights of the run ``labels[value]`` for each swept value
    (patch size, window): what ``plot_spectrum_sweep``'s slider steps through."""
    return {v: hessian_spectrum(trained[label].model, batches, cfg, seed, name=label) for v, label in labels.items()}


def own_data_spectra(trained: Mapping[str, Any], cfg: dict[str, Any], tag: int | str = "warmup",
                     seed: int = 0) -> dict[str, HessianSpectrum]:
    """Fig. 4: the spectrum of every run at snapshot ``tag`` (default: end of warm-up), each on fixed
    augmented mini-batches of its *own* training set (its data fraction: the loss it was trained on).
    The authors' checkpoints (final weights only) are replaced by the same models trained here for
    any other ``tag`` (:func:`spectra_over_training`)."""
    batches = {label: hessian_batches(cfg, seed, data_fraction=float(t.config.get("data_fraction", 1.0)))
               for label, t in trained.items()}
    return spectra_over_training(trained, batches, cfg, (tag,), seed)[str(tag)]


# --------------------------------------------------------------------------- landscapes


def landscapes(models: Mapping[str, nn.Module], batches: Batches, cfg: dict[str, Any], seed: int = 0,
               span: float = 1.0, norm: str = "official") -> dict[str, Landscape]:
    """Fig. 1a: ``loss_landscape`` of every model on a ``landscape_points``^2 grid over
    ``[-span, span]^2`` (directions normalised by ``norm``: the authors' dim-0 norms, or Li et al.'s
    ``"filter"``; NLL + weight_decay * sum of L2 norms)."""
    return {label: loss_landscape(m, batches, n_points=int(cfg["landscape_points"]), span=span, seed=seed,
                                  weight_decay=float(cfg["weight_decay"]), norm=norm, name=label, progress=False,
                                  amp=bool(cfg.get("landscape_amp", False)))
            for label, m in models.items()}


# --------------------------------------------------------------------------- trajectories


def trajectories(trained: Mapping[str, Any], cfg: dict[str, Any] | None = None, seed: int = 0) -> dict[str, Trajectory]:
    """The optimisation path of every run in polar coordinates, from its snapshots (first arXiv
    version of Fig. 1, absent from later versions; shown as a caveated extra). The authors'
    checkpoints have no snapshots: with the preset ``cfg`` they are replaced by the same models
    trained here (:func:`~hdvit_lib.experiments.common.with_snapshots`); without it they raise."""
    official = [label for label, t in trained.items() if getattr(t, "official", False)]
    if official and cfg is None:
        raise ValueError(f"{', '.join(official)}: the authors' checkpoints hold no snapshots, so they have no "
                         "trajectory; pass the preset (trajectories(trained, cfg)) to train them here")
    if official:
        trained = with_snapshots(trained, cfg, seed)
    out = {}
    for label, t in trained.items():
        epochs = t.snapshots()
        out[label] = trajectory([t.snapshot(e) for e in epochs], t.snapshot("final"))
    return out


# --------------------------------------------------------------------------- claim checks


def pick_conv_msa(trained: Mapping[str, Any]) -> tuple[str, str]:
    """The labels of the first Conv model (conv blocks, no MSA) and the first MSA model
    (:func:`~hdvit_lib.analysis.layout.conv_and_msa` of their blocks' kinds)."""
    conv, msa = conv_and_msa({k: {b.kind for b in module_of(t).blocks()} for k, t in trained.items()})
    if conv is None or msa is None:
        raise ValueError(f"need a Conv model and an MSA model; got {list(trained)}")
    return conv, msa


def claim_landscape(lands: Mapping[str, Landscape], per_tag: Mapping[str, Mapping[str, HessianSpectrum]],
                    conv: str, msa: str, preset: str = "") -> Claim:
    """Fig. 1's claim: MSAs flatten the loss landscape (the ViT's surface is less curved and its
    Hessian eigenvalues are smaller than the ResNet's) while making it non-convex (the ViT has
    negative Hessian eigenvalues, the ResNet few), most of all early in training.

    Measured: ``landscape_curvature`` of both surfaces near the centre (final weights); at the last
    snapshot the APE (average positive eigenvalue) and the median largest Hessian eigenvalue; the
    NEP (negative eigenvalue proportion) at every snapshot (``spectrum_summary``). Holds when (a)
    curvature, (b) the median largest eigenvalue (the verdict reads the median; APE is reported
    beside it) are lower for the MSA model and (c) its NEP at the end of warm-up (or the first
    snapshot present) exceeds the Conv model's."""
    paper = ("MSAs flatten the loss landscape: ViT's landscape is flatter than ResNet's (small Hessian "
             "eigenvalues), but non-convex (negative Hessian eigenvalues), especially early in training; "
             "Sec. 2, Fig. 1.")
    measured: dict[str, float] = {}
    curv = {k: landscape_curvature(lands[k]) for k in (conv, msa)}
    for k in (conv, msa):
        measured[f"{k}: landscape curvature"] = curv[k]
    tags = list(per_tag)
    summ = {tag: {k: spectrum_summary(per_tag[tag][k]) for k in (conv, msa)} for tag in tags}
    last = tags[-1]
    at_tag = {f"{k} @ {tag}": summ[tag][k] for tag in tags for k in (conv, msa)}
    measured |= per_model(at_tag, ("NEP",))
    measured |= per_model({f"{k} @ {last}": summ[last][k] for k in (conv, msa)}, ("APE", "median max eigenvalue"))
    early = "warmup" if "warmup" in summ else tags[0]
    a = less_than(curv[msa], curv[conv])
    b = less_than(summ[last][msa]["median max eigenvalue"], summ[last][conv]["median max eigenvalue"])
    c, _ = summary_less(summ[early][conv], summ[early][msa], "NEP")
    sm, sc = summ[last][msa], summ[last][conv]
    words = [
        f"(a) {msa}'s surface is {'less' if a else 'more'} curved than {conv}'s ({curv[msa]:.3g} vs {curv[conv]:.3g})"
        if a is not None else "(a) undecided",
        f"(b) its median largest Hessian eigenvalue at {last} is {'smaller' if b else 'larger'} "
        f"({sm['median max eigenvalue']:.3g} vs {sc['median max eigenvalue']:.3g}; APE {sm['APE']:.3g} vs "
        f"{sc['APE']:.3g})" if b is not None else "(b) undecided",
        f"(c) at {early} NEP is {summ[early][msa]['NEP']:.0%} for {msa}, "
        f"{summ[early][conv]['NEP']:.0%} for {conv}" if c is not None else
        f"(c) undecided at this power: NEP at {early} {summ[early][msa]['NEP']:.0%} ({msa}) vs "
        f"{summ[early][conv]['NEP']:.0%} ({conv}), within 2 SE (bootstrap over mini-batches)",
    ]
    holds, text = verdict_text([a, b, c], words)
    return Claim(paper, measured, holds, text, preset, uncertainty=standard_errors(at_tag, "NEP"))


def claim_negative_eigenvalues(specs: Mapping[str, HessianSpectrum], conv: str, msa: str, msa_small: str,
                               preset: str = "") -> Claim:
    """Fig. 4's claims, at the end of warm-up: (a) the ViT has more negative Hessian eigenvalues than
    the ResNet (a larger NEP, negative eigenvalue proportion); (b) its positive eigenvalues are
    smaller; (c) a ViT trained on 6% of the data has more negative eigenvalues (a larger NEP, larger
    magnitude) than one trained on all of it: large data sets suppress negative eigenvalues. Holds
    when all three do. (b) reads the median positive eigenvalue (robust to a few outlying Ritz
    values); the paper's APE, their mean, is reported beside it."""
    paper = ("At the end of warm-up ViT has many negative Hessian eigenvalues, ResNet only a few; ViT's positive "
             "eigenvalues are small; a ViT trained on 6% of the data has more and larger negative eigenvalues: "
             "large data sets suppress them; Sec. 2, Fig. 4.")
    s = {k: spectrum_summary(specs[k]) for k in (conv, msa, msa_small)}
    measured = per_model(s, ("NEP", "APE", "median |negative|", "median positive"))
    a, _ = summary_less(s[conv], s[msa], "NEP")
    b = less_than(s[msa]["median positive"], s[conv]["median positive"])
    share, _ = summary_less(s[msa], s[msa_small], "NEP")
    mag = less_than(s[msa]["median |negative|"], s[msa_small]["median |negative|"])
    c = None if share is None else bool(share and mag is not False)  # NEP decides; magnitude if measured
    holds, head = verdict([a, b, c])
    words = [
        f"(a) NEP {s[msa]['NEP']:.0%} ({msa}) vs {s[conv]['NEP']:.0%} ({conv})",
        (f"(b) median positive eigenvalue {s[msa]['median positive']:.3g} ({msa}) vs "
         f"{s[conv]['median positive']:.3g} ({conv}); APE {s[msa]['APE']:.3g} vs {s[conv]['APE']:.3g}"),
        (f"(c) {msa_small}: NEP {s[msa_small]['NEP']:.0%}, median |negative| "
         f"{s[msa_small]['median |negative|']:.3g} vs {s[msa]['NEP']:.0%}, "
         f"{s[msa]['median |negative|']:.3g} for {msa}"),
    ]
    text = f"{head}: " + "; ".join(words) + (
        ". (Each part: " + ", ".join(f"({p}) {'yes' if f else 'no' if f is False else 'n/a'}"
                                    for p, f in zip("abc", (a, b, c))) + "; n/a: not measured or NEPs within 2 SE, "
        "bootstrap over mini-batches.)")
    return Claim(paper, measured, holds, text, preset, uncertainty=standard_errors(s, "NEP"))


def _or_none(x: float) -> str:
    return "none (no negative eigenvalue)" if math.isnan(x) else f"{x:.3g}"


def claim_gap_classifier(specs: Mapping[str, HessianSpectrum], cls: str, gap: str, preset: str = "") -> Claim:
    """Fig. 6's claim: a global-average-pooling (GAP) classifier instead of the class token
    suppresses ViT's negative Hessian max eigenvalues at the end of warm-up: loss landscape
    smoothing methods aid ViT training.

    Measured for both runs (``spectrum_summary``): NEP (negative eigenvalue proportion), APE
    (average positive eigenvalue), median magnitude of the negative eigenvalues. Holds when the
    GAP run's NEP is lower than the class-token run's (the verdict reads NEP only; APE and the
    magnitude are reported as context); undecided if either NEP is NaN."""
    paper = ("A GAP classifier suppresses the negative Hessian max eigenvalues of ViT (fewer negative "
             "eigenvalues than with a CLS token, at the end of warm-up): loss landscape smoothing methods "
             "aid ViT training; Sec. 2, Fig. 6.")
    s = {k: spectrum_summary(specs[k]) for k in (cls, gap)}
    measured = per_model(s, ("NEP", "APE", "median |negative|"))
    se = standard_errors(s, "NEP")
    if less_than(s[gap]["NEP"], s[cls]["NEP"]) is None:
        return Claim(paper, measured, None, "undecided in this run: a spectrum has no finite eigenvalues.", preset,
                     uncertainty=se)
    lower, nep_words = summary_less(s[gap], s[cls], "NEP", f"NEP with {gap} vs {cls}")
    holds, text = verdict_text([lower], [
        nep_words, f"APE {s[gap]['APE']:.3g} vs {s[cls]['APE']:.3g}",
        f"median |negative| {_or_none(s[gap]['median |negative|'])} vs {_or_none(s[cls]['median |negative|'])}",
        f"from {np.asarray(specs[gap].eigenvalues).size} eigenvalues per model"])
    return Claim(paper, measured, holds, text, preset, uncertainty=se)


def claim_error_vs_nll(fit: FitResult, preset: str = "", strong: float = 0.5) -> Claim:
    """Figs. 5-7's claim: across models and data sizes, the lower the training NLL, the lower the test
    error; ViT's weakness on small data is poor optimisation (high training NLL), not overfitting.

    Measured: Spearman's rho between training NLL and test error over all runs, and, for each model
    trained on several data fractions, whether the smallest fraction has the higher training NLL (no
    overfitting: a model that overfits would fit its small set *better*). Holds when rho > ``strong``
    beyond 2 SE (Fieller's SE of Spearman's rho) and no MSA model has a lower training NLL on its
    smallest data fraction than on its largest."""
    paper = ("The lower the training NLL, the lower the test error, across models and data set sizes: ViT does "
             "not overfit small data sets, it fits them poorly (weak inductive bias, hard optimisation); "
             "Sec. 2, Figs. 5-7.")
    rho = spearman(fit.nll_train, fit.error_test)
    measured: dict[str, float] = {"Spearman rho (NLL_train, error)": rho, "runs": float(len(fit.labels))}
    no_overfit: list[bool] = []
    groups = [(m, str(p), str(w)) for m, p, w in zip(fit.models, fit.patch_size.tolist(), fit.window.tolist())]
    for key in dict.fromkeys(groups):
        m = key[0]
        idx = [i for i, g in enumerate(groups) if g == key]
        fr = fit.data_fraction[idx]
        if len(set(fr.tolist())) < 2:
            continue
        lo, hi = idx[int(np.argmin(fr))], idx[int(np.argmax(fr))]
        measured[f"{m}: NLL_train at {fit.data_fraction[lo]:.0%} data"] = float(fit.nll_train[lo])
        measured[f"{m}: NLL_train at {fit.data_fraction[hi]:.0%} data"] = float(fit.nll_train[hi])
        if fit.has_msa[lo]:
            no_overfit.append(bool(fit.nll_train[lo] >= fit.nll_train[hi]))
    n = len(fit.labels)
    # SE of Spearman's rho (Fieller et al. 1957: var of Fisher's z = 1.06 / (n - 3)), mapped back to rho
    rho_se = (1 - rho ** 2) * math.sqrt(1.06 / (n - 3)) if n > 3 and not math.isnan(rho) else float("nan")
    a = None if math.isnan(rho_se) or abs(rho - strong) <= 2 * rho_se else rho > strong
    b = all(no_overfit) if no_overfit else None
    if a is not None:
        words = [(f"Spearman's rho between training NLL and test error over {n} runs is {rho:.2f} ± {rho_se:.2f} "
                  f"({'above' if a else 'below'} {strong} beyond 2 SE)")]
    elif math.isnan(rho_se):
        words = [f"rho undecided ({n} runs: too few)"]
    else:
        words = [f"rho {rho:.2f} ± {rho_se:.2f} over {n} runs, within 2 SE of {strong}: undecided at this power"]
    if b is not None:
        words.append(f"{'every' if b else 'not every'} MSA model had a higher (or equal) training NLL on its smallest "
                     "data fraction (no overfitting)")
    holds, text = verdict_text([a, b], words)
    return Claim(paper, measured, holds, text, preset, uncertainty={"Spearman rho (NLL_train, error)": rho_se})


def claim_local_msa(fit: FitResult, specs: Mapping[str, HessianSpectrum], global_label: str = "global",
                    preset: str = "") -> Claim:
    """The local-MSA claim: a locality constraint helps ViT: local MSAs (small windows) reach a
    lower training NLL and test error than global MSA, and suppress negative Hessian eigenvalues.

    Measured for each window: test error, training NLL, NEP (negative eigenvalue proportion). Holds
    when the best local window beats global attention in error (beyond 2 binomial SEs) and in
    training NLL, and the local windows have a lower NEP on average (beyond 2 SE; bootstrap over
    mini-batches)."""
    paper = ("A locality constraint improves ViT: MSAs with a small local window reach a lower training NLL and "
             "test error than global MSAs, and have fewer negative Hessian eigenvalues; Sec. 2, Fig. 7.")
    if global_label not in fit.labels:
        raise ValueError(f"global_label={global_label!r} is not among the runs {fit.labels}")
    summ = {label: spectrum_summary(specs[label]) for label in fit.labels if label in specs}
    nep = {label: s["NEP"] for label, s in summ.items()}
    measured: dict[str, float] = {}
    se: dict[str, float] = {}  # binomial SE of an error on the run's images; bootstrap SE of NEP
    for i, label in enumerate(fit.labels):
        measured[f"{label}: error"] = float(fit.error_test[i])
        se[f"{label}: error"] = binomial_se(float(fit.error_test[i]), fit.n_images)
        measured[f"{label}: NLL_train"] = float(fit.nll_train[i])
        if label in nep:
            measured[f"{label}: NEP"] = nep[label]
            se[f"{label}: NEP"] = summ[label]["NEP SE"]
    g = fit.labels.index(global_label)
    local = [i for i in range(len(fit.labels)) if i != g]
    if not local:
        raise ValueError("claim_local_msa needs at least one local window besides global attention")
    best = min(local, key=lambda i: fit.error_test[i])
    lab = fit.labels
    a, _ = less_part(fit.error_test[best], se[f"{lab[best]}: error"], fit.error_test[g], se[f"{lab[g]}: error"], "")
    b = less_than(min(fit.nll_train[i] for i in local), fit.nll_train[g])
    neg_local = [nep[lab[i]] for i in local if lab[i] in nep]
    neg_g = nep.get(global_label, float("nan"))
    # the local windows' mean NEP: SE of a mean of independent NEPs, sqrt(sum se^2) / k
    se_local = math.sqrt(sum(se[f"{lab[i]}: NEP"] ** 2 for i in local if lab[i] in nep)) / max(len(neg_local), 1)
    c, _ = less_part(float(np.mean(neg_local)) if neg_local else float("nan"), se_local,
                     neg_g, se.get(f"{global_label}: NEP", float("nan")), "")
    noise = {None: " (within 2 SE: undecided at this power)"}
    words = [
        (f"the best local window ({fit.labels[best]}) has test error {fit.error_test[best]:.1%} vs "
         f"{fit.error_test[g]:.1%} for global attention{noise.get(a, '')}"),
        f"lowest local training NLL {min(fit.nll_train[i] for i in local):.3f} vs {fit.nll_train[g]:.3f}",
        (f"mean NEP of the local windows {np.mean(neg_local) if neg_local else float('nan'):.0%} "
         f"vs {neg_g:.0%} for global attention{noise.get(c, '')}"),
    ]
    holds, text = verdict_text([a, b, c], words)
    return Claim(paper, measured, holds, text, preset, uncertainty=se)


def sweep_spectrum(value: Any, *, cfg: dict[str, Any], model: str, setting: str, batches: Batches,
                   seed: int = 0, tag: int | str = "final") -> dict[str, HessianSpectrum]:
    """Train (or load) ``model`` with ``{setting: value}``: ``{label: its Hessian spectrum}`` at
    snapshot ``tag`` (default: final weights); the ``compute`` of the live controls of chapters 05,
    06 and 07 (``hdvit_lib.widgets.live_sweep_control``)."""
    t = train_runs({f"{model} {setting}={value}": run_spec(model, **{setting: value})}, cfg, seed)
    label, tr = next(iter(t.items()))
    m = tr.model if tag == "final" else model_at(tr, tag)
    return {label: hessian_spectrum(m, batches, cfg, seed, name=label)}
