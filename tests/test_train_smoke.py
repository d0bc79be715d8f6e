"""Smoke tests of the trainer on the synthetic set (CPU, 64 x 64 crops, batch 2, two steps per run).

Every loss mode trains (finite loss, weights change, the checkpoint is a loadable model file, TensorBoard holds
every term); a single-object stage widens into a multi-object one; non-finite losses are skipped and stop the run;
the parameter groups follow the release.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from corrvos.config import config_from_dict
from corrvos.data.synthetic import generate_dataset
from corrvos.errors import ConfigError
from corrvos.models.params import optimizer_groups
from corrvos.training.checkpoint import load_checkpoint
from corrvos.training.trainer import Trainer, TrainingDivergedError


@pytest.fixture(autouse=True)
def _drop_checkpoints(tmp_path: Path):
    """Checkpoints are ~0.9 GB each (STCN + AdamW state); do not leave them in pytest's kept temp folders."""
    yield
    for path in [*tmp_path.rglob("*.pth"), *tmp_path.rglob("*.pt")]:
        path.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("synth") / "davis", sequences=4, frames=5, size=(64, 64), seed=3)


@pytest.fixture(scope="module")
def long_synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Videos long enough for XMem's 8-frame clips."""
    return generate_dataset(tmp_path_factory.mktemp("synth8") / "davis", sequences=3, frames=9, size=(64, 64), seed=4)


def tiny_config(
    root: Path,
    *,
    arch: str = "stcn",
    mode: str = "none",
    iterations: int = 2,
    stages: list[dict] | None = None,
    model: dict | None = None,
    data: dict | None = None,
    **top,
) -> dict:
    stage = {
        "name": "main",
        "iterations": iterations,
        "batch_size": 2,
        "lr": 1e-4,
        "lr_milestones": [1],
        "data": {
            "crop_size": 64,
            "datasets": [{"kind": "davis", "root": str(root)}],
            "max_skip_values": [2],
            "max_skip_fractions": [],
            **(data or {}),
        },
    }
    return {
        "model": {"arch": arch, **(model or {})},
        "loss": {
            "mode": mode,
            "pcl_ramp_start": 0,
            "ocl_ramp_start": 0,
            "official_ramp_start": 0,
            "pcl_ramp_end": 1,
            "ocl_ramp_end": 1,
            "official_ramp_end": 1,
        },
        "stages": stages or [stage],
        "num_workers": 0,
        "log_interval": 1,
        "image_interval": 1,
        "save_interval": 100,
        "device": "cpu",
        "amp": "off",
        **top,
    }


