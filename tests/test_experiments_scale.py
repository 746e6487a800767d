"""Chapter 14's glue: claim metrics along training equal the analyses applied to each snapshot; the
table reads the first epoch from which a claim holds; curves round-trip through JSON."""

from __future__ import annotations

import numpy as np
import torch

from hdvit_lib.analysis import claim_curves as CC
from hdvit_lib.analysis.fourier import fourier_analysis
from hdvit_lib.analysis.hessian import spectrum_summary
from hdvit_lib.analysis.landscape import landscape_curvature, loss_landscape
from hdvit_lib.analysis.robustness import band_means, frequency_robustness
from hdvit_lib.analysis.spectra import hessian_spectrum
from hdvit_lib.analysis.variance import feature_map_variance
from hdvit_lib.experiments import scale as S
from hdvit_lib.models import get_model
from hdvit_lib.plots.scale import plot_over_scale, plot_over_training
from hdvit_lib.presets import get_preset
from hdvit_lib.train.history import History


class ToyTrained:
    """The part of zoo.Trained the chapter uses: model, history, snapshots(), snapshot(epoch)."""

    def __init__(self, model, snaps, acc):
        self.model, self._snaps = model, snaps
        self.history = History(epoch=list(range(1, len(acc) + 1)), test_acc=list(acc))

    def snapshots(self):
        return sorted(self._snaps)

    def snapshot(self, tag):
        return self._snaps[tag]


def _toy():
    torch.manual_seed(0)
    model = get_model("vit_ti", tiny=True, depth=1, embed_dim=16, patch_size=8).eval()
    s0 = {k: v.clone() for k, v in model.state_dict().items()}
    s2 = {k: v + 0.1 * torch.randn_like(v) if v.is_floating_point() else v for k, v in s0.items()}
    g = torch.Generator().manual_seed(1)
    data = {"images": [(torch.randn(8, 3, 32, 32, generator=g), torch.randint(0, 10, (8,), generator=g))],
            "hessian": [(torch.randn(4, 3, 32, 32, generator=g), torch.randint(0, 10, (4,), generator=g))],
            "landscape": [(torch.randn(4, 3, 32, 32, generator=g), torch.randint(0, 10, (4,), generator=g))]}
    cfg = get_preset("smoke", hessian_k=1)
    cfg["hessian_steps"] = 3
    cfg["analysis_scale"] = {**cfg["analysis_scale"], "landscape_points": 3}
    return model, {0: s0, 2: s2}, data, cfg


def test_metrics_along_training_equal_the_analyses_on_each_snapshot() -> None:
    model, snaps, data, cfg = _toy()
    curves = S.over_training({"vit": ToyTrained(model, snaps, [0.3, 0.4])}, cfg, data)
    assert list(curves.x["vit"]) == [0.0, 2.0] and curves.msa["vit"]
    assert curves.x_labels["vit"][0] == "0 (init)" and np.isnan(curves.accuracy["vit"][0])
    assert curves.accuracy["vit"][1] == 0.4
    for i, e in enumerate((0, 2)):
        m = get_model("vit_ti", tiny=True, depth=1, embed_dim=16, patch_size=8).eval()
        m.load_state_dict(snaps[e])
        var, fou = feature_map_variance(m, data["images"]), fourier_analysis(m, data["images"])
        k = np.array(fou.kinds)
        spec = spectrum_summary(hessian_spectrum(m, data["hessian"], cfg))
        land = loss_landscape(m, data["landscape"], n_points=3, weight_decay=cfg["weight_decay"], progress=False)
        lo, hi = band_means(frequency_robustness(m, data["images"], magnitude=cfg["analysis_noise_eps"]))
        want = {
            "variance: MSA lowered": var.msa_reduce_fraction,
            "variance: Conv/MLP raised": var.conv_mlp_increase_fraction,
            "high freq: MSA change": np.nanmean(fou.high_frequency_delta[k == "msa"]),
            "high freq: Conv/MLP change": np.nanmean(fou.high_frequency_delta[k == "mlp"]),
            "NEP": spec["NEP"], "APE": spec["APE"], "curvature": landscape_curvature(land),
            "robustness: high - low": hi - lo,
        }
        for key, v in want.items():
            np.testing.assert_allclose(curves.values[key]["vit"][i], v, rtol=1e-6, atol=1e-9, err_msg=key)


