"""Tests of corrvos.families.xmem.network: official key layout, stage shapes, hidden-state rules, detection,
gradients, and numerical parity with the official hkchengrex/XMem network (when its code is in .ref/XMem)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from corrvos.errors import CheckpointError
from corrvos.families.stcn.network import STCN
from corrvos.families.xmem.family import detect_xmem
from corrvos.families.xmem.network import XMem
from corrvos.models.base import VOSModel, zero_hidden
from official_xmem import REF, build_official_xmem

KEYS = json.loads((Path(__file__).parent / "data" / "xmem_keys.json").read_text())["xmem"]
NO_SENSORY_REMOVED = {
    "value_encoder.hidden_reinforce.transform.weight",
    "value_encoder.hidden_reinforce.transform.bias",
    *(
        f"decoder.hidden_update.{m}.{p}"
        for m in ("g16_conv", "g8_conv", "g4_conv", "transform")
        for p in ("weight", "bias")
    ),
}


def _layout(model: torch.nn.Module) -> list[list]:
    return [[k, list(v.shape)] for k, v in model.state_dict().items()]


@pytest.fixture(scope="module")
def xmem() -> XMem:
    torch.manual_seed(0)
    return XMem().eval()


def test_keys_shapes_and_order_match_official_listing(xmem: XMem) -> None:
    assert len(KEYS) == 412
    assert _layout(xmem) == KEYS
    assert sum(p.numel() for p in xmem.parameters()) == 62_185_224


def test_variants_layout() -> None:
    single = [[k, [64, 4, 7, 7]] if k == "value_encoder.conv1.weight" else [k, s] for k, s in KEYS]
    assert _layout(XMem(single_object=True)) == single
    wide = {f"decoder.fuser.block1.{m}.weight": [512, 1536, 3, 3] for m in ("conv1", "downsample")}
    no_sensory = [[k, wide.get(k, s)] for k, s in KEYS if k not in NO_SENSORY_REMOVED]
    model = XMem(hidden_dim=0)
    assert len(no_sensory) == 402
    assert _layout(model) == no_sensory
    assert sum(p.numel() for p in model.parameters()) == 59_783_560


def test_contract_attributes_and_forward_refused(xmem: XMem) -> None:
    assert isinstance(xmem, VOSModel)
    assert xmem.family == "xmem"
    assert (xmem.key_dim, xmem.value_dim, xmem.hidden_dim, xmem.single_object) == (64, 512, 64, False)
    assert xmem.init_args() == {
        "single_object": False,
        "key_dim": 64,
        "value_dim": 512,
        "hidden_dim": 64,
        "aux_key_head": False,
        "key_encoder": "resnet50",
        "width": 64,
    }
    args = {"single_object": True, "key_dim": 32, "value_dim": 256, "hidden_dim": 0, "aux_key_head": True}
    assert XMem(**args).init_args() == {**args, "key_encoder": "resnet50", "width": 64}
    with pytest.raises(NotImplementedError, match="encode_key"):
        xmem(torch.zeros(1, 3, 32, 32))


@pytest.mark.parametrize("n", [1, 3])
def test_stage_shapes_and_hidden_rules(n: int, xmem: XMem) -> None:
    torch.manual_seed(2)
    b, hh, ww = 2, 64, 64
    frame = torch.randn(b, 3, hh, ww)
    with torch.no_grad():
        f = xmem.encode_key(frame)
        assert f.key.shape == (b, 64, 4, 4) and f.f16.shape == (b, 1024, 4, 4)
        assert f.f8.shape == (b, 512, 8, 8) and f.f4.shape == (b, 256, 16, 16)
        assert f.shrinkage.shape == (b, 1, 4, 4) and bool((f.shrinkage >= 1).all())
        assert f.selection.shape == (b, 64, 4, 4) and bool(((f.selection >= 0) & (f.selection <= 1)).all())
        bare = xmem.encode_key(frame, need_shrinkage=False, need_selection=False)
        assert bare.shrinkage is None and bare.selection is None
        torch.testing.assert_close(bare.key, f.key)

        hidden = zero_hidden(xmem, b, n, 4, 4, like=frame)
        masks = torch.rand(b, n, hh, ww)
        v, h = xmem.encode_value(frame, f.f16, masks, hidden)
        assert v.shape == (b, n, 512, 4, 4) and h.shape == (b, n, 64, 4, 4)
        assert not torch.equal(h, hidden)
        v2, same = xmem.encode_value(frame, f.f16, masks, hidden, deep_update=False)
        assert same is hidden
        torch.testing.assert_close(v2, v)

        r = xmem.read_memory(
            f.key[:, :, None],
            v[:, :, :, None],
            f.key,
            mem_shrinkage=f.shrinkage[:, :, None],
            query_selection=f.selection,
        )
        assert r.shape == (b, n, 512, 4, 4)
        assert xmem.read_memory(f.key[:, :, None], v[:, :, :, None], f.key, top_k=5).shape == r.shape

        out = xmem.segment(r, f, h)
        assert out.logits.shape == out.prob.shape == (b, n + 1, hh, ww)
        assert out.hidden.shape == (b, n, 64, 4, 4)
        torch.testing.assert_close(out.prob.sum(1), torch.ones(b, hh, ww))
        torch.testing.assert_close(out.prob, F.softmax(out.logits, dim=1))
        frozen = xmem.segment(r, f, h, update_hidden=False)
        assert frozen.hidden is None
        torch.testing.assert_close(frozen.logits, out.logits)
        with pytest.raises(ValueError, match="hidden"):
            xmem.segment(r, f)
        with pytest.raises(ValueError, match="hidden"):
            xmem.encode_value(frame, f.f16, masks)


def test_selector_zeroes_padding_slots(xmem: XMem) -> None:
    torch.manual_seed(3)
    frame = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        f = xmem.encode_key(frame)
        r = torch.randn(1, 2, 512, 4, 4)
        out = xmem.segment(r, f, torch.zeros(1, 2, 64, 4, 4), selector=torch.tensor([[1.0, 0.0]]))
    assert float(out.prob[:, 2].max()) < 1e-5


def test_encode_value_without_objects(xmem: XMem) -> None:
    frame, f16 = torch.zeros(1, 3, 64, 64), torch.zeros(1, 1024, 4, 4)
    hidden = torch.zeros(1, 0, 64, 4, 4)
    with torch.no_grad():
        v, h = xmem.encode_value(frame, f16, torch.zeros(1, 0, 64, 64), hidden)
    assert v.shape == (1, 0, 512, 4, 4) and h is hidden


def test_single_object_and_no_sensory_variants() -> None:
    torch.manual_seed(4)
    frame = torch.randn(1, 3, 64, 64)
    single = XMem(single_object=True).eval()
    masks = torch.rand(1, 2, 64, 64)
    with torch.no_grad():
        f16 = single.encode_key(frame).f16
        hid = zero_hidden(single, 1, 2, 4, 4, like=frame)
        a, _ = single.encode_value(frame, f16, masks, hid)
        b, _ = single.encode_value(frame, f16, torch.stack([masks[:, 0], torch.rand(1, 64, 64)], 1), hid)
    torch.testing.assert_close(a[:, 0], b[:, 0])  # the other objects' masks are not seen

    plain = XMem(hidden_dim=0).eval()
    assert zero_hidden(plain, 1, 2, 4, 4, like=frame) is None
    with torch.no_grad():
        f = plain.encode_key(frame)
        v, h = plain.encode_value(frame, f.f16, masks)
        assert h is None
        out = plain.segment(plain.read_memory(f.key[:, :, None], v[:, :, :, None], f.key), f)
    assert out.logits.shape == (1, 3, 64, 64) and out.hidden is None


def test_detect_xmem(xmem: XMem) -> None:
    assert detect_xmem(xmem.state_dict()) == xmem.init_args()
    for kwargs in ({"single_object": True}, {"hidden_dim": 0}):
        model = XMem(**kwargs)
        assert detect_xmem(model.state_dict()) == model.init_args()
    assert detect_xmem(STCN().state_dict()) is None
    markers = {k: v for k, v in xmem.state_dict().items() if k.startswith("key_proj.")}
    with pytest.raises(CheckpointError, match="value_encoder"):
        detect_xmem(markers)


def test_gradients_reach_every_head() -> None:
    torch.manual_seed(5)
    model = XMem().train()
    frames = torch.randn(2, 1, 3, 64, 64) * 0.5
    masks = (torch.rand(1, 2, 64, 64) > 0.5).float()
    f0 = model.encode_key(frames[0], need_selection=False)
    f1 = model.encode_key(frames[1], need_shrinkage=False)
    v, h = model.encode_value(frames[0], f0.f16, masks, zero_hidden(model, 1, 2, 4, 4, like=masks))
    r = model.read_memory(
        f0.key[:, :, None],
        v[:, :, :, None],
        f1.key,
        mem_shrinkage=f0.shrinkage[:, :, None],
        query_selection=f1.selection,
    )
    out = model.segment(r, f1, h)
    F.cross_entropy(out.logits, torch.randint(0, 3, (1, 64, 64))).backward()
    for name in (
        "key_encoder.conv1.weight",
        "key_proj.key_proj.weight",
        "key_proj.d_proj.weight",
        "key_proj.e_proj.weight",
        "value_encoder.conv1.weight",
        "value_encoder.fuser.block2.conv2.weight",
        "value_encoder.hidden_reinforce.transform.weight",
        "decoder.fuser.block1.conv1.weight",
        "decoder.pred.weight",
    ):
        grad = model.get_parameter(name).grad
        assert grad is not None and float(grad.abs().sum()) > 0, name


def test_value_encoder_takes_imagenet_resnet18() -> None:
    from corrvos.models.backbones import load_imagenet_resnet18

    model = XMem()
    trunk = {k: v for k, v in model.value_encoder.state_dict().items() if k.startswith(("conv1", "bn1", "layer"))}
    state = {k: torch.randn(v.shape) if v.is_floating_point() else v for k, v in trunk.items()}
    state["conv1.weight"] = state["conv1.weight"][:, :3].contiguous()  # torchvision's RGB conv1
    state["fc.weight"] = torch.zeros(1000, 512)
    load_imagenet_resnet18(model.value_encoder, state)
    torch.testing.assert_close(model.value_encoder.conv1.weight[:, :3], state["conv1.weight"])
    torch.testing.assert_close(model.value_encoder.layer3[1].conv2.weight, state["layer3.1.conv2.weight"])


def test_fold_batchnorm_keeps_outputs() -> None:
    import copy

    from corrvos.models.fuse import fold_batchnorm

    torch.manual_seed(6)
    model = XMem().eval()
    _randomise_batchnorm(model)
    fused = fold_batchnorm(copy.deepcopy(model))
    assert fused.folded_batchnorms == 58
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    frame, masks = torch.randn(1, 3, 64, 64), torch.rand(1, 2, 64, 64)
    hidden = torch.randn(1, 2, 64, 4, 4)
    with torch.inference_mode():
        a, b = model.encode_key(frame), fused.encode_key(frame)
        (va, ha), (vb, hb) = (m.encode_value(frame, a.f16, masks, hidden) for m in (model, fused))
    for x, y in [(a.key, b.key), (a.shrinkage, b.shrinkage), (a.f16, b.f16), (a.f4, b.f4), (va, vb), (ha, hb)]:
        assert torch.allclose(x, y, rtol=1e-4, atol=1e-4 * float(x.abs().max()))


def _randomise_batchnorm(model: torch.nn.Module) -> None:
    """Non-trivial BatchNorm statistics and affine terms, so eval-mode BN is not (nearly) an identity."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.0)
                m.bias.uniform_(-0.2, 0.2)