def read_scalars(run: Path) -> dict[str, list[float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tb"))
    acc.Reload()
    return {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}, acc.Tags()["images"]


XMEM_CLIPS = {
    "num_frames": 4,
    "num_ref_frames": 2,
    "max_objects": 3,
    "augment": "xmem",
    "sampling": "window",
    "crop_size": 32,
}


@pytest.mark.parametrize(
    ("arch", "mode", "terms", "extra"),
    [
        ("stcn", "none", ["seg"], {}),
        ("stcn", "paper", ["seg", "pcl", "ocl"], {}),
        ("stcn_corr", "official", ["seg", "temp", "cross_key"], {}),
        ("xmem", "none", ["seg"], {"data": XMEM_CLIPS}),
        ("xmem", "paper", ["seg", "pcl", "ocl"], {"data": XMEM_CLIPS}),
        ("xmem", "official", ["seg", "temp", "cross_key"], {"data": XMEM_CLIPS, "model": {"aux_key_head": True}}),
    ],
)
def test_two_steps_per_mode(synthetic_root: Path, tmp_path: Path, arch: str, mode: str, terms: list[str], extra):
    cfg = config_from_dict(tiny_config(synthetic_root, arch=arch, mode=mode, **extra))
    trainer = Trainer(cfg, out_dir=tmp_path, progress=False)
    trainer.model = trainer._build_model(single_object=False)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    result = trainer.run()
    assert result.finished and result.global_step == 2
    after = trainer.model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert "key_proj.key_proj.weight" in changed and any(k.startswith("decoder.") for k in changed)
    if mode == "official":
        assert "key_proj2.key_proj.weight" in changed  # the auxiliary head is trained by temp + cross_key
    if mode == "paper" and arch == "xmem":  # L_PCL uses XMem's similarity: shrinkage and selection heads train
        assert {"key_proj.d_proj.weight", "key_proj.e_proj.weight"} <= set(changed)
    # checkpoints: resumable step file and stage-final weights, both loadable by corrvos.models.load_model
    from corrvos.models import load_model

    ckpt = load_checkpoint(tmp_path / "checkpoints" / "step_0000002.pth")
    assert ckpt["step"] == 2 and ckpt["stage"] == "main" and ckpt["arch"] == arch
    assert ("proj_head" in ckpt["extra"]) == (mode == "paper")
    model = load_model(tmp_path / "checkpoints" / "main_final.pth")
    assert all(torch.equal(model.state_dict()[k], after[k]) for k in after)
    scalars, images = read_scalars(tmp_path)
    for name in [
        "train/loss",
        "train/iou",
        "train/grad_norm",
        "train/lr/rest",
        "train/lr/encoder",
        *[f"train/terms/{t}" for t in terms],
    ]:
        assert name in scalars and len(scalars[name]) == 2, name
        assert all(torch.isfinite(torch.tensor(scalars[name])))
    assert scalars["train/lr/rest"] == pytest.approx([1e-4, 1e-5])  # the lr each step trained with: milestone 1
    assert images  # the clip panel


def test_single_object_stage_widens_into_multi_object(synthetic_root: Path, tmp_path: Path):
    data = {
        "crop_size": 64,
        "datasets": [{"kind": "davis", "root": str(synthetic_root)}],
        "max_skip_values": [2],
        "max_skip_fractions": [],
    }
    stages = [
        {
            "name": "static",
            "iterations": 1,
            "batch_size": 2,
            "lr": 1e-4,
            "lr_milestones": [],
            "single_object": True,
            "data": data,
        },
        {"name": "main", "iterations": 1, "batch_size": 2, "lr": 1e-4, "lr_milestones": [], "data": data},
    ]
    cfg = config_from_dict(tiny_config(synthetic_root, stages=stages))
    trainer = Trainer(cfg, out_dir=tmp_path, progress=False)
    assert trainer.run().finished
    static_final = load_checkpoint(tmp_path / "checkpoints" / "step_0000001.pth")
    assert static_final["single_object"] and static_final["stage"] == "static"
    single_w = static_final["model"]["value_encoder.conv1.weight"]  # [64, 4, 7, 7]
    assert single_w.shape[1] == 4
    main_final = load_checkpoint(tmp_path / "checkpoints" / "step_0000002.pth")
    assert not main_final["single_object"] and main_final["stage"] == "main"
    widened = main_final["model"]["value_encoder.conv1.weight"]  # [64, 5, 7, 7] after one more step
    assert widened.shape[1] == 5 and widened[:, 4].abs().sum() > 0  # the new "others" channel is not zero


def test_nonfinite_loss_skips_the_step_then_stops(
    synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from corrvos.training import task as task_module

    original = task_module.CorrespondenceTask.step

    def nan_step(self, batch, *, step, seed):
        out = original(self, batch, step=step, seed=seed)
        out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(task_module.CorrespondenceTask, "step", nan_step)
    cfg = config_from_dict(tiny_config(synthetic_root, iterations=3, optim={"max_nonfinite": 3}))
    trainer = Trainer(cfg, out_dir=tmp_path, progress=False)
    trainer.model = trainer._build_model(single_object=False)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    with pytest.raises(TrainingDivergedError, match="3 non-finite losses in a row"):
        trainer.run()
    assert all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())  # nothing applied


def test_parameter_groups_follow_the_release():
    from corrvos.models import build_model

    model = build_model("stcn_corr")
    head = torch.nn.Linear(2, 2)
    groups = optimizer_groups(model, [head], lr=1.0, encoder_scale=0.2, deep_scale=0.4)
    assert [(g["name"], g["lr"]) for g in groups] == [("encoder", 0.2), ("encoder_deep", 0.4), ("rest", 1.0)]
    ids = [{id(p) for p in g["params"]} for g in groups]
    names = {id(p): n for n, p in model.named_parameters()}
    assert sum(len(i) for i in ids) == len(names) + 2  # every parameter exactly once (+ the head's 2)
    assert all(
        n.startswith(("key_encoder.", "value_encoder.")) and ".layer2." not in n and ".layer3." not in n
        for n in (names[i] for i in ids[0])
    )
    assert any(".fuser." in names[i] for i in ids[0])  # the value encoder's fuser sits in the 0.2x group
    assert all(".layer2." in names[i] or ".layer3." in names[i] for i in ids[1])
    rest = {names[i] for i in ids[2] if i in names}
    assert any(n.startswith("key_proj2.") for n in rest) and any(n.startswith("decoder.") for n in rest)
    assert {id(p) for p in head.parameters()} <= ids[2]
    model.key_encoder.conv1.weight.requires_grad_(False)  # frozen parameters are left out of the optimiser
    frozen = optimizer_groups(model, [head], lr=1.0, encoder_scale=0.2, deep_scale=0.4)
    assert sum(len(g["params"]) for g in frozen) == sum(len(i) for i in ids) - 1


def test_init_from_an_official_state_dict(synthetic_root: Path, tmp_path: Path):
    """Fine-tuning start: an official-format VOS_Correspondence state_dict without key_proj2 (the released
    evaluation layout) loads strictly; key_proj2 keeps its fresh initialisation."""
    from corrvos.families.stcn.network import STCN

    torch.manual_seed(123)
    released = STCN(variant="corr", aux_key_head=False)
    path = tmp_path / "released.pth"
    torch.save(released.state_dict(), path)
    cfg = config_from_dict(tiny_config(synthetic_root, arch="stcn_corr", mode="official"))
    trainer = Trainer(cfg, out_dir=tmp_path / "run", init_from=path, progress=False)
    result = trainer.run(max_steps=0)
    assert not result.finished and result.global_step == 0
    state = trainer.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in released.state_dict().items())
    assert "key_proj2.key_proj.weight" in state
    wrong = config_from_dict(tiny_config(synthetic_root, arch="stcn"))
    with pytest.raises(ConfigError, match=r"holds a 'stcn_corr' network but model.arch is 'stcn'"):
        Trainer(wrong, out_dir=tmp_path / "run2", init_from=path, progress=False).run(max_steps=0)


SHIPPED = [
    "stcn",
    "stcn_s012",
    "stcn_corr_paper",
    "stcn_corr_official",
    "synthetic_demo",
    "unlabeled_synthetic_demo",
    "stcn_cpu",
]
SHIPPED_XMEM = ["xmem", "xmem_s012", "xmem_corr_paper", "xmem_synthetic_demo", "xmem_cpu"]
SHIPPED_CUTIE = ["cutie_s0", "cutie_main"]  # trained two steps each in tests/test_cutie_train_configs.py


def test_every_shipped_config_is_tested():
    repo = Path(__file__).resolve().parents[1]
    configs = sorted(p.stem for p in (repo / "configs").glob("*.yaml"))
    assert configs == sorted(SHIPPED + SHIPPED_XMEM + SHIPPED_CUTIE)


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED + SHIPPED_XMEM)
def test_every_shipped_config_trains_on_synthetic_data(
    synthetic_root: Path, long_synthetic_root: Path, tmp_path: Path, name: str
):
    """Each shipped recipe, all its stages (static -> [BL30K] -> main), on the synthetic videos: one step per stage
    (STCN), two per stage for XMem (32 x 32 crops, the recipe's 8-frame clips), whose stages with a fine-tune phase
    run one step of each phase."""
    import shutil

    import yaml

    from corrvos.config import config_to_dict, load_config

    repo = Path(__file__).resolve().parents[1]
    data = config_to_dict(load_config(repo / "configs" / f"{name}.yaml"))
    data.update(num_workers=0, device="cpu", amp="off", log_interval=1, image_interval=0, out_dir=str(tmp_path))
    data["keep_checkpoints"] = 3  # the CPU recipes keep none (only <stage>_final.pth); the step file is read below
    data["model"]["pretrained_backbones"] = False
    xmem = name in SHIPPED_XMEM
    steps = 2 if xmem else 1
    for stage in data["stages"]:
        stage.update(iterations=steps, batch_size=2, lr_milestones=[])
        stage["data"].update(
            crop_size=32 if xmem else 64,
            datasets=[{"kind": "davis", "root": str(long_synthetic_root if xmem else synthetic_root)}],
            max_skip_values=[2],
            max_skip_fractions=[],
            finetune_iterations=min(stage["data"]["finetune_iterations"], 1),
        )
        if stage["data"]["unlabeled_share"]:  # keep the recipe's unlabeled videos (a few, generated)
            unlabeled = {"kind": "unlabeled", "sequences": 3, "frames": 6, "size": [64, 64]}
            stage["data"]["datasets"].append(unlabeled)
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    from corrvos.cli import main as cli_main

    assert cli_main(["train", "--config", str(config), "--no-progress"]) == 0
    final = load_checkpoint(tmp_path / "checkpoints" / f"step_{steps * len(data['stages']):07d}.pth")
    assert final["stage"] == data["stages"][-1]["name"] and not final["single_object"]
    shutil.rmtree(tmp_path / "checkpoints")  # about 0.9 GB per stage


