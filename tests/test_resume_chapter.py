"""A chapter killed during training resumes where it stopped when it is run again.

A Colab reader whose session disconnects (or who interrupts "Run all") reruns the chapter: every
finished epoch must be kept (``last.pt`` in the model cache, ``$HDVIT_CACHE`` on Google Drive) and
the chapter must say that it resumed. This test runs chapter 04 under papermill in a process of its own,
kills the process and its kernel (``SIGKILL``: no clean-up code runs) once the first model
has finished an epoch, and runs the chapter again in the same cache.

Which preset ``auto`` picks on a CUDA machine, and the plan's estimate, are tested in
``test_notebook.py`` and ``test_plan.py``; here the chapter's printed plan is checked too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from nbexec import execute

CHAPTER = ROOT / "notebooks" / "04_hessian_spectra.ipynb"
EPOCHS = 4
#: Few images (an epoch takes a second or two here), enough epochs that a kill lands mid-run.
OVERRIDES = {"epochs": EPOCHS, "n_train": 512, "n_test": 256}


def _first_resume_point(cache: Path) -> Path | None:
    found = sorted(cache.glob("*/last.pt"))
    return found[0] if found else None


@pytest.mark.notebook
@pytest.mark.timeout(600)
def test_killed_chapter_resumes_from_its_last_epoch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    env = {**os.environ, "HDVIT_CACHE": str(cache), "HDVIT_PRESET_OVERRIDES": json.dumps(OVERRIDES),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    code = ("import sys; from pathlib import Path; sys.path.insert(0, 'tools'); from nbexec import execute; "
            f"execute(Path({str(CHAPTER)!r}), Path({str(tmp_path / 'killed.ipynb')!r}), preset='smoke', timeout=600)")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while _first_resume_point(cache) is None:
            assert proc.poll() is None, "the chapter stopped before its first epoch finished"
            assert time.monotonic() < deadline, "no epoch finished within 300 s"
            time.sleep(0.1)
    finally:  # the kernel runs in a session of its own: kill it by pid, as a lost Colab VM does
        for p in [*psutil.Process(proc.pid).children(recursive=True), psutil.Process(proc.pid)]:
            p.send_signal(signal.SIGKILL)
        proc.wait()
    last = _first_resume_point(cache)
    entry = last.parent
    done_at_kill = int(torch.load(last, weights_only=True, map_location="cpu")["epoch"])
    assert 1 <= done_at_kill < EPOCHS and not (entry / "done.json").exists()

    monkeypatch.setenv("HDVIT_CACHE", str(cache))
    monkeypatch.setenv("HDVIT_PRESET_OVERRIDES", json.dumps(OVERRIDES))
    out = tmp_path / "resumed.ipynb"
    execute(CHAPTER, out, preset="smoke", timeout=600)
    text = out.read_text()
    assert "Plan (smoke preset on cpu)" in text and "Estimated training time" in text
    assert f"resuming after epoch {done_at_kill} of {EPOCHS} from {last}" in text
    history = json.loads((entry / "history.json").read_text())
    assert (entry / "done.json").exists() and history["epoch"] == list(range(1, EPOCHS + 1))
