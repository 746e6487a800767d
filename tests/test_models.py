"""Tests for hdvit_lib.models: block listings reproduce the forward pass, checkpoint layouts,
parameter counts against the paper, local attention against its definition, double backward."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.func import functional_call, grad, jvp

from hdvit_lib.models import (
    as_feature_map,
    count_params,
    get_model,
    list_models,
    run_blocks,
    set_fused_attn,
)
from hdvit_lib.models.vit import ViT, neighbourhood_mask
from hdvit_lib.pretrained import load_state_dict_into

torch.set_num_threads(1)

OFFICIAL = Path(__file__).resolve().parents[2] / "shared" / "official_checkpoints"
BASES = ["resnet18", "resnet50", "vit_ti", "vit_local", "pit_ti", "swin_ti", "alternet50"]
# Park & Kim (2022), Table / Fig. 11 sizes with 100 classes.
PAPER_PARAMS = {"resnet50": 23.7e6, "vit_ti": 5.4e6, "pit_ti": 4.6e6, "swin_ti": 27.6e6, "alternet50": 33.0e6}


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _official(name: str) -> dict:
    path = OFFICIAL / f"{name}_cifar100.json"
    if not path.exists():
        pytest.skip(f"{path} not available")
    return json.loads(path.read_text())


def _random_state_dict(spec: dict) -> dict[str, torch.Tensor]:
    dtypes = {"float32": torch.float32, "int64": torch.int64}
    return {k: torch.randn(shape).to(dtypes[dt]) if dt == "float32" else torch.zeros(shape, dtype=dtypes[dt])
            for k, shape, dt in spec["state_dict"]}


def _check_blocks(model: torch.nn.Module, x: torch.Tensor) -> list:
    model.eval()
    blocks = model.blocks()
    with torch.no_grad():
        ref = model(x)
        out, outs = run_blocks(blocks, x, keep=True)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    assert ref.abs().max() > 0
    for b, o in zip(blocks, outs):
        fmap = as_feature_map(o, b)
        if b.layout == "vector":
            assert fmap is None
        else:
            assert fmap.ndim == 4 and fmap.shape[0] == x.shape[0] and fmap.shape[2] == fmap.shape[3]
    return blocks


def test_list_models_and_unknown_name() -> None:
    names = list_models()
    assert names == BASES + [f"{b}_tiny" for b in BASES]
    with pytest.raises(ValueError, match="vit_ti, vit_local"):
        get_model("vit_huge")


@pytest.mark.parametrize("name", BASES)
def test_tiny_blocks_reproduce_forward(name: str) -> None:
    model = get_model(f"{name}_tiny", num_classes=7)
    blocks = _check_blocks(model, torch.randn(3, 3, 32, 32))
    kinds = [b.kind for b in blocks]
    assert kinds[0] == "embed" and kinds[-1] == "head" and kinds.count("head") == 1
    assert blocks[-1].layout == "vector"
    for b in blocks:
        if b.kind in ("conv", "msa", "mlp"):
            assert b.shortcut is not None
    if name in ("vit_ti", "vit_local", "pit_ti", "swin_ti"):
        inner = [k for k in kinds[1:-1] if k != "pool"]
        assert inner == ["msa", "mlp"] * (len(inner) // 2)
    stages = [b.stage for b in blocks]
    assert stages == sorted(stages)
    n_stages = {"vit_ti": 1, "vit_local": 1, "pit_ti": 3, "swin_ti": 3}.get(name, 4)
    assert sorted(set(stages)) == list(range(n_stages))
    # pooling blocks open stages 1..n-1 and halve the feature map
    pools = [i for i, b in enumerate(blocks) if b.kind == "pool"]
    assert len(pools) == (n_stages - 1 if name in ("pit_ti", "swin_ti") else 0)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        _, outs = run_blocks(blocks, x, keep=True)
    for i in pools:
        before, after = as_feature_map(outs[i - 1], blocks[i - 1]), as_feature_map(outs[i], blocks[i])
        assert after.shape[-1] == before.shape[-1] // 2 and after.shape[1] == 2 * before.shape[1]
        assert blocks[i].stage == blocks[i - 1].stage + 1


@pytest.mark.parametrize("name", BASES)
def test_paper_size_blocks_reproduce_forward(name: str) -> None:
    _check_blocks(get_model(name, num_classes=100), torch.randn(2, 3, 32, 32))


def test_tiny_suffix_equals_tiny_flag() -> None:
    a, b = get_model("vit_local_tiny"), get_model("vit_local", tiny=True)
    assert [k for k in a.state_dict()] == [k for k in b.state_dict()]
    assert count_params(a) == count_params(b) < count_params(get_model("vit_local")) / 10


def test_lesion_removes_residual_branch() -> None:
    # Lesioning an MSA block of ViT is x -> x: the output equals skipping that block.
    model = get_model("vit_ti_tiny").eval()
    blocks, x = model.blocks(), torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        lesioned, _ = run_blocks(blocks, x, lesion=1)
        skipped, _ = run_blocks(blocks[:1] + blocks[2:], x)
    torch.testing.assert_close(lesioned, skipped)
    # AlterNet (pre-activation): lesioning a projection block keeps shortcut(relu(bn(x))).
    net = get_model("alternet50_tiny").eval()
    blk = net.layer2[0]
    h = torch.randn(2, blk.bn.num_features, 32, 32)
    with torch.no_grad():
        ref = blk.shortcut(torch.relu(blk.bn(h)))
        torch.testing.assert_close(blk.lesioned()(h), ref)
        torch.testing.assert_close(blk(h) - ref, blk.branch(torch.relu(blk.bn(h))))


@pytest.mark.parametrize("counts", [(0, 1, 1, 2), (0, 1, 3, 2), (0, 0, 0, 1)])
def test_alternet_msa_placement(counts: tuple[int, ...]) -> None:
    model = get_model("alternet50", msa_per_stage=counts)
    blocks = model.blocks()
    for stage, (n_blocks, m) in enumerate(zip((3, 4, 6, 4), counts)):
        kinds = [b.kind for b in blocks if b.stage == stage and b.kind in ("conv", "msa")]
        # the build-up rule: the last 2m blocks alternate Conv, MSA
        assert kinds == ["conv"] * (n_blocks - 2 * m) + ["conv", "msa"] * m
    explicit = get_model("alternet50_tiny", msa_positions=([], [0], [], [0, 1]))
    kinds = [(b.stage, b.kind) for b in explicit.blocks() if b.kind in ("conv", "msa")]
    assert kinds == [(0, "conv"), (1, "msa"), (1, "conv"), (2, "conv"), (2, "conv"), (3, "msa"), (3, "msa")]
    _check_blocks(explicit, torch.randn(2, 3, 32, 32))


def test_paper_parameter_counts() -> None:
    counts = {name: count_params(get_model(name, num_classes=100)) for name in PAPER_PARAMS}
    for name, paper in PAPER_PARAMS.items():
        assert abs(counts[name] - paper) / paper < 0.02, (name, counts[name], paper)
    for name in ("resnet50", "vit_ti", "pit_ti", "swin_ti"):
        assert counts[name] == _official(name.replace("resnet50", "resnet_50"))["num_params"]


@pytest.mark.parametrize("name", ["resnet50", "vit_ti", "pit_ti", "swin_ti"])
def test_official_state_dict_loads_strictly(name: str) -> None:
    spec = _official(name.replace("resnet50", "resnet_50"))
    model = get_model(name, num_classes=100)
    sd = _random_state_dict(spec)
    if name == "resnet50":
        assert list(sd) == list(model.state_dict())  # no conversion needed
    own = dict(model.named_buffers())
    for k in sd:  # derived buffers (Swin's window index and mask) are checked against ours, not random
        if k.endswith(("relative_position_index", "attn_mask")):
            sd[k] = own[k].clone()
    load_state_dict_into(model, name, sd)  # strict: every key mapped, none left over
    if name == "resnet50":
        torch.testing.assert_close(model.layer1[0].shortcut[0].weight, sd["layer1.0.shortcut.0.weight"])
        torch.testing.assert_close(model.classifier[0].dense.bias, sd["classifier.0.dense.bias"])
    if name == "swin_ti":
        torch.testing.assert_close(model.layers[1].downsample.reduction.weight, sd["layers.0.downsample.reduction.weight"])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"name": "vit_ti", "patch_size": 3}, "1, 2, 4, 8, 16, 32"),
        ({"name": "vit_local_tiny", "window": 9}, r"window=9 .* 8x8 .*\(1, 3, 5, 7\) or 8"),
        ({"name": "vit_local_tiny", "window": 4}, "odd size"),
        ({"name": "swin_ti", "window_size": 64}, "larger than the first feature map"),
        ({"name": "alternet50", "window": 8}, "window=8 does not tile stage 3's 4x4"),
        ({"name": "vit_ti", "num_heads": 5}, "num_heads=5 does not divide the width 192"),
        ({"name": "swin_ti", "num_heads": (3, 5, 12, 24)}, "num_heads=5 does not divide the width 192"),
        ({"name": "pit_ti", "heads": (3, 4, 8)}, r"widths \(96, 128, 256\).*128 must be a multiple of 96"),
        ({"name": "pit_ti", "heads": (2, 4, 6)}, "192 must be a multiple of 128"),
        ({"name": "pit_ti", "heads": (2, 0, 8)}, "must be >= 1"),
        ({"name": "vit_ti", "dropout": 0.1}, "unknown setting.*valid: .*patch_size"),
        ({"name": "alternet50", "msa_per_stage": (0, 1, 4, 2)}, "0 to 3 MSAs"),
    ],
)
def test_impossible_configs_name_valid_values(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        get_model(**kwargs)


def _attention_grad_mask(model: ViT, query: int, n_tokens: int, dim: int) -> torch.Tensor:
    """Which input tokens the output token ``query`` of the first msa block depends on."""
    msa = model.blocks()[1].module
    x = torch.randn(1, n_tokens, dim, requires_grad=True)
    (g,) = torch.autograd.grad(msa(x)[0, query].sum(), x)
    return g[0].abs().sum(-1)


@pytest.mark.parametrize("fused", [True, False])
def test_local_attention_gradient_is_zero_outside_window(fused: bool) -> None:
    grid, window = 8, 3
    model = get_model("vit_local_tiny", window=window).eval()
    set_fused_attn(model, fused)
    for r, c in [(0, 0), (3, 4), (7, 2)]:
        g = _attention_grad_mask(model, 1 + r * grid + c, 1 + grid * grid, 64)
        assert g[0] > 0  # the class token is always visible
        patch = g[1:].reshape(grid, grid)
        r0, c0 = min(max(r - 1, 0), grid - window), min(max(c - 1, 0), grid - window)
        inside = torch.zeros(grid, grid, dtype=torch.bool)
        inside[r0 : r0 + window, c0 : c0 + window] = True
        assert torch.all(patch[~inside] == 0)
        assert torch.all(patch[inside] > 0)
    # the class token attends to every token
    assert torch.all(_attention_grad_mask(model, 0, 1 + grid * grid, 64) > 0)


def test_local_attention_with_window_equal_grid_is_global() -> None:
    local = get_model("vit_local_tiny", window=8).eval()
    glob = get_model("vit_ti_tiny").eval()
    glob.load_state_dict(local.state_dict())
    assert torch.all(neighbourhood_mask(8, 8) == 0)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(local(x), glob(x))
        small = get_model("vit_local_tiny", window=3).eval()
        small.load_state_dict(local.state_dict())
        assert (small(x) - glob(x)).abs().max() > 1e-3


@pytest.mark.parametrize("name", [f"{b}_tiny" for b in BASES])
def test_double_backward_without_fused_attention(name: str) -> None:
    """Hessian-vector product by double backward (reverse-over-reverse) against forward-over-reverse
    (torch.func.jvp of the gradient) and, for the smooth (GELU) transformers, a central finite
    difference of gradients. (A ReLU net's gradient jumps at kinks: finite differences do not
    converge to its Hessian, so the conv nets get the forward-mode reference only.)"""
    model = get_model(name, num_classes=5).eval().double()
    n_attn = set_fused_attn(model, False)
    assert (n_attn > 0) == (not name.startswith("resnet"))
    x, y = torch.randn(4, 3, 32, 32, dtype=torch.float64), torch.tensor([0, 1, 2, 3])
    params, buffers = dict(model.named_parameters()), dict(model.named_buffers())

    def loss(p: dict) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(functional_call(model, (p, buffers), (x,)), y)

    v = {k: torch.randn_like(p) for k, p in params.items()}
    g = torch.autograd.grad(loss(params), list(params.values()), create_graph=True)
    hv = torch.autograd.grad(sum((gi * v[k]).sum() for gi, k in zip(g, params)), list(params.values()))
    hv = torch.cat([h.flatten() for h in hv])
    _, ref = jvp(grad(loss), (params,), (v,))
    ref = torch.cat([ref[k].detach().flatten() for k in params])
    assert ref.norm() > 0
    torch.testing.assert_close(hv, ref, rtol=1e-8, atol=1e-8 * ref.abs().max().item())
    if name.startswith(("vit", "pit", "swin")):
        eps = 1e-5
        plus = grad(loss)({k: p.detach() + eps * v[k] for k, p in params.items()})
        minus = grad(loss)({k: p.detach() - eps * v[k] for k, p in params.items()})
        fd = torch.cat([((plus[k] - minus[k]) / (2 * eps)).flatten() for k in params])
        assert torch.linalg.vector_norm(hv - fd) / torch.linalg.vector_norm(fd) < 1e-5


def test_set_fused_attn_switches_every_attention() -> None:
    model = get_model("swin_ti_tiny")
    n = set_fused_attn(model, False)
    assert n == 6 and not any(getattr(m, "fused_attn", False) for m in model.modules())
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        plain = model(x)
        set_fused_attn(model, True)
        torch.testing.assert_close(model(x), plain, atol=1e-5, rtol=1e-5)


def _residual_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The residual blocks of a model in forward order, found by type (not through blocks())."""
    from timm.models.pit import Transformer as PiTStage
    from timm.models.swin_transformer import SwinTransformerBlock
    from timm.models.vision_transformer import Block as TimmBlock

    from hdvit_lib.models.alternet import _PreActBlock
    from hdvit_lib.models.resnet import _ResidualBlock

    kinds = (_ResidualBlock, _PreActBlock, TimmBlock, SwinTransformerBlock)
    found = [m for m in model.modules() if isinstance(m, kinds)]
    if not found:  # PiT's blocks are timm ViT blocks inside its stages
        found = [b for s in model.modules() if isinstance(s, PiTStage) for b in s.blocks]
    return found