def test_fine_tune_official_xmem_weights_is_one_option_away(long_synthetic_root: Path, tmp_path: Path, capsys):
    """``--init-from XMem.pth --stages main`` on the shipped s03 recipe starts the main stage from an official-format
    XMem file; without ``--stages`` the single-object static stage refuses it, naming the fix."""
    from corrvos.cli import main as cli_main
    from corrvos.models import build_model

    torch.manual_seed(7)
    official = build_model("xmem").state_dict()  # official XMem.pth layout: a plain state_dict, 412 keys
    path = tmp_path / "XMem.pth"
    torch.save(official, path)
    repo = Path(__file__).resolve().parents[1]
    common = [
        "train",
        "--config",
        str(repo / "configs" / "xmem.yaml"),
        "--init-from",
        str(path),
        "--device",
        "cpu",
        "--no-progress",
        "--set",
        "model.pretrained_backbones=false",
        "--set",
        "amp=off",
        "--set",
        "num_workers=0",
        "--set",
        "stages.main.batch_size=2",
        "--set",
        "stages.main.iterations=1",
        "--set",
        "stages.main.lr_milestones=[]",
        "--set",
        "stages.main.data.finetune_iterations=0",
        "--set",
        "stages.main.data.crop_size=32",
        "--set",
        f"stages.main.data.datasets=[{{kind: davis, root: {long_synthetic_root}}}]",
    ]
    assert cli_main([*common, "--out", str(tmp_path / "refused"), "--max-steps", "1"]) == 2
    assert "--stages main" in capsys.readouterr().err
    assert cli_main([*common, "--out", str(tmp_path / "run"), "--stages", "main"]) == 0
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "step_0000001.pth")
    assert ckpt["stage"] == "main" and ckpt["arch"] == "xmem" and not ckpt["single_object"]
    for key in ("key_proj.key_proj.weight", "decoder.hidden_update.transform.weight"):  # one lr-1e-5 step away
        assert (ckpt["model"][key] - official[key]).abs().max() < 1e-3
