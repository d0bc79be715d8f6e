"""Training-step cost of STCN with the correspondence losses off, in paper mode and in official mode.

Each mode runs in its own subprocess (clean peak-memory numbers): build the model, the clip unroller, the task
and the optimiser exactly as ``corrvos train`` does, then time full steps (forward, losses, backward, optimiser)
on a fixed random clip batch after a warm-up. Modes:

- ``none``: STCN (arch "stcn"), L_SEG only, the baseline;
- ``paper``: STCN (arch "stcn") + L_PCL + L_OCL with the projection head (weights at full ramp);
- ``official``: the release's network (arch "stcn_corr") + temp + cross_key on the second view.

Usage::

    python benchmarks/train_step.py                         # CUDA if available (384 x 384, batch 8), else CPU
    python benchmarks/train_step.py --device cpu --crop 128 --batch 2 --steps 5

Prints a Markdown table: seconds per step, the overhead relative to ``none`` and the peak memory (CUDA: peak
allocated; CPU: peak resident set size of the process). The paper-mode overhead must stay within 10 %.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

MODES = {"none": "stcn", "paper": "stcn", "official": "stcn_corr"}


def _random_batch(batch: int, frames: int, objects: int, size: int, device, seed: int = 0):
    import torch

    from corrvos.types import ClipBatch

    g = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, frames, 3, size, size, generator=g)  # [B, T, 3, H, W]
    labels = torch.zeros(batch, frames, size, size, dtype=torch.long)  # [B, T, H, W]
    for b in range(batch):
        for k in range(1, objects + 1):
            y0, x0 = (int(v) for v in torch.randint(0, size // 2, (2,), generator=g))
            h, w = (int(v) for v in torch.randint(size // 8, size // 2, (2,), generator=g))
            for t in range(frames):
                labels[b, t, y0 + t : y0 + t + h, x0 + t : x0 + t + w] = k  # a box drifting by 1 px per frame
    slots = torch.arange(1, objects + 1).view(1, 1, objects, 1, 1)
    masks = (labels.unsqueeze(2) == slots).float()  # [B, T, N, H, W]
    selector = torch.ones(batch, objects)
    return ClipBatch(images, masks, labels, selector, [f"clip{b}" for b in range(batch)]).to(device)


def run_mode(args: argparse.Namespace) -> dict:
    """Time one mode in this process; returns the measurements."""
    import resource

    import torch

    from corrvos.config import LossConfig
    from corrvos.models import build_model
    from corrvos.models.heads import ProjectionHead
    from corrvos.models.params import optimizer_groups
    from corrvos.training.task import CorrespondenceTask
    from corrvos.training.trainer import freeze_batchnorm, resolve_amp
    from corrvos.training.unroll import ClipUnroller

    device = torch.device(args.device)
    torch.manual_seed(0)
    mode = args.mode
    loss_cfg = LossConfig(
        mode=mode,
        pcl_ramp_start=0,
        pcl_ramp_end=0,
        ocl_ramp_start=0,
        ocl_ramp_end=0,
        official_ramp_start=0,
        official_ramp_end=0,
        dice_weight=0.4 if mode == "official" else 0.0,
    )
    model = build_model(MODES[mode]).to(device)
    head = (
        ProjectionHead(1024, loss_cfg.ocl_hidden_dim, loss_cfg.ocl_embed_dim).to(device)
        if loss_cfg.uses_projection_head
        else None
    )
    unroller = ClipUnroller(model, second_view=mode == "official").train()
    freeze_batchnorm(unroller)
    groups = optimizer_groups(model, [head] if head is not None else [], lr=1e-5, encoder_scale=0.2, deep_scale=0.4)
    opt = torch.optim.AdamW(groups, lr=1e-5, weight_decay=1e-7)
    amp = resolve_amp(args.amp, device)
    scaler = torch.amp.GradScaler(device.type) if amp == torch.float16 else None
    task = CorrespondenceTask(unroller, loss_cfg, proj_head=head, amp_dtype=amp)
    batch = _random_batch(args.batch, args.frames, 2, args.crop, device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def step(i: int) -> None:
        out = task.step(batch, step=100_000, seed=i)
        opt.zero_grad(set_to_none=True)
        (scaler.scale(out["loss"]) if scaler is not None else out["loss"]).backward()
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()

    for i in range(args.warmup):
        step(i)
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for i in range(args.steps):
        sync()
        t0 = time.perf_counter()
        step(args.warmup + i)
        sync()
        times.append(time.perf_counter() - t0)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB (Linux)
    times.sort()
    return {
        "mode": mode,
        "arch": MODES[mode],
        "median_s": times[len(times) // 2],
        "min_s": times[0],
        "peak_mib": peak,
        "device": str(device),
        "amp": str(amp),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--crop", type=int, default=None, help="square crop (default 384 on CUDA, 128 on CPU)")
    parser.add_argument("--batch", type=int, default=None, help="clips per step (default 8 on CUDA, 2 on CPU)")
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--amp", default="auto", choices=["auto", "off", "bf16", "fp16"])
    parser.add_argument("--modes", default="none,paper,official")
    parser.add_argument("--mode", help=argparse.SUPPRESS)  # internal: run one mode in this process
    args = parser.parse_args(argv)

    from corrvos.devices import resolve_device

    args.device = str(resolve_device(args.device, option="--device"))
    cuda = args.device.startswith("cuda")
    args.crop = args.crop or (384 if cuda else 128)
    args.batch = args.batch or (8 if cuda else 2)
    if args.mode:
        print(json.dumps(run_mode(args)))
        return 0
    rows = []
    for mode in args.modes.split(","):
        cmd = [
            sys.executable,
            __file__,
            "--mode",
            mode,
            "--device",
            args.device,
            "--crop",
            str(args.crop),
            "--batch",
            str(args.batch),
            "--frames",
            str(args.frames),
            "--steps",
            str(args.steps),
            "--warmup",
            str(args.warmup),
            "--amp",
            args.amp,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return proc.returncode
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    base = next((r["median_s"] for r in rows if r["mode"] == "none"), None)
    print(
        f"device {rows[0]['device']}, amp {rows[0]['amp']}, batch {args.batch}, {args.frames} frames, "
        f"crop {args.crop}x{args.crop}, median of {args.steps} steps after {args.warmup} warm-up\n"
    )
    print("| mode | arch | s / step | overhead vs none | peak memory (MiB) |")
    print("|---|---|---|---|---|")
    for r in rows:
        over = f"{100 * (r['median_s'] / base - 1):+.1f} %" if base else "n/a"
        print(f"| {r['mode']} | {r['arch']} | {r['median_s']:.3f} | {over} | {r['peak_mib']:.0f} |")
    paper = next((r for r in rows if r["mode"] == "paper"), None)
    if base and paper:
        ok = paper["median_s"] <= 1.10 * base
        print(
            f"\npaper-mode overhead {100 * (paper['median_s'] / base - 1):.1f} % "
            f"({'within' if ok else 'ABOVE'} the 10 % budget)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
