"""hdvit_lib.imagenet: timm's ImageNet weights in the zoo's block API, Imagenette, the fallbacks.

No network: the weights are a randomly initialised timm model's (saved where the real ones go),
the archive is a tiny Imagenette written here in the real layout, served through a file:// URL.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hdvit_lib import imagenet
from hdvit_lib.errors import DownloadError
from hdvit_lib.models import run_blocks

#: Imagenette's synsets and their ImageNet-1K indices, written out from the ImageNet class list
#: (independent of timm's synset file, which the library reads).
IMAGENETTE_INDEX = {
    "n01440764": 0,  # tench
    "n02102040": 217,  # English springer
    "n02979186": 482,  # cassette player
    "n03000684": 491,  # chain saw
    "n03028079": 497,  # church
    "n03394916": 566,  # French horn
    "n03417042": 569,  # garbage truck
    "n03425413": 571,  # gas pump
    "n03445777": 574,  # golf ball
    "n03888257": 701,  # parachute
}


def _generic_bn(model: torch.nn.Module, seed: int) -> None:
    """BatchNorm statistics and affine parameters away from (0, 1, 1, 0), so a key mix-up shows."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
            m.running_var.copy_(0.5 + torch.rand(n, generator=g))
            m.weight.data.copy_(0.5 + torch.rand(n, generator=g))
            m.bias.data.copy_(0.1 * torch.randn(n, generator=g))


@pytest.mark.parametrize("name,ext", [("resnet50", "pth"), ("vit_ti", "safetensors")])
def test_timm_weights_load_into_blocks(name, ext, tmp_path, monkeypatch):
    """A timm model's state dict, placed at $HDVIT_CACHE/imagenet/<name>.<ext>, loads into the zoo
    model, whose blocks reproduce the timm model's own output on two 224x224 images."""
    import timm

    monkeypatch.setenv("HDVIT_CACHE", str(tmp_path))
    torch.manual_seed(0)
    ref = timm.create_model(imagenet.TIMM_NAMES[name], pretrained=False)
    _generic_bn(ref, 1)
    ref.eval()
    path = tmp_path / "imagenet" / f"{name}.{ext}"
    path.parent.mkdir()
    if ext == "pth":
        torch.save(ref.state_dict(), path)
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    monkeypatch.setattr(imagenet, "_download_timm", lambda n: pytest.fail("downloaded despite a local file"))
    model = imagenet.imagenet_model(name)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = ref(x)
        got, _ = run_blocks(model.blocks(), x)
    assert not model.training
    assert got.shape == (2, 1000)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    kinds = {b.kind for b in model.blocks()}
    assert ("msa" in kinds) == (name == "vit_ti") and ("conv" in kinds) == (name == "resnet50")
    assert (tmp_path / "imagenet" / f"{name}.{ext}.sha256").exists()  # recorded on first load


def test_resnet_blocks_are_the_authors(tmp_path, monkeypatch):
    """The ResNet's blocks: the authors' list (stem with max-pool, 16 bottlenecks, head); the stem's
    output is 56x56, as after timm's max-pool."""
    model = imagenet.build_model("resnet50").eval()
    blocks = model.blocks()
    assert [b.kind for b in blocks] == ["embed"] + ["conv"] * 16 + ["head"]
    with torch.no_grad():
        assert blocks[0].module(torch.zeros(1, 3, 224, 224)).shape == (1, 64, 56, 56)


def test_failed_weight_download_names_url_and_file(tmp_path, monkeypatch):
    monkeypatch.setenv("HDVIT_CACHE", str(tmp_path))

    def offline(name):
        raise OSError("Name or service not known")

    monkeypatch.setattr(imagenet, "_download_timm", offline)
    with pytest.raises(DownloadError) as e:
        imagenet.imagenet_model("vit_ti")
    text = str(e.value)
    assert "https://huggingface.co/timm/vit_tiny_patch16_224" in text
    assert str(tmp_path / "imagenet" / "vit_ti.safetensors") in text


def test_imagenet_indices_of_imagenette():
    wnids = sorted(IMAGENETTE_INDEX)
    assert imagenet.imagenet_indices(wnids) == [IMAGENETTE_INDEX[w] for w in wnids]
    with pytest.raises(ValueError, match="n99999999"):
        imagenet.imagenet_indices(["n99999999"])


def _fake_imagenette(path: Path, per_class: int = 2) -> str:
    """A tiny imagenette2-320.tgz (train/ and val/, one folder per synset, JPEGs); its MD5."""
    rng = np.random.default_rng(0)
    with tarfile.open(path, "w:gz") as tar:
        for split in ("train", "val"):
            for w in sorted(IMAGENETTE_INDEX):
                for i in range(per_class):
                    buf = io.BytesIO()
                    img = rng.integers(0, 256, size=(40, 60, 3), dtype=np.uint8)  # landscape, as 320 px
                    Image.fromarray(img).save(buf, format="JPEG")
                    info = tarfile.TarInfo(f"imagenette2-320/{split}/{w}/{w}_{i}.JPEG")
                    info.size = buf.tell()
                    buf.seek(0)
                    tar.addfile(info, buf)
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def test_imagenette_download_extract_and_batches(tmp_path, monkeypatch):
    src = tmp_path / "server" / "imagenette2-320.tgz"
    src.parent.mkdir()
    md5 = _fake_imagenette(src)
    data = tmp_path / "data"
    monkeypatch.setenv("HDVIT_DATA", str(data))
    root = imagenet.download_imagenette(url=src.as_uri(), md5=md5)
    assert root == data / "imagenette2-320" and (root / "val" / "n01440764").is_dir()
    assert (data / "imagenette2-320.tgz.sha256").exists()

    monkeypatch.setattr(imagenet, "download_imagenette", lambda data_root=None, download=True: root)
    batches = imagenet.imagenette_batches(10, batch_size=4)
    assert [x.shape[0] for x, _ in batches] == [4, 4, 2]
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    assert x.shape == (10, 3, 224, 224)
    assert sorted(y.tolist()) == sorted(IMAGENETTE_INDEX.values())  # one image per class, ImageNet labels
    # normalised by the ImageNet mean/std: undoing it gives pixels in [0, 1]
    pix = x * torch.tensor(imagenet.IMAGENET_STD).view(1, 3, 1, 1) + torch.tensor(imagenet.IMAGENET_MEAN).view(1, 3, 1, 1)
    assert pix.min() >= -1e-5 and pix.max() <= 1 + 1e-5 and pix.std() > 0.1


