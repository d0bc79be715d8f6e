"""Tests of corrvos.models.load_model and corrvos.models.convert: official layouts, containers, widening, refusal."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest
import torch

from corrvos.errors import CheckpointError
from corrvos.families import detect_architecture
from corrvos.families.stcn.network import STCN
from corrvos.families.xmem.network import XMem
from corrvos.models import arch_of, build_model, load_model, load_weights_into
from corrvos.models.convert import widen_single_object

_CALLS: list[str] = []


def _record(msg: str) -> str:
    _CALLS.append(msg)
    return msg


class _CarriesCode:
    """Unpickling this object would call ``_record``: a stand-in for a checkpoint that runs code."""

    def __reduce__(self):
        return (_record, ("code ran",))


@pytest.fixture(scope="module")
def stcn_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = STCN()
    with torch.no_grad():  # non-trivial BN statistics and biases, as in a trained file
        for k, v in model.state_dict().items():
            if v.is_floating_point() and (k.endswith("running_var") or k.endswith("bias")):
                v.uniform_(0.5, 1.5)
    return model.state_dict()


@pytest.fixture(scope="module")
def stcn_file(tmp_path_factory: pytest.TempPathFactory, stcn_state: dict[str, torch.Tensor]) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "stcn.pth"
    torch.save(stcn_state, path)
    return path


def _cheap(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Same keys and shapes, entry i filled with the constant i (stored as a 1-element expanded tensor: tiny files)."""
    return {k: torch.full((), i, dtype=v.dtype).expand(v.shape) for i, (k, v) in enumerate(state.items())}


def _assert_same_weights(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    got = model.state_dict()
    assert list(got) == list(state)
    for k, v in state.items():
        assert torch.equal(got[k], v), k


def test_official_state_dict_round_trip(stcn_file: Path, stcn_state: dict[str, torch.Tensor]) -> None:
    model = load_model(stcn_file)
    assert isinstance(model, STCN) and model.variant == "stcn" and not model.single_object
    assert not model.training
    _assert_same_weights(model, stcn_state)


def test_official_training_checkpoint(tmp_path: Path, stcn_state: dict[str, torch.Tensor]) -> None:
    stcn_state = _cheap(stcn_state)
    sched = {"milestones": collections.Counter([125000]), "gamma": 0.1, "last_epoch": 7}
    ckpt = {"it": 7, "network": stcn_state, "optimizer": {"state": {}, "param_groups": []}, "scheduler": sched}
    torch.save(ckpt, tmp_path / "train.pth")
    _assert_same_weights(load_model(tmp_path / "train.pth"), stcn_state)


def test_corrvos_checkpoint_and_module_prefix(tmp_path: Path, stcn_state: dict[str, torch.Tensor]) -> None:
    stcn_state = _cheap(stcn_state)
    prefixed = {f"module.{k}": v for k, v in stcn_state.items()}
    ckpt = {"format_version": 1, "arch": "stcn", "model": prefixed, "config": {"lr": 1e-5}, "step": 3}
    torch.save(ckpt, tmp_path / "ours.pth")
    _assert_same_weights(load_model(tmp_path / "ours.pth"), stcn_state)
    ckpt["arch"] = "stcn_corr"
    torch.save(ckpt, tmp_path / "wrong_arch.pth")
    with pytest.raises(CheckpointError, match="declares arch 'stcn_corr'"):
        load_model(tmp_path / "wrong_arch.pth")


@pytest.mark.parametrize("aux", [True, False])
def test_corr_variant_with_and_without_key_proj2(tmp_path: Path, aux: bool) -> None:
    torch.manual_seed(1)
    state = _cheap(STCN(variant="corr", aux_key_head=aux).state_dict())
    assert len(state) == (415 if aux else 413)
    torch.save(state, tmp_path / "corr.pth")
    model = load_model(tmp_path / "corr.pth")
    assert model.variant == "corr" and model.has_aux_key_head == aux
    _assert_same_weights(model, state)


def test_stage0_file_widened_with_zeros(tmp_path: Path) -> None:
    torch.manual_seed(2)
    so = STCN(single_object=True).eval()
    torch.save(so.state_dict(), tmp_path / "s0.pth")
    assert detect_architecture(so.state_dict())[1]["single_object"]
    model = load_model(tmp_path / "s0.pth")
    w = model.value_encoder.conv1.weight
    assert w.shape == (64, 5, 7, 7)
    assert torch.equal(w[:, :4], so.value_encoder.conv1.weight) and torch.count_nonzero(w[:, 4]) == 0
    frame, masks = torch.randn(1, 3, 32, 32), torch.rand(1, 2, 32, 32)
    with torch.no_grad():  # the zero channel makes the widened model ignore the others' masks
        f16 = so.encode_key(frame).f16
        torch.testing.assert_close(model.encode_value(frame, f16, masks), so.encode_value(frame, f16, masks))
    kept = load_model(tmp_path / "s0.pth", widen_single_object_file=False)
    assert kept.single_object and kept.value_encoder.conv1.weight.shape == (64, 4, 7, 7)


def test_widen_orthogonal_for_training() -> None:
    state = {"value_encoder.conv1.weight": torch.randn(64, 4, 7, 7)}
    out = widen_single_object(state, init="orthogonal", generator=torch.Generator().manual_seed(0))
    new = out["value_encoder.conv1.weight"][:, 4].reshape(64, 49)  # 64 rows > 49 cols: orthonormal columns
    torch.testing.assert_close(new.T @ new, torch.eye(49), atol=1e-5, rtol=0)
    assert torch.equal(out["value_encoder.conv1.weight"][:, :4], state["value_encoder.conv1.weight"])


def test_pickle_with_code_is_refused(tmp_path: Path, stcn_state: dict[str, torch.Tensor]) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"network": {"key_comp.weight": torch.zeros(1)}, "extra": _CarriesCode()}, path)
    _CALLS.clear()
    with pytest.raises(CheckpointError, match="refused: not a weights-only checkpoint"):
        load_model(path)
    assert _CALLS == []


