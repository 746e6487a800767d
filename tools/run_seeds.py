"""Run chapters with a larger preset over its seeds, for ``tools/recorded_runs.py``.

    python tools/run_seeds.py --preset cpu --out runs/ [--only 06 09] [--seeds 0 1 2]

Each chapter is executed with papermill once per seed (``-p preset <preset> -p seed <s>``) into
``<out>/seed<s>/<chapter>.ipynb``; every run appends ``<chapter> rc=<code> <seconds> s`` to
``<out>/seed<s>/times.txt``. The seeds default to ``range(PRESETS[preset]["seeds"])``, except for
the chapters in ``presets.ONE_SEED_CHAPTERS`` (seed 0 only; the reason is given there). A run that
exists already (rc=0 in times.txt and its notebook present) is skipped, so an interrupted
recording resumes. Then:

    python tools/recorded_runs.py runs/seed0 runs/seed1 runs/seed2 --preset cpu --machine ... --date ...
"""

from __future__ import annotations

import argparse
import sys
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
    args = ap.parse_args(argv)
    failed = 0
    for nb in chapter_notebooks():
        if args.only and not any(nb.name.startswith(o) for o in args.only):
            continue
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
