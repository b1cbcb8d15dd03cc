"""Scores of sparse dictionaries: reconstruction, sparsity, dead and dense atoms, recovery, stability.

All functions take tensors (codes (N, n_atoms), dictionaries (n_atoms, d)) and return Python floats or
tensors on the input's device; none trains or encodes.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from workbench.sae.base import unit_rows

__all__ = [
    "r2",
    "normalize_cofiring",
    "l0",
    "dead_mask",
    "dead_fraction",
    "dense_fraction",
    "matching",
    "recovery",
    "stability",
    "cofiring",
]


def _check_2d(t: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor) or t.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D tensor, got {getattr(t, 'shape', type(t).__name__)}")
    return t


def r2(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Explained variance, computed per dimension and then averaged over dimensions.

    ``mean_j [1 - sum_n (x_nj - x_hat_nj)^2 / sum_n (x_nj - mean_n x_nj)^2]``. Each dimension is compared
    with its own mean. overcomplete 0.3.0's ``r2_score`` instead divides the mean squared error by the
    spread around the **global** mean of all entries, which adds the spread of the per-dimension means to
    the denominator: with offset activations (e.g. a large mean direction, common in vision transformers)
    it reports a high R2 for a reconstruction that explains none of the variance. Dimensions that are
    constant over the data are skipped (their R2 is undefined).
    """
    x, x_hat = _check_2d(x, "x").float(), _check_2d(x_hat, "x_hat").float()
    if x.shape != x_hat.shape:
        raise ValueError(f"x_hat: expected the shape of x {tuple(x.shape)}, got {tuple(x_hat.shape)}")
    ss_res = (x - x_hat).pow(2).sum(0)
    ss_tot = (x - x.mean(0)).pow(2).sum(0)
    keep = ss_tot > 1e-12 * ss_tot.max().clamp_min(1e-30)
    if not keep.any():
        raise ValueError("x: every dimension is constant, R2 is undefined")
    return float((1 - ss_res[keep] / ss_tot[keep]).mean())


def l0(codes: torch.Tensor) -> float:
    """Mean number of non-zero codes per input."""
    codes = _check_2d(codes, "codes")
    return float((codes != 0).sum(1).float().mean())


def dead_mask(codes: torch.Tensor) -> torch.Tensor:
    """Boolean (n_atoms,): atoms never active over the data.

    Active means ``|code| > 0``, which is right for signed codes (matching pursuit): testing
    ``codes.sum(0) == 0``, as overcomplete's ``dead_codes`` does, calls an atom dead when its positive
    and negative codes cancel.
    """
    codes = _check_2d(codes, "codes")
    return ~(codes.abs() > 0).any(dim=0)


def dead_fraction(codes: torch.Tensor) -> float:
    """Fraction of atoms never active (``|code| > 0``) over the inputs ``codes`` (N, n_atoms)."""
    return float(dead_mask(codes).float().mean())


def dense_fraction(codes: torch.Tensor, threshold: float = 0.5) -> float:
    """Fraction of atoms active (``|code| > 0``) on more than ``threshold`` of the inputs."""
    codes = _check_2d(codes, "codes")
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold: expected a fraction in [0, 1], got {threshold!r}")
    freq = (codes.abs() > 0).float().mean(0)
    return float((freq > threshold).float().mean())


def _unit(d: torch.Tensor) -> np.ndarray:
    return unit_rows(d.detach().double().cpu()).numpy()


def matching(
    D_a: torch.Tensor, D_b: torch.Tensor, absolute: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hungarian matching of the atoms of two dictionaries by cosine similarity.

    Returns ``(rows, cols, cosines)``: atom ``rows[i]`` of ``D_a`` is matched to atom ``cols[i]`` of
    ``D_b`` with cosine ``cosines[i]``; ``min(n_a, n_b)`` pairs, maximising the summed cosine
    (``scipy.optimize.linear_sum_assignment``). ``absolute=True`` matches on ``|cos|``, for dictionaries
    whose codes are signed (matching pursuit with ``selection="abs"``), where an atom's sign is arbitrary.
    """
    a, b = _check_2d(D_a, "D_a"), _check_2d(D_b, "D_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"D_b: expected atoms of dimension {a.shape[1]} like D_a, got {b.shape[1]}")
    cos = _unit(a) @ _unit(b).T
    score = np.abs(cos) if absolute else cos
    rows, cols = linear_sum_assignment(score, maximize=True)
    return rows, cols, score[rows, cols]


def recovery(D_true: torch.Tensor, D: torch.Tensor, absolute: bool = False) -> float:
    """Mean cosine of the true atoms with their Hungarian-matched learned atoms (1 = all recovered).

    Each true atom is matched to a distinct learned atom (``D`` may have more atoms than ``D_true``).
    """
    return float(matching(D_true, D, absolute)[2].mean())


def stability(D_a: torch.Tensor, D_b: torch.Tensor, absolute: bool = False) -> float:
    """Mean Hungarian-matched cosine between the dictionaries of two runs (Fel et al. 2025's stability)."""
    return float(matching(D_a, D_b, absolute)[2].mean())


def cofiring(codes: torch.Tensor, normalize: str = "joint") -> torch.Tensor:
    """Co-activation matrix (n_atoms, n_atoms) of the atoms over the inputs.

    ``normalize="joint"``: ``P(i and j active)``, the diagonal holds each atom's firing rate;
    ``"conditional"``: ``P(j active | i active)`` (row ``i``; 0 for a dead atom ``i``);
    ``"count"``: the number of inputs where both are active.
    """
    codes = _check_2d(codes, "codes")
    if normalize not in ("joint", "conditional", "count"):
        raise ValueError(f"normalize: expected 'joint', 'conditional' or 'count', got {normalize!r}")
    act = (codes.abs() > 0).float()
    return normalize_cofiring(act.T @ act, codes.shape[0], normalize)


def normalize_cofiring(counts: torch.Tensor, n_inputs: int, normalize: str = "joint") -> torch.Tensor:
    """:func:`cofiring` from co-activation counts (n_atoms, n_atoms) summed over ``n_inputs`` inputs, so
    that the counts can be accumulated batch by batch (``cofiring(codes_batch, "count")``)."""
    if normalize == "count":
        return counts
    if normalize == "joint":
        return counts / n_inputs
    if normalize == "conditional":
        return counts / counts.diagonal().clamp_min(1).unsqueeze(1)
    raise ValueError(f"normalize: expected 'joint', 'conditional' or 'count', got {normalize!r}")
