"""Orchestration of the representation chapters (Park & Kim 2022, Secs. 3 and 4).

- ``notebooks/02_fourier``: Fig. 2a (relative log amplitude per block) and Fig. 2b (robustness
  to frequency-band noise) for a ResNet and a ViT.
- ``notebooks/08_high_frequency``: Fig. 8 (high-frequency amplitude against depth).
  Figs. 2a and 8 analyse timm's ImageNet-1K ResNet-50 and ViT-Ti on Imagenette images with the
  ``gpu``/``paper`` presets (``fourier_features``; ``hdvit_lib.imagenet``), as the paper does; the
  CIFAR-style models are the offline fallback. Fig. 2b stays on the CIFAR-style models.
- ``notebooks/09_feature_map_variance``: Fig. 9 and App. D (feature map variance against depth).
- ``notebooks/10_similarity_and_lesion``: Fig. 10 (CKA heat maps and the lesion study).

One function per chapter step. The models come from the zoo cache (``load_or_train``), the
images from the preset's test split, and every per-block analysis starts from one feature
extraction per model (``extract_features``; cached in memory and, for the ``smoke``/``cpu``
presets, on disk next to the model cache), so the Fourier, variance and CKA steps -- and the
chapters -- share one forward pass. Claim checks classify models by their block kinds
(``msa``, ``conv``), never by name.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from hdvit_lib.analysis.cka import CKAResult, cka_matrix, stage_similarity
from hdvit_lib.analysis.features import Features, extract_features, features_cache_dir
from hdvit_lib.analysis.fourier import FourierResult, fourier_analysis
from hdvit_lib.analysis.layout import conv_and_msa
from hdvit_lib.analysis.lesion import LesionResult, end_of_stage_lesion, lesion_study
from hdvit_lib.analysis.robustness import (
    DEFAULT_F_CENTERS,
    RobustnessResult,
    band_means,
    frequency_robustness,
    matched_rms,
)
from hdvit_lib.analysis.variance import (
    VarianceResult,
    feature_map_variance,
    pooled_fraction,
)
from hdvit_lib.claims import (
    Claim,
    binomial_se,
    difference_part,
    less_part,
    majority_part,
    proportion_se,
    verdict,
    verdict_text,
)
from hdvit_lib.data.batches import Batches, image_size

# Chapters call ``rep.train_models`` (re-exported: the zoo entries, ``Trained``, as in every chapter group).
from hdvit_lib.experiments.common import train_models  # noqa: F401
from hdvit_lib.presets import FAMILIES, PAPER_SCALE
from hdvit_lib.train.cache import module_of

#: The paper's models for these figures (Figs. 2, 8, 9: ResNet and ViT; App. D adds PiT, Swin, AlterNet).
MODELS = FAMILIES
#: Presets whose chapters 02 and 08 analyse timm's ImageNet-1K models (they download once).
IMAGENET_PRESETS = ("gpu", "paper")
#: Where Figs. 2a and 8 take their models from (``fourier_features``).
SOURCES = ("auto", "imagenet", "cifar")


# --------------------------------------------------------------------------- models and data


def chapter_models(chapter: str, cfg: dict[str, Any], models: Sequence[str] | str | None = None) -> list[str]:
    """The models a chapter runs: ``models`` if given, else the chapter's choice for the preset
    (preset key ``analysis_models``)."""
    if models is not None:
        return [models] if isinstance(models, str) else list(models)
    table = cfg["analysis_models"]
    if chapter not in table:
        raise ValueError(f"chapter={chapter!r} is unknown; choose one of {', '.join(table)}")
    return list(table[chapter])


def features_by_model(
    models: Mapping[str, Any], batches: Iterable | torch.Tensor, cfg: dict[str, Any]
) -> dict[str, Features]:
    """One eval-mode pass per model keeping every block's output (``extract_features``), shared
    by the Fourier, variance and CKA steps. Outputs are kept as float16 for ``paper`` (memory),
    float32 otherwise."""
    dtype = torch.float16 if cfg["name"] in PAPER_SCALE else torch.float32
    return {
        name: extract_features(module_of(m), batches, device=cfg.get("device"), cache_dir=features_cache_dir(cfg), dtype=dtype)
        for name, m in models.items()
    }


def fourier_features(
    trained: Mapping[str, Any], batches: Batches, cfg: dict[str, Any], source: str = "auto", seed: int = 0
) -> dict[str, Features]:
    """Figs. 2a and 8's feature maps, printing which models and images they come from.

    ``source="imagenet"`` (``"auto"``: with the ``gpu``/``paper`` presets) analyses timm's ImageNet-1K
    ResNet-50 and ViT-Ti (``resnet50_in1k``, ``vit_ti_in1k``; ``imagenet.imagenet_model``) on
    ``cfg["analysis_images"]`` Imagenette validation images, as the paper does; they replace the
    chapter's CIFAR-style models of the same families, and the other families stay as trained here
    (on ``batches``). ``"cifar"`` (``"auto"``: ``smoke``/``cpu``, which run offline) or a failed
    download: the CIFAR-style ``trained`` models on ``batches``, with the reason printed."""
    from hdvit_lib import imagenet

    if source not in SOURCES:
        raise ValueError(f"source={source!r} is unknown; choose one of {', '.join(SOURCES)}")
    cifar = (f"the CIFAR-style models trained here ({', '.join(trained)}) on {sum(len(y) for _, y in batches)} "
             f"test images of the preset's data set ({cfg['dataset']})")
    if source == "cifar" or (source == "auto" and cfg["name"] not in IMAGENET_PRESETS):
        why = "source='cifar'" if source == "cifar" else f"the {cfg['name']} preset runs offline"
        print(f"Analysed: {cifar} ({why}; the paper's ImageNet-1K models need source='imagenet' "
              "or the gpu/paper presets).")
        return features_by_model(trained, batches, cfg)
    try:
        models = {name + imagenet.SUFFIX: imagenet.imagenet_model(name) for name in imagenet.TIMM_NAMES}
        images = imagenet.imagenette_batches(int(cfg["analysis_images"]), seed=seed)
    except imagenet.UNAVAILABLE as e:
        print(f"Analysed: {cifar}, not the paper's ImageNet-1K models: they are unavailable here "
              f"({type(e).__name__}: {e})")
        return features_by_model(trained, batches, cfg)
    rest = {n: m for n, m in trained.items() if n.removesuffix("_tiny") not in imagenet.TIMM_NAMES}
    n = sum(len(y) for _, y in images)
    print(f"Analysed: {', '.join(models)}: timm's ImageNet-1K weights ({', '.join(imagenet.TIMM_NAMES.values())}), "
          f"as in the paper, on {n} Imagenette validation images (224x224, ImageNet mean/std)"
          + (f"; {', '.join(rest)}: the CIFAR-style models trained here, on the preset's test images." if rest else "."))
    return {**features_by_model(models, images, cfg), **features_by_model(rest, batches, cfg)}


# --------------------------------------------------------------------------- analyses per model


def variance_by_model(features: Mapping[str, Features]) -> dict[str, VarianceResult]:
    """Fig. 9: ``feature_map_variance`` of every model."""
    return {name: feature_map_variance(f, model_name=name) for name, f in features.items()}


def fourier_by_model(features: Mapping[str, Features]) -> dict[str, FourierResult]:
    """Figs. 2a and 8: ``fourier_analysis`` (relative log amplitude per block) of every model."""
    return {name: fourier_analysis(f, model_name=name) for name, f in features.items()}


def frequency_robustness_by_model(
    models: Mapping[str, Any],
    batches: Iterable | torch.Tensor,
    cfg: dict[str, Any],
    magnitude: float | None = None,
    seed: int = 0,
    construction: str = "authors",
) -> dict[str, RobustnessResult]:
    """Fig. 2b: ``frequency_robustness`` of every model (same noise for every model: same seed).

    ``magnitude``: eps of the authors' sign noise (``None``: the preset's ``analysis_noise_eps``).
    ``construction="authors"`` (default): FreqAttack's band-filtered +-eps noise, whose power grows
    with the band's area. ``"equal_power"``: Gaussian band noise with the same RMS in every band,
    that RMS being ``matched_rms`` -- the power mean of the authors' noise RMS over the bands --
    so that both constructions add the same noise energy over the sweep."""
    if magnitude is None:
        magnitude = float(cfg["analysis_noise_eps"])
    if construction == "equal_power":
        magnitude = matched_rms(image_size(batches), DEFAULT_F_CENTERS, 0.1, magnitude)
    return {
        name: frequency_robustness(module_of(m), batches, magnitude=magnitude, seed=seed, device=cfg.get("device"),
                                   model_name=name, construction=construction)
        for name, m in models.items()
    }


def cka_by_model(features: Mapping[str, Features], batch_size: int = 64) -> dict[str, CKAResult]:
    """Fig. 10a: minibatch linear CKA (unbiased HSIC) between every pair of blocks, per model."""
    return {name: cka_matrix(f, batch_size=batch_size, model_name=name) for name, f in features.items()}


def lesion_by_model(
    models: Mapping[str, Any], batches: Iterable | torch.Tensor, cfg: dict[str, Any], mode: str = "paper"
) -> dict[str, LesionResult]:
    """Fig. 10b: ``lesion_study`` of every model, one block at a time: ``mode="paper"`` removes one
    3x3 conv of a conv block (strided ones skipped) or a whole MSA/MLP block, ``mode="branch"``
    every residual block's whole branch."""
    return {name: lesion_study(module_of(m), batches, device=cfg.get("device"), model_name=name, mode=mode)
            for name, m in models.items()}


