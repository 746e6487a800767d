"""tools/recorded_runs.py copies each executed chapter's printed claim checks, nothing else."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import nbformat

from hdvit_lib.claims import WHERE_DECIDED, Claim
from hdvit_lib.presets import get_preset

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("recorded_runs", ROOT / "tools" / "recorded_runs.py")
recorded_runs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(recorded_runs)


def executed(path: Path, title: str, claims: list[Claim]) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell(f"# {title}\n\ntext"))
    for c in claims:
        cell = nbformat.v4.new_code_cell("claim")
        data, meta = c._repr_mimebundle_()
        cell.outputs = [nbformat.v4.new_output("execute_result", data={**data, "text/plain": repr(c)},
                                               metadata=meta, execution_count=1)]
        cell.outputs.append(nbformat.v4.new_output("display_data", data={"text/markdown": "a table, not a claim"}))
        nb.cells.append(cell)
    path.write_text(json.dumps(nb))


def test_render_takes_every_claim_of_each_chapter_in_order(tmp_path: Path) -> None:
    early = Claim("an early claim", {"x": 1.0}, None, "undecided", "cpu")
    final = Claim("the paper says A", {"a": 0.25}, True, "holds in this run: 25%", "cpu")
    executed(tmp_path / "01_a.ipynb", "1. First chapter", [early, final])
    executed(tmp_path / "02_b.ipynb", "2. No claim", [])
    (tmp_path / "times.txt").write_text("01_a rc=1 5 s\n01_a rc=0 90 s\n")
    page = recorded_runs.render(tmp_path, "cpu", "a test machine", "2026-01-01", tmp_path / "times.txt")
    assert page.startswith("# Recorded runs: the `cpu` preset")
    assert "## 1. First chapter" in page and "2. No claim" not in page
    assert page.index(early._repr_markdown_()) < page.index(final._repr_markdown_()) and "a table" not in page
    assert "1.5 min" in page and "a test machine" in page and "2026-01-01" in page
    assert "| 1 | an early claim | undecided |" in page and "| 1 | the paper says A | yes |" in page


def test_a_chapters_claims_table_is_copied(tmp_path: Path) -> None:
    """Chapter 14 prints one table of claims (no single verdict): it is copied whole."""
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell("# 14. Over training\n\ntext"))
    table = "| claim | holds from (epoch) |\n|---|---|\n| ViT is flatter (Fig. 1) | 5 |"
    cell = nbformat.v4.new_code_cell("table")
    cell.outputs = [nbformat.v4.new_output("display_data", data={"text/markdown": table})]
    nb.cells.append(cell)
    (tmp_path / "14_x.ipynb").write_text(json.dumps(nb))
    page = recorded_runs.render(tmp_path, "cpu", "m", "2026-01-01")
    assert "## 14. Over training" in page and table in page
    assert "| 14 | every claim along training and scale | the table in its section |" in page


def test_seed_folders_give_each_claim_as_mean_and_se_with_every_seeds_verdict(tmp_path: Path) -> None:
    """Three seed folders: the page shows each number as mean ± SE over seeds, the tallied verdict in
    the summary, every seed's own verdict and wall time; a chapter run with one seed stays as it is."""
    vals = [0.2, 0.3, 0.4]
    for s, v in enumerate(vals):
        (tmp_path / f"seed{s}").mkdir()
        executed(tmp_path / f"seed{s}" / "01_a.ipynb", "1. First",
                 [Claim("the paper says A", {"a": v}, s < 2, "holds in this run" if s < 2 else
                        "does not hold in this run", "cpu")])
        (tmp_path / f"seed{s}" / "times.txt").write_text(f"01_a rc=0 {60 * (s + 1)} s\n")
    executed(tmp_path / "seed0" / "14_b.ipynb", "14. One seed", [Claim("B", {"b": 1.0}, True, "holds in this run")])
    executed(tmp_path / "seed0" / "07_c.ipynb", "7. Local", [Claim("C", {"c": 1.0}, None, WHERE_DECIDED + ": x")])
    page = recorded_runs.render([tmp_path / f"seed{s}" for s in range(3)], "cpu", "m", "2026-01-01")
    assert page.startswith("# Recorded runs: the `cpu` preset over 3 seeds\n")
    assert "## 1. First (3 seeds)" in page and "mean ± SE over 3 seeds" in page
    assert "a = 0.3 ± 0.05774" in page  # mean 0.3, sd 0.1 / sqrt(3)
    assert "| 1 | the paper says A | undecided |" in page and "holds in 2, does not in 1 of 3" in page
    assert "- seed 2: does not hold in this run" in page and "1.0 min, 2.0 min, 3.0 min" in page
    assert "## 14. One seed (1 seed)\n" in page and "| 14 | B | yes |" in page
    assert "| 7 | C | where decided |" in page  # one seed: the run's own words, not only its holds field
    assert f"{get_preset('cpu')['epochs']} epochs, the tiny models" in page  # read from the preset
    assert "6 minutes of chapter runs in all" in page and "| 01 | 3 | 6.0 | 0.0 | 100% |" in page
    nb = {"cells": [{"cell_type": "code", "source": "t = train_runs(runs, cfg)", "metadata": {"papermill": {"duration": 90}}},
                    {"cell_type": "code", "source": "spectra(t)", "metadata": {"papermill": {"duration": 30}}}]}
    assert recorded_runs.training_minutes(nb) == 1.5  # the training cell only
    (tmp_path / "run.log").write_text("[seeds] x\n[seeds] all done in 4.5 min, 0 failed\n")
    page = recorded_runs.render([tmp_path / f"seed{s}" for s in range(3)], "cpu", "m", "2026-01-01",
                                wall=tmp_path / "run.log")
    assert "4.5 min of wall time" in page


