"""Learning-rate groups of the official correspondence training (wenguanwang/VOS_Correspondence:model/model.py).

Contents: :func:`parameter_groups` (the split of an STCN's parameters) and :func:`optimizer_groups` (the split as
``torch.optim`` parameter groups with their learning rates, plus extra trainable modules such as a projection
head). The split is by parameter name: ``encoders`` (top-level module names; default the two of STCN and XMem,
``key_encoder`` and ``value_encoder``; each family names its own in the family table) and their ``deep_layers``.
A model that has none of the named encoders is refused, so that a family with other names cannot silently train
its encoders at the full rate:

- "encoder" (early): encoder parameters outside layer2/layer3 (stem, res2/layer1 and the value encoder's
  fuser), official lr x0.2;
- "encoder_deep" (late): encoder layer2 and layer3, official lr x0.4;
- "rest": everything else (key heads, key_comp, decoder, extra modules), lr x1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

__all__ = ["GROUP_NAMES", "optimizer_groups", "parameter_groups"]

GROUP_NAMES = ("encoder", "encoder_deep", "rest")
_ENCODERS = ("key_encoder", "value_encoder")
_DEEP_LAYERS = ("layer2", "layer3")


def parameter_groups(
    model: nn.Module, *, encoders: Sequence[str] = _ENCODERS, deep_layers: Sequence[str] = _DEEP_LAYERS
) -> tuple[list[nn.Parameter], list[nn.Parameter], list[nn.Parameter]]:
    """Split the parameters of ``model`` as the official correspondence training does for its three learning rates.

    Args:
        model: the network.
        encoders: top-level module names of its encoders.
        deep_layers: second-level names inside an encoder that make the "late" group.

    Raises:
        ValueError: ``model`` has no top-level module named in ``encoders``.

    Returns:
        (early, late, rest): encoder parameters outside layer2/layer3 (official lr x0.2), encoder layer2/layer3
        (x0.4), and everything else (x1); every parameter is in exactly one list, in ``named_parameters`` order.
    """
    early: list[nn.Parameter] = []
    late: list[nn.Parameter] = []
    rest: list[nn.Parameter] = []
    names = dict(model.named_children())
    if not any(e in names for e in encoders):
        raise ValueError(
            f"{type(model).__name__} has none of the encoders {list(encoders)} (its modules: {list(names)}); "
            "name its encoders in its family entry (Family.encoders)"
        )
    for name, p in model.named_parameters():
        parts = name.split(".")
        if parts[0] in encoders:
            (late if len(parts) > 1 and parts[1] in deep_layers else early).append(p)
        else:
            rest.append(p)
    return early, late, rest


def optimizer_groups(
    model: nn.Module,
    extra: Sequence[nn.Module] = (),
    *,
    lr: float,
    encoder_scale: float,
    deep_scale: float,
    encoders: Sequence[str] = _ENCODERS,
    deep_layers: Sequence[str] = _DEEP_LAYERS,
    no_decay: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """``torch.optim`` parameter groups of :func:`parameter_groups`, trainable parameters only.

    Args:
        model: the network.
        extra: further modules trained at the full ``lr`` (e.g. the projection head of the correspondence losses).
        lr: base learning rate.
        encoder_scale: lr factor of the "encoder" group (official 0.2).
        deep_scale: lr factor of the "encoder_deep" group (official 0.4).
        encoders, deep_layers: as :func:`parameter_groups`.
        no_decay: name suffixes of parameters trained without weight decay (``Family.no_decay``; Cutie's query
            embeddings, its ``embed_weight_decay`` 0): they leave their group for a group named ``<group>_no_decay``
            with the same lr and ``weight_decay`` 0.

    Returns:
        ``[{"params", "lr", "name"}, ...]`` in the order of :data:`GROUP_NAMES` (each followed by its no-decay
        part, which carries ``"weight_decay": 0.0``); empty groups are dropped.
    """
    early, late, rest = parameter_groups(model, encoders=encoders, deep_layers=deep_layers)
    rest = rest + [p for module in extra for p in module.parameters()]
    exempt = {id(p) for n, p in model.named_parameters() if no_decay and n.endswith(tuple(no_decay))}
    scales = (encoder_scale, deep_scale, 1.0)
    groups = []
    for params, scale, name in zip((early, late, rest), scales, GROUP_NAMES, strict=True):
        trainable = [p for p in params if p.requires_grad and id(p) not in exempt]
        if trainable:
            groups.append({"params": trainable, "lr": lr * scale, "name": name})
        free = [p for p in params if p.requires_grad and id(p) in exempt]
        if free:
            groups.append({"params": free, "lr": lr * scale, "name": f"{name}_no_decay", "weight_decay": 0.0})
    return groups
