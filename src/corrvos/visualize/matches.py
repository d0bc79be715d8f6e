"""Object-level matching between two distant frames, as L_OCL matches them (Fig. S1 of the supplement).

As in :func:`corrvos.losses.object_coherence.object_coherence_loss` (Algorithm S2): the boxes of the ground-truth
objects of frames t and tau (identities are not used for matching), their embeddings
``o = AvgPool(PROJ(RoIAlign(res4, box)))`` on the key encoder's stride-16 res4 features, the cosine similarity
matrix and the Hungarian assignment (scipy ``linear_sum_assignment`` on -cosine). A pair is *correct* when the
two boxes carry the same ground-truth id.

PROJ is the checkpoint's trained projection head. The trainer stores it in its checkpoints of runs whose loss uses
L_OCL (``checkpoints/step_*.pth`` and ``<stage>_final.pth``, under ``extra["proj_head"]``); official files do not
hold it. A ``<stage>_final.pth`` of an older corrvos, written without it, takes it from the
``step_<global step>.pth`` written next to it when that file still exists. Without a head,
the embeddings are the raw pooled res4 features (C16-d: 1024 for ResNet-50, fewer for corrvos's small variants)
and the caller is told so. The raw res4 (``features="res4"``) or the 64-d matching keys (``features="key"``) can
also be asked for explicitly.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from corrvos.checkpoint_io import read_checkpoint
from corrvos.data.io import DAVIS_PALETTE, write_image
from corrvos.errors import CheckpointError, ConfigError, DataError
from corrvos.losses.config import LossConfig
from corrvos.losses.object_coherence import boxes_from_masks, hungarian_match, object_embeddings
from corrvos.models.backbones import key_encoder_args, key_encoder_dims
from corrvos.models.convert import extract_state_dict
from corrvos.models.heads import ProjectionHead
from corrvos.utils import atomic_write_text
from corrvos.visualize.inputs import FrameFolder, ModelInput, model_input, object_ids
from corrvos.visualize.panels import draw_text, panel_scale, scale_image, titled

__all__ = [
    "HeadSource",
    "ObjectMatches",
    "draw_matches",
    "find_projection_head",
    "frame_objects",
    "make_matches_figure",
    "match_embeddings",
]

logger = logging.getLogger(__name__)

TITLE_LINES = 2
FEATURES = ("proj", "res4", "key")
CORRECT = (0, 200, 0)
WRONG = (230, 0, 0)


@dataclass
class HeadSource:
    """Where the object embeddings come from.

    Attributes:
        head: the trained PROJ (applied to res4), or None (raw pooled features).
        path: the checkpoint file the head was read from, or None.
        features: what RoIAlign pools: "res4" (key-encoder stride-16 features, L_OCL's input) or "key".
        roi_size, sampling_ratio: RoIAlign settings of L_OCL (the checkpoint's training config, else defaults).
        note: one line for the user.
        res4_dim: channels of res4 (1024 for ResNet-50; fewer for corrvos's small variants).
    """

    head: nn.Module | None
    path: Path | None
    roi_size: int
    sampling_ratio: int
    note: str
    features: str = "res4"
    res4_dim: int = 1024

    @property
    def label(self) -> str:
        """A few words for the figure's title."""
        if self.head is not None:
            return "embeddings: trained PROJ on pooled res4"
        what = f"res4 ({self.res4_dim}-d)" if self.features == "res4" else "matching keys (64-d)"
        return f"embeddings: raw pooled {what}, no PROJ"


@dataclass
class ObjectMatches:
    """The objects of frames t and tau and their Hungarian assignment.

    Attributes:
        ids_t, ids_tau: ground-truth ids of the objects of t [N] and tau [M] (only for checking the pairs).
        boxes_t, boxes_tau: [N, 4] and [M, 4] boxes (x1, y1, x2, y2) in image pixels (x2 = last column + 1).
        similarity: [N, M] cosine similarity of the embeddings.
        pairs: (index in t, index in tau) of the assignment, in increasing t index.
    """

    ids_t: list[int]
    ids_tau: list[int]
    boxes_t: Tensor
    boxes_tau: Tensor
    similarity: Tensor
    pairs: list[tuple[int, int]] = field(default_factory=list)

    @property
    def correct(self) -> list[bool]:
        """Per pair: the two boxes are the same ground-truth object."""
        return [self.ids_t[i] == self.ids_tau[j] for i, j in self.pairs]

    def to_dict(self) -> dict[str, Any]:
        """Plain numbers for JSON."""
        return {
            "ids_t": self.ids_t,
            "ids_tau": self.ids_tau,
            "similarity": [[round(float(v), 6) for v in row] for row in self.similarity.tolist()],
            "pairs": [
                {"id_t": self.ids_t[i], "id_tau": self.ids_tau[j], "cosine": float(self.similarity[i, j]), "correct": c}
                for (i, j), c in zip(self.pairs, self.correct, strict=True)
            ],
        }


def match_embeddings(emb_t: Tensor, emb_tau: Tensor) -> tuple[Tensor, list[tuple[int, int]]]:
    """Cosine similarity [N, M] of two embedding sets [N, D], [M, D] and their Hungarian pairs (max total cosine)."""
    sim = F.normalize(emb_t.float(), dim=1) @ F.normalize(emb_tau.float(), dim=1).t()  # [N, M]
    if sim.numel() == 0:
        return sim, []
    rows, cols = hungarian_match(-sim.cpu().numpy())
    return sim, sorted((int(r), int(c)) for r, c in zip(rows, cols, strict=True))


def frame_objects(
    model: nn.Module, frame: ModelInput, label: np.ndarray, source: HeadSource
) -> tuple[list[int], Tensor, Tensor]:
    """The objects of one frame: (ids [K], boxes [K, 4] in image pixels, embeddings [K, D]).

    Raises:
        DataError: the label map holds no object (the caller names the file).
    """
    ids = object_ids(label)
    if not ids:
        raise DataError(None, "the mask holds no object")
    masks = torch.from_numpy(np.stack([label == k for k in ids])).float()  # [K, H, W]
    boxes, _ = boxes_from_masks(masks)  # [K, 4] image pixels
    left, _, top, _ = frame.pad
    shift = torch.tensor([left, top, left, top], dtype=boxes.dtype)
    head = source.head if source.head is not None else nn.Identity()
    with torch.inference_mode():
        encoded = model.encode_key(frame.image, need_shrinkage=False, need_selection=False)
        feats = encoded.key if source.features == "key" else encoded.f16  # [1, CK or C16, h, w]
        padded = (boxes + shift).to(feats.device)[None]  # [1, K, 4] in padded-input pixels
        emb = object_embeddings(
            feats.float(), padded, head, roi_size=source.roi_size, sampling_ratio=source.sampling_ratio
        )  # [1, K, D]
    return ids, boxes, emb[0].cpu()


def _head_from_state(state: dict[str, Tensor], path: Path) -> nn.Module:
    try:
        w1, w2 = state["conv1.weight"], state["conv2.weight"]  # [hidden, in, 1, 1], [out, hidden, 1, 1]
        head = ProjectionHead(int(w1.shape[1]), int(w1.shape[0]), int(w2.shape[0]))
        head.load_state_dict(state)
    except (KeyError, IndexError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: extra.proj_head is not a ProjectionHead state_dict ({exc})") from exc
    return head.eval()


def _roi_settings(ckpt: dict[str, Any]) -> tuple[int, int]:
    defaults = LossConfig()
    try:
        from corrvos.config import config_from_dict, stage_loss_config

        cfg = config_from_dict(ckpt["config"])
        stage = next(s for s in cfg.stages if s.name == ckpt.get("stage"))
        loss = stage_loss_config(cfg, stage)
        return int(loss.ocl_roi_size), int(loss.ocl_sampling_ratio)
    except Exception:  # no or foreign training config: L_OCL's defaults
        return int(defaults.ocl_roi_size), int(defaults.ocl_sampling_ratio)


def _res4_dim(ckpt: Any) -> int:
    """C16 of the checkpoint's key encoder, read from its shapes (1024 for ResNet-50 and unreadable files)."""
    try:
        state, _ = extract_state_dict(ckpt)
        args = key_encoder_args(state)
        return key_encoder_dims(str(args["key_encoder"]), int(args["width"]))[0]
    except (CheckpointError, ValueError):
        return 1024


def _stored_head(ckpt: Any) -> dict[str, Tensor] | None:
    extra = ckpt.get("extra") if isinstance(ckpt, dict) else None
    return extra.get("proj_head") if isinstance(extra, dict) else None


def find_projection_head(path: str | Path, *, features: str = "proj") -> HeadSource:
    """The trained PROJ of a checkpoint (or of its sibling step file) and the RoIAlign settings of its training.

    Args:
        path: the checkpoint.
        features: "proj" (the trained head on res4, or raw res4 when there is none), "res4" or "key" (raw pooled
            res4 features or matching keys, no head).

    Raises:
        CheckpointError: the file is unreadable, or holds a malformed head.
        ConfigError: unknown ``features``.
    """
    if features not in FEATURES:
        raise ConfigError(f"--features must be one of {', '.join(FEATURES)}, got {features!r}")
    from corrvos.weights import resolve_model_path

    path = Path(resolve_model_path(path))  # a weight name of `corrvos download` -> its cached file
    ckpt = read_checkpoint(path)
    roi_size, ratio = _roi_settings(ckpt) if isinstance(ckpt, dict) else _roi_settings({})
    dim = _res4_dim(ckpt)
    res4 = f"res4 features ({dim}-d)"
    raw = f"using the raw pooled {res4} instead"
    if features != "proj":
        what = res4 if features == "res4" else "matching keys"
        return HeadSource(None, None, roi_size, ratio, f"--features {features}: raw pooled {what}", features, dim)
    candidates = [path]
    if isinstance(ckpt, dict) and "global_step" in ckpt and _stored_head(ckpt) is None:
        candidates.append(path.parent / f"step_{int(ckpt['global_step']):07d}.pth")
    for i, candidate in enumerate(candidates):
        other = ckpt if i == 0 else (read_checkpoint(candidate) if candidate.is_file() else None)
        state = _stored_head(other)
        if state is not None:
            where = "" if i == 0 else f" (read from {candidate}, the training checkpoint of the same step)"
            note = f"embeddings through the trained projection head of L_OCL{where}"
            return HeadSource(_head_from_state(state, candidate), candidate, roi_size, ratio, note)
    note = (
        f"note: {path} holds no trained projection head (corrvos checkpoints of runs with L_OCL store one, under "
        f"extra.proj_head); {raw}"
    )
    return HeadSource(None, None, roi_size, ratio, note, res4_dim=dim)


def _colour(obj_id: int) -> tuple[int, int, int]:
    c = DAVIS_PALETTE[obj_id % 256]
    return int(c[0]), int(c[1]), int(c[2])


def _draw_boxes(image: np.ndarray, ids: list[int], boxes: Tensor, scale: int) -> list[tuple[int, int]]:
    centres = []
    for k, box in zip(ids, boxes.tolist(), strict=True):
        x1, y1, x2, y2 = (round(v * scale) for v in box)
        cv2.rectangle(image, (x1, y1), (x2 - 1, y2 - 1), _colour(k), 2)
        draw_text(image, f"id {k}", (x1 + 3, max(y1 + 14, 14)), _colour(k))
        centres.append(((x1 + x2) // 2, (y1 + y2) // 2))
    return centres


def draw_matches(
    frame_t: np.ndarray,
    frame_tau: np.ndarray,
    matches: ObjectMatches,
    *,
    names: tuple[str, str] = ("t", "tau"),
    features: str = "",
    label: str = "",
) -> np.ndarray:
    """Frames t and tau side by side, boxes in the palette colour of their id, a link per Hungarian pair.

    Links are green for correct pairs and red for wrong ones, labelled with their cosine similarity. ``label``
    (e.g. the model's name) starts the title; ``features`` says what the embeddings are.

    Returns:
        uint8 RGB [2 * LINE_HEIGHT + s * H, 2 * s * W, 3] with s = :func:`panel_scale` (W).
    """
    scale = panel_scale(frame_t.shape[1])
    left, right = scale_image(frame_t, scale).copy(), scale_image(frame_tau, scale).copy()
    centres_t = _draw_boxes(left, matches.ids_t, matches.boxes_t, scale)
    centres_tau = _draw_boxes(right, matches.ids_tau, matches.boxes_tau, scale)
    body = np.concatenate([left, right], axis=1)  # [s*H, 2*s*W, 3]
    offset = left.shape[1]
    for (i, j), ok in zip(matches.pairs, matches.correct, strict=True):
        a = centres_t[i]
        b = (centres_tau[j][0] + offset, centres_tau[j][1])
        colour = CORRECT if ok else WRONG
        cv2.line(body, a, b, (0, 0, 0), 4, cv2.LINE_AA)
        cv2.line(body, a, b, colour, 2, cv2.LINE_AA)
        mid = ((a[0] + b[0]) // 2 - 18, (a[1] + b[1]) // 2 - 4)
        draw_text(body, f"{float(matches.similarity[i, j]):.2f}", mid, colour)
    n_ok = sum(matches.correct)
    title = [
        f"{label + ': ' if label else ''}frame {names[0]}  ->  frame {names[1]}",
        f"Hungarian on cosine: {n_ok}/{len(matches.pairs)} correct; {features}",
    ]
    return titled(body, title, TITLE_LINES)


def make_matches_figure(
    model: nn.Module,
    source: HeadSource,
    folder: FrameFolder,
    t: int,
    tau: int,
    out_dir: str | Path,
    *,
    device: torch.device | str = "cpu",
    label: str = "",
) -> tuple[Path, ObjectMatches]:
    """Match the ground-truth objects of frames t and tau; write ``matches_<t id>_<tau id>.png`` and ``.json``.

    ``label`` (e.g. the model's name) starts the figure's title; the title also says which embeddings were used
    (:attr:`HeadSource.label`), and the JSON records it under ``embeddings``.

    Returns:
        (the PNG written, the matches).

    Raises:
        DataError: frame index out of range, missing or empty mask, frames or masks of different sizes.
    """
    t = folder.check_index(t, "--frame")
    tau = folder.check_index(tau, "--target")
    rgb_t, rgb_tau = folder.read_frame(t), folder.read_frame(tau)
    folder.check_same_size(rgb_t, rgb_tau, t, tau)
    found = []
    for index, rgb in ((t, rgb_t), (tau, rgb_tau)):
        mask = folder.read_mask(index, rgb.shape[:2])
        if not object_ids(mask):
            raise DataError(folder.mask_dir / f"{folder.frame_id(index)}.png", "the mask holds no object")
        found.append(frame_objects(model, model_input(rgb, device), mask, source))
    (ids_t, boxes_t, emb_t), (ids_tau, boxes_tau, emb_tau) = found
    sim, pairs = match_embeddings(emb_t, emb_tau)
    matches = ObjectMatches(ids_t, ids_tau, boxes_t, boxes_tau, sim, pairs)
    names = (f"t={t} ({folder.frame_id(t)})", f"tau={tau} ({folder.frame_id(tau)})")
    figure = draw_matches(rgb_t, rgb_tau, matches, names=names, features=source.label, label=label)
    stem = f"matches_{folder.frame_id(t)}_{folder.frame_id(tau)}"
    path = Path(out_dir) / f"{stem}.png"
    write_image(path, figure)
    record = {
        "frame_t": folder.paths[t].name,
        "frame_tau": folder.paths[tau].name,
        "features": source.note,
        "embeddings": source.label,
    }
    atomic_write_text(Path(out_dir) / f"{stem}.json", json.dumps({**record, **matches.to_dict()}, indent=1) + "\n")
    return path, matches
