"""Concepts: what a model sees. Concept banks on a layer's activations, their importance and their fidelity.

- Importance (the holistic framework, Fel et al., NeurIPS 2023): :func:`concept_importance` (a model, a
  layer, a concept bank, images) and its engine :func:`code_importance` (concept coefficients and a
  head), with the methods of :data:`CONCEPT_IMPORTANCE_METHODS` (Sobol, gradient x input, saliency,
  integrated gradients, occlusion, RISE); :func:`concept_space` gives the codes and the head
  (:class:`ConceptHead`) that the C-metrics of :mod:`workbench.metrics` take.
- Strategic clusters: :func:`strategic_clusters` groups the images of a class by their importance
  vectors, with each cluster's dominant concepts and the cluster graph as data.

No name exported here equals a submodule's name (``concept_importance`` lives in
``holistic_importance.py``, ``strategic_clusters`` in ``importance_clusters.py``).
"""

from workbench.concepts.holistic_importance import (
    CONCEPT_IMPORTANCE_METHODS,
    ConceptHead,
    ConceptSpace,
    code_importance,
    concept_importance,
    concept_space,
)
from workbench.concepts.importance_clusters import StrategicClusters, strategic_clusters

__all__ = [
    "CONCEPT_IMPORTANCE_METHODS",
    "ConceptHead",
    "ConceptSpace",
    "StrategicClusters",
    "code_importance",
    "concept_importance",
    "concept_space",
    "strategic_clusters",
]
