"""timm's ImageNet-1K ResNet-50 and ViT-Ti, and Imagenette images: the setting of Figs. 2a and 8.

The paper's Figs. 2a and 8 analyse ImageNet-1K models, not CIFAR ones: the authors'
``fourier_analysis.ipynb`` builds ``timm.create_model("resnet50", pretrained=True)`` and
``timm.create_model("vit_tiny_patch16_224", pretrained=True)`` and feeds 224x224 images
normalised by the ImageNet mean and std. Here:

- :func:`imagenet_model` builds the zoo's own ResNet-50 and ViT-Ti shaped like timm's (ResNet:
  the ImageNet stem, 7x7 stride-2 conv + max-pool, as ``layer0``; ViT: 224x224, patch 16, qkv
  bias) and loads timm's released weights into them, so ``model.blocks()`` (kinds, layouts,
  lesions) and every analysis work unchanged. The blocks are the authors' (stem with max-pool,
  one block per bottleneck, MSA and MLP halves of each transformer block, head). The weights come
  from ``$HDVIT_CACHE/imagenet/<name>.safetensors`` (or ``.pth``, read weights-only) when that
  file exists, else from timm's own ``pretrained=True`` download (Hugging Face hub; timm's default
  tags today: ``resnet50.a1_in1k``, ``vit_tiny_patch16_224.augreg_in21k_ft_in1k``; the authors ran
  timm 0.5.4, whose default ``resnet50`` weights were the same a1 file). A local file's SHA-256 is
  recorded beside it on first load and must match later (``pretrained.verify_checkpoint``).
- :func:`download_imagenette` fetches fast.ai's Imagenette (10 ImageNet classes, 320 px) once
  into ``$HDVIT_DATA/imagenette2-320`` and :func:`imagenette_batches` reads its validation
  images through ``get_dataset("imagefolder", ..., image_size=224)``, normalised by the ImageNet
  mean and std, with labels mapped to ImageNet-1K class indices (:func:`imagenet_indices`).

Checksum of the archive: no SHA-256 of ``imagenette2-320.tgz`` is published and none could be
computed here (no network). The pinned value is the MD5 that torchvision's ``Imagenette`` checks
(``torchvision/datasets/imagenette.py``); a mismatch is an error naming the file. The SHA-256 is
recorded beside the archive (``.sha256``) on first use and must match on every later use.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import tempfile
import urllib.request
from pathlib import Path

import torch
from torch import nn

from hdvit_lib.errors import download_failed

#: Zoo name -> timm's model name (the authors' ``fourier_analysis.ipynb``).
TIMM_NAMES = {"resnet50": "resnet50", "vit_ti": "vit_tiny_patch16_224"}
#: Suffix of the ImageNet models' names in results and figures (``resnet50_in1k``).
SUFFIX = "_in1k"
IMAGE_SIZE = 224
#: The authors' normalisation for both models (``fourier_analysis.ipynb``); timm's ViT-Ti
#: weights were trained with mean = std = 0.5, but the figure's protocol is the authors'.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

IMAGENETTE_URL = "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-320.tgz"
#: torchvision's pinned MD5 of that archive (``datasets.Imagenette._ARCHIVES["320px"]``).
IMAGENETTE_MD5 = "3df6f0d01a2c9592104656642f5e78a3"
IMAGENETTE_DIR = "imagenette2-320"

StateDict = dict[str, torch.Tensor]


class ArchiveChecksumError(RuntimeError):
    """A downloaded archive whose checksum differs from the pinned or recorded one."""


def _unavailable() -> tuple[type[BaseException], ...]:
    from hdvit_lib.errors import UnreadableCheckpoint
    from hdvit_lib.pretrained import ChecksumError

    return (OSError, tarfile.TarError, ArchiveChecksumError, ChecksumError, UnreadableCheckpoint)


#: What a missing network or a bad file raises on the way to the ImageNet models and images
#: (``DownloadError`` is an ``OSError``); chapters fall back to their CIFAR-style models on these.
UNAVAILABLE = _unavailable()


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


def weights_dir() -> Path:
    """``$HDVIT_CACHE/imagenet`` if set, else ``~/.cache/hdvit/imagenet``."""
    root = os.environ.get("HDVIT_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "hdvit") / "imagenet"


def _check_name(name: str) -> str:
    if name not in TIMM_NAMES:
        raise ValueError(f"no ImageNet model {name!r}; choose one of {', '.join(TIMM_NAMES)}")
    return TIMM_NAMES[name]


def imagenet_stem() -> nn.Sequential:
    """timm's ResNet stem: 7x7 stride-2 conv, BatchNorm, ReLU, 3x3 stride-2 max-pool (224 -> 56)."""
    return nn.Sequential(nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(64),
                         nn.ReLU(), nn.MaxPool2d(3, stride=2, padding=1))


