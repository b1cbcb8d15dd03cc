"""Concepts: what a model sees, as a dictionary over its activations (``A ~= U W``).

Fel et al., "A Holistic Approach to Unifying Automatic Concept Extraction and Concept Importance
Estimation" (NeurIPS 2023): concept extraction is dictionary learning. ``nmf_solvers`` holds the torch
solvers (NMF by HALS or multiplicative updates; non-negative least squares and sparse codes,
differentiable through their KKT conditions); ``dictionary_learning`` the :class:`Factorization`
interface and its variants (NMF, semi-NMF, convex NMF, PCA, ICA, k-means, sparse coding, any SAE),
registered in :data:`FACTORIZATIONS`.

- CRAFT (Fel et al., CVPR 2023): :class:`Craft` extracts the concepts of a class from crops
  (``crops``: :func:`grid_crops`, Xplique's grid, or :func:`random_crops`), estimates their importance,
  draws their maps and refines a concept at an earlier layer into a :class:`ConceptTree`;
  :class:`CraftResult` keeps a fitted decomposition as data.
- Importance (the holistic framework): :func:`concept_importance` (a model, a layer, a concept bank,
  images) and its engine :func:`code_importance` (concept coefficients and a head), with the methods of
  :data:`CONCEPT_IMPORTANCE_METHODS` (Sobol, gradient x input, saliency, integrated gradients, occlusion,
  RISE); :func:`concept_space` gives the codes and the head (:class:`ConceptHead`) that the C-metrics of
  :mod:`workbench.metrics` take.
- Strategic clusters: :func:`strategic_clusters` groups the images of a class by their importance
  vectors, with each cluster's dominant concepts and the cluster graph as data.

No name exported here equals a submodule's name (``concept_importance`` lives in
``holistic_importance.py``, ``strategic_clusters`` in ``importance_clusters.py``, ``Craft`` in ``craft.py``).
"""

from workbench.concepts.craft import ConceptTree, Craft, CraftResult
from workbench.concepts.crops import crop_at, grid_crops, random_crops
from workbench.concepts.dictionary_learning import (
    FACTORIZATIONS,
    ICA,
    NMF,
    PCA,
    ConvexNMF,
    Factorization,
    KMeans,
    SAEConcepts,
    SemiNMF,
    SparseCoding,
    create_factorization,
)
from workbench.concepts.holistic_importance import (
    CONCEPT_IMPORTANCE_METHODS,
    ConceptHead,
    ConceptSpace,
    code_importance,
    concept_importance,
    concept_space,
)
from workbench.concepts.importance_clusters import StrategicClusters, strategic_clusters
from workbench.concepts.nmf_solvers import nmf, nnls, sparse_encode, top_singular

__all__ = [
    # CRAFT (craft, crops)
    "Craft",
    "ConceptTree",
    "CraftResult",
    "grid_crops",
    "random_crops",
    "crop_at",
    # factorizations (dictionary_learning)
    "FACTORIZATIONS",
    "Factorization",
    "NMF",
    "SemiNMF",
    "ConvexNMF",
    "PCA",
    "ICA",
    "KMeans",
    "SparseCoding",
    "SAEConcepts",
    "create_factorization",
    # solvers (nmf_solvers)
    "nmf",
    "nnls",
    "sparse_encode",
    "top_singular",
    # importance (holistic_importance, importance_clusters)
    "CONCEPT_IMPORTANCE_METHODS",
    "ConceptHead",
    "ConceptSpace",
    "StrategicClusters",
    "code_importance",
    "concept_importance",
    "concept_space",
    "strategic_clusters",
]
