"""Tests of corrvos.models: official key layout, stage-method shapes and arithmetic, backbones and ImageNet loading."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from corrvos.errors import CheckpointError
from corrvos.families.stcn.network import STCN, aggregate_logits
from corrvos.models import VOSModel, build_model
from corrvos.models.backbones import KeyEncoder, MaskResNet18
from corrvos.models.params import parameter_groups

KEYS = json.loads((Path(__file__).parent / "data" / "stcn_keys.json").read_text())


def _layout(model: torch.nn.Module) -> list[list]:
    return [[k, list(v.shape)] for k, v in model.state_dict().items()]


@pytest.fixture(scope="module")
def stcn() -> STCN:
    torch.manual_seed(0)
    return STCN().eval()


@pytest.fixture(scope="module")
def corr() -> STCN:
    torch.manual_seed(1)
    return STCN(variant="corr").eval()


def test_stcn_keys_shapes_and_order_match_official_listing(stcn: STCN) -> None:
    assert _layout(stcn) == KEYS["stcn"]
    assert len(KEYS["stcn"]) == 405
    assert sum(p.numel() for p in stcn.parameters()) == 54_434_180


def test_corr_variant_keys_match_listing(corr: STCN) -> None:
    assert _layout(corr) == KEYS["corr_train"]
    eval_layout = [e for e in KEYS["corr_train"] if not e[0].startswith("key_proj2.")]
    assert len(eval_layout) == 413
    assert _layout(STCN(variant="corr", aux_key_head=False)) == eval_layout


def test_single_object_differs_only_in_conv1() -> None:
    expected = [[k, [64, 4, 7, 7]] if k == "value_encoder.conv1.weight" else [k, s] for k, s in KEYS["stcn"]]
    assert _layout(STCN(single_object=True)) == expected


def test_protocol_and_forward_refused(stcn: STCN) -> None:
    assert isinstance(stcn, VOSModel)
    with pytest.raises(NotImplementedError, match="encode_key"):
        stcn(torch.zeros(1, 3, 32, 32))


def test_key_proj_init_orthogonal_zero_bias() -> None:
    m = STCN(variant="corr")
    for head in (m.key_proj, m.key_proj2):
        w = head.key_proj.weight.flatten(1)  # [64, 1024*9]
        torch.testing.assert_close(w @ w.T, torch.eye(64), atol=1e-4, rtol=0)
        assert torch.count_nonzero(head.key_proj.bias) == 0


@pytest.mark.parametrize("variant", ["stcn", "corr"])
@pytest.mark.parametrize("n", [1, 3])
def test_stage_shapes(variant: str, n: int, stcn: STCN, corr: STCN) -> None:
    model = stcn if variant == "stcn" else corr
    torch.manual_seed(2)
    b, hh, ww = 2, 32, 48
    frame = torch.randn(b, 3, hh, ww)
    with torch.no_grad():
        f = model.encode_key(frame)
        assert f.key.shape == (b, 64, 2, 3) and f.f16.shape == (b, 1024, 2, 3)
        assert f.f8.shape == (b, 512, 4, 6) and f.f4.shape == (b, 256, 8, 12)
        assert (f.f16_thin is None) == (variant == "corr")
        assert (f.key2 is None) == (variant == "stcn")
        v = model.encode_value(frame, f.f16, torch.rand(b, n, hh, ww))[0]
        assert v.shape == (b, n, 512, 2, 3)
        r = model.read_memory(f.key[:, :, None], v[:, :, :, None], f.key)
        assert r.shape == (b, n, 512, 2, 3)
        seg = model.segment(r, f)
        logits, prob = seg.logits, seg.prob
    assert logits.shape == prob.shape == (b, n + 1, hh, ww)
    torch.testing.assert_close(prob.sum(1), torch.ones(b, hh, ww))
    torch.testing.assert_close(prob, F.softmax(logits, dim=1))


def test_encode_value_others_channel(stcn: STCN) -> None:
    torch.manual_seed(3)
    frame, masks = torch.randn(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        f16 = stcn.encode_key(frame).f16
        got = stcn.encode_value(frame, f16, masks)[0]
        for k in range(3):
            others = sum(masks[:, j] for j in range(3) if j != k)
            x = torch.cat([frame, masks[:, k : k + 1], others[:, None]], dim=1)  # [1, 5, H, W]
            torch.testing.assert_close(got[:, k], stcn.value_encoder(frame, f16, x[:, 3:]), atol=1e-5, rtol=1e-5)


def test_encode_value_without_objects(stcn: STCN) -> None:
    with torch.no_grad():
        v = stcn.encode_value(torch.zeros(2, 3, 32, 32), torch.zeros(2, 1024, 2, 2), torch.zeros(2, 0, 32, 32))[0]
    assert v.shape == (2, 0, 512, 2, 2)


def test_single_object_ignores_other_masks() -> None:
    torch.manual_seed(4)
    model = STCN(single_object=True).eval()
    frame, masks = torch.randn(1, 3, 32, 32), torch.rand(1, 2, 32, 32)
    with torch.no_grad():
        f16 = model.encode_key(frame).f16
        a = model.encode_value(frame, f16, masks)[0]
        b = model.encode_value(frame, f16, torch.stack([masks[:, 0], torch.rand(1, 32, 32)], 1))[0]
    torch.testing.assert_close(a[:, 0], b[:, 0])


def test_read_memory_matches_l2_softmax() -> None:
    torch.manual_seed(5)
    mk, qk = torch.randn(2, 64, 3, 2, 2), torch.randn(2, 64, 2, 2)
    mv = torch.randn(2, 2, 512, 3, 2, 2)
    model = STCN.__new__(STCN)  # read_memory uses no parameters
    got = STCN.read_memory(model, mk, mv, qk)
    m, q = mk.flatten(2).transpose(1, 2), qk.flatten(2).transpose(1, 2)  # [B, M, CK], [B, Q, CK]
    dist = torch.cdist(m.double(), q.double()) ** 2  # [B, M, Q]
    w = torch.softmax(-dist / math.sqrt(64), dim=1)
    expected = torch.einsum("bncm,bmq->bncq", mv.flatten(3).double(), w).view(2, 2, 512, 2, 2)
    torch.testing.assert_close(got.double(), expected, atol=1e-4, rtol=1e-4)
    # top-k with k >= memory size is the same softmax
    torch.testing.assert_close(STCN.read_memory(model, mk, mv, qk, top_k=100), got, atol=1e-5, rtol=1e-4)


def test_l2_affinity_formula_with_and_without_autocast() -> None:
    from corrvos.models.memory import l2_affinity

    torch.manual_seed(6)
    mk, qk = torch.randn(2, 64, 3, 4, 5), torch.randn(2, 64, 4, 5)
    m, q = mk.flatten(2).double(), qk.flatten(2).double()  # [B, CK, M], [B, CK, Q]
    expected = (2 * torch.einsum("bcm,bcq->bmq", m, q) - (m**2).sum(1)[:, :, None]) / 8.0  # sqrt(64) = 8
    got = l2_affinity(mk, qk)
    assert got.shape == (2, 60, 20) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), expected, atol=1e-4, rtol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # half-precision product, ||k||^2 kept in float32
        low = l2_affinity(mk, qk)
    assert low.dtype == torch.float32
    torch.testing.assert_close(low.double(), expected, atol=0.5, rtol=2e-2)


def test_topk_softmax_inplace_and_k_entries_per_query() -> None:
    from corrvos.models.memory import topk_softmax

    torch.manual_seed(7)
    affinity = torch.randn(2, 30, 11) * 20
    fresh = topk_softmax(affinity, 4)
    assert (fresh != 0).sum(dim=1).eq(4).all()  # exactly k kept per query
    torch.testing.assert_close(fresh.sum(dim=1), torch.ones(2, 11))
    kept = torch.topk(affinity, 4, dim=1)
    torch.testing.assert_close(fresh.gather(1, kept.indices), torch.softmax(kept.values.double(), 1).float())
    scratch = affinity.clone()
    out = topk_softmax(scratch, 4, inplace=True)
    assert out.data_ptr() == scratch.data_ptr() and torch.equal(out, fresh)


@pytest.mark.parametrize("batch", [1, 2])
def test_repeat_per_object_orders_objects_fastest(batch: int) -> None:
    from corrvos.families.stcn.network import repeat_per_object

    x = torch.randn(batch, 5, 3, 4)
    got = repeat_per_object(x, 3)
    assert torch.equal(got, x.repeat_interleave(3, dim=0))  # [B*N, ...], object index fastest
    if batch == 1:
        assert got.stride(0) == 0  # a broadcast view: the frame's features are not copied per object


def test_aggregate_logits_formula() -> None:
    prob = torch.tensor([[[[0.2]], [[0.9]]]])  # [1, 2, 1, 1]
    bg = (1 - 0.2) * (1 - 0.9)
    p = torch.tensor([bg, 0.2, 0.9])
    expected = torch.log(p / (1 - p)).view(1, 3, 1, 1)
    torch.testing.assert_close(aggregate_logits(prob), expected)
    # p = 1 is clamped to [1e-7, 1 - 1e-7] (in float32, as the official code)
    clamped = aggregate_logits(torch.ones(1, 1, 1, 1)).flatten()
    c = torch.tensor([1e-7, 1 - 1e-7], dtype=torch.float32)
    torch.testing.assert_close(clamped, torch.log(c / (1 - c)))


def test_segment_batched_objects_equal_single_and_selector(stcn: STCN) -> None:
    torch.manual_seed(6)
    with torch.no_grad():
        f = stcn.encode_key(torch.randn(2, 3, 32, 32))
        r = torch.randn(2, 3, 512, 2, 2)
        joint = stcn.decode(r, f)
        for k in range(3):
            torch.testing.assert_close(joint[:, k : k + 1], stcn.decode(r[:, k : k + 1], f), atol=1e-5, rtol=1e-5)
        selector = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
        seg = stcn.segment(r, f, selector=selector)
        logits, prob = seg.logits, seg.prob
    expected = aggregate_logits(torch.sigmoid(joint) * selector[:, :, None, None])
    torch.testing.assert_close(logits, expected)
    assert prob[0, 3].max() < 1e-5 and prob[1, 2:].max() < 1e-5


def test_backward_reaches_both_encoders() -> None:
    torch.manual_seed(7)
    model = STCN(variant="corr")
    frame = torch.randn(1, 3, 32, 32)
    f = model.encode_key(frame)
    v = model.encode_value(frame, f.f16, torch.rand(1, 2, 32, 32))[0]
    logits = model.segment(model.read_memory(f.key[:, :, None], v[:, :, :, None], f.key), f).logits
    (logits.mean() + f.key2.mean()).backward()
    for p in (
        model.key_encoder.conv1.weight,
        model.value_encoder.conv1.weight,
        model.key_proj2.key_proj.weight,
        model.decoder.fuser.block1.conv1.weight,
    ):
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_backbone_structure() -> None:
    enc = KeyEncoder()
    blk = enc.layer2[0]
    assert blk.conv1.stride == (1, 1) and blk.conv2.stride == (2, 2)  # ResNet v1.5
    assert all(m.bias is None for m in enc.modules() if isinstance(m, torch.nn.Conv2d))
    trunk = MaskResNet18(extra_channels=2)
    assert trunk.conv1.in_channels == 5
    assert all(m.bias is not None for m in trunk.modules() if isinstance(m, torch.nn.Conv2d))
    f16, f8, f4 = enc(torch.randn(1, 3, 64, 32))
    assert f16.shape == (1, 1024, 4, 2) and f8.shape == (1, 512, 8, 4) and f4.shape == (1, 256, 16, 8)
    assert trunk.trunk(torch.randn(1, 5, 64, 32)).shape == (1, 256, 4, 2)


def _torchvision_state(depth: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A torchvision-format ResNet state_dict written from the architecture spec (not from our classes)."""
    bottleneck = depth == 50
    blocks = [3, 4, 6, 3] if bottleneck else [2, 2, 2, 2]
    exp = 4 if bottleneck else 1
    shapes: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 3, 7, 7)}

    def bn(name: str, c: int) -> None:
        for s in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{name}.{s}"] = (c,)

    bn("bn1", 64)
    inp = 64
    for li, (n, planes) in enumerate(zip(blocks, [64, 128, 256, 512], strict=True), start=1):
        for bi in range(n):
            p = f"layer{li}.{bi}"
            if bottleneck:
                convs = [(inp, planes, 1), (planes, planes, 3), (planes, planes * 4, 1)]
            else:
                convs = [(inp, planes, 3), (planes, planes, 3)]
            for ci, (cin, cout, k) in enumerate(convs, start=1):
                shapes[f"{p}.conv{ci}.weight"] = (cout, cin, k, k)
                bn(f"{p}.bn{ci}", cout)
            if bi == 0 and (li > 1 or inp != planes * exp):
                shapes[f"{p}.downsample.0.weight"] = (planes * exp, inp, 1, 1)
                bn(f"{p}.downsample.1", planes * exp)
            inp = planes * exp
    shapes["fc.weight"], shapes["fc.bias"] = (1000, 512 * exp), (1000,)
    return {k: torch.rand(s, generator=generator) + 0.5 for k, s in shapes.items()}