def build_model(name: str) -> nn.Module:
    """The zoo's ``name`` in timm's ImageNet shape (1000 classes, no stochastic depth), untrained."""
    from hdvit_lib.models import get_model

    _check_name(name)
    if name == "resnet50":
        model = get_model("resnet50", num_classes=1000, drop_path_rate=0.0)
        model.layer0 = imagenet_stem()
        return model
    return get_model("vit_ti", num_classes=1000, img_size=IMAGE_SIZE, patch_size=16, qkv_bias=True,
                     drop_path_rate=0.0)


def remap_timm_resnet(sd: StateDict) -> StateDict:
    """timm ``resnet50`` keys -> the zoo's: ``conv1/bn1`` -> ``layer0.0/1``; in each bottleneck
    ``convK`` -> ``convK.0``, ``bnK`` -> ``convK.1``, ``downsample`` -> ``shortcut``;
    ``fc`` -> ``classifier.0.dense``."""
    out: StateDict = {}
    for k, v in sd.items():
        parts = k.split(".")
        if parts[0] == "conv1":
            k = "layer0.0." + ".".join(parts[1:])
        elif parts[0] == "bn1":
            k = "layer0.1." + ".".join(parts[1:])
        elif parts[0] == "fc":
            k = "classifier.0.dense." + ".".join(parts[1:])
        elif parts[0].startswith("layer") and len(parts) > 3:
            head, leaf = parts[:2], parts[2:]
            if leaf[0].startswith("conv"):
                leaf = [leaf[0], "0", *leaf[1:]]
            elif leaf[0].startswith("bn"):
                leaf = ["conv" + leaf[0][2:], "1", *leaf[1:]]
            elif leaf[0] == "downsample":
                leaf = ["shortcut", *leaf[1:]]
            k = ".".join(head + leaf)
        out[k] = v
    return out


def remap_timm(name: str, sd: StateDict, target: StateDict) -> StateDict:
    """timm's state dict for ``name`` in the zoo model's key names."""
    from hdvit_lib.pretrained import remap_vit

    return remap_timm_resnet(sd) if name == "resnet50" else remap_vit(sd, target)


def local_weights(name: str) -> Path | None:
    """``$HDVIT_CACHE/imagenet/<name>.safetensors`` or ``.pth`` if one exists, else None."""
    for ext in ("safetensors", "pth"):
        path = weights_dir() / f"{name}.{ext}"
        if path.exists():
            return path
    return None


def hub_url(name: str) -> str:
    """Where timm's ``pretrained=True`` downloads ``name``'s weights from (Hugging Face hub)."""
    from timm.models import get_pretrained_cfg

    return f"https://huggingface.co/{get_pretrained_cfg(TIMM_NAMES[name]).hf_hub_id}"


def _download_timm(name: str) -> StateDict:
    """timm's released ImageNet-1K weights (timm's own ``pretrained=True`` download)."""
    import timm

    return timm.create_model(TIMM_NAMES[name], pretrained=True).state_dict()


def read_weights(path: str | Path) -> StateDict:
    """A state dict from a ``.safetensors`` file or a ``.pth`` file read weights-only (a dict of
    tensors, or one under ``"state_dict"``/``"model"``); its SHA-256 is recorded on first use."""
    from hdvit_lib.pretrained import verify_checkpoint
    from hdvit_lib.train.checkpoint import load_or_explain

    path = Path(path)
    verify_checkpoint(path, check_prefix=False)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(path)))
    obj = load_or_explain(path, "Delete it (and its .sha256 file) and place timm's weights there again.")
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    return dict(obj)


def timm_state_dict(name: str, download: bool = True) -> StateDict:
    """timm's ImageNet-1K weights for ``name``: the local file (:func:`local_weights`) if there is
    one, else timm's download; a failed download raises ``DownloadError`` naming the URL and the
    file to place by hand."""
    _check_name(name)
    path = local_weights(name)
    if path is not None:
        return read_weights(path)
    url = hub_url(name)
    by_hand = (f"Without network: fetch model.safetensors from {url} elsewhere and place it at "
               f"{weights_dir() / (name + '.safetensors')} ($HDVIT_CACHE/imagenet/<name>.safetensors or "
               ".pth); it is read weights-only.")
    if not download:
        raise download_failed(url, FileNotFoundError("download=False and no local file"), by_hand)
    try:
        return _download_timm(name)
    except OSError as e:  # huggingface_hub's LocalEntryNotFoundError, socket errors
        raise download_failed(url, e, by_hand) from None


def imagenet_model(name: str, download: bool = True) -> nn.Module:
    """The zoo's ``name`` (``resnet50`` | ``vit_ti``) with timm's ImageNet-1K weights, in eval mode.

    Every key and shape must match after remapping (``pretrained._strict_check``)."""
    from hdvit_lib.pretrained import _strict_check

    model = build_model(name)
    target = model.state_dict()
    mapped = remap_timm(name, timm_state_dict(name, download), target)
    _strict_check(mapped, target, f"timm {TIMM_NAMES[name]}")
    model.load_state_dict(mapped)
    return model.eval()


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------


