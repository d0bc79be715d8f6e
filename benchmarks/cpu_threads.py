"""How much the intra-op thread count matters on a small or busy CPU machine (issues #10 and #21).

PyTorch starts one OpenMP thread per core. When other work shares the cores (a second process, a test worker, a
data loader), its threads spin-wait for each other and a step can get several times slower than with fewer
threads. This script measures it side by side in one run:

- workload: STCN inference on a generated clip (``make_video`` / ``build_model`` of ``inference_speed.py``:
  random weights, seeded), ``--frames`` frames at ``--size``, one memory frame every 5 frames, the median
  seconds per frame after ``--warmup`` frames;
- threads: ``torch.set_num_threads(n)`` for each ``--threads`` value (each in a fresh subprocess, so OpenMP's
  pool is created with that size); ``auto`` is what the corrvos commands choose by default
  (:func:`corrvos.cpu_threads.configure_threads` with ``OMP_NUM_THREADS`` unset: the usable cores minus the load
  of other processes), and the count it chose is recorded;
- load: ``--busy`` values, the number of competing processes started first, each a 1-thread matrix-multiply
  loop that keeps one core busy (what a second training job, a DataLoader worker or an xdist test worker does).

Reported: seconds per frame (and frames per second) for every (busy, threads) pair and its ratio to the fastest
thread count at the same load. Prints a table, writes JSON.

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


def _measure(threads: str, frames: int, warmup: int, size: tuple[int, int]) -> tuple[float, int]:
    """(median seconds per frame, threads used) of STCN inference with ``threads`` intra-op threads (an integer, or
    "auto" for corrvos's default choice), run in a subprocess."""
    setup = "configure_threads(None)" if threads == "auto" else f"torch.set_num_threads({int(threads)})"
    code = f"""
import json, statistics, sys, time
sys.path.insert(0, {str(HERE)!r})
import torch
from corrvos.cpu_threads import configure_threads
{setup}
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
print(json.dumps([statistics.median(times[{warmup}:]), torch.get_num_threads()]))
"""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    if threads != "auto":
        env |= {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    seconds, used = json.loads(out.stdout.strip().splitlines()[-1])
    return float(seconds), int(used)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--threads", nargs="+", default=["1", "2", "auto"], help="intra-op thread counts, or auto (corrvos's choice)"
    )
    parser.add_argument("--busy", type=int, nargs="+", default=[0, 1], help="competing busy processes")
    parser.add_argument("--frames", type=int, default=10, help="timed frames per run")
    parser.add_argument("--warmup", type=int, default=2, help="untimed first frames")
    parser.add_argument("--size", type=int, nargs=2, default=[240, 432], metavar=("H", "W"))
    parser.add_argument("--out", default=None, help="JSON file to write")
    args = parser.parse_args()
    for value in args.threads:
        if value != "auto" and not (value.isdigit() and int(value) >= 1):
            parser.error(f"--threads: {value!r} is neither a positive integer nor auto")
    load_at_start = os.getloadavg()  # 1, 5 and 15-minute load averages before the first measurement

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
        best = min(s for s, _ in timings.values())
        rows += [
            {"busy": busy, "threads": n, "used": used, "s_per_frame": s, "fps": 1 / s, "vs_best": s / best}
            for n, (s, used) in timings.items()
        ]

    print(f"STCN inference, {args.size[0]}x{args.size[1]} (HxW), {os.cpu_count()} CPU cores")
    print(f"{'busy procs':>10} {'threads':>8} {'used':>5} {'s/frame':>9} {'FPS':>6} {'x fastest':>10}")
    for r in rows:
        print(
            f"{r['busy']:>10} {r['threads']:>8} {r['used']:>5} {r['s_per_frame']:>9.3f} {r['fps']:>6.2f} "
            f"{r['vs_best']:>10.2f}"
        )
    if args.out:
        record = {
            "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "load_at_start": load_at_start},
            "settings": vars(args),
            "rows": rows,
        }
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(args.out).with_suffix(".json.tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        tmp.replace(args.out)  # atomic
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
