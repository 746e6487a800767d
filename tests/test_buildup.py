"""The build-up rule (Park & Kim 2022, Sec. 5.2) against fake metrics with known answers."""

from __future__ import annotations

import itertools

import pytest

from hdvit_lib.analysis.buildup import BuildUpTrace, build_up, placement_key

TARGET = (0, 1, 1, 2)  # the paper's CIFAR-100 AlterNet-50


class Counting:
    """A metric that counts its calls and remembers what it was asked."""

    def __init__(self, f):
        self.f, self.calls = f, []

    def __call__(self, placement):
        self.calls.append(tuple(placement))
        return self.f(placement)


def concave(placement, target=TARGET, weights=(1.0, 2.0, 3.0, 4.0)):
    """Separable concave score, maximal (= 80) exactly at ``target``."""
    return 80.0 - sum(w * (m - t) ** 2 for w, m, t in zip(weights, placement, target))


def test_finds_the_known_optimum_and_its_path():
    ev = Counting(concave)
    tr = build_up(ev)
    assert tuple(tr.best_placement) == TARGET
    assert tr.best_metric == pytest.approx(80.0)
    # Brute force over every placement within capacity (3, 4, 6, 4) // 2 agrees.
    grid = itertools.product(*(range(c + 1) for c in (1, 2, 3, 2)))
    assert max(grid, key=concave) == TARGET
    # The exact sequence, derived by hand from the rule (restart at the last stage):
    expected = [
        (0, 0, 0, 0),                                  # baseline
        (0, 0, 0, 1),                                  # round 1: stage 4 improves
        (0, 0, 0, 2),                                  # round 2: stage 4 improves (now full)
        (0, 0, 1, 2),                                  # round 3: stage 3 improves
        (0, 0, 2, 2), (0, 1, 1, 2),                    # round 4: stage 3 no, stage 2 yes
        (0, 1, 2, 2), (0, 2, 1, 2), (1, 1, 1, 2),      # round 5: nothing improves
    ]
    assert ev.calls == expected
    assert [tuple(p) for p in tr.placements] == expected
    assert tr.accepted == [True, True, True, True, False, True, False, False, False]
    assert tr.stages == [-1, 3, 3, 2, 2, 1, 2, 1, 0]
    assert tr.rounds == [0, 1, 2, 3, 4, 4, 5, 5, 5]
    assert all(sum(p) == r for p, r in zip(tr.placements, tr.rounds))
    assert tr.metrics == [pytest.approx(concave(p)) for p in expected]
    assert tr.stop_reason == "no stage improved"
    assert all(c >= 0.0 for c in tr.costs) and not any(tr.cached)
    # The accepted path climbs strictly.
    path = [m for _, m in tr.accepted_path]
    assert all(b > a for a, b in itertools.pairwise(path))


def test_each_candidate_once_and_lower_is_better():
    ev = Counting(lambda p: -concave(p))  # a loss
    tr = build_up(ev, higher_is_better=False)
    assert tuple(tr.best_placement) == TARGET
    assert len(set(ev.calls)) == len(ev.calls) == len(tr.placements)


def test_other_targets_and_restart_current():
    # For a separable concave score, both variants reach the optimum.
    for target in [(1, 0, 3, 1), (0, 0, 0, 0), (1, 2, 3, 2)]:
        for restart in ("last", "current"):
            tr = build_up(lambda p, t=target: concave(p, t), restart=restart)
            assert tuple(tr.best_placement) == target, (target, restart)


def test_restart_variants_differ_when_a_later_stage_helps_again():
    table = {(0, 0, 0, 0): 0.0, (0, 0, 0, 1): 1.0, (0, 0, 0, 2): 0.5,
             (0, 0, 1, 1): 2.0, (0, 0, 1, 2): 3.0}
    f = lambda p: table.get(tuple(p), -1.0)
    last = build_up(f, restart="last")
    assert tuple(last.best_placement) == (0, 0, 1, 2) and last.best_metric == 3.0
    cur = build_up(f, restart="current")
    # "current" never goes back to stage 4 after stage 3 was accepted.
    assert tuple(cur.best_placement) == (0, 0, 1, 1) and cur.best_metric == 2.0
    assert (0, 0, 1, 2) not in [tuple(p) for p in cur.placements]


def test_never_improving_metric_tries_every_stage_once():
    ev = Counting(lambda p: 50.0)  # ties never count as an improvement
    tr = build_up(ev)
    assert ev.calls == [(0, 0, 0, 0), (0, 0, 0, 1), (0, 0, 1, 0), (0, 1, 0, 0), (1, 0, 0, 0)]
    assert tr.accepted == [True, False, False, False, False]
    assert tuple(tr.best_placement) == (0, 0, 0, 0)
    assert tr.stop_reason == "no stage improved"
    # min_delta: an improvement of 0.5 does not count when 1.0 is required.
    tr = build_up(lambda p: 50.0 + 0.5 * sum(p), min_delta=1.0)
    assert tuple(tr.best_placement) == (0, 0, 0, 0) and len(tr.placements) == 5


