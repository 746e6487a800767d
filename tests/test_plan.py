"""hdvit_lib.zoo.plan: what a chapter will train and how long it takes here (issue 14).

The arithmetic is checked with a fake timer (a fixed time per step) against a count by hand;
cached runs and the authors' checkpoints are skipped; a plan above a Colab session warns.
"""

from __future__ import annotations

import itertools
import json

import pytest
import torch
from torch import nn

from hdvit_lib import zoo
from hdvit_lib.experiments.common import run_spec, train_runs
from hdvit_lib.presets import get_preset
from hdvit_lib.train import cache
from hdvit_lib.train import plan as P

torch.set_num_threads(1)


def _tiny(name, num_classes, tiny, **kw):
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, num_classes))


def fake_timer(per_step: float, n_steps: int):
    """A clock that advances ``per_step * n_steps`` between the two readings time_steps takes."""
    ticks = itertools.count()
    return lambda: next(ticks) * per_step * n_steps


def test_time_steps_divides_by_the_steps():
    assert P.time_steps(_tiny("x", 10, True), 4, 10, torch.device("cpu"), n=3, timer=fake_timer(0.25, 3)) == 0.25


def test_estimate_is_steps_times_measured_step(tmp_path, monkeypatch):
    """gpu preset (CIFAR-100, 50,000 images, batch 256, 15 epochs): a full run is 15 x 196 steps plus
    15 x 40 test batches at a third of a step; a 10% run 15 x 20 steps."""
    monkeypatch.setattr(cache, "_get_model", _tiny)
    cfg = get_preset("gpu", weights="trained") | {"device": "cpu"}
    runs = {"a": run_spec("stand_in"), "a 10%": run_spec("stand_in", 0.1)}
    p = zoo.plan(runs, cfg, cache_dir=tmp_path, timer=fake_timer(0.5, 3))
    full, tenth = p.runs
    assert full.steps == 15 * 196 and tenth.steps == 15 * 20  # ceil(50000/256), ceil(5000/256)
    assert full.seconds_per_step == tenth.seconds_per_step == 0.5
    assert full.seconds == pytest.approx((15 * 196 + 15 * 40 / 3) * 0.5)
    assert tenth.seconds == pytest.approx((15 * 20 + 15 * 40 / 3) * 0.5)
    assert p.total_seconds == pytest.approx(full.seconds + tenth.seconds)
    text = str(p)
    assert "2 of 2 run(s) to train" in text and "500 ms/step" in text and "WARNING" not in text
    assert f"~{full.seconds / 60:.0f} min" in text


def test_cached_and_official_runs_are_skipped_and_not_timed(tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "_get_model", _tiny)
    cfg = get_preset("gpu") | {"device": "cpu"}  # weights="official" by default
    done = cache.entry_dir(cache.run_config("stand_in", "gpu", seed=0), tmp_path)
    done.mkdir(parents=True)
    (done / "done.json").write_text(json.dumps({}))
    timed = []

    def measure(model, model_cfg, tiny, batch_size, num_classes, device):
        timed.append((model, model_cfg))
        return 0.1

    runs = {"cached": run_spec("stand_in"), "released": run_spec("vit_ti"), "p4": run_spec("vit_ti", patch_size=4),
            "p4 again": run_spec("vit_ti", 0.5, patch_size=4)}
    p = zoo.plan(runs, cfg, cache_dir=tmp_path, measure=measure)
    assert [r.status for r in p.runs] == ["cached", "official", "train", "train"]
    assert len(timed) == 1 and timed[0][1]["patch_size"] == 4  # one model, timed once
    assert "cached: in the cache" in str(p) and "the authors' checkpoint" in str(p)


def test_a_plan_above_a_session_warns_with_hours(tmp_path):
    cfg = get_preset("paper", weights="trained") | {"device": "cpu"}
    p = zoo.plan({"vit": run_spec("vit_ti")}, cfg, cache_dir=tmp_path, measure=lambda *a: 0.2)
    hours = (300 * 521 + 300 * 105 / 3) * 0.2 / 3600  # ceil(50000/96) steps, ceil(10000/96) test batches
    assert p.total_seconds / 3600 == pytest.approx(hours)
    assert p.exceeds_session and f"WARNING: this is {hours:.1f} hours" in str(p)


def test_train_runs_prints_the_plan_only_when_something_is_trained(monkeypatch, capsys):
    seen = []
    monkeypatch.setattr(zoo, "plan", lambda runs, cfg, seed=0: seen.append(list(runs)) or P.Plan([], "cpu", "smoke"))
    monkeypatch.setattr(zoo, "load_or_train", lambda name, **kw: pytest.skip("not reached"))
    train_runs({}, get_preset("smoke") | {"device": "cpu"})
    assert seen == [[]] and "Plan" not in capsys.readouterr().out
    planned = P.Plan([P.PlannedRun("m", "m", "train", 10, 0.1, 1.0)], "cpu", "smoke")
    monkeypatch.setattr(zoo, "plan", lambda runs, cfg, seed=0: planned)
    with pytest.raises(pytest.skip.Exception):
        train_runs({"m": run_spec("m")}, get_preset("smoke") | {"device": "cpu"})
    assert "Plan (smoke preset on cpu): 1 of 1 run(s) to train" in capsys.readouterr().out


def test_plan_sees_a_chapters_training_overrides(tmp_path, monkeypatch):
    """``get_preset("smoke", epochs=5)`` trains (and caches) 5 epochs: the plan counts 5 epochs and
    finds that run in the cache, not the preset's default run."""
    monkeypatch.setattr(cache, "_get_model", _tiny)
    cfg = get_preset("smoke", epochs=5) | {"device": "cpu"}
    p = zoo.plan({"a": run_spec("stand_in")}, cfg, cache_dir=tmp_path, measure=lambda *a: 0.1)
    base = zoo.plan({"a": run_spec("stand_in")}, get_preset("smoke") | {"device": "cpu"}, cache_dir=tmp_path,
                    measure=lambda *a: 0.1)
    assert p.runs[0].steps * get_preset("smoke")["epochs"] == base.runs[0].steps * 5
    done = cache.entry_dir(cache.run_config("stand_in", "smoke", None, 1.0, 0, None, {"epochs": 5}), tmp_path)
    done.mkdir(parents=True)
    (done / "done.json").write_text(json.dumps({}))
    assert zoo.plan({"a": run_spec("stand_in")}, cfg, cache_dir=tmp_path, measure=lambda *a: 0.1).runs[0].status == "cached"
