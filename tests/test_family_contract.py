"""The contract every model family keeps, checked for every entry of the family table (``corrvos.families``): a new
family gets these tests by adding its line to the table.

Per architecture (a small variant, so that the loop stays fast): build, save / load round trips (bare state_dict
and corrvos checkpoint), detection of its own state_dict, one ``InferenceCore`` step, one training step whose
gradients reach every parameter and head, and a two-step trainer run of the family's CPU recipe that changes the
weights. Per family: the entry is consistent (card, names, inference options, memory, presets, encoders, weights).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from corrvos.config import config_from_dict
from corrvos.data.synthetic import generate_dataset
from corrvos.data.transforms import ClipAugmentConfig
from corrvos.families import (
    NAMES,
    architectures,
    canonical_arch,
    cards,
    detect_architecture,
    families,
    family_of,
    family_of_arch,
)
from corrvos.inference import InferenceCore
from corrvos.inference.config import InferenceConfig, inference_config_for
from corrvos.losses.config import LossConfig
from corrvos.models import arch_of, build_model, load_model
from corrvos.models.params import parameter_groups
from corrvos.training.checkpoint import save_checkpoint
from corrvos.training.model_setup import build_network, build_projection_head
from corrvos.training.task import CorrespondenceTask
from corrvos.training.trainer import Trainer
from corrvos.training.unroll import ClipUnroller
from test_model_variants import _batch
from test_wiring import _one_thread  # noqa: F401  (autouse: one intra-op thread for this module)

ARCHS = list(architectures())
TRAINABLE = [a for a in ARCHS if family_of_arch(a).trainable]
TRAINABLE_FAMILIES = [n for n in NAMES if families()[n].trainable]


def _small(arch: str, **kwargs: object) -> torch.nn.Module:
    """The family's smallest network (``Family.tiny_args``)."""
    torch.manual_seed(0)
    return build_model(arch, **family_of_arch(arch).tiny_args, **kwargs)


# ------------------------------------------------------------------------------------------ the table


@pytest.mark.parametrize("name", NAMES)
def test_family_entry_is_consistent(name: str) -> None:
    entry = families()[name]
    assert entry.card is cards()[name] and entry.name == name and entry.default_arch == name
    assert set(entry.inference_defaults) <= set(InferenceConfig.field_names())
    InferenceConfig(**entry.inference_defaults)  # valid values
    for method in ("add", "read"):
        assert callable(getattr(entry.memory, method))
    assert hasattr(entry.memory, "reads_change_state") and hasattr(entry.memory, "num_elements")
    if entry.trainable:  # the presets of its official training
        assert set(entry.augment) == {"video", "bl30k", "static"}
        assert all(isinstance(preset(32), ClipAugmentConfig) for preset in entry.augment.values())
    for arch in entry.architectures:
        assert family_of_arch(arch.name) is entry
        assert all(canonical_arch(alias) == arch.name for alias in arch.aliases)


def test_architecture_names_are_unique_across_families() -> None:
    names = [a.name for f in families().values() for a in f.architectures]
    aliases = [alias for f in families().values() for a in f.architectures for alias in a.aliases]
    assert len(set(names)) == len(names) and not set(names) & set(aliases) and len(set(aliases)) == len(aliases)


def test_every_family_contributes_its_weight_files() -> None:
    from corrvos.weights import WEIGHTS

    for name in NAMES:
        files = __import__(f"corrvos.families.{name}.weights", fromlist=["FILES"]).FILES
        assert files and all(WEIGHTS[w.name] is w and w.name == w.name.lower() for w in files)


# ------------------------------------------------------------------------------------------ per architecture


@pytest.mark.parametrize("arch", ARCHS)
def test_build_save_load_and_detect(arch: str, tmp_path: Path) -> None:
    model = _small(arch)
    assert arch_of(model) == arch and family_of(model) is family_of_arch(arch)
    state = model.state_dict()
    name, kwargs = detect_architecture(state)
    assert name == arch and kwargs == {k: v for k, v in model.init_args().items() if k in kwargs}
    assert list(_small(arch).state_dict()) == list(state)  # the listing is a function of the arguments
    torch.save(state, tmp_path / "bare.pth")
    save_checkpoint(tmp_path / "ckpt.pth", {"arch": arch, "model_args": model.init_args(), "model": state})
    for file in ("bare.pth", "ckpt.pth"):
        loaded = load_model(tmp_path / file)
        got = loaded.state_dict()
        assert type(loaded) is type(model) and loaded.init_args() == model.init_args(), file
        assert list(got) == list(state) and all(torch.equal(got[k], v) for k, v in state.items()), file


@pytest.mark.parametrize("arch", ARCHS)
def test_one_inference_step(arch: str) -> None:
    model = _small(arch).eval()
    core = InferenceCore(model, inference_config_for(model, internal_size=None))
    assert type(core.memory) is family_of(model).memory
    mask = torch.zeros(48, 64, dtype=torch.long)
    mask[4:20, 4:24], mask[26:44, 30:60] = 1, 2
    g = torch.Generator().manual_seed(3)
    for t in range(3):
        prob = core.step(torch.rand(3, 48, 64, generator=g), mask if t == 0 else None, end=t == 2)
        assert prob.shape == (3, 48, 64) and torch.isfinite(prob).all()
        torch.testing.assert_close(prob.sum(0), torch.ones(48, 64), atol=1e-5, rtol=0)
    assert core.prob_to_mask(prob).unique().tolist() == sorted(core.prob_to_mask(prob).unique().tolist())


