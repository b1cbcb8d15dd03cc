"""Conceptual blindspots: which atoms a second set of activations under- or over-uses.

Bohacek, Fel, Agrawala and Lubana 2025, "Uncovering Conceptual Blindspots in Generative Image Models Using
Sparse Autoencoders", arXiv:2506.19708 (ICLR 2026). They encode real images and a generative model's
images with one (RA-)SAE and compare, atom by atom, the "energy" of each concept in the two sets: a concept
with much less energy in the generated set is a *suppressed* blindspot, much more an *exaggerated* one.

Our choices (the paper's exact normalisation could not be checked offline, so they are stated here):
the energy of atom ``i`` on a set is its mean code magnitude ``mean_n |z_ni|``; each set's energies are
normalised to sum to one (so the comparison is about the *share* of each concept, not the overall
activation scale of a set); ``delta_i = log((E_b,i + eps) / (E_a,i + eps))`` with ``a`` the reference
(real data) and ``b`` the compared set (generations). ``delta < 0``: suppressed in ``b``; ``> 0``:
exaggerated. ``eps`` keeps atoms absent from one set finite; atoms dead in both get 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from workbench._core.batching import iter_batches
from workbench._core.devices import eval_mode
from workbench.sae.base import SparseAutoencoder

__all__ = ["energy", "energy_difference", "Blindspots", "blindspots"]


@torch.no_grad()
def energy(sae: SparseAutoencoder, acts: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """Normalised energy (n_atoms,) of each atom on ``acts`` (N, d): mean ``|code|``, summing to one.

    The SAE encodes in eval mode whatever mode the caller left it in (the mode is restored): in train
    mode a BatchTopK SAE's codes depend on the batch and each call moves its threshold.
    """
    acts = sae.check_input(acts)
    total = None
    with eval_mode(sae):
        for s in iter_batches(acts.shape[0], batch_size):
            e = sae.encode(acts[s]).abs().sum(0)
            total = e if total is None else total + e
    total = total / acts.shape[0]
    return total / total.sum().clamp_min(1e-30)


def energy_difference(
    sae: SparseAutoencoder,
    acts_a: torch.Tensor,
    acts_b: torch.Tensor,
    eps: float = 1e-6,
    batch_size: int = 4096,
) -> torch.Tensor:
    """Per-atom log ratio of normalised energies, ``log((E_b + eps) / (E_a + eps))`` (Bohacek et al. 2025).

    Negative: the atom is suppressed in ``acts_b`` relative to the reference ``acts_a``; positive:
    exaggerated. See the module docstring for the normalisation.
    """
    e_a = energy(sae, acts_a, batch_size)
    e_b = energy(sae, acts_b, batch_size)
    return torch.log((e_b + eps) / (e_a + eps))


@dataclass
class Blindspots:
    """Result of :func:`blindspots`: per-atom energies and delta, and the ranked extremes."""

    delta: torch.Tensor
    energy_a: torch.Tensor
    energy_b: torch.Tensor
    suppressed: torch.Tensor  # atom indices, most suppressed first (delta < 0 only)
    exaggerated: torch.Tensor  # atom indices, most exaggerated first (delta > 0 only)


def blindspots(
    sae: SparseAutoencoder,
    acts_a: torch.Tensor,
    acts_b: torch.Tensor,
    top: int = 10,
    eps: float = 1e-6,
    batch_size: int = 4096,
) -> Blindspots:
    """The ``top`` most suppressed and most exaggerated atoms of ``acts_b`` relative to ``acts_a``.

    Bohacek et al. 2025, arXiv:2506.19708; ``delta`` as in :func:`energy_difference`.
    """
    e_a = energy(sae, acts_a, batch_size)
    e_b = energy(sae, acts_b, batch_size)
    delta = torch.log((e_b + eps) / (e_a + eps))
    order = delta.argsort()
    suppressed = order[delta[order] < 0][:top]
    exaggerated = order.flip(0)[delta[order.flip(0)] > 0][:top]
    return Blindspots(delta, e_a, e_b, suppressed, exaggerated)
