"""Concepts: what a model sees, as a dictionary over its activations (``A ~= U W``).

Fel et al., "A Holistic Approach to Unifying Automatic Concept Extraction and Concept Importance
Estimation" (NeurIPS 2023): concept extraction is dictionary learning. ``nmf_solvers`` holds the torch
solvers (NMF by HALS or multiplicative updates; non-negative least squares and sparse codes,
differentiable through their KKT conditions); ``dictionary_learning`` the :class:`Factorization`
interface and its variants (NMF, semi-NMF, convex NMF, PCA, ICA, k-means, sparse coding, any SAE),
registered in :data:`FACTORIZATIONS`. No name exported here equals a submodule's name.
"""

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
