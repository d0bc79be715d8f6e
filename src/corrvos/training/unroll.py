"""The clip unroller: the one ``nn.Module`` whose ``forward(batch)`` runs a training clip through a VOS model.

DDP only synchronises gradients of computation that starts in the wrapped module's ``forward``, so instead of the
official ``forward(mode, ...)`` dispatch this module owns the time loop and is the only thing DDP wraps. The
``ProjectionHead`` of L_OCL is applied by the losses, outside ``forward``, so it is not part of this module (DDP
would mark its parameters unused); the trainer all-reduces its gradients itself.

The unroll, written against the ``VOSModel`` contract only (facts from hkchengrex/STCN:model/model.py,
hkchengrex/XMem:model/trainer.py and wenguanwang/VOS_Correspondence:model/model.py, restated for any T >= 2):

- the key encoder runs on all T frames at once;
- frame 0's value is encoded from the ground-truth masks, with the hidden state starting at zeros;
- frame t >= 1 is segmented by reading a memory (full softmax, no top-k) of earlier frames chosen by the
  :class:`UnrollPolicy`: every earlier frame while t <= ``num_ref_frames`` (always, when it is ``None``: STCN),
  else frame 0 plus ``num_ref_frames - 1`` distinct frames drawn at random from 1..t-1 (XMem);
- the decoder updates the hidden state on every frame but the last; unless it is the last frame, the frame's
  *soft predicted* object probabilities (with gradient) are encoded as its value, with a deep update of the hidden
  state with probability ``deep_update_prob`` (XMem: 0.2; frame 0's value always deep-updates; STCN has no hidden
  state and ignores it);
- XMem's shrinkage and selection reach the memory read; for STCN they are ``None`` and change nothing;
- with ``second_view`` (the "official" correspondence losses) the clip is also flipped / zoom-cropped by
  ``corrvos.losses.views.make_second_view``; view-2 frame 0 goes through the key encoder with gradient and
  frames 1..T-1 without, and the ``key_proj2`` keys of both views are returned.

Randomness: the reference-frame choice and the deep-update draws come from ``clip_generator`` and the second view
from ``view_generator``; the task reseeds both every step, so a step is a function of (weights, batch, seed). The
draws of the last forward are kept in ``last_draws`` (for tests, and to replay them in the official code).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from corrvos.models.base import zero_hidden
from corrvos.types import ClipBatch, ClipDraws, ClipOutputs, draw_deep_update

__all__ = ["ClipDraws", "ClipUnroller", "UnrollPolicy", "build_unroller", "draw_memory_frames"]


@dataclass(frozen=True)
class UnrollPolicy:
    """Which earlier frames form the memory of each frame, and how often a value encoding deep-updates.

    Attributes:
        num_ref_frames: memory size once t > num_ref_frames (frame 0 plus random earlier frames); ``None`` = every
            earlier frame (STCN). XMem: 3 (2 in the static stage).
        deep_update_prob: probability that encoding a frame's value also runs the deep update of the hidden state
            (XMem's ``deep_update_prob`` 0.2). 1 and 0 draw nothing.
    """

    num_ref_frames: int | None = None
    deep_update_prob: float = 1.0

    def __post_init__(self) -> None:
        if self.num_ref_frames is not None and self.num_ref_frames < 1:
            raise ValueError(f"num_ref_frames must be >= 1 or None, got {self.num_ref_frames}")
        if not 0.0 <= self.deep_update_prob <= 1.0:
            raise ValueError(f"deep_update_prob must lie in [0, 1], got {self.deep_update_prob}")


def draw_memory_frames(t: int, batch: int, num_ref_frames: int, generator: torch.Generator | None) -> Tensor:
    """Memory frames of frame ``t`` for each clip: 0, then ``num_ref_frames - 1`` distinct frames of 1..t-1.

    Draw order (one ``randperm(t - 1)`` per clip, clips in order) is the official XMem trainer's, so its draws can
    be replayed. Returns [B, num_ref_frames] int64 (CPU).
    """
    rows = []
    for _ in range(batch):
        perm = torch.randperm(t - 1, generator=generator)[: num_ref_frames - 1] + 1  # [k-1] in 1..t-1
        rows.append(torch.cat([torch.zeros(1, dtype=torch.long), perm]))
    return torch.stack(rows)  # [B, k]


class ClipUnroller(nn.Module):
    """Unroll a ``VOSModel`` over training clips (see the module docstring).

    Args:
        model: any ``VOSModel`` (STCN, XMem).
        policy: the memory / deep-update policy (default: every earlier frame, always deep-update).
        second_view: also compute the second view and its ``key_proj2`` keys (needs a model with ``key_proj2``).
    """

    def __init__(self, model: nn.Module, *, policy: UnrollPolicy | None = None, second_view: bool = False) -> None:
        super().__init__()
        self.model = model
        self.policy = policy if policy is not None else UnrollPolicy()
        self.second_view = second_view
        if second_view and not getattr(model, "has_aux_key_head", False):
            raise ValueError(
                "second_view needs a model with the key_proj2 head (an architecture that has it, or aux_key_head)"
            )
        self.view_generator: torch.Generator | None = None
        """RNG of the second view; the task reseeds it every step (explicit randomness, no global RNG)."""
        self.clip_generator: torch.Generator | None = None
        """CPU RNG of the reference-frame choice and the deep-update draws; the task reseeds it every step."""
        self.last_draws = ClipDraws()

    def forward(self, batch: ClipBatch) -> ClipOutputs:
        """Segment frames 1..T-1 of every clip from the ground truth of frame 0.

        Args:
            batch: frames [B, T, 3, H, W], masks [B, T, N, H, W], selector [B, N].

        Returns:
            ClipOutputs with logits [B, T-1, N+1, H, W], keys [B, T, CK, h, w], res4 [B, T, C16, h, w], XMem's
            shrinkage / selection and, when ``second_view``, keys2 [B, T, CK, h, w] plus the second view's keys2
            and affine.
        """
        frames, masks = batch.frames, batch.masks
        b, t = frames.shape[:2]
        model, policy = self.model, self.policy
        draws = ClipDraws()
        feats = model.encode_key(frames.flatten(0, 1))  # fields [B*T, C, h, w]

        def per_frame(x: Tensor | None) -> Tensor | None:
            return None if x is None else x.view(b, t, *x.shape[1:])  # [B*T, ...] -> [B, T, ...]

        keys, f16, f8, f4 = (per_frame(x) for x in (feats.key, feats.f16, feats.f8, feats.f4))
        f16_thin, shrinkage, selection = (per_frame(x) for x in (feats.f16_thin, feats.shrinkage, feats.selection))
        selector = None if model.single_object else batch.selector
        hidden = zero_hidden(model, b, masks.shape[2], *keys.shape[-2:], like=keys)  # [B, N, CH, h, w] or None

        value, hidden = model.encode_value(frames[:, 0], f16[:, 0], masks[:, 0], hidden)  # frame 0: deep update
        values = [value]  # [B, N, CV, h, w] each
        logits = []
        for ti in range(1, t):
            if policy.num_ref_frames is None or ti <= policy.num_ref_frames:
                mem_key = keys[:, :ti].transpose(1, 2)  # [B, CK, ti, h, w]
                mem_value = torch.stack(values, dim=3)  # [B, N, CV, ti, h, w]
                mem_shrink = None if shrinkage is None else shrinkage[:, :ti].transpose(1, 2)  # [B, 1, ti, h, w]
            else:
                idx = draw_memory_frames(ti, b, policy.num_ref_frames, self.clip_generator)  # [B, k]
                draws.memory_frames[ti] = idx
                idx = idx.to(keys.device)
                rows = torch.arange(b, device=keys.device)[:, None]  # [B, 1]
                mem_key = keys[rows, idx].transpose(1, 2)  # [B, k, CK, h, w] -> [B, CK, k, h, w]
                mem_value = torch.stack(values, dim=1)[rows, idx].permute(0, 2, 3, 1, 4, 5)  # [B, N, CV, k, h, w]
                mem_shrink = None if shrinkage is None else shrinkage[rows, idx].transpose(1, 2)  # [B, 1, k, h, w]
            readout16 = model.read_memory(
                mem_key,
                mem_value,
                keys[:, ti],
                mem_shrinkage=mem_shrink,
                query_selection=None if selection is None else selection[:, ti],
            )  # [B, N, CV, h, w]
            query = type(feats)(
                key=keys[:, ti],
                f16=f16[:, ti],
                f8=f8[:, ti],
                f4=f4[:, ti],
                f16_thin=None if f16_thin is None else f16_thin[:, ti],
            )
            last = ti == t - 1
            seg = model.segment(readout16, query, hidden, selector=selector, update_hidden=not last)
            logits.append(seg.logits)  # [B, N+1, H, W]
            if not last:
                hidden = seg.hidden
                draws.deep_updates[ti] = draw_deep_update(self.policy.deep_update_prob, self.clip_generator)
                value, hidden = model.encode_value(
                    frames[:, ti], f16[:, ti], seg.prob[:, 1:], hidden, deep_update=draws.deep_updates[ti]
                )
                values.append(value)
        self.last_draws = draws

        out = ClipOutputs(
            logits=torch.stack(logits, dim=1),  # [B, T-1, N+1, H, W]
            keys=keys,
            res4=f16,
            shrinkage=shrinkage,
            selection=selection,
        )
        if self.second_view:
            # keys2 only when the losses use them: an output that receives no gradient would stall DDP
            out.keys2 = per_frame(feats.key2)  # [B, T, CK, h, w]
            out.view2_keys2, out.view2_theta = self._second_view_keys(frames)
        return out

    def _second_view_keys(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """``key_proj2`` keys [B, T, CK, h, w] of the flipped / zoom-cropped view and its affine [B, 2, 3].

        Frame 0 carries gradient; frames 1..T-1 are computed under ``no_grad`` (the teacher of the release).
        """
        from corrvos.losses.views import make_second_view

        b, t = frames.shape[:2]
        frames2, theta = make_second_view(frames, generator=self.view_generator)  # [B, T, 3, H, W], [B, 2, 3]
        first = self.model.encode_key(frames2[:, 0]).key2  # [B, CK, h, w]
        with torch.no_grad():
            rest = self.model.encode_key(frames2[:, 1:].flatten(0, 1)).key2  # [B*(T-1), CK, h, w]
        rest = rest.view(b, t - 1, *rest.shape[1:])  # [B, T-1, CK, h, w]
        return torch.cat([first.unsqueeze(1), rest], dim=1), theta  # [B, T, CK, h, w]


def build_unroller(model: nn.Module, *, policy: UnrollPolicy | None = None, second_view: bool = False) -> nn.Module:
    """The training unroller around ``model``: its family's own (``Family.unroller``) when it has one, else the
    :class:`ClipUnroller` of the matching models (the policy holds their differences)."""
    from corrvos.families import family_of

    own = family_of(model).unroller if getattr(model, "family", None) is not None else None
    cls = own if own is not None else ClipUnroller
    return cls(model, policy=policy, second_view=second_view)
