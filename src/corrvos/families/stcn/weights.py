"""The official STCN and VOS_Correspondence weight files (rows of :data:`corrvos.weights.WEIGHTS`; no torch import).

Provenance: hkchengrex/STCN's README "Pretrained models" gives the s012 model ``stcn.pth`` and ``stcn_s03.pth`` on
Google Drive (file ids from the README; its ``download_model.py`` fetches the first with gdown) and the s0 / s01
models on the GitHub release ``1.0``. The release asset names ``stcn.pth`` / ``stcn_s0.pth`` / ``stcn_s01.pth``
are inferred from the README and from downstream projects that load ``saves/stcn_s01.pth``; they are not confirmed
by a listing of the release, so ``stcn`` falls back to Google Drive when the release URL fails.
wenguanwang/VOS_Correspondence says that code, checkpoint and training log are on its GitHub release ``CKPT``, but
no source we could check names the asset, so that entry has no URL: download it by hand and save it under the
cache name below (or pass its path to ``--model``).
"""

from __future__ import annotations

from corrvos.weight_file import GDRIVE, WeightFile

__all__ = ["FILES"]

_RELEASE = "https://github.com/hkchengrex/STCN/releases/download/1.0/"
_PAGE = "https://github.com/hkchengrex/STCN#pretrained-models"

FILES = (
    WeightFile(
        "stcn",
        "stcn.pth",
        (_RELEASE + "stcn.pth", GDRIVE.format("1mRrE0uCI2ktdWlUgapJI_KmgeIiF2eOm")),
        _PAGE,
        "STCN s012 (BL30K pre-training), the official default",
        approx_mb=218,
    ),
    WeightFile(
        "stcn-s03",
        "stcn_s03.pth",
        (GDRIVE.format("1JllXPJZola0G-g1aUQfXe9nLMBioj-aH"),),
        _PAGE,
        "STCN s03 (no BL30K)",
        approx_mb=218,
    ),
    WeightFile(
        "stcn-s0", "stcn_s0.pth", (_RELEASE + "stcn_s0.pth",), _PAGE, "STCN stage 0 (static images)", approx_mb=218
    ),
    WeightFile(
        "stcn-s01", "stcn_s01.pth", (_RELEASE + "stcn_s01.pth",), _PAGE, "STCN stages 0+1 (+BL30K)", approx_mb=218
    ),
    WeightFile(
        "stcn-corr",
        "stcn_corr.pth",
        (),
        "https://github.com/wenguanwang/VOS_Correspondence/releases/tag/CKPT",
        "VOS_Correspondence STCN (CVPR 2023); manual download",
    ),
)
