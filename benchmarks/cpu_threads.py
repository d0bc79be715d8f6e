"""How much the intra-op thread count matters on a small or busy CPU machine (issue #10: OMP_NUM_THREADS).

PyTorch starts one OpenMP thread per core. When other work shares the cores (a second process, a test worker, a
data loader), its threads spin-wait for each other and a step can get several times slower than with fewer
threads. This script measures it side by side in one run:

- workload: STCN inference on a generated clip (``make_video`` / ``build_model`` of ``inference_speed.py``:
  random weights, seeded), ``--frames`` frames at ``--size``, one memory frame every 5 frames, the median
  seconds per frame after ``--warmup`` frames;
- threads: ``torch.set_num_threads(n)`` for each ``--threads`` value (each in a fresh subprocess, so OpenMP's
  pool is created with that size);
- load: ``--busy`` values, the number of competing processes started first, each a 1-thread matrix-multiply
  loop that keeps one core busy (what a second training job, a DataLoader worker or an xdist test worker does).

Reported: seconds per frame for every (busy, threads) pair and its ratio to the fastest thread count at the same
load. Prints a table, writes JSON.

Usage:
    python benchmarks/cpu_threads.py --out benchmarks/results/cpu_threads.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

_BUSY = "import torch, time\ntorch.set_num_threads(1)\na = torch.rand(256, 256)\nwhile True:\n    a = (a @ a).tanh()\n"


def _measure(threads: int, frames: int, warmup: int, size: tuple[int, int]) -> float:
    """Median seconds per frame of STCN inference with ``threads`` intra-op threads (run in a subprocess)."""
    code = f"""
import json, statistics, sys, time
sys.path.insert(0, {str(HERE)!r})
import torch
torch.set_num_threads({threads})
from inference_speed import build_model, make_video
from corrvos.inference import InferenceConfig, InferenceCore
frames, mask = make_video({frames + warmup}, {size[0]}, {size[1]}, objects=2, seed=0)
mask = torch.from_numpy(mask.astype("int64"))
model = build_model(0, "stcn")
core = InferenceCore(model, InferenceConfig(top_k=20, mem_every=5), video_length=len(frames))
times = []
with torch.inference_mode():
    for t, image in enumerate(frames):
        start = time.perf_counter()
        core.step(image, mask if t == 0 else None, end=t == len(frames) - 1)
        times.append(time.perf_counter() - start)
print(json.dumps(statistics.median(times[{warmup}:])))
"""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2, 4], help="intra-op thread counts")
    parser.add_argument("--busy", type=int, nargs="+", default=[0, 1], help="competing busy processes")
    parser.add_argument("--frames", type=int, default=12, help="timed frames per run")
    parser.add_argument("--warmup", type=int, default=3, help="untimed first frames")
    parser.add_argument("--size", type=int, nargs=2, default=[240, 432], metavar=("H", "W"))
    parser.add_argument("--out", default=None, help="JSON file to write")
    args = parser.parse_args()

    rows = []
    for busy in args.busy:
        workers = [subprocess.Popen([sys.executable, "-c", _BUSY]) for _ in range(busy)]
        try:
            time.sleep(1.0 if busy else 0.0)
            timings = {n: _measure(n, args.frames, args.warmup, tuple(args.size)) for n in args.threads}
        finally:
            for w in workers:
                w.kill()
                w.wait()
        best = min(timings.values())
        rows += [{"busy": busy, "threads": n, "s_per_frame": s, "vs_best": s / best} for n, s in timings.items()]

    print(f"STCN inference, {args.size[0]}x{args.size[1]} (HxW), {os.cpu_count()} CPU cores")
    print(f"{'busy procs':>10} {'threads':>8} {'s/frame':>9} {'x fastest':>10}")
    for r in rows:
        print(f"{r['busy']:>10} {r['threads']:>8} {r['s_per_frame']:>9.3f} {r['vs_best']:>10.2f}")
    if args.out:
        record = {
            "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
            "settings": vars(args),
            "rows": rows,
        }
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
