"""ReLU + L1 sparse autoencoder (Bricken et al. 2023, "Towards Monosemanticity", Anthropic)."""

from __future__ import annotations

import torch

from workbench.sae.base import SAES
from workbench.sae.linear_encoder import LinearEncoderSAE

__all__ = ["ReLUSAE"]


@SAES.register("ReLUSAE", paper="Bricken et al. 2023, Towards Monosemanticity (Anthropic)")
class ReLUSAE(LinearEncoderSAE):
    """ReLU codes with an L1 penalty (the "vanilla" SAE of Bricken et al. 2023).

    ``loss = mse + l1_coeff * mean_n sum_i |z_ni|``. With unit-norm atoms (``constrain``) the L1 term
    measures the code, not an arbitrary scale split between codes and atoms.

    Parameters
    ----------
    d, n_atoms
        Activation dimension and number of atoms.
    l1_coeff
        Weight of the L1 term.
    seed
        Seed of the initialisation.
    """

    def __init__(self, d: int, n_atoms: int, l1_coeff: float = 1e-3, seed: int = 0):
        super().__init__(d, n_atoms, seed)
        if not l1_coeff >= 0:
            raise ValueError(f"l1_coeff: expected a number >= 0, got {l1_coeff!r}")
        self.l1_coeff = float(l1_coeff)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.pre_codes(x))

    def loss(self, x: torch.Tensor, codes: torch.Tensor, x_hat: torch.Tensor) -> dict[str, torch.Tensor]:
        out = super().loss(x, codes, x_hat)
        l1 = codes.abs().sum(dim=1).mean()
        out["l1"] = l1
        out["loss"] = out["mse"] + self.l1_coeff * l1
        return out