def _rate(m: torch.nn.Module) -> float:
    return float(getattr(m, "drop_prob", 0.0))  # nn.Identity: rate 0


@pytest.mark.parametrize("name", BASES)
def test_paper_size_stochastic_depth_is_the_authors_linear_rule(name: str) -> None:
    # configs/cifar100_vit.yaml: model.block.sd 0.1; block j of n gets 0.1 * j / (n - 1)
    from hdvit_lib.models import model_settings

    assert model_settings(name)["drop_path_rate"] == 0.1
    blocks = _residual_modules(get_model(name, num_classes=100))
    n = len(blocks)
    assert n == {"resnet18": 8, "resnet50": 16, "vit_ti": 12, "vit_local": 12, "pit_ti": 12, "swin_ti": 12,
                 "alternet50": 17}[name]
    want = [0.1 * j / (n - 1) for j in range(n)]
    for blk, w in zip(blocks, want):
        paths = [getattr(blk, a) for a in ("drop_path", "drop_path1", "drop_path2") if hasattr(blk, a)]
        assert paths and all(_rate(p) == pytest.approx(w, abs=1e-7) for p in paths), (name, w)


def test_alternet_msa_blocks_preactivate_with_gelu() -> None:
    from hdvit_lib.models.alternet import MSABlock, PreActBottleneck

    for model in (get_model("alternet50"), get_model("alternet50_tiny")):
        msa = [m for m in model.modules() if isinstance(m, MSABlock)]
        conv = [m for m in model.modules() if isinstance(m, PreActBottleneck)]
        assert msa and conv
        assert all(isinstance(m.relu, torch.nn.GELU) for m in msa)
        assert all(isinstance(m.relu, torch.nn.ReLU) for m in conv)
    # the MSA block's output, written out: attn(bn2(conv(gelu(bn1(x))))) + x (no projection)
    blk = [m for m in get_model("alternet50_tiny").eval().modules() if isinstance(m, MSABlock)][-1]
    assert len(blk.shortcut) == 0
    x = torch.randn(2, blk.norm1.num_features, 4, 4)
    with torch.no_grad():
        a = torch.nn.functional.gelu(blk.norm1(x))
        torch.testing.assert_close(blk(x), blk.attn(blk.norm2(blk.conv(a))) + x)


