"""What every chapter group shares: a training run's spec and the trained models from the zoo cache.

``hdvit_lib.experiments.landscape``, ``.representation`` and ``.alternet`` all train (or load) their
models through :func:`train_runs` / :func:`train_models`, so the same name and preset are one cache
entry and print the same line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def run_spec(model: str, data_fraction: float = 1.0, **model_cfg: Any) -> dict[str, Any]:
    """A training run: model name, fraction of the training set, model settings (e.g.
    ``patch_size``, ``window``)."""
    return {"model": model, "data_fraction": float(data_fraction), "model_cfg": dict(model_cfg)}


def train_runs(runs: Mapping[str, Mapping[str, Any]], cfg: dict[str, Any], seed: int = 0,
               progress: bool = False) -> dict[str, Any]:
    """``{label: Trained}`` from the zoo cache (trained on a miss) for each run of ``runs``, with the
    preset ``cfg``; prints each run's test accuracy.

    With ``cfg["weights"] == "official"`` a run that the authors' checkpoint fits (a released model
    at its default settings on all of the data: ``hdvit_lib.pretrained.official_mismatch``) is that
    checkpoint (``load_official``, its test accuracy measured here); every other run is trained,
    and the line printed says why. Before anything is trained, the plan (``hdvit_lib.zoo.plan``: what
    will be trained and its time on this device, measured from a few steps) is printed.
    """
    from hdvit_lib.pretrained import load_official, official_mismatch
    from hdvit_lib.train.cache import training_overrides
    from hdvit_lib.zoo import load_or_train, plan

    todo = plan(runs, cfg, seed)
    dataset, overrides = training_overrides(cfg)
    if todo.to_train:
        print(todo)
    out = {}
    for label, r in runs.items():
        fraction, model_cfg = r.get("data_fraction", 1.0), r.get("model_cfg") or None
        why_not = official_mismatch(r["model"], fraction, model_cfg) if cfg.get("weights") == "official" else ""
        if why_not is None:
            t = load_official(r["model"], cfg, device=cfg.get("device"), progress=progress)
            print(f"{label}: the authors' checkpoint {t.config['asset']}, test accuracy "
                  f"{t.history.final('test_acc'):.3f} on {t.config['test_set']}")
        else:
            t = load_or_train(r["model"], preset=cfg["name"], dataset=dataset, data_fraction=fraction, seed=seed,
                              model_cfg=model_cfg, train_overrides=overrides or None,
                              download=bool(cfg.get("download")), device=cfg.get("device"), progress=progress)
            print(f"{label}: test accuracy {t.history.final('test_acc'):.3f} after {t.history.epochs_done} epochs "
                  f"({cfg['name']} preset)" + (f"; trained here: {why_not}" if why_not else ""))
        out[label] = t
    return out


def train_models(names: Sequence[str], cfg: dict[str, Any], seed: int = 0, progress: bool = False) -> dict[str, Any]:
    """``train_runs`` of ``names`` on the full training set with their default settings."""
    if isinstance(names, str):
        names = [names]
    return train_runs({n: run_spec(n) for n in names}, cfg, seed, progress)


def with_snapshots(trained: Mapping[str, Any], cfg: dict[str, Any], seed: int = 0,
                   progress: bool = False) -> dict[str, Any]:
    """``trained`` with each entry of the authors' checkpoints (final weights only) replaced by the
    same model trained here, for analyses at a snapshot during training (e.g. the end of warm-up);
    says which were replaced. Other entries are returned as they are, in the same order."""
    official = {k: t for k, t in trained.items() if getattr(t, "official", False)}
    if not official:
        return dict(trained)
    print(f"{', '.join(official)}: this analysis needs a snapshot during training, and the authors' "
          "checkpoints hold only final weights: trained here instead")
    runs = {k: run_spec(t.config["model"]) for k, t in official.items()}
    return {**trained, **train_runs(runs, {**cfg, "weights": "trained"}, seed, progress)}
