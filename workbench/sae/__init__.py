"""Sparse dictionaries on activations (N, d): SAEs, matching pursuit, archetypal and universal variants,
their metrics, synthetic ground truth and blindspot analysis. Every variant implements
:class:`SparseAutoencoder` (``encode``, ``decode``, ``dictionary``, ``loss``, ``constrain``)."""

from workbench.sae.archetypal import RASAE, ArchetypalSAE, kmeans, project_simplex
from workbench.sae.base import SparseAutoencoder
from workbench.sae.blindspots import Blindspots, blindspots, energy, energy_difference
from workbench.sae.dictionaries import BatchTopKSAE, JumpReLUSAE, ReLUSAE, TopKSAE
from workbench.sae.matching_pursuit import MPSAE
from workbench.sae.metrics import (
    cofiring,
    dead_fraction,
    dead_mask,
    dense_fraction,
    l0,
    matching,
    r2,
    recovery,
    stability,
)
from workbench.sae.spade import SpaDE, sparsemax
from workbench.sae.synthetic import sparse_mixtures
from workbench.sae.universal import UniversalSAE, cross_cofiring, cross_r2

__all__ = [
    "SparseAutoencoder",
    "ReLUSAE",
    "TopKSAE",
    "BatchTopKSAE",
    "JumpReLUSAE",
    "MPSAE",
    "RASAE",
    "ArchetypalSAE",
    "kmeans",
    "project_simplex",
    "SpaDE",
    "sparsemax",
    "UniversalSAE",
    "cross_r2",
    "cross_cofiring",
    "r2",
    "l0",
    "dead_mask",
    "dead_fraction",
    "dense_fraction",
    "matching",
    "recovery",
    "stability",
    "cofiring",
    "sparse_mixtures",
    "energy",
    "energy_difference",
    "Blindspots",
    "blindspots",
]