def test_imagenette_checksum_mismatch_names_file(tmp_path):
    src = tmp_path / "imagenette2-320.tgz"
    _fake_imagenette(src, per_class=1)
    with pytest.raises(imagenet.ArchiveChecksumError, match=str(tmp_path / "data" / "imagenette2-320.tgz")):
        imagenet.download_imagenette(tmp_path / "data", url=src.as_uri())  # the real, pinned MD5
    assert not (tmp_path / "data" / "imagenette2-320").exists()


def test_imagenette_failed_download(tmp_path):
    url = (tmp_path / "missing.tgz").as_uri()
    with pytest.raises(DownloadError) as e:
        imagenet.download_imagenette(tmp_path / "data", url=url)
    assert url in str(e.value) and str(tmp_path / "data" / "imagenette2-320.tgz") in str(e.value)


# --------------------------------------------------------------------------- chapter glue


@pytest.fixture()
def cifar(tmp_path, monkeypatch):
    """Untrained tiny CIFAR-style models, 32x32 batches, a gpu-preset config on the CPU, no network."""
    from hdvit_lib.analysis.features import clear_cache
    from hdvit_lib.models import get_model
    from hdvit_lib.presets import get_preset

    monkeypatch.setenv("HDVIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HDVIT_DATA", str(tmp_path / "data"))
    clear_cache()
    torch.manual_seed(0)
    trained = {n: get_model(n, tiny=True).eval() for n in ("resnet50", "vit_ti", "swin_ti")}
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(4, 3, 32, 32, generator=g), torch.randint(0, 10, (4,), generator=g))]
    cfg = {**get_preset("gpu"), "device": "cpu", "analysis_images": 2}
    return trained, batches, cfg


def test_glue_falls_back_to_cifar_offline(cifar, monkeypatch, capsys):
    from hdvit_lib.experiments import representation as rep

    trained, batches, cfg = cifar

    def offline(name):
        raise OSError("Name or service not known")

    monkeypatch.setattr(imagenet, "_download_timm", offline)
    feats = rep.fourier_features(trained, batches, cfg)
    said = capsys.readouterr().out
    assert list(feats) == list(trained)  # the CIFAR-style models, on the CIFAR batches
    assert feats["resnet50"].outputs[0].shape[-1] == 32
    assert "not the paper's ImageNet-1K models" in said and "DownloadError" in said
    assert "https://huggingface.co/timm/resnet50" in said

    monkeypatch.setattr(imagenet, "imagenet_model", lambda n: pytest.fail("smoke must not download"))
    feats = rep.fourier_features(trained, batches, {**cfg, "name": "smoke"})
    assert list(feats) == list(trained) and "smoke preset runs offline" in capsys.readouterr().out
    with pytest.raises(ValueError, match="auto, imagenet, cifar"):
        rep.fourier_features(trained, batches, cfg, source="imagenet1k")


def test_glue_uses_imagenet_models_where_available(cifar, monkeypatch, capsys):
    """With the downloads faked: ResNet-50 and ViT-Ti become the ImageNet ones on 224x224 images,
    Swin stays the CIFAR-style model on the CIFAR batches; ``source="imagenet"`` forces it."""
    from hdvit_lib.experiments import representation as rep

    trained, batches, cfg = cifar
    monkeypatch.setattr(imagenet, "imagenet_model", lambda n: imagenet.build_model(n).eval())
    g = torch.Generator().manual_seed(3)
    images = [(torch.randn(2, 3, 224, 224, generator=g), torch.tensor([0, 701]))]
    monkeypatch.setattr(imagenet, "imagenette_batches", lambda n, seed=0: images)
    for c, source in ((cfg, "auto"), ({**cfg, "name": "smoke"}, "imagenet")):
        feats = rep.fourier_features(trained, batches, c, source=source)
        assert list(feats) == ["resnet50_in1k", "vit_ti_in1k", "swin_ti"]
        assert feats["resnet50_in1k"].outputs[0].shape[-2:] == (56, 56)  # stem + max-pool of 224
        assert feats["vit_ti_in1k"].outputs[1].shape[-2:] == (14, 14)  # 224 / 16
        assert feats["swin_ti"].outputs[0].shape[0] == 4  # the CIFAR batch
        said = capsys.readouterr().out
        assert "resnet50_in1k, vit_ti_in1k: timm's ImageNet-1K weights" in said and "swin_ti: the CIFAR" in said
    feats = rep.fourier_features(trained, batches, cfg, source="cifar")
    assert list(feats) == list(trained)
