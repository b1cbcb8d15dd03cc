"""The one interface every sparse dictionary implements.

A dictionary maps activations ``x`` (N, d) to sparse codes (N, n_atoms) and back:

- ``encode(x) -> codes``: the part each variant overrides (ReLU, TopK, BatchTopK, JumpReLU, matching
  pursuit, SpaDE, ...);
- ``decode(codes) -> x_hat = codes @ dictionary + bias``;
- ``dictionary``: the (n_atoms, d) matrix of atoms (a property: RA-SAE builds it from archetypes);
- ``forward(x) -> (codes, x_hat)``;
- ``loss(x, codes, x_hat) -> dict``: every variant returns the same keys, ``"loss"`` (the scalar to
  minimize) and ``"mse"``, plus its own terms (``"l1"``, ``"aux"``, ...). The trainer only reads
  ``"loss"`` and logs the rest;
- ``constrain()``: called by the trainer after every optimizer step for constraints that a gradient
  step breaks (unit-norm atoms, RA-SAE's row-stochastic W). A no-op by default.

``train()`` and ``eval()`` have no hidden side effects, and the device follows the module: nothing is
created on a device other than the parameters'.
"""

from __future__ import annotations

import torch
from torch import nn

from workbench._core.validation import check_int

__all__ = ["SparseAutoencoder"]


class SparseAutoencoder(nn.Module):
    """Base class: a linear decoder with a bias, and the shared loss (mean squared error).

    Parameters
    ----------
    d
        Dimension of the activations.
    n_atoms
        Number of atoms (the width of the codes).
    """

    def __init__(self, d: int, n_atoms: int):
        super().__init__()
        check_int(d, "d")
        check_int(n_atoms, "n_atoms")
        self.d = d
        self.n_atoms = n_atoms
        self.bias = nn.Parameter(torch.zeros(d))

    # -- the parts a variant overrides ------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Codes (N, n_atoms) of activations (N, d)."""
        raise NotImplementedError

    @property
    def dictionary(self) -> torch.Tensor:
        """The atoms, (n_atoms, d)."""
        raise NotImplementedError

    # -- shared -----------------------------------------------------------------------------------
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Reconstruction ``codes @ dictionary + bias`` (N, d)."""
        return torch.addmm(self.bias, codes, self.dictionary)  # one fused kernel for product and bias

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        codes = self.encode(x)
        return codes, self.decode(codes)

    def loss(self, x: torch.Tensor, codes: torch.Tensor, x_hat: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"loss": ..., "mse": ...}``; variants add their own terms and keep these two keys."""
        mse = (x_hat - x).pow(2).mean()
        return {"loss": mse, "mse": mse}

    @torch.no_grad()
    def constrain(self) -> None:
        """Restore constraints after an optimizer step (no-op here)."""

    def check_input(self, x: torch.Tensor) -> torch.Tensor:
        """Activations (N, d) as they are, or a clear error."""
        if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != self.d:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x: expected activations of shape (N, {self.d}), got {shape}")
        return x

    def extra_repr(self) -> str:
        return f"d={self.d}, n_atoms={self.n_atoms}"
