"""The authors' released CIFAR-100 checkpoints, verified and mapped into our models.

Park & Kim (ICLR 2022) released four CIFAR-100 models (GitHub release
``xxxnell/how-do-vits-work-storage`` v0.1): ResNet-50, ViT-Ti, PiT-Ti and Swin-Ti. Each asset is a
``torch.save`` of ``{"name": ..., "state_dict": ...}``. The ViT/PiT/Swin ones were made with
timm 0.5.4; our models are timm 1.0 models, so the keys are remapped (see ``remap_*`` below).

How the official repository loads them (``models/__init__.py`` and ``losslandscape.ipynb`` on its
``transformer`` branch): ``models.download(url, path)`` streams the file with ``requests`` and
checks nothing; ``torch.load(path)`` (full unpickling) then ``model.load_state_dict``. The 10 hex
characters in each asset name are used there only as the model's "uid" (to name result CSVs); the
training notebook names its own checkpoints by date, so the hex suffix was given at release time.
It *looks like* torch.hub's ``<name>-<sha256 prefix>.<ext>`` convention (there with a hyphen, which
``torch.hub``'s ``HASH_REGEX`` needs; here an underscore), but nothing in the official code says
so, and it could not be checked here (no download). So a mismatch is a warning
(:class:`PrefixWarning`) that says what was and was not checked, not a refusal: a wrong guess
must not stop every reader of a chapter with ``weights="official"``. ``check_prefix=True`` (or
``HDVIT_CHECK_PREFIX=strict``) refuses such a file; ``check_prefix=False`` (or
``HDVIT_CHECK_PREFIX=0``) skips the comparison. What is always verified: the file is read with
``weights_only=True`` (no code in it can run); every key and shape must fit the model after the
remapping; the full SHA-256 is recorded in a sidecar file (``<asset>.sha256``) once the file has
loaded (trust on first use — a file that fails to load is not recorded), and every later load must
match it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import urllib.request
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from hdvit_lib.errors import download_failed
from hdvit_lib.modes import resolve_device

RELEASE_URL = "https://github.com/xxxnell/how-do-vits-work-storage/releases/download/v0.1/"
PREFIX_LEN = 10
_PREFIX_RE = re.compile(r"_([0-9a-f]{10})\.pth\.tar$")

StateDict = dict[str, torch.Tensor]


class ChecksumError(RuntimeError):
    """A checkpoint file whose SHA-256 does not match its name or its recorded sidecar."""


class PrefixWarning(UserWarning):
    """A release file whose SHA-256 does not start with its name's hex suffix (see the module
    docstring: whether the suffix is a SHA-256 prefix is unknown)."""


class CheckpointMismatchError(ValueError):
    """A checkpoint whose (remapped) keys or shapes do not match the model it is loaded into."""


# --------------------------------------------------------------------------------------------
# Key remapping, one function per model: official (timm 0.5.4 / official ResNet) -> ours.
# Each takes the official state dict and our model's state dict (for the few choices that depend
# on our layout) and returns a new dict; tensors are not copied.
# --------------------------------------------------------------------------------------------


def remap_resnet50(sd: StateDict, target: StateDict) -> StateDict:
    """ResNet-50: identity. Our ``resnet50`` reproduces the official ``dnn_50(stem=False)`` names
    (``layer0.{0,1}``, ``layerI.J.{shortcut,conv1,conv2,conv3}.{0,1}``, ``classifier.0.dense``),
    BatchNorm buffers (``running_mean/var``, ``num_batches_tracked``) included."""
    return dict(sd)


_VIT_BLOCKS = re.compile(r"^blocks\.")


def remap_vit(sd: StateDict, target: StateDict) -> StateDict:
    """ViT-Ti: timm 0.5.4 and 1.0 ``VisionTransformer`` share every key (``cls_token``,
    ``pos_embed`` (1, 257, 192), ``patch_embed.proj``, ``blocks.N.{norm1, attn.qkv, attn.proj, norm2,
    mlp.fc1, mlp.fc2}``, ``norm``, ``head``); ``qkv_bias=False`` on both sides; timm 1.0's extra
    modules (``q_norm``, ``ls1``, ``fc_norm``, ...) are identities without keys. The one rename:
    our zoo's ViT holds timm's ``blocks`` container as ``transformer`` (``model.blocks()`` is the
    block listing), so ``blocks.N.*`` -> ``transformer.N.*`` when our model uses that name."""
    if "transformer.0.norm1.weight" not in target:
        return dict(sd)
    return {_VIT_BLOCKS.sub("transformer.", k): v for k, v in sd.items()}


_PIT_POOL = re.compile(r"^transformers\.(\d+)\.pool\.")


def remap_pit(sd: StateDict, target: StateDict) -> StateDict:
    """PiT-Ti: move each pooling layer one stage later.

    timm 0.5.4 pools at the *end* of a stage: ``transformers.0.pool`` (64 -> 128 channels) and
    ``transformers.1.pool`` (128 -> 256). timm >= 0.9 pools at the *start* of the next stage, so the
    same modules are ``transformers.1.pool`` and ``transformers.2.pool``. The computation is the
    same (depth-wise 3x3 stride-2 conv on the map, linear layer on the class token). Every other
    key (``pos_embed`` (1, 64, 31, 31), ``cls_token``, ``patch_embed.conv``, blocks, ``norm``,
    ``head``) is unchanged.
    """
    return {_PIT_POOL.sub(lambda m: f"transformers.{int(m.group(1)) + 1}.pool.", k): v for k, v in sd.items()}


_SWIN_DOWN = re.compile(r"^layers\.(\d+)\.downsample\.")
_SWIN_BUFFERS = ("relative_position_index", "attn_mask")


def remap_swin(sd: StateDict, target: StateDict) -> StateDict:
    """Swin-Ti: move patch merging one stage later, rename the head, drop derived buffers.

    - ``layers.i.downsample.*`` -> ``layers.{i+1}.downsample.*`` (i = 0, 1, 2): timm 0.5.4 merges
      patches at the end of stages 0-2, timm >= 0.9 at the start of stages 1-3. The merge
      concatenates the 2x2 neighbours in the same order in both versions ((0,0), (1,0), (0,1),
      (1,1) as (row, column) offsets), so ``reduction.weight`` (2C, 4C) and ``norm`` (4C) are used
      as they are. timm >= 0.9 runs Swin on NHWC maps; parameters are unaffected (every Linear
      and LayerNorm acts on the channel axis).
    - ``head.*`` -> ``head.fc.*`` when our model has a timm >= 0.9 ``ClassifierHead``.
    - ``*.attn.relative_position_index`` and ``*.attn_mask`` are dropped: they are derived from
      the window size and shift, and timm >= 0.9 keeps them as non-persistent buffers.
      ``check_derived_buffers`` compares them with ours before they are dropped.
    """
    head_fc = "head.fc.weight" in target
    out: StateDict = {}
    for k, v in sd.items():
        if k.rsplit(".", 1)[-1] in _SWIN_BUFFERS:
            continue
        k = _SWIN_DOWN.sub(lambda m: f"layers.{int(m.group(1)) + 1}.downsample.", k)
        if head_fc and k.startswith("head."):
            k = "head.fc." + k[len("head."):]
        out[k] = v
    return out


def check_derived_buffers(sd: StateDict, model: nn.Module) -> None:
    """Compare the checkpoint's window buffers with the model's own (same name and shape).

    ``relative_position_index`` must be equal and ``attn_mask`` must mask the same positions
    (timm fills masked entries with -100): a difference means a different window size or shift
    than the checkpoint was trained with. Buffers the model does not hold are skipped.
    """
    ours = dict(model.named_buffers())
    bad = []
    for k, v in sd.items():
        leaf = k.rsplit(".", 1)[-1]
        if leaf not in _SWIN_BUFFERS or k not in ours or ours[k] is None or ours[k].shape != v.shape:
            continue
        mine = ours[k].detach().cpu()
        same = torch.equal(mine, v) if leaf == "relative_position_index" else torch.equal(mine != 0, v != 0)
        if not same:
            bad.append(k)
    if bad:
        raise CheckpointMismatchError(
            f"the model's window buffers differ from the checkpoint's (window size or shift differs): {bad}")


@dataclass(frozen=True)
class Checkpoint:
    """One released checkpoint: its asset file name and its key remapping into our model."""

    asset: str
    remap: Callable[[StateDict, StateDict], StateDict]
    head: tuple[str, ...]  # our keys of the classifier (dropped when num_classes != 100)

    @property
    def url(self) -> str:
        return RELEASE_URL + self.asset

    @property
    def prefix(self) -> str:
        m = _PREFIX_RE.search(self.asset)
        if m is None:
            raise ValueError(f"asset name {self.asset!r} does not end in _<10 hex>.pth.tar")
        return m.group(1)


CHECKPOINTS: dict[str, Checkpoint] = {
    "resnet50": Checkpoint("resnet_50_cifar100_691cc9a9e4.pth.tar", remap_resnet50,
                           ("classifier.0.dense.weight", "classifier.0.dense.bias")),
    "vit_ti": Checkpoint("vit_ti_cifar100_9857b21357.pth.tar", remap_vit, ("head.weight", "head.bias")),
    "pit_ti": Checkpoint("pit_ti_cifar100_0645889efb.pth.tar", remap_pit, ("head.weight", "head.bias")),
    "swin_ti": Checkpoint("swin_ti_cifar100_ec2894492b.pth.tar", remap_swin,
                          ("head.fc.weight", "head.fc.bias", "head.weight", "head.bias")),
}
CHECKPOINT_CLASSES = 100


def list_pretrained() -> list[str]:
    """Names accepted by ``load_pretrained``."""
    return list(CHECKPOINTS)


def _checkpoint(name: str) -> Checkpoint:
    if name not in CHECKPOINTS:
        raise ValueError(f"no released checkpoint named {name!r}; choose one of {list_pretrained()}")
    return CHECKPOINTS[name]


def default_cache_dir() -> Path:
    """``$HDVIT_CACHE/checkpoints`` if set, else ``~/.cache/hdvit/checkpoints``."""
    root = os.environ.get("HDVIT_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "hdvit") / "checkpoints"


# --------------------------------------------------------------------------------------------
# Files: hashing, verification, download.
# --------------------------------------------------------------------------------------------


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _prefix_mode(value: bool | None) -> str:
    """``"strict"`` (refuse a mismatch), ``"warn"`` or ``"off"``: ``value`` True/False, or (None)
    ``$HDVIT_CHECK_PREFIX``: ``0`` off, ``strict`` refuse, anything else (or unset) warn."""
    if value is not None:
        return "strict" if value else "off"
    env = os.environ.get("HDVIT_CHECK_PREFIX", "").strip().lower()
    return {"0": "off", "off": "off", "strict": "strict"}.get(env, "warn")


def _check_name_prefix(digest: str, name: str, mode: str) -> None:
    """Compare ``digest`` with the hex suffix of the file name ``name``: nothing, a
    :class:`PrefixWarning` or a :class:`ChecksumError`, by ``mode`` (:func:`_prefix_mode`)."""
    m = _PREFIX_RE.search(name)
    if mode == "off" or (m is not None and digest[:PREFIX_LEN] == m.group(1)):
        return
    found = (f"the SHA-256 of {name} starts with {digest[:PREFIX_LEN]}, but its name ends in {m.group(1)}"
             if m is not None else f"{name} does not end in _<10 hex>.pth.tar, so its hash cannot be compared with it")
    text = (
        f"{found}. Whether the authors' name suffix is a SHA-256 prefix is unknown (they named the files at "
        "release; their code never checks it), so this alone does not show that the file is wrong. Checked: the "
        "file is read weights-only (no code in it can run); every key and shape must fit the model; its full "
        f"SHA-256 ({digest}) is recorded in {name}.sha256 once it loads, and every later load must match it. "
        "Not checked: that the bytes are the authors' release (no checksum was published) - compare the measured "
        "test accuracy with the paper's. check_prefix=True or HDVIT_CHECK_PREFIX=strict refuses such a file; "
        "HDVIT_CHECK_PREFIX=0 skips this comparison.")
    if mode == "strict":
        raise ChecksumError(text)
    warnings.warn(text, PrefixWarning, stacklevel=3)


def _recorded(path: Path) -> str | None:
    side = _sidecar(path)
    if not side.exists():
        return None
    text = side.read_text().split()
    return text[0] if text else ""


def verify_checkpoint(path: str | Path, check_prefix: bool | None = None, digest: str | None = None,
                      record: bool = True) -> str:
    """Verify a checkpoint file and return its full SHA-256.

    1. The first 10 hex characters of the SHA-256 are compared with the ``_<hex>`` suffix of the
       file name: a mismatch warns (default), refuses (``check_prefix=True``) or is not looked at
       (``check_prefix=False``); ``None`` reads ``$HDVIT_CHECK_PREFIX`` (module docstring).
    2. If a sidecar ``<file>.sha256`` exists, the full SHA-256 must equal it; if not and
       ``record``, it is written (trust on first use; loaders pass ``record=False`` and record
       only once the file has loaded). ``digest`` skips re-hashing a file just hashed.
    """
    path = Path(path)
    digest = digest or sha256_file(path)
    _check_name_prefix(digest, path.name, _prefix_mode(check_prefix))
    recorded = _recorded(path)
    if recorded is not None and recorded != digest:
        raise ChecksumError(
            f"SHA-256 of {path} is {digest}, but {_sidecar(path).name} recorded {recorded} when it was first "
            "loaded: the file changed. Delete both and load again with download=True.")
    if recorded is None and record:
        _write_atomic(_sidecar(path), f"{digest}  {path.name}\n")
    return digest


def _by_hand(ck: Checkpoint, dest: Path) -> str:
    return (f"Without network: fetch {ck.url} elsewhere and place it at {dest} (the checkpoint folder is "
            "$HDVIT_CACHE/checkpoints, default ~/.cache/hdvit/checkpoints); it is verified when it is loaded.")


def download_checkpoint(name: str, cache_dir: str | Path | None = None, progress: bool = True,
                        check_prefix: bool | None = None) -> Path:
    """Download a released checkpoint into ``cache_dir`` atomically (temp file + rename).

    The SHA-256 is computed while streaming; a file that differs from a recorded sidecar (or, with
    ``check_prefix=True``, from its name's suffix) never takes its final name. A failed download
    (no network) raises :class:`~hdvit_lib.errors.DownloadError`, naming the URL and where to put
    the file by hand. The sidecar is written by the first successful load (``load_checkpoint``).
    """
    from tqdm.auto import tqdm

    ck = _checkpoint(name)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    dest = cache / ck.asset
    fd, tmp_name = tempfile.mkstemp(dir=cache, prefix=ck.asset + ".", suffix=".part")
    tmp = Path(tmp_name)
    h = hashlib.sha256()
    try:
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(ck.url) as resp:
                total = int(resp.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=ck.asset, disable=not progress) as bar:
                    while block := resp.read(1 << 20):
                        out.write(block)
                        h.update(block)
                        bar.update(len(block))
        except OSError as e:  # urllib.error.URLError, socket errors
            raise download_failed(ck.url, e, _by_hand(ck, dest)) from None
        digest = h.hexdigest()
        if _prefix_mode(check_prefix) == "strict":
            _check_name_prefix(digest, ck.asset, "strict")
        recorded = _recorded(dest)
        if recorded is not None and recorded != digest:
            raise ChecksumError(f"downloaded {ck.url} has SHA-256 {digest}, but {_sidecar(dest)} recorded another hash")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


# --------------------------------------------------------------------------------------------
# Loading.
# --------------------------------------------------------------------------------------------


def read_state_dict(path: str | Path) -> StateDict:
    """The ``state_dict`` of a release file, read with ``weights_only=True`` on the CPU."""
    from hdvit_lib.train.checkpoint import load_or_explain

    obj = load_or_explain(path, "Delete it (and its .sha256 file, if any) and load it again with download=True, "
                          "or place the release file there by hand.")
    if not isinstance(obj, dict) or "state_dict" not in obj:
        keys = list(obj)[:5] if isinstance(obj, dict) else type(obj).__name__
        raise ValueError(f"{path} is not a release checkpoint (a dict with 'state_dict'); found {keys}")
    return dict(obj["state_dict"])


def _strict_check(mapped: StateDict, target: StateDict, name: str) -> None:
    missing = [k for k in target if k not in mapped]
    unexpected = [k for k in mapped if k not in target]
    shapes = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(target[k].shape)}"
              for k, v in mapped.items() if k in target and v.shape != target[k].shape]
    if missing or unexpected or shapes:
        parts = [f"the {name!r} checkpoint does not fit the model after remapping:"]
        for title, items in (("missing in checkpoint", missing), ("unexpected in checkpoint", unexpected),
                             ("shape mismatch", shapes)):
            if items:
                parts.append(f"  {title} ({len(items)}): " + ", ".join(items))
        raise CheckpointMismatchError("\n".join(parts))


def load_state_dict_into(model: nn.Module, name: str, sd: StateDict, num_classes: int = CHECKPOINT_CLASSES) -> nn.Module:
    """Remap an official state dict for ``name`` and load it strictly into ``model``.

    With ``num_classes != 100`` the classifier is left as initialised (its keys are dropped from the
    checkpoint and not required); every other key must match exactly in name and shape.
    """
    ck = _checkpoint(name)
    target = model.state_dict()
    if ck.remap is remap_swin:
        check_derived_buffers(sd, model)
    mapped = ck.remap(sd, target)
    if num_classes != CHECKPOINT_CLASSES:
        mapped = {k: v for k, v in mapped.items() if k not in ck.head}
        target = {k: v for k, v in target.items() if k not in ck.head}
    _strict_check(mapped, target, name)
    model.load_state_dict(mapped, strict=num_classes == CHECKPOINT_CLASSES)
    return model


def load_checkpoint(path: str | Path, name: str, num_classes: int = CHECKPOINT_CLASSES,
                    model: nn.Module | None = None, check_prefix: bool | None = None) -> nn.Module:
    """Verify the file at ``path`` (``verify_checkpoint``) and load it into ``model`` (default:
    ``hdvit_lib.models.get_model(name, num_classes=num_classes)``), in eval mode. Its SHA-256 is
    recorded (first use) only once it has loaded: a file that fails is never trusted later."""
    _checkpoint(name)
    digest = verify_checkpoint(path, check_prefix=check_prefix, record=False)
    sd = read_state_dict(path)
    if model is None:
        from hdvit_lib.models import get_model

        model = get_model(name, num_classes=num_classes)
    model = load_state_dict_into(model, name, sd, num_classes=num_classes).eval()
    verify_checkpoint(path, check_prefix=False, digest=digest)  # records the sidecar
    return model


def load_pretrained(name: str, num_classes: int = 100, cache_dir: str | Path | None = None,
                    download: bool = False, progress: bool = True, *, model: nn.Module | None = None,
                    check_prefix: bool | None = None) -> nn.Module:
    """Load the authors' CIFAR-100 checkpoint ``name`` into our model (Park & Kim 2022, Sec. 2-4).

    name: one of ``resnet50 vit_ti pit_ti swin_ti``.
    num_classes: 100 loads the classifier too; another value keeps our fresh classifier.
    cache_dir: where the files live (default ``default_cache_dir()``).
    download: fetch the file from the GitHub release if it is not in ``cache_dir``; otherwise a
        missing file is an error (nothing is downloaded unless asked).
    model: load into this model instead of ``get_model(name, num_classes=num_classes)``.
    check_prefix: compare the file's SHA-256 with the hex suffix of its name: True refuses a
        mismatch, False skips it, None warns (``$HDVIT_CHECK_PREFIX``: ``0`` skips, ``strict`` refuses).

    The file is verified (SHA-256 prefix and sidecar record), read with ``weights_only=True``,
    remapped (``remap_<model>``) and loaded strictly; the model is returned in eval mode.
    """
    ck = _checkpoint(name)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = cache / ck.asset
    if not path.exists():
        if not download:
            raise FileNotFoundError(
                f"checkpoint {name!r} is not in {cache} (looked for {ck.asset}). Call "
                f"load_pretrained({name!r}, download=True) to fetch it from {ck.url}, or download it "
                f"yourself into {cache}.")
        download_checkpoint(name, cache, progress=progress, check_prefix=check_prefix)
    return load_checkpoint(path, name, num_classes=num_classes, model=model, check_prefix=check_prefix)


# --------------------------------------------------------------------------------------------
# The checkpoints as zoo entries (what the chapters use with ``weights="official"``).
# --------------------------------------------------------------------------------------------


def official_mismatch(name: str, data_fraction: float = 1.0, model_cfg: dict | None = None) -> str | None:
    """Why the authors' checkpoint cannot stand in for this run, or None when it can: a released
    model (``list_pretrained``) at its paper-size default settings, trained on all of the data."""
    from hdvit_lib.models import model_settings

    if name not in CHECKPOINTS:
        return f"no released checkpoint for {name!r} (released: {', '.join(list_pretrained())})"
    if float(data_fraction) != 1.0:
        return f"the checkpoint saw all of the data, this run {data_fraction:.0%} of it"
    run, released = (json.dumps(model_settings(name, False, **cfg), sort_keys=True)  # tuples and lists alike
                     for cfg in (model_cfg or {}, {}))
    if run != released:
        return f"the checkpoint has the default settings, this run {dict(model_cfg or {})}"
    return None


def _eval_sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".eval.json")


def load_official(
    name: str,
    cfg: dict | None = None,
    *,
    cache_dir: str | Path | None = None,
    data_root: str | Path | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    check_prefix: bool | None = None,
    **dataset_kwargs,
):
    """The authors' CIFAR-100 checkpoint ``name`` as a zoo entry (``hdvit_lib.zoo.Trained``), with
    its test accuracy measured on ``cfg``'s test set (default: the ``paper`` preset, CIFAR-100).

    The file is fetched (when ``cfg["download"]``) and verified by :func:`load_pretrained`. The
    test loss/accuracy are measured once per file and test set and kept next to the checkpoint
    (``<asset>.eval.json``, keyed by the file's SHA-256 and the test set). The entry has no
    snapshots: ``snapshot("final")`` is the model's state and other tags raise.
    ``dataset_kwargs`` go to ``hdvit_lib.data.get_loaders`` (e.g. ``verify`` for test fixtures).
    """
    from hdvit_lib.data import get_loaders
    from hdvit_lib.models import model_settings
    from hdvit_lib.presets import get_preset
    from hdvit_lib.train.cache import Trained
    from hdvit_lib.train.history import History
    from hdvit_lib.train.loop import evaluate

    cfg = dict(cfg) if cfg is not None else get_preset("paper")
    ck = _checkpoint(name)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    device = resolve_device(device)
    model = load_pretrained(name, num_classes=CHECKPOINT_CLASSES, cache_dir=cache, download=bool(cfg.get("download")),
                            progress=progress, check_prefix=check_prefix).to(device)
    path = cache / ck.asset
    digest = _sidecar(path).read_text().split()[0]  # written by verify_checkpoint just now
    test_set = f"{cfg['dataset']}:n_test={cfg.get('n_test')}"
    side = _eval_sidecar(path)
    record = json.loads(side.read_text()) if side.exists() else {}
    if record.get("sha256") != digest:
        record = {"sha256": digest}
    if test_set not in record:
        loaders = get_loaders(cfg, root=data_root, download=bool(cfg.get("download")), **dataset_kwargs)
        if loaders.num_classes != CHECKPOINT_CLASSES:
            raise ValueError(f"the checkpoints are CIFAR-100 models; {cfg['dataset']!r} has {loaders.num_classes} classes")
        loss, acc = evaluate(model, loaders.test, device)
        record[test_set] = {"test_loss": loss, "test_acc": acc}
        _write_atomic(side, json.dumps(record, indent=2, sort_keys=True))
    measured = record[test_set]
    recipe = get_preset("paper")
    history = History(epoch=[int(recipe["epochs"])], test_loss=[measured["test_loss"]], test_acc=[measured["test_acc"]])
    config = {
        "source": "official", "model": name, "model_cfg": model_settings(name, False), "tiny": False,
        "dataset": "cifar100", "data_fraction": 1.0, "num_classes": CHECKPOINT_CLASSES,
        "asset": ck.asset, "url": ck.url, "sha256": digest, "test_set": test_set,
        # the authors' recipe (Appendix A), as the paper preset spells it
        "train": {k: v for k, v in recipe.items() if k in ("epochs", "warmup_epochs", "batch_size", "lr", "augment")},
    }
    return Trained(model.eval(), history, config, cache)
