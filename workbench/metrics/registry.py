"""The metrics registry: name -> metric function, with its paper and module.

``METRICS.table()`` lists every metric with the paper it implements, so a newcomer goes from a paper to
a function; ``METRICS.get(name)`` fails with the closest names. Each metric module registers its own
functions (``@METRICS.register(name, paper=...)``); the modules below are imported on the first lookup.
"""

from __future__ import annotations

from collections.abc import Callable

from workbench._core.registry import Registry

__all__ = ["METRICS"]

METRICS: Registry[Callable] = Registry(
    "metric",
    populate=(
        "workbench.metrics.algorithmic_stability",
        "workbench.metrics.baseline_effects",
        "workbench.metrics.causal_fidelity",
        "workbench.metrics.concept_fidelity",
        "workbench.metrics.concentration",
        "workbench.metrics.localization",
        "workbench.metrics.map_similarity",
        "workbench.metrics.mufidelity_correlation",
        "workbench.metrics.noise_stability",
        "workbench.metrics.sanity_checks",
    ),
)
