"""corrvos's small model variants (``key_encoder="resnet18"``, ``width`` < 64): build, save / load round trips,
detection from a bare state_dict, key layout, inference, one training step with every parameter trained, ImageNet
loading of a ResNet-18 key encoder, and a two-stage trainer run; the defaults stay the official networks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from corrvos.config import config_from_dict
from corrvos.data.synthetic import generate_dataset
from corrvos.errors import ConfigError
from corrvos.families import detect_architecture
from corrvos.inference import InferenceCore
from corrvos.inference.config import inference_config_for
from corrvos.losses.config import LossConfig
from corrvos.models import arch_of, build_model, load_model
from corrvos.training.checkpoint import load_checkpoint, save_checkpoint
from corrvos.training.model_setup import build_network, build_projection_head
from corrvos.training.task import CorrespondenceTask
from corrvos.training.unroll import ClipUnroller
from corrvos.types import ClipBatch
from test_models import _torchvision_state  # a torchvision-format ResNet state_dict
from test_wiring import _one_thread  # noqa: F401  (autouse: one intra-op thread for this module)

FAMILIES = ("stcn", "xmem")
VARIANTS = (("resnet18", 64), ("resnet18", 32), ("resnet50", 32))
CASES = [(f, k, w) for f in FAMILIES for k, w in VARIANTS]
IDS = [f"{f}-{k}-{w}" for f, k, w in CASES]
F16 = {("resnet18", 64): 256, ("resnet18", 32): 128, ("resnet50", 32): 512}


def _build(family: str, key_encoder: str, width: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(family, key_encoder=key_encoder, width=width)


def _batch(b: int = 2, t: int = 3, n: int = 2, size: int = 64) -> ClipBatch:
    """Two moving boxes per clip; clip 1 has one real object and a padding slot."""
    g = torch.Generator().manual_seed(1)
    labels = torch.zeros(b, t, size, size, dtype=torch.long)
    for bi in range(b):
        for ti in range(t):
            s = 4 * ti + 6 * bi
            labels[bi, ti, 4 + s : 28 + s, 6 + s : 30 + s] = 1
            if bi == 0:
                labels[bi, ti, 36:60, 30 - s : 58 - s] = 2
    masks = torch.stack([(labels == k + 1).float() for k in range(n)], dim=2)  # [B, T, N, H, W]
    selector = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    return ClipBatch(
        frames=torch.randn(b, t, 3, size, size, generator=g), masks=masks, labels=labels, selector=selector
    )


@pytest.mark.parametrize(("family", "key_encoder", "width"), CASES, ids=IDS)
def test_build_save_load_and_detect(tmp_path: Path, family: str, key_encoder: str, width: int) -> None:
    model = _build(family, key_encoder, width)
    args = model.init_args()
    assert args["key_encoder"] == key_encoder and args["width"] == width
    assert model.f16_dim == F16[key_encoder, width] and model.value_dim == 8 * width and model.key_dim == 64
    assert model.hidden_dim == (width if family == "xmem" else 0)
    state = model.state_dict()
    assert detect_architecture(state) == (family, args)
    torch.save(state, tmp_path / "bare.pth")
    payload = {"arch": arch_of(model), "model_args": args, "model": state}
    save_checkpoint(tmp_path / "ckpt.pth", payload)
    for name in ("bare.pth", "ckpt.pth"):
        loaded = load_model(tmp_path / name)
        assert type(loaded) is type(model) and loaded.init_args() == args, name
        got = loaded.state_dict()
        assert list(got) == list(state) and all(torch.equal(got[k], v) for k, v in state.items()), name


def test_old_checkpoints_without_the_new_args_still_load(tmp_path: Path) -> None:
    model = build_model("xmem", hidden_dim=0)
    old = {k: v for k, v in model.init_args().items() if k not in ("key_encoder", "width")}
    save_checkpoint(tmp_path / "old.pth", {"arch": "xmem", "model_args": old, "model": model.state_dict()})
    assert load_model(tmp_path / "old.pth").init_args() == model.init_args()


def _names(model: torch.nn.Module, inside: bool) -> list[str]:
    return [k for k in model.state_dict() if k.startswith("key_encoder.") == inside]


@pytest.mark.parametrize("family", FAMILIES)
def test_key_listing_follows_the_default(family: str) -> None:
    default = build_model(family)
    assert len(default.state_dict()) == {"stcn": 405, "xmem": 412}[family]
    assert sum(p.numel() for p in default.parameters()) == {"stcn": 54_434_180, "xmem": 62_185_224}[family]
    narrow = build_model(family, width=32)  # same names, order and ndim; every width-scaled shape differs
    assert list(narrow.state_dict()) == list(default.state_dict())
    assert narrow.state_dict()["key_encoder.conv1.weight"].shape == (32, 3, 7, 7)
    r18 = build_model(family, key_encoder="resnet18")
    # outside the key encoder: the default's names in the default's order (shapes differ where f16 enters)
    assert _names(r18, inside=False) == _names(default, inside=False)
    # the key encoder: torchvision's ResNet-18 layer1..3 (layer1 named res2), in torchvision's order
    tv = [k for k in _torchvision_state(18, torch.Generator().manual_seed(0)) if not k.startswith(("fc.", "layer4."))]
    expected = ["key_encoder." + ("res2." + k[7:] if k.startswith("layer1.") else k) for k in tv]
    assert [k for k in _names(r18, inside=True) if not k.endswith("num_batches_tracked")] == expected
    assert r18.state_dict()["decoder.up_8_4.skip_conv.weight"].shape[1] == 64  # f4 of a ResNet-18: 64 channels


@pytest.mark.parametrize(("family", "key_encoder", "width"), CASES, ids=IDS)
def test_inference_core_step(family: str, key_encoder: str, width: int) -> None:
    model = _build(family, key_encoder, width).eval()
    core = InferenceCore(model, inference_config_for(model, internal_size=None))
    g = torch.Generator().manual_seed(2)
    mask = torch.zeros(64, 64, dtype=torch.long)
    mask[8:30, 8:30], mask[36:60, 20:50] = 1, 2
    with torch.inference_mode():
        for t in range(3):
            prob = core.step(torch.rand(3, 64, 64, generator=g), mask if t == 0 else None, end=t == 2)
            assert prob.shape == (3, 64, 64) and torch.isfinite(prob).all()
            torch.testing.assert_close(prob.sum(0), torch.ones(64, 64), atol=1e-5, rtol=0)


@pytest.mark.parametrize(("family", "key_encoder", "width"), CASES, ids=IDS)
def test_training_step_reaches_every_parameter(family: str, key_encoder: str, width: int) -> None:
    cfg = config_from_dict({"model": {"arch": family, "key_encoder": key_encoder, "width": width}})
    model = build_network(cfg, single_object=False).train()
    ramps = {f"{k}_ramp_{e}": 0 for k in ("pcl", "ocl") for e in ("start", "end")}  # full weights at step 0
    loss_cfg = LossConfig(mode="paper", pcl_grid_stride=1, ocl_roi_size=3, **ramps)
    head = build_projection_head(cfg, loss_cfg)
    assert head.in_dim == model.f16_dim == F16[key_encoder, width]
    out = CorrespondenceTask(ClipUnroller(model), loss_cfg, proj_head=head).step(_batch(), step=0, seed=0)
    assert set(out["terms"]) == {"seg", "pcl", "ocl"} and torch.isfinite(out["loss"])
    out["loss"].backward()
    named = [*model.named_parameters(), *(("proj_head." + k, p) for k, p in head.named_parameters())]
    dead = [k for k, p in named if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead, f"parameters without gradient: {dead}"


def test_imagenet_resnet18_key_encoder(tmp_path: Path) -> None:
    r18 = _torchvision_state(18, torch.Generator().manual_seed(3))
    torch.save(r18, tmp_path / "resnet18-f37072fd.pth")  # no ResNet-50 file: a ResNet-18 key encoder needs none
    model = build_model("stcn", key_encoder="resnet18", pretrained_backbones=str(tmp_path))
    torch.testing.assert_close(model.key_encoder.res2[1].conv2.weight, r18["layer1.1.conv2.weight"])
    torch.testing.assert_close(
        model.key_encoder.layer3[0].downsample[1].running_var, r18["layer3.0.downsample.1.running_var"]
    )
    torch.testing.assert_close(model.value_encoder.layer3[1].conv1.weight, r18["layer3.1.conv1.weight"])
    with pytest.raises(ConfigError, match="need width 64"):
        build_model("xmem", key_encoder="resnet18", width=32, pretrained_backbones=str(tmp_path))
    with pytest.raises(ValueError, match="positive multiple of 8"):
        build_model("stcn", width=12)
    with pytest.raises(ValueError, match="unknown key encoder"):
        build_model("xmem", key_encoder="resnet34")


def test_init_weights_and_preflight_check_the_variant(tmp_path: Path) -> None:
    from corrvos.training.model_setup import load_init_weights
    from corrvos.training.preflight import imagenet_weights_problem

    cfg = config_from_dict({"model": {"arch": "stcn", "key_encoder": "resnet18", "width": 16}})
    torch.save(build_model("stcn", key_encoder="resnet18", width=8).state_dict(), tmp_path / "w8.pth")
    with pytest.raises(ConfigError, match=r"holds a network with width 8 but model\.width is 16"):
        load_init_weights(cfg, build_network(cfg, single_object=False), tmp_path / "w8.pth")
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "resnet18-f37072fd.pth")
    assert imagenet_weights_problem(str(tmp_path), archs=("resnet18",)) is None  # a ResNet-18 key encoder
    assert "resnet50" in imagenet_weights_problem(str(tmp_path))


def test_trainer_widens_and_checkpoints_a_small_variant(tmp_path: Path) -> None:
    from corrvos.training.trainer import Trainer

    root = generate_dataset(tmp_path / "davis", sequences=2, frames=4, size=(64, 64), seed=3)
    data = {"crop_size": 64, "datasets": [{"kind": "davis", "root": str(root)}], "max_skip_values": [2]}
    data["max_skip_fractions"] = []
    stage = {"iterations": 1, "batch_size": 2, "lr": 1e-4, "lr_milestones": [], "data": data}
    ramps = {f"{k}_ramp_{e}": 0 for k in ("pcl", "ocl") for e in ("start", "end")}
    cfg = config_from_dict(
        {
            "model": {"arch": "stcn", "key_encoder": "resnet18", "width": 16},
            "loss": {"mode": "paper", "pcl_grid_stride": 1, "ocl_roi_size": 3, **ramps},
            "stages": [{"name": "static", "single_object": True, **stage}, {"name": "main", **stage}],
            **{"num_workers": 0, "image_interval": 0, "device": "cpu", "amp": "off"},
        }
    )
    assert Trainer(cfg, out_dir=tmp_path / "run", progress=False).run().finished
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "step_0000002.pth")
    assert ckpt["model_args"]["key_encoder"] == "resnet18" and ckpt["model_args"]["width"] == 16
    assert ckpt["extra"]["proj_head"]["conv1.weight"].shape[1] == 64  # f16 of a ResNet-18 at width 16
    model = load_model(tmp_path / "run" / "checkpoints" / "main_final.pth")
    assert not model.single_object and model.init_args() == {**ckpt["model_args"]}
    assert all(torch.equal(model.state_dict()[k], v) for k, v in ckpt["model"].items())
