"""The ``corrvos`` command line: a thin dispatcher over the library.

Each sub-command lives in its own module of this package and exposes ``HELP`` (one line),
``DESCRIPTION`` (the ``--help`` text), ``add_arguments(parser)`` and ``run(args) -> int``. Modules import
their heavy dependencies (torch, OpenCV) inside ``run`` so that ``corrvos --help`` stays fast.

Errors caused by the user's input (:class:`corrvos.errors.CorrvosError`) are printed as one line naming the
file and the problem, with exit status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from corrvos import __version__
from corrvos.errors import CorrvosError

__all__ = ["COMMANDS", "build_parser", "main"]

# sub-command name -> module under corrvos.cli
COMMANDS: dict[str, str] = {
    "demo": "demo",
    "synth": "synth",
    "eval": "evaluate",
    "pack-youtube": "pack_youtube",
    "infer": "infer",
    "segment": "segment",
    "train": "train",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="corrvos",
        description="Train, run and evaluate matching-based video object segmentation models (STCN, XMem) "
        "with space-time correspondence learning.",
    )
    parser.add_argument("--version", action="version", version=f"corrvos {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"corrvos.cli.{module_name}")
        p = sub.add_parser(
            name,
            help=module.HELP,
            description=module.DESCRIPTION,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args._run(args) or 0)
    except CorrvosError as exc:
        print(f"corrvos {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
