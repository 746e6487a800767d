"""The one training loop: AdamW, warm-up + cosine per step, label smoothing or mixup soft targets,
gradient clipping, mixed precision on CUDA (bf16, or fp16 with loss scaling on GPUs without bf16),
atomic checkpoints, exact resume, NaN guard, DDP.

Recipe: Park & Kim (2022), Appendix A (AdamW, weight decay 0.05, warm-up then cosine, gradient
clipping 5, label smoothing 0.1, mixup/cutmix supplied by the data loaders).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from hdvit_lib import distributed as dist_
from hdvit_lib.modes import amp_dtype, eval_mode, model_device
from hdvit_lib.train.checkpoint import (
    atomic_save,
    load_or_explain,
    rng_state,
    set_rng_state,
)
from hdvit_lib.train.history import History
from hdvit_lib.train.schedule import make_scheduler

#: Preset keys the loop reads; a checkpoint made with other values of these is not resumed.
TRAIN_KEYS = ("epochs", "warmup_epochs", "batch_size", "lr", "weight_decay", "label_smoothing", "clip_grad")

Mixup = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def snapshot_epochs(cfg: dict[str, Any]) -> list[int]:
    """Epochs whose weights are kept as ``snap_<epoch>.pt``: init (0), end of warm-up, every
    ``snapshot_every`` epochs, and the last epoch."""
    epochs, every = int(cfg["epochs"]), cfg.get("snapshot_every") or 0
    out = {0, epochs}
    if 0 < cfg["warmup_epochs"] <= epochs:
        out.add(int(cfg["warmup_epochs"]))
    if every:
        out.update(range(every, epochs + 1, every))
    return sorted(out)


def _unpack(loaders: Any, test_loader: Any, mixup: Mixup | None):
    if hasattr(loaders, "train"):
        test_loader = test_loader if test_loader is not None else getattr(loaders, "test", None)
        mixup = mixup if mixup is not None else getattr(loaders, "mixup", None)
        return loaders.train, test_loader, mixup
    return loaders, test_loader, mixup


def _is_convnet(model: nn.Module) -> bool:
    # A ViT has one convolution (the patch embedding); conv nets and hybrids have many.
    return sum(isinstance(m, nn.Conv2d) for m in model.modules()) > 1


def _make_optimizer(model: nn.Module, cfg: dict[str, Any], fused: bool) -> torch.optim.AdamW:
    """AdamW; biases, norm weights, tokens and position embeddings (ndim <= 1 or the model's
    ``no_weight_decay()``) are not decayed, as in timm's recipe the paper used."""
    skip = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 or name in skip else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": float(cfg["weight_decay"])},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=float(cfg["lr"]), fused=fused or None)


def _default_device() -> torch.device:
    return dist_.setup() if torch.cuda.is_available() else torch.device("cpu")


