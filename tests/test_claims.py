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