def imagenette_root(data_root: str | Path | None = None) -> Path:
    """``<data_root>/imagenette2-320`` (default ``$HDVIT_DATA``, see ``data.default_data_root``)."""
    from hdvit_lib.data.datasets import default_data_root

    return Path(data_root if data_root is not None else default_data_root()) / IMAGENETTE_DIR


def _fetch(url: str, dest: Path, by_hand: str) -> tuple[str, str]:
    """Stream ``url`` into ``dest`` atomically; return its (MD5, SHA-256)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    tmp = Path(tmp_name)
    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    try:
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url) as resp:
                while block := resp.read(1 << 20):
                    out.write(block)
                    md5.update(block)
                    sha.update(block)
        except OSError as e:  # urllib.error.URLError, socket errors
            raise download_failed(url, e, by_hand) from None
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return md5.hexdigest(), sha.hexdigest()


def _digests(path: Path) -> tuple[str, str]:
    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            md5.update(block)
            sha.update(block)
    return md5.hexdigest(), sha.hexdigest()


def download_imagenette(data_root: str | Path | None = None, url: str = IMAGENETTE_URL,
                        md5: str = IMAGENETTE_MD5, download: bool = True) -> Path:
    """Imagenette, extracted once to ``<data_root>/imagenette2-320`` (``train/``, ``val/``, one
    folder per ImageNet synset); returns that folder.

    The archive (``imagenette2-320.tgz`` beside it, kept) must have the pinned MD5 (module
    docstring); its SHA-256 is recorded in ``imagenette2-320.tgz.sha256`` on first use and must
    match later. Without network: ``DownloadError`` naming the URL and where to put the archive."""
    root = imagenette_root(data_root)
    if (root / "val").is_dir():
        return root
    archive = root.parent / (IMAGENETTE_DIR + ".tgz")
    by_hand = (f"Without network: fetch {url} elsewhere and place it at {archive} (or extract it there, so that "
               f"{root}/val exists); $HDVIT_DATA sets the folder (now {root.parent}).")
    if archive.exists():
        got_md5, got_sha = _digests(archive)
    elif download:
        got_md5, got_sha = _fetch(url, archive, by_hand)
    else:
        raise download_failed(url, FileNotFoundError(f"download=False and no {archive}"), by_hand)
    if got_md5 != md5:
        raise ArchiveChecksumError(f"{archive} has MD5 {got_md5}, not the pinned {md5} of {url}: a truncated or "
                                   "different file. Delete it and download again.")
    side = archive.with_name(archive.name + ".sha256")
    recorded = side.read_text().split()[0] if side.exists() and side.read_text().split() else None
    if recorded is not None and recorded != got_sha:
        raise ArchiveChecksumError(f"{archive} has SHA-256 {got_sha}, but {side.name} recorded {recorded}: "
                                   "the file changed. Delete both and download again.")
    with tarfile.open(archive) as tar:
        tar.extractall(root.parent, filter="data")
    if not (root / "val").is_dir():
        raise ArchiveChecksumError(f"{archive} did not hold {IMAGENETTE_DIR}/val/")
    if recorded is None:
        side.write_text(f"{got_sha}  {archive.name}\n")
    return root


def imagenet_indices(wnids: list[str]) -> list[int]:
    """ImageNet-1K class index of each WordNet id (timm's synset list, in class-index order)."""
    from timm.data import ImageNetInfo

    order = {w: i for i, w in enumerate(ImageNetInfo().label_names())}
    unknown = [w for w in wnids if w not in order]
    if unknown:
        raise ValueError(f"not ImageNet-1K synsets: {', '.join(unknown)}")
    return [order[w] for w in wnids]


def imagenette_batches(n_images: int, batch_size: int = 50, data_root: str | Path | None = None,
                       seed: int = 0, download: bool = True) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``n_images`` Imagenette validation images (class-balanced, seeded), 224x224 (resize of the
    shorter side + centre crop), normalised by the ImageNet mean and std, with ImageNet-1K labels,
    as ``[(images, labels), ...]`` on the CPU."""
    from hdvit_lib.data import get_dataset

    root = download_imagenette(data_root, download=download)
    ds = get_dataset("imagefolder", "test", root=root, image_size=IMAGE_SIZE, n=n_images, seed=seed)
    to_imagenet = torch.tensor(imagenet_indices(list(_classes(ds))))
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    out = []
    for start in range(0, len(ds), batch_size):
        items = [ds[i] for i in range(start, min(start + batch_size, len(ds)))]
        x = (torch.stack([x for x, _ in items]) - mean) / std
        out.append((x, to_imagenet[torch.tensor([y for _, y in items])]))
    return out


def _classes(ds: object) -> list[str]:
    """The class (folder) names of a data set, through subset wrappers."""
    while not hasattr(ds, "classes"):
        ds = ds.dataset  # type: ignore[attr-defined]
    return list(ds.classes)  # type: ignore[attr-defined]
