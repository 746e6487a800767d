"""Every chapter at paper size, on the CPU: the ``gpu`` and ``paper`` presets end to end, made tiny.

A Colab reader who runs a chapter with ``preset="gpu"`` (or ``"paper"``) meets the paper-size
models, CIFAR-100 through the device-side augmentation (``device_augment``), bf16/fp16-free CPU
dtypes, the training plan and the authors' checkpoints (``weights="official"``) only after a
download and, often, an hour of training. These tests run each chapter under papermill with those
presets' models, data pipeline and code paths, and only the sizes shrunk:

- ``$HDVIT_PRESET_OVERRIDES`` (read by ``hdvit_lib.notebook.setup``, printed at the top of the
  chapter) cuts the preset to two epochs of 16 images at batch 8, 10 test images, one Hessian
  mini-batch of 4 images (top-1 eigenvalue), a 3x3 landscape on 8 images, 8 analysis images;
- CIFAR-100 is written by the test in the real archive format (``hdvit_lib.data.cifar_files``) under
  ``$HDVIT_DATA``; the kernel's torchvision expects the fixture's MD5s (an IPython startup file in
  ``$IPYTHONDIR``, the kernel being another process), so the preset's ``download=True`` finds the
  files in place and fetches nothing (no network here);
- the authors' four release files are faked with our paper-size models' weights in the release
  layout (``{"name", "state_dict"}``, the keys as timm 0.5.4 names them) in
  ``$HDVIT_CACHE/checkpoints``, where a reader without network puts them; their names' hex suffix is
  not their SHA-256 prefix, so the loader warns (as it would for a reader if the guess is wrong) and
  records the SHA-256 on first use;
- timm's ImageNet-1K ResNet-50 and ViT-Ti (chapters 02 and 08 analyse them in ``gpu``/``paper``, as
  the paper does) are random weights of timm's own architectures, placed where a reader without
  network puts them (``$HDVIT_CACHE/imagenet``), beside an extracted Imagenette of 20 JPEGs;
  ``HF_HUB_OFFLINE`` keeps timm from waiting on retries (~46 s per chapter otherwise);
- the model cache (``$HDVIT_CACHE``) starts empty and is shared by the chapters of one preset, as
  for a reader who reads them in order.

Sweeps are shrunk through the chapters' own parameters (``PARAMS``): smaller sweeps of patch
sizes, windows and data fractions; the Lanczos steps per mini-batch through the preset key
``hessian_steps`` (4 instead of 100: each step of a paper-size ResNet-50 costs seconds here).

Cost: ``gpu`` runs every chapter; ``paper`` shares ``gpu``'s models, data, augmentation and
analysis code and differs in its sweeps (patch 1, four data fractions, window 9), its 300-epoch
recipe numbers and the build-up's unbounded candidate count, so it runs two chapters
(:data:`PAPER_CHAPTERS`: the authors' checkpoints and the Fourier/ImageNet path; the build-up).
The 17 tests take ~15 minutes of test time on 2 cores (gpu-01 ~140 s, paper-12 ~135 s, gpu-14
~115 s, most others 20-75 s), about 8 minutes with one worker per core: they run as their own
tier (``make test-paper-size``, marker ``paper_size``), which CI runs after ``make test``.
"""

from __future__ import annotations

import json
import re
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from nbexec import chapter_notebooks, execute

pytestmark = pytest.mark.paper_size

#: Tiny sizes, every other key the preset's own.
OVERRIDES = {"n_train": 16, "n_test": 10, "epochs": 2, "warmup_epochs": 1, "batch_size": 8, "snapshot_every": 1,
             "hessian_batches": 1, "hessian_batch_size": 4, "hessian_k": 1, "landscape_points": 3,
             "landscape_images": 8, "analysis_images": 8, "hessian_steps": 4,
             "analysis_buildup": {"train_overrides": {}, "max_evals": 2},
             "analysis_corruptions": {"names": ["gaussian_noise", "contrast"], "severities": [3], "n_images": 10},
             "analysis_scale": {"images": 8, "hessian_batches": 1, "landscape_points": 3, "landscape_images": 8,
                                "sizes": {"resnet50": {"ResNet-50": {}}, "vit_ti": {"ViT-Ti": {}}},
                                "data_fractions": [1.0]}}
