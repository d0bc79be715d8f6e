"""The shipped Cutie training configs run through ``corrvos train`` on the CPU (tiny: the small pixel encoder, 32 x 32
crops, batch 2, two steps on a synthetic set), and train what the official trainer trains."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from corrvos.data.synthetic import generate_dataset
from corrvos.families.cutie.family import cutie_segmentation_loss
from corrvos.training.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Videos long enough for 8-frame clips."""
    return generate_dataset(tmp_path_factory.mktemp("synth") / "davis", sequences=3, frames=9, size=(48, 48), seed=4)


@pytest.mark.parametrize(
    ("config", "stage", "single"), [("cutie_s0.yaml", "static", True), ("cutie_main.yaml", "main", False)]
)
def test_two_steps_of_each_shipped_config(config: str, stage: str, single: bool, synthetic_root: Path, tmp_path: Path):
    from corrvos.cli import main as cli_main

    out = tmp_path / "run"
    sets = {
        "model.pretrained_backbones": "false",
        "model.key_encoder": "resnet18",
        "amp": "off",
        "num_workers": "0",
        "log_interval": "1",
        "loss.seg_points": "64",
        f"stages.{stage}.batch_size": "2",
        f"stages.{stage}.iterations": "2",
        f"stages.{stage}.lr_milestones": "[]",
        f"stages.{stage}.data.crop_size": "32",
        f"stages.{stage}.data.datasets": f"[{{kind: davis, root: {synthetic_root}}}]",
    }
    args = ["train", "--config", str(REPO / "configs" / config), "--device", "cpu", "--no-progress", "--out", str(out)]
    for key, value in sets.items():
        args += ["--set", f"{key}={value}"]
    assert cli_main(args) == 0
    ckpt = load_checkpoint(out / "checkpoints" / "step_0000002.pth")
    assert ckpt["arch"] == "cutie" and ckpt["stage"] == stage and ckpt["single_object"] is single
    # the optimiser's groups (official get_parameter_groups): the pixel encoder at 0.1 x lr, the rest (mask encoder
    # included) at lr, the query embeddings at lr without weight decay: the official suffix match ("query_init.weight",
    # "query_emb.weight") also takes the summary_to_query_init / _emb linear weights, 4 tensors in all
    groups = {g["name"]: g for g in ckpt["optimizer"]["param_groups"]}
    assert set(groups) == {"encoder", "encoder_deep", "rest", "rest_no_decay"}
    assert groups["encoder"]["lr"] == groups["encoder_deep"]["lr"] == pytest.approx(1e-5)
    assert groups["rest"]["lr"] == groups["rest_no_decay"]["lr"] == pytest.approx(1e-4)
    assert groups["rest"]["weight_decay"] == 1e-3 and groups["rest_no_decay"]["weight_decay"] == 0.0
    assert len(groups["rest_no_decay"]["params"]) == 4
    assert groups["rest"]["eps"] == (1e-6 if stage == "main" else 1e-8)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for part in ("ce", "dice", "aux_sensory_ce", "aux_sensory_dice", "aux_query_ce_l0", "aux_query_dice_l3"):
        assert any(tag.endswith(f"stats/seg_{part}") for tag in tags), part
    for path in out.rglob("*.pth"):
        path.unlink()


def test_segmentation_hook_takes_the_objects_from_the_selector_and_the_points_from_the_config() -> None:
    """The family hook counts each clip's objects from its selector (a wrong count changes the loss) and reads the
    point settings of the LossConfig."""
    from corrvos.families.cutie.losses import PointLossConfig, segmentation_terms
    from corrvos.losses.config import LossConfig

    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 4, 16, 16, generator=gen)
    aux = torch.randn(2, 3, 5, 4, 4, 4, generator=gen)
    labels = torch.randint(0, 2, (2, 3, 16, 16), generator=gen)
    labels[0, :, :4] = 2
    selector = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    cfg = LossConfig(mode="none", seg_points=32, seg_point_importance=0.5, seg_aux_query_weight=0.5)
    got = cutie_segmentation_loss(logits, aux, labels, selector, cfg, torch.Generator().manual_seed(1))
    points = PointLossConfig(num_points=32, importance_sample_ratio=0.5, query_weight=0.5)
    expected = segmentation_terms(logits, aux, labels, [2, 1], points, torch.Generator().manual_seed(1))
    assert got.keys() == expected.keys()
    for name in got:
        assert torch.equal(got[name], expected[name]), name
    wrong = segmentation_terms(logits, aux, labels, [2, 2], points, torch.Generator().manual_seed(1))
    assert not torch.equal(wrong["ce"], got["ce"])