@pytest.mark.parametrize("name", ["alternet50_tiny", "resnet50_tiny", "vit_ti_tiny"])
def test_stochastic_depth_off_in_eval_and_on_in_train(name: str) -> None:
    from hdvit_lib.analysis.hessian import analysis_mode

    model = get_model(name, drop_path_rate=0.5)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.manual_seed(1)
        a = model(x)
        torch.manual_seed(2)
        b = model(x)
        assert (a - b).abs().max() > 1e-4  # train mode: branches dropped at random
        plain = get_model(name, drop_path_rate=0.0)
        plain.load_state_dict(model.state_dict())  # after the train-mode passes moved BatchNorm's statistics
        model.eval(), plain.eval()
        ref = plain(x)
        torch.testing.assert_close(model(x), ref)
        torch.testing.assert_close(model(x), ref)
        model.train()
        with analysis_mode(model):
            torch.testing.assert_close(model(x), ref)


# --------------------------------------------------------------------------- GAP classifier (Fig. 6)


def _gap_vit() -> ViT:
    torch.manual_seed(0)
    model = get_model("vit_ti_tiny", global_pool="avg").eval()
    with torch.no_grad():  # a generic fc_norm (not the identity affine map)
        model.fc_norm.weight.normal_(1.0, 0.3)
        model.fc_norm.bias.normal_(0.0, 0.3)
    return model


