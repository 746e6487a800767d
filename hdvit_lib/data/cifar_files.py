"""Write tiny CIFAR-10/100 files in the exact format of the real archives (for offline tests).

The real ``cifar-10-batches-py`` / ``cifar-100-python`` files were pickled by Python 2: dict keys and
label names are py2 ``str`` (pickle opcodes ``SHORT_BINSTRING``/``BINSTRING``), and ``data`` is a
numpy uint8 array ``(N, 3072)`` (rows: 1024 red, 1024 green, 1024 blue values, row-major) pickled
through ``numpy.core.multiarray._reconstruct`` with its raw bytes as a py2 ``str``. torchvision reads
them with ``pickle.load(f, encoding="latin1")``, which turns py2 ``str`` into ``str`` — a file
written by Python 3's pickle (``bytes`` keys) would not load. Python 3 cannot emit those opcodes
through its public API, so a small subclass of the pure-Python pickler does it here.
"""

from __future__ import annotations

import hashlib
import pickle
import struct
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

CIFAR10_DIR = "cifar-10-batches-py"
CIFAR100_DIR = "cifar-100-python"
CIFAR10_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]


class _Py2Str(bytes):
    """Bytes to be pickled as a Python-2 ``str`` (``encoding="latin1"`` loads them as ``str``)."""


class _Global:
    """A reference to ``module.name``, written as a protocol-0 ``GLOBAL`` opcode."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __call__(self, *args: Any) -> Any:  # pickle's save_reduce insists on a callable
        raise TypeError("a pickle-only placeholder")


class _Py2Reduce:
    """An object pickled as ``REDUCE(func, args)`` then ``BUILD(state)``."""

    def __init__(self, func: Any, args: tuple, state: Any) -> None:
        self.rv = (func, args, state)

    def __reduce__(self) -> tuple:
        return self.rv


def _s(text: str) -> _Py2Str:
    return _Py2Str(text.encode("latin1"))


def _py2_array(a: np.ndarray) -> _Py2Reduce:
    """A uint8 array reduced the way numpy did under Python 2."""
    a = np.ascontiguousarray(a, dtype=np.uint8)
    dtype = _Py2Reduce(
        _Global("numpy", "dtype"),
        (_s("u1"), 0, 1),
        (3, _s("|"), None, None, None, -1, -1, 0),
    )
    return _Py2Reduce(
        _Global("numpy.core.multiarray", "_reconstruct"),
        (_Global("numpy", "ndarray"), (0,), _s("b")),
        (1, a.shape, dtype, False, _Py2Str(a.tobytes())),
    )


class _Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]  # the pure-Python pickler
    dispatch: ClassVar[dict] = dict(pickle._Pickler.dispatch)  # type: ignore[attr-defined]

    def save_py2str(self, obj: _Py2Str) -> None:
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + bytes(obj))
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + bytes(obj))
        self.memoize(obj)

    def save_global_ref(self, obj: _Global) -> None:
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode("ascii"))

    dispatch[_Py2Str] = save_py2str
    dispatch[_Global] = save_global_ref


def _dump(obj: dict, path: Path) -> str:
    """Write ``obj`` (str keys -> py2 str) as a protocol-2 pickle; return its MD5."""

    def conv(v: Any) -> Any:
        if isinstance(v, str):
            return _s(v)
        if isinstance(v, np.ndarray):
            return _py2_array(v)
        if isinstance(v, list):
            return [conv(x) for x in v]
        return v

    with open(path, "wb") as f:
        _Py2Pickler(f, protocol=2).dump({_s(k): conv(v) for k, v in obj.items()})
    return hashlib.md5(path.read_bytes()).hexdigest()


def _flat(images: np.ndarray) -> np.ndarray:
    """``(N, 32, 32, 3)`` HWC uint8 -> CIFAR rows ``(N, 3072)`` (all red, all green, all blue)."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(len(images), -1))


def write_cifar10(
    root: str | Path,
    train: tuple[np.ndarray, list[int]],
    test: tuple[np.ndarray, list[int]],
) -> dict[str, str]:
    """Write ``root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}``.

    ``train``/``test``: (uint8 images ``(N, 32, 32, 3)``, labels in 0..9). The training images are
    split over the five batch files in order. Returns ``{file name: MD5}``.
    """
    d = Path(root) / CIFAR10_DIR
    d.mkdir(parents=True, exist_ok=True)
    md5 = {}
    images, labels = train
    parts = np.array_split(np.arange(len(images)), 5)
    for k, (name, idx) in enumerate(zip(CIFAR10_TRAIN, parts)):
        md5[name] = _dump(
            {
                "batch_label": f"training batch {k + 1} of 5",
                "labels": [int(labels[i]) for i in idx],
                "data": _flat(images[idx]),
                "filenames": [f"img_{i}.png" for i in idx],
            },
            d / name,
        )
    md5["test_batch"] = _dump(
        {
            "batch_label": "testing batch 1 of 1",
            "labels": [int(v) for v in test[1]],
            "data": _flat(test[0]),
            "filenames": [f"test_{i}.png" for i in range(len(test[0]))],
        },
        d / "test_batch",
    )
    names = [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ]
    md5["batches.meta"] = _dump(
        {"num_cases_per_batch": 10000, "label_names": names, "num_vis": 3072},
        d / "batches.meta",
    )
    return md5


def write_cifar100(
    root: str | Path,
    train: tuple[np.ndarray, list[int]],
    test: tuple[np.ndarray, list[int]],
) -> dict[str, str]:
    """Write ``root/cifar-100-python/{train, test, meta}`` (fine labels 0..99; coarse = fine // 5)."""
    d = Path(root) / CIFAR100_DIR
    d.mkdir(parents=True, exist_ok=True)
    md5 = {}
    for name, (images, labels) in (("train", train), ("test", test)):
        md5[name] = _dump(
            {
                "filenames": [f"{name}_{i}.png" for i in range(len(images))],
                "batch_label": f"{name}ing batch 1 of 1",
                "fine_labels": [int(v) for v in labels],
                "coarse_labels": [int(v) // 5 for v in labels],
                "data": _flat(images),
            },
            d / name,
        )
    md5["meta"] = _dump(
        {
            "fine_label_names": [f"class_{i}" for i in range(100)],
            "coarse_label_names": [f"super_{i}" for i in range(20)],
        },
        d / "meta",
    )
    return md5
