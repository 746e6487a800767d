"""The model zoo: trained models by name, from the cache (:func:`load_or_train`).

``load_or_train`` lives in ``hdvit_lib.train.cache``; it is re-exported here so chapters import
every model from one place; ``plan`` says what a chapter will train and for how long on this
device; ``load_pretrained`` (the authors' CIFAR-100 checkpoints) lives in
``hdvit_lib.pretrained``.
"""

from hdvit_lib.pretrained import list_pretrained, load_official, load_pretrained
from hdvit_lib.train.cache import (
    Trained,
    cache_key,
    default_cache_dir,
    load_or_train,
    run_config,
)
from hdvit_lib.train.plan import Plan, plan

__all__ = [
    "Plan",
    "Trained",
    "cache_key",
    "default_cache_dir",
    "list_pretrained",
    "load_official",
    "load_or_train",
    "load_pretrained",
    "plan",
    "run_config",
]
