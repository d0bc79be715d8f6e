"""Streaming, per-video inference of matching-based VOS models (STCN, XMem): ``InferenceCore.step`` once per frame.

Re-expresses the inference procedures of hkchengrex/STCN:inference_core.py (DAVIS) and inference_core_yv.py
(YouTube-VOS, objects that appear later) and hkchengrex/XMem:inference/inference_core.py, written independently as
one streaming processor in the style of hkchengrex/Cutie:cutie/inference/inference_core.py
(``step(image, mask, objects)``). The model is driven only through the ``VOSModel`` stages; the memory is the
model family's :class:`~corrvos.inference.memory_store.MemoryStore` (STCN's bank or XMem's working + long-term
memory) and the options are one :class:`~corrvos.inference.config.InferenceConfig`.

Procedure (one ``step`` per frame, frame index t counted from the first ``step``):
1. the image (RGB in [0, 1]) is ImageNet-normalised, optionally resized so that its shorter side is
   ``internal_size`` (``resize_mode``), and zero-padded to multiples of 16 (see :mod:`corrvos.data.video`);
2. if objects are already known, the frame is segmented: key encoding, a top-k memory read per object group,
   decoding of every object with the hidden (sensory) state, sigmoid and soft aggregation (``model.segment``);
   the decoder updates the hidden state on frames that are not deep-update frames (XMem; STCN has none);
3. if a mask is given, its objects are merged in as STCN's YouTube core does: inside the mask's foreground all
   previous predictions are dropped, the given objects take their mask, and the object probabilities are
   soft-aggregated again; the frame then becomes a permanent memory frame for every group (new objects start a
   group whose memory begins here);
4. otherwise the frame becomes a permanent memory frame when ``t - last_memory_frame >= mem_every`` (with a single
   mask on frame 0 this is STCN's DAVIS rule ``t % mem_every == 0``), or the temporary "last frame" entry when
   ``include_last`` is set; never on the last frame (``end=True``). Values are encoded from the soft aggregated
   probabilities (target = prob of the object, others = sum of the other objects); on a deep-update frame (XMem:
   every memory frame when ``deep_update_every`` is -1, else every ``deep_update_every`` frames among memory
   frames) the value encoder also renews the hidden state; objects introduced by a mask start with zeros;
5. the probabilities are unpadded and, if the frame was resized, bilinearly resized back to the input size.

Objects that appear later follow STCN's YouTube-VOS core: each group of objects introduced by the same mask reads
only the memory frames from its introduction onwards, and mem_every counts from the last memory frame.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from corrvos.data.io import VOID_LABEL
from corrvos.inference.config import InferenceConfig, inference_config_for
from corrvos.inference.geometry import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    pad_to_multiple,
    resize_image,
    resize_label,
    resized_shape,
    unpad,
)
from corrvos.inference.memory_store import make_memory, make_recurrence
from corrvos.inference.objects import ObjectManager
from corrvos.models.common import aggregate_logits

__all__ = ["InferenceCore", "channel_argmax", "soft_aggregate"]

_log = logging.getLogger(__name__)

_AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def soft_aggregate(prob: Tensor) -> Tensor:
    """Soft aggregation of per-object probabilities with a background channel (STM / STCN ``aggregate``).

    Args:
        prob: [N, ...] object probabilities in [0, 1].

    Returns:
        [N+1, ...] probabilities (background first) summing to 1 over dim 0: the softmax of the logits of the
        clamped (1e-7, 1 - 1e-7) values, with background = prod(1 - prob).
    """
    return torch.softmax(aggregate_logits(prob[None]), dim=1)[0]  # [1, N, ...] -> [1, N+1, ...] -> [N+1, ...]


class InferenceCore:
    """One streaming processor per video.

    Args:
        model: a ``VOSModel`` of any family of the table (``corrvos.families``) in eval mode. Inference runs on its
            device.
        config: the options (:class:`~corrvos.inference.config.InferenceConfig`); default: the official defaults of
            the model's family (``inference_config_for(model)``: STCN top_k 20, XMem top_k 30 with long-term memory
            and a 480-pixel shorter side, ...).
        video_length: frames in the video when known (XMem's long-term usage rule); ``reset`` can change it.

    ``config.channels_last_decoder`` stores the decoder's weights in channels-last (NHWC) order, which makes its
    convolutions and bilinear upsamplings produce NHWC maps: cuDNN then skips its per-convolution layout transposes
    and PyTorch uses its NHWC upsampling kernel, several times faster than the NCHW one on a GPU; oneDNN's NHWC
    convolutions are faster on the CPU too. Values are unchanged; only float rounding differs. The model's decoder
    is converted in place; the encoders stay NCHW (their BatchNorms' NHWC kernels are slower on a GPU).
    """

    def __init__(
        self, model: nn.Module, config: InferenceConfig | None = None, *, video_length: int | None = None
    ) -> None:
        self.config = inference_config_for(model) if config is None else config
        self.model = model
        self.device = next(model.parameters()).device
        if self.config.amp != "none" and self.device.type != "cuda":
            raise ValueError(f"amp={self.config.amp!r} needs a CUDA model; this one is on {self.device}")
        if model.training:
            _log.warning("InferenceCore: the model is in training mode; call model.eval() for inference")
        decoder = getattr(model, "decoder", None)
        if self.config.channels_last_decoder and isinstance(decoder, nn.Module):
            decoder.to(memory_format=torch.channels_last)
        # device constants made once: a host-to-device copy per frame would stall the CUDA stream
        self._mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD, device=self.device).view(3, 1, 1)
        self._black = ((0 - self._mean) / self._std).flatten()  # [3] the normalised value of a black pixel
        self.reset(video_length=video_length)

    def reset(self, *, video_length: int | None = None) -> None:
        """Forget everything (objects, memory, hidden state, frame counter): the next ``step`` starts a new video."""
        self.objects = ObjectManager()
        self.memory = make_memory(self.model, self.config, video_length=video_length)
        self.recurrence = make_recurrence(self.model, self.config, self.memory)
        self.frame_index = 0  # index of the next frame
        self.last_memory_frame: int | None = None
        self.input_shape: tuple[int, int] | None = None
        self.pad = (0, 0, 0, 0)
        self._lookup: Tensor | None = None  # channel -> object id; None while the ids are 1..N (the identity)

    @property
    def hidden(self) -> Tensor | None:
        """[B, N, CH, h, w] hidden (sensory) state in channel order (B = 2 with ``flip_aug``), for models that keep
        one."""
        return self.recurrence.hidden

    @property
    def object_ids(self) -> list[int]:
        """Known object ids, ascending: ``prob`` channel k+1 of ``step``'s output is ``object_ids[k]``."""
        return self.objects.ids

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        dtype = _AMP_DTYPES[self.config.amp]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def next_frame_needed(self, *, end: bool = False) -> bool:
        """Whether the next frame changes the memory (so it cannot be skipped even if its output is not needed).

        A caller that only needs some outputs (YouTube-VOS all-frames mode) may call :meth:`skip_frame` instead
        of ``step`` when this is False and the frame carries no mask, as the official YouTube-VOS evaluation does.
        """
        if self.last_memory_frame is None or end:
            return False
        if self.recurrence.every_frame_counts:
            return True  # e.g. every frame updates the sensory memory (and the usage counts)
        return self.config.include_last or self.frame_index - self.last_memory_frame >= self.config.mem_every

    def skip_frame(self) -> None:
        """Advance the frame counter without processing a frame (see :meth:`next_frame_needed`)."""
        self.frame_index += 1

    def _prepare_image(self, image: Tensor) -> Tensor:
        """[3, H, W] RGB in [0, 1] -> normalised, resized, padded [1, 3, H', W'] on the model's device ([2, ...]
        with ``flip_aug``: the mirror image follows)."""
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"image must be [3, H, W], got {tuple(image.shape)}")
        shape = (int(image.shape[1]), int(image.shape[2]))
        if self.input_shape is None:
            self.input_shape = shape
        elif shape != self.input_shape:
            raise ValueError(f"frame {self.frame_index} has size {shape}, earlier frames {self.input_shape}")
        x = ((image.to(self.device, torch.float32) - self._mean) / self._std)[None]  # [1, 3, H, W]
        x = resize_image(x, resized_shape(*shape, self.config.internal_size), self.config.resize_mode)  # [1, 3, H', W']
        fill = self._black if self.recurrence.pads_before_normalising else None
        x, self.pad = pad_to_multiple(x, 16, fill=fill)  # [1, 3, Hp, Wp]
        if self.config.flip_aug:
            x = torch.cat([x, x.flip(-1)])  # [2, 3, Hp, Wp]: the frame and its mirror image
        return x

    def _prepare_mask(self, mask: Tensor | np.ndarray) -> Tensor:
        """Label map [H, W] -> resized (nearest) and zero-padded int64 [Hp, Wp] on the model's device."""
        mask = torch.as_tensor(np.asarray(mask) if not isinstance(mask, Tensor) else mask)
        if mask.ndim != 2 or tuple(mask.shape) != self.input_shape:
            raise ValueError(f"mask must be [H, W] = {self.input_shape} like the image, got {tuple(mask.shape)}")
        if mask.is_floating_point():
            raise ValueError("mask must be an integer label map (object ids), not floating point")
        mask = mask.to(self.device, torch.int64)
        mask = resize_label(mask, resized_shape(*self.input_shape, self.config.internal_size))  # [H', W']
        mask, _ = pad_to_multiple(mask, 16)  # [Hp, Wp]
        return mask

    def _groups(self) -> list[list[int]]:
        """Channels (0-based among the N objects) of each object group, in introduction order."""
        return [self.objects.channels(g.ids) for g in self.objects.groups]

    def _merge_mask(self, prob: Tensor | None, old_ids: list[int], mask: Tensor, given: list[int]) -> Tensor:
        """Merge a given mask into the predicted probabilities (STCN YouTube-VOS ``interact``).

        Args:
            prob: [N_old+1, Hp, Wp] predicted probabilities of ``old_ids`` (None when nothing was known).
            old_ids: ids of the predicted channels, ascending.
            mask: [Hp, Wp] int64 label map.
            given: ids whose masks are given on this frame.

        Returns:
            [N+1, Hp, Wp] aggregated probabilities over all known objects (ascending ids).
        """
        given_t = torch.tensor(given, device=mask.device, dtype=mask.dtype)
        region = torch.isin(mask, given_t)  # [Hp, Wp] foreground of the given mask
        channels = []
        for obj_id in self.objects.ids:
            if obj_id in given:
                channels.append((mask == obj_id).float())
            elif prob is not None and obj_id in old_ids:
                channels.append(prob[1 + old_ids.index(obj_id)].masked_fill(region, 0.0))
            else:  # pragma: no cover - every known id is either given or old
                channels.append(torch.zeros_like(mask, dtype=torch.float32))
        return soft_aggregate(torch.stack(channels, dim=0))  # [N+1, Hp, Wp]

    def _output(self, prob: Tensor) -> Tensor:
        """Padded-size probabilities [C, Hp, Wp] -> [C, H, W] at the input size, float32."""
        prob = unpad(prob, self.pad)  # [C, H', W']
        assert self.input_shape is not None
        if tuple(prob.shape[-2:]) != self.input_shape:
            prob = F.interpolate(prob[None], size=self.input_shape, mode="bilinear", align_corners=False)[0]
        return prob.float()

    @torch.inference_mode()
    def step(
        self,
        image: Tensor,
        mask: Tensor | np.ndarray | None = None,
        objects: list[int] | None = None,
        *,
        end: bool = False,
    ) -> Tensor:
        """Process the next frame of the video.

        Args:
            image: [3, H, W] float RGB in [0, 1], any size (every frame of a video has the same size).
            mask: optional integer label map [H, W] (0 background, object ids otherwise) giving objects on this
                frame: on the first frame, or on a later frame where new objects appear (YouTube-VOS).
            objects: ids given by ``mask`` (default: its values other than 0 and the void label 255, as DAVIS);
                other values of ``mask`` are ignored.
            end: this is the last frame (it is not added to memory).

        Returns:
            [N+1, H, W] float32 probabilities on the model's device: channel 0 background, then the N known
            objects in ascending id order (see :attr:`object_ids`). Before any mask, [1, H, W] of ones.
        """
        x = self._prepare_image(image)
        given: list[int] = []
        mask_p = None
        if mask is not None:
            mask_p = self._prepare_mask(mask)
            if objects is None:
                given = sorted(
                    int(i) for i in torch.unique(torch.as_tensor(mask)).tolist() if int(i) not in (0, VOID_LABEL)
                )
            else:
                given = sorted({int(i) for i in objects})
                if any(i <= 0 for i in given):
                    raise ValueError(f"object ids must be positive, got {given}")
        if self.objects.num_objects == 0 and not given:
            self.frame_index += 1
            return torch.ones(1, *self.input_shape, device=self.device)  # background only
        t, cfg = self.frame_index, self.config
        old_ids = self.objects.ids
        has_mask = mask_p is not None and bool(given)
        periodic = self.last_memory_frame is not None and t - self.last_memory_frame >= cfg.mem_every
        is_memory_frame = (has_mask or periodic) and not end
        temporary = not is_memory_frame and cfg.include_last and not end
        deep_update, decoder_update = self.recurrence.plan(
            t, last_memory_frame=self.last_memory_frame, is_memory_frame=is_memory_frame, end=end
        )
        with self._autocast():
            feats = self.model.encode_key(  # QueryFeatures, key [1, CK, h, w]
                x, need_shrinkage=is_memory_frame, need_selection=cfg.enable_long_term or bool(old_ids)
            )
            prob = (  # [N_old+1, Hp, Wp]
                self.recurrence.segment(feats, self._groups(), update_hidden=decoder_update) if old_ids else None
            )
            if has_mask:
                assert mask_p is not None
                group = self.objects.add(given, t)
                if group is not None:
                    ids = self.objects.ids
                    identity = ids == list(range(1, len(ids) + 1))
                    self._lookup = None if identity else torch.tensor([0, *ids], dtype=torch.int64, device=self.device)
                    self.recurrence.add_objects(group.ids, ids, feats.key)
                prob = self._merge_mask(prob, old_ids, mask_p, given)
            assert prob is not None
            self.recurrence.observe(prob)
            if is_memory_frame or temporary:
                self.recurrence.memorize(
                    x,
                    feats,
                    prob,
                    self._groups(),
                    t=t,
                    temporary=temporary,
                    deep_update=deep_update and is_memory_frame,
                )
                if not temporary:
                    self.last_memory_frame = t
        self.frame_index += 1
        return self._output(prob)

    def prob_to_mask(self, prob: Tensor) -> Tensor:
        """[N+1, H, W] probabilities -> int64 [H, W] label map with the original object ids (argmax)."""
        channels = self.objects.num_objects + 1
        if prob.shape[0] != channels:
            raise ValueError(f"prob has {prob.shape[0]} channels, expected {channels} (background + objects)")
        index = channel_argmax(prob)  # [H, W] channels
        return index if self._lookup is None else self._lookup.to(prob.device)[index]


def channel_argmax(prob: Tensor) -> Tensor:
    """``prob.argmax(dim=0)`` for a [C, H, W] tensor (int64 [H, W]), the fastest exact way on each device.

    On the CPU it is a loop over the few channels (a strict ``>`` keeps the first index on ties, as ``argmax``
    does), about 15x faster than PyTorch's strided reduction over the outer dimension, which costs more than the
    decoder's last convolutions at 480p. On other devices ``argmax`` is one kernel, where the loop would launch
    three per channel.
    """
    if prob.device.type != "cpu":
        return prob.argmax(dim=0)
    best = prob[0]
    index = torch.zeros(prob.shape[1:], dtype=torch.int64, device=prob.device)  # [H, W]
    for c in range(1, prob.shape[0]):
        index.masked_fill_(prob[c] > best, c)
        best = torch.maximum(best, prob[c])
    return index
