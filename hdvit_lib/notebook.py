"""Helpers that every chapter notebook calls first (and nothing else).

A chapter's parameters cell holds ``preset = "auto"``; papermill passes ``"smoke"`` when the book is
built. ``setup(preset)`` then resolves the preset, picks a plotly renderer that survives the build
(the ``plotly_mimetype`` output that plotly chooses inside a kernel is dropped by myst-nb, so the
book build sets ``PLOTLY_RENDERER=notebook``, which inlines plotly.js and works offline), seeds the
random generators and says what it chose, so that a reader sees at once what the run will cost,
and which run made the chapter's figures (:func:`run_line`: preset, data, epochs, device, date,
library commit).

``$HDVIT_PRESET_OVERRIDES`` (a JSON object of preset keys, e.g. ``{"epochs": 1, "n_train": 64}``)
changes the preset for the whole process (:func:`apply_overrides`); ``setup`` prints it. The
paper-size chapter test (``tests/test_paper_size.py``) uses it to run every chapter with the ``gpu``
and ``paper`` presets' models, dtypes and data pipeline in a few steps on a CPU.
"""

from __future__ import annotations

import datetime
import functools
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hdvit_lib import __version__, presets
from hdvit_lib.presets import get_preset, resolve

#: JSON object of preset keys applied on top of the chosen preset (:func:`preset_overrides`).
OVERRIDES_ENV = "HDVIT_PRESET_OVERRIDES"

#: Environment variables that fix plotly's renderer: ours first (it may name ``hdvit_book``),
#: then plotly's own (read by plotly at import, so it may only name plotly's renderers).
RENDERER_ENVS = ("HDVIT_PLOTLY_RENDERER", "PLOTLY_RENDERER")
BOOK_RENDERER = "hdvit_book"


def _register_book_renderer() -> None:
    """Add ``hdvit_book`` to plotly's renderers (idempotent)."""
    import plotly.io as pio
    from plotly.io.base_renderers import NotebookRenderer

    if BOOK_RENDERER in pio.renderers:
        return

    class BookRenderer(NotebookRenderer):
        """Plotly's offline notebook renderer (plotly.js inlined once per notebook), minus the
        MathJax ``<script src>`` from a CDN that ``NotebookRenderer`` adds to every figure."""

        def to_mimebundle(self, fig_dict: dict) -> dict:
            html = pio.to_html(
                fig_dict,
                config=self.config,
                auto_play=self.auto_play,
                include_plotlyjs=False,
                include_mathjax=False,
                full_html=False,
                animation_opts=self.animation_opts,
                default_width="100%",
                default_height=525,
                validate=False,
            )
            return {"text/html": html}

    pio.renderers[BOOK_RENDERER] = BookRenderer(connected=False)


def in_colab() -> bool:
    """True inside Google Colab."""
    return "google.colab" in sys.modules


def plotly_renderer(renderer: str | None = None) -> str:
    """Set and return plotly's default renderer.

    Order: the ``renderer`` argument, then ``$HDVIT_PLOTLY_RENDERER``, ``$PLOTLY_RENDERER``, then
    ``"colab"`` inside Colab, else plotly's own choice (``plotly_mimetype`` in Jupyter, which renders
    in JupyterLab and VS Code). ``hdvit_book`` is the renderer for the static site.
    """
    import plotly.io as pio

    _register_book_renderer()
    env = next((os.environ[k] for k in RENDERER_ENVS if os.environ.get(k)), None)
    choice = renderer or env or ("colab" if in_colab() else None)
    if choice:
        valid = list(pio.renderers)
        for part in choice.split("+"):
            if part not in valid:
                raise ValueError(f"plotly renderer {part!r} is unknown; choose one of {', '.join(valid)}")
        pio.renderers.default = choice
    return str(pio.renderers.default)


def describe_preset(name: str) -> str:
    """One line saying which preset ``name`` resolves to, and why (for ``auto``)."""
    resolved = resolve(name)
    if name == "auto":
        why = "a CUDA GPU is present" if torch.cuda.is_available() else "no CUDA GPU was found"
        return (f"preset 'auto' -> '{resolved}' ({why}; pass preset='smoke'|'cpu'|'gpu'|'paper' to choose; "
                "'paper' is the authors' full 300-epoch recipe)")
    return f"preset '{resolved}'"