def test_gap_vit_forward_equals_a_hand_computation() -> None:
    """Patch embedding (a strided conv), class token, position embedding, timm's blocks; then the
    mean of the final *patch* tokens (the class token left out), LayerNorm, linear head."""
    model = _gap_vit()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        p = model.patch_embed.proj
        t = torch.nn.functional.conv2d(x, p.weight, p.bias, stride=p.stride).flatten(2).transpose(1, 2)
        t = torch.cat([model.cls_token.expand(3, -1, -1), t], dim=1) + model.pos_embed
        for blk in model.transformer:
            t = blk(t)
        pooled = t[:, 1:].mean(dim=1)
        mu, var = pooled.mean(-1, keepdim=True), pooled.var(-1, unbiased=False, keepdim=True)
        normed = (pooled - mu) / torch.sqrt(var + model.fc_norm.eps) * model.fc_norm.weight + model.fc_norm.bias
        expected = normed @ model.head.weight.T + model.head.bias
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)
        # the class token's final state does not reach the logits (with avg pooling)
        assert isinstance(model.norm, torch.nn.Identity)
        assert not torch.allclose(expected, model.head(model.fc_norm(t[:, 0])))


def test_gap_vit_blocks_reproduce_forward() -> None:
    model = _gap_vit()
    _check_blocks(model, torch.randn(2, 3, 32, 32))
    assert [b.kind for b in model.blocks()][-1] == "head"


def test_global_pool_is_a_spelled_out_setting() -> None:
    from hdvit_lib.models import model_settings
    from hdvit_lib.train.cache import run_config

    assert model_settings("vit_ti")["global_pool"] == "token"
    assert model_settings("vit_local_tiny")["global_pool"] == "token"
    default = run_config("vit_ti")
    assert default == run_config("vit_ti", model_cfg={"global_pool": "token"})
    assert default != run_config("vit_ti", model_cfg={"global_pool": "avg"})
    with pytest.raises(ValueError, match=r"global_pool='max'.*'token', 'avg'"):
        get_model("vit_ti_tiny", global_pool="max")
