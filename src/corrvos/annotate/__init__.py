"""``corrvos annotate``: a browser tool to mask objects in a video with any corrvos model.

:class:`~corrvos.annotate.project.Project` is the project folder (annotations, propagated masks, objects,
settings), :mod:`corrvos.annotate.engine` propagates the annotations through the library's inference API,
:mod:`corrvos.annotate.export` writes the exports and :mod:`corrvos.annotate.server` serves the page and its JSON
API (Starlette, only imported by the server: the rest works without the ``annotate`` extra).
"""

from corrvos.annotate.engine import DIRECTIONS, Propagator, run_propagation
from corrvos.annotate.export import EXPORTS, export
from corrvos.annotate.project import AnnotatedObject, Project, ProjectSettings

__all__ = [
    "DIRECTIONS",
    "EXPORTS",
    "AnnotatedObject",
    "Project",
    "ProjectSettings",
    "Propagator",
    "export",
    "run_propagation",
]
