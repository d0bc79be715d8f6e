"""The ``corrvos`` command line: a thin dispatcher over the library.

Each sub-command lives in its own module of this package and exposes ``HELP`` (one line),
``DESCRIPTION`` (the ``--help`` text), ``add_arguments(parser)`` and ``run(args) -> int``. Modules import
their heavy dependencies (torch, OpenCV) inside ``run`` so that ``corrvos --help`` stays fast.

Errors caused by the user's input (:class:`corrvos.errors.CorrvosError`, a bad option, and an operating-system
error on a named file such as a permission problem or a full disk) are printed as one line naming the file and
the problem, with exit status 2. Anything else is a bug: one line with exit status 1 and a request to rerun
with ``--debug``, which shows the traceback of every error.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from corrvos import __version__
from corrvos.errors import CorrvosError
from corrvos.families import titles

__all__ = ["COMMANDS", "build_parser", "main"]

# sub-command name -> module under corrvos.cli
COMMANDS: dict[str, str] = {
    "demo": "demo",
    "synth": "synth",
    "eval": "evaluate",
    "pack-youtube": "pack_youtube",
    "pack-davis": "pack_davis",
    "infer": "infer",
    "segment": "segment",
    "merge": "merge",
    "train": "train",
    "download": "download",
    "visualize": "visualize",
    "annotate": "annotate",
}


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (with a pointer to ``--help``) and exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _CommandParser(_Parser):
    """The parser of a sub-command (and of its own sub-commands): also takes ``--debug`` and ``-v`` after the command
    name, so that ``corrvos train --debug ...`` works like ``corrvos --debug train ...``."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        flags = self.add_argument_group("global options (also accepted before the command)")
        flags.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log debug messages")
        flags.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help="show the traceback of an error"
        )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="corrvos",
        description=f"Train, run and evaluate matching-based video object segmentation models ({titles()}) "
        "with space-time correspondence learning.",
    )
    parser.add_argument("--version", action="version", version=f"corrvos {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument(
        "--debug", action="store_true", help="show the Python traceback of an error instead of one line"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_CommandParser)
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
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    if args.debug:
        return int(args._run(args) or 0)
    try:
        return int(args._run(args) or 0)
    except CorrvosError as exc:
        print(f"corrvos {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = _interrupt_hint(args, argv)
        print("interrupted" + (f": {hint}" if hint else ""), file=sys.stderr)
        return 130
    except OSError as exc:  # permission denied, disk full, a file where a folder must go, ...
        where = exc.filename if exc.filename is not None else "input/output"
        print(f"corrvos {args.command}: error: {where}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug: say so in one line, the traceback is one --debug away
        first_line = next((line for line in str(exc).splitlines() if line.strip()), "")
        print(
            f"corrvos {args.command}: internal error: {type(exc).__name__}: {first_line} "
            f"(rerun with `corrvos --debug {args.command} ...` for the traceback and report it)",
            file=sys.stderr,
        )
        return 1


def _interrupt_hint(args: argparse.Namespace, argv: list[str]) -> str | None:
    """What to run after Ctrl-C: the command module's ``interrupt_hint(args, argv)``, where it has one."""
    module = importlib.import_module(f"corrvos.cli.{COMMANDS[args.command]}")
    hint = getattr(module, "interrupt_hint", None)
    return None if hint is None else hint(args, argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
