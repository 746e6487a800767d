"""What a chapter will train, and how long it will take on this device (``hdvit_lib.zoo.plan``).

Before ``experiments.common.train_runs`` trains anything it prints a :class:`Plan`: each run that is
not in the cache yet (cached runs and the authors' checkpoints cost nothing), with its number of
optimiser steps and a time measured here — a few timed training steps of the model at the
preset's batch size on the current device (one untimed step first), times the steps of the run,
plus the test pass (a forward pass costs ~1/3 of a training step). The estimate leaves out data
loading and the analyses. A plan longer than a Colab session (:data:`SESSION_HOURS`) says so,
with the number of hours.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

#: A free Colab session lasts up to a few hours; a plan above this is flagged.
SESSION_HOURS = 3.0
#: Training-set and test-set sizes of the named data sets (``n_train``/``n_test`` None: all).
TRAIN_SIZE = {"synthetic": 10000, "cifar10": 50000, "cifar100": 50000}
TEST_SIZE = {"synthetic": 2000, "cifar10": 10000, "cifar100": 10000}
#: A forward (test) pass per image, in units of one training step per image.
EVAL_COST = 1.0 / 3.0


@dataclass
class PlannedRun:
    """One run of a plan: ``status`` is ``train`` / ``cached`` / ``official``; ``seconds`` is None
    when the run costs nothing here or could not be measured (``note`` says why)."""

    label: str
    model: str
    status: str
    steps: int = 0
    seconds_per_step: float | None = None
    seconds: float | None = None
    note: str = ""


@dataclass
class Plan:
    """The runs of a chapter and the estimated time of those that must be trained on ``device``."""

    runs: list[PlannedRun]
    device: str
    preset: str
    session_hours: float = SESSION_HOURS
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def to_train(self) -> list[PlannedRun]:
        return [r for r in self.runs if r.status == "train"]

    @property
    def total_seconds(self) -> float:
        """Sum of the measured estimates (runs that could not be measured are left out)."""
        return float(sum(r.seconds for r in self.to_train if r.seconds is not None))

    @property
    def exceeds_session(self) -> bool:
        return self.total_seconds > self.session_hours * 3600

    def __str__(self) -> str:
        head = f"Plan ({self.preset} preset on {self.device}): {len(self.to_train)} of {len(self.runs)} run(s) to train"
        lines = [head]
        for r in self.runs:
            if r.status == "train":
                est = (f"~{_duration(r.seconds)} ({r.steps} steps at {r.seconds_per_step * 1000:.0f} ms/step, "
                       "measured here)" if r.seconds is not None else f"time unknown: {r.note}")
                lines.append(f"  {r.label}: train {r.model}, {est}")
            else:
                lines.append(f"  {r.label}: {r.note or r.status}")
        if self.to_train:
            lines.append(f"Estimated training time: ~{_duration(self.total_seconds)} (data loading and the "
                         "analyses not included).")
        if self.exceeds_session:
            lines.append(f"WARNING: this is {self.total_seconds / 3600:.1f} hours, more than a Colab session "
                         f"(~{self.session_hours:.0f} h): set HDVIT_CACHE to persistent storage (e.g. a mounted "
                         "Google Drive) so that a new session resumes, or choose a smaller preset.")
        return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def steps_per_epoch(cfg: Mapping[str, Any], data_fraction: float = 1.0) -> int | None:
    """Optimiser steps per epoch of preset ``cfg`` on ``data_fraction`` of its training set (None when
    the set's size is not known, e.g. an image folder)."""
    n = cfg.get("n_train") or TRAIN_SIZE.get(cfg["dataset"])
    if n is None:
        return None
    return max(1, math.ceil(max(1, round(n * data_fraction)) / int(cfg["batch_size"])))


def run_steps(cfg: Mapping[str, Any], data_fraction: float = 1.0) -> tuple[int, float] | None:
    """``(training steps, test passes in training-step units)`` of a whole run, or None (unknown size)."""
    per_epoch = steps_per_epoch(cfg, data_fraction)
    if per_epoch is None:
        return None
    epochs = int(cfg["epochs"])
    n_test = cfg.get("n_test") or TEST_SIZE.get(cfg["dataset"], 0)
    return per_epoch * epochs, epochs * math.ceil(n_test / int(cfg["batch_size"])) * EVAL_COST


def time_steps(model: torch.nn.Module, batch_size: int, num_classes: int, device: torch.device, n: int = 3,
               timer: Callable[[], float] = time.perf_counter, image_size: int = 32) -> float:
    """Seconds per training step (forward, backward, AdamW) of ``model`` at ``batch_size`` on
    ``device``, mean of ``n`` timed steps after one untimed step (autocast on CUDA, as in training)."""
    from hdvit_lib.modes import amp_dtype

    model = model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch_size, 3, image_size, image_size, device=device)
    y = torch.randint(0, num_classes, (batch_size,), device=device)
    cuda = device.type == "cuda"
    dtype = amp_dtype(device) if cuda else None
    # a float16 loss scaler would only add a multiply: the step's cost is the same

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=cuda):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    step()
    sync()
    t0 = timer()
    for _ in range(n):
        step()
    sync()
    return (timer() - t0) / n


