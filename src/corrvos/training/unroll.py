"""The clip unroller: the one ``nn.Module`` whose ``forward(batch)`` runs a training clip through a VOS model.

DDP only synchronises gradients of computation that starts in the wrapped module's ``forward``, so instead of the
official ``forward(mode, ...)`` dispatch this module owns the time loop and is the only thing DDP wraps. The
``ProjectionHead`` of L_OCL is applied by the losses, outside ``forward``, so it is not part of this module (DDP
would mark its parameters unused); the trainer all-reduces its gradients itself.

STCN training unroll (facts from hkchengrex/STCN:model/model.py and wenguanwang/VOS_Correspondence:model/model.py,
restated for T >= 2 frames):

- the key encoder runs on all T frames at once;
- frame 0's value is encoded from the ground-truth masks; frame t >= 1 is segmented by reading the memory of
  frames 0..t-1 (full softmax, no top-k) and, unless it is the last frame, its *soft predicted* object
  probabilities (with gradient) are encoded as its value;
- with ``second_view`` (the "official" correspondence losses) the clip is also flipped / zoom-cropped by
  ``corrvos.losses.views.make_second_view``; view-2 frame 0 goes through the key encoder with gradient and
  frames 1..T-1 without, and the ``key_proj2`` keys of both views are returned.

The loop is written against the ``VOSModel`` contract only: the hidden (sensory) state is threaded through the clip
(zeros at the start, decoder updates on every frame but the last, the value encoder's deep update when a value is
encoded) and XMem's shrinkage / selection reach the memory read; for STCN these are ``None`` and change nothing.
XMem's own clip policy (8 frames, reference-frame choice, random deep updates) is a later addition to this class.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from corrvos.models.base import zero_hidden
from corrvos.types import ClipBatch, ClipOutputs

__all__ = ["UNROLLERS", "ClipUnroller", "build_unroller"]


class ClipUnroller(nn.Module):
    """Unroll STCN over a training clip.

    Args:
        model: an ``corrvos.models.stcn.STCN`` (any module with encode_key / encode_value / read_memory / segment).
        second_view: also compute the second view and its ``key_proj2`` keys (needs a model with ``key_proj2``).
    """

    def __init__(self, model: nn.Module, *, second_view: bool = False) -> None:
        super().__init__()
        self.model = model
        self.second_view = second_view
        if second_view and not getattr(model, "has_aux_key_head", False):
            raise ValueError("second_view needs a model with the key_proj2 head (arch 'stcn_corr')")
        self.view_generator: torch.Generator | None = None
        """RNG of the second view; the task reseeds it every step (explicit randomness, no global RNG)."""

    def forward(self, batch: ClipBatch) -> ClipOutputs:
        """Segment frames 1..T-1 of every clip from the ground truth of frame 0.

        Args:
            batch: frames [B, T, 3, H, W], masks [B, T, N, H, W], selector [B, N].

        Returns:
            ClipOutputs with logits [B, T-1, N+1, H, W], keys [B, T, CK, h, w], res4 [B, T, 1024, h, w] and, when
            ``second_view``, keys2 [B, T, CK, h, w] plus the second view's keys2 and affine.
        """
        frames, masks = batch.frames, batch.masks
        b, t = frames.shape[:2]
        model = self.model
        feats = model.encode_key(frames.flatten(0, 1))  # fields [B*T, C, h, w]

        def per_frame(x: Tensor | None) -> Tensor | None:
            return None if x is None else x.view(b, t, *x.shape[1:])  # [B*T, ...] -> [B, T, ...]

        keys, f16, f8, f4 = (per_frame(x) for x in (feats.key, feats.f16, feats.f8, feats.f4))
        f16_thin, shrinkage, selection = (per_frame(x) for x in (feats.f16_thin, feats.shrinkage, feats.selection))
        selector = None if model.single_object else batch.selector
        hidden = zero_hidden(model, b, masks.shape[2], *keys.shape[-2:], like=keys)  # [B, N, CH, h, w] or None

        value, hidden = model.encode_value(frames[:, 0], f16[:, 0], masks[:, 0], hidden)
        values = [value]  # [B, N, CV, h, w] each
        logits = []
        for ti in range(1, t):
            readout16 = model.read_memory(
                keys[:, :ti].transpose(1, 2),  # [B, CK, ti, h, w]
                torch.stack(values, dim=3),  # [B, N, CV, ti, h, w]
                keys[:, ti],
                mem_shrinkage=None if shrinkage is None else shrinkage[:, :ti].transpose(1, 2),  # [B, 1, ti, h, w]
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
                value, hidden = model.encode_value(frames[:, ti], f16[:, ti], seg.prob[:, 1:], hidden)
                values.append(value)

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


#: architecture name -> unroller class; a new model family registers its unroller here (a plain dict, no registry).
UNROLLERS: dict[str, type[nn.Module]] = {"stcn": ClipUnroller, "stcn_corr": ClipUnroller, "stcn-corr": ClipUnroller}


def build_unroller(arch: str, model: nn.Module, *, second_view: bool = False) -> nn.Module:
    """The training unroller of ``arch`` around ``model`` (raises ValueError for an unknown architecture)."""
    if arch not in UNROLLERS:
        raise ValueError(f"no clip unroller for architecture {arch!r}; known: {sorted(UNROLLERS)}")
    return UNROLLERS[arch](model, second_view=second_view)