@pytest.mark.parametrize("arch", TRAINABLE)
def test_one_training_step_reaches_every_parameter_and_head(arch: str) -> None:
    if family_of_arch(arch).unroller is not None:  # a family with its own unroll and L_SEG (Cutie)
        return _own_unroll_reaches_every_parameter(arch)
    tiny = dict(family_of_arch(arch).tiny_args)
    cfg = config_from_dict({"model": {"arch": arch, **tiny, "aux_key_head": True}})
    model = _small(arch, aux_key_head=True).train()
    ramps = {f"{k}_ramp_{e}": 0 for k in ("pcl", "ocl", "official") for e in ("start", "end")}
    named = []
    for mode in ("paper", "official"):  # paper: key_proj + projection head; official: the key_proj2 head too
        loss_cfg = LossConfig(mode=mode, pcl_grid_stride=1, ocl_roi_size=3, **ramps)
        head = build_projection_head(cfg, loss_cfg) if mode == "paper" else None
        unroller = ClipUnroller(model, second_view=mode == "official")
        out = CorrespondenceTask(unroller, loss_cfg, proj_head=head).step(_batch(), step=0, seed=0)
        assert torch.isfinite(out["loss"])
        out["loss"].backward()
        if head is not None:
            named += [("proj_head." + k, p) for k, p in head.named_parameters()]
    named += list(model.named_parameters())
    dead = [k for k, p in named if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead, f"parameters without gradient: {dead}"
    entry = family_of(model)
    early, late, rest = parameter_groups(model, encoders=entry.encoders, deep_layers=entry.encoder_deep_layers)
    assert early and late and rest  # the family's encoders are found by name


def _own_unroll_reaches_every_parameter(arch: str) -> None:
    """The family's unroller (through ``build_unroller``) and its own L_SEG (``Family.segmentation_loss``): one
    step gives every parameter a gradient (the auxiliary heads included)."""
    from corrvos.training.unroll import UnrollPolicy, build_unroller

    entry = family_of_arch(arch)
    model = _small(arch).train()
    unroller = build_unroller(model, policy=UnrollPolicy(num_ref_frames=2, deep_update_prob=0.5))
    assert type(unroller) is entry.unroller
    task = CorrespondenceTask(unroller, LossConfig(mode="none", seg_points=64), segmentation=entry.segmentation_loss)
    out = task.step(_batch(), step=0, seed=0)
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    dead = [k for k, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead, f"parameters without gradient: {dead}"


def test_a_family_without_training_is_refused_by_the_configuration_check(monkeypatch: pytest.MonkeyPatch) -> None:
    from corrvos.errors import ConfigError

    name = NAMES[-1]  # every family of the table trains: mark one inference-only for the check
    monkeypatch.setitem(families(), name, dataclasses.replace(families()[name], trainable=False))
    with pytest.raises(ConfigError, match="runs inference only"):
        config_from_dict({"model": {"arch": name}}, source="infer-only.yaml")


@pytest.mark.parametrize("name", TRAINABLE_FAMILIES)
def test_the_cpu_recipe_trains_every_family(name: str, tmp_path: Path) -> None:
    from corrvos.demo.recipes import cpu_train_config

    root = generate_dataset(tmp_path / "data", sequences=3, frames=8, size=(48, 64), seed=2)
    cfg = cpu_train_config(name, "paper", data_root=root, out_dir=tmp_path / "run", steps=2, seed=1)
    width = families()[name].tiny_args.get("width", cfg.model.width)  # 16, or the only width of a family
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, width=width), keep_checkpoints=0)
    before = build_network(cfg, single_object=False).state_dict()  # the trainer's seeded initial weights
    result = Trainer(cfg, progress=False).run()
    assert result.finished and result.step == 2
    trained = load_model(result.out_dir / "checkpoints" / "main_final.pth")
    assert arch_of(trained) == name
    after = trained.state_dict()
    assert list(after) == list(before)
    changed = [k for k in before if after[k].is_floating_point() and not torch.equal(before[k], after[k])]
    assert len(changed) > len(before) // 2


def test_a_file_with_another_familys_modules_is_not_mistaken_for_one_of_the_table() -> None:
    """A Cutie-like file carries XMem's key heads (``key_proj.d_proj`` / ``e_proj``) next to modules XMem lacks
    (``pixel_encoder``, ``object_transformer``): no entry claims it, and the error names the table's markers."""
    from corrvos.errors import CheckpointError

    state = dict(_small("xmem").state_dict())
    state["object_transformer.query_init.weight"] = torch.zeros(16, 256)
    state["pixel_encoder.conv1.weight"] = torch.zeros(64, 3, 7, 7)
    with pytest.raises(CheckpointError, match="unknown architecture: no entry of the family table") as info:
        detect_architecture(state, path="cutie-like.pth")
    assert "cutie-like.pth" in str(info.value) and all(
        c.checkpoint_markers in str(info.value) for c in cards().values()
    )
    stcn_state = dict(_small("stcn").state_dict()) | {"object_transformer.query_init.weight": torch.zeros(1)}
    with pytest.raises(CheckpointError, match="unknown architecture"):
        detect_architecture(stcn_state)