def _hand_curves(nep_vit, nep_cnn) -> CC.ClaimCurves:
    n = len(nep_vit)
    base = {k: {"cnn": np.full(n, np.nan), "vit": np.full(n, np.nan)} for k in CC.METRICS}
    base["NEP"] = {"cnn": np.asarray(nep_cnn, float), "vit": np.asarray(nep_vit, float)}
    base["variance: MSA lowered"]["vit"] = np.linspace(0.2, 0.8, n)  # > 1/2 from the 3rd of 5 points on
    base["variance: Conv/MLP raised"]["cnn"] = np.full(n, 0.9)
    labels = [str(e) for e in range(n)]
    x = {m: np.arange(n, dtype=float) for m in ("cnn", "vit")}
    return CC.ClaimCurves("epoch", ["cnn", "vit"], {"cnn": False, "vit": True}, x, {"cnn": labels, "vit": labels},
                         base, {m: np.full(n, np.nan) for m in ("cnn", "vit")}, 8)


def test_table_reads_the_first_epoch_from_which_a_claim_holds() -> None:
    c = _hand_curves(nep_vit=[0.1, 0.3, 0.1, 0.4, 0.5], nep_cnn=[0.2, 0.2, 0.2, 0.2, 0.2])
    m = S.margins(c)
    np.testing.assert_allclose(m["ViT has more negative eigenvalues (Fig. 4)"], [-0.1, 0.1, -0.1, 0.2, 0.3])
    assert CC.first_holding(m["ViT has more negative eigenvalues (Fig. 4)"], c.x_labels["vit"]) == "3"
    assert CC.first_holding(m["MSAs lower variance, Convs/MLPs raise it (Fig. 9)"], c.x_labels["vit"]) == "3"
    assert CC.first_holding(np.array([0.1, -0.2]), ["a", "b"]) == "held at a, not at the last"
    assert CC.first_holding(np.array([np.nan, -0.2]), ["a", "b"]) == "not within this budget"
    table = S.claims_table({"training": c})
    row = next(r for r in table.splitlines() if r.startswith("| ViT has more negative"))
    assert "| 3 |" in row and "towards the paper" in row and "-0.1 → +0.3" in row
    assert table.count("\n") == len(S.CLAIMS) + 1


def test_curves_round_trip_and_plot() -> None:
    c = _hand_curves(nep_vit=[0.1, 0.5], nep_cnn=[0.2, 0.2])
    back = CC.ClaimCurves.from_json(c.to_json())
    assert back.models == c.models and back.msa == c.msa and back.x_labels == c.x_labels
    np.testing.assert_array_equal(back.values["NEP"]["vit"], c.values["NEP"]["vit"])
    np.testing.assert_array_equal(back.x["cnn"], c.x["cnn"])
    fig = plot_over_training(c)
    # two model curves and one snapshot marker per panel; each step moves the markers (data, not only shapes)
    assert len(fig.data) == 3 * len(CC.METRICS) and len(fig.layout.sliders[0].steps) == 2
    step = fig.layout.sliders[0].steps[1]
    assert step.method == "update" and step.args[0]["x"] == [[1.0]] * len(CC.METRICS)
    assert list(step.args[2]) == list(range(2 * len(CC.METRICS), 3 * len(CC.METRICS)))
    refs = [s.y0 for s in fig.layout.shapes]
    assert refs == [0.5, 0.5, 0.0, 0.0, 0.0]  # the paper's thresholds, where it gives one
    assert list(plot_over_scale(c).data[0].x) == ["0", "1"]


def test_scale_runs_cover_both_axes() -> None:
    runs = S.scale_runs(get_preset("smoke"))
    assert list(runs["model size"]) == ["resnet50 | small", "resnet50 | wide", "vit_ti | small", "vit_ti | wide"]
    assert runs["model size"]["vit_ti | wide"]["model_cfg"] == {"embed_dim": 128, "num_heads": 4}
    assert [r["data_fraction"] for r in runs["data fraction"].values()] == [0.5, 1.0, 0.5, 1.0]


