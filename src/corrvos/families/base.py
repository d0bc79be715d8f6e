"""The contract of a model family: what one entry of the family table (:mod:`corrvos.families`) provides.

A *family* (STCN, XMem, ...) owns everything about its models that the engines must not know: the network
classes and their architectures (``Architecture``: build defaults and checkpoint detection), the inference memory
and its official options, the augmentation recipe, max-skip curriculum and loss options of its official training,
its part of the demo / CPU recipes, its learning-rate groups and its official weight files. The engines
(``InferenceCore``, the clip unroller, the trainer, the CLI, the demo) ask the table; they never name a family.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from corrvos.families.card import FamilyCard

__all__ = ["Architecture", "Family"]


def _no_detection(state: Mapping[str, Tensor]) -> dict[str, Any] | None:
    return None


def _no_recipe(raw: dict[str, Any], steps: int) -> None:
    return None


@dataclass(frozen=True)
class Architecture:
    """One network layout a family builds, loads and detects (e.g. STCN's public and correspondence layouts).

    Attributes:
        name: canonical name ("stcn", "stcn_corr", "xmem"), recorded in corrvos checkpoints as ``arch``.
        model_class: the ``nn.Module`` class; ``model_class(**kwargs)`` builds the network.
        defaults: constructor arguments of a fresh ``build_model(name)``.
        detect: state_dict -> constructor arguments, or ``None`` when the keys are not this architecture's.
        summary: one line for help texts.
        aux_key_head: whether the layout carries the ``key_proj2`` head of the release's losses by default.
        aliases: other accepted spellings of ``name`` (lower case).
    """

    name: str
    model_class: type[nn.Module]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    detect: Callable[[Mapping[str, Tensor]], dict[str, Any] | None] = _no_detection
    summary: str = ""
    aux_key_head: bool = False
    aliases: tuple[str, ...] = ()

    def build(self, **kwargs: Any) -> nn.Module:
        """A fresh network with ``defaults`` updated by ``kwargs``."""
        return self.model_class(**{**self.defaults, **kwargs})


@dataclass(frozen=True)
class Family:
    """One model family.

    Attributes:
        card: the torch-free facts (:class:`~corrvos.families.card.FamilyCard`): name, title, inference and
            driver defaults, checkpoint markers and sources (also reachable as attributes of the entry).
        architectures: the layouts it builds and detects (the first is the family's default).
        memory: the inference memory class (``cls(config, video_length=...)``, the
            :class:`~corrvos.inference.memory_store.MemoryStore` protocol).
        recurrence: the per-frame recurrence class (``cls(model, config, memory)``; ``None``: the matching
            models' :class:`~corrvos.inference.recurrence.MatchingRecurrence`).
        augment: dataset group ("video", "bl30k", "static") -> preset builder ``(crop_size) -> ClipAugmentConfig``
            of its official training.
        curricula: dataset group ("video", "bl30k") -> its official max-skip curriculum (``SkipCurriculum``).
        loss_defaults: ``LossConfig`` overrides of its official L_SEG (e.g. a Dice term).
        recipe: edits a demo-recipe config dict (``corrvos.demo.recipes``) for ``steps`` steps: its batch,
            clip sampling and loss settings.
        cpu_recipe: the same for the CPU recipe, applied after the shared CPU changes.
        encoders: top-level module names trained at the encoder learning-rate scales (the rest at x1).
        encoder_deep_layers: second-level names inside ``encoders`` that get the "deep" scale.
        no_decay: parameter-name suffixes trained without weight decay (e.g. learned query embeddings).
        tiny_args: constructor arguments of the family's smallest network (quick checks, the contract tests).
        trainable: corrvos can train it (``False``: inference only; the configuration check refuses it).
        unroller: the training clip unroller class (``cls(model, policy=UnrollPolicy, second_view=bool)``, an
            ``nn.Module`` with ``forward(ClipBatch) -> ClipOutputs``, ``clip_generator``, ``view_generator`` and
            ``last_draws``); ``None``: the matching models' :class:`~corrvos.training.unroll.ClipUnroller`.
        others_channel_keys: state_dict weights whose input channels gain the "others" mask channel when a
            single-object (stage-0) network becomes multi-object, the first being the 4-channel RGB + mask
            convolution (``corrvos.models.convert.widen_single_object``).
        segmentation_loss: the family's own L_SEG, ``fn(logits, aux_logits, labels, selector, cfg, generator) ->
            dict[str, Tensor]`` of weighted parts whose sum is L_SEG (see ``corrvos.losses.objective``); ``None``:
            the shared bootstrapped CE (+ Dice) of :mod:`corrvos.losses.segmentation`.
    """

    card: FamilyCard
    architectures: tuple[Architecture, ...]
    memory: type
    recurrence: type | None = None
    augment: Mapping[str, Callable[[int], Any]] = field(default_factory=dict)
    curricula: Mapping[str, Any] = field(default_factory=dict)
    loss_defaults: Mapping[str, Any] = field(default_factory=dict)
    recipe: Callable[[dict[str, Any], int], None] = _no_recipe
    cpu_recipe: Callable[[dict[str, Any], int], None] = _no_recipe
    encoders: tuple[str, ...] = ("key_encoder", "value_encoder")
    encoder_deep_layers: tuple[str, ...] = ("layer2", "layer3")
    no_decay: tuple[str, ...] = ()
    tiny_args: Mapping[str, Any] = field(default_factory=dict)
    trainable: bool = True
    unroller: type | None = None
    others_channel_keys: tuple[str, ...] = ("value_encoder.conv1.weight",)
    segmentation_loss: Callable[..., dict[str, Tensor]] | None = None

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def title(self) -> str:
        return self.card.title

    @property
    def inference_defaults(self) -> Mapping[str, Any]:
        return self.card.inference_defaults

    @property
    def driver_defaults(self) -> Mapping[str, Any]:
        return self.card.driver_defaults

    @property
    def checkpoint_markers(self) -> str:
        return self.card.checkpoint_markers

    @property
    def default_arch(self) -> str:
        return self.architectures[0].name
