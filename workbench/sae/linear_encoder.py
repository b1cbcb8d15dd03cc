"""The linear encoder shared by the ReLU, TopK, BatchTopK and JumpReLU SAEs.

All four share one encoder ``pre = (x - bias) @ W_enc.T + b_enc`` (the decoder bias is subtracted first, as
in Gao et al. 2024, so the encoder sees centred activations) and one free decoder ``W_dec`` (n_atoms, d).
They differ only in the activation that turns ``pre`` into sparse codes and in the sparsity term of the
loss, so each variant (its own module: ``relu_sae``, ``topk_sae``, ``batchtopk_sae``, ``jumprelu_sae``)
overrides ``encode`` and, where needed, ``loss``.
"""

from __future__ import annotations

import torch
from torch import nn

from workbench._core.seeding import make_generator
from workbench.sae.base import SparseAutoencoder, unit_rows

__all__ = ["LinearEncoderSAE"]


class LinearEncoderSAE(SparseAutoencoder):
    """Shared parts: a linear encoder and a free, unit-norm decoder.

    The decoder rows are random unit vectors drawn from ``seed``; the encoder starts tied to them
    (``W_enc = W_dec``), the initialisation of Gao et al. 2024 that avoids many dead latents.
    ``constrain()`` renormalises the decoder rows, so a sparsity penalty on the codes cannot be dodged
    by shrinking the codes and growing the atoms.

    The decoder can be replaced by an archetypal one (:func:`workbench.sae.archetypal.with_archetypes`,
    Fel et al. 2025): every variant below then becomes its RA- version (RA-TopK, RA-JumpReLU, ...)
    without a class of its own.
    """

    def __init__(self, d: int, n_atoms: int, seed: int = 0, unit_norm: bool = True):
        super().__init__(d, n_atoms)
        g = make_generator(seed)
        w = unit_rows(torch.randn(n_atoms, d, generator=g))
        self.W_dec = nn.Parameter(w.clone())
        self.W_enc = nn.Parameter(w.clone())
        self.b_enc = nn.Parameter(torch.zeros(n_atoms))
        self.unit_norm = unit_norm

    def pre_codes(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder pre-activations (N, n_atoms): ``(x - bias) @ W_enc.T + b_enc``."""
        x = self.check_input(x)
        return nn.functional.linear(x - self.bias, self.W_enc, self.b_enc)  # one fused addmm

    @property
    def dictionary(self) -> torch.Tensor:
        archetypes = self._modules.get("archetypes")  # set by workbench.sae.archetypal.with_archetypes
        return self.W_dec if archetypes is None else archetypes()

    @torch.no_grad()
    def constrain(self) -> None:
        archetypes = self._modules.get("archetypes")
        if archetypes is not None:
            archetypes.constrain()
        elif self.unit_norm:
            self.W_dec.copy_(unit_rows(self.W_dec))
