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


def test_setup_says_which_run_made_the_figures(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """One line at the top of every chapter: preset, data, epochs, device, date, library commit."""
    import datetime

    monkeypatch.delenv(notebook.OVERRIDES_ENV, raising=False)
    cfg = notebook.setup("smoke", seed=None)
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("This run:"))
    assert "preset smoke" in line and f"synthetic ({cfg['n_train']} training / {cfg['n_test']} test images)" in line
    assert f"tiny models, {cfg['epochs']} epochs" in line and f"device {cfg['device']}" in line
    commit = notebook.library_commit()
    assert line.endswith(commit) and (commit.startswith("commit ") or commit == "hdvit_lib 0.1.0")
    when = datetime.datetime(2026, 1, 2, 3, 4, tzinfo=datetime.UTC)
    paper = {**notebook.get_preset("paper"), "device": "cuda"}
    assert notebook.run_line(paper, when).startswith(
        "This run: preset paper, cifar100, paper-size models, 300 epochs, device cuda, 2026-01-02 03:04 UTC, ")


def test_preset_overrides_reach_the_cache_key(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """$HDVIT_PRESET_OVERRIDES changes the preset for the process: setup prints it, and the zoo (which
    reads the preset by name) trains with it, in an entry of its own."""
    import copy

    from hdvit_lib import presets
    from hdvit_lib.train.cache import run_config

    monkeypatch.setattr(presets, "PRESETS", copy.deepcopy(presets.PRESETS))
    before = run_config("vit_ti", "gpu")
    monkeypatch.setenv(notebook.OVERRIDES_ENV, '{"epochs": 2, "n_train": 64, "batch_size": 8}')
    cfg = notebook.setup("gpu", seed=None)
    out = capsys.readouterr().out
    assert (cfg["epochs"], cfg["n_train"], cfg["batch_size"], cfg["tiny"]) == (2, 64, 8, False)
    assert 'preset overrides from $HDVIT_PRESET_OVERRIDES: {"batch_size": 8, "epochs": 2, "n_train": 64}' in out
    assert "This run: preset gpu, cifar100 (64 training / all test images), paper-size models, 2 epochs" in out
    after = run_config("vit_ti", "gpu")
    assert after["train"]["epochs"] == 2 and after["train"]["n_train"] == 64 and after != before
    assert presets.get_preset("paper")["epochs"] == 300  # only the chosen preset


@pytest.mark.parametrize("text, said", [("{epochs: 1}", "not valid JSON"), ("[1]", "JSON object"),
                                        ('{"epoch": 1}', "'epoch' is not a preset setting; valid:")])
def test_bad_overrides_say_why(text: str, said: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import copy

    from hdvit_lib import presets

    monkeypatch.setattr(presets, "PRESETS", copy.deepcopy(presets.PRESETS))
    monkeypatch.setenv(notebook.OVERRIDES_ENV, text)
    with pytest.raises((ValueError, TypeError), match=said):
        notebook.setup("smoke", seed=None, verbose=False)
    assert notebook.preset_overrides("") == {}
