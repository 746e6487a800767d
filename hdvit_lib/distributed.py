"""Small helpers to shard an analysis over processes (``torchrun``) and put the results back.

A per-item analysis (e.g. the Hessian spectrum of each of 312 mini-batches) runs as::

    init_distributed()                      # no-op in a plain `python` run
    mine = shard(batches)                   # this rank's items
    out = gather_shards([f(b) for b in mine], n=len(batches))   # every rank: all results, in order

With one process everything degrades to the identity, so library code calls these helpers
unconditionally. Backend: NCCL when CUDA is available, Gloo otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")
MODES = ("contiguous", "strided")


def init_distributed(backend: str | None = None) -> bool:
    """Join the process group described by torchrun's environment (``RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR``, ``MASTER_PORT``, ``LOCAL_RANK``), if there is one.

    Returns True when running with more than one process. Idempotent. With CUDA, the device is
    set to ``LOCAL_RANK``. ``backend`` defaults to ``"nccl"`` with CUDA and ``"gloo"`` without.
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or not dist.is_available():
        return False
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    return True


def rank_world() -> tuple[int, int]:
    """``(rank, world_size)`` of the initialised process group, or ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    """True on rank 0 (and in a single-process run)."""
    return rank_world()[0] == 0


def shard_indices(n: int, mode: str = "contiguous", rank: int | None = None, world: int | None = None) -> list[int]:
    """Indices of ``range(n)`` that ``rank`` handles.

    ``contiguous``: rank r gets one block; the first ``n % world`` ranks get one extra item.
    ``strided``: rank r gets r, r + world, r + 2 world, ... (balances items whose cost grows with
    their index).
    """
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}; choose one of {MODES}")
    r, w = rank_world()
    rank = r if rank is None else rank
    world = w if world is None else world
    if not 0 <= rank < world:
        raise ValueError(f"rank={rank} is outside 0..{world - 1}")
    if mode == "strided":
        return list(range(rank, n, world))
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return list(range(start, start + base + (rank < extra)))


def shard(items: Sequence[T], mode: str = "contiguous", rank: int | None = None, world: int | None = None) -> list[T]:
    """This rank's share of ``items`` (see ``shard_indices``)."""
    return [items[i] for i in shard_indices(len(items), mode, rank, world)]


def gather(x: Any) -> list[Any]:
    """Every rank's ``x``, as a list indexed by rank, on every rank.

    Tensors go through ``all_gather`` (sizes along dim 0 may differ between ranks: they are padded
    and trimmed; other dims and dtype must agree) and come back on the tensor's device; any other
    picklable object goes through ``all_gather_object``. With one process: ``[x]``.
    """
    _, world = rank_world()
    if world == 1:
        return [x]
    if not isinstance(x, torch.Tensor):
        out: list[Any] = [None] * world
        dist.all_gather_object(out, x)
        return out
    device = x.device
    if dist.get_backend() == "nccl" and device.type != "cuda":
        x = x.cuda()
    t = x if x.dim() > 0 else x.reshape(1)
    sizes = [torch.zeros(1, dtype=torch.long, device=t.device) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([t.shape[0]], device=t.device))
    sizes_int = [int(s.item()) for s in sizes]
    pad = max(sizes_int) - t.shape[0]
    padded = torch.cat([t, t.new_zeros((pad, *t.shape[1:]))]) if pad else t.contiguous()
    bufs = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(bufs, padded)
    res = [b[:s].to(device) for b, s in zip(bufs, sizes_int, strict=True)]
    return res if x.dim() > 0 else [r.reshape(()) for r in res]


def gather_shards(local: list[Any] | torch.Tensor, n: int, mode: str = "contiguous") -> list[Any] | torch.Tensor:
    """Undo ``shard``: gather every rank's per-item results and put them back in item order.

    ``local`` holds this rank's results in the order of ``shard(items, mode)``: a list, or a tensor
    whose dim 0 runs over the items (the result is then one tensor of length ``n``).
    """
    _, world = rank_world()
    parts = gather(local)
    order = [i for r in range(world) for i in shard_indices(n, mode, r, world)]
    if isinstance(local, torch.Tensor):
        flat = torch.cat(parts) if world > 1 else local
        if flat.shape[0] != n:
            raise ValueError(f"gathered {flat.shape[0]} results for n={n} items")
        out = torch.empty_like(flat)
        out[torch.tensor(order, device=flat.device)] = flat
        return out
    flat_list = [v for p in parts for v in p]
    if len(flat_list) != n:
        raise ValueError(f"gathered {len(flat_list)} results for n={n} items")
    result: list[Any] = [None] * n
    for i, v in zip(order, flat_list, strict=True):
        result[i] = v
    return result


def map_sharded(fn: Callable[[T], Any], items: Sequence[T], mode: str = "strided") -> list[Any]:
    """``[fn(x) for x in items]``, each rank computing its share; every rank gets the full list."""
    return gather_shards([fn(x) for x in shard(items, mode)], len(items), mode)
