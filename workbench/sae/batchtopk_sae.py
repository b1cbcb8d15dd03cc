"""BatchTopK sparse autoencoder (Bussmann et al. 2024, "BatchTopK Sparse Autoencoders", arXiv:2412.06410)."""

from __future__ import annotations

import torch

from workbench.sae.base import SAES, check_k
from workbench.sae.linear_encoder import LinearEncoderSAE

__all__ = ["BatchTopKSAE"]


@SAES.register("BatchTopKSAE", paper="Bussmann et al. 2024, BatchTopK Sparse Autoencoders, arXiv:2412.06410")
class BatchTopKSAE(LinearEncoderSAE):
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