def preset_overrides(text: str | None = None) -> dict[str, Any]:
    """The preset overrides in ``text`` (default ``$HDVIT_PRESET_OVERRIDES``): a JSON object of preset
    keys; ``{}`` when unset or empty. Invalid JSON or another JSON type raises, quoting the text."""
    raw = os.environ.get(OVERRIDES_ENV, "") if text is None else text
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"${OVERRIDES_ENV} is not valid JSON ({e}): {raw!r}") from None
    if not isinstance(value, dict):
        raise TypeError(f"${OVERRIDES_ENV} must be a JSON object of preset keys, e.g. '{{\"epochs\": 1}}'; "
                         f"got {raw!r}")
    return value


def apply_overrides(name: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """Make ``overrides`` part of preset ``name`` (``auto`` resolved) for the rest of this process.

    Validated by ``get_preset(name, **overrides)`` (an unknown key raises, naming the valid ones),
    then written into ``hdvit_lib.presets.PRESETS``: the model cache (whose key holds every training
    setting, so overridden runs are their own entries), the training plan and the loaders, which all
    read the preset by name, see the same settings as the chapter. Returns the resulting preset."""
    cfg = get_preset(name, **overrides)
    presets.PRESETS[cfg["name"]].update(overrides)
    return cfg


@functools.cache
def library_commit() -> str:
    """``git describe --always --dirty`` of the checkout that holds ``hdvit_lib``, else
    ``"hdvit_lib <version>"`` (an installed package, e.g. on Colab without git metadata)."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--tags"], cwd=here, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out = ""
    return f"commit {out}" if out else f"hdvit_lib {__version__}"


def run_line(cfg: dict[str, Any], now: datetime.datetime | None = None) -> str:
    """One line saying which run made a chapter's figures: preset, data, epochs, device, date
    (UTC) and the library's commit (:func:`library_commit`)."""
    now = now or datetime.datetime.now(datetime.UTC)
    n_train, n_test = cfg.get("n_train"), cfg.get("n_test")
    data = cfg["dataset"] if n_train is None and n_test is None else (
        f"{cfg['dataset']} ({n_train or 'all'} training / {n_test or 'all'} test images)")
    model = "tiny models" if cfg.get("tiny") else "paper-size models"
    return (f"This run: preset {cfg['name']}, {data}, {model}, {cfg['epochs']} epochs, device {cfg['device']}, "
            f"{now:%Y-%m-%d %H:%M} UTC, {library_commit()}")


def setup(
    preset: str = "auto",
    *,
    seed: int | None = 0,
    weights: str | None = None,
    renderer: str | None = None,
    verbose: bool = True,
) -> dict[str, Any]:
    """Prepare a chapter: resolve ``preset``, set the plotly renderer, seed, report the device.

    ``weights``: ``"official"`` makes the chapter use the authors' CIFAR-100 checkpoints where they
    fit (``gpu`` and ``paper`` presets, where it is the default; see
    ``hdvit_lib.experiments.common.train_runs``), ``"trained"`` trains every model here; ``None``:
    the preset's. ``$HDVIT_PRESET_OVERRIDES`` (JSON) overrides preset keys for this process
    (:func:`apply_overrides`) and is printed.
    Returns the preset's settings (``hdvit_lib.presets.get_preset``) with ``device`` added
    (``"cuda"`` when a GPU is present, else ``"cpu"``).
    """
    overrides = preset_overrides()
    if overrides:
        apply_overrides(preset, overrides)
    cfg = get_preset(preset, **({} if weights is None else {"weights": weights}))
    cfg["device"] = "cuda" if torch.cuda.is_available() else "cpu"
    used_renderer = plotly_renderer(renderer)
    if seed is not None:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
    if verbose:
        gpu = f" ({torch.cuda.get_device_name(0)})" if cfg["device"] == "cuda" else ""
        print(describe_preset(preset) + ("; the authors' checkpoints where they fit" if cfg["weights"] == "official" else ""))
        print(
            f"device: {cfg['device']}{gpu}; torch {torch.__version__}; hdvit_lib {__version__}; "
            f"plotly renderer: {used_renderer}"
        )
        if overrides:
            print(f"preset overrides from ${OVERRIDES_ENV}: {json.dumps(overrides, sort_keys=True)}")
        print(run_line(cfg))
    return cfg
