"""The Cutie network (``corrvos.families.cutie``): its state_dict layout and every stage against the official code.

Without ``.ref/Cutie`` only the layout numbers are checked (527 / 359 entries and the parameter counts measured on
the official network, docs/models.md); with it, the key names, order and shapes equal the official network's, and
each stage equals the official one on the same weights and inputs.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from corrvos.families.cutie.network import Cutie
from official_cutie import build_official_cutie, have_official_cutie
from test_wiring import _one_thread  # noqa: F401  (autouse: one intra-op thread for this module)

SIZES = {"base": "resnet50", "small": "resnet18"}
needs_ref = pytest.mark.skipif(not have_official_cutie(), reason="needs .ref/Cutie and omegaconf")
pytestmark = pytest.mark.filterwarnings("ignore:`torch.cuda.amp.autocast:FutureWarning")


@pytest.mark.parametrize(("size", "entries", "params"), [("base", 527, 35_024_186), ("small", 359, 28_747_578)])
def test_layout_numbers(size: str, entries: int, params: int) -> None:
    model = Cutie(key_encoder=SIZES[size])
    assert len(model.state_dict()) == entries
    assert sum(p.numel() for p in model.parameters()) == params
    single = Cutie(key_encoder=SIZES[size], single_object=True).state_dict()
    assert (
        single["mask_encoder.conv1.weight"].shape[1] == 4
        and single["pixel_fuser.sensory_compress.weight"].shape[1] == 257
    )


@needs_ref
@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("single_object", [False, True])
def test_state_dict_equals_the_official_layout(size: str, single_object: bool) -> None:
    ours = Cutie(key_encoder=SIZES[size], single_object=single_object).state_dict()
    official = build_official_cutie(size, single_object=single_object).state_dict()
    assert list(ours) == list(official)
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in official.items()}
    torch.testing.assert_close(
        ours["object_transformer.spatial_pe.inv_freq"], official["object_transformer.spatial_pe.inv_freq"]
    )


def _pair(size: str) -> tuple[Cutie, torch.nn.Module]:
    torch.manual_seed(0)
    ours = Cutie(key_encoder=SIZES[size]).eval()
    with torch.no_grad():  # non-trivial BN statistics, so that a wrong normalisation shows
        for name, buf in ours.named_buffers():
            if name.endswith("running_mean"):
                buf.normal_(0, 0.1)
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 1.5)
    official = build_official_cutie(size).eval()
    official.load_state_dict(ours.state_dict(), strict=True)
    return ours, official


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-5)


@needs_ref
@pytest.mark.parametrize("size", list(SIZES))
def test_every_stage_equals_the_official_network(size: str) -> None:
    ours, official = _pair(size)
    g = torch.Generator().manual_seed(1)
    b, n, hh, ww = 1, 3, 96, 128
    frame = torch.rand(b, 3, hh, ww, generator=g)
    normalised = (frame - official.pixel_mean) / official.pixel_std
    masks = torch.rand(b, n, hh, ww, generator=g).softmax(dim=1)
    with torch.no_grad():
        feats = ours.encode_key(normalised)
        ms, pix = official.encode_image(frame)
        for got, want in zip((feats.f16, feats.f8, feats.f4, feats.pix_feat), (*ms, pix), strict=True):
            _close(got, want)
        key, shrink, sel = official.transform_key(ms[0])
        _close(feats.key, key), _close(feats.shrinkage, shrink), _close(feats.selection, sel)

        sensory = torch.randn(b, n, 256, hh // 16, ww // 16, generator=g) * 0.5
        value, new_sensory, summaries = ours.encode_value(normalised, feats.pix_feat, masks, sensory)
        v_off, s_off, sum_off, _ = official.encode_mask(frame, pix, sensory, masks, deep_update=True)
        _close(value, v_off), _close(new_sensory, s_off), _close(summaries, sum_off)

        readout = torch.randn(b, n, 256, hh // 16, ww // 16, generator=g)
        fused = ours.fuse_pixel(feats.pix_feat, readout, sensory, masks)
        fused_off = official.pixel_fusion(pix, readout, sensory, masks)
        _close(fused, fused_off)
        obj_memory = summaries.unsqueeze(2)  # [B, N, T=1, Q, C+1]
        refined, aux = ours.read_objects(fused, obj_memory)
        refined_off, aux_off = official.readout_query(fused_off, obj_memory)
        _close(refined, refined_off)
        for got, want in zip(aux, aux_off["logits"], strict=True):
            _close(got, want)

        seg = ours.segment(refined, feats, sensory, update_hidden=True)
        s_off, logits_off, prob_off = official.segment(ms, refined_off, sensory, update_sensory=True)
        _close(seg.hidden, s_off), _close(seg.logits, logits_off), _close(seg.prob, prob_off)
        assert seg.prob.shape == (b, n + 1, hh, ww)
        _close(ours.sensory_logits(feats.pix_feat, sensory), official.aux_computer.sensory_aux(pix, sensory))


def test_pixel_readout_is_the_anisotropic_l2_softmax_readout() -> None:
    ours = Cutie(key_encoder="resnet18").eval()
    g = torch.Generator().manual_seed(2)
    mk, qk = torch.randn(1, 64, 2, 6, 8, generator=g), torch.randn(1, 64, 6, 8, generator=g)
    ms, qe = torch.rand(1, 1, 2, 6, 8, generator=g) + 1, torch.rand(1, 64, 6, 8, generator=g)
    mv = torch.randn(1, 3, 256, 2, 6, 8, generator=g)
    got = ours.read_memory(mk, mv, qk, mem_shrinkage=ms, query_selection=qe)  # [1, 3, 256, 6, 8]
    # the official training read: softmax over the memory of the anisotropic L2 similarity, then the readout
    sim = (-mk.flatten(2).transpose(1, 2).pow(2) @ qe.flatten(2)) + 2 * (
        mk.flatten(2).transpose(1, 2) @ (qk * qe).flatten(2)
    )
    sim = (sim - (qe * qk.pow(2)).flatten(2).sum(1, keepdim=True)) * ms.flatten(1).unsqueeze(2) / 8.0
    affinity = F.softmax(sim, dim=1)  # [1, T*h*w, h*w]
    want = torch.bmm(mv.flatten(1, 2).flatten(2), affinity).view(1, 3, 256, 6, 8)
    _close(got, want)
