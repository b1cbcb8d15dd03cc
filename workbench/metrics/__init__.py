"""Fidelity and localization metrics of attribution maps. Each metric is batched over images (no
per-image loop) and never modifies its inputs.

- Causal fidelity: :func:`deletion`, :func:`insertion` (Petsiuk et al. 2018).
- Localization against ground-truth masks: :func:`energy_in_mask`, :func:`mask_auc`,
  :func:`pointing_game`.
"""

from workbench.metrics.causal_fidelity import CausalFidelity, deletion, insertion
from workbench.metrics.localization import energy_in_mask, mask_auc, pointing_game

__all__ = ["CausalFidelity", "deletion", "energy_in_mask", "insertion", "mask_auc", "pointing_game"]