def plan(runs: Mapping[str, Mapping[str, Any]], cfg: Mapping[str, Any], seed: int = 0, *,
         cache_dir: str | Path | None = None, device: torch.device | str | None = None, n_steps: int = 3,
         timer: Callable[[], float] = time.perf_counter,
         measure: Callable[..., float] | None = None) -> Plan:
    """The :class:`Plan` of ``runs`` (``{label: run_spec}``, as ``train_runs`` takes them) with preset
    ``cfg``: cached runs and runs the authors' checkpoints stand in for (``weights="official"``) are
    listed and skipped; each other run's model is timed for ``n_steps`` steps on ``device``
    (default: ``cfg["device"]``, else CUDA if present) with ``timer``; ``measure(model_name, model_cfg,
    tiny, batch_size, num_classes, device)`` replaces the timing (tests). The same model with the
    same settings is timed once."""
    from hdvit_lib.modes import resolve_device
    from hdvit_lib.pretrained import official_mismatch
    from hdvit_lib.train import cache

    device = resolve_device(device if device is not None else cfg.get("device"))
    timed: dict[str, float] = {}
    dataset, overrides = cache.training_overrides(cfg)  # what train_runs trains and caches
    out = []
    for label, r in runs.items():
        fraction, model_cfg = float(r.get("data_fraction", 1.0)), dict(r.get("model_cfg") or {})
        if cfg.get("weights") == "official" and official_mismatch(r["model"], fraction, model_cfg or None) is None:
            out.append(PlannedRun(label, r["model"], "official", note="the authors' checkpoint (nothing to train)"))
            continue
        config = cache.run_config(r["model"], cfg["name"], dataset, fraction, seed, model_cfg or None,
                                  overrides or None)
        if (cache.entry_dir(config, cache_dir) / "done.json").exists():
            out.append(PlannedRun(label, r["model"], "cached", note="in the cache"))
            continue
        train_cfg = config["train"] | {"dataset": config["dataset"]}
        counted = run_steps(train_cfg, fraction)
        num_classes = int(train_cfg.get("num_classes") or (10 if config["dataset"] in ("synthetic", "cifar10") else 100))
        key = cache.cache_key({k: config[k] for k in ("model", "model_cfg", "tiny")})
        try:
            if key not in timed:
                bs = int(train_cfg["batch_size"])
                if measure is not None:
                    timed[key] = measure(r["model"], config["model_cfg"], config["tiny"], bs, num_classes, device)
                else:
                    model = cache._get_model(r["model"], num_classes, config["tiny"], **config["model_cfg"])
                    timed[key] = time_steps(model, bs, num_classes, device, n_steps, timer)
        except (RuntimeError, ValueError, TypeError) as e:  # e.g. out of memory at this batch size
            out.append(PlannedRun(label, r["model"], "train", note=f"{type(e).__name__}: {str(e).splitlines()[0]}"))
            continue
        if counted is None:
            out.append(PlannedRun(label, r["model"], "train", seconds_per_step=timed[key],
                                  note="the training set's size is not known"))
            continue
        steps, eval_steps = counted
        out.append(PlannedRun(label, r["model"], "train", steps=steps, seconds_per_step=timed[key],
                              seconds=(steps + eval_steps) * timed[key]))
    return Plan(out, str(device), str(cfg["name"]))