def test_run_seeds_gives_each_chapter_the_presets_seeds_and_resumes(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("run_seeds", ROOT / "tools" / "run_seeds.py")
    run_seeds = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_seeds)
    assert run_seeds.seeds_for("06_gap_classifier", "cpu") == [0, 1, 2]
    assert run_seeds.seeds_for("06_gap_classifier", "smoke") == [0]
    assert run_seeds.seeds_for("14_claims_over_training_and_scale", "cpu") == [0]  # ONE_SEED_CHAPTERS
    assert run_seeds.seeds_for("06_gap_classifier", "cpu", [3, 4]) == [3, 4]
    (tmp_path / "06_x.ipynb").write_text("{}")
    (tmp_path / "times.txt").write_text("06_x rc=1 5 s\n")
    assert not run_seeds.done(tmp_path, "06_x")
    (tmp_path / "times.txt").write_text("06_x rc=1 5 s\n06_x rc=0 50 s\n")
    assert run_seeds.done(tmp_path, "06_x") and not run_seeds.done(tmp_path, "07_y")


def test_run_seeds_schedule_keeps_each_seeds_chapters_in_order() -> None:
    """--jobs: a seed's chapters run one after another (later ones load earlier ones' models); a
    one-seed chapter waits for all of its seed's other chapters (13 also for 12); 14 is offered first."""
    spec = importlib.util.spec_from_file_location("run_seeds", ROOT / "tools" / "run_seeds.py")
    run_seeds = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_seeds)
    stems = ["01_a", "02_b", "07_c", "12_d", "13_e", "14_f"]
    plan = run_seeds.schedule(stems, "cpu")
    assert [(s, seed) for s, seed, _ in plan] == [
        ("14_f", 0), ("01_a", 0), ("02_b", 0), ("01_a", 1), ("02_b", 1), ("01_a", 2), ("02_b", 2),
        ("07_c", 0), ("12_d", 0), ("13_e", 0)]
    wait = {(s, seed): w for s, seed, w in plan}
    assert wait[("01_a", 1)] == set() and wait[("02_b", 2)] == {("01_a", 2)}
    assert wait[("14_f", 0)] == wait[("07_c", 0)] == {("01_a", 0), ("02_b", 0)}
    assert wait[("13_e", 0)] == {("01_a", 0), ("02_b", 0), ("12_d", 0)}
