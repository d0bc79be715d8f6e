"""The official XMem weight files (rows of :data:`corrvos.weights.WEIGHTS`; no torch import).

Provenance: hkchengrex/XMem, GitHub release ``v1.0`` (linked from its ``docs/INFERENCE.md``): ``XMem.pth`` (s03,
the default), ``XMem-s012.pth`` (with BL30K), ``XMem-s2.pth`` (no static-image pre-training),
``XMem-no-sensory.pth`` and the stage-01 file ``XMem-s01.pth``.
"""

from __future__ import annotations

from corrvos.weight_file import WeightFile

__all__ = ["FILES"]

_RELEASE = "https://github.com/hkchengrex/XMem/releases/download/v1.0/"
_PAGE = "https://github.com/hkchengrex/XMem/releases/tag/v1.0"

FILES = (
    WeightFile("xmem", "XMem.pth", (_RELEASE + "XMem.pth",), _PAGE, "XMem s03, the official default", approx_mb=249),
    WeightFile("xmem-s012", "XMem-s012.pth", (_RELEASE + "XMem-s012.pth",), _PAGE, "XMem s012 (BL30K)", approx_mb=249),
    WeightFile(
        "xmem-s2", "XMem-s2.pth", (_RELEASE + "XMem-s2.pth",), _PAGE, "XMem s2 (no static pre-training)", approx_mb=249
    ),
    WeightFile("xmem-s01", "XMem-s01.pth", (_RELEASE + "XMem-s01.pth",), _PAGE, "XMem stages 0+1", approx_mb=249),
    WeightFile(
        "xmem-no-sensory",
        "XMem-no-sensory.pth",
        (_RELEASE + "XMem-no-sensory.pth",),
        _PAGE,
        "XMem without sensory memory",
        approx_mb=239,
    ),
)
