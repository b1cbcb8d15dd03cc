"""JumpReLU sparse autoencoder (Rajamanoharan et al. 2024, "Jumping Ahead: Improving Reconstruction Fidelity
with JumpReLU Sparse Autoencoders", arXiv:2407.14435)."""

from __future__ import annotations

import torch
from torch import nn

from workbench.sae.base import SAES
from workbench.sae.linear_encoder import LinearEncoderSAE

__all__ = ["JumpReLUSAE"]


def _rectangle(u: torch.Tensor) -> torch.Tensor:
    """The rectangle kernel K(u) = 1{|u| <= 1/2} of Rajamanoharan et al. 2024."""
    return (u.abs() <= 0.5).to(u.dtype)


class _JumpReLU(torch.autograd.Function):
    """``z * H(z - theta)``; gradient to z is the ordinary one where the unit is on, and the
    straight-through pseudo-derivative to theta is ``-(theta / eps) K((z - theta) / eps)`` (paper, eq. 11).
    """

    @staticmethod
    def forward(ctx, z, theta, eps):
        ctx.save_for_backward(z, theta)
        ctx.eps = eps
        return z * (z > theta)

    @staticmethod
    def backward(ctx, grad):
        z, theta = ctx.saved_tensors
        eps = ctx.eps
        grad_z = grad * (z > theta)
        grad_theta = -(theta / eps) * _rectangle((z - theta) / eps) * grad
        return grad_z, grad_theta.sum(dim=0), None


class _Step(torch.autograd.Function):
    """Heaviside ``H(z - theta)`` for the L0 term; pseudo-derivative to theta ``-(1/eps) K((z-theta)/eps)``
    (paper, eq. 12). No gradient flows to z: the paper trains the encoder only through the reconstruction.
    """

    @staticmethod
    def forward(ctx, z, theta, eps):
        ctx.save_for_backward(z, theta)
        ctx.eps = eps
        return (z > theta).to(z.dtype)

    @staticmethod
    def backward(ctx, grad):
        z, theta = ctx.saved_tensors
        eps = ctx.eps
        grad_theta = -(1.0 / eps) * _rectangle((z - theta) / eps) * grad
        return torch.zeros_like(z), grad_theta.sum(dim=0), None


@SAES.register(
    "JumpReLUSAE",
    paper="Rajamanoharan et al. 2024, Jumping Ahead: Improving Reconstruction Fidelity with JumpReLU Sparse Autoencoders, arXiv:2407.14435",
)
class JumpReLUSAE(LinearEncoderSAE):
    """JumpReLU codes ``z * H(z - theta)`` with a learned threshold per atom and an L0 penalty
    (Rajamanoharan et al. 2024, arXiv:2407.14435).

    The threshold and the L0 norm are piecewise constant, so their gradients are the paper's
    straight-through pseudo-derivatives with a rectangle kernel of width ``bandwidth``. ``theta`` is stored
    as ``log_threshold`` so that it stays positive (``theta = exp(log_threshold)``); the chain rule through
    the exponential is ordinary autograd. Note that overcomplete 0.3.0's JumpSAE divides by the bandwidth
    twice (its kernels already return ``K(u)/eps``), which scales its threshold gradient by ``1/eps``.

    Parameters
    ----------
    d, n_atoms
        Activation dimension and number of atoms.
    sparsity_coeff
        Weight of the L0 term (mean number of active atoms per input).
    bandwidth
        Width ``eps`` of the rectangle kernel of the pseudo-derivatives.
    init_threshold
        Initial threshold of every atom (> 0).
    seed
        Seed of the initialisation.
    """

    def __init__(
        self,
        d: int,
        n_atoms: int,
        sparsity_coeff: float = 1e-3,
        bandwidth: float = 1e-3,
        init_threshold: float = 1e-3,
        seed: int = 0,
    ):
        super().__init__(d, n_atoms, seed)
        for value, name in ((bandwidth, "bandwidth"), (init_threshold, "init_threshold")):
            if not value > 0:
                raise ValueError(f"{name}: expected a number > 0, got {value!r}")
        if not sparsity_coeff >= 0:
            raise ValueError(f"sparsity_coeff: expected a number >= 0, got {sparsity_coeff!r}")
        self.sparsity_coeff = float(sparsity_coeff)
        self.bandwidth = float(bandwidth)
        self.log_threshold = nn.Parameter(
            torch.full((n_atoms,), float(torch.log(torch.tensor(init_threshold))))
        )

    @property
    def threshold(self) -> torch.Tensor:
        """The per-atom thresholds theta (n_atoms,)."""
        return self.log_threshold.exp()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        # The ReLU first (paper, appendix J) so that a negative pre-activation never passes.
        return _JumpReLU.apply(torch.relu(self.pre_codes(x)), self.threshold, self.bandwidth)

    def loss(self, x: torch.Tensor, codes: torch.Tensor, x_hat: torch.Tensor) -> dict[str, torch.Tensor]:
        out = super().loss(x, codes, x_hat)
        # The L0 term needs the pre-activations, which `codes` no longer carries below the threshold;
        # recompute them (one matmul) rather than change the shared loss signature.
        pre = torch.relu(self.pre_codes(x))
        l0 = _Step.apply(pre, self.threshold, self.bandwidth).sum(dim=1).mean()
        out["l0"] = l0
        out["loss"] = out["mse"] + self.sparsity_coeff * l0
        return out
