"""Run chapters with a larger preset over its seeds, for ``tools/recorded_runs.py``.

    python tools/run_seeds.py --preset cpu --out runs/ [--only 06 09] [--seeds 0 1 2]

Each chapter is executed with papermill once per seed (``-p preset <preset> -p seed <s>``) into
``<out>/seed<s>/<chapter>.ipynb``; every run appends ``<chapter> rc=<code> <seconds> s`` to
``<out>/seed<s>/times.txt``. The seeds default to ``range(PRESETS[preset]["seeds"])``, except for
the chapters in ``presets.ONE_SEED_CHAPTERS`` (seed 0 only; the reason is given there). A run that
exists already (rc=0 in times.txt and its notebook present) is skipped, so an interrupted
recording resumes. ``--jobs N`` runs N chapters at a time (each in its own process, torch on one
thread; :func:`schedule` says which may run together). Then:

    python tools/recorded_runs.py runs/seed0 runs/seed1 runs/seed2 --preset cpu --machine ... --date ...
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nbexec import ROOT, chapter_notebooks, execute

sys.path.insert(0, str(ROOT))
from hdvit_lib.presets import ONE_SEED_CHAPTERS, get_preset


def seeds_for(chapter: str, preset: str, seeds: list[int] | None = None) -> list[int]:
    """The seeds a chapter runs with under ``preset`` (``seeds`` given: those, still one for the
    chapters in ``ONE_SEED_CHAPTERS``)."""
    if chapter[:2] in ONE_SEED_CHAPTERS:
        return [seeds[0] if seeds else 0]
    return list(seeds) if seeds else list(range(int(get_preset(preset)["seeds"])))


#: One-seed chapters that reuse another one-seed chapter's models: 13 loads 12's build-up candidates.
AFTER = {"13": ("12",)}


def schedule(stems: list[str], preset: str, seeds: list[int] | None = None) -> list[tuple[str, int, set]]:
    """The runs ``(stem, seed, runs it waits for)``, in the order they are started when they may.

    Within a seed the chapters run one after another in book order (a later chapter loads the
    models an earlier one trained: run at the same time, both would train them). A one-seed
    chapter (``presets.ONE_SEED_CHAPTERS``) waits only for its seed's other chapters and for
    :data:`AFTER`, so it can run beside the next seed's chapters. Chapter 14 is offered first (the
    longest single run), then the seeds' chains (seed 0's first), then the other one-seed chapters.
    """
    runs = [(stem, seed) for stem in stems for seed in seeds_for(stem, preset, seeds)]
    many = [r for r in runs if r[0][:2] not in ONE_SEED_CHAPTERS]
    out = []
    for stem, seed in runs:
        if stem[:2] in ONE_SEED_CHAPTERS:
            wait = {r for r in many if r[1] == seed}
            wait |= {r for r in runs if r[1] == seed and r[0][:2] in AFTER.get(stem[:2], ())}
        else:
            earlier = [r for r in many if r[1] == seed and r[0] < stem]
            wait = {max(earlier)} if earlier else set()
        out.append((stem, seed, wait))
    first = [r for r in out if r[0][:2] == "14"]
    rest = sorted((r for r in out if r[0][:2] not in ONE_SEED_CHAPTERS), key=lambda r: (r[1], r[0]))
    return first + rest + [r for r in out if r not in first and r not in rest]


def run_parallel(stems: list[str], args: argparse.Namespace) -> int:
    """Run :func:`schedule` with ``args.jobs`` chapters at a time, each a ``run_seeds.py --only``
    process of its own (log: ``<out>/seed<s>/<stem>.log``); returns the number that failed."""
    todo, running, finished, failed = schedule(stems, args.preset, args.seeds), {}, set(), 0
    start = time.time()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    while todo or running:
        for key, proc in list(running.items()):
            if proc.poll() is not None:
                del running[key]
                finished.add(key)
                failed += proc.returncode != 0
                print(f"[seeds] {key[0]} seed {key[1]}: rc={proc.returncode} at {(time.time() - start) / 60:.1f} min",
                      flush=True)
        ready = [r for r in todo if r[2] <= finished]
        while ready and len(running) < args.jobs:
            stem, seed, _ = ready.pop(0)
            todo = [r for r in todo if r[:2] != (stem, seed)]
            folder = args.out / f"seed{seed}"
            folder.mkdir(parents=True, exist_ok=True)
            cmd = [sys.executable, __file__, "--preset", args.preset, "--out", str(args.out), "--only", stem[:2],
                   "--seeds", str(seed)]
            with open(folder / f"{stem}.log", "a") as log:
                running[(stem, seed)] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
            print(f"[seeds] {stem} seed {seed}: started at {(time.time() - start) / 60:.1f} min", flush=True)
            time.sleep(5)  # kernels started at the same moment can race for a port
        if running:
            time.sleep(2)
    print(f"[seeds] all done in {(time.time() - start) / 60:.1f} min, {failed} failed", flush=True)
    return failed


def done(folder: Path, stem: str) -> bool:
    times = folder / "times.txt"
    return (folder / f"{stem}.ipynb").exists() and times.exists() and any(
        line.startswith(f"{stem} rc=0 ") for line in times.read_text().splitlines())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--only", nargs="*", default=None, help="chapter number prefixes, e.g. 06 09")
    ap.add_argument("--seeds", nargs="*", type=int, default=None)
    ap.add_argument("--jobs", type=int, default=1, help="chapters run at a time (one thread each)")
    args = ap.parse_args(argv)
    notebooks = [nb for nb in chapter_notebooks() if not args.only or any(nb.name.startswith(o) for o in args.only)]
    if args.jobs > 1:
        return 1 if run_parallel([nb.stem for nb in notebooks], args) else 0
    failed = 0
    for nb in notebooks:
        for seed in seeds_for(nb.stem, args.preset, args.seeds):
            folder = args.out / f"seed{seed}"
            folder.mkdir(parents=True, exist_ok=True)
            if done(folder, nb.stem):
                print(f"[seeds] {nb.stem} seed {seed}: done already", flush=True)
                continue
            print(f"[seeds] {nb.stem} seed {seed} (preset {args.preset}) ...", flush=True)
            rc, secs = 0, 0.0
            try:
                secs = execute(nb, folder / nb.name, preset=args.preset, timeout=None, parameters={"seed": seed})
            except Exception as err:  # noqa: BLE001 (a dead kernel is not a PapermillExecutionError)
                rc, failed = 1, failed + 1
                print(f"[seeds] FAILED {nb.stem} seed {seed}: {str(err).strip()[-1500:]}", flush=True)
            with open(folder / "times.txt", "a") as f:
                f.write(f"{nb.stem} rc={rc} {round(secs)} s\n")
            print(f"[seeds] {nb.stem} seed {seed}: rc={rc}, {secs / 60:.1f} min", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
