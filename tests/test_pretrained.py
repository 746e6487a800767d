"""Tests for hdvit_lib.pretrained: fake release files built from the checkpoints' exact key lists.

Each fake file holds random tensors with the official keys, shapes and dtypes
(../shared/official_checkpoints/*.json), the window buffers Swin's checkpoint carries computed here
from the Swin paper's definitions, and a file name whose hex suffix is its SHA-256 prefix. It is
loaded through ``load_pretrained`` (the download path through a ``file://`` URL), and we check
where the tensors land. (Outside the tests, the remapping was also checked against timm 0.5.4
itself: same logits to 1.4e-6 for ViT-Ti, PiT-Ti and Swin-Ti.)
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from pathlib import Path

import pytest
import torch

from hdvit_lib import pretrained as P

JSON_DIR = Path(__file__).resolve().parents[2] / "shared" / "official_checkpoints"
if not JSON_DIR.exists():  # a checkout outside /work
    JSON_DIR = Path(os.environ.get("HDVIT_OFFICIAL_JSON", "/work/shared/official_checkpoints"))
JSON = {"resnet50": "resnet_50_cifar100.json", "vit_ti": "vit_ti_cifar100.json",
        "pit_ti": "pit_ti_cifar100.json", "swin_ti": "swin_ti_cifar100.json"}
pytestmark = pytest.mark.skipif(not JSON_DIR.exists(), reason="official checkpoint key lists not available")
WINDOW = 4  # Swin-Ti CIFAR: window 4, feature maps 32, 16, 8, 4


@functools.cache
def timm_reference(name: str, num_classes: int = 100) -> torch.nn.Module:
    """The json ``model`` args, as timm 1.0 models (independent of the zoo); built once per test
    module (building Swin-Ti takes seconds), every load overwrites all of its state."""
    from timm.models.pit import PoolingVisionTransformer
    from timm.models.swin_transformer import SwinTransformer
    from timm.models.vision_transformer import VisionTransformer

    if name == "vit_ti":
        return VisionTransformer(num_classes=num_classes, img_size=32, patch_size=2, embed_dim=192, depth=12,
                                 num_heads=3, qkv_bias=False)
    if name == "pit_ti":
        return PoolingVisionTransformer(num_classes=num_classes, img_size=32, patch_size=2, stride=1,
                                        base_dims=[32, 32, 32], depth=[2, 6, 4], heads=[2, 4, 8], mlp_ratio=4)
    if name == "swin_ti":
        return SwinTransformer(num_classes=num_classes, img_size=32, patch_size=1, window_size=WINDOW, embed_dim=96,
                               depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), qkv_bias=False)
    pytest.skip(f"no timm reference for {name}")


@functools.cache
def zoo_model(name: str, num_classes: int = 100) -> torch.nn.Module:
    try:
        from hdvit_lib.models import get_model
    except ImportError:
        pytest.skip("hdvit_lib.models.get_model not available yet")
    return get_model(name, num_classes=num_classes)


BUILDERS = {"timm": timm_reference, "zoo": zoo_model}


def swin_relative_position_index(w: int) -> torch.Tensor:
    """Swin (Liu et al. 2021, Sec. 3.2): index of B_hat[(dy + w - 1), (dx + w - 1)] for token pairs."""
    ys, xs = torch.meshgrid(torch.arange(w), torch.arange(w), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    dy = ys[:, None] - ys[None, :] + w - 1
    dx = xs[:, None] - xs[None, :] + w - 1
    return dy * (2 * w - 1) + dx


def swin_shift_mask(size: int, w: int) -> torch.Tensor:
    """Cyclic-shift mask (Swin Sec. 3.2): -100 between tokens of a window from different regions."""
    s = w // 2
    label = torch.zeros(size, size, dtype=torch.long)
    bounds = [(0, size - w), (size - w, size - s), (size - s, size)]
    for i, (a, b) in enumerate(bounds):
        for j, (c, d) in enumerate(bounds):
            label[a:b, c:d] = 3 * i + j
    # windows of the (already shifted) map, row-major
    win = label.reshape(size // w, w, size // w, w).permute(0, 2, 1, 3).reshape(-1, w * w)
    return (win[:, :, None] != win[:, None, :]).float() * -100.0


def fake_state_dict(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    spec = json.loads((JSON_DIR / JSON[name]).read_text())["state_dict"]
    g = torch.Generator().manual_seed(seed)
    sizes = {"layers.0": 32, "layers.1": 16, "layers.2": 8, "layers.3": 4}
    sd = {}
    for key, shape, dtype in spec:
        if key.endswith("relative_position_index"):
            t = swin_relative_position_index(WINDOW)
        elif key.endswith("attn_mask"):
            t = swin_shift_mask(sizes[key[:8]], WINDOW)
        elif dtype == "int64":
            t = torch.randint(0, 1000, shape, generator=g)
        else:
            t = torch.randn(shape, generator=g)
        assert list(t.shape) == shape and str(t.dtype) == f"torch.{dtype}", key
        sd[key] = t
    return sd


def write_release(sd: dict, stem: str, folder: Path) -> Path:
    """Save in the release format and name the file ``<stem>_<sha256[:10]>.pth.tar``."""
    tmp = folder / f"{stem}.tmp"
    torch.save({"name": stem, "state_dict": sd}, tmp)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    path = folder / f"{stem}_{digest[:10]}.pth.tar"
    tmp.rename(path)
    return path


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    """name -> (official state dict, release file) for the four models, written once."""
    folder = tmp_path_factory.mktemp("release")
    out = {}
    for i, name in enumerate(JSON):
        sd = fake_state_dict(name, seed=i)
        out[name] = (sd, write_release(sd, JSON[name][: -len(".json")], folder))
    return out


def use_asset(monkeypatch, name: str, path: Path) -> None:
    monkeypatch.setitem(P.CHECKPOINTS, name, dataclasses.replace(P.CHECKPOINTS[name], asset=path.name))


def tensor_at(model: torch.nn.Module, key: str) -> torch.Tensor:
    return model.state_dict()[key]


# Where specific official tensors must land in our (timm >= 0.9 layout) model.
PLACEMENT = {
    "resnet50": {"layer0.0.weight": "layer0.0.weight", "layer4.2.conv3.1.running_var": "layer4.2.conv3.1.running_var",
                 "layer3.0.shortcut.0.weight": "layer3.0.shortcut.0.weight",
                 "classifier.0.dense.weight": "classifier.0.dense.weight"},
    "vit_ti": {"pos_embed": "pos_embed", "blocks.11.attn.qkv.weight": "blocks.11.attn.qkv.weight",
               "head.bias": "head.bias"},
    "pit_ti": {"transformers.0.pool.conv.weight": "transformers.1.pool.conv.weight",
               "transformers.0.pool.fc.bias": "transformers.1.pool.fc.bias",
               "transformers.1.pool.conv.weight": "transformers.2.pool.conv.weight",
               "transformers.1.pool.fc.weight": "transformers.2.pool.fc.weight",
               "transformers.2.blocks.3.mlp.fc2.weight": "transformers.2.blocks.3.mlp.fc2.weight",
               "pos_embed": "pos_embed"},
    "swin_ti": {"layers.0.downsample.reduction.weight": "layers.1.downsample.reduction.weight",
                "layers.1.downsample.norm.weight": "layers.2.downsample.norm.weight",
                "layers.2.downsample.norm.bias": "layers.3.downsample.norm.bias",
                "layers.2.blocks.5.attn.relative_position_bias_table":
                    "layers.2.blocks.5.attn.relative_position_bias_table",
                "head.weight": "head.fc.weight"},
}


@pytest.mark.parametrize("builder", ["timm", "zoo"])
@pytest.mark.parametrize("name", list(JSON))
def test_load_places_every_tensor(name, builder, releases, monkeypatch):
    sd, path = releases[name]
    use_asset(monkeypatch, name, path)
    model = BUILDERS[builder](name)
    with torch.no_grad():  # make sure nothing is right by accident
        for p in model.parameters():
            p.zero_()
    out = P.load_pretrained(name, cache_dir=path.parent, model=model)
    assert out is model and not model.training
    keys = model.state_dict()
    for official, ours in PLACEMENT[name].items():
        if ours not in keys and name == "vit_ti":  # the zoo's ViT names timm's `blocks` `transformer`
            ours = ours.replace("blocks.", "transformer.", 1)
        assert torch.equal(tensor_at(model, ours), sd[official]), (official, ours)
    # every parameter came from the checkpoint: parameter count and sum of squares agree
    n_params = json.loads((JSON_DIR / JSON[name]).read_text())["num_params"]
    assert sum(p.numel() for p in model.parameters()) == n_params
    ours_sq = sum(float(p.detach().double().pow(2).sum()) for p in model.parameters())
    theirs_sq = sum(float(v.double().pow(2).sum()) for k, v in sd.items()
                    if v.is_floating_point() and not k.endswith(("attn_mask", "running_mean", "running_var")))
    assert ours_sq == pytest.approx(theirs_sq, rel=1e-9)


def test_pit_and_swin_moved_modules():
    pit = timm_reference("pit_ti")
    assert pit.transformers[0].pool is None and pit.transformers[1].pool is not None
    swin = timm_reference("swin_ti")
    assert isinstance(swin.layers[0].downsample, torch.nn.Identity)


def test_swin_patch_merging_order(releases, monkeypatch):
    """Official (timm 0.5.4) merge: concat x[0::2,0::2], x[1::2,0::2], x[0::2,1::2], x[1::2,1::2]
    (row, column offsets), LayerNorm, Linear. Our layers.1.downsample must compute the same."""
    sd, path = releases["swin_ti"]
    use_asset(monkeypatch, "swin_ti", path)
    model = P.load_pretrained("swin_ti", cache_dir=path.parent, model=timm_reference("swin_ti"))
    x = torch.randn(2, 32, 32, 96)  # NHWC
    parts = [x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]]
    cat = torch.cat(parts, dim=-1)
    ref = torch.nn.functional.layer_norm(cat, (384,), sd["layers.0.downsample.norm.weight"],
                                         sd["layers.0.downsample.norm.bias"])
    ref = ref @ sd["layers.0.downsample.reduction.weight"].T
    with torch.no_grad():
        got = model.layers[1].downsample(x)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


def test_other_num_classes_keeps_fresh_head(releases, monkeypatch):
    sd, path = releases["vit_ti"]
    use_asset(monkeypatch, "vit_ti", path)
    model = timm_reference("vit_ti", num_classes=10)
    head = model.head.weight.detach().clone()
    P.load_pretrained("vit_ti", num_classes=10, cache_dir=path.parent, model=model)
    assert torch.equal(model.head.weight, head)
    assert torch.equal(model.blocks[3].mlp.fc1.weight, sd["blocks.3.mlp.fc1.weight"])


def test_corrupted_file_warns_or_is_refused_when_strict(releases, tmp_path, monkeypatch):
    """A file whose hash does not start with its name's suffix: a warning that says what was and was
    not checked (default), a refusal with check_prefix=True or HDVIT_CHECK_PREFIX=strict."""
    _, path = releases["pit_ti"]
    bad = tmp_path / path.name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    use_asset(monkeypatch, "pit_ti", bad)
    with pytest.raises(P.ChecksumError, match="SHA-256 of .* starts with"):
        P.load_pretrained("pit_ti", cache_dir=tmp_path, model=timm_reference("pit_ti"), check_prefix=True)
    monkeypatch.setenv("HDVIT_CHECK_PREFIX", "strict")
    with pytest.raises(P.ChecksumError, match="Not checked"):
        P.load_pretrained("pit_ti", cache_dir=tmp_path, model=timm_reference("pit_ti"))
    assert not (tmp_path / (bad.name + ".sha256")).exists()


def test_prefix_mismatch_is_a_warning_that_says_what_was_checked(releases, tmp_path, monkeypatch):
    """Should the authors' name suffix not be a SHA-256 prefix, the file still loads (a chapter with
    weights='official' is not stopped), with a PrefixWarning naming what was checked; the sidecar
    records it; HDVIT_CHECK_PREFIX=0 silences the comparison."""
    import warnings

    sd, path = releases["vit_ti"]
    renamed = tmp_path / "vit_ti_cifar100_0123456789.pth.tar"  # a suffix that is not its hash
    renamed.write_bytes(path.read_bytes())
    use_asset(monkeypatch, "vit_ti", renamed)
    with pytest.warns(P.PrefixWarning) as caught:
        model = P.load_pretrained("vit_ti", cache_dir=tmp_path, model=timm_reference("vit_ti"))
    text = str(caught[0].message)
    for said in ("ends in 0123456789", "weights-only", "every key and shape", "recorded in", "Not checked",
                 "HDVIT_CHECK_PREFIX=strict"):
        assert said in text
    assert "weights_only=False" not in text
    assert torch.equal(model.pos_embed, sd["pos_embed"])
    assert (tmp_path / (renamed.name + ".sha256")).read_text().split()[0] == hashlib.sha256(path.read_bytes()).hexdigest()
    monkeypatch.setenv("HDVIT_CHECK_PREFIX", "0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        P.load_pretrained("vit_ti", cache_dir=tmp_path, model=timm_reference("vit_ti"))


def test_sidecar_records_and_refuses_change(releases, tmp_path, monkeypatch):
    _, path = releases["pit_ti"]
    local = tmp_path / path.name
    local.write_bytes(path.read_bytes())
    use_asset(monkeypatch, "pit_ti", local)
    P.load_pretrained("pit_ti", cache_dir=tmp_path, model=timm_reference("pit_ti"))
    side = tmp_path / (path.name + ".sha256")
    assert side.read_text().split()[0] == hashlib.sha256(local.read_bytes()).hexdigest()
    # a recorded hash that differs (same 10-character prefix, so only the sidecar can object)
    recorded = side.read_text().split()[0]
    side.write_text(recorded[:10] + ("0" if recorded[10] != "0" else "1") + recorded[11:] + "\n")
    with pytest.raises(P.ChecksumError, match="recorded"):
        P.load_pretrained("pit_ti", cache_dir=tmp_path, model=timm_reference("pit_ti"))


def test_download_is_atomic_and_verified(releases, tmp_path, monkeypatch):
    _, path = releases["vit_ti"]
    use_asset(monkeypatch, "vit_ti", path)
    monkeypatch.setattr(P, "RELEASE_URL", path.parent.as_uri() + "/")
    cache = tmp_path / "cache"
    with pytest.raises(FileNotFoundError, match="download=True") as e:
        P.load_pretrained("vit_ti", cache_dir=cache, model=timm_reference("vit_ti"))
    assert P.CHECKPOINTS["vit_ti"].url in str(e.value)
    P.load_pretrained("vit_ti", cache_dir=cache, download=True, progress=False, model=timm_reference("vit_ti"))
    assert sorted(p.name for p in cache.iterdir()) == [path.name, path.name + ".sha256"]  # no temp left
    # a release whose bytes do not match its name never enters the cache
    other = tmp_path / "src"
    other.mkdir()
    (other / path.name).write_bytes(path.read_bytes() + b"x")
    monkeypatch.setattr(P, "RELEASE_URL", other.as_uri() + "/")
    cache2 = tmp_path / "cache2"
    with pytest.raises(P.ChecksumError):
        P.load_pretrained("vit_ti", cache_dir=cache2, download=True, progress=False, model=timm_reference("vit_ti"),
                          check_prefix=True)
    assert list(cache2.iterdir()) == []


def test_strict_errors_list_keys():
    sd = fake_state_dict("pit_ti")
    del sd["transformers.1.pool.fc.bias"]
    sd["extra.weight"] = torch.zeros(3)
    sd["head.weight"] = torch.zeros(10, 256)
    with pytest.raises(P.CheckpointMismatchError) as e:
        P.load_state_dict_into(timm_reference("pit_ti"), "pit_ti", sd)
    msg = str(e.value)
    assert "transformers.2.pool.fc.bias" in msg and "extra.weight" in msg and "head.weight: checkpoint (10, 256)" in msg


def test_swin_window_buffers_checked(releases):
    sd = dict(releases["swin_ti"][0])
    sd["layers.1.blocks.1.attn_mask"] = torch.zeros_like(sd["layers.1.blocks.1.attn_mask"])  # as if never shifted
    with pytest.raises(P.CheckpointMismatchError, match="window"):
        P.load_state_dict_into(timm_reference("swin_ti"), "swin_ti", sd)


def test_names_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="resnet50.*vit_ti.*pit_ti.*swin_ti"):
        P.load_pretrained("vit_b", cache_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="releases/download/v0.1/swin_ti_cifar100_ec2894492b.pth.tar"):
        P.load_pretrained("swin_ti", cache_dir=tmp_path)
    assert P.CHECKPOINTS["resnet50"].prefix == "691cc9a9e4"


# ---- the checkpoints in the chapters: weights="official" -------------------------------------


@pytest.fixture
def official_vit(releases, tmp_path, monkeypatch):
    """The fake ViT-Ti release in $HDVIT_CACHE/checkpoints and 30 CIFAR-100 test images in $HDVIT_DATA."""
    import numpy as np

    from hdvit_lib.data.cifar_files import write_cifar100

    sd, path = releases["vit_ti"]
    cache = tmp_path / "cache" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / path.name).write_bytes(path.read_bytes())
    use_asset(monkeypatch, "vit_ti", path)
    monkeypatch.setenv("HDVIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HDVIT_DATA", str(tmp_path / "data"))
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, size=(30, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 100, 30).tolist()
    write_cifar100(tmp_path / "data", (images, labels), (images, labels))
    return sd, cache / path.name, images, labels


def test_load_official_measures_test_accuracy(official_vit, monkeypatch):
    """The entry's test loss equals cross-entropy computed by hand on the fixture images (normalised
    with the CIFAR-100 mean/std) through a timm ViT that holds the official tensors; the result is
    kept next to the checkpoint and not measured twice."""
    from hdvit_lib.data.transforms import MEAN_STD
    from hdvit_lib.presets import get_preset

    sd, path, images, labels = official_vit
    cfg = get_preset("paper", weights="official", batch_size=7)
    t = P.load_official("vit_ti", cfg, device="cpu", progress=False, verify=False)
    ref = timm_reference("vit_ti")
    ref.load_state_dict(sd)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in MEAN_STD["cifar100"])
    x = (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - mean) / std
    with torch.no_grad():
        logits = ref.eval()(x)
    y = torch.tensor(labels)
    want_loss = float(torch.nn.functional.cross_entropy(logits, y))
    want_acc = float((logits.argmax(-1) == y).float().mean())
    assert t.history.final("test_loss") == pytest.approx(want_loss, rel=1e-5)
    assert t.history.final("test_acc") == pytest.approx(want_acc)
    assert t.official and t.snapshots() == [] and t.config["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert torch.equal(t.snapshot("final")["pos_embed"], sd["pos_embed"])
    with pytest.raises(ValueError, match="only the final weights.*weights='trained'"):
        t.snapshot("warmup")
    # measured once: a second load reads <asset>.eval.json and never evaluates
    from hdvit_lib.train import loop

    monkeypatch.setattr(loop, "evaluate", lambda *a, **k: pytest.fail("evaluated twice"))
    again = P.load_official("vit_ti", cfg, device="cpu", progress=False, verify=False)
    assert again.history.final("test_loss") == t.history.final("test_loss")


def test_train_runs_uses_the_checkpoints_where_they_fit(official_vit, monkeypatch, capsys):
    """weights='official': the released model at default settings on all data is the checkpoint;
    a 6% run, another patch size and a model without a release are trained (and say why)."""
    from hdvit_lib import zoo
    from hdvit_lib.experiments.common import run_spec, train_runs
    from hdvit_lib.presets import get_preset

    sd, *_ = official_vit
    real = P.load_official
    monkeypatch.setattr(P, "load_official", lambda *a, **k: real(*a, **k, verify=False))
    trained_here = []

    def fake_train(name, **kw):
        trained_here.append((name, kw["data_fraction"], kw["model_cfg"]))
        from hdvit_lib.train.history import History

        return zoo.Trained(torch.nn.Identity(), History(epoch=[1], test_acc=[0.5]), {"model": name}, Path("."))

    monkeypatch.setattr(zoo, "load_or_train", fake_train)
    monkeypatch.setattr(zoo, "plan", lambda runs, cfg, seed=0: zoo.Plan([], "cpu", "paper"))  # no timing of paper models
    cfg = get_preset("paper", weights="official", batch_size=10) | {"device": "cpu"}
    runs = {"vit": run_spec("vit_ti"), "vit 6%": run_spec("vit_ti", 0.06), "vit p4": run_spec("vit_ti", patch_size=4),
            "alternet": run_spec("alternet50"), "vit p2": run_spec("vit_ti", patch_size=2)}
    out = train_runs(runs, cfg)
    assert out["vit"].official and out["vit p2"].official  # patch 2 is the default: the same model
    assert torch.equal(out["vit"].model.state_dict()["pos_embed"], sd["pos_embed"])
    assert trained_here == [("vit_ti", 0.06, None), ("vit_ti", 1.0, {"patch_size": 4}), ("alternet50", 1.0, None)]
    text = capsys.readouterr().out
    assert "all of the data, this run 6%" in text and "no released checkpoint for 'alternet50'" in text
    # with weights="trained" nothing is loaded
    trained_here.clear()
    train_runs({"vit": run_spec("vit_ti")}, get_preset("paper", weights="trained") | {"device": "cpu"})
    assert trained_here == [("vit_ti", 1.0, None)]


def test_official_weights_need_the_paper_preset():
    from hdvit_lib.presets import get_preset

    with pytest.raises(ValueError, match="preset='gpu' or 'paper'"):
        get_preset("smoke", weights="official")
    with pytest.raises(ValueError, match="trained, official"):
        get_preset("paper", weights="authors")
    # the paper's own models are the default where they fit; the tiny presets train their own
    assert get_preset("paper")["weights"] == get_preset("gpu")["weights"] == "official"
    assert get_preset("smoke")["weights"] == get_preset("cpu")["weights"] == "trained"
    with pytest.raises(ValueError, match="preset='gpu' or 'paper'"):
        get_preset("gpu", dataset="synthetic")
