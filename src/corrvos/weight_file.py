"""One downloadable weight file (:class:`WeightFile`): the row type of :data:`corrvos.weights.WEIGHTS`.

Its own module, free of other corrvos imports, so that each model family's ``weights`` module can define its rows
without importing the table (it lives outside the ``corrvos.weights`` package, whose import builds the table).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GDRIVE", "WeightFile"]

#: direct-download URL of a Google Drive file id.
GDRIVE = "https://drive.usercontent.google.com/download?id={}&export=download&confirm=t"


@dataclass(frozen=True)
class WeightFile:
    """One downloadable weight file.

    Attributes:
        name: the name used on the command line (``corrvos download NAME``, ``--model NAME``); lower case.
        filename: the file name in the cache folder (the publisher's name where there is one).
        urls: download locations, tried in order; empty when the file must be fetched by hand.
        page: the page that publishes the file (shown when every URL fails or there is none).
        description: one line for ``corrvos download --list``.
        sha256: the full SHA-256 hex digest when it is known from a trusted source, else ``None``.
        sha256_prefix: a known prefix of the SHA-256 (torchvision's file names carry 8 hex digits), else ``None``.
        approx_mb: approximate size in MB (1e6 bytes), for display only.
    """

    name: str
    filename: str
    urls: tuple[str, ...]
    page: str
    description: str
    sha256: str | None = None
    sha256_prefix: str | None = None
    approx_mb: float | None = None