# ---------------------------------------------------------------- parity with hkchengrex/XMem


@pytest.fixture(scope="module")
def pair() -> tuple[XMem, torch.nn.Module, object]:
    torch.manual_seed(10)
    ours = XMem()
    _randomise_batchnorm(ours)
    official, (memory_util,) = build_official_xmem("model.memory_util")
    official.load_state_dict(ours.state_dict(), strict=True)
    return ours.eval(), official.eval(), memory_util


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a - b).abs().max())


@pytest.mark.skipif(not (REF / "model" / "network.py").is_file(), reason="official XMem code not in .ref/XMem")
@pytest.mark.parametrize("b", [1, 2])
def test_parity_with_official(b: int, pair: tuple[XMem, torch.nn.Module, object]) -> None:
    ours, official, memory_util = pair
    torch.manual_seed(11)
    n, hh, ww, tol = 2, 64, 96, 1e-5
    frames = torch.randn(3, b, 3, hh, ww)
    masks = torch.rand(b, n, hh, ww)
    hidden = torch.randn(b, n, 64, 4, 6)
    selector = torch.tensor([[1.0, 1.0], [1.0, 0.0]])[:b]
    diffs: dict[str, float] = {}
    with torch.no_grad():
        feats = [ours.encode_key(frames[t]) for t in range(3)]
        for t in range(3):
            key, shrinkage, selection, f16, f8, f4 = official.encode_key(frames[t], need_sk=True, need_ek=True)
            ref = {"key": key, "shrinkage": shrinkage, "selection": selection, "f16": f16, "f8": f8, "f4": f4}
            for name, value in ref.items():
                diffs[f"key/{name}"] = max(diffs.get(f"key/{name}", 0.0), _max_diff(getattr(feats[t], name), value))

        values, hiddens = [], []
        for t in range(2):
            for deep in (True, False):
                v, h = ours.encode_value(frames[t], feats[t].f16, masks, hidden, deep_update=deep)
                ov, oh = official.encode_value(frames[t], feats[t].f16, hidden, masks, is_deep_update=deep)
                diffs[f"value/deep={deep}"] = max(diffs.get(f"value/deep={deep}", 0.0), _max_diff(v, ov))
                diffs[f"value_hidden/deep={deep}"] = _max_diff(h, oh)
                assert deep or h is hidden
            values.append(v)
            hiddens.append(h)

        mem_key = torch.stack([f.key for f in feats[:2]], dim=2)  # [B, CK, 2, h, w]
        mem_shrinkage = torch.stack([f.shrinkage for f in feats[:2]], dim=2)  # [B, 1, 2, h, w]
        mem_value = torch.stack(values, dim=3)  # [B, N, CV, 2, h, w]
        q = feats[2]
        r = ours.read_memory(mem_key, mem_value, q.key, mem_shrinkage=mem_shrinkage, query_selection=q.selection)
        ref_r = official.read_memory(q.key, q.selection, mem_key, mem_shrinkage, mem_value)
        diffs["read_memory"] = _max_diff(r, ref_r)
        # inference read: top-k softmax (the official one, memory_util.do_softmax, is not max-subtracted)
        r_top = ours.read_memory(
            mem_key, mem_value, q.key, mem_shrinkage=mem_shrinkage, query_selection=q.selection, top_k=5
        )
        sim = memory_util.get_similarity(mem_key, mem_shrinkage, q.key, q.selection)  # [B, T*h*w, h*w]
        ref_top = memory_util.readout(memory_util.do_softmax(sim, top_k=5), mem_value.flatten(1, 2))
        diffs["read_memory/top_k=5"] = _max_diff(r_top, ref_top.view_as(r_top))

        for h_out in (True, False):
            for sel in (None, selector):
                out = ours.segment(r, q, hidden, selector=sel, update_hidden=h_out)
                oh, ologits, oprob = official.segment(
                    (q.f16, q.f8, q.f4),
                    r,
                    hidden,
                    selector=None if sel is None else sel[:, :, None, None],
                    h_out=h_out,
                    strip_bg=False,
                )
                tag = f"h_out={h_out},selector={sel is not None}"
                diffs[f"segment_logits/{tag}"] = _max_diff(out.logits, ologits)
                diffs[f"segment_prob/{tag}"] = _max_diff(out.prob, oprob)
                if h_out:
                    diffs[f"segment_hidden/{tag}"] = _max_diff(out.hidden, oh)
                else:
                    assert out.hidden is None and oh is None
    print(f"\nXMem parity (B={b}) max abs diffs:", json.dumps(diffs, indent=1))
    bad = {k: v for k, v in diffs.items() if not v <= tol}
    assert not bad, bad


def test_aux_key_head_adds_key_proj2_after_the_official_keys() -> None:
    from corrvos.families import detect_architecture
    from corrvos.models import build_model

    model = build_model("xmem", aux_key_head=True)
    keys = list(model.state_dict())
    assert [k for k, _ in KEYS] == keys[: len(KEYS)]  # the official layout first, unchanged
    assert keys[len(KEYS) :] == ["key_proj2.key_proj.weight", "key_proj2.key_proj.bias"]
    assert detect_architecture(model.state_dict()) == ("xmem", model.init_args())
    assert model.has_aux_key_head and not build_model("xmem").has_aux_key_head
    feats = model.encode_key(torch.randn(2, 3, 32, 48))
    expected = torch.nn.functional.conv2d(
        feats.f16, model.key_proj2.key_proj.weight, model.key_proj2.key_proj.bias, padding=1
    )
    assert feats.key2.shape == (2, 64, 2, 3)
    torch.testing.assert_close(feats.key2, expected)