def test_static_stage_widens_into_the_main_stage(synthetic_root: Path, tmp_path: Path) -> None:
    """cutie_s0's single-object stage followed by cutie_main's stage in one run: the mask encoder's conv1 and the
    pixel fuser's sensory compression gain the "others" channel (orthogonal init), the rest carries over."""
    import yaml

    from corrvos.config import config_from_dict
    from corrvos.training.trainer import Trainer

    s0 = yaml.safe_load((REPO / "configs" / "cutie_s0.yaml").read_text(encoding="utf-8"))
    main = yaml.safe_load((REPO / "configs" / "cutie_main.yaml").read_text(encoding="utf-8"))
    stages = [s0["stages"][0], main["stages"][0]]
    for stage in stages:
        stage.update(batch_size=2, iterations=1, lr_milestones=[])
        stage["data"].update(crop_size=32, datasets=[{"kind": "davis", "root": str(synthetic_root)}])
    raw = {**main, "stages": stages, "out_dir": str(tmp_path / "run"), "device": "cpu", "amp": "off"}
    raw.update(num_workers=0, keep_checkpoints=0)
    raw["model"].update(pretrained_backbones=False, key_encoder="resnet18")
    raw["loss"]["seg_points"] = 64
    trainer = Trainer(config_from_dict(raw), progress=False)
    single = {}

    def keep(trainer, record) -> None:
        if record.stage == "static":
            single.update({k: v.clone() for k, v in trainer.model.state_dict().items()})

    trainer.callbacks.append(keep)
    assert trainer.run().finished
    final = torch.load(tmp_path / "run" / "checkpoints" / "main_final.pth", weights_only=True)
    assert not final["single_object"] and single
    assert (
        single["mask_encoder.conv1.weight"].shape[1] == 4 and final["model"]["mask_encoder.conv1.weight"].shape[1] == 5
    )
    compress = "pixel_fuser.sensory_compress.weight"
    assert final["model"][compress].shape[1] == single[compress].shape[1] + 1 == 258
    for path in (tmp_path / "run").rglob("*.pth"):
        path.unlink()


@pytest.mark.skipif(not __import__("official_cutie").have_official_cutie(), reason="official Cutie checkout absent")
def test_widening_matches_the_official_load_weights() -> None:
    """Our widening with Cutie's keys equals the official ``CUTIE.load_weights`` on a single-object state_dict, with
    the same random stream for the orthogonal slices."""
    from corrvos.families import family
    from corrvos.families.cutie.network import Cutie
    from corrvos.models.convert import widen_single_object
    from official_cutie import build_official_cutie

    torch.manual_seed(0)
    single = Cutie(key_encoder="resnet18", single_object=True).state_dict()
    keys = family("cutie").others_channel_keys
    ours = widen_single_object(single, init="orthogonal", generator=torch.Generator().manual_seed(3), keys=keys)
    net = build_official_cutie("small")
    torch.manual_seed(3)
    net.load_weights({k: v.clone() for k, v in single.items()})
    theirs = net.state_dict()
    for key in keys:
        assert torch.equal(ours[key], theirs[key]), key
    assert torch.equal(ours["key_proj.key_proj.weight"], theirs["key_proj.key_proj.weight"])


def test_shipped_cutie_recipes_hold_the_official_numbers() -> None:
    """cutie/config/train_config.yaml (pre_training, main_training), data/base.yaml, model/base.yaml."""
    from corrvos.config import load_config, stage_loss_config

    s0, main = load_config(REPO / "configs" / "cutie_s0.yaml"), load_config(REPO / "configs" / "cutie_main.yaml")
    for cfg in (s0, main):
        assert cfg.model.arch == "cutie" and cfg.model.deep_update_prob == 0.2
        optim = cfg.optim
        assert (optim.optimizer, optim.weight_decay, optim.grad_clip, optim.freeze_bn) == ("adamw", 1e-3, 3.0, True)
        assert (optim.encoder_lr_scale, optim.encoder_deep_lr_scale) == (0.1, 0.1)
        loss = stage_loss_config(cfg, cfg.stages[0])
        assert loss.mode == "none" and (loss.seg_point_oversample, loss.seg_point_importance) == (3.0, 0.75)
        assert (loss.seg_aux_sensory_weight, loss.seg_aux_query_weight) == (0.01, 0.01)
    static = s0.stages[0]
    assert (static.iterations, static.batch_size, static.lr, static.lr_milestones) == (80_000, 16, 1e-4, [])
    assert static.single_object and (static.data.num_frames, static.data.num_ref_frames) == (3, 2)
    assert (static.data.crop_size, static.data.max_objects) == (384, 1) and s0.loss.seg_points == 8192
    stage = main.stages[0]
    assert (stage.iterations, stage.batch_size, stage.lr) == (125_000, 16, 1e-4)
    assert stage.lr_milestones == [100_000, 115_000] and main.optim.gamma == 0.1
    assert (stage.data.num_frames, stage.data.num_ref_frames, stage.data.max_objects) == (8, 3, 3)
    assert stage.data.crop_size == 480 and main.loss.seg_points == 12544
    assert stage.data.max_skip_values == [5, 10, 15, 5] and stage.data.max_skip_fractions == [0.1, 0.3, 0.8]


