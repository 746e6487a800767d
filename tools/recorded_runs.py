"""Write ``book/recorded_runs.md`` from chapter notebooks executed with a larger preset.

The book's pages are executed with the ``smoke`` preset at every build; runs with ``cpu`` (or
``paper``) take minutes to hours and are not. This tool copies the claim checks that each executed
notebook *printed* (its ``Claim`` outputs, never typed in) into one page, with the date, machine,
preset and run time given on the command line, so that a reader sees what the larger runs
measured and how to reproduce them.

Usage (after ``papermill -p preset cpu notebooks/X.ipynb runs/X.ipynb`` for each chapter):

    python tools/recorded_runs.py runs/ --preset cpu --machine "2-core x86_64, torch 2.14.1" \
        --date 2026-11-26 [--times runs/times.txt] > book/recorded_runs.md

Several folders (one per seed, e.g. from ``tools/run_seeds.py``) give each claim as the mean ± SE
over the seeds that ran the chapter (``claims.over_seeds``, read from each claim output's
``hdvit_claim`` metadata), each seed's own verdict beneath it; a folder's ``times.txt`` is read
when ``--times`` is not given.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from hdvit_lib.claims import Claim, outcome, over_seeds

HEADER = """# Recorded runs: the `{preset}` preset{over}

The chapters in this book are executed with the `smoke` preset whenever the site is built: a
minute each, too small for most of the paper's claims to show. This page records what the
same chapters printed when run with the `{preset}` preset ({what}). Each verdict below is the
chapter's own claim check, copied from the executed notebook by `tools/recorded_runs.py`; nothing
here is recomputed at build time.

