"""ipywidgets controls for a live kernel: pick a value, see (or recompute) its figure.

On the static site widgets render but their callbacks never run (no kernel), so every control here
has a plotly twin in the chapter (a slider over precomputed results, e.g.
``hdvit_lib.plots.hessian.plot_spectrum_sweep``). These controls add what the static page cannot:
values that were not precomputed, computed on demand by a library function and cached.

Nothing here runs a computation when the control is built (papermill executes chapters without
anyone touching the controls): work happens only when a reader moves a control. The chapters'
controls (:func:`model_picker`, :func:`live_sweep_control`) compute with the chapter's own steps
(``hdvit_lib.experiments``), imported when a control is built.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

__all__ = ["LiveControl", "live_control", "live_sweep_control", "model_picker"]


class LiveControl:
    """A selection slider (or dropdown) and an output area; moving it shows ``render(result)`` for
    the chosen value, where ``result = compute(value)`` unless ``value`` is already in the cache.

    ``cache`` starts as ``precomputed`` (value -> result) and keeps every computed result.
    ``calls`` counts the calls of ``compute`` (tests use it). ``widget`` is the ipywidgets box to
    display (``_ipython_display_`` shows it).
    """

    def __init__(
        self,
        values: Sequence[Hashable],
        compute: Callable[[Any], Any],
        render: Callable[[Any], Any] | None = None,
        description: str = "value",
        precomputed: Mapping[Hashable, Any] | None = None,
        value: Hashable | None = None,
        kind: str = "slider",
    ) -> None:
        import ipywidgets as w

        values = list(values)
        if not values:
            raise ValueError("values is empty: pass the choices the control offers")
        if kind not in ("slider", "dropdown"):
            raise ValueError(f"kind={kind!r} is not one of ('slider', 'dropdown')")
        if value is not None and value not in values:
            raise ValueError(f"value={value!r} is not one of the choices {values}")
        self.values = values
        self.kind = kind
        self.compute = compute
        self.render = render if render is not None else (lambda r: r)
        self.cache: dict[Hashable, Any] = dict(precomputed or {})
        self.calls = 0
        options = [(str(v), v) for v in values]
        start = value if value is not None else values[0]
        if kind == "slider":
            self.control = w.SelectionSlider(options=options, value=start, description=description,
                                             continuous_update=False)
        else:
            self.control = w.Dropdown(options=options, value=start, description=description)
        self.status = w.HTML(value=self._hint(start))
        self.output = w.Output()
        self.control.observe(self._on_change, names="value")
        self.widget = w.VBox([self.control, self.status, self.output])

    def _hint(self, value: Hashable) -> str:
        cached = "precomputed" if value in self.cache else "not computed yet"
        verb = "move the slider" if self.kind == "slider" else "pick another"
        return (f"<i>live control (needs a running kernel): {value} is {cached}; {verb} to "
                "show a value, computing it if needed</i>")

    def result(self, value: Hashable) -> Any:
        """The result for ``value``: from the cache, else ``compute(value)`` (then cached)."""
        if value not in self.cache:
            self.calls += 1
            self.cache[value] = self.compute(value)
        return self.cache[value]

    def show(self, value: Hashable) -> None:
        """Compute (if needed) and display ``value``'s figure in the output area."""
        from IPython.display import display

        if value not in self.values:
            raise ValueError(f"value={value!r} is not one of the choices {self.values}")
        fresh = value not in self.cache
        if fresh:
            self.status.value = f"<i>computing {value} ...</i>"
        res = self.result(value)
        self.output.clear_output(wait=True)
        with self.output:
            display(self.render(res))
        self.status.value = f"<i>{value}: {'computed now' if fresh else 'from the cache'}</i>"

    def _on_change(self, change: dict[str, Any]) -> None:
        self.show(change["new"])

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def live_control(
    values: Sequence[Hashable],
    compute: Callable[[Any], Any],
    render: Callable[[Any], Any] | None = None,
    description: str = "value",
    precomputed: Mapping[Hashable, Any] | None = None,
    value: Hashable | None = None,
    kind: str = "slider",
) -> LiveControl:
    """A :class:`LiveControl`: choose one of ``values``; its result is ``precomputed[value]`` or
    ``compute(value)`` (run on demand, in the kernel, then cached) and is shown as ``render(result)``
    (default: the result itself, e.g. a plotly Figure). Builds no result at construction time.
    """
    return LiveControl(values, compute, render, description, precomputed, value, kind)


def model_picker(
    analyse: Callable[[Mapping[str, Any]], Mapping[str, Any]],
    plot: Callable[[Mapping[str, Any]], Any],
    cfg: dict[str, Any],
    batches: Any,
    precomputed: Mapping[str, Any],
    seed: int = 0,
) -> LiveControl:
    """A live-kernel dropdown over every zoo model (chapters 02, 08-10): shows ``plot({name: result})``
    for the chosen model, where ``result`` is precomputed or computed on demand (train/load from the
    cache, one feature pass: ``experiments.representation.features_by_model``, then ``analyse``, e.g.
    ``variance_by_model``). The chapter's plotly dropdown is its static-site twin."""
    from hdvit_lib.experiments import representation as rep
    from hdvit_lib.models import REGISTRY_NAMES

    def compute(name: str) -> Any:
        features = rep.features_by_model(rep.train_models([name], cfg, seed=seed), batches, cfg)
        return analyse(features)[name]

    first = next(iter(precomputed), REGISTRY_NAMES[0])
    names = list(dict.fromkeys([*REGISTRY_NAMES, *precomputed]))  # e.g. the ImageNet models
    return live_control(names, compute, render=lambda r: plot({r.model: r}),
                        description="model", precomputed=precomputed, value=first, kind="dropdown")


def live_sweep_control(cfg: dict[str, Any], model: str, setting: str, values: Sequence[Any],
                       batches: Any, precomputed: Mapping[Any, Any] | None = None,
                       seed: int = 0, tag: int | str = "final", kind: str = "slider") -> LiveControl:
    """An ipywidgets slider (``kind="dropdown"``: a dropdown) over ``values`` of ``setting`` (e.g.
    ``patch_size``, ``window``, ``global_pool``; chapters 05-07): shows the precomputed Hessian
    spectrum, or trains/loads the model and computes it at snapshot ``tag`` live (needs a kernel;
    ``experiments.landscape.sweep_spectrum``, drawn by ``plots.hessian.live_spectrum_control``)."""
    from hdvit_lib.experiments.landscape import sweep_spectrum
    from hdvit_lib.plots.hessian import live_spectrum_control

    compute = functools.partial(sweep_spectrum, cfg=cfg, model=model, setting=setting, batches=batches,
                                seed=seed, tag=tag)
    return live_spectrum_control(values, compute, setting, precomputed, tag, kind)