#: Images in the fake CIFAR-100 files: 10 classes of the 100 present (a class-balanced subsample
#: keeps at least one image per present class, so fewer classes make the small-data runs small).
N_TRAIN, N_TEST, CLASSES = 20, 10, 10
#: Chapter parameters that shrink sweeps no preset key reaches (the chapters' own parameters cells).
PARAMS: dict[str, dict[str, dict]] = {
    "gpu": {
        "05_inductive_bias.ipynb": {"patch_sizes": [4, 8], "data_fractions": [0.1, 1.0]},
        "07_local_msa.ipynb": {"windows": [3]},
    },
    "paper": {
        "05_inductive_bias.ipynb": {"patch_sizes": [4, 8], "data_fractions": [0.02, 1.0]},
        "07_local_msa.ipynb": {"windows": [3]},
    },
}
#: ``paper`` runs these (module docstring); ``gpu`` runs every chapter.
PAPER_CHAPTERS = ("02_fourier.ipynb", "12_buildup_and_robustness.ipynb")

#: Imagenette's ten ImageNet-1K synsets (its folder names).
IMAGENETTE_SYNSETS = ("n01440764", "n02102040", "n02979186", "n03000684", "n03028079", "n03394916",
                      "n03417042", "n03425413", "n03445777", "n03888257")
#: Chapter 14 measures every claim at every snapshot (a paper-size ResNet-50: ~20 s each here):
#: one epoch (init and end of warm-up) keeps it to four measurements.
CHAPTER_OVERRIDES = {"14_claims_over_training_and_scale.ipynb": {"epochs": 1}}

RELEASE = {"resnet50": "resnet_50_cifar100_691cc9a9e4.pth.tar", "vit_ti": "vit_ti_cifar100_9857b21357.pth.tar",
           "pit_ti": "pit_ti_cifar100_0645889efb.pth.tar", "swin_ti": "swin_ti_cifar100_ec2894492b.pth.tar"}

STARTUP = """\
# Written by tests/test_paper_size.py: torchvision expects the fixture's MD5s (the test's fake CIFAR-100).
import torchvision.datasets.cifar as _tv
_tv.CIFAR100.train_list = [["train", {train!r}]]
_tv.CIFAR100.test_list = [["test", {test!r}]]
_tv.CIFAR100.meta = {{**_tv.CIFAR100.meta, "md5": {meta!r}}}
del _tv
"""


def release_layout(name: str, sd: dict) -> dict:
    """Our state dict in the authors' release layout: the inverse of ``pretrained.remap_<name>``."""
    if name == "pit_ti":  # timm 0.5.4 pools at the end of a stage
        return {re.sub(r"^transformers\.(\d+)\.pool\.", lambda m: f"transformers.{int(m[1]) - 1}.pool.", k): v
                for k, v in sd.items()}
    if name == "swin_ti":  # patch merging at the end of a stage; head.* not head.fc.*
        out = {}
        for k, v in sd.items():
            k = re.sub(r"^layers\.(\d+)\.downsample\.", lambda m: f"layers.{int(m[1]) - 1}.downsample.", k)
            out[k.replace("head.fc.", "head.", 1) if k.startswith("head.fc.") else k] = v
        return out
    if name == "vit_ti":
        return {re.sub(r"^transformer\.", "blocks.", k): v for k, v in sd.items()}
    return dict(sd)


def write_imagenet(weights: Path, data: Path) -> None:
    """timm's two ImageNet-1K models' files as a reader without network places them by hand
    (``$HDVIT_CACHE/imagenet/<name>.safetensors``: timm's own architecture, random weights) and an
    extracted Imagenette (``$HDVIT_DATA/imagenette2-320/val/<synset>/*.JPEG``, 2 images per class)."""
    import timm
    import torch
    from PIL import Image
    from safetensors.torch import save_file

    from hdvit_lib import imagenet

    weights.mkdir(parents=True, exist_ok=True)
    for i, (name, timm_name) in enumerate(imagenet.TIMM_NAMES.items()):
        torch.manual_seed(i)
        sd = timm.create_model(timm_name, pretrained=False).state_dict()
        save_file({k: v.contiguous() for k, v in sd.items()}, str(weights / f"{name}.safetensors"))
    rng = np.random.default_rng(0)
    for wnid in IMAGENETTE_SYNSETS:
        folder = data / imagenet.IMAGENETTE_DIR / "val" / wnid
        folder.mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, size=(40, 60, 3), dtype=np.uint8)).save(folder / f"{i}.JPEG")


