"""`corrvos visualize`: the figures of the supplement (Figs. S1-S9) for any checkpoint, run or result folder.

Four views, each a sub-command: ``correspondence`` (Fig. S3), ``matches`` (Fig. S1), ``curves`` (Fig. S2) and
``compare`` (Figs. S4-S9). The drawing lives in :mod:`corrvos.visualize`; this module parses options, loads the
models and prints what was written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from corrvos.devices import device_option

HELP = "draw the paper's figures: matching responses, object matches, loss curves, result comparisons"
DESCRIPTION = """\
Draw the figures of the supplementary material for your own checkpoints, runs and results.

views:
  correspondence  matching responses of query pixels of frame t over frame tau (Fig. S3), one column per
                  checkpoint: the model's own memory-read weights with tau as the only memory frame
  matches         object-level matching of two distant frames as L_OCL does it (Fig. S1): RoIAlign
                  embeddings of the ground-truth boxes, cosine similarity, Hungarian assignment
  curves          loss curves (total, L_SEG, L_PCL, L_OCL) of training runs from their TensorBoard logs (Fig. S2)
  compare         ground truth and several result folders side by side with per-object J&F (Figs. S4-S9)

Run `corrvos visualize VIEW --help` for the options of a view.

examples:
  corrvos visualize correspondence --model stcn.pth --model ours.pth \\
      --video data/DAVIS/JPEGImages/480p/bike-packing --masks data/DAVIS/Annotations/480p/bike-packing \\
      --frame 0 --target 60 --out figs/
  corrvos visualize matches --model runs/ours/checkpoints/step_0150000.pth \\
      --video data/DAVIS/JPEGImages/480p/dogs-jump --masks data/DAVIS/Annotations/480p/dogs-jump \\
      --frame 0 --target 40 --out figs/
  corrvos visualize curves --run runs/stcn --run runs/ours --labels STCN STCN+Ours --out figs/curves.png
  corrvos visualize compare --images data/DAVIS/JPEGImages/480p --gt data/DAVIS/Annotations/480p \\
      --results output/stcn output/ours --labels STCN Ours --sequences dogs-jump --out figs/compare
"""

FRAMES_NOTE = """
Frames are indexed 0..T-1 in sorted file-name order of the --video folder (negative indices count from the
end); the mask of a frame is the PNG of the same name in --masks. Frames are fed to the network as inference
does: ImageNet-normalised and zero-padded to multiples of 16, at their own resolution.
"""

CORRESPONDENCE_DESCRIPTION = (
    """\
Matching responses between two distant frames (Fig. S3). For every query pixel of frame t, the response over
frame tau is softmax_i S(k_tau_i, q_t) over all positions i of tau's stride-16 key grid, with S the model's own
similarity (STCN: L2; XMem: anisotropic L2 with tau's shrinkage and t's selection): exactly the weights the
memory read would give that pixel with tau as the only memory frame. Each response sums to 1 over tau.

