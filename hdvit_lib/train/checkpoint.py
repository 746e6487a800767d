"""Atomic checkpoint files and RNG state capture.

Every file is written to a temporary name in the same directory and moved into place with
``os.replace``: an interrupted save leaves the previous file intact and no partial file behind.
Checkpoints hold only tensors and plain containers so that they load with
``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import os
import pickle
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hdvit_lib.errors import unreadable


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file + ``os.replace``)."""
    _atomic(Path(path), lambda fh: fh.write(data))


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save(obj, path)``, atomically: the old file survives any failure mid-save."""
    _atomic(Path(path), lambda fh: torch.save(obj, fh))


def _atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def load(path: str | Path, map_location: Any = "cpu") -> Any:
    """``torch.load`` with ``weights_only=True`` (the only way this library reads checkpoints)."""
    return torch.load(path, map_location=map_location, weights_only=True)


#: What ``torch.load(..., weights_only=True)`` raises for a truncated or foreign file.
READ_ERRORS = (pickle.UnpicklingError, RuntimeError, EOFError, ValueError)


def load_or_explain(path: str | Path, what_to_do: str, map_location: Any = "cpu") -> Any:
    """:func:`load`; a file it cannot read raises :class:`~hdvit_lib.errors.UnreadableCheckpoint`
    naming the file and ``what_to_do`` (never torch's advice to load it unsafely)."""
    try:
        return load(path, map_location)
    except READ_ERRORS as e:
        raise unreadable(path, e, what_to_do) from None


def _sampler_generators(loader: Any) -> list[torch.Generator]:
    gens: list[torch.Generator] = []
    for g in (getattr(loader, "generator", None), getattr(getattr(loader, "sampler", None), "generator", None)):
        if isinstance(g, torch.Generator) and all(g is not h for h in gens):
            gens.append(g)
    return gens


def rng_state(loader: Any = None) -> dict[str, Any]:
    """Python, NumPy, torch (CPU, CUDA) and the loader's generator states, as tensors and lists."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "loader": [g.get_state() for g in _sampler_generators(loader)] if loader is not None else [],
    }
    return state


def set_rng_state(state: dict[str, Any], loader: Any = None) -> None:
    """Restore what :func:`rng_state` captured."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    torch.set_rng_state(state["torch"].cpu())
    if torch.cuda.is_available() and state["cuda"]:
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    if loader is not None:
        for g, s in zip(_sampler_generators(loader), state["loader"]):
            g.set_state(s.cpu())
