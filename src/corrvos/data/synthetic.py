"""Synthetic VOS videos and datasets: the embedded default data of the demo and the tests (public entry point).

Nothing can be downloaded in some environments, so corrvos generates its own videos: a textured background seen
by a panning / zooming camera, 2-4 annotated textured objects (mid-size blobs, thin bars, tiny dots) on smooth
trajectories with occlusions, an object that may leave the frame and come back, 1-2 unannotated distractors that
share the colour/texture family of a target, and (YouTube-VOS layout) objects that appear on later frames.

This module gathers the public names of the implementation modules, which form a chain without cycles:
:mod:`corrvos.data.synthetic_textures` and :mod:`corrvos.data.synthetic_render` (rendering) <-
:mod:`corrvos.data.synthetic_video` (:class:`SyntheticVideo`, :func:`synthesize_video`, :func:`render_sequence`)
<- :mod:`corrvos.data.synthetic_layouts` (:func:`generate_dataset`, the DAVIS and YouTube-VOS file layouts) <-
this module.

Conventions:
- determinism: video i of a dataset is drawn from ``np.random.SeedSequence(seed).spawn(n)[i]`` (its content does not
  depend on how many videos are generated); the same arguments give byte-identical files;
- labels are uint8 [T, H, W]; DAVIS-style videos have ids 1..K, all present in frame 0; with ``late_objects`` the
  ids are shuffled (not ordered by appearance) and an object is labelled from its first appearance on a sampled
  frame (multiple of ``sample_step``) with at least ``MIN_AREA`` visible pixels.
"""

from __future__ import annotations

from corrvos.data.synthetic_layouts import LAYOUTS, generate_dataset
from corrvos.data.synthetic_video import MIN_AREA, SyntheticVideo, render_sequence, synthesize_video

__all__ = ["LAYOUTS", "MIN_AREA", "SyntheticVideo", "generate_dataset", "render_sequence", "synthesize_video"]