# --------------------------------------------------------------------------- summaries


def has_msa(kinds: Sequence[str]) -> bool:
    """True for models with at least one MSA block."""
    return "msa" in kinds


def _kind_deltas(results: Mapping[str, Any], delta: str, kinds: Sequence[str]) -> list[np.ndarray]:
    return [np.asarray(getattr(r, delta), dtype=float)[np.isin(r.kinds, list(kinds))] for r in results.values()]


def _block_claim(
    results: Mapping[str, Any], delta: str, quantity: str, paper: str, preset: str, msa_key: str, cm_key: str
) -> Claim:
    """Shared verdict of Figs. 8 and 9: do MSA blocks lower ``quantity`` and Conv/MLP blocks raise it?
    Each part is the pooled fraction of blocks, decided only beyond 2 binomial SE of one half
    (:func:`hdvit_lib.claims.majority_part`); the SE of every fraction is reported."""
    measured: dict[str, float] = {}
    se: dict[str, float] = {}
    for name, r in results.items():
        kinds = np.asarray(r.kinds)
        if has_msa(r.kinds):
            k = f"{name}: MSA lowered"
            measured[k] = getattr(r, msa_key)
            se[k] = proportion_se(measured[k], int(np.sum(~np.isnan(np.asarray(getattr(r, delta))[kinds == "msa"]))))
        k = f"{name}: Conv/MLP raised"
        measured[k] = getattr(r, cm_key)
        n_cm = int(np.sum(~np.isnan(np.asarray(getattr(r, delta))[np.isin(kinds, ["conv", "mlp"])])))
        se[k] = proportion_se(measured[k], n_cm)
    msa, n_msa = pooled_fraction(_kind_deltas(results, delta, ["msa"]), "lower")
    cm, n_cm = pooled_fraction(_kind_deltas(results, delta, ["conv", "mlp"]), "raise")
    measured["all models: MSA lowered"] = msa
    measured["all models: Conv/MLP raised"] = cm
    se["all models: MSA lowered"], se["all models: Conv/MLP raised"] = proportion_se(msa, n_msa), proportion_se(cm, n_cm)
    if n_msa == 0 and n_cm == 0:
        return Claim(paper, measured, None, f"undecided: no block changed the {quantity} measurably", preset,
                     uncertainty=se)
    a, words_a = majority_part(msa, n_msa, f"MSA blocks that lowered the {quantity}")
    b, words_b = majority_part(cm, n_cm, "Conv/MLP blocks that raised it")
    holds, head = verdict([a, b])
    return Claim(paper, measured, holds, f"{head}: {words_a}; {words_b}. (Fractions of blocks; a block "
                 "'lowered' it when its output has less than its input.)", preset, uncertainty=se)