def write_releases(folder: Path) -> None:
    """Fake release files of the four released models (random paper-size weights, release layout)."""
    import torch

    from hdvit_lib.models import get_model

    folder.mkdir(parents=True, exist_ok=True)
    for i, (name, asset) in enumerate(RELEASE.items()):
        torch.manual_seed(i)
        sd = get_model(name, num_classes=100).state_dict()
        torch.save({"name": asset.split("_cifar100")[0], "state_dict": release_layout(name, sd)}, folder / asset)


def test_release_layout_loads_through_the_official_loader(tmp_path: Path) -> None:
    """The fake files are what ``load_pretrained`` expects: every tensor lands where it came from."""
    import torch

    from hdvit_lib import pretrained
    from hdvit_lib.models import get_model

    write_releases(tmp_path)
    for i, name in enumerate(RELEASE):
        torch.manual_seed(i)
        want = get_model(name, num_classes=100).state_dict()
        with pytest.warns(pretrained.PrefixWarning):
            got = pretrained.load_pretrained(name, cache_dir=tmp_path, progress=False).state_dict()
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)


@pytest.fixture(scope="module")
def reader_machine(tmp_path_factory) -> Path:
    """Fake CIFAR-100, the fake release files and the kernel's startup file, written once."""
    from hdvit_lib.data.cifar_files import write_cifar100

    root = tmp_path_factory.mktemp("paper_size")
    rng = np.random.default_rng(0)
    split = {n: (rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8), [i % CLASSES for i in range(n)])
             for n in (N_TRAIN, N_TEST)}
    md5 = write_cifar100(root / "data", split[N_TRAIN], split[N_TEST])
    write_releases(root / "releases")
    write_imagenet(root / "imagenet", root / "data")
    startup = root / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-hdvit-fake-cifar.py").write_text(textwrap.dedent(STARTUP.format(**md5)))
    return root


@pytest.fixture(scope="module")
def preset_cache(reader_machine: Path) -> dict[str, Path]:
    """One empty model cache per preset, each holding the release files (copied on first use)."""
    return {}


def _chapters(preset: str) -> list:
    names = [p for p in chapter_notebooks() if preset == "gpu" or p.name in PAPER_CHAPTERS]
    return [pytest.param(preset, p, id=f"{preset}-{p.name}") for p in names]


@pytest.mark.notebook
@pytest.mark.timeout(900)
@pytest.mark.parametrize("preset, path", _chapters("gpu") + _chapters("paper"))
def test_chapter_at_paper_size(preset: str, path: Path, reader_machine: Path, preset_cache: dict,
                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The chapter runs end to end with ``preset`` on the CPU: paper-size models, CIFAR-100 through
    the preset's pipeline, the authors' (fake) checkpoints, the plan; only the sizes are tiny."""
    import shutil

    if preset not in preset_cache:
        cache = reader_machine / f"cache-{preset}"
        shutil.copytree(reader_machine / "releases", cache / "checkpoints")
        shutil.copytree(reader_machine / "imagenet", cache / "imagenet")
        preset_cache[preset] = cache
    overrides = {**OVERRIDES, **CHAPTER_OVERRIDES.get(path.name, {})}
    monkeypatch.setenv("HDVIT_PRESET_OVERRIDES", json.dumps(overrides))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no network here: timm must not wait on retries
    monkeypatch.setenv("HDVIT_DATA", str(reader_machine / "data"))
    monkeypatch.setenv("HDVIT_CACHE", str(preset_cache[preset]))
    monkeypatch.setenv("IPYTHONDIR", str(reader_machine / "ipython"))
    out = tmp_path / path.name
    seconds = execute(path, out, preset=preset, timeout=900, parameters=PARAMS[preset].get(path.name, {}))
    text = out.read_text()
    assert f"preset '{preset}'" in text and "HDVIT_PRESET_OVERRIDES" in text
    epochs = overrides["epochs"]
    assert (f"This run: preset {preset}, cifar100 (16 training / 10 test images), paper-size models, {epochs} epoch"
            in text)
    if path.name in ("02_fourier.ipynb", "08_high_frequency.ipynb"):  # timm's ImageNet models, as the paper
        assert "resnet50_in1k" in text and "vit_ti_in1k" in text and "DownloadError" not in text
    print(f"{preset} {path.name}: {seconds:.0f} s")
