"""`corrvos synth`: placeholder while the command is being written (see the open issues)."""

from __future__ import annotations

import argparse

HELP = "(not implemented yet)"
DESCRIPTION = HELP


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError("corrvos synth is not implemented yet")
