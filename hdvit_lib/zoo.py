"""The model zoo: trained models by name, from the cache (:func:`load_or_train`).

``load_or_train`` lives in ``hdvit_lib.train.cache``; it is re-exported here so chapters import
every model from one place.
"""

from hdvit_lib.train.cache import (
    Trained,
    cache_key,
    default_cache_dir,
    load_or_train,
    run_config,
)

__all__ = ["Trained", "cache_key", "default_cache_dir", "load_or_train", "run_config"]
