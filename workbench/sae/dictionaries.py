"""Sparse autoencoders with a linear encoder: ReLU + L1, TopK, BatchTopK and JumpReLU.

All four share one encoder ``pre = (x - bias) @ W_enc.T + b_enc`` (the decoder bias is subtracted first, as
in Gao et al. 2024, so the encoder sees centred activations) and one free decoder ``W_dec`` (n_atoms, d).
They differ only in the activation that turns ``pre`` into sparse codes and in the sparsity term of the
loss, so each variant overrides ``encode`` and, where needed, ``loss``.

References
----------
- ReLU + L1: Bricken et al. 2023, "Towards Monosemanticity" (Anthropic).
- TopK: Gao et al. 2024, "Scaling and evaluating sparse autoencoders", arXiv:2406.04093.
- BatchTopK: Bussmann et al. 2024, "BatchTopK Sparse Autoencoders", arXiv:2412.06410.
- JumpReLU: Rajamanoharan et al. 2024, "Jumping Ahead: Improving Reconstruction Fidelity with JumpReLU
  Sparse Autoencoders", arXiv:2407.14435.
"""

from __future__ import annotations

import torch
from torch import nn

from workbench._core.seeding import make_generator
from workbench.sae.base import SparseAutoencoder

__all__ = ["ReLUSAE", "TopKSAE", "BatchTopKSAE", "JumpReLUSAE", "check_k"]


def check_k(k: int, n_atoms: int, name: str = "k") -> int:
    """``k`` as an int in [1, n_atoms], or a clear error."""
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n_atoms:
        raise ValueError(f"{name}: expected an integer in [1, n_atoms={n_atoms}], got {k!r}")
    return k


def _unit_rows(w: torch.Tensor) -> torch.Tensor:
    return w / w.norm(dim=1, keepdim=True).clamp_min(1e-12)


class _LinearEncoderSAE(SparseAutoencoder):
    """Shared parts: a linear encoder and a free, unit-norm decoder.

    The decoder rows are random unit vectors drawn from ``seed``; the encoder starts tied to them
    (``W_enc = W_dec``), the initialisation of Gao et al. 2024 that avoids many dead latents.
    ``constrain()`` renormalises the decoder rows, so a sparsity penalty on the codes cannot be dodged
    by shrinking the codes and growing the atoms.
    """

    def __init__(self, d: int, n_atoms: int, seed: int = 0, unit_norm: bool = True):
        super().__init__(d, n_atoms)
        g = make_generator(seed)
        w = _unit_rows(torch.randn(n_atoms, d, generator=g))
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
        return self.W_dec

    @torch.no_grad()
    def constrain(self) -> None:
        if self.unit_norm:
            self.W_dec.copy_(_unit_rows(self.W_dec))


class ReLUSAE(_LinearEncoderSAE):
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