The figure has one row per query point; the first column shows frame t with the point, then one column per
--model shows tau with the response as a heat map, the peak as a cross, and the object outlines of tau when
--masks is given. Every map shares one colour scale (0 to the largest weight of the figure), drawn as a colour
bar under the grid, on which a line marks the uniform weight 1/N (N = positions of tau's key grid); titles give
each peak as a multiple of 1/N.
Output: OUT/correspondence_<t id>_<tau id>.png.
"""
    + FRAMES_NOTE
)

MATCHES_DESCRIPTION = (
    """\
Object-level matching between two distant frames as L_OCL matches them (Fig. S1): the boxes of the
ground-truth objects of frames t and tau, their embeddings AvgPool(PROJ(RoIAlign(res4, box))), the cosine
similarity matrix and the Hungarian assignment (identities are not used to match). Links are labelled with
their cosine similarity, green when both boxes carry the same ground-truth id, red otherwise.

PROJ is the trained projection head of L_OCL. corrvos checkpoints of runs whose loss uses L_OCL hold it
(checkpoints/step_*.pth and <stage>_final.pth, under extra.proj_head; a <stage>_final.pth written before it was
kept there borrows it from the step_*.pth of the same step). Other files (official weights, runs without
L_OCL) have no head: the raw pooled res4 features are used and a note says so.
Output: OUT/matches_<t id>_<tau id>.png and .json (similarity matrix and pairs).
"""
    + FRAMES_NOTE
)

CURVES_DESCRIPTION = """\
Loss curves of one or more training runs (Fig. S2), read from their TensorBoard logs (RUN/tb, as written by
`corrvos train`, or a folder of event files). One panel per loss: total (train/loss), L_SEG, L_PCL, L_OCL
(train/terms/seg, pcl, ocl) and, for runs of loss mode "official", temp and cross_key; panels no run logs are
left out. Runs share the axes of each panel; raw values are drawn faint and the smoothed ones solid. When a run
folder holds the trainer's config.yaml, the L_SEG and total panels mark where the bootstrapped cross-entropy
starts keeping only the hardest pixels (dashed line) and the span over which that fraction shrinks (grey), where
L_SEG rises although training improves; --tags iou adds the training foreground IoU, which does not jump.
Output: one PNG (500 x 360 pixels per panel, at most 3 panels per row, 4 panels as 2 x 2).
"""

COMPARE_DESCRIPTION = """\
Ground truth and two or more result folders side by side, frame by frame (Figs. S4-S9). All folders use the
DAVIS layout <root>/<sequence>/<frame id>.png (frames: <images>/<sequence>/<frame id>.jpg). Each row shows the
ground-truth overlay then one overlay per result; a result panel's title names the result, then gives the J&F
of every object by id (#1 0.52 ...) on this frame and over the video, from the evaluator of `corrvos eval`
(objects 1..N, N the largest id of the first ground-truth frame; first and last frames not scored in the video
value); * marks an object absent from this frame's ground truth (an empty prediction scores 1 there). Small
frames are enlarged for display (at least 240 pixels tall and 320 wide; masks by nearest neighbour).
Output: OUT/<sequence>/<frame id>.png per frame and OUT/<sequence>.mp4 per sequence.
"""


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def _add_frame_pair(p: argparse.ArgumentParser, masks_required: bool) -> None:
    from corrvos.cpu_threads import add_threads_argument

    p.add_argument("--video", required=True, metavar="DIR", help="frame folder of one sequence (.jpg / .png frames)")
    p.add_argument(
        "--masks",
        required=masks_required,
        metavar="DIR",
        help="annotation folder of the same sequence (palette PNGs named after the frames)"
        + ("" if masks_required else "; gives the automatic query points and the object outlines"),
    )
    p.add_argument("--frame", type=int, required=True, metavar="T", help="index of frame t (the query frame)")
    p.add_argument("--target", type=int, required=True, metavar="TAU", help="index of frame tau (the distant frame)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created if needed)")
    p.add_argument(
        "--device",
        type=device_option,
        default="auto",
        help="auto (cuda if available), cpu, cuda or cuda:K (default: auto)",
    )
    add_threads_argument(p)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from corrvos.families import checkpoint_sources

    sub = parser.add_subparsers(dest="view", metavar="VIEW", required=True)

    p = sub.add_parser(
        "correspondence",
        help="matching responses over a distant frame (Fig. S3)",
        description=CORRESPONDENCE_DESCRIPTION,
        formatter_class=_formatter,
    )
    p.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="CKPT",
        help=f"checkpoint (official {checkpoint_sources()} file or corrvos checkpoint) or a weight name of "
        "`corrvos download --list`; repeat to compare checkpoints, one column each",
    )
    p.add_argument("--labels", nargs="+", metavar="NAME", help="column titles, one per --model (default: file names)")
    _add_frame_pair(p, masks_required=False)
    p.add_argument(
        "--points",
        nargs="+",
        metavar="Y,X",
        help="query pixels of frame t as row,column (default: one per object of frame t's mask, at the object "
        "pixel nearest to its centroid; needs --masks)",
    )
    p.add_argument(
        "--top-k",
        type=int,
        default=None,
        metavar="K",
        help="keep only the k strongest positions, as the inference memory read does (default: full softmax)",
    )
    p.set_defaults(_view=run_correspondence)

    p = sub.add_parser(
        "matches",
        help="object matching of two distant frames (Fig. S1)",
        description=MATCHES_DESCRIPTION,
        formatter_class=_formatter,
    )
    p.add_argument(
        "--model",
        required=True,
        metavar="CKPT",
        help="checkpoint (any file corrvos can load) or a weight name listed by `corrvos download --list`",
    )
    _add_frame_pair(p, masks_required=True)
    p.add_argument(
        "--features",
        choices=("proj", "res4", "key"),
        default="proj",
        help="what is pooled in each box: proj = res4 through the trained projection head (raw res4 when the "
        "file has none), res4 = raw key-encoder stride-16 features, key = the 64-d matching keys (default: proj)",
    )
    p.set_defaults(_view=run_matches)

    p = sub.add_parser(
        "curves",
        help="loss curves of training runs (Fig. S2)",
        description=CURVES_DESCRIPTION,
        formatter_class=_formatter,
    )
    p.add_argument(
        "--run", action="append", required=True, metavar="DIR", help="run folder of `corrvos train`; repeat per run"
    )
    p.add_argument("--labels", nargs="+", metavar="NAME", help="legend names, one per --run (default: folder names)")
    p.add_argument(
        "--smoothing",
        type=float,
        default=0.6,
        help="TensorBoard's exponential smoothing weight in [0, 1); 0 draws the raw values only (default: 0.6)",
    )
    p.add_argument(
        "--tags",
        nargs="+",
        metavar="TAG",
        help="scalars to plot instead of the losses: trainer tags under train/ (e.g. loss, terms/seg, iou, "
        "grad_norm) or total, L_SEG, L_PCL, L_OCL",
    )
    p.add_argument("--log-y", action="store_true", help="logarithmic y axes")
    p.add_argument("--out", required=True, metavar="FILE.png", help="output PNG")
    p.set_defaults(_view=run_curves)

    p = sub.add_parser(
        "compare",
        help="results side by side with J&F (Figs. S4-S9)",
        description=COMPARE_DESCRIPTION,
        formatter_class=_formatter,
    )
    p.add_argument("--gt", required=True, metavar="DIR", help="ground truth: <DIR>/<sequence>/<frame id>.png")
    p.add_argument(
        "--results", nargs="+", required=True, metavar="DIR", help="result folders: <DIR>/<sequence>/<frame id>.png"
    )
    p.add_argument("--labels", nargs="+", metavar="NAME", help="panel titles, one per result (default: folder names)")
    p.add_argument("--images", required=True, metavar="DIR", help="frames: <DIR>/<sequence>/<frame id>.jpg")
    p.add_argument("--sequences", nargs="+", metavar="NAME", help="only these sequences (default: all of --gt)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created if needed)")
    p.add_argument("--fps", type=float, default=10.0, help="frame rate of the videos (default: 10)")
    p.add_argument("--no-video", action="store_true", help="write the frame PNGs only")
    p.set_defaults(_view=run_compare)


def run(args: argparse.Namespace) -> int:
    return int(args._view(args) or 0)


def _labels(given: list[str] | None, paths: list[str], option: str) -> list[str]:
    from corrvos.errors import ConfigError

    if given is not None:
        if len(given) != len(paths):
            raise ConfigError(f"--labels: {len(given)} name(s) for {len(paths)} {option}")
        return list(given)
    names = [Path(p).stem if Path(p).is_file() else Path(p).name for p in paths]
    return names if len(set(names)) == len(names) else list(paths)


def run_correspondence(args: argparse.Namespace) -> int:
    from corrvos.cli.engine_options import check_paths_early
    from corrvos.cpu_threads import configure_threads
    from corrvos.data.sequence import image_size
    from corrvos.devices import resolve_device
    from corrvos.errors import DataError
    from corrvos.models import load_model
    from corrvos.visualize.correspondence import make_correspondence_figure, parse_point
    from corrvos.visualize.inputs import FrameFolder

    labels = _labels(args.labels, args.model, "--model")
    points = [parse_point(p) for p in args.points] if args.points else None
    folder = FrameFolder(args.video, args.masks)
    frame = folder.check_index(args.frame, "--frame")
    folder.check_index(args.target, "--target")
    if points is not None:  # before the model load and the output folder
        height, width = image_size(folder.paths[frame])
        outside = [(y, x) for y, x in points if not (0 <= y < height and 0 <= x < width)]
        if outside:
            y, x = outside[0]
            bounds = f"{height}x{width}, HxW: y 0..{height - 1}, x 0..{width - 1}"
            raise DataError(folder.paths[frame], f"--points {y},{x} lies outside frame t ({bounds})")
    check_paths_early({}, {"--out": args.out})
    configure_threads(args.threads)
    device = resolve_device(args.device, option="--device")
    models = [load_model(m, map_location=device) for m in args.model]
    out = Path(args.out)  # created by the figure's write: a failure before it leaves no empty folder
    path, results = make_correspondence_figure(
        models, labels, folder, args.frame, args.target, out, points=points, top_k=args.top_k, device=device
    )
    for label, result in zip(labels, results, strict=True):
        peaks = ", ".join(
            f"({y},{x})->({py},{px})" for (y, x), (py, px) in zip(result.points, result.peaks(), strict=True)
        )
        print(f"{label}: query -> peak {peaks}")
    print(f"wrote {path}")
    return 0


def run_matches(args: argparse.Namespace) -> int:
    from corrvos.cli.engine_options import check_paths_early
    from corrvos.cpu_threads import configure_threads
    from corrvos.devices import resolve_device
    from corrvos.models import load_model
    from corrvos.visualize.inputs import FrameFolder
    from corrvos.visualize.matches import find_projection_head, make_matches_figure

    folder = FrameFolder(args.video, args.masks)
    folder.check_index(args.frame, "--frame")
    folder.check_index(args.target, "--target")
    check_paths_early({}, {"--out": args.out})
    configure_threads(args.threads)
    device = resolve_device(args.device, option="--device")
    model = load_model(args.model, map_location=device)
    source = find_projection_head(args.model, features=args.features)
    if source.head is not None:
        source.head.to(device)
    print(source.note)
    out = Path(args.out)  # created by the figure's write: a failure before it leaves no empty folder
    path, matches = make_matches_figure(model, source, folder, args.frame, args.target, out, device=device)
    print("cosine similarity (rows: objects of t, columns: objects of tau):")
    print("      " + " ".join(f"{k:>7}" for k in matches.ids_tau))
    for k, row in zip(matches.ids_t, matches.similarity.tolist(), strict=True):
        print(f"{k:>5} " + " ".join(f"{v:7.3f}" for v in row))
    for (i, j), ok in zip(matches.pairs, matches.correct, strict=True):
        verdict = "correct" if ok else "WRONG"
        print(f"object {matches.ids_t[i]} -> {matches.ids_tau[j]}: {matches.similarity[i, j]:.3f} {verdict}")
    print(f"wrote {path} and {path.with_suffix('.json').name}")
    return 0


def run_curves(args: argparse.Namespace) -> int:
    from corrvos.visualize.curves import check_smoothing, plot_curves, read_run, resolve_tag

    check_smoothing(args.smoothing)  # before reading anything
    labels = _labels(args.labels, args.run, "--run")
    tags = [resolve_tag(t) for t in args.tags] if args.tags else None
    runs = [read_run(r, *([tags] if tags else []), name=n) for r, n in zip(args.run, labels, strict=True)]
    path = plot_curves(runs, args.out, tags=tags, smoothing=args.smoothing, log_y=args.log_y)
    for r in runs:
        print(f"{r.name}: " + ", ".join(f"{t} ({len(s[0])} points)" for t, s in r.series.items()))
    print(f"wrote {path}")
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from corrvos.utils import make_output_dir
    from corrvos.visualize.compare import check_labels, compare_sequence, list_compare_sequences, plan_sequence

    results = [Path(r) for r in args.results]
    labels = check_labels(args.labels, results)
    gt, images = Path(args.gt), Path(args.images)
    names = list_compare_sequences(gt, images, results, args.sequences)
    plans = [plan_sequence(n, gt, images, results, labels) for n in names]  # every check before any output
    out = make_output_dir(args.out)
    for plan in plans:
        written = compare_sequence(plan, out, fps=args.fps, video=not args.no_video)
        video = f" and {written[-1]}" if not args.no_video else ""
        print(f"{plan.name}: {len(plan.frame_ids)} frames -> {out / plan.name}{video}")
    return 0
