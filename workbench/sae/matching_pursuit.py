"""Matching-pursuit sparse autoencoder (MP-SAE).

Costa et al. 2025, "From Flat to Hierarchical: Extracting Sparse Representations with Matching Pursuit".
The encoder is not a network but ``k`` greedy steps of matching pursuit over the
(unit-norm) dictionary: each step correlates the residual with every atom, picks the best one, adds its
coefficient to the code and subtracts its contribution from the residual. Because an atom is unit-norm,
``||r - <r, d> d||^2 = ||r||^2 - <r, d>^2``: the residual norm never increases, for any ``k``.
"""

from __future__ import annotations

import torch
from torch import nn

from workbench._core.seeding import make_generator
from workbench.sae.base import SAES, SparseAutoencoder, check_k, unit_rows

__all__ = ["MPSAE"]


@SAES.register(
    "MPSAE",
    paper="Costa et al. 2025, From Flat to Hierarchical: Extracting Sparse Representations with Matching Pursuit",
)
class MPSAE(SparseAutoencoder):
    """Matching-pursuit SAE (Costa et al. 2025).

    ``dictionary`` is the row-normalised weight, so atoms are unit-norm at every forward pass (and
    ``constrain()`` also renormalises the stored weight, keeping its scale from drifting). Each of the
    ``k`` steps computes ``z = r D^T`` and picks

    - ``selection="abs"`` (default, as in the paper's matching pursuit): the atom with the largest
      ``|z|``; codes are then **signed**, so count an atom as active where ``|code| > 0``;
    - ``selection="positive"``: the atom with the largest ``z`` (overcomplete 0.3.0's MpSAE), with its
      coefficient clipped at 0 so that a step can only lower the residual; codes are non-negative.

    An atom may be picked more than once (its coefficients add up), so a code has at most ``k``
    non-zeros. With ``"positive"``, a row whose correlations are all ``<= 0`` is finished: a further
    step could only re-pick one atom with a zero coefficient, so its code stops there (all zeros when
    that happens at the first step), and the pursuit ends once every row is finished
    (:attr:`last_steps` says how many steps the last call ran). ``k`` is an attribute, and ``encode(x, k=...)`` overrides it for one call: the same
    dictionary can be read at a different sparsity at inference.

    Parameters
    ----------
    d, n_atoms
        Activation dimension and number of atoms.
    k
        Number of pursuit steps.
    selection
        ``"abs"`` or ``"positive"`` (see above).
    seed
        Seed of the initialisation (random unit atoms).
    """

    def __init__(self, d: int, n_atoms: int, k: int, selection: str = "abs", seed: int = 0):
        super().__init__(d, n_atoms)
        self.k = check_k(k, n_atoms)
        if selection not in ("abs", "positive"):
            raise ValueError(f"selection: expected 'abs' or 'positive', got {selection!r}")
        self.selection = selection
        g = make_generator(seed)
        w = torch.randn(n_atoms, d, generator=g)
        self.W = nn.Parameter(unit_rows(w))
        self.last_steps = 0  # pursuit steps run by the last call (< k when every row ran out)

    @property
    def dictionary(self) -> torch.Tensor:
        return unit_rows(self.W)

    def encode(self, x: torch.Tensor, k: int | None = None) -> torch.Tensor:
        codes, _ = self.pursuit(x, k)
        return codes

    def pursuit(self, x: torch.Tensor, k: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes (N, n_atoms) and the final residual (N, d) after ``k`` steps (default ``self.k``).

        The residual is taken from ``x - bias``, so ``decode(codes) = x - residual`` exactly.
        """
        x = self.check_input(x)
        k = check_k(self.k if k is None else k, self.n_atoms)
        D = self.dictionary
        residual = x - self.bias
        codes = x.new_zeros(x.shape[0], self.n_atoms)
        self.last_steps = 0
        for _ in range(k):
            z = residual @ D.T
            if self.selection == "abs":
                idx = z.abs().argmax(dim=1, keepdim=True)
                val = z.gather(1, idx)
            else:
                idx = z.argmax(dim=1, keepdim=True)
                val = z.gather(1, idx)
                # No positive correlation left: the row is finished (its value is zeroed, not clamped,
                # so neither the code nor the gradient sees the re-picked atom); stop when all are.
                live = val > 0
                if not bool(live.any()):
                    break
                val = val * live
            self.last_steps += 1
            # out-of-place updates: autograd needs every intermediate code and residual
            codes = codes.scatter_add(1, idx, val)
            residual = residual - val * D[idx.squeeze(1)]
        return codes, residual

    @torch.no_grad()
    def constrain(self) -> None:
        self.W.copy_(self.dictionary)

    @torch.no_grad()
    def revive(self, x: torch.Tensor, dead_mask: torch.Tensor) -> int:
        """Re-point dead atoms at the worst-reconstructed inputs; returns how many were revived.

        A greedy pursuit never picks an atom that never wins a correlation, so such an atom gets no
        gradient and stays dead. Following the resampling of Bricken et al. 2023, each dead atom becomes
        the normalised residual of one of the inputs with the largest residual norm (distinct inputs,
        largest first), which is the direction the current dictionary explains worst.

        Parameters
        ----------
        x
            A batch of activations (N, d).
        dead_mask
            Boolean mask (n_atoms,), e.g. from ``metrics.dead_mask(codes)`` over recent batches.
        """
        dead = torch.as_tensor(dead_mask, dtype=torch.bool, device=self.W.device)
        if dead.shape != (self.n_atoms,):
            raise ValueError(
                f"dead: expected a boolean mask of shape ({self.n_atoms},), got {tuple(dead.shape)}"
            )
        n_dead = int(dead.sum())
        if n_dead == 0:
            return 0
        _, residual = self.pursuit(x)
        order = residual.norm(dim=1).argsort(descending=True)[:n_dead]
        new = residual[order]
        new = unit_rows(new)
        idx = dead.nonzero().squeeze(1)[: new.shape[0]]
        self.W[idx] = new
        return int(idx.numel())

    #: The former name of :meth:`revive` (same arguments, same order).
    revive_dead_atoms = revive

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, k={self.k}, selection={self.selection!r}"
