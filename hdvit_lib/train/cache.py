"""The model cache: train once, load afterwards (``hdvit_lib.zoo.load_or_train``).

An entry is keyed by the SHA-256 of the canonical JSON of the full run configuration (model
name, model settings, tiny flag, the preset's training and data settings after overrides,
dataset, data fraction, seed and :data:`CACHE_VERSION`): any change of a setting gives another
entry, never someone else's weights. An entry directory holds ``config.json`` (what was hashed),
the training checkpoints (``last.pt``, ``snap_<epoch>.pt``), and, once finished, ``model.pt``,
``history.json`` and ``done.json`` (written last). A file lock serialises processes that ask
for the same entry; an interrupted training resumes from ``last.pt``.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock
from torch import nn

from hdvit_lib import distributed as dist_
from hdvit_lib.modes import resolve_device
from hdvit_lib.presets import PRESETS, get_preset
from hdvit_lib.train.checkpoint import atomic_save, atomic_write_bytes, load_or_explain
from hdvit_lib.train.history import History
from hdvit_lib.train.loop import train

#: Bump when a change in the library makes old cached weights wrong (model code, recipe).
CACHE_VERSION = 2  # 2: tiny resnet50 has two blocks per stage
#: Preset keys that only steer analyses; they do not change the trained weights.
ANALYSIS_PREFIXES = ("hessian_", "landscape_", "analysis_")
#: Preset keys that say where data (or released weights) come from, not what is trained on.
NOT_WEIGHTS = ("download", "weights", "seeds")  # settings that do not change the trained weights


def default_cache_dir() -> Path:
    """``$HDVIT_CACHE`` if set, else ``~/.cache/hdvit``."""
    return Path(os.environ.get("HDVIT_CACHE") or Path.home() / ".cache" / "hdvit")


def training_overrides(cfg: Mapping[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """What a chapter's ``cfg`` changes in its preset's training: ``(dataset or None, {key: value})``
    for every training setting that differs from ``presets.PRESETS[cfg["name"]]``, so that
    ``get_preset("smoke", epochs=5)`` (or ``dataset="fractal"``) trains and caches what it says
    rather than the preset's defaults. Analysis keys, ``download``, ``weights`` and ``device`` are
    not training settings."""
    base = PRESETS[cfg["name"]]
    changed = {k: v for k, v in cfg.items()
               if k in base and k not in NOT_WEIGHTS and k != "dataset" and not k.startswith(ANALYSIS_PREFIXES)
               and v != base[k]}
    dataset = cfg.get("dataset") if cfg.get("dataset", base["dataset"]) != base["dataset"] else None
    return dataset, changed


def run_config(
    model_name: str,
    preset: str = "smoke",
    dataset: str | None = None,
    data_fraction: float = 1.0,
    seed: int = 0,
    model_cfg: dict[str, Any] | None = None,
    train_overrides: dict[str, Any] | None = None,
    data_root: str | Path | None = None,
) -> dict[str, Any]:
    """The full configuration of a cached run (what :func:`cache_key` hashes)."""
    # where weights come from is not part of a run (NOT_WEIGHTS): a tiny paper-recipe run is valid here
    cfg = get_preset(preset, **{**(train_overrides or {}), "weights": "trained"})
    if dataset is not None:
        cfg["dataset"] = dataset
    model_cfg = dict(model_cfg or {})
    tiny = bool(model_cfg.pop("tiny", cfg["tiny"]))
    model_cfg = _model_settings(model_name, tiny, model_cfg)
    settings = {
        k: v for k, v in cfg.items()
        if k != "name" and k not in NOT_WEIGHTS and not k.startswith(ANALYSIS_PREFIXES)
    }
    config = {
        "cache_version": CACHE_VERSION,
        "model": model_name,
        "model_cfg": model_cfg,
        "tiny": tiny,
        "train": settings,
        "dataset": cfg["dataset"],
        "data_fraction": float(data_fraction),
        "seed": int(seed),
    }
    if cfg["dataset"] == "imagefolder":  # the folder is the data; for named sets the root is only a location
        config["data_root"] = str(Path(data_root).resolve()) if data_root is not None else None
    return json.loads(json.dumps(config))  # tuples -> lists, so a config equals its JSON round-trip


def cache_key(config: dict[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON (sorted keys, no spaces) of ``config``."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Trained:
    """A trained (or loaded) model in eval mode, its history and configuration, and its snapshots."""

    model: nn.Module
    history: History
    config: dict[str, Any]
    dir: Path

    def snapshots(self) -> list[int]:
        """Epochs with saved weights (0 = initialisation); none for the authors' checkpoints."""
        if self.official:
            return []
        return sorted(int(p.stem.removeprefix("snap_")) for p in self.dir.glob("snap_*.pt"))

    @property
    def official(self) -> bool:
        """True for the authors' released weights (``hdvit_lib.pretrained.load_official``)."""
        return self.config.get("source") == "official"

    def snapshot(self, epoch_or_tag: int | str) -> dict[str, torch.Tensor]:
        """The state_dict at an epoch, or at a tag: ``init`` (0), ``warmup`` (end of warm-up), ``final``.

        The authors' checkpoints hold only their final weights: ``final`` is the model's own
        state, any other snapshot raises (train the model here for those)."""
        if self.official:
            if epoch_or_tag == "final":
                return {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
            raise ValueError(
                f"snapshot {epoch_or_tag!r} of {self.config['model']}: the authors' checkpoint "
                f"({self.config['asset']}) holds only the final weights; train the model here "
                "(weights='trained') for snapshots during training")
        available = self.snapshots()
        tags = {"init": 0, "warmup": int(self.config["train"]["warmup_epochs"]), "final": max(available, default=-1)}
        if isinstance(epoch_or_tag, str):
            if epoch_or_tag not in tags:
                raise ValueError(f"snapshot tag {epoch_or_tag!r} is unknown; choose one of {', '.join(tags)} or an epoch")
            epoch = tags[epoch_or_tag]
        else:
            epoch = int(epoch_or_tag)
        if epoch not in available:
            raise ValueError(f"no snapshot at epoch {epoch}; available: {available}")
        return read_checkpoint(self.dir / f"snap_{epoch}.pt", self.dir)["model"]


def module_of(model_or_trained: Any) -> nn.Module:
    """The ``nn.Module`` of a zoo entry (``Trained``) or the module itself: the chapters pass
    ``train_models``'s entries (one type everywhere) and tests pass bare modules."""
    return getattr(model_or_trained, "model", model_or_trained)


def model_at(trained: Any, tag: int | str) -> nn.Module:
    """A copy of ``trained.model`` (eval mode) with the weights of snapshot ``tag``
    (``"init"``, ``"warmup"``, ``"final"`` or an epoch)."""
    m = copy.deepcopy(trained.model)
    m.load_state_dict(trained.snapshot(tag))
    return m.eval()


def _model_settings(name: str, tiny: bool, cfg: dict[str, Any]) -> dict[str, Any]:
    """The model's full settings (defaults + ``cfg``), so equal models share one entry and a
    changed default makes a new one. A name the zoo does not know (a test's stand-in) keeps
    ``cfg`` as given; building it still goes through :func:`_get_model`."""
    from hdvit_lib.models import list_models, model_settings

    if name not in list_models():
        return dict(cfg)
    return model_settings(name, tiny, **cfg)


def _get_model(name: str, num_classes: int, tiny: bool, **cfg: Any) -> nn.Module:
    from hdvit_lib.models import get_model

    return get_model(name, num_classes, tiny=tiny, **cfg)


def _get_loaders(cfg: dict[str, Any], root, download: bool, seed: int, data_fraction: float, device=None):
    from hdvit_lib.data import get_loaders

    return get_loaders(cfg, root=root, download=download, seed=seed, data_fraction=data_fraction, device=device)


def _write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=2, sort_keys=True).encode())


