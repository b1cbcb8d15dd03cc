"""Sparse dictionaries on activations (N, d): SAEs, matching pursuit, archetypal and universal variants,
their metrics, synthetic ground truth, blindspot analysis, the trainer and checkpoints. Every variant
implements :class:`SparseAutoencoder` (``encode``, ``decode``, ``dictionary``, ``loss``, ``constrain``,
``aux_loss``, ``revive``) and is registered in :data:`SAES` with its paper.

One module per method: ``relu_sae``, ``topk_sae``, ``batchtopk_sae``, ``jumprelu_sae`` (sharing
``linear_encoder``), ``matching_pursuit`` (MP-SAE), ``archetypal`` (RA-SAE: an archetypal dictionary any
linear encoder can use), ``spade``, ``universal``; ``training`` (the loop) with ``training_sources``,
``checkpoints`` and ``distributed``. No name exported here equals a submodule's name.
"""

from workbench.sae.archetypal import (
    RASAE,
    ArchetypalDictionary,
    ArchetypalSAE,
    kmeans,
    project_simplex,
    with_archetypes,
)
from workbench.sae.atom_statistics import AtomStats, atom_stats, gradient_class_directions
from workbench.sae.base import SAES, SparseAutoencoder, check_k, encode_rows, unit_rows
from workbench.sae.batchtopk_sae import BatchTopKSAE
from workbench.sae.blindspot_energy import Blindspots, blindspots, energy, energy_difference
from workbench.sae.checkpoints import load_sae, save_sae
from workbench.sae.jumprelu_sae import JumpReLUSAE
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
from workbench.sae.relu_sae import ReLUSAE
from workbench.sae.spade import SpaDE, sparsemax
from workbench.sae.synthetic import sparse_mixtures
from workbench.sae.topk_sae import TopKSAE
from workbench.sae.training import TrainHistory, fit, train
from workbench.sae.universal import UniversalSAE, cross_cofiring, cross_r2

__all__ = [
    "SparseAutoencoder",
    "SAES",
    "check_k",
    "unit_rows",
    "encode_rows",
    "AtomStats",
    "atom_stats",
    "gradient_class_directions",
    "ReLUSAE",
    "TopKSAE",
    "BatchTopKSAE",
    "JumpReLUSAE",
    "MPSAE",
    "RASAE",
    "ArchetypalSAE",
    "ArchetypalDictionary",
    "with_archetypes",
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
    "train",
    "fit",
    "TrainHistory",
    "save_sae",
    "load_sae",
]