def claim_variance(results: Mapping[str, VarianceResult], preset: str = "") -> Claim:
    """Fig. 9's claim: MSAs reduce the feature map variance, Convs and MLPs increase it.

    Per model and pooled over models: the fraction of MSA blocks whose output variance is below
    their input's, and of Conv/MLP blocks whose output variance is above it. Holds when both
    pooled fractions exceed one half."""
    paper = ("MSAs reduce the variance of feature maps (they aggregate), Convs and MLPs increase it "
             "(they diversify); Sec. 3, Fig. 9.")
    return _block_claim(results, "delta", "feature map variance", paper, preset,
                        "msa_reduce_fraction", "conv_mlp_increase_fraction")


def claim_high_frequency(results: Mapping[str, FourierResult], preset: str = "") -> Claim:
    """Fig. 8's claim: MSAs reduce the high-frequency amplitude of feature maps, Convs and MLPs
    amplify it. Same measure as ``claim_variance``, on the relative log amplitude at the
    highest frequency (blocks that change the map's size are left out)."""
    paper = ("MSAs reduce the high-frequency amplitude of feature maps (low-pass filters); Convs and MLPs "
             "amplify it (high-pass filters); Sec. 3, Fig. 8.")
    return _block_claim(results, "high_frequency_delta", "high-frequency amplitude", paper, preset,
                        "msa_lower_fraction", "conv_mlp_raise_fraction")