@contextlib.contextmanager
def _entry_lock(entry: Path):
    # Only rank 0 takes the lock: the other ranks follow it through collectives.
    if dist_.is_main():
        with FileLock(str(entry / ".lock")):
            yield
    else:
        yield


def load_or_train(
    model_name: str,
    preset: str = "smoke",
    dataset: str | None = None,
    data_fraction: float = 1.0,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    model_cfg: dict[str, Any] | None = None,
    train_overrides: dict[str, Any] | None = None,
    progress: bool = True,
    *,
    data_root: str | Path | None = None,
    download: bool | None = None,
    device: torch.device | str | None = None,
    compile: bool = False,
) -> Trained:
    """The model ``model_name`` trained with ``preset`` (+ ``train_overrides``) on ``dataset``:
    loaded from the cache when this exact configuration was trained before, else trained (or
    resumed) and cached. ``dataset`` defaults to the preset's; ``cache_dir`` to
    :func:`default_cache_dir`. The returned model is in eval mode on ``device`` (CUDA if present).
    ``download`` (None: the preset's, e.g. ``paper``'s True) fetches a missing data set; it is not
    part of the cache key (it says where the data come from, not what is trained).
    An invalid configuration (e.g. a model setting that cannot be built) raises before the
    entry's folder is made.
    """
    config = run_config(model_name, preset, dataset, data_fraction, seed, model_cfg, train_overrides, data_root)
    if download is None:
        download = bool(get_preset(preset, **{**(train_overrides or {}), "weights": "trained"}).get("download", False))
    key = cache_key(config)
    entry = entry_dir(config, cache_dir)
    device = resolve_device(device)
    if not (entry / "done.json").exists():
        _check_model(config)
    entry.mkdir(parents=True, exist_ok=True)
    # Every decision is rank 0's (broadcast), so that all ranks of a DDP job take the same path.
    if dist_.broadcast_object(not (entry / "done.json").exists()):
        with _entry_lock(entry):
            if dist_.broadcast_object(not (entry / "done.json").exists()):
                _train_entry(entry, config, key, data_root, download, device, compile, progress)
            dist_.barrier()
    return _load_entry(entry, config, device)


