"""The chapters' Hessian protocol (Park & Kim 2022, Sec. 2, Figs. 1b, 4, 6 and 12c): the top
eigenvalues of the Hessian of the training loss on each fixed mini-batch, with a preset's budget."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from hdvit_lib.analysis.hessian import HessianSpectrum, spectrum
from hdvit_lib.data.batches import Batches


def hessian_spectrum(model: nn.Module, batches: Batches, cfg: dict[str, Any], seed: int = 0, name: str = "",
                     progress: bool = False) -> HessianSpectrum:
    """Top-``hessian_k`` eigenvalues on each of the ``batches`` (Park & Kim 2022, Figs. 1b and 4):
    ``spectrum`` (Lanczos, the preset's ``hessian_steps``) of the landscape's loss, NLL +
    ``weight_decay * sum_k ||w_k||`` (:mod:`hdvit_lib.analysis.objective`)."""
    return spectrum(model, batches, len(batches), k=int(cfg["hessian_k"]), method="lanczos",
                    max_iter=int(cfg["hessian_steps"]), weight_decay=float(cfg["weight_decay"]),
                    seed=seed, stack=len(batches), name=name, progress=progress)


def spectra(models: Mapping[str, nn.Module], batches: Batches | Mapping[str, Batches], cfg: dict[str, Any],
            seed: int = 0) -> dict[str, HessianSpectrum]:
    """``hessian_spectrum`` of every model (Park & Kim 2022, Figs. 1b, 4, 6, 12c: one spectrum per
    model, same protocol); ``batches`` shared, or one list per label."""
    def pick(label: str) -> Batches:
        return batches[label] if isinstance(batches, Mapping) else batches

    return {label: hessian_spectrum(m, pick(label), cfg, seed, name=label) for label, m in models.items()}
