"""The demo: the main job of corrvos on generated videos (train with and without the losses, segment, score,
draw, report). See :mod:`corrvos.demo.pipeline`."""

from corrvos.demo.pipeline import DemoResult, DemoSettings, run_demo

__all__ = ["DemoResult", "DemoSettings", "run_demo"]
