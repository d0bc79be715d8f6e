"""corrvos.visualize: mask overlays and videos (:mod:`corrvos.visualize.overlay`)."""

from __future__ import annotations

from corrvos.visualize.overlay import VideoWriter, colorize, overlay

__all__ = ["VideoWriter", "colorize", "overlay"]