def test_runs_without_snapshots_are_refused_and_scale_points_are_trained_here(monkeypatch) -> None:
    """The authors' checkpoints hold final weights only: a curve along training cannot be drawn from
    them (a clear error, not an index error), and a scale axis trains every point with the preset's
    schedule (the default-size point is never the 300-epoch release)."""
    import pytest

    model, snaps, data, cfg = _toy()
    with pytest.raises(ValueError, match='vit: no snapshots.*weights="trained"'):
        S.over_training({"vit": ToyTrained(model, {}, [])}, cfg, data)
    seen = {}

    def fake_train_runs(runs, c, seed, progress):
        seen["weights"] = c["weights"]
        return {label: ToyTrained(model, snaps, [0.5]) for label in runs}

    monkeypatch.setattr(S, "train_runs", fake_train_runs)
    monkeypatch.setattr(S, "claim_metrics", lambda m, d, c, s: {k: 0.0 for k in CC.METRICS})
    curves = S.over_scale({"vit_ti | small": {}, "vit_ti | wide": {}}, "model size",
                          {**cfg, "weights": "official"}, data)
    assert seen["weights"] == "trained" and curves.x_labels["vit_ti"] == ["small", "wide"]


def test_claim_metrics_are_measured_once_per_weights_data_and_settings(monkeypatch) -> None:
    model, snaps, data, cfg = _toy()
    calls = []
    monkeypatch.setattr(CC, "_measure", lambda m, d, c, s: calls.append(1) or {k: float(len(calls)) for k in CC.METRICS})
    monkeypatch.setattr(CC, "_MEASURED", {})
    first = CC.claim_metrics(model, data, cfg)
    assert CC.claim_metrics(model, data, cfg) == first and len(calls) == 1  # same weights: measured once
    model.load_state_dict(snaps[2])
    assert CC.claim_metrics(model, data, cfg)["NEP"] == 2.0  # other weights
    assert CC.claim_metrics(model, data, cfg, seed=1)["NEP"] == 3.0  # another seed
    assert CC.claim_metrics(model, data, {**cfg, "analysis_noise_eps": 9.0})["NEP"] == 4.0  # other settings
    other = {**data, "images": [(x + 1, y) for x, y in data["images"]]}
    assert CC.claim_metrics(model, other, cfg)["NEP"] == 5.0  # other images


def test_data_set_axis_measures_each_model_on_its_own_data_and_tallies_the_margins(monkeypatch) -> None:
    """over_datasets trains each model on each of the preset's data sets (the data set's own classes)
    and measures it with that data set's batches; dataset_choice counts, per claim, the data set
    with the larger margin; a preset without offline sets gives None."""
    _model, snaps, data, cfg = _toy()
    trained_with, measured_with = [], []

    def fake_train_runs(runs, c, seed, progress):
        trained_with.append((c["dataset"], c["num_classes"], c["weights"]))
        return {label: ToyTrained(get_model("vit_ti", tiny=True, depth=1, embed_dim=16, patch_size=8), snaps, [0.5])
                for label in runs}

    monkeypatch.setattr(S, "train_runs", fake_train_runs)
    monkeypatch.setattr(S, "scale_data", lambda c, seed: {"images": data["images"], "name": c["dataset"]})
    monkeypatch.setattr(S, "claim_metrics", lambda m, d, c, s: measured_with.append((d["name"], c["dataset"]))
                        or {k: 0.0 for k in CC.METRICS})
    curves = S.over_datasets(["vit_ti"], {**cfg, "weights": "official"})
    assert trained_with == [("synthetic", None, "trained"), ("fractal", None, "trained")]
    assert measured_with == [("synthetic", "synthetic"), ("fractal", "fractal")]
    assert curves.axis == "data set" and curves.x_labels["vit_ti"] == ["synthetic", "fractal"]
    assert S.over_datasets(["vit_ti"], get_preset("paper")) is None

    c = _hand_curves(nep_vit=[0.3, 0.5], nep_cnn=[0.2, 0.2])  # NEP margin 0.1 -> 0.3: the 2nd point
    c.values["variance: MSA lowered"]["vit"] = np.array([0.9, 0.6])  # margin 0.4 -> 0.1: the 1st point
    c.x_labels = {m: ["synthetic", "fractal"] for m in c.models}
    c.accuracy = {"cnn": np.array([0.5, 0.1]), "vit": np.array([0.6, 0.2])}
    words = S.dataset_choice(c)
    assert "synthetic 1, fractal 1 (ahead: neither)" in words  # 4 claims have NaN margins: no vote
    assert "fractal: cnn 0.100, vit 0.200" in words
