"""Synthetic sparse mixtures with known atoms: the ground truth of dictionary learning.

``X = codes @ D_true`` with unit-norm atoms and non-negative sparse codes, so a method can be scored by
how well it recovers ``D_true`` (``metrics.recovery``).
"""

from __future__ import annotations

import torch

from workbench._core.seeding import make_generator
from workbench._core.validation import check_int
from workbench.sae.base import unit_rows

__all__ = ["sparse_mixtures"]

KINDS = ("independent", "correlated", "hierarchical")


def sparse_mixtures(
    n: int,
    d: int,
    n_atoms: int,
    k: int,
    kind: str = "independent",
    seed: int = 0,
    *,
    n_children: int = 3,
    p_child: float = 0.8,
    correlation: float = 0.7,
    group_size: int = 4,
    sibling_similarity: float = 0.0,
    noise: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sparse non-negative mixtures of known unit-norm atoms; returns ``(X, D_true, codes)``.

    ``X`` (n, d) = ``codes`` (n, n_atoms) @ ``D_true`` (n_atoms, d) (+ Gaussian noise of std ``noise``).
    Coefficients are uniform in [0.5, 1.5], so an active atom is never negligible.

    Kinds
    -----
    ``"independent"``
        Each input activates ``k`` atoms drawn uniformly without replacement; atoms are random directions.
    ``"correlated"``
        Atoms come in groups of ``group_size``; supports are the ``k`` largest entries of a Gaussian
        vector whose entries correlate by ``correlation`` within a group, so atoms of a group co-occur.
    ``"hierarchical"``
        ``n_atoms = n_parents * (1 + n_children)``: the first ``n_parents`` rows are parents, then the
        children of parent 0, of parent 1, ... Every child is orthogonal to its parent. Each input
        activates ``k`` parents; each active parent activates one of its children with probability
        ``p_child``, and a child is never active without its parent. ``sibling_similarity`` (in [0, 1))
        makes the children of one parent share a direction: their cosines are about that value (before
        the projection orthogonal to the parent), the coherent dictionaries where a linear encoder
        confuses siblings.

    Parameters
    ----------
    n, d, n_atoms, k
        Number of inputs, dimension, number of atoms, active atoms (or active parents) per input.
    kind
        One of ``"independent"``, ``"correlated"``, ``"hierarchical"``.
    seed
        Same seed, same data.
    """
    for value, name in ((n, "n"), (d, "d"), (n_atoms, "n_atoms"), (k, "k")):
        check_int(value, name)
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
    g = make_generator(seed)
    coeff = lambda shape: 0.5 + torch.rand(shape, generator=g)  # noqa: E731

    if kind == "hierarchical":
        if n_atoms % (1 + n_children):
            raise ValueError(
                f"n_atoms: expected a multiple of 1 + n_children = {1 + n_children} for hierarchical data, got {n_atoms}"
            )
        n_par = n_atoms // (1 + n_children)
        if k > n_par:
            raise ValueError(f"k: expected at most n_parents = {n_par} active parents, got {k}")
        parents = unit_rows(torch.randn(n_par, d, generator=g))
        if not 0 <= sibling_similarity < 1:
            raise ValueError(f"sibling_similarity: expected a number in [0, 1), got {sibling_similarity!r}")
        own = unit_rows(torch.randn(n_par, n_children, d, generator=g))
        shared = unit_rows(torch.randn(n_par, 1, d, generator=g))
        kids = sibling_similarity**0.5 * shared + (1 - sibling_similarity) ** 0.5 * own
        # orthogonal to the parent: remove the component along it
        kids = unit_rows(kids - (kids * parents[:, None]).sum(-1, keepdim=True) * parents[:, None])
        D = torch.cat([parents, kids.reshape(-1, d)])
        codes = torch.zeros(n, n_atoms)
        par = torch.rand(n, n_par, generator=g).argsort(dim=1)[:, :k]  # k distinct parents per input
        codes.scatter_(1, par, coeff((n, k)))
        child = torch.randint(n_children, (n, k), generator=g)
        on = torch.rand(n, k, generator=g) < p_child
        child_idx = n_par + par * n_children + child
        codes.scatter_(1, child_idx, coeff((n, k)) * on)
    else:
        if k > n_atoms:
            raise ValueError(f"k: expected at most n_atoms = {n_atoms}, got {k}")
        D = unit_rows(torch.randn(n_atoms, d, generator=g))
        if kind == "independent":
            support = torch.rand(n, n_atoms, generator=g).argsort(dim=1)[:, :k]
        else:
            groups = torch.arange(n_atoms) // group_size
            shared = torch.randn(n, int(groups.max()) + 1, generator=g)[:, groups]
            own = torch.randn(n, n_atoms, generator=g)
            latent = correlation**0.5 * shared + (1 - correlation) ** 0.5 * own
            support = latent.topk(k, dim=1).indices
        codes = torch.zeros(n, n_atoms).scatter_(1, support, coeff((n, k)))
    X = codes @ D
    if noise > 0:
        X = X + noise * torch.randn(n, d, generator=g)
    return X, D, codes
