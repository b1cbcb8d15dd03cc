"""SpaDE: a sparse autoencoder whose encoder is a sparsemax over distances to prototypes.

Hindupur et al. 2025, "Projecting Assumptions: The Duality Between Sparse Autoencoders and Concept
Geometry". An SAE's encoder fixes the shape of the regions where a latent is active (half-spaces for ReLU,
cones for TopK); SpaDE's regions are built around prototypes and adapt their size, so that concepts of
different intrinsic dimension can each get one latent.
"""

from __future__ import annotations

import torch
from torch import nn

from workbench._core.seeding import make_generator
from workbench.sae.base import SAES, SparseAutoencoder

__all__ = ["sparsemax", "SpaDE"]


def sparsemax(z: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Sparsemax (Martins and Astudillo 2016): the Euclidean projection of ``z`` onto the simplex.

    Batched along every dimension but ``dim``: ``max(z - tau, 0)`` with ``tau`` chosen so the result
    sums to one. Unlike softmax it gives exact zeros. Differentiable through autograd (the sort picks
    the support; the gradient is the paper's piecewise-linear Jacobian).
    """
    z = z.transpose(dim, -1)
    u, _ = torch.sort(z, dim=-1, descending=True)
    css = u.cumsum(dim=-1)
    ks = torch.arange(1, z.shape[-1] + 1, device=z.device, dtype=z.dtype)
    support = 1 + ks * u > css
    k = support.to(z.dtype).cumsum(dim=-1).argmax(dim=-1, keepdim=True)  # index of the last True
    tau = (css.gather(-1, k) - 1) / (k + 1).to(z.dtype)
    return torch.clamp(z - tau, min=0).transpose(dim, -1)


@SAES.register(
    "SpaDE",
    paper="Hindupur et al. 2025, Projecting Assumptions: The Duality Between Sparse Autoencoders and Concept Geometry",
)
class SpaDE(SparseAutoencoder):
    """Sparsemax Distance Encoder (Hindupur et al. 2025, "Projecting Assumptions").

    ``codes = sparsemax(-exp(s) * ||x - p_j||^2)``, with learned prototypes ``p_j`` and a learned
    log-scale ``s``; decoder ``x_hat = codes @ W_dec + bias``. The codes of an input sum to one, and only
    the prototypes close to it (relative to the scale) are non-zero, so the sparsity adapts to each input
    instead of a fixed ``k``. The loss is the reconstruction error: sparsity comes from the sparsemax.

    Parameters
    ----------
    d, n_atoms
        Activation dimension and number of prototypes / atoms.
    prototypes
        Optional initial prototypes (n_atoms, d), e.g. data points or k-means centroids; otherwise random
        normal. The decoder starts equal to the prototypes (a code that selects one prototype then
        reconstructs that prototype).
    scale
        Initial scale ``exp(s)`` of the squared distances.
    seed
        Seed of the initialisation.
    """

    def __init__(
        self,
        d: int,
        n_atoms: int,
        prototypes: torch.Tensor | None = None,
        scale: float = 1.0,
        seed: int = 0,
    ):
        super().__init__(d, n_atoms)
        if prototypes is None:
            prototypes = torch.randn(n_atoms, d, generator=make_generator(seed))
        elif not isinstance(prototypes, torch.Tensor) or tuple(prototypes.shape) != (n_atoms, d):
            shape = (
                tuple(prototypes.shape) if isinstance(prototypes, torch.Tensor) else type(prototypes).__name__
            )
            raise ValueError(f"prototypes: expected shape ({n_atoms}, {d}), got {shape}")
        if not scale > 0:
            raise ValueError(f"scale: expected a number > 0, got {scale!r}")
        p = prototypes.detach().float().clone()
        self.prototypes = nn.Parameter(p)
        self.W_dec = nn.Parameter(p.clone())
        self.log_scale = nn.Parameter(torch.tensor(float(scale)).log())

    @property
    def dictionary(self) -> torch.Tensor:
        return self.W_dec

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        x = self.check_input(x)
        sq = (
            x.pow(2).sum(1, keepdim=True) - 2 * x @ self.prototypes.T + self.prototypes.pow(2).sum(1)
        ).clamp_min(0)
        return sparsemax(-self.log_scale.exp() * sq, dim=1)