def _to(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader,
    device: torch.device | str | None = None,
    amp: bool | torch.dtype | None = None,
    channels_last: bool = False,
) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of ``model`` on ``loader``, in eval mode (restored after).

    Inside a process group the sums are added over ranks, so sharded loaders give the global
    mean (and unsharded ones the same mean, computed N times). ``amp``: autocast in that dtype, or
    ``True`` in :func:`hdvit_lib.modes.amp_dtype`'s, ``False`` none, ``None`` on CUDA only (the
    trainer passes the dtype it trains in).
    """
    device = torch.device(device) if device is not None else model_device(model)
    amp = device.type == "cuda" if amp is None else amp
    dtype = amp if isinstance(amp, torch.dtype) else amp_dtype(device)
    sums = torch.zeros(3, dtype=torch.float64, device=device)
    with eval_mode(model):
        for x, y in loader:
            x, y = _to(x, device, channels_last), y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=dtype, enabled=amp is not False):
                out = model(x)
            sums[0] += F.cross_entropy(out.float(), y, reduction="sum")
            sums[1] += (out.argmax(-1) == y).sum()
            sums[2] += y.shape[0]
    loss, correct, n = dist_.all_reduce_sum(sums).tolist()
    return (loss / n, correct / n) if n else (math.nan, math.nan)


class _Run:
    """Per-run state shared by the epoch loop and the checkpoint writer."""

    def __init__(self, ckpt_dir: str | Path | None, settings: dict[str, Any]):
        self.dir = Path(ckpt_dir) if ckpt_dir is not None else None
        self.settings = settings

    def save_last(self, epoch, model, optimizer, scheduler, history, loader, scaler=None) -> None:
        if self.dir is None or not dist_.is_main():
            return
        state = {
            "epoch": epoch,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else {},
            "history": history.to_dict(),
            "rng": rng_state(loader),
            "settings": self.settings,
        }
        atomic_save(state, self.dir / "last.pt")

    def save_snapshot(self, epoch: int, model: nn.Module) -> None:
        if self.dir is None or not dist_.is_main():
            return
        atomic_save({"epoch": epoch, "model": model.state_dict()}, self.dir / f"snap_{epoch}.pt")


def train(
    model: nn.Module,
    loaders_or_train_loader: Any,
    cfg: dict[str, Any],
    ckpt_dir: str | Path | None = None,
    device: torch.device | str | None = None,
    test_loader: Any = None,
    mixup: Mixup | None = None,
    *,
    seed: int = 0,
    compile: bool = False,
    progress: bool = True,
    amp: torch.dtype | str | None = "auto",
) -> History:
    """Train ``model`` in place with the recipe of Park & Kim (2022), Appendix A; return its History.

    loaders_or_train_loader: a DataLoader, or an object with ``.train`` (and optionally ``.test``
        and ``.mixup``), e.g. ``hdvit_lib.data.get_loaders(...)``.
    cfg: a preset (``hdvit_lib.presets.get_preset``); reads ``TRAIN_KEYS`` and ``snapshot_every``.
    ckpt_dir: where ``last.pt`` (after every epoch: model, optimiser, scheduler, epoch, history,
        RNG states) and ``snap_<epoch>.pt`` (weights at :func:`snapshot_epochs`) are written
        atomically. A second call with the same directory resumes after the last finished epoch
        and gives the same curves as an uninterrupted run.
    mixup: ``(x, y) -> (x, soft_y)``; the loss is then cross-entropy against the soft targets
        (which carry their own smoothing), else cross-entropy with ``label_smoothing``.
    seed: seeds the DistributedSampler's per-epoch shuffle under DDP.
    compile: ``torch.compile`` the model.
    amp: the autocast dtype; ``"auto"``: :func:`hdvit_lib.modes.amp_dtype` on CUDA (bf16, or fp16
        on GPUs without bf16), none on the CPU; ``None``: float32. With float16 the loss is scaled
        (``torch.amp.GradScaler``, its state checkpointed with the rest).

    Learning rate per step: :func:`hdvit_lib.train.schedule.warmup_cosine`. On CUDA: fused AdamW,
    autocast (``amp``), channels_last for conv nets. Under ``torchrun`` (a process group with N > 1
    ranks): DDP, each rank reads ``batch_size / N`` samples of every global batch, only rank 0
    writes. A non-finite loss raises ``FloatingPointError`` (the last checkpoint is kept).
    """
    missing = [k for k in TRAIN_KEYS if k not in cfg]
    if missing:
        raise ValueError(f"cfg lacks {', '.join(missing)}; pass a preset from hdvit_lib.presets.get_preset")
    train_loader, test_loader, mixup = _unpack(loaders_or_train_loader, test_loader, mixup)
    device = torch.device(device) if device is not None else _default_device()
    cuda = device.type == "cuda"
    distributed = dist_.is_distributed()
    main = dist_.is_main()

    dtype = (amp_dtype(device) if cuda else None) if amp == "auto" else amp
    if dtype not in (None, torch.bfloat16, torch.float16):
        raise ValueError(f"amp={amp!r} is not one of 'auto', None, torch.bfloat16, torch.float16")
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)

    raw = model.to(device)
    channels_last = cuda and _is_convnet(raw)
    if channels_last:
        raw = raw.to(memory_format=torch.channels_last)
    if distributed:
        train_loader = dist_.shard_train_loader(train_loader, int(cfg["batch_size"]), seed)
        test_loader = dist_.shard_eval_loader(test_loader) if test_loader is not None else None

    epochs, steps = int(cfg["epochs"]), len(train_loader)
    if steps == 0:
        raise ValueError("the training loader is empty")
    optimizer = _make_optimizer(raw, cfg, fused=cuda)
    scheduler = make_scheduler(optimizer, int(cfg["warmup_epochs"]) * steps, epochs * steps)
    settings = {k: cfg[k] for k in TRAIN_KEYS} | {"steps_per_epoch": steps}
    run = _Run(ckpt_dir, settings)
    history, start = History(), 0
    last = run.dir / "last.pt" if run.dir is not None else None
    if last is not None and last.exists():
        state = load_or_explain(last, f"It is the resume point of a training in {run.dir}: delete it to train "
                                "from the start, or delete the folder.", map_location=device)
        if state["settings"] != settings:
            raise ValueError(
                f"{last} was written with settings {state['settings']}, not {settings}; "
                "use another ckpt_dir (or delete it) to train with new settings"
            )
        raw.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler") and scaler.is_enabled():
            scaler.load_state_dict(state["scaler"])
        history, start = History.from_dict(state["history"]), int(state["epoch"])
        set_rng_state(state["rng"], train_loader)
        if main and start < epochs:
            print(f"resuming after epoch {start} of {epochs} from {last}")
    else:
        run.save_snapshot(0, raw)
    snaps = set(snapshot_epochs(cfg))

    fwd = torch.compile(raw) if compile else raw
    net = DistributedDataParallel(fwd, device_ids=[device] if cuda else None) if distributed else fwd
    label_smoothing = float(cfg["label_smoothing"])
    clip = cfg.get("clip_grad")
    flush_every = 25 if cuda else 1
    show = progress and main

    for epoch in tqdm(range(start + 1, epochs + 1), desc="epochs", initial=start, total=epochs, disable=not show):
        if hasattr(train_loader.sampler, "set_epoch"):
            train_loader.sampler.set_epoch(epoch)
        t0 = time.perf_counter()
        net.train()
        sums = torch.zeros(3, dtype=torch.float64, device=device)
        pending: list[torch.Tensor] = []
        epoch_losses: list[float] = []
        # tqdm.auto's asyncio class calls iter() on an iterable it wraps, which would start a
        # DataLoader (and its workers) twice: the bar is therefore updated by hand.
        bar = tqdm(total=steps, desc=f"epoch {epoch}", leave=False, disable=not show)
        for step, (x, y) in enumerate(train_loader, start=1):
            x, y = _to(x, device, channels_last), y.to(device, non_blocking=True)
            if mixup is not None:
                x, target = mixup(x, y)
                hard = target.argmax(-1)
            else:
                target, hard = y, y
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                out = net(x)
            if mixup is not None:
                loss = F.cross_entropy(out.float(), target)
            else:
                loss = F.cross_entropy(out.float(), target, label_smoothing=label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()  # a pass-through unless float16
            if clip:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(raw.parameters(), float(clip))
            lr_used = optimizer.param_groups[0]["lr"]
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            n = y.shape[0]
            sums[0] += loss.detach().double() * n
            sums[1] += (out.argmax(-1) == hard).sum()
            sums[2] += n
            pending.append(loss.detach().float())
            if len(pending) >= flush_every or step == steps:
                values = (dist_.all_reduce_sum(torch.stack(pending)) / dist_.world_size()).tolist()
                first = step - len(values) + 1
                for i, v in enumerate(values):
                    if not math.isfinite(v):
                        _raise_nonfinite(v, epoch, first + i, steps, history.step_loss + epoch_losses, cfg, run)
                    epoch_losses.append(v)
                pending.clear()
                bar.set_postfix(loss=f"{values[-1]:.4f}", refresh=False)
            bar.update()
        bar.close()
        loss_sum, correct, count = dist_.all_reduce_sum(sums).tolist()
        test_loss, test_acc = (
            evaluate(fwd, test_loader, device, amp=dtype or False, channels_last=channels_last)
            if test_loader is not None else (math.nan, math.nan)
        )
        history.epoch.append(epoch)
        history.train_loss.append(loss_sum / count)
        history.train_acc.append(correct / count)
        history.test_loss.append(test_loss)
        history.test_acc.append(test_acc)
        history.time.append(time.perf_counter() - t0)
        history.lr.append(lr_used)
        history.step_loss.extend(epoch_losses)
        if epoch in snaps:
            run.save_snapshot(epoch, raw)
        run.save_last(epoch, raw, optimizer, scheduler, history, train_loader, scaler)
    return history


def _raise_nonfinite(value, epoch, step, steps, finite, cfg, run: _Run):
    last = f"{finite[-1]:.6g}" if finite else "none (the very first step)"
    kept = (
        f"; {run.dir / 'last.pt'} keeps epoch {epoch - 1}" if run.dir is not None and epoch > 1
        else ("; no epoch had finished, nothing was checkpointed after init" if run.dir is not None else "")
    )
    raise FloatingPointError(
        f"training loss is {value} at epoch {epoch}, step {step}/{steps}; last finite loss {last}{kept}. "
        f"Lower the learning rate (lr={cfg['lr']}) or the gradient clipping threshold "
        f"(clip_grad={cfg.get('clip_grad')})."
    )