class TopKSAE(_LinearEncoderSAE):
    """Keep the ``k`` largest ReLU pre-activations of each input (Gao et al. 2024, arXiv:2406.04093).

    Sparsity is exact (at most ``k`` non-zero codes per input), so the loss is the reconstruction error
    alone. ``k`` may be changed after training (an attribute). ``TopK(ReLU(pre))`` equals
    ``ReLU(TopK(pre))``: the order does not matter because ReLU is monotone.

    Dead atoms get a gradient through the auxiliary loss of Gao et al. (their appendix A.2), which the
    trainer adds when some atoms are dead (:meth:`aux_loss`): the ``k_aux`` largest pre-activations of
    the dead atoms reconstruct the residual ``x - x_hat``, scaled by the residual's variance.

    Parameters
    ----------
    d, n_atoms
        Activation dimension and number of atoms.
    k
        Number of non-zero codes per input, 1 <= k <= n_atoms.
    seed
        Seed of the initialisation.
    k_aux
        Dead atoms used by the auxiliary loss; default ``min(n_atoms, max(2 k, d // 2))`` (Gao et al.
        use d / 2).
    aux_coeff
        Weight of the auxiliary loss (1/32 in Gao et al.).
    """

    def __init__(
        self, d: int, n_atoms: int, k: int, seed: int = 0, k_aux: int | None = None, aux_coeff: float = 1 / 32
    ):
        super().__init__(d, n_atoms, seed)
        self.k = check_k(k, n_atoms)
        self.k_aux = check_k(min(n_atoms, max(2 * k, d // 2)) if k_aux is None else k_aux, n_atoms)
        if not aux_coeff >= 0:
            raise ValueError(f"aux_coeff: expected a number >= 0, got {aux_coeff!r}")
        self.aux_coeff = float(aux_coeff)

    def aux_loss(
        self, x: torch.Tensor, codes: torch.Tensor, x_hat: torch.Tensor, dead_mask: torch.Tensor
    ) -> torch.Tensor:
        """TopK-aux (Gao et al. 2024, appendix A.2): ``aux_coeff * ||e - e_hat||^2 / ||e - mean e||^2`` with
        ``e = x - x_hat`` (detached) and ``e_hat`` decoded (without bias) from the ``k_aux`` largest
        pre-activations among the dead atoms. Zero when no atom is dead (no host synchronisation).

        The pre-activations are used without the ReLU: an atom is usually dead because its
        pre-activations went negative, and a ReLU there would give it no gradient either."""
        residual = (x - x_hat).detach()
        pre = self.pre_codes(x).masked_fill(~dead_mask, float("-inf"))
        top = torch.topk(pre, min(self.k_aux, self.n_atoms), dim=1)
        top_values = torch.where(torch.isfinite(top.values), top.values, torch.zeros_like(top.values))
        aux_codes = torch.zeros_like(pre).scatter(1, top.indices, top_values)
        estimate = aux_codes @ self.dictionary
        scale = (residual - residual.mean(0)).pow(2).sum().clamp_min(1e-12)
        return self.aux_coeff * (estimate - residual).pow(2).sum() / scale

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        k = check_k(self.k, self.n_atoms)
        pre = torch.relu(self.pre_codes(x))
        top = torch.topk(pre, k, dim=1)
        return torch.zeros_like(pre).scatter(1, top.indices, top.values)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(encode(x), decode(codes))``, computed through the ``k`` active atoms of each input on a CPU.

        The dense path multiplies by all ``n_atoms`` rows in the decoder and in every backward matmul,
        though only ``k`` codes per input are non-zero. On a CPU the atoms are chosen by one dense
        encoder pass without gradient, then the kept codes are recomputed from the ``k`` encoder rows
        and decoded from the ``k`` atoms (``embedding_bag``): the same values and gradients to rounding,
        with about a fifth of the multiply-adds. On other devices the dense kernels are used, and so is a
        subclass that overrides ``encode``, ``pre_codes`` or ``decode`` (its own version must be the one
        that runs).
        """
        cls = type(self)
        own = (cls.encode, cls.pre_codes, cls.decode) == (
            TopKSAE.encode, _LinearEncoderSAE.pre_codes, SparseAutoencoder.decode
        )  # fmt: skip
        if x.device.type != "cpu" or not own:
            return super().forward(x)
        k = check_k(self.k, self.n_atoms)
        centred = self.check_input(x) - self.bias
        with torch.no_grad():  # ReLU is monotone: the top k of pre are the top k of relu(pre)
            idx = torch.topk(nn.functional.linear(centred, self.W_enc, self.b_enc), k, dim=1).indices
        rows = nn.functional.embedding(idx, self.W_enc)  # (N, k, d)
        # elementwise, not bmm: a batch of (k, d) x (d, 1) products is several times slower in bmm
        values = torch.relu((rows * centred.unsqueeze(1)).sum(2) + self.b_enc[idx])
        codes = values.new_zeros(len(values), self.n_atoms).scatter(1, idx, values)
        dictionary = self.dictionary
        x_hat = nn.functional.embedding_bag(idx, dictionary, per_sample_weights=values.to(dictionary.dtype),
                                            mode="sum") + self.bias  # fmt: skip
        return codes, x_hat

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, k={self.k}"


class BatchTopKSAE(_LinearEncoderSAE):
    """Keep the ``k * N`` largest activations of a whole batch (Bussmann et al. 2024, arXiv:2412.06410).

    In training mode the number of active atoms varies per input, ``k`` on average. A batch-level rule
    makes an input's code depend on its batch-mates, so in eval mode each activation is compared with a
    fixed ``threshold`` instead (a buffer). Like BatchNorm's running statistics, that buffer is updated by
    every training-mode ``encode`` (an exponential average, ``momentum``, of the smallest kept activation):
    calling ``train()`` or ``eval()`` changes nothing by itself. ``calibrate(x)`` sets it from data.

    Parameters
    ----------
    d, n_atoms
        Activation dimension and number of atoms.
    k
        Average number of non-zero codes per input.
    momentum
        Weight of the old threshold in the running average.
    seed
        Seed of the initialisation.
    """

    def __init__(self, d: int, n_atoms: int, k: int, momentum: float = 0.9, seed: int = 0):
        super().__init__(d, n_atoms, seed)
        self.k = check_k(k, n_atoms)
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum: expected a number in [0, 1), got {momentum!r}")
        self.momentum = float(momentum)
        # NaN = never set: eval-mode encoding then refuses rather than silently using 0.
        self.register_buffer("threshold", torch.tensor(float("nan")))

    def _batch_topk(self, pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k = check_k(self.k, self.n_atoms)
        flat = pre.flatten()
        top = torch.topk(flat, min(k * pre.shape[0], flat.numel()))
        codes = torch.zeros_like(flat).scatter(0, top.indices, top.values).view_as(pre)
        kept = top.values[top.values > 0]
        smallest = kept.min() if kept.numel() else pre.new_tensor(0.0)
        return codes, smallest.detach()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        pre = torch.relu(self.pre_codes(x))
        if self.training:
            codes, smallest = self._batch_topk(pre)
            with torch.no_grad():
                if torch.isnan(self.threshold):
                    self.threshold.copy_(smallest)
                else:
                    self.threshold.mul_(self.momentum).add_((1 - self.momentum) * smallest)
            return codes
        if torch.isnan(self.threshold):
            raise RuntimeError(
                "BatchTopKSAE: no threshold yet for eval-mode encoding; train it or call calibrate(x)"
            )
        return pre * (pre > self.threshold)

    @torch.no_grad()
    def calibrate(self, x: torch.Tensor) -> float:
        """Set ``threshold`` to the smallest activation the batch rule keeps on ``x``; returns it."""
        _, smallest = self._batch_topk(torch.relu(self.pre_codes(x)))
        self.threshold.copy_(smallest)
        return float(smallest)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, k={self.k}"


# -- JumpReLU -----------------------------------------------------------------------------------------
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


class JumpReLUSAE(_LinearEncoderSAE):
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
