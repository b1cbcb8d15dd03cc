"""Concepts: what a model sees, as a dictionary over its activations (``A ~= U W``).

Fel et al., "A Holistic Approach to Unifying Automatic Concept Extraction and Concept Importance
Estimation" (NeurIPS 2023): concept extraction is dictionary learning. ``nmf_solvers`` holds the torch
solvers (NMF by HALS or multiplicative updates; non-negative least squares and sparse codes,
differentiable through their KKT conditions); ``dictionary_learning`` the :class:`Factorization`
interface and its variants (NMF, semi-NMF, convex NMF, PCA, ICA, k-means, sparse coding, any SAE),
registered in :data:`FACTORIZATIONS`; ``crops`` cuts images into crops (Xplique's grid, or random);
``craft`` holds :class:`Craft` (CRAFT, Fel et al. CVPR 2023: concepts of a class, their importance, concept
maps and the recursion into a :class:`ConceptTree`). No name exported here equals a submodule's name.
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
]
