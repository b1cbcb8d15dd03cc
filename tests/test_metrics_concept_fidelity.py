"""C-Deletion, C-Insertion and C-MuFidelity (Fel et al., NeurIPS 2023) on heads whose answer is known.

An additive head ``f(u) = b + sum_i c_i(u)`` with ``c_i = a_i sum_t u_it`` has exact concept contributions:
removing a set S of concepts (their coefficients zeroed everywhere) gives ``b + sum_{i not in S} c_i``, so
every curve can be written by hand.
"""

from __future__ import annotations

import pytest
import torch

from workbench.metrics import METRICS, c_deletion, c_insertion, c_mufidelity

pytestmark = pytest.mark.usefixtures("one_thread")

A = torch.tensor([1.0, -2.0, 0.5, 3.0])
B = 0.25


def head(codes):
    """Two classes: class 0 is the additive score, class 1 its negative (so targets matter)."""
    s = B + (codes.sum(-1) * A.to(codes.dtype)).sum(1)
    return torch.stack([s, -s], 1)


def data():
    codes = torch.rand(3, 4, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    contrib = codes.sum(-1) * A.double()  # (3, 4) exact contributions to class 0
    return codes, contrib


def test_c_deletion_and_c_insertion_curves_by_hand():
    codes, c = data()
    imp = c.clone()
    out = c_deletion(head, codes, 0, imp)
    order = imp.argsort(1, descending=True)
    sorted_c = c.gather(1, order)  # contributions in the order they are removed
    total = B + c.sum(1, keepdim=True)
    # deletion: after k steps the k most important are gone
    expected = torch.cat([total, total - sorted_c.cumsum(1)], 1)
    torch.testing.assert_close(out.curve, expected)
    torch.testing.assert_close(out.fractions, torch.tensor([0, 0.25, 0.5, 0.75, 1.0]))
    torch.testing.assert_close(out.auc, (expected[:, :-1] + expected[:, 1:]).sum(1) / 8)
    ins = c_insertion(head, codes, 0, imp)
    expected_ins = torch.cat([torch.full((3, 1), B, dtype=torch.float64), B + sorted_c.cumsum(1)], 1)
    torch.testing.assert_close(ins.curve, expected_ins)
    # the end points: deletion ends at the all-zero codes, insertion at the full codes
    torch.testing.assert_close(out.curve[:, -1], ins.curve[:, 0])
    torch.testing.assert_close(out.curve[:, 0], ins.curve[:, -1])
    # class 1 reads -f; chunks of two concepts (steps = 2) keep the points 0, 2 and 4
    neg = c_deletion(head, codes, torch.tensor([1, 1, 1]), imp, steps=2)
    torch.testing.assert_close(neg.curve, -expected[:, [0, 2, 4]])
    # ties are broken by concept index: equal importances remove concepts 0, 1, 2, 3 in turn
    flat = c_deletion(head, codes, 0, torch.zeros(3, 4))
    torch.testing.assert_close(flat.curve[:, 1], total[:, 0] - c[:, 0])


def test_c_mufidelity_is_one_for_exact_contributions():
    """For an additive head the drop when S is removed is exactly sum_{i in S} c_i: Pearson 1 (to float64
    rounding) for any subset size; a shuffled attribution correlates less."""
    codes, c = data()
    for k in (1, 2, 3):
        mu = c_mufidelity(head, codes, 0, c, subset_size=k, nb_samples=64)
        torch.testing.assert_close(mu, torch.ones(3), atol=1e-6, rtol=0)
    assert (c_mufidelity(head, codes, 0, c.flip(1), nb_samples=64) < 0.99).all()
    # a same seed gives the same subsets, hence the same result
    rand = torch.randn(3, 4, generator=torch.Generator().manual_seed(1))
    a, b = (c_mufidelity(head, codes, 0, rand, subset_size=2, seed=5) for _ in range(2))
    torch.testing.assert_close(a, b)
    assert a.shape == (3,) and a.dtype == torch.float32


def test_registry_and_errors():
    for name in ("c_deletion", "c_insertion", "c_mufidelity"):
        assert "Holistic" in METRICS.entry(name).paper
        assert METRICS.entry(name).module == "workbench.metrics.concept_fidelity"
    codes, c = data()
    with pytest.raises(
        ValueError, match=r"importances: expected one importance per image and concept, shape \(3, 4\)"
    ):
        c_deletion(head, codes, 0, c[:, :3])
    with pytest.raises(ValueError, match="importances: contains NaN"):
        c_insertion(head, codes, 0, c * float("nan"))
    with pytest.raises(ValueError, match="codes: contains NaN"):
        c_deletion(head, codes * float("nan"), 0, c)
    with pytest.raises(ValueError, match="steps: expected at most the number of concepts r = 4"):
        c_deletion(head, codes, 0, c, steps=5)
    with pytest.raises(ValueError, match=r"subset_size: expected an integer in \[1, r - 1 = 3\]"):
        c_mufidelity(head, codes, 0, c, subset_size=4)
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 1\]"):
        c_deletion(head, codes, 2, c)
    with pytest.raises(ValueError, match=r"y: expected shape \(3,\)"):
        c_deletion(head, codes, torch.tensor([0, 1]), c)
