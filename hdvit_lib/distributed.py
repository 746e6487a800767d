"""Processes under ``torchrun``: the process group, rank helpers, collectives, and sharding.

One implementation for the whole library (``hdvit_lib.train.distributed`` re-exports it).
``torchrun --nproc_per_node=N -m hdvit_lib train|analyze ...`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``; :func:`setup` joins the process group (NCCL with CUDA, Gloo without) and returns
this process's device. With one process every helper degrades to the identity, so library code
calls them unconditionally.

Training (DDP): :func:`shard_train_loader` / :func:`shard_eval_loader` give each rank its part
of every global batch / of the evaluation set. Per-item analyses (e.g. the Hessian spectrum of
each of 312 mini-batches) run as::

    setup()                                 # no-op in a plain `python` run
    mine = shard(batches, "strided")        # this rank's items
    out = gather_shards([f(b) for b in mine], n=len(batches), mode="strided")  # every rank: all, in order
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, Subset

T = TypeVar("T")
MODES = ("contiguous", "strided")


# ----------------------------------------------------------------------------- the process group
def init_distributed(backend: str | None = None) -> bool:
    """Join the process group described by torchrun's environment (``RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR``, ``MASTER_PORT``, ``LOCAL_RANK``), if there is one.

    Returns True when running with more than one process. Idempotent. With NCCL, the CUDA device
    is set to ``LOCAL_RANK``. ``backend`` defaults to ``"nccl"`` with CUDA and ``"gloo"`` without.
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


def setup() -> torch.device:
    """Join the process group torchrun describes (if any, :func:`init_distributed`); return this
    process's device: ``cuda:LOCAL_RANK`` (made current) with CUDA, else the CPU."""
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local)
    init_distributed()
    return torch.device("cuda", local) if cuda else torch.device("cpu")


def teardown() -> None:
    """Leave the process group (if any)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_distributed() -> bool:
    """True inside an initialised process group with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank_world() -> tuple[int, int]:
    """``(rank, world_size)`` of the initialised process group, or ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return rank_world()[0]


def world_size() -> int:
    """The number of processes (1 without a process group)."""
    return rank_world()[1]


def is_main() -> bool:
    """True on the process that writes files and prints (rank 0, or the only process)."""
    return rank() == 0


# ----------------------------------------------------------------------------- collectives
def barrier() -> None:
    if is_distributed():
        dist.barrier()


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum of ``t`` over the ranks, in place (the identity with one process)."""
    if is_distributed():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


# ----------------------------------------------------------------------------- sharding analyses
SHARDING = ("auto", True, False)


def use_sharding(distributed: bool | str = "auto") -> bool:
    """Whether an analysis called with ``distributed=...`` splits its items over the ranks.

    ``"auto"``: when a process group with more than one process is initialised (torchrun +
    :func:`setup`); ``True``: the same, but a process group must exist; ``False``: every rank
    computes everything (e.g. when each rank analyses a different model).
    """
    if isinstance(distributed, str) and distributed != "auto" or not isinstance(distributed, bool | str):
        raise ValueError(f"distributed={distributed!r}; choose one of {SHARDING}")
    if distributed is True and not (dist.is_available() and dist.is_initialized()):
        raise ValueError("distributed=True but torch.distributed is not initialised: launch with torchrun and "
                         "call hdvit_lib.distributed.setup() first, or pass distributed='auto'")
    return distributed is not False and is_distributed()


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


# ----------------------------------------------------------------------------- sharding training data
def _like(loader: DataLoader, dataset, batch_size: int, sampler=None) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        drop_last=loader.drop_last,
        worker_init_fn=loader.worker_init_fn,
        persistent_workers=loader.persistent_workers if loader.num_workers > 0 else False,
    )


def shard_train_loader(loader: DataLoader, global_batch: int, seed: int) -> DataLoader:
    """The same data split across ranks: a ``DistributedSampler`` and ``global_batch / N`` per rank.

    Rank ``r`` of ``N`` reads samples ``r, r + N, ...`` of the (seeded, per-epoch shuffled)
    order, so the union over ranks of their ``k``-th batches is the ``k``-th global batch.
    """
    n = world_size()
    if hasattr(loader, "shard"):  # hdvit_lib.data.device_loader.DeviceLoader: same split, on the device
        return loader.shard(rank(), n, global_batch)
    if global_batch % n:
        raise ValueError(f"batch_size={global_batch} does not split across {n} processes; use a multiple of {n}")
    shuffle = isinstance(loader.sampler, RandomSampler)
    sampler = DistributedSampler(loader.dataset, num_replicas=n, rank=rank(), shuffle=shuffle, seed=seed)
    return _like(loader, loader.dataset, global_batch // n, sampler)


def shard_eval_loader(loader: DataLoader) -> DataLoader:
    """Rank ``r`` evaluates samples ``r, r + N, ...`` (no padding: sums over ranks are exact)."""
    n = world_size()
    return _like(loader, Subset(loader.dataset, range(rank(), len(loader.dataset), n)), loader.batch_size or 1)