def test_nan_candidate_is_rejected_and_nan_baseline_raises():
    tr = build_up(lambda p: float("nan") if p[3] == 1 else concave(p))
    assert tr.accepted[1] is False and tr.stages[1] == 3
    with pytest.raises(ValueError, match="baseline"):
        build_up(lambda p: float("nan"))


def test_budgets():
    tr = build_up(concave, max_msas=2)
    assert sum(tr.best_placement) == 2 and tr.stop_reason.startswith("max_msas")
    ev = Counting(concave)
    tr = build_up(ev, max_evals=3)
    assert len(ev.calls) == 3 and tr.stop_reason.startswith("max_evals")
    # A monotone metric fills every stage to capacity (3, 4, 6, 4) // 2, then stops.
    tr = build_up(lambda p: float(sum(p)))
    assert tuple(tr.best_placement) == (1, 2, 3, 2) and tr.stop_reason == "every stage is full"
    tr = build_up(lambda p: float(sum(p)), capacity=(0, 0, 1, 4))
    assert tuple(tr.best_placement) == (0, 0, 1, 4)


def test_dict_cache_prevents_reevaluation():
    cache: dict = {}
    ev1 = Counting(concave)
    tr1 = build_up(ev1, cache=cache)
    assert len(cache) == len(ev1.calls) == 9
    assert placement_key(TARGET, 0) in cache
    ev2 = Counting(concave)
    tr2 = build_up(ev2, cache=cache)
    assert ev2.calls == []
    assert tr2.metrics == tr1.metrics and tr2.placements == tr1.placements
    assert all(tr2.cached) and all(c == 0.0 for c in tr2.costs)
    # A different seed does not reuse another seed's metrics.
    ev3 = Counting(concave)
    build_up(ev3, cache=cache, seed=1)
    assert len(ev3.calls) == 9


def test_directory_cache_resumes_an_interrupted_run(tmp_path):
    class Boom(RuntimeError):
        pass

    def flaky(p):
        if p == (0, 0, 2, 2):  # the 5th candidate "crashes" the first run
            raise Boom
        return concave(p)

    with pytest.raises(Boom):
        build_up(flaky, cache=tmp_path / "bu")
    assert len(list((tmp_path / "bu").glob("*.json"))) == 4
    ev = Counting(concave)
    tr = build_up(ev, cache=str(tmp_path / "bu"))
    assert ev.calls == [(0, 0, 2, 2), (0, 1, 1, 2), (0, 1, 2, 2), (0, 2, 1, 2), (1, 1, 1, 2)]
    assert tr.cached == [True] * 4 + [False] * 5
    assert tuple(tr.best_placement) == TARGET


def test_trace_json_round_trip_and_errors(tmp_path):
    tr = build_up(concave)
    tr.save(tmp_path / "t.json")
    back = BuildUpTrace.load(tmp_path / "t.json")
    assert back == tr
    with pytest.raises(ValueError, match="n_stages=3"):
        build_up(concave, n_stages=3)
    with pytest.raises(ValueError, match="restart"):
        build_up(concave, restart="first")
    with pytest.raises(ValueError, match="capacity"):
        build_up(concave, capacity=(9, 0, 0, 0))


def test_evaluate_placement_uses_the_zoo(monkeypatch):
    import sys
    import types

    from hdvit_lib.analysis.buildup import evaluate_placement
    from hdvit_lib.train.history import History

    seen = {}

    def load_or_train(model, preset, model_cfg, seed, **kw):
        seen.update(model=model, preset=preset, cfg=model_cfg, seed=seed, kw=kw)
        run = types.SimpleNamespace(history=History(epoch=[1, 2], test_acc=[0.2, 0.61]))
        return run

    monkeypatch.setitem(sys.modules, "hdvit_lib.zoo",
                        types.SimpleNamespace(load_or_train=load_or_train))
    assert evaluate_placement((0, 1, 1, 2), "cpu", seed=3, epochs=1) == pytest.approx(0.61)
    assert seen == {"model": "alternet50", "preset": "cpu", "cfg": {"msa_per_stage": TARGET},
                    "seed": 3, "kw": {"epochs": 1}}
    with pytest.raises(ValueError, match="val_acc"):
        evaluate_placement((0, 0, 0, 1), metric="val_acc")


def test_plot_buildup_shows_the_trace_and_the_papers_values():
    from hdvit_lib.plots.alternet import plot_buildup

    tr = build_up(concave)
    fig = plot_buildup(tr)
    acc, rej, paper = fig.data
    assert list(acc.x) == [0, 1, 2, 3, 4]
    assert list(acc.y) == pytest.approx([concave(p) for p in
                                         [(0, 0, 0, 0), (0, 0, 0, 1), (0, 0, 0, 2), (0, 0, 1, 2), TARGET]])
    assert len(rej.x) == 4 and list(rej.x) == [4, 5, 5, 5]
    assert list(paper.y) == [82.48, 83.45, 83.66, 83.77, 84.02]
    assert "Fig. 12a" in paper.name
    assert len(plot_buildup(tr, reference=None).data) == 2
