"""Presets: one name, read by every chapter (``smoke`` | ``cpu`` | ``gpu`` | ``paper`` | ``auto``).

- ``smoke``: CI and the default book build. Offline generated data, tiny models, seconds per chapter.
- ``cpu``: a laptop, minutes per chapter on the offline data (the whole book, three seeds where a
  chapter's budget allows, 86 min on 2 cores: ``book/recorded_runs.md``); sized so the paper's
  qualitative claims can show.
- ``gpu``: one GPU session (a Colab T4: ~30 minutes per chapter, computed; minutes on an
  A100/H100): CIFAR-100, the paper's models at paper size, a short schedule (below), the
  authors' checkpoints wherever they fit.
- ``paper``: CIFAR-100, the paper's models and recipe (Park & Kim 2022, Appendix A), a GPU; chosen
  explicitly (300 epochs per model: hours to days on one GPU).
- ``auto``: ``gpu`` when a CUDA GPU is present, else ``cpu``.

How the ``gpu`` schedule was sized (computed, not measured). Forward FLOPs per 32x32 image, counted
with ``torch.utils.flop_counter`` on the paper-size models (fused attention off, so that attention
counts): ResNet-18 1.11 G, ResNet-50 2.60 G, ViT-Ti (patch 2) 3.34 G, PiT-Ti 1.90 G, Swin-Ti
2.86 G, AlterNet-50 3.02 G. A training step costs ~3x the forward pass; an epoch is 50,000
training images plus a 10,000-image test pass, i.e. ~160,000 forward-equivalents: 4.2e14 FLOPs
(ResNet-50) to 5.3e14 (ViT-Ti). A T4 peaks at ~65 TFLOPS in fp16; at a realistic ~30% that is
~20 TFLOPS, so one epoch takes ~21 s (ResNet-50), ~27 s (ViT-Ti), ~16 s (PiT-Ti), ~24 s (Swin-Ti),
~25 s (AlterNet-50); an H100 (~990 TFLOPS bf16 dense, ~30%: ~300 TFLOPS) is ~15x faster, where
small 32x32 models are more often limited by the input pipeline and kernel launches than by FLOPs.
The heaviest chapters train about 110 s of T4 time per epoch (chapter 04: five model families
with snapshots; chapter 07: four ViT-sized runs), so 15 epochs (1 of warm-up, the paper's 5/300
rounded up) keep them near 30 minutes; the released models come from the authors' checkpoints
(``weights="official"``) wherever a chapter needs only final weights. Batch 256 with the
learning rate scaled linearly from the paper's 1.25e-4 at batch 96 (3.33e-4); bf16 autocast
(fp16 with loss scaling where bf16 is emulated, as on a T4: ``hdvit_lib.modes.amp_dtype``);
augmentation on the device (``device_augment``); 20 Hessian mini-batches, an 11x11 landscape
grid on 2000 images. ``book/how_to_run.md`` has the per-chapter table.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {
        "dataset": "synthetic",
        "download": False,
        "num_classes": None,  # None: the dataset's own (synthetic: 10)
        "n_train": 2000,  # a cold `make book` trains ~20 models: 2000 x 2 epochs keeps it < 5 min
        "n_test": 500,
        "tiny": True,
        "epochs": 2,
        "warmup_epochs": 1,
        "batch_size": 64,
        "lr": 1e-3,
        "weight_decay": 0.05,
        "label_smoothing": 0.1,
        "augment": "crop_flip",
        "device_augment": 0,
        "clip_grad": 5.0,
        "snapshot_every": 1,
        "hessian_batches": 2,
        "hessian_batch_size": 16,
        "hessian_k": 2,
        "landscape_points": 5,
        "landscape_images": 256,
        "landscape_amp": False,
        "analysis_images": 128,
        "weights": "trained",
    },
    "cpu": {
        "dataset": "synthetic",
        "download": False,
        "num_classes": None,  # None: the dataset's own (synthetic: 10)
        "n_train": 10000,
        "n_test": 2000,
        "tiny": True,
        # 10 epochs (was 15): the whole book over its seeds fits 90 min on 2 cores
        # (book/recorded_runs.md gives the measured times)
        "epochs": 10,
        "warmup_epochs": 1,
        "batch_size": 64,
        "lr": 1e-3,
        "weight_decay": 0.05,
        "label_smoothing": 0.1,
        "augment": "crop_flip",
        "device_augment": 0,
        "clip_grad": 5.0,
        "snapshot_every": 5,
        "hessian_batches": 20,
        "hessian_batch_size": 16,
        "hessian_k": 5,
        "landscape_points": 11,
        "landscape_images": 1000,
        "landscape_amp": False,
        "analysis_images": 512,
        "weights": "trained",
    },
    "gpu": {
        # One GPU session: the paper's data, models and augmentation, a 15-epoch schedule (module
        # docstring: sized from FLOPs so that a chapter takes ~30 min on a T4).
        "dataset": "cifar100",
        "download": True,
        "num_classes": None,
        "n_train": None,
        "n_test": None,
        "tiny": False,
        "epochs": 15,
        "warmup_epochs": 1,
        "batch_size": 256,
        "lr": 1.25e-4 * 256 / 96,  # linear scaling from the paper's 1.25e-4 at batch 96
        "weight_decay": 0.05,
        "label_smoothing": 0.1,
        "augment": "paper",
        "device_augment": 8,
        "clip_grad": 5.0,
        "snapshot_every": 5,
        "hessian_batches": 20,
        "hessian_batch_size": 16,
        "hessian_k": 5,
        "landscape_points": 11,
        "landscape_images": 2000,
        "landscape_amp": True,
        "analysis_images": 1000,
        "weights": "official",  # the authors' checkpoints where they fit (the paper's own models)
    },
    "paper": {
        # Park & Kim (2022), Appendix A: AdamW, lr 1.25e-4 at batch 96, wd 0.05, 5 warm-up +
        # 300 epochs, cosine, clip 5, RandAugment, mixup/cutmix, label smoothing 0.1.
        "dataset": "cifar100",
        "download": True,  # torchvision's CIFAR-100 download (MD5-checked) into $HDVIT_DATA
        "num_classes": None,
        "n_train": None,
        "n_test": None,
        "tiny": False,
        "epochs": 300,
        "warmup_epochs": 5,
        "batch_size": 96,
        "lr": 1.25e-4,
        "weight_decay": 0.05,
        "label_smoothing": 0.1,
        "augment": "paper",
        # augment on the training device, RandAugment drawn per group of 8 images
        # (hdvit_lib.data.device_loader; 0: per-sample on the CPU, in the DataLoader)
        "device_augment": 8,
        "clip_grad": 5.0,
        "snapshot_every": 50,
        "hessian_batches": 312,  # 10% of the CIFAR-100 training set at batch 16
        "hessian_batch_size": 16,
        "hessian_k": 5,
        "landscape_points": 21,
        "landscape_images": 10000,
        "landscape_amp": True,  # bf16 forward passes (Fig. 1a at 21x21 x 10k images on a GPU)
        "analysis_images": 1000,
        # "official": the authors' CIFAR-100 checkpoints (hdvit_lib.pretrained) for the models
        # that have one, at their default settings on all of the data; every other run is trained.
        "weights": "official",
    },
}

#: The paper's model families (Figs. 2, 5, 8, 9, 12b: ResNet, ViT, PiT, Swin, AlterNet).
FAMILIES = ("resnet50", "vit_ti", "pit_ti", "swin_ti", "alternet50")

#: What each chapter analyses, and how much, per preset: one place for every per-preset setting of
#: the chapters. Keys start with ``analysis_`` or ``hessian_``, so they never enter a run's cache key
#: (``hdvit_lib.train.cache.ANALYSIS_PREFIXES``: they steer analyses, not the trained weights).
#:
#: - ``hessian_steps``: Lanczos steps (Krylov dimension) per mini-batch; few in ``smoke`` (rough Ritz values).
#: - ``analysis_sweeps``: chapters 04-07's default sweeps (``None`` in a parameters cell means these).
#:   ``cpu`` leaves out patch 2: the tiny ViT trains at ~130 img/s with it on one core (~600 with
#:   patch 4), 20 min alone; ``gpu``: no patch 1 (1024 tokens, ~5x ViT-Ti's cost), fewer points.
#: - ``analysis_noise_eps``: eps of Fig. 2b's +-eps sign noise (normalised pixel units) that the authors'
#:   FreqAttack filters to a band (unpublished). At 32x32 with 0.1 pi bands the filtered RMS is
#:   0.11 eps (0.1 pi) ... 0.41 eps (0.9 pi); eps = 2 gives RMS 0.22 ... 0.81 (power mean 0.52, the
#:   book's former equal-power RMS 0.5); eps = 0.5 barely moved the smoke models (|change| <= 2 points);
#:   ``gpu``/``paper``: 0.4, the mean power of the former equal-power RMS 0.1.
#: - ``analysis_models``: each representation chapter's models. Figs. 8/9 take all five families.
#: - ``analysis_buildup``: Fig. 12a's build-up budget: training overrides per candidate and the most
#:   candidates evaluated (``None``: until the rule stops). ``smoke`` is a demonstration only; ``gpu``:
#:   ~6 T4-minutes per candidate.
#: - ``analysis_corruptions``: Fig. 12b's corruptions, severities (``None``: all) and test images
#:   (``None``: the whole split).
#: - ``analysis_data_fractions`` / ``analysis_local_fractions``: chapter 13's training-set fractions
#:   (Q2: AlterNet on small data; Q3: local vs global MSA).
#: - ``analysis_scale``: chapter 14's budget per snapshot (test ``images``, ``hessian_batches``, a
#:   ``landscape_points``^2 grid on ``landscape_images``) and its scale runs: model ``sizes`` (model
#:   settings per label) and ``data_fractions``; ``datasets``: the offline data sets compared at the
#:   same budget (``smoke``/``cpu``; none at paper scale, where the data is CIFAR-100).
#:   ``smoke`` measures 8 snapshots + 4 extra runs in ~2 min.
_SWEEPS = {
    "smoke": {"data_fractions": [0.5, 1.0], "fraction_models": ["vit_ti"], "patch_sizes": [4, 8], "windows": [3, 5]},
    "cpu": {"data_fractions": [0.1, 0.3, 1.0], "fraction_models": ["resnet50", "vit_ti"],
            "patch_sizes": [4, 8, 16], "windows": [3, 5, 7]},
    "gpu": {"data_fractions": [0.1, 1.0], "fraction_models": ["resnet50", "vit_ti"], "patch_sizes": [2, 4, 8],
            "windows": [3, 5, 7]},
    "paper": {"data_fractions": [0.02, 0.1, 0.3, 1.0], "fraction_models": ["resnet50", "vit_ti"],
              "patch_sizes": [1, 2, 4, 8], "windows": [3, 5, 7, 9]},
}
_MODELS = {"fourier": ["resnet50", "vit_ti"], "high_frequency": list(FAMILIES), "variance": list(FAMILIES),
           "similarity": ["resnet50", "swin_ti", "vit_ti"]}
#: Chapter 14's model sizes: the preset's own size ("small") and one twice as wide.
_SIZES = {"resnet50": {"small": {}, "wide": {"widths": (8, 16, 32, 64)}},
          "vit_ti": {"small": {}, "wide": {"embed_dim": 128, "num_heads": 4}}}
_SIZES_PAPER = {"resnet50": {"ResNet-50": {}, "wide": {"widths": (128, 256, 512, 1024)}},
                "vit_ti": {"ViT-Ti": {}, "ViT-S": {"embed_dim": 384, "num_heads": 6}}}
ANALYSIS: dict[str, dict[str, Any]] = {
    "smoke": {
        "hessian_steps": 8,
        "analysis_sweeps": _SWEEPS["smoke"],
        "analysis_noise_eps": 2.0,
        "analysis_models": _MODELS,
        "analysis_buildup": {"train_overrides": {"epochs": 1, "warmup_epochs": 0}, "max_evals": 3},
        "analysis_corruptions": {"names": ["gaussian_noise", "motion_blur", "contrast"], "severities": [1, 3, 5],
                                 "n_images": 128},
        "analysis_data_fractions": [0.25, 1.0],
        "analysis_local_fractions": [0.25, 1.0],
        "analysis_scale": {"images": 32, "hessian_batches": 1, "landscape_points": 3, "landscape_images": 32,
                           "sizes": _SIZES, "data_fractions": [0.5, 1.0],
                           "datasets": ["synthetic", "fractal"]},
    },
    "cpu": {
        "hessian_steps": 30,
        "analysis_sweeps": _SWEEPS["cpu"],
        "analysis_noise_eps": 2.0,
        "analysis_models": _MODELS,
        "analysis_buildup": {"train_overrides": {"epochs": 5}, "max_evals": None},
        "analysis_corruptions": {"names": None, "severities": None, "n_images": 1000},
        "analysis_data_fractions": [0.1, 0.3, 1.0],
        "analysis_local_fractions": [0.1, 1.0],
        "analysis_scale": {"images": 256, "hessian_batches": 4, "landscape_points": 5, "landscape_images": 256,
                           "sizes": _SIZES, "data_fractions": [0.3, 1.0],
                           "datasets": ["synthetic", "fractal"]},
    },
    "gpu": {
        "hessian_steps": 100,
        "analysis_sweeps": _SWEEPS["gpu"],
        "analysis_noise_eps": 0.4,
        "analysis_models": _MODELS,
        "analysis_buildup": {"train_overrides": {}, "max_evals": 4},
        "analysis_corruptions": {"names": None, "severities": None, "n_images": 2000},
        "analysis_data_fractions": [0.1, 1.0],
        "analysis_local_fractions": [0.1, 1.0],
        "analysis_scale": {"images": 500, "hessian_batches": 10, "landscape_points": 7, "landscape_images": 1000,
                           "sizes": _SIZES_PAPER, "data_fractions": [0.1, 1.0]},
    },
    "paper": {
        "hessian_steps": 100,
        "analysis_sweeps": _SWEEPS["paper"],
        "analysis_noise_eps": 0.4,
        "analysis_models": _MODELS,
        "analysis_buildup": {"train_overrides": {}, "max_evals": None},
        "analysis_corruptions": {"names": None, "severities": None, "n_images": None},
        "analysis_data_fractions": [0.1, 0.3, 1.0],
        "analysis_local_fractions": [0.1, 1.0],
        "analysis_scale": {"images": 1000, "hessian_batches": 20, "landscape_points": 11, "landscape_images": 2000,
                           "sizes": _SIZES_PAPER, "data_fractions": [0.1, 0.3, 1.0]},
    },
}
for _name, _extra in ANALYSIS.items():
    PRESETS[_name].update(_extra)

#: ``seeds``: how many seeds a recorded run of the preset averages each claim over
#: (``tools/run_seeds.py``, ``claims.over_seeds``); a chapter itself runs one seed (its ``seed``
#: parameter). ``cpu``: 3, the fewest that give a standard error over seeds; ``gpu``/``paper``: 1
#: (the authors' checkpoints are one seed; a paper-size run costs hours).
for _name, _n in {"smoke": 1, "cpu": 3, "gpu": 1, "paper": 1}.items():
    PRESETS[_name]["seeds"] = _n

#: Chapters a recorded run gives one seed whatever the preset's ``seeds``, so that the `cpu` record
#: of the whole book fits 90 min on 2 cores: 07 (three local-attention ViTs of its own), 12 (the
#: build-up's candidates, 9 corruptions x 5 severities) and 13 (12's candidates again), whose
#: claim checks carry a within-run standard error (binomial SEs of test errors, a bootstrap SE of
#: NEP); and 14, whose subject is the trajectory of each run (two wider models and every snapshot
#: analysed). A recorded run gives these the first seed.
ONE_SEED_CHAPTERS = ("07", "12", "13", "14")

NAMES = ("smoke", "cpu", "gpu", "paper", "auto")
#: Presets at the paper's scale (CIFAR-100, paper-size models): chapters' per-preset tables give
#: ``gpu`` its own (smaller) sweeps and share ``paper``'s analysis choices.
PAPER_SCALE = ("gpu", "paper")
#: Where a chapter's models come from: trained here (cached), or the authors' released checkpoints.
WEIGHTS = ("trained", "official")


def resolve(name: str) -> str:
    """Map ``auto`` to ``gpu`` (CUDA present) or ``cpu``; check the name. ``paper`` (300 epochs per
    model) is never chosen automatically."""
    if name not in NAMES:
        raise ValueError(f"preset={name!r} is unknown; choose one of {', '.join(NAMES)}")
    if name == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    return name


def get_preset(name: str, **overrides: Any) -> dict[str, Any]:
    """The settings of preset ``name`` (a copy), with ``overrides`` applied.

    An override whose key the preset does not have raises, naming the valid keys.
    ``weights="official"`` (the authors' CIFAR-100 checkpoints; the default of ``gpu`` and
    ``paper``) needs CIFAR-100 and paper-size models; ``smoke`` and ``cpu`` train their own.
    """
    cfg = copy.deepcopy(PRESETS[resolve(name)])
    for k, v in overrides.items():
        if k not in cfg:
            raise ValueError(f"{k!r} is not a preset setting; valid: {', '.join(sorted(cfg))}")
        cfg[k] = v
    cfg["name"] = resolve(name)
    if cfg["weights"] not in WEIGHTS:
        raise ValueError(f"weights={cfg['weights']!r} is unknown; choose one of {', '.join(WEIGHTS)}")
    if cfg["weights"] == "official" and (cfg["dataset"] != "cifar100" or cfg["tiny"]):
        raise ValueError(
            f"weights='official' loads the authors' CIFAR-100 checkpoints of paper-size models; preset "
            f"{cfg['name']!r} has dataset={cfg['dataset']!r}, tiny={cfg['tiny']}: use preset='gpu' or 'paper' "
            "(or weights='trained')")
    return cfg