- Date: {date}. Machine: {machine}.
- Reproduce: `papermill -p preset {preset} notebooks/<chapter>.ipynb out.ipynb` (or set
  `preset = "{preset}"` in a chapter's parameters cell).
"""



def what(preset: str) -> str:
    """The preset in a few words, read from its settings (data, size of the set, epochs, models)."""
    from hdvit_lib.presets import get_preset

    cfg = get_preset(preset)
    data = f"{cfg['n_train']:,} generated images" if cfg["dataset"] == "synthetic" else cfg["dataset"].upper()
    return f"{data}, {cfg['epochs']} epochs, the {'tiny' if cfg['tiny'] else 'paper-size'} models"


def _markdown_outputs(nb: dict):
    """Each code output's markdown text (joined) with the output itself, in order."""
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            md = out.get("data", {}).get("text/markdown")
            if md is not None:
                yield ("".join(md) if isinstance(md, list) else md), out


def claims_of(nb: dict) -> list[Claim | None]:
    """Every claim check output's ``Claim`` (from its ``hdvit_claim`` metadata), in order; None
    for an output written before that metadata existed."""
    metas = [out.get("metadata", {}).get("hdvit_claim") for text, out in _markdown_outputs(nb)
             if text.startswith("**Paper:**")]
    return [Claim.from_dict(m) if m else None for m in metas]


def claim_markdowns(nb: dict) -> list[tuple[str, str]]:
    """Every claim check output, in order: (its markdown, "yes" | "no" | "undecided" from the
    ``holds`` field of the same output's ``Claim(...)`` text)."""
    found = []
    for text, out in _markdown_outputs(nb):
        if not text.startswith("**Paper:**"):
            continue
        plain = out.get("data", {}).get("text/plain")
        plain = "".join(plain) if isinstance(plain, list) else (plain or "")
        m = re.search(r"holds=(True|False|None)", plain)
        holds = {"True": "yes", "False": "no"}.get(m.group(1), "undecided") if m else "undecided"
        if holds == "no" and "only in part" in text.split("**Verdict:**")[-1]:
            holds = "in part"
        found.append((text, holds))
    return found


def _short(claim_md: str, n: int = 110) -> str:
    paper = claim_md.split("\n\n")[0].removeprefix("**Paper:**").strip()
    return paper if len(paper) <= n else paper[: n - 3].rsplit(" ", 1)[0] + " ..."


def title(nb: dict, fallback: str) -> str:
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "markdown":
            src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            m = re.match(r"#\s+(.+)", src)
            if m:
                return m.group(1).strip()
    return fallback


def read_times(path: Path | None) -> dict[str, float]:
    """``<stem> rc=0 319 s`` lines (the last one per chapter wins) -> {stem: minutes} for rc=0."""
    out: dict[str, float] = {}
    if path is None or not path.exists():
        return out
    for line in path.read_text().splitlines():
        m = re.match(r"(\S+) rc=(\d+) (\d+) s", line)
        if m and m.group(2) == "0":
            out[m.group(1)] = int(m.group(3)) / 60
    return out


def read_wall(log: Path | None) -> str:
    """The whole run's wall time from ``run_seeds.py --jobs``'s log (its ``all done in X min`` line)."""
    m = re.search(r"all done in ([\d.]+) min", log.read_text()) if log is not None and log.exists() else None
    return f"{m.group(1)} min" if m else ""


#: A code cell that trains (or loads) a chapter's models: its papermill duration counts as training
#: (chapter 14's scale cells, ``over_scale``/``over_datasets``, train and then measure: both count).
TRAINS = re.compile(r"\btrain_(runs|models)\(|\brun_buildup\(|\baccuracy_vs_data\(|\bover_(scale|datasets)\(")


def training_minutes(nb: dict) -> float:
    """Minutes a executed notebook spent in its training cells (:data:`TRAINS`; papermill's
    per-cell durations); models already in the cache cost their loading only."""
    return sum(float(c.get("metadata", {}).get("papermill", {}).get("duration") or 0.0)
               for c in nb.get("cells", []) if c.get("cell_type") == "code"
               and TRAINS.search("".join(c["source"]) if isinstance(c["source"], list) else c["source"])) / 60


def time_table(took: list[dict[str, float]], wall: str = "", training: dict[str, float] | None = None) -> str:
    """Where the time went: each chapter's minutes summed over its seeds, largest first, and the total;
    ``wall``: the whole run's wall time (several chapters at a time); ``training``: per chapter, the
    minutes of its training cells summed over its seeds (:func:`training_minutes`)."""
    per: dict[str, list[float]] = {}
    for t in took:
        for stem, spent in t.items():
            per.setdefault(stem, []).append(spent)
    training = training or {}
    total = sum(sum(v) for v in per.values())
    rows = [f"| {stem.split('_')[0]} | {len(v)} | {sum(v):.1f} | {training.get(stem, 0.0):.1f} | "
            f"{100 * sum(v) / total:.0f}% |" for stem, v in sorted(per.items(), key=lambda kv: -sum(kv[1]))]
    head = (f"Where the time went: {total:.0f} minutes of chapter runs in all"
            + (f" ({sum(training.values()):.0f} of them in training cells)" if training else "")
            + (f", {wall} of wall time with several chapters at a time (one thread each)" if wall else "")
            + "; a chapter's training cells train the models that no earlier chapter of its seed had trained "
            "and load the others from the cache.")
    return "\n".join([head, "", "| chapter | seeds | minutes | of which training | share |",
                      "| --- | --- | --- | --- | --- |", *rows])


def claim_tables(nb: dict) -> list[str]:
    """Markdown tables of claims a chapter printed (chapter 14's "claim | holds from ..." table)."""
    return [text.strip() for text, _ in _markdown_outputs(nb) if text.startswith("| claim |")]


HOLDS_WORDS = {"holds": "yes", "does not": "no", "in part": "in part", "where decided": "where decided",
               "undecided": "undecided"}


def _over_seeds(runs: list[dict]) -> tuple[list[tuple[str, str]], str]:
    """A chapter's claims over its seed runs: [(markdown, holds word)] and the seeds' own verdicts."""
    per_run = [claims_of(nb) for nb in runs]
    if any(c is None for cs in per_run for c in cs) or len({len(cs) for cs in per_run}) > 1:
        return claim_markdowns(runs[0]), ""
    if len(runs) == 1:  # the run's own words, "where decided" included (the holds field has None there)
        return [(md, HOLDS_WORDS[outcome(c)]) for (md, _), c in zip(claim_markdowns(runs[0]), per_run[0])], ""
    out, notes = [], []
    for i, group in enumerate(zip(*per_run)):
        agg = over_seeds(list(group))
        out.append((agg._repr_markdown_(), HOLDS_WORDS[outcome(agg)]))
        notes.append(f"Claim {i + 1}, each seed's verdict:\n" + "\n".join(
            f"- seed {j}: {c.verdict}" for j, c in enumerate(group)))
    return out, "\n\n".join(notes)


def render(folders: Path | list[Path], preset: str, machine: str, date: str, times: Path | None = None,
           wall: Path | None = None) -> str:
    folders = [folders] if isinstance(folders, Path) else list(folders)
    seeds = (f"; {len(folders)} seeds where a chapter's budget allows (the section heads say how many): each "
             "number the mean ± SE over the seeds" if len(folders) > 1 else "")
    what_ = (what(preset) if preset in ("smoke", "cpu", "gpu", "paper") else preset) + seeds
    over = f" over {len(folders)} seeds" if len(folders) > 1 else ""
    parts = [HEADER.format(preset=preset, over=over, what=what_, date=date, machine=machine)]
    if len(folders) > 1:
        from hdvit_lib.presets import ONE_SEED_CHAPTERS

        parts[0] += (f"- One seed: chapters {', '.join(ONE_SEED_CHAPTERS)} (`presets.ONE_SEED_CHAPTERS`; why, and how "
                     "a verdict over seeds is decided: {ref}`protocol-seeds`). All seeds: `python tools/run_seeds.py "
                     f"--preset {preset} --out runs/ --jobs 2`, then this page: [How to run](how_to_run.md).\n")
    took = [read_times(times if times is not None else f / "times.txt") for f in folders]
    summary = [f"| chapter | the paper's claim | holds {'over the seeds' if len(folders) > 1 else 'in this run'} |",
               "| --- | --- | --- |"]
    sections, training = [], {}
    for path in sorted(folders[0].glob("*.ipynb")):
        runs = [json.loads((f / path.name).read_text()) for f in folders if (f / path.name).exists()]
        training[path.stem] = sum(training_minutes(r) for r in runs)
        nb = runs[0]
        claims, seeds_note = _over_seeds(runs)
        tables = claim_tables(nb)
        if not claims and not tables:
            continue
        name = title(nb, path.stem)
        summary += [f"| {name.split('.')[0]} | {_short(md)} | {holds} |" for md, holds in claims]
        summary += [f"| {name.split('.')[0]} | every claim along training and scale | the table in its section |"
                    for _ in tables]
        claim = "\n\n".join([*(md for md, _ in claims), *tables, *([seeds_note] if seeds_note else [])])
        head = f"## {name}" + (f" ({len(runs)} seed{'s' if len(runs) > 1 else ''})" if len(folders) > 1 else "")
        spent = [t[path.stem] for t in took if path.stem in t]
        when = (f"\n\n*Wall time of this chapter's run{'s' if len(spent) > 1 else ''}: {', '.join(f'{m:.1f} min' for m in spent)} "
                "(models and features already in the cache were loaded, the rest computed).*") if spent else ""
        sections.append(f"{head}\n\n{claim}{when}\n")
    spent_all = [t for t in took if t]
    timing = [time_table(spent_all, read_wall(wall), training) + "\n"] if spent_all else []
    return "\n".join([*parts, "\n".join(summary) + "\n", *timing, *sections])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", type=Path, nargs="+", help="executed notebooks (*.ipynb), one folder per seed")
    ap.add_argument("--preset", required=True)
    ap.add_argument("--machine", required=True)
    ap.add_argument("--date", required=True)
    ap.add_argument("--times", type=Path, default=None, help="'<chapter> rc=<code> <seconds> s' lines")
    ap.add_argument("--wall", type=Path, default=None, help="run_seeds.py --jobs's log (the whole run's wall time)")
    args = ap.parse_args(argv)
    sys.stdout.write(render(args.folders, args.preset, args.machine, args.date, args.times, args.wall))


if __name__ == "__main__":
    main()