@pytest.mark.skipif(not __import__("official_cutie").have_official_cutie(), reason="official Cutie checkout absent")
def test_parameter_groups_match_the_official_ones() -> None:
    """Our groups (Family.encoders at the encoder scales, Family.no_decay) hold the same parameters as the official
    get_parameter_groups' backbone / embedding / other groups, with the same learning rates and weight decays."""
    import importlib

    from omegaconf import OmegaConf

    from corrvos.families import family
    from corrvos.families.cutie.network import Cutie
    from corrvos.models.params import optimizer_groups
    from official_common import official_import_scope
    from official_cutie import OFFICIAL_PACKAGES, REF, build_official_cutie

    net = build_official_cutie("small")
    stage = OmegaConf.create({"weight_decay": 1e-3, "embed_weight_decay": 0.0, "backbone_lr_ratio": 0.1})
    stage.learning_rate = 1e-4
    with official_import_scope(REF, OFFICIAL_PACKAGES):
        groups_mod = importlib.import_module("cutie.model.utils.parameter_groups")
        theirs = groups_mod.get_parameter_groups(net, stage)
    names = {id(p): n for n, p in net.named_parameters()}
    official = [({names[id(p)] for p in g["params"]}, g["lr"], g["weight_decay"]) for g in theirs]
    entry = family("cutie")
    model = Cutie(key_encoder="resnet18")
    ours_names = {id(p): n for n, p in model.named_parameters()}
    ours = optimizer_groups(
        model, lr=1e-4, encoder_scale=0.1, deep_scale=0.1, encoders=entry.encoders, no_decay=entry.no_decay
    )
    by_name = {g["name"]: ({ours_names[id(p)] for p in g["params"]}, g.get("weight_decay", 1e-3)) for g in ours}
    lrs = {g["name"]: g["lr"] for g in ours}
    backbone = by_name["encoder"][0] | by_name["encoder_deep"][0]
    assert official[0] == (backbone, pytest.approx(lrs["encoder"]), 1e-3) and lrs["encoder_deep"] == lrs["encoder"]
    assert official[1] == (by_name["rest_no_decay"][0], lrs["rest_no_decay"], by_name["rest_no_decay"][1])
    assert official[2] == (by_name["rest"][0], lrs["rest"], by_name["rest"][1])


def test_imagenet_weights_fill_the_pixel_encoder_and_the_mask_encoder_trunk(tmp_path: Path) -> None:
    """``pretrained_backbones`` on Cutie (its encoders named by ``imagenet_encoders()``): the ResNet-18 file fills
    the small pixel encoder and the mask encoder's trunk, whose two mask channels get an orthogonal slice."""
    from corrvos.models import build_model
    from test_model_variants import _torchvision_state

    r18 = _torchvision_state(18, torch.Generator().manual_seed(3))
    torch.save(r18, tmp_path / "resnet18-f37072fd.pth")
    model = build_model("cutie", key_encoder="resnet18", pretrained_backbones=str(tmp_path))
    torch.testing.assert_close(model.pixel_encoder.res2[1].conv2.weight, r18["layer1.1.conv2.weight"])
    torch.testing.assert_close(model.mask_encoder.layer3[1].conv1.weight, r18["layer3.1.conv1.weight"])
    conv1 = model.mask_encoder.conv1.weight  # [64, 5, 7, 7]: RGB from the file, then the two mask channels
    torch.testing.assert_close(conv1[:, :3], r18["conv1.weight"])
    assert conv1[:, 3:].abs().sum() > 0