def entry_dir(config: dict[str, Any], cache_dir: str | Path | None = None) -> Path:
    """The cache folder of ``config`` (a :func:`run_config`) under ``cache_dir`` (default
    :func:`default_cache_dir`): ``<model>-<dataset>-<first 16 hex of the key>``."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return root / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', config['model'])}-{config['dataset']}-{cache_key(config)[:16]}"


def _check_model(config: dict[str, Any]) -> None:
    """Build the model on the ``meta`` device (no memory, no compute): impossible settings raise
    their ValueError here, before anything is written to the cache."""
    with torch.device("meta"):
        _get_model(config["model"], int(config["train"].get("num_classes") or 10), config["tiny"],
                   **config["model_cfg"])


def _train_entry(entry, config, key, data_root, download, device, compile, progress) -> None:
    cfg = dict(config["train"])
    torch.manual_seed(config["seed"])
    try:
        loaders = _get_loaders(cfg, data_root, download, config["seed"], config["data_fraction"], device)
        model = _get_model(config["model"], loaders.num_classes, config["tiny"], **config["model_cfg"])
    except BaseException:
        _remove_if_unused(entry)
        raise
    if dist_.is_main():  # the configuration is valid: the entry holds it from now on
        _write_json(entry / "config.json", config)
    history = train(model, loaders, cfg, ckpt_dir=entry, device=device, seed=config["seed"],
                    compile=compile, progress=progress)
    if dist_.is_main():
        atomic_save({"model": model.state_dict()}, entry / "model.pt")
        history.save(entry / "history.json")
        _write_json(entry / "done.json", {"key": key, "num_classes": int(loaders.num_classes),
                                          "test_acc": history.final("test_acc"), "epochs": history.epochs_done})


def _remove_if_unused(entry: Path) -> None:
    """Remove ``entry`` if it holds nothing but its lock (a run that failed before it began)."""
    if dist_.is_main() and {p.name for p in entry.iterdir()} <= {".lock"}:
        (entry / ".lock").unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            entry.rmdir()


def read_checkpoint(path: Path, entry: Path | None = None) -> Any:
    """:func:`~hdvit_lib.train.checkpoint.load` (weights only) of a cache file; a file that cannot be
    read names itself and its cache entry and says to delete the entry (it is retrained)."""
    entry = entry or path.parent
    return load_or_explain(path, f"It belongs to the cache entry {entry}: delete that folder (rm -r '{entry}') "
                           "and run again to retrain it.")


def _load_entry(entry: Path, config: dict[str, Any], device: torch.device) -> Trained:
    stored = json.loads((entry / "config.json").read_text())
    if stored != config:
        raise RuntimeError(f"cache entry {entry} holds another configuration; delete it and retry")
    done = json.loads((entry / "done.json").read_text())
    model = _get_model(config["model"], done["num_classes"], config["tiny"], **config["model_cfg"])
    model.load_state_dict(read_checkpoint(entry / "model.pt", entry)["model"])
    model.to(device).eval()
    return Trained(model, History.load(entry / "history.json"), config | {"key": done["key"],
                   "num_classes": done["num_classes"]}, entry)
