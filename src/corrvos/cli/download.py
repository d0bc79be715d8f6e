"""`corrvos download`: fetch official weights by name into the cache that ``--model NAME`` reads."""

from __future__ import annotations

import argparse

HELP = "download official model weights and ImageNet backbones by name (resumable, sha256-checked)"
DESCRIPTION = """\
Download weight files by name into the corrvos cache: --cache DIR, else $CORRVOS_CACHE, else ~/.cache/corrvos.
`--model NAME` (infer, segment, train's init weights) then finds the file by the same name, and
`model.pretrained_backbones: true` uses the cached ImageNet files before torch.hub.

An interrupted download is resumed by running the same command again. Each file's SHA-256 is checked before it is
renamed to its final name; where no hash is published, the hash of the first download is printed and recorded in
<file>.sha256, and later runs check against it.

examples:
  corrvos download --list
  corrvos download xmem stcn
  corrvos download imagenet            # resnet50-imagenet and resnet18-imagenet
  corrvos download all --cache /data/weights
  CORRVOS_DOWNLOAD_MIRROR=http://mirror.local/weights corrvos download xmem
  corrvos infer --model xmem --davis-root data/DAVIS/2017/trainval --set val --out output/xmem-d17-val
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="*", metavar="NAME", help="weight names (see --list), 'imagenet' or 'all'")
    parser.add_argument("--list", action="store_true", help="print the known weights and whether they are cached")
    parser.add_argument("--cache", default=None, help="cache folder (default: $CORRVOS_CACHE or ~/.cache/corrvos)")
    parser.add_argument(
        "--mirror",
        default=None,
        help="URL whose scheme and host replace those of every download URL, keeping the path "
        "(default: $CORRVOS_DOWNLOAD_MIRROR)",
    )
    parser.add_argument("--force", action="store_true", help="download again even if a checked file is cached")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import sys

    from corrvos.errors import ConfigError
    from corrvos.weights import DownloadError, download, select

    if args.list:
        print_table(args.cache)
        if not args.names:
            return 0
    if not args.names:
        raise ConfigError("name at least one weight (see `corrvos download --list`), 'imagenet' or 'all'")
    failed: list[str] = []
    for entry in select(args.names):
        try:
            download(entry, args.cache, mirror=args.mirror, force=args.force, progress=not args.no_progress)
        except DownloadError as exc:
            if len(args.names) == 1 and args.names[0].lower() == entry.name:
                raise
            print(f"corrvos download: {exc}", file=sys.stderr)
            failed.append(entry.name)
    if failed:
        raise DownloadError(f"{len(failed)} download(s) failed: {', '.join(failed)} (reasons above)")
    return 0


def print_table(cache: str | None = None) -> None:
    """One line per known weight: name, cache status, approximate size, description."""
    from corrvos.weights import WEIGHTS, cache_dir, status

    header = ("NAME", "STATUS", "~MB", "DESCRIPTION")
    rows = [
        (w.name, status(w, cache).label, f"{w.approx_mb:.0f}" if w.approx_mb else "?", w.description)
        for w in WEIGHTS.values()
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(3)]
    print(f"cache: {cache_dir(cache)}")
    for name, label, mb, desc in [header, *rows]:
        print(f"{name:<{widths[0]}}  {label:<{widths[1]}}  {mb:>{widths[2]}}  {desc}")