def _blocks(n: int) -> str:
    return f"{n} block" + ("" if n == 1 else "s")


def claim_fourier(
    fourier: Mapping[str, FourierResult], robustness: Mapping[str, RobustnessResult], preset: str = ""
) -> Claim:
    """Fig. 2's claim for a Conv model (ResNet: conv blocks, no MSA) against an MSA model (ViT).

    (a) the change blocks make to the high-frequency relative log amplitude (``high_frequency_delta``,
    averaged over the blocks that keep their input's size) is lower for the MSA model (the paper: negative
    for ViT, positive for ResNet); (b) the MSA model loses less accuracy than the Conv
    model under high-frequency noise (bands >= ``HIGH_BAND`` pi). Holds when both do. Each part is
    decided only beyond 2 SE: (a) the standard error of a mean over blocks (s / sqrt(blocks)); (b)
    sqrt(2) x the binomial SE of the clean accuracy on the run's images, per model (a change of
    accuracy is a difference of two accuracies on those images; conservative, pairing ignored)."""
    paper = ("MSAs (ViT) reduce high-frequency signals while Convs (ResNet) amplify them (Fig. 2a), so ViT is "
             "robust against high-frequency noise and ResNet is vulnerable to it (Fig. 2b); Sec. 3.")
    cnn, vit = conv_and_msa({name: r.kinds for name, r in fourier.items()})
    if cnn is None or vit is None:
        raise ValueError(f"claim_fourier needs a Conv model and an MSA model; got {list(fourier)}")
    measured: dict[str, float] = {}
    se: dict[str, float] = {}
    hf, hf_se, nb = {}, {}, {}
    for name in (cnn, vit):
        d = np.asarray(fourier[name].high_frequency_delta, dtype=float)
        d = d[~np.isnan(d)]
        nb[name] = int(d.size)
        hf[name] = float(d.mean()) if nb[name] else float("nan")
        hf_se[name] = float(d.std(ddof=1) / math.sqrt(d.size)) if d.size > 1 else float("nan")
        key = f"{name}: mean change per block of Δlog amplitude at π"
        measured[key], se[key] = hf[name], hf_se[name]
    # (b) may come from other models of the same families (Fig. 2b stays on the CIFAR-style
    # models when (a) analyses timm's ImageNet ones, ``resnet50_in1k`` -> ``resnet50``).
    cnn_b, vit_b = (n if n in robustness else n.removesuffix("_in1k") for n in (cnn, vit))
    rb: dict[str, tuple[float, float]] = {}
    rb_se: dict[str, float] = {}
    for name in (cnn_b, vit_b):
        if name in robustness:
            r = robustness[name]
            rb[name] = band_means(r)
            rb_se[name] = math.sqrt(2) * binomial_se(float(r.clean_accuracy), int(r.n_images))
            measured[f"{name}: Δacc low bands"] = rb[name][0]
            measured[f"{name}: Δacc high bands"] = rb[name][1]
            se[f"{name}: Δacc low bands"] = se[f"{name}: Δacc high bands"] = rb_se[name]
    a, _ = less_part(hf[vit], hf_se[vit], hf[cnn], hf_se[cnn], "")
    lower = {True: f"lower for {vit}", False: f"not lower for {vit}"}.get(a, "within 2 SE: undecided at this power")
    words_a = (f"{vit}'s blocks changed the high-frequency amplitude by {hf[vit]:+.3f} on average ({_blocks(nb[vit])}), "
               f"{cnn}'s by {hf[cnn]:+.3f} ({_blocks(nb[cnn])}; blocks that resize the map are left out) -- {lower}")
    if math.isnan(hf[vit]) or math.isnan(hf[cnn]):
        words_a = "(a) undecided: no block kept its input's size"
    b, words_b = None, "(b) undecided: no robustness measured for both models"
    if cnn_b in rb and vit_b in rb:
        b, words_b = difference_part(rb[vit_b][1] - rb[cnn_b][1], math.hypot(rb_se[vit_b], rb_se[cnn_b]),
                                     f"high-frequency noise: {vit_b}'s accuracy change minus {cnn_b}'s")
        words_b += f" ({vit_b} {100 * rb[vit_b][1]:+.1f}, {cnn_b} {100 * rb[cnn_b][1]:+.1f} percentage points)"
    holds, text = verdict_text([a, b], [words_a, words_b])
    return Claim(paper, measured, holds, text, preset, uncertainty=se)


