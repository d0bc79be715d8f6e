"""Training-step cost of STCN, XMem and Cutie with the correspondence losses off, in paper mode and in official mode,
and of the official trainers on the same batch.

Each variant runs in its own subprocess (clean peak-memory numbers): build the model, the clip unroller, the task
and the optimiser exactly as ``corrvos train`` does, then time full steps (forward, losses, backward, optimiser)
on a fixed random clip batch after a warm-up. Variants (``--arch stcn``, ``--arch xmem`` or both):

- ``stcn/none``: STCN (arch "stcn"), L_SEG only, 3-frame clips, the baseline of the STCN rows;
- ``stcn/paper``: the same + L_PCL + L_OCL with the projection head (weights at full ramp);
- ``stcn/official``: the release's network (arch "stcn_corr") + temp + cross_key on the second view;
- ``xmem/none``: XMem, L_SEG (bootstrapped CE + XMem's Dice), 8-frame clips with 3 memory frames and random deep
  updates, 3 objects; the baseline of the XMem rows;
- ``xmem/paper``: the same + L_PCL (XMem's similarity) + L_OCL;
- ``xmem/official``: XMem with our ``key_proj2`` head + temp + cross_key;
- ``cutie/none``: Cutie-base through its own unroller (8-frame clips, 3 memory frames, deep updates with p = 0.2,
  3 objects) with its L_SEG (point-sampled CE + Dice and the auxiliary losses); ``cutie/paper``: the same + L_PCL
  (Cutie's keys, shrinkage and selection) + L_OCL. (No official-code row for Cutie yet.)
- ``stcn/official-code`` and ``xmem/official-code`` (only when the official checkouts are in ``.ref/STCN`` and
  ``.ref/XMem``): the official trainers' ``do_pass`` on the same batch, driven on the device by the test helpers
  ``tests/official_stcn.py`` / ``tests/official_xmem.py``, timed in A/B pairs against corrvos's ``none`` step in
  the same process. ``do_pass`` includes forward, losses and backward but its optimiser is a no-op there, so the
  comparison is forward + backward on both sides; both run in fp32 (official AMP off: pass ``--amp off``).

Usage::

    python benchmarks/train_step.py                               # CUDA if available (384 x 384, batch 8), else CPU
    python benchmarks/train_step.py --device cpu --crop 64 --batch 2 --steps 5 --amp off --json out.json

Prints a Markdown table (seconds per step, the overhead relative to the arch's ``none`` row, peak memory: CUDA
peak allocated, CPU peak resident set size) and writes it as JSON. The paper-mode overhead must stay within 10 %.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {
    "stcn/none": ("stcn", "none"),
    "stcn/paper": ("stcn", "paper"),
    "stcn/official": ("stcn_corr", "official"),
    "stcn/official-code": ("stcn", "official-code"),
    "xmem/none": ("xmem", "none"),
    "xmem/paper": ("xmem", "paper"),
    "xmem/official": ("xmem", "official"),
    "xmem/official-code": ("xmem", "official-code"),
    "cutie/none": ("cutie", "none"),
    "cutie/paper": ("cutie", "paper"),
}
CLIP = {"stcn": (3, 2), "xmem": (8, 3), "cutie": (8, 3)}  # frames, objects per clip of each family's recipe


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


def _official_step_fn(family: str, batch, device):
    """A closure running one official ``do_pass`` (forward, losses, backward) on ``batch``."""
    import torch

    sys.path.insert(0, str(REPO / "tests"))
    if family == "stcn":
        from official_stcn import HAS_REF, build_official_stcn, official_stcn_batch, official_stcn_step

        if not HAS_REF:
            raise SystemExit("skip: .ref/STCN is absent")
        official = build_official_stcn(single_object=False)
        official.network.to(device)
        data = official_stcn_batch(batch, single_object=False)
        return lambda i: official_stcn_step(official, dict(data), it=100_000)
    from official_xmem import REF, build_official_xmem, import_official_trainer, official_training_step

    if not (REF / "model" / "trainer.py").is_file():
        raise SystemExit("skip: .ref/XMem is absent")
    torch.manual_seed(0)
    net, _ = build_official_xmem()
    net.to(device).eval()
    trainer_mod = import_official_trainer()
    t = batch.frames.shape[1]
    draws = torch.Generator().manual_seed(0)

    def run(i: int) -> None:
        from corrvos.training.unroll import draw_memory_frames

        memory = {ti: draw_memory_frames(ti, batch.frames.shape[0], 3, draws) for ti in range(4, t)}
        deep = {ti: bool(torch.rand((), generator=draws) < 0.2) for ti in range(1, t - 1)}
        official_training_step(
            trainer_mod, net, batch, it=100_000, num_ref_frames=3, memory_frames=memory, deep_updates=deep
        )

    return run


def _corrvos_fns(family: str, mode: str, batch, device, amp):
    """(fwd_bwd(i), step(i)) of a corrvos training step built as ``corrvos train`` does."""
    import torch

    from corrvos.config import LossConfig
    from corrvos.families import family as family_entry
    from corrvos.models import build_model
    from corrvos.models.heads import ProjectionHead
    from corrvos.models.params import optimizer_groups
    from corrvos.training.task import CorrespondenceTask
    from corrvos.training.trainer import freeze_batchnorm
    from corrvos.training.unroll import UnrollPolicy, build_unroller

    torch.manual_seed(0)
    arch = "stcn_corr" if (family == "stcn" and mode == "official") else family
    ramps = {f"{k}_ramp_{e}": 0 for k in ("pcl", "ocl", "official") for e in ("start", "end")}
    dice = {"dice_weight": 1.0, "dice_mode": "objects"} if family == "xmem" else {"dice_weight": 0.4 * (mode != "none")}
    if family == "cutie":
        dice = {}  # Cutie's L_SEG is its own (Family.segmentation_loss)
    loss_cfg = LossConfig(mode=mode, **ramps, **dice)
    extra = {"aux_key_head": True} if (family == "xmem" and mode == "official") else {}
    model = build_model(arch, **extra).to(device)
    head = None
    if loss_cfg.uses_projection_head:
        head = ProjectionHead(1024, loss_cfg.ocl_hidden_dim, loss_cfg.ocl_embed_dim).to(device)
    policy = UnrollPolicy(3, 0.2) if family in ("xmem", "cutie") else UnrollPolicy()
    unroller = build_unroller(model, policy=policy, second_view=mode == "official").train()
    freeze_batchnorm(unroller)
    owner = family_entry(family)
    groups = optimizer_groups(
        model,
        [head] if head is not None else [],
        lr=1e-5,
        encoder_scale=1.0,
        deep_scale=1.0,
        encoders=owner.encoders,
        deep_layers=owner.encoder_deep_layers,
        no_decay=owner.no_decay,
    )
    opt = torch.optim.AdamW(groups, lr=1e-5, weight_decay=0.05)
    scaler = torch.amp.GradScaler(device.type) if amp == torch.float16 else None
    seg = owner.segmentation_loss
    task = CorrespondenceTask(unroller, loss_cfg, proj_head=head, amp_dtype=amp, segmentation=seg)

    def fwd_bwd(i: int) -> None:
        out = task.step(batch, step=100_000, seed=i)
        opt.zero_grad(set_to_none=True)
        (scaler.scale(out["loss"]) if scaler is not None else out["loss"]).backward()

    def step(i: int) -> None:
        fwd_bwd(i)
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()

    return fwd_bwd, step


def run_variant(args: argparse.Namespace) -> dict:
    """Time one variant in this process; returns the measurements.

    ``official-code`` variants time the official ``do_pass`` and corrvos's ``none`` forward + backward on the same
    batch alternately in this one process (A/B pairs, so drift and background load hit both alike) and report the
    median of the per-pair ratios.
    """
    import resource

    import torch

    from corrvos.training.trainer import resolve_amp

    device = torch.device(args.device)
    family = args.variant.split("/")[0]
    arch, mode = VARIANTS[args.variant]
    frames, objects = CLIP[family]
    batch = _random_batch(args.batch, frames, objects, args.crop, device)
    amp = resolve_amp(args.amp, device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def once(fn, i: int) -> float:
        sync()
        t0 = time.perf_counter()
        fn(i)
        sync()
        return time.perf_counter() - t0

    def median(values: list[float]) -> float:
        return sorted(values)[len(values) // 2]

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    row = {"variant": args.variant, "arch": arch, "mode": mode, "frames": frames, "objects": objects}
    if mode == "official-code":
        theirs = _official_step_fn(family, batch, device)
        ours, _ = _corrvos_fns(family, "none", batch, device, amp)
        for i in range(args.warmup):
            ours(i)
            theirs(i)
        pairs = [(once(ours, args.warmup + i), once(theirs, args.warmup + i)) for i in range(args.steps)]
        row.update(
            fwd_bwd_s=median([t for _, t in pairs]),
            corrvos_fwd_bwd_s=median([o for o, _ in pairs]),
            corrvos_vs_official=median([o / t for o, t in pairs]),
            step_s=None,
        )
    else:
        fwd_bwd, step = _corrvos_fns(family, mode, batch, device, amp)
        for i in range(args.warmup):
            step(i)
        row.update(
            fwd_bwd_s=median([once(fwd_bwd, args.warmup + i) for i in range(args.steps)]),
            step_s=median([once(step, 2 * args.warmup + args.steps + i) for i in range(args.steps)]),
        )
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB (Linux)
    row.update(peak_mib=peak, device=str(device), amp=str(amp))
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:K")
    parser.add_argument(
        "--arch", default="all", choices=["stcn", "xmem", "cutie", "all"], help="which model family's rows"
    )
    parser.add_argument("--crop", type=int, default=None, help="square crop (default 384 on CUDA, 128 on CPU)")
    parser.add_argument("--batch", type=int, default=None, help="clips per step (default 8 on CUDA, 2 on CPU)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per variant (the median is reported)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before timing")
    parser.add_argument("--amp", default="auto", choices=["auto", "off", "bf16", "fp16"], help="corrvos autocast")
    parser.add_argument("--no-official", action="store_true", help="skip the official trainers' rows")
    parser.add_argument("--json", default=None, help="write the rows here (default benchmarks/results/...)")
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # internal: run one variant in this process
    args = parser.parse_args(argv)

    from corrvos.devices import resolve_device

    args.device = str(resolve_device(args.device, option="--device"))
    cuda = args.device.startswith("cuda")
    args.crop = args.crop or (384 if cuda else 128)
    args.batch = args.batch or (8 if cuda else 2)
    if args.variant:
        print(json.dumps(run_variant(args)))
        return 0
    families = ["stcn", "xmem", "cutie"] if args.arch == "all" else [args.arch]
    names = [v for v in VARIANTS if v.split("/")[0] in families]
    if args.no_official:
        names = [v for v in names if not v.endswith("official-code")]
    rows = []
    for name in names:
        cmd = [sys.executable, __file__, "--variant", name, "--device", args.device, "--crop", str(args.crop)]
        cmd += ["--batch", str(args.batch), "--steps", str(args.steps), "--warmup", str(args.warmup), "--amp", args.amp]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if "skip:" in proc.stderr + proc.stdout:
            print(f"{name}: skipped ({(proc.stderr + proc.stdout).strip().splitlines()[-1]})", file=sys.stderr)
            continue
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return proc.returncode
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(
        f"device {rows[0]['device']}, amp {rows[0]['amp']}, batch {args.batch}, crop {args.crop}x{args.crop}, "
        f"median of {args.steps} steps after {args.warmup} warm-up\n"
    )
    print("| variant | arch | frames | s / step | fwd+bwd s | overhead vs none (step) | peak memory (MiB) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        family = r["variant"].split("/")[0]
        base = next((x for x in rows if x["variant"] == f"{family}/none"), None)
        over = "n/a"
        if base and r["step_s"] is not None:
            r["overhead_vs_none"] = r["step_s"] / base["step_s"] - 1
            over = f"{100 * r['overhead_vs_none']:+.1f} %"
        step = "—" if r["step_s"] is None else f"{r['step_s']:.3f}"
        print(
            f"| {r['variant']} | {r['arch']} | {r['frames']} | {step} | {r['fwd_bwd_s']:.3f} | {over} "
            f"| {r['peak_mib']:.0f} |"
        )
    for r in rows:
        if "corrvos_vs_official" in r:
            print(
                f"{r['variant']}: corrvos forward+backward {r['corrvos_fwd_bwd_s']:.3f} s vs official "
                f"{r['fwd_bwd_s']:.3f} s, paired ratio {r['corrvos_vs_official']:.2f}x (A/B in one process)"
            )
    for family in families:
        paper = next((r for r in rows if r["variant"] == f"{family}/paper"), None)
        if paper and "overhead_vs_none" in paper:
            ok = paper["overhead_vs_none"] <= 0.10
            print(
                f"{family}: paper-mode overhead {100 * paper['overhead_vs_none']:.1f} % "
                f"({'within' if ok else 'ABOVE'} the 10 % budget)"
            )
    out = Path(args.json) if args.json else REPO / "benchmarks" / "results" / f"train_step_{rows[0]['device']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    settings = {"batch": args.batch, "crop": args.crop, "steps": args.steps, "warmup": args.warmup, "amp": args.amp}
    out.write_text(json.dumps({"settings": settings, "rows": rows}, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
