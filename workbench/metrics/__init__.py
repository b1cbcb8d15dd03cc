"""Metrics of attribution maps. Each is batched over images (no per-image loop), never modifies its
inputs, and knows no attribution method: methods are passed in as ``explain(model, x, y) -> maps``.
Images, targets, maps, masks and baselines are tensors or NumPy arrays (converted once at the boundary
by :func:`workbench._core.validation.as_tensor`).

- Causal fidelity: :func:`deletion`, :func:`insertion` (Petsiuk et al. 2018), :func:`mufidelity`
  (Bhatt et al. 2020).
- Concept fidelity (Fel et al., NeurIPS 2023): :func:`c_deletion`, :func:`c_insertion`,
  :func:`c_mufidelity` on concept coefficients and a head ``h(codes) -> logits`` (no concept method
  needed: ``workbench.concepts.concept_space`` builds both from a model, a layer and a concept bank).
- Localization against ground-truth masks: :func:`energy_in_mask`, :func:`mask_auc`,
  :func:`pointing_game`.
- Concentration: :func:`sparseness` (Gini), :func:`complexity` (entropy).
- Robustness: :func:`average_stability` (Bhatt et al. 2020).
- Sanity checks: :func:`model_randomization` (Adebayo et al. 2018), :func:`random_logit` (Sixt et
  al. 2020).
- Algorithmic stability: :func:`mege_reco` (Fel et al. 2022), on models trained on k folds
  (:func:`workbench.training.train_fold_models`).
- Similarity of maps: :func:`map_spearman`, :func:`ssim`.
- :data:`METRICS`: every metric by name, with its paper and module (``METRICS.table()``).

Files are named after the idea they implement, and no public name equals a submodule's name:
``mufidelity`` (function) lives in ``mufidelity_correlation.py``, ``complexity`` and ``sparseness`` in
``concentration.py``, ``average_stability`` in ``noise_stability.py``, ``mege_reco`` in
``algorithmic_stability.py``, ``c_deletion``, ``c_insertion`` and ``c_mufidelity`` in
``concept_fidelity.py``.
- Baselines (:mod:`workbench.metrics.baselines`: zero, mean, uniform, blur, local_mean, scramble, ROAD,
  any callable or image) and their effects (Picard et al. 2025): :func:`information_removal`,
  :func:`ood_distance`, :func:`baseline_study`.
"""

from workbench.metrics.algorithmic_stability import MeGeReCo, mege_reco, spearman_distance
from workbench.metrics.baseline_effects import (
    BaselineStudy,
    baseline_study,
    information_removal,
    ood_distance,
)
from workbench.metrics.baselines import BASELINES, get_baseline, list_baselines
from workbench.metrics.causal_fidelity import CausalFidelity, deletion, insertion
from workbench.metrics.concentration import complexity, sparseness
from workbench.metrics.concept_fidelity import c_deletion, c_insertion, c_mufidelity
from workbench.metrics.localization import energy_in_mask, mask_auc, pointing_game
from workbench.metrics.map_similarity import map_spearman, ssim
from workbench.metrics.mufidelity_correlation import mufidelity
from workbench.metrics.noise_stability import average_stability
from workbench.metrics.registry import METRICS
from workbench.metrics.sanity_checks import RandomizationResult, model_randomization, random_logit

__all__ = [
    "BASELINES",
    "BaselineStudy",
    "CausalFidelity",
    "METRICS",
    "MeGeReCo",
    "RandomizationResult",
    "average_stability",
    "baseline_study",
    "c_deletion",
    "c_insertion",
    "c_mufidelity",
    "complexity",
    "deletion",
    "energy_in_mask",
    "get_baseline",
    "information_removal",
    "insertion",
    "list_baselines",
    "map_spearman",
    "mask_auc",
    "mege_reco",
    "model_randomization",
    "mufidelity",
    "ood_distance",
    "pointing_game",
    "random_logit",
    "sparseness",
    "spearman_distance",
    "ssim",
]
