"""hdvit_lib.notebook: preset resolution message, plotly renderer for the static site."""

from __future__ import annotations

import plotly.graph_objects as go
import plotly.io as pio
import pytest
import torch

from hdvit_lib import notebook


@pytest.fixture(autouse=True)
def _restore_renderer(monkeypatch: pytest.MonkeyPatch):
    before = pio.renderers.default
    for k in notebook.RENDERER_ENVS:
        monkeypatch.delenv(k, raising=False)
    yield
    pio.renderers.default = before


def test_setup_resolves_preset_and_reports(capsys: pytest.CaptureFixture[str]) -> None:
    cfg = notebook.setup("smoke", seed=3)
    out = capsys.readouterr().out
    assert cfg["name"] == "smoke" and cfg["device"] in {"cpu", "cuda"}
    assert "preset 'smoke'" in out and "device:" in out
    a = torch.rand(3)
    notebook.setup("smoke", seed=3, verbose=False)
    assert torch.equal(a, torch.rand(3))  # seeded identically


def test_auto_says_what_it_chose() -> None:
    msg = notebook.describe_preset("auto")
    expected = "gpu" if torch.cuda.is_available() else "cpu"
    assert f"-> '{expected}'" in msg and "CUDA" in msg


def test_auto_picks_gpu_on_cuda_and_the_presets_weights(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """On a (simulated) CUDA device, auto is the gpu preset (never paper), whose default is the authors'
    checkpoints; smoke and cpu keep training their own; an explicit weights wins."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Tesla T4")
    assert "-> 'gpu'" in notebook.describe_preset("auto")
    cfg = notebook.setup("auto", seed=None)
    assert cfg["name"] == "gpu" and cfg["weights"] == "official" and cfg["device"] == "cuda"
    assert "the authors' checkpoints where they fit" in capsys.readouterr().out
    assert notebook.setup("auto", seed=None, weights="trained", verbose=False)["weights"] == "trained"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert notebook.setup("auto", seed=None, verbose=False)["weights"] == "trained"  # cpu
    assert notebook.setup("smoke", seed=None, verbose=False)["weights"] == "trained"


def test_unknown_preset_and_renderer_name_the_choices() -> None:
    with pytest.raises(ValueError, match="smoke, cpu, gpu, paper, auto"):
        notebook.setup("fast")
    with pytest.raises(ValueError, match="hdvit_book"):
        notebook.plotly_renderer("no_such_renderer")


def test_book_renderer_inlines_no_cdn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HDVIT_PLOTLY_RENDERER", notebook.BOOK_RENDERER)
    assert notebook.plotly_renderer() == notebook.BOOK_RENDERER
    bundle = pio.renderers[notebook.BOOK_RENDERER].to_mimebundle(go.Figure(go.Scatter(y=[1, 2])).to_dict())
    html = bundle["text/html"]
    assert "plotly-graph-div" in html and "Plotly.newPlot" in html
    assert "<script src" not in html and "https://" not in html.split("Plotly.newPlot")[0]
    # plotly's own notebook renderer adds a CDN MathJax script: the reason for ours
    ref = pio.renderers["notebook"].to_mimebundle(go.Figure().to_dict())["text/html"]
    assert "cdn" in ref.lower()
