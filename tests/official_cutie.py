"""Test helper: hkchengrex/Cutie's own network, imported from the git-ignored ``.ref/Cutie`` checkout.

The checkout (``git archive`` of the official repository's ``cutie/`` folder) is never committed; tests that need it
skip when it or ``omegaconf`` (the official configs are OmegaConf objects) is absent. The official ResNet
constructors' ImageNet download is patched out (random init; the tests copy weights across).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
import torch

from official_common import official_import_scope

REF = Path(__file__).resolve().parents[1] / ".ref" / "Cutie"
OFFICIAL_PACKAGES = ("cutie",)


def have_official_cutie() -> bool:
    return (REF / "cutie" / "model" / "cutie.py").is_file() and importlib.util.find_spec("omegaconf") is not None


def official_model_config(size: str) -> Any:
    """The official model config ("base" or "small"; small is base with a ResNet-18 pixel encoder)."""
    from omegaconf import OmegaConf

    folder = REF / "cutie" / "config" / "model"
    model = OmegaConf.load(folder / "base.yaml")
    if size == "small":
        small = OmegaConf.load(folder / "small.yaml")
        small.pop("defaults", None)
        model = OmegaConf.merge(model, small)
    return OmegaConf.create({"model": model})


def build_official_cutie(size: str, *, single_object: bool = False) -> torch.nn.Module:
    """The official ``CUTIE`` network (random init) of ``size`` ("base" / "small")."""
    with official_import_scope(REF, OFFICIAL_PACKAGES), pytest.MonkeyPatch.context() as mp:
        resnet = importlib.import_module("cutie.model.utils.resnet")
        mp.setattr(resnet, "load_weights_add_extra_dim", lambda *args, **kwargs: None)
        mp.setattr(resnet.model_zoo, "load_url", lambda *args, **kwargs: {})
        cutie = importlib.import_module("cutie.model.cutie")
        return cutie.CUTIE(official_model_config(size), single_object=single_object)


def official_eval_config(size: str, **changes: Any) -> Any:
    """The official evaluation options (``cutie/config/eval_config.yaml``'s engine values) with ``changes``, plus
    the model config of ``size``."""
    from omegaconf import OmegaConf

    cfg = {
        "mem_every": 5,
        "stagger_updates": 5,
        "chunk_size": -1,
        "save_aux": False,
        "max_internal_size": -1,
        "flip_aug": False,
        "top_k": 30,
        "use_long_term": False,
        "max_mem_frames": 5,
        "long_term": {
            "count_usage": True,
            "max_mem_frames": 10,
            "min_mem_frames": 5,
            "num_prototypes": 128,
            "max_num_tokens": 10000,
            "buffer_tokens": 2000,
        },
    } | changes
    return OmegaConf.merge(official_model_config(size), OmegaConf.create(cfg))


def official_inference_core(network: torch.nn.Module, cfg: Any) -> Any:
    """hkchengrex/Cutie's ``InferenceCore`` on ``network`` (built by :func:`build_official_cutie`)."""
    with official_import_scope(REF, OFFICIAL_PACKAGES):
        core = importlib.import_module("cutie.inference.inference_core")
        return core.InferenceCore(network, cfg)


def official_training_modules(size: str, stage: dict[str, Any]) -> tuple[torch.nn.Module, Any]:
    """hkchengrex/Cutie's ``CutieTrainWrapper`` (random init) and ``LossComputer`` for a stage config ``stage``
    (``num_objects``, ``seq_length``, ``num_ref_frames``, ``deep_update_prob``, ``amp``, ``point_supervision``,
    ``train_num_points``, ``oversample_ratio``, ``importance_sample_ratio``). Needs ``einops`` (the official train
    wrapper imports it)."""
    from omegaconf import OmegaConf

    cfg = official_model_config(size)
    stage_cfg = OmegaConf.create(stage)
    with official_import_scope(REF, OFFICIAL_PACKAGES), pytest.MonkeyPatch.context() as mp:
        resnet = importlib.import_module("cutie.model.utils.resnet")
        mp.setattr(resnet, "load_weights_add_extra_dim", lambda *args, **kwargs: None)
        mp.setattr(resnet.model_zoo, "load_url", lambda *args, **kwargs: {})
        wrapper = importlib.import_module("cutie.model.train_wrapper")
        losses = importlib.import_module("cutie.model.losses")
        return wrapper.CutieTrainWrapper(cfg, stage_cfg), losses.LossComputer(cfg, stage_cfg)
