"""TopK sparse autoencoder (Gao et al. 2024, "Scaling and evaluating sparse autoencoders", arXiv:2406.04093)."""

from __future__ import annotations

import torch
from torch import nn

from workbench.sae.base import SAES, SparseAutoencoder, check_k
from workbench.sae.linear_encoder import LinearEncoderSAE

__all__ = ["TopKSAE"]


@SAES.register(
    "TopKSAE", paper="Gao et al. 2024, Scaling and evaluating sparse autoencoders, arXiv:2406.04093"
)
class TopKSAE(LinearEncoderSAE):
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
            TopKSAE.encode, LinearEncoderSAE.pre_codes, SparseAutoencoder.decode
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
