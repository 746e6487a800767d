"""claims.verdict: the one verdict rule, case by case."""

from __future__ import annotations

import pytest

from hdvit_lib.claims import DOES_NOT, HOLDS, IN_PART, UNDECIDED, WHERE_DECIDED, verdict


@pytest.mark.parametrize(
    ("parts", "want"),
    [
        ([True, True], (True, HOLDS)),
        ([True], (True, HOLDS)),
        ([False, False], (False, DOES_NOT)),
        ([True, False, True], (False, IN_PART)),
        ([True, None], (None, WHERE_DECIDED)),
        ([False, None], (False, DOES_NOT)),
        ([True, False, None], (False, IN_PART)),
        ([None, None], (None, UNDECIDED)),
        ([], (None, UNDECIDED)),
    ],
)
def test_verdict_rule(parts, want) -> None:
    assert verdict(parts) == want


def test_numpy_booleans_count_as_booleans() -> None:
    import numpy as np

    assert verdict([np.bool_(True), np.bool_(True)]) == (True, HOLDS)
    assert verdict([np.bool_(False)])[0] is False


def test_proportion_se_and_majority_part() -> None:
    import math

    from hdvit_lib.claims import majority_part, proportion_se

    assert proportion_se(0.25, 48) == pytest.approx(math.sqrt(0.25 * 0.75 / 48))
    assert proportion_se(1.0, 4) == pytest.approx(0.25)  # the p in {0, 1} bound: sqrt(0.25 / 4)
    assert majority_part(0.9, 100, "x")[0] is True
    assert majority_part(0.1, 100, "x")[0] is False
    part, words = majority_part(0.6, 10, "x")  # 2 SE = 0.31 > 0.1
    assert part is None and "undecided at this power" in words
    assert majority_part(float("nan"), 0, "x")[0] is None


def test_less_part_and_bootstrap_se() -> None:
    import numpy as np

    from hdvit_lib.claims import bootstrap_se, less_part

    assert less_part(0.1, 0.02, 0.5, 0.02, "x")[0] is True
    assert less_part(0.5, 0.02, 0.1, 0.02, "x")[0] is False
    assert less_part(0.30, 0.05, 0.35, 0.05, "x")[0] is None
    # bootstrap SE of a mean over groups: close to the SD of group means / sqrt(groups)
    rng = np.random.default_rng(0)
    groups = [rng.normal(m, 0.01, size=5) for m in rng.normal(0.0, 1.0, size=200)]
    means = np.array([g.mean() for g in groups])
    se = bootstrap_se(groups, np.mean, n_boot=400)
    assert se == pytest.approx(means.std(ddof=1) / np.sqrt(200), rel=0.2)


def test_over_seeds_means_and_standard_errors_match_a_hand_computation() -> None:
    """Each number is the mean over the seeds that measured it (NaN left out), its uncertainty the
    sample standard deviation over those seeds / sqrt(n), checked against ``statistics``."""
    import statistics

    from hdvit_lib.claims import Claim, over_seeds

    runs = [Claim("p", {"x": 0.2, "y": float("nan")}, True, "holds in this run: a", "cpu", {"x": 0.01}),
            Claim("p", {"x": 0.5, "y": 3.0}, True, "holds in this run: b", "cpu"),
            Claim("p", {"x": 0.35, "y": 5.0}, True, "holds in this run: c", "cpu")]
    c = over_seeds(runs)
    assert c.seeds == 3 and c.holds is True and c.verdict == "holds in every one of 3 seeds"
    assert abs(c.measured["x"] - statistics.mean([0.2, 0.5, 0.35])) < 1e-12
    assert abs(c.uncertainty["x"] - statistics.stdev([0.2, 0.5, 0.35]) / 3 ** 0.5) < 1e-12
    assert c.measured["y"] == 4.0 and abs(c.uncertainty["y"] - statistics.stdev([3.0, 5.0]) / 2 ** 0.5) < 1e-12
    assert "mean ± SE over 3 seeds" in c._repr_markdown_() and "x = 0.35 ± 0.0866" in str(c)
    same = over_seeds([Claim("p", {"z": 0.1 + 0.2}, True, "holds in this run") for _ in range(3)])
    assert same.uncertainty["z"] == 0.0 and "z = 0.3 ± 0\n" in str(same)


@pytest.mark.parametrize("outcomes, holds, words", [
    ((True, True), True, "holds in every one of 2 seeds"),
    ((False, False), False, "does not hold in every one of 2 seeds"),
    (("part", "part"), False, "holds only in part in every one of 2 seeds"),
    ((True, False, None), None, "undecided over 3 seeds (holds in 1, does not in 1, undecided in 1 of 3)"),
    ((None, None), None, "undecided in every one of 2 seeds"),
    (("where", "where"), None, "holds where every one of 2 seeds could decide, undecided elsewhere"),
    (("where", None), None, "undecided over 2 seeds (where decided in 1, undecided in 1 of 2)"),
])
def test_over_seeds_verdict_is_decided_only_where_every_seed_agrees(outcomes, holds, words) -> None:
    from hdvit_lib.claims import (
        DOES_NOT,
        HOLDS,
        IN_PART,
        UNDECIDED,
        WHERE_DECIDED,
        Claim,
        outcome,
        over_seeds,
    )

    text = {True: HOLDS, False: DOES_NOT, None: UNDECIDED, "part": IN_PART, "where": WHERE_DECIDED}
    runs = [Claim("p", {"x": 1.0}, {"part": False, "where": None}.get(o, o), f"{text[o]}: ...") for o in outcomes]
    c = over_seeds(runs)
    assert (c.holds, c.verdict) == (holds, words)
    want = {True: "holds", False: "in part" if "part" in words else "does not"}.get(holds)
    assert outcome(c) == (want or ("where decided" if words.startswith("holds where") else "undecided"))


def test_over_seeds_refuses_different_claims_and_keeps_one_seed_as_is() -> None:
    from hdvit_lib.claims import Claim, over_seeds

    one = Claim("p", {"x": 1.0}, True, "holds in this run")
    assert over_seeds([one]) is one
    with pytest.raises(ValueError, match="not the same claim"):
        over_seeds([one, Claim("q", {"x": 1.0}, True, "holds in this run")])
    with pytest.raises(ValueError, match="at least one seed"):
        over_seeds([])


def test_a_claim_output_carries_its_fields_for_the_recorded_page() -> None:
    """The notebook output of a claim holds its fields as metadata (NaN as null: valid JSON), and
    they read back into the same claim."""
    import json
    import math

    from IPython.core.interactiveshell import InteractiveShell

    from hdvit_lib.claims import Claim

    c = Claim("p", {"x": 0.5, "gone": float("nan")}, None, "undecided in this run", "cpu", {"x": 0.1})
    data, meta = InteractiveShell.instance().display_formatter.format(c)
    assert data["text/markdown"] == c._repr_markdown_()
    back = Claim.from_dict(json.loads(json.dumps(meta["hdvit_claim"], allow_nan=False)))
    assert back.measured["x"] == 0.5 and math.isnan(back.measured["gone"]) and back.uncertainty == {"x": 0.1}
    assert (back.paper, back.holds, back.verdict, back.preset, back.seeds) == ("p", None, c.verdict, "cpu", 1)