def test_wrong_keys_are_listed(tmp_path: Path, stcn_state: dict[str, torch.Tensor]) -> None:
    state = _cheap(stcn_state)
    state["decoder.pred.weights"] = state.pop("decoder.pred.weight")
    del state["key_proj.key_proj.bias"]
    state["key_comp.bias"] = torch.zeros(7)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as info:
        load_model(tmp_path / "bad.pth")
    msg = str(info.value)
    assert "bad.pth" in msg
    assert "missing keys (2): key_proj.key_proj.bias, decoder.pred.weight" in msg
    assert "unexpected keys (1): decoder.pred.weights" in msg
    assert "key_comp.bias: file (7,) vs model (512,)" in msg


def test_unknown_and_xmem_files(tmp_path: Path) -> None:
    torch.save({"backbone.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="unknown architecture"):
        load_model(tmp_path / "other.pth")
    xmem = {k: v for k, v in _cheap(XMem().state_dict()).items() if not k.startswith("value_encoder.fuser.")}
    torch.save(xmem, tmp_path / "xmem.pth")  # XMem heads, but a size key is missing
    with pytest.raises(CheckpointError, match="XMem state_dict without"):
        load_model(tmp_path / "xmem.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="no network weights found"):
        load_model(tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "missing.pth")


def test_load_weights_into_widens_orthogonally(tmp_path: Path) -> None:
    state = _cheap(STCN(single_object=True).state_dict())
    torch.save(state, tmp_path / "s0.pth")
    model = STCN()
    missing, unexpected = load_weights_into(model, tmp_path / "s0.pth", generator=torch.Generator().manual_seed(0))
    assert missing == [] and unexpected == []
    w = model.value_encoder.conv1.weight
    assert torch.equal(w[:, :4], state["value_encoder.conv1.weight"])
    extra = w[:, 4].reshape(64, 49)
    torch.testing.assert_close(extra.T @ extra, torch.eye(49), atol=1e-5, rtol=0)


def test_load_weights_into_partial_across_variants(tmp_path: Path) -> None:
    state = _cheap(STCN(single_object=True).state_dict())  # an STCN stage-0 file
    torch.save(state, tmp_path / "s0.pth")
    model = STCN(variant="corr")
    with pytest.raises(CheckpointError, match="missing keys"):
        load_weights_into(model, tmp_path / "s0.pth")
    missing, unexpected = load_weights_into(model, tmp_path / "s0.pth", partial=True)
    assert {k.split(".")[0] + "." + k.split(".")[1] for k in missing} == {"key_proj2.key_proj", "decoder.fuser"}
    assert {k.split(".")[0] for k in unexpected} == {"key_comp", "decoder"}
    assert all(k.startswith("decoder.compress.") for k in unexpected if k.startswith("decoder."))
    got = model.state_dict()
    assert torch.equal(got["decoder.pred.weight"], state["decoder.pred.weight"])
    assert torch.equal(got["key_encoder.layer3.5.bn3.running_var"], state["key_encoder.layer3.5.bn3.running_var"])


# ---------------------------------------------------------------------------------------------------- XMem files


@pytest.mark.parametrize(("kwargs", "entries"), [({}, 412), ({"hidden_dim": 0}, 402)])
def test_official_xmem_file_loads_strictly(tmp_path: Path, kwargs: dict, entries: int) -> None:
    state = _cheap(XMem(**kwargs).state_dict())
    assert len(state) == entries
    torch.save(state, tmp_path / "XMem.pth")
    model = load_model(tmp_path / "XMem.pth")
    assert isinstance(model, XMem) and arch_of(model) == "xmem" and not model.training
    assert model.hidden_dim == kwargs.get("hidden_dim", 64)
    _assert_same_weights(model, state)


def test_xmem_stage0_file_widened_and_wrong_keys_listed(tmp_path: Path) -> None:
    so = _cheap(XMem(single_object=True).state_dict())
    torch.save(so, tmp_path / "XMem-s0.pth")
    model = load_model(tmp_path / "XMem-s0.pth")
    w = model.state_dict()["value_encoder.conv1.weight"]
    assert w.shape == (64, 5, 7, 7) and torch.equal(w[:, :4], so["value_encoder.conv1.weight"])
    assert not w[:, 4].any()  # eval convention: a zero "others" channel
    assert load_model(tmp_path / "XMem-s0.pth", widen_single_object_file=False).single_object
    bad = dict(_cheap(XMem().state_dict()))
    bad["decoder.pred.weights"] = bad.pop("decoder.pred.weight")
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): decoder.pred.weight; unexpected keys \(1\)"):
        load_model(tmp_path / "bad.pth")


def test_corrvos_checkpoint_records_model_args(tmp_path: Path) -> None:
    model = build_model("xmem", hidden_dim=0)
    ckpt = {"format_version": 1, "arch": "xmem", "model_args": model.init_args(), "model": _cheap(model.state_dict())}
    torch.save(ckpt, tmp_path / "c.pth")
    loaded = load_model(tmp_path / "c.pth")
    assert loaded.init_args() == model.init_args()
    ckpt["arch"] = "stcn"
    torch.save(ckpt, tmp_path / "lie.pth")
    with pytest.raises(CheckpointError, match="declares arch 'stcn' but its keys are those of 'xmem'"):
        load_model(tmp_path / "lie.pth")
    ckpt["arch"], ckpt["model_args"] = "xmem", {**model.init_args(), "hidden_dim": 64}
    torch.save(ckpt, tmp_path / "args.pth")
    with pytest.raises(CheckpointError, match="model_args disagree"):
        load_model(tmp_path / "args.pth")


@pytest.mark.parametrize("arch", ["stcn", "stcn_corr", "xmem"])
def test_architecture_table_round_trip(arch: str) -> None:
    model = build_model(arch)
    name, kwargs = detect_architecture(model.state_dict())
    assert name == arch == arch_of(model)
    assert type(model)(**kwargs).init_args() == model.init_args()
