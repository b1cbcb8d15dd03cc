"""Explain a model on images in one call: where it looks, what it sees, and whether to trust it.

:func:`explain` (the ``workbench explain`` command) runs the pipeline of :mod:`~workbench.explain.stages`
into a resumable zarr result store (:mod:`~workbench.explain.store`), shares its units between the ranks
of a ``torchrun`` job (:mod:`~workbench.explain.sharding`), and renders the report notebook
(``workbench/explain/report.ipynb``) into a self-contained HTML file. :func:`load_results` reads a store
back as :class:`ExplainResults`. :class:`ExploreSession` (:mod:`~workbench.explain.session`) is the
Explorer's on-demand compute: the same methods per image, cached, on a background thread.

``import workbench; workbench.explain(...)`` works too: this module is callable and calls :func:`explain`
(the package and the function share the name the issue gives them).
"""

from __future__ import annotations

import sys
import types

from workbench.explain.inputs import ExplainInputError
from workbench.explain.pipeline import explain, render_report
from workbench.explain.results import ExplainResults, load_results
from workbench.explain.session import ExploreSession
from workbench.explain.settings import DEFAULT_METHODS, SCALES

__all__ = [
    "DEFAULT_METHODS",
    "SCALES",
    "ExplainInputError",
    "ExplainResults",
    "ExploreSession",
    "explain",
    "load_results",
    "render_report",
]


class _CallableModule(types.ModuleType):
    """``workbench.explain(...)`` is :func:`explain`: the module object forwards calls to the function."""

    def __call__(self, *args, **kwargs) -> ExplainResults:
        return explain(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
