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
