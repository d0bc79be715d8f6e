"""Inference speed and peak memory of corrvos' ``InferenceCore`` (STCN, XMem, Cutie) on a generated video, and the
official's.

A 480p video (854x480 by default) with 3 moving objects is generated in memory; an STCN (``--arch stcn``, the
default) or an XMem (``--arch xmem``) with random weights (seeded; the key projection scaled by 0.05 so that the
unsubtracted top-k exponentials of random keys stay finite; for XMem the decoder's output bias is also lowered by
``XMEM_PRED_BIAS_SHIFT``, because the random decoder otherwise gives every object a probability near 0.78 and the
background never wins a pixel) segments it from the first-frame mask, on CPU and, when available, CUDA. Timing
excludes I/O and model construction, as the official ``eval_davis.py``: frames are already on the device; the clock
runs from the first frame to the last label map (argmax included); after ``--warmup`` untimed passes, the median of
``--repeats`` timed passes is reported, with the best pass beside it. Each (engine, device) run is a fresh
subprocess, so that the CPU peak memory (max RSS) is its own. With ``--kernel-time`` (CUDA), one more pass runs under
the PyTorch profiler and the GPU kernel time and launches per frame are reported: on a shared host, the wall clock of
a GPU-bound loop carries the host's noise, the kernel time does not. The last lines give the speed ratios
official / corrvos (above 1: corrvos is faster).

When the official STCN repository is present under ``.ref/STCN`` (fetched for local comparison only, never
committed; a torchvision stand-in in ``.ref/shim`` is used if present), the same weights and frames also go
through the official ``InferenceCore`` (its ``.cuda()`` calls pointed at the benchmark device) and the maximum
absolute difference of the probabilities over all frames is reported.

XMem (``--arch xmem``): corrvos runs with XMem's ``eval.py`` defaults (top_k 30, mem_every 5, deep update with
memory frames, long-term memory with T_min 5 / T_max 10 / 128 prototypes / 10000 elements, eval.py's usage rule from
the video length), except ``internal_size=None``: the generated frames are processed at their own size, by both
engines. When hkchengrex/XMem is present under ``.ref/XMem`` (``--official-root``), its ``InferenceCore`` runs on
the same weights and frames as ``eval.py`` drives it (``set_all_labels``, then ``step(normalised rgb, one-hot
mask, labels)`` on the first frame and ``step(rgb, end=...)`` after; its ImageNet download patched out), timed the
same way (argmax included). The working memory first fills (10 memory frames: frame 45) and is consolidated into
long-term memory only in videos of 47 frames or more; shorter runs compare the working memory alone.

Cutie (``--arch cutie``, Cutie-base: ResNet-50 pixel encoder): corrvos runs with Cutie's ``eval_config.yaml``
defaults (top_k 30, mem_every 5, 5 memory frames, stagger 5, no long-term memory) at the frames' own size. When
hkchengrex/Cutie is present under ``.ref/Cutie`` (its ``cutie/`` folder; ``omegaconf`` installed), its
``InferenceCore`` runs on the same weights and frames as its ``eval_vos.py`` drives it (``step(rgb in [0, 1], index
mask, objects)`` on the first frame, ``step(rgb, end=...)`` after, the argmax timed), its ImageNet download patched
out.

Usage:
    python benchmarks/inference_speed.py --frames 20 --devices cpu cuda --out benchmarks/results/inference.json
    python benchmarks/inference_speed.py --arch xmem --frames 12 --devices cpu --out benchmarks/results/x.json
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import io
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OFFICIAL = REPO / ".ref" / "STCN"
DEFAULT_OFFICIAL_ROOTS = {"stcn": DEFAULT_OFFICIAL, "xmem": REPO / ".ref" / "XMem", "cutie": REPO / ".ref" / "Cutie"}
#: marker file of each official checkout (relative to its root)
OFFICIAL_MARKERS = {
    "stcn": "inference_core.py",
    "xmem": "inference/inference_core.py",
    "cutie": "cutie/inference/inference_core.py",
}
#: added to XMem's ``decoder.pred.bias`` for random weights: the random decoder's object logits average about 1.3
#: (sigmoid 0.78 for every object), so that the background (prod of 1 - p) never wins; shifted, it wins a few
#: per cent of the pixels and the label maps are not all foreground.
XMEM_PRED_BIAS_SHIFT = -1.25
_log = logging.getLogger("inference_speed")


def make_video(frames: int, height: int, width: int, objects: int, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """Textured background with ``objects`` moving ellipses: frames [T, 3, H, W] in [0, 1], first label [H, W]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.random((height // 8 + 1, width // 8 + 1, 3)).astype(np.float32)
    background = np.kron(base, np.ones((8, 8, 1), np.float32))[:height, :width] * 0.6
    centres = rng.random((objects, 2)) * [height * 0.6, width * 0.6] + [height * 0.2, width * 0.2]
    speeds = rng.normal(0, 3, (objects, 2))
    radii = rng.random((objects, 2)) * [height * 0.1, width * 0.08] + [height * 0.08, width * 0.06]
    colours = rng.random((objects, 3)).astype(np.float32)
    video, first = [], None
    for t in range(frames):
        img = background.copy()
        label = np.zeros((height, width), np.uint8)
        for k in range(objects):
            cy, cx = centres[k] + speeds[k] * t
            inside = ((yy - cy) / radii[k, 0]) ** 2 + ((xx - cx) / radii[k, 1]) ** 2 <= 1
            img[inside] = colours[k]
            label[inside] = k + 1
        video.append(torch.from_numpy(img).permute(2, 0, 1))  # [3, H, W]
        first = label if first is None else first
    return torch.stack(video), first


def build_model(seed: int, arch: str = "stcn"):
    """A seeded random network of ``arch`` ("stcn", "xmem" or "cutie") adjusted for finite, non-degenerate outputs.

    Both: the key projection is scaled by 0.05, so that the unsubtracted top-k exponentials of the official code stay
    finite (unscaled random keys give squared distances in the hundreds, whose exponentials underflow to 0 / 0).
    XMem: ``decoder.pred.bias`` is also shifted by ``XMEM_PRED_BIAS_SHIFT`` so that the background wins somewhere.
    """
    from corrvos.models import build_model as build_network

    torch.manual_seed(seed)
    model = build_network(arch).eval()
    with torch.no_grad():
        model.key_proj.key_proj.weight.mul_(0.05)
        if arch == "xmem":
            model.decoder.pred.bias.add_(XMEM_PRED_BIAS_SHIFT)
    return model


def load_official(stcn_root: Path, device: torch.device) -> types.SimpleNamespace:
    """Import the official STCN network and DAVIS ``InferenceCore`` from a checkout, pointed at ``device``."""
    shim = stcn_root.parent / "shim"
    if (shim / "torchvision").is_dir():
        sys.path.insert(0, str(shim))
        import stcn_offline  # type: ignore[import-not-found]

        stcn_offline.patch_offline()
    sys.path.insert(0, str(stcn_root))
    from model.aggregate import aggregate  # type: ignore[import-not-found]
    from model.eval_network import STCN as OfficialSTCN  # type: ignore[import-not-found]
    from util.tensor_util import pad_divide_by, unpad  # type: ignore[import-not-found]

    def load_core(filename: str) -> type:
        source = (stcn_root / filename).read_text()
        source = source.replace("'cuda'", repr(str(device))).replace(".cuda()", f".to({str(device)!r})")
        module = types.ModuleType(f"official_{Path(filename).stem}")
        exec(compile(source, str(stcn_root / filename), "exec"), module.__dict__)
        return module.InferenceCore

    return types.SimpleNamespace(
        STCN=OfficialSTCN,
        InferenceCore=load_core("inference_core.py"),
        InferenceCoreYV=load_core("inference_core_yv.py"),
        aggregate=aggregate,
        pad_divide_by=pad_divide_by,
        unpad=unpad,
    )


def _import_official(root: Path, resnet: str, network: str, core: str) -> tuple[types.ModuleType, types.ModuleType]:
    """The network and inference-core modules of an official checkout at ``root``, with the ImageNet initialisation
    of its ResNets (``load_weights_add_extra_dim`` and ``model_zoo.load_url`` of module ``resnet``) patched out."""
    sys.path.insert(0, str(root))
    module = importlib.import_module(resnet)
    module.load_weights_add_extra_dim = lambda *args, **kwargs: None
    module.model_zoo.load_url = lambda *args, **kwargs: {}
    return importlib.import_module(network), importlib.import_module(core)


def load_official_xmem(xmem_root: Path) -> types.SimpleNamespace:
    """Import hkchengrex/XMem's network and ``InferenceCore`` from a checkout (no torchvision, no download).

    The ImageNet initialisation of its ResNets (``model.resnet.load_weights_add_extra_dim`` and
    ``model_zoo.load_url``) is patched out: the weights are replaced by corrvos' afterwards anyway.
    """
    network, core = _import_official(xmem_root, "model.resnet", "model.network", "inference.inference_core")
    return types.SimpleNamespace(XMem=network.XMem, InferenceCore=core.InferenceCore)


def xmem_official_config(model, frames: int) -> dict:
    """The config dict of XMem's eval.py for a video of ``frames`` frames: corrvos' XMem defaults (the same values as
    eval.py's argument defaults) and the dimensions of ``model`` (corrvos' or the official network)."""
    from corrvos.inference import inference_config_for

    cfg = inference_config_for("xmem")
    config = {
        "top_k": cfg.top_k,
        "mem_every": cfg.mem_every,
        "deep_update_every": cfg.deep_update_every,
        "enable_long_term": cfg.enable_long_term,
        "max_mid_term_frames": cfg.max_mid_term_frames,
        "min_mid_term_frames": cfg.min_mid_term_frames,
        "num_prototypes": cfg.num_prototypes,
        "max_long_term_elements": cfg.max_long_term_elements,
        "hidden_dim": model.hidden_dim,
        "key_dim": model.key_dim,
        "value_dim": model.value_dim,
        "single_object": False,
    }
    config["enable_long_term_count_usage"] = config["enable_long_term"] and (  # eval.py's rule
        frames / (config["max_mid_term_frames"] - config["min_mid_term_frames"]) * config["num_prototypes"]
        >= config["max_long_term_elements"]
    )
    return config


def cutie_official_config(root: Path):
    """Cutie's evaluation options (``eval_config.yaml``'s engine values, the same as corrvos' Cutie defaults) and its
    base model config, as the OmegaConf object its ``InferenceCore`` reads."""
    from omegaconf import OmegaConf

    from corrvos.inference import inference_config_for

    cfg = inference_config_for("cutie")
    engine = {
        "top_k": cfg.top_k,
        "mem_every": cfg.mem_every,
        "stagger_updates": cfg.stagger_updates,
        "max_mem_frames": cfg.max_mem_frames,
        "use_long_term": cfg.enable_long_term,
        "chunk_size": cfg.chunk_size,
        "flip_aug": cfg.flip_aug,
        "save_aux": False,
        "max_internal_size": -1,
        "long_term": {
            "count_usage": True,
            "max_mem_frames": cfg.max_mid_term_frames,
            "min_mem_frames": cfg.min_mid_term_frames,
            "num_prototypes": cfg.num_prototypes,
            "max_num_tokens": cfg.max_long_term_elements,
            "buffer_tokens": cfg.long_term_buffer,
        },
    }
    model = OmegaConf.load(root / "cutie" / "config" / "model" / "base.yaml")
    return OmegaConf.merge(OmegaConf.create({"model": model}), OmegaConf.create(engine))


def load_official_cutie(root: Path) -> types.SimpleNamespace:
    """Import hkchengrex/Cutie's network and ``InferenceCore`` from a checkout (its ResNet ImageNet download patched
    out: the weights are replaced by corrvos' afterwards anyway)."""
    network, core = _import_official(
        root, "cutie.model.utils.resnet", "cutie.model.cutie", "cutie.inference.inference_core"
    )
    return types.SimpleNamespace(CUTIE=network.CUTIE, InferenceCore=core.InferenceCore)


def run_official_cutie(official, model, frames: torch.Tensor, first: np.ndarray, *, amp: str, keep_probs: bool):
    """The official Cutie eval_vos.py loop (timed part: ``step`` and the argmax) on the same frames."""
    ids = sorted(int(i) for i in np.unique(first) if i != 0)
    mask = torch.from_numpy(first.astype(np.int64)).to(frames.device)
    device = frames.device
    with (
        torch.inference_mode(),
        torch.autocast(device.type, enabled=amp != "none", dtype=torch.float16 if amp == "fp16" else torch.bfloat16),
    ):
        probs = []
        sync()
        start = time.perf_counter()
        processor = official.InferenceCore(model, cfg=official.cfg)
        for ti in range(frames.shape[0]):
            first_frame = ti == 0
            prob = processor.step(
                frames[ti], mask if first_frame else None, ids if first_frame else None, end=ti == frames.shape[0] - 1
            )
            torch.argmax(prob, dim=0).to(torch.uint8)  # eval_vos.py's label map
            if keep_probs:
                probs.append(prob.float().cpu())
        sync()
        seconds = time.perf_counter() - start
    return seconds, probs


def normalise(frames: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor([0.485, 0.456, 0.406], device=frames.device).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], device=frames.device).view(1, 3, 1, 1)
    return (frames - mean) / std


def corrvos_config(model, amp: str):
    """The official defaults of the model's family (STCN: top_k 20, mem_every 5; XMem: eval.py's), at the input size."""
    from corrvos.inference import inference_config_for

    return inference_config_for(model, internal_size=None, amp=amp)


def run_corrvos(model, frames: torch.Tensor, first: np.ndarray, *, amp: str, keep_probs: bool):
    from corrvos.inference import InferenceCore

    device = next(model.parameters()).device
    mask = torch.from_numpy(first.astype(np.int64))
    probs, labels = [], []
    sync()
    start = time.perf_counter()
    core = InferenceCore(model, corrvos_config(model, amp), video_length=frames.shape[0])
    for t in range(frames.shape[0]):
        prob = core.step(frames[t], mask if t == 0 else None, end=t == frames.shape[0] - 1)
        labels.append(core.prob_to_mask(prob).to(torch.uint8))
        if keep_probs:
            probs.append(prob.cpu())
    sync()
    seconds = time.perf_counter() - start
    del device
    return seconds, probs


def run_official(official, model, frames: torch.Tensor, first: np.ndarray, *, amp: str, keep_probs: bool):
    """The official eval_davis.py loop (timed part) on the same frames."""
    device = next(model.parameters()).device
    ids = sorted(int(i) for i in np.unique(first) if i != 0)
    size = frames.shape[-2:]
    with (
        torch.inference_mode(),
        torch.autocast(device.type, enabled=amp != "none", dtype=torch.float16 if amp == "fp16" else torch.bfloat16),
    ):
        rgb = normalise(frames)[None]  # [1, T, 3, H, W]
        msk = torch.stack([torch.from_numpy(first == i).float() for i in ids])[:, None, None].to(device)
        sync()
        start = time.perf_counter()
        processor = official.InferenceCore(model, rgb, len(ids), top_k=20, mem_every=5, include_last=False)
        processor.interact(msk[:, 0], 0, rgb.shape[1])
        out_masks = torch.zeros((processor.t, 1, *size), dtype=torch.uint8, device=device)
        probs = []
        for ti in range(processor.t):
            prob = official.unpad(processor.prob[:, ti], processor.pad)
            prob = F.interpolate(prob, size, mode="bilinear", align_corners=False)
            out_masks[ti] = torch.argmax(prob, dim=0)
            if keep_probs:
                probs.append(prob[:, 0].float().cpu())
        sync()
        seconds = time.perf_counter() - start
    return seconds, probs


def run_official_xmem(official, model, frames: torch.Tensor, first: np.ndarray, *, amp: str, keep_probs: bool):
    """The official XMem eval.py loop (timed part: ``step`` and the argmax) on the same frames, at their own size."""
    device = next(model.parameters()).device
    ids = sorted(int(i) for i in np.unique(first) if i != 0)
    config = xmem_official_config(model, frames.shape[0])
    with (
        torch.inference_mode(),
        torch.autocast(device.type, enabled=amp != "none", dtype=torch.float16 if amp == "fp16" else torch.bfloat16),
    ):
        rgb = normalise(frames)  # [T, 3, H, W]
        msk = torch.stack([torch.from_numpy(first == i).float() for i in ids]).to(device)  # [N, H, W] one-hot
        probs = []
        sync()
        start = time.perf_counter()
        processor = official.InferenceCore(model, config=dict(config))
        processor.set_all_labels(ids)
        for ti in range(rgb.shape[0]):
            first_frame = ti == 0
            prob = processor.step(
                rgb[ti], msk if first_frame else None, ids if first_frame else None, end=ti == rgb.shape[0] - 1
            )
            torch.max(prob, dim=0).indices.to(torch.uint8)  # eval.py's label map
            if keep_probs:
                probs.append(prob.float().cpu())
        sync()
        seconds = time.perf_counter() - start
    return seconds, probs


def sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def kernel_profile(run, frames: int) -> dict:
    """GPU kernel time and kernel launches per frame of one more pass, from the PyTorch profiler.

    On a shared host the wall clock of a GPU-bound loop picks up the host's noise; the summed kernel durations
    measure the device work alone (they exclude launch gaps, so they bound the speed from above).
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        run()
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    total_ms = sum(e.device_time for e in kernels) / 1000  # device_time is in microseconds
    return {"kernel_ms_per_frame": total_ms / frames, "kernels_per_frame": len(kernels) / frames}


def worker(args: argparse.Namespace) -> dict:
    """One (engine, device) measurement in this process; prints and returns its JSON record."""
    device = torch.device(args.device)
    if args.no_tf32:
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    frames, first = make_video(args.frames, args.height, args.width, args.objects)
    if args.engine == "official" and args.arch == "cutie":
        official = load_official_cutie(Path(args.official_root))
        official.cfg = cutie_official_config(Path(args.official_root))
        ours = build_model(args.seed, "cutie")
        model = official.CUTIE(official.cfg).eval()
        model.load_state_dict(ours.state_dict(), strict=True)
        model.to(device)
        run = lambda keep: run_official_cutie(official, model, frames.to(device), first, amp=args.amp, keep_probs=keep)  # noqa: E731
    elif args.engine == "official" and args.arch == "xmem":
        official = load_official_xmem(Path(args.official_root))
        ours = build_model(args.seed, "xmem")
        with contextlib.redirect_stdout(io.StringIO()):  # its constructor prints its hyperparameters
            model = official.XMem(xmem_official_config(ours, args.frames), None).eval()
        model.load_state_dict(ours.state_dict(), strict=True)
        model.to(device)
        run = lambda keep: run_official_xmem(official, model, frames.to(device), first, amp=args.amp, keep_probs=keep)  # noqa: E731
    elif args.engine == "official":
        official = load_official(Path(args.official_root), device)
        ours = build_model(args.seed)
        model = official.STCN().eval()
        model.load_state_dict(ours.state_dict())
        model.to(device)
        run = lambda keep: run_official(official, model, frames.to(device), first, amp=args.amp, keep_probs=keep)  # noqa: E731
    else:
        model = build_model(args.seed, args.arch).to(device)
        if args.fold_bn:  # `corrvos infer --fold-bn`
            from corrvos.models.fuse import fold_batchnorm

            fold_batchnorm(model)
        run = lambda keep: run_corrvos(model, frames.to(device), first, amp=args.amp, keep_probs=keep)  # noqa: E731
    with torch.inference_mode():
        for _ in range(args.warmup):  # warm-up (CUDA lazy loading, cuDNN heuristics, allocator); not timed
            run(False)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        times, probs = [], []
        for r in range(args.repeats):
            seconds, out = run(bool(args.probs_out) and r == 0)
            probs = out if r == 0 else probs
            times.append(seconds)
        seconds = float(np.median(times))
        kernels = kernel_profile(lambda: run(False), args.frames) if device.type == "cuda" and args.kernel_time else {}
    record = {
        **({"arch": args.arch} if args.arch != "stcn" else {}),
        "engine": args.engine,
        "fold_bn": args.engine == "corrvos" and args.fold_bn,
        "device": args.device,
        "amp": args.amp,
        "frames": args.frames,
        "size": [args.height, args.width],
        "objects": args.objects,
        "seconds": seconds,
        "fps": args.frames / seconds,
        "all_seconds": times,
        "best_seconds": min(times),
        "best_fps": args.frames / min(times),
        **kernels,
        "threads": torch.get_num_threads(),
        "tf32_conv": torch.backends.cudnn.allow_tf32,
        "peak_memory_mib": (
            torch.cuda.max_memory_allocated() / 2**20
            if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        ),
        "peak_memory_kind": "cuda max_memory_allocated" if device.type == "cuda" else "process max RSS",
    }
    if args.arch != "stcn" and probs:  # evidence that random weights give usable outputs
        labels = torch.stack([p.argmax(0) for p in probs])  # [T, H, W]
        record["finite"] = bool(all(torch.isfinite(p).all() for p in probs))
        record["label_fractions"] = (
            torch.bincount(labels.flatten(), minlength=probs[0].shape[0]).double() / labels.numel()
        ).tolist()
    if args.probs_out:
        torch.save(probs, args.probs_out)
    print("RESULT " + json.dumps(record), flush=True)
    return record


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--arch",
        choices=["stcn", "xmem", "cutie"],
        default="stcn",
        help="network (Cutie: base) and its engine defaults",
    )
    p.add_argument("--frames", type=int, default=20)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=854)
    p.add_argument("--objects", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--warmup", type=int, default=2, help="untimed passes before timing (default 2)")
    p.add_argument("--repeats", type=int, default=3, help="timed passes; the median is reported (default 3)")
    p.add_argument("--devices", nargs="+", default=["cpu", "cuda"], help="cuda is skipped when unavailable")
    p.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"], help="CUDA runs only")
    p.add_argument("--no-tf32", action="store_true", help="CUDA: disable TF32 convolutions/matmuls (exact fp32)")
    p.add_argument(
        "--fold-bn",
        action="store_true",
        help="corrvos: fold BatchNorm into the convs (as infer --fold-bn); faster, float-rounding diffs",
    )
    p.add_argument(
        "--kernel-time",
        action="store_true",
        help="CUDA: also profile one pass and report GPU kernel time and launches per frame",
    )
    p.add_argument(
        "--official-root",
        default=None,
        help="official checkout (optional; default .ref/STCN, .ref/XMem or .ref/Cutie by --arch)",
    )
    p.add_argument("--no-official", action="store_true", help="skip the official comparison")
    p.add_argument("--out", default=None, help="JSON file for the results")
    p.add_argument("--worker", choices=["corrvos", "official"], default=None, help=argparse.SUPPRESS)
    p.add_argument("--device", default=None, help=argparse.SUPPRESS)
    p.add_argument("--probs-out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.official_root is None:
        args.official_root = str(DEFAULT_OFFICIAL_ROOTS[args.arch])
    if args.worker:
        args.engine = args.worker
        worker(args)
        return 0

    engines = ["corrvos"]
    if not args.no_official and (Path(args.official_root) / OFFICIAL_MARKERS[args.arch]).is_file():
        engines.append("official")
    positions = -(-args.height // 16) * -(-args.width // 16)  # key positions of one (padded) frame
    if args.arch == "cutie" and "official" in engines and importlib.util.find_spec("omegaconf") is None:
        print("official Cutie skipped: its configs need omegaconf (pip install omegaconf)")
        engines.remove("official")
    if args.arch in ("xmem", "cutie") and "official" in engines and positions < 30:
        # the official top-k (torch.topk with k = 30) fails while the memory holds fewer positions
        print(
            f"official {args.arch} skipped: a {args.height}x{args.width} frame has {positions} key positions < top_k 30"
        )
        engines.remove("official")
    devices = [d for d in args.devices if d != "cuda" or torch.cuda.is_available()]
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        for device in devices:
            amp = args.amp if device == "cuda" else "none"
            outs = {}
            for engine in engines:
                probs = str(Path(tmp) / f"{engine}_{device}.pt")
                cmd = [
                    sys.executable,
                    __file__,
                    "--worker",
                    engine,
                    "--arch",
                    args.arch,
                    "--device",
                    device,
                    "--amp",
                    amp,
                    "--frames",
                    str(args.frames),
                    "--height",
                    str(args.height),
                    "--width",
                    str(args.width),
                    "--objects",
                    str(args.objects),
                    "--seed",
                    str(args.seed),
                    "--warmup",
                    str(args.warmup),
                    "--repeats",
                    str(args.repeats),
                    "--official-root",
                    args.official_root,
                    "--probs-out",
                    probs,
                    *(["--no-tf32"] if args.no_tf32 else []),
                    *(["--fold-bn"] if args.fold_bn else []),
                    *(["--kernel-time"] if args.kernel_time else []),
                ]
                pythonpath = os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])
                env = dict(os.environ, PYTHONPATH=pythonpath)
                res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
                lines = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")]
                if res.returncode != 0 or not lines:
                    print(f"{engine} on {device} failed:\n{res.stderr[-3000:]}", file=sys.stderr)
                    continue
                record = json.loads(lines[-1][len("RESULT ") :])
                outs[engine] = probs
                records.append(record)
                kernel = (
                    f"  GPU kernels {record['kernel_ms_per_frame']:.3f} ms/frame "
                    f"({record['kernels_per_frame']:.0f} launches)"
                    if "kernel_ms_per_frame" in record
                    else ""
                )
                arch = f"{args.arch} " if args.arch != "stcn" else ""
                print(
                    f"{arch}{engine:8s} {device:4s} amp={amp:4s} {record['fps']:8.2f} FPS "
                    f"(best pass {record['best_fps']:.2f})  peak {record['peak_memory_mib']:9.1f} MiB "
                    f"({record['peak_memory_kind']}){kernel}",
                    flush=True,
                )
            if len(outs) == 2:
                a, b = torch.load(outs["corrvos"], weights_only=True), torch.load(outs["official"], weights_only=True)
                diff = max(float((x - y).abs().max()) for x, y in zip(a, b, strict=True))
                same = float(np.mean([torch.equal(x.argmax(0), y.argmax(0)) for x, y in zip(a, b, strict=True)]))
                print(
                    f"corrvos vs official on {device}: max |prob diff| = {diff:.3g} over {len(a)} frames, "
                    f"identical label maps on {same:.0%} of the frames"
                )
                records.append({"compare": device, "max_abs_prob_diff": diff, "identical_label_frames": same})
    by = {(r["engine"], r["device"]): r for r in records if "engine" in r}
    for device in devices:
        ours, ref = by.get(("corrvos", device)), by.get(("official", device))
        if ours and ref:
            ratio = {
                "speed_ratio": ref["seconds"] / ours["seconds"],  # > 1: corrvos is faster
                "best_speed_ratio": ref["best_seconds"] / ours["best_seconds"],
            }
            if "kernel_ms_per_frame" in ours and "kernel_ms_per_frame" in ref:
                ratio["kernel_time_ratio"] = ref["kernel_ms_per_frame"] / ours["kernel_ms_per_frame"]
            print(f"corrvos / official speed on {device}: " + ", ".join(f"{k} {v:.3f}" for k, v in ratio.items()))
            records.append({"ratios": device, **ratio})
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(records, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
