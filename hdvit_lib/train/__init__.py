"""Training: one loop (:func:`train`), the schedule, atomic checkpoints, and the model cache
(:func:`load_or_train`, re-exported by ``hdvit_lib.zoo``)."""

from hdvit_lib.train.cache import Trained, cache_key, default_cache_dir, load_or_train
from hdvit_lib.train.history import History
from hdvit_lib.train.loop import TRAIN_KEYS, evaluate, snapshot_epochs, train
from hdvit_lib.train.schedule import make_scheduler, warmup_cosine

__all__ = [
    "TRAIN_KEYS",
    "History",
    "Trained",
    "cache_key",
    "default_cache_dir",
    "evaluate",
    "load_or_train",
    "make_scheduler",
    "snapshot_epochs",
    "train",
    "warmup_cosine",
]