def test_imagenet_loading_from_local_folder(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(8)
    r50, r18 = _torchvision_state(50, g), _torchvision_state(18, g)
    torch.save(r50, tmp_path / "resnet50-0676ba61.pth")
    torch.save(r18, tmp_path / "resnet18-f37072fd.pth")
    model = build_model("stcn", pretrained_backbones=str(tmp_path))
    ke, ve = model.key_encoder, model.value_encoder
    torch.testing.assert_close(ke.res2[0].conv1.weight, r50["layer1.0.conv1.weight"])
    torch.testing.assert_close(ke.layer3[5].bn3.running_var, r50["layer3.5.bn3.running_var"])
    torch.testing.assert_close(ve.layer3[0].downsample[0].weight, r18["layer3.0.downsample.0.weight"])
    assert torch.count_nonzero(ve.layer1[0].conv1.bias) == 0  # torchvision has no conv biases
    w = ve.conv1.weight
    torch.testing.assert_close(w[:, :3], r18["conv1.weight"])
    extra = w[:, 3:].reshape(64, -1)  # [64, 2*49]: orthonormal rows, as nn.init.orthogonal_
    torch.testing.assert_close(extra @ extra.T, torch.eye(64), atol=1e-5, rtol=0)


def test_imagenet_loading_rejects_wrong_files(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(9)
    r50 = _torchvision_state(50, g)
    torch.save(_torchvision_state(18, g), tmp_path / "resnet18.pth")
    bad = dict(r50)
    bad.pop("layer2.1.conv2.weight")
    bad["layer2.9.conv1.weight"] = torch.zeros(1)
    torch.save(bad, tmp_path / "resnet50.pth")
    with pytest.raises(CheckpointError, match=r"missing keys: \['layer2.1.conv2.weight'\].*layer2.9.conv1.weight"):
        build_model(pretrained_backbones=str(tmp_path))
    with pytest.raises(CheckpointError, match="not found"):
        build_model(pretrained_backbones=str(tmp_path / "nowhere"))


def test_imagenet_download_uses_torchvision_urls_weights_only(monkeypatch: pytest.MonkeyPatch) -> None:
    g = torch.Generator().manual_seed(10)
    files = {"resnet50": _torchvision_state(50, g), "resnet18": _torchvision_state(18, g)}
    calls = []

    def fake_download(url: str, **kwargs) -> dict[str, torch.Tensor]:
        calls.append((url, kwargs))
        return files["resnet50" if "resnet50" in url else "resnet18"]

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake_download)
    model = build_model("stcn_corr", pretrained_backbones=True)
    assert [c[0] for c in calls] == [
        "https://download.pytorch.org/models/resnet50-0676ba61.pth",
        "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    ]
    assert all(c[1]["weights_only"] is True and c[1]["check_hash"] is True for c in calls)
    torch.testing.assert_close(model.key_encoder.layer2[3].conv3.weight, files["resnet50"]["layer2.3.conv3.weight"])
    torch.testing.assert_close(model.value_encoder.bn1.bias, files["resnet18"]["bn1.bias"])


def test_parameter_groups_as_official_corr_training(corr: STCN) -> None:
    early, late, rest = parameter_groups(corr)
    assert len(early) + len(late) + len(rest) == len(list(corr.parameters()))
    ids = {name: id(p) for name, p in corr.named_parameters()}
    e, la, r = ({id(p) for p in g} for g in (early, late, rest))
    assert ids["key_encoder.res2.0.conv1.weight"] in e and ids["value_encoder.fuser.block2.conv2.bias"] in e
    assert ids["key_encoder.layer3.5.conv3.weight"] in la and ids["value_encoder.layer2.0.conv1.bias"] in la
    assert ids["key_proj2.key_proj.weight"] in r and ids["decoder.fuser.block1.conv1.weight"] in r
    assert not (e & la or e & r or la & r)


def test_fold_batchnorm_keeps_outputs_and_removes_every_batchnorm():
    import copy

    from torch import nn

    from corrvos.models.fuse import fold_batchnorm

    torch.manual_seed(0)
    model = STCN().eval()
    g = torch.Generator().manual_seed(1)
    for mod in model.modules():  # non-trivial statistics, so a wrong fold cannot pass
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.copy_(torch.rand(mod.num_features, generator=g) - 0.5)
            mod.running_var.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
            mod.weight.data.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
            mod.bias.data.copy_(torch.rand(mod.num_features, generator=g) - 0.5)
    fused = fold_batchnorm(copy.deepcopy(model))
    assert fused.folded_batchnorms == 58
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    frame = torch.randn(1, 3, 64, 96, generator=g)
    masks = torch.rand(1, 2, 64, 96, generator=g)
    with torch.inference_mode():
        a, b = model.encode_key(frame), fused.encode_key(frame)
        va, vb = model.encode_value(frame, a.f16, masks)[0], fused.encode_value(frame, b.f16, masks)[0]
    for x, y in [(a.key, b.key), (a.f16, b.f16), (a.f8, b.f8), (a.f4, b.f4), (va, vb)]:
        assert torch.allclose(x, y, rtol=1e-4, atol=1e-4 * float(x.abs().max()))
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(STCN().train())


def test_similarity_reduces_to_stcn_and_matches_float64_reference() -> None:
    from corrvos.models.memory import l2_affinity, similarity

    g = torch.Generator().manual_seed(5)
    mk = torch.randn(2, 8, 3, 4, 5, generator=g)  # [B, CK, T, h, w]
    qk = torch.randn(2, 8, 4, 5, generator=g)  # [B, CK, h, w]
    s = torch.rand(2, 1, 3, 4, 5, generator=g) * 3 + 1  # shrinkage >= 1
    e = torch.rand(2, 8, 4, 5, generator=g)  # selection in [0, 1]
    assert torch.equal(similarity(mk, qk), l2_affinity(mk, qk))  # the exact STCN path
    m64, q64 = mk.double().flatten(2), qk.double().flatten(2)  # [B, CK, M], [B, CK, Q]
    diff2 = (m64[:, :, :, None] - q64[:, :, None, :]).pow(2)  # [B, CK, M, Q]
    e64, s64 = e.double().flatten(2), s.double().flatten(1)  # [B, CK, Q], [B, M]
    ref = -(s64[:, :, None] * (e64[:, :, None, :] * diff2).sum(1)) / 8**0.5  # anisotropic L2 [B, M, Q]
    got = similarity(mk, qk, mem_shrinkage=s, query_selection=e)
    torch.testing.assert_close(got.double(), ref, atol=1e-4, rtol=1e-5)
    # selection alone: the b^2 term stays; shrinkage alone: STCN's form scaled by s_i (XMem's rule)
    ref_e = -(e64[:, :, None, :] * diff2).sum(1) / 8**0.5
    torch.testing.assert_close(similarity(mk, qk, query_selection=e).double(), ref_e, atol=1e-4, rtol=1e-5)
    ref_s = (2 * m64.transpose(1, 2) @ q64 - m64.pow(2).sum(1)[:, :, None]) * s64[:, :, None] / 8**0.5
    torch.testing.assert_close(similarity(mk, qk, mem_shrinkage=s).double(), ref_s, atol=1e-4, rtol=1e-5)