def claim_similarity(
    cka: Mapping[str, CKAResult],
    lesion: Mapping[str, LesionResult],
    features: Mapping[str, Features],
    preset: str = "",
) -> Claim:
    """Fig. 10's claims: (a) multi-stage models (ResNet, Swin) behave like a series of small models:
    block similarity (CKA) is higher within a stage than across stages; (b) MSAs at the end of a
    stage matter: removing the last MSA of a stage costs more accuracy than removing the first.

    ``features`` supply each block's stage. Holds when (a) holds for every multi-stage model and
    (b) in more than half of the stages with two or more MSAs, beyond 2 SE of one half
    (``claims.majority_part``; with a few stages, undecided at this power)."""
    paper = ("Multi-stage models behave like a series of small models: representations are similar within a "
             "stage and change across stages (Fig. 10a); MSAs at the end of a stage matter most: removing "
             "one hurts more than removing an earlier MSA (Fig. 10b); Sec. 4.")
    measured: dict[str, float] = {}
    a_ok: list[bool] = []
    for name, r in cka.items():
        w, x = stage_similarity(r, features[name].stages)
        measured[f"{name}: CKA within stage"] = w
        if not math.isnan(x):
            measured[f"{name}: CKA across stages"] = x
            if not math.isnan(w):
                a_ok.append(w > x)
    se: dict[str, float] = {}
    hits, n = [], 0
    for name, r in lesion.items():
        frac, k = end_of_stage_lesion(r, features[name].stages, "msa")
        if k:
            key = f"{name}: stages where last MSA lesion hurts more"
            measured[key], se[key] = frac, proportion_se(frac, k)
            hits.append(frac * k)
            n += k
    a = bool(all(a_ok)) if a_ok else None
    words_a = ("(a) undecided: no multi-stage model with two blocks in a stage" if a is None else
               f"(a) {'every' if a else f'only {sum(a_ok)} of {len(a_ok)}'} multi-stage model"
               f"{'' if a else 's'} showed higher CKA within stages than across")
    # (b) a majority of the stages, decided only beyond 2 SE of one half (as chapters 08/09 count blocks)
    b, words_b = (None, "(b) undecided: no stage holds two MSAs") if not n else majority_part(
        sum(hits) / n, n, "(b) stages where removing the last MSA hurt more than removing the first")
    holds, text = verdict_text([a, b], [words_a, words_b])
    return Claim(paper, measured, holds, text, preset, uncertainty=se)
