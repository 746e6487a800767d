"""The benchmark scripts keep working: each runs in its smallest mode and its two sides agree.

Timings on a shared CPU mean nothing here; what is checked is that the script runs end to end,
reports a row per measurement, and that baseline and ours compute the same numbers.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str], timeout: int = 240) -> str:
    out = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return out.stdout


@pytest.mark.timeout(300)
def test_gpu_benchmark_quick_mode_runs_every_section(tmp_path: Path) -> None:
    path = tmp_path / "gpu.json"
    _run(["benchmarks/gpu.py", "--quick", "--out", str(path)])
    result = json.loads(path.read_text())
    sections = {r["section"] for r in result["rows"]}
    assert {"train img/s", "landscape grid", "data img/s", "train+data img/s"} <= sections
    assert any(s.startswith("Hessian") for s in sections), sections
    assert "FAILED" not in result["markdown"]
    for row in result["rows"]:
        assert row["baseline"] > 0 and row["ours"] > 0
        if row["section"] == "landscape grid":  # the same grid point, computed two ways
            diff = float(row["detail"].split("max |NLL diff|")[1])
            assert diff < 1e-4, row


@pytest.mark.timeout(120)
def test_cka_benchmark_agrees_with_the_naive_baseline() -> None:
    out = _run(["benchmarks/cka.py", "--blocks", "4", "--images", "64", "--batch", "32", "--dim", "64"])
    match = re.search(r"speed-up\s*:\s*([0-9.]+)x\s+max \|difference\| = ([0-9.e+-]+)", out)
    assert match, out
    assert float(match.group(1)) > 0 and float(match.group(2)) < 1e-8, out
