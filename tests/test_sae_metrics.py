"""Metrics of sparse dictionaries on cases with a known answer (no training)."""

from __future__ import annotations

import matplotlib
import matplotlib.cm
import numpy as np
import pytest
import torch

from workbench.sae import (
    cofiring,
    dead_fraction,
    dead_mask,
    dense_fraction,
    l0,
    matching,
    r2,
    recovery,
    stability,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (see conftest)


def overcomplete_metrics():
    # overcomplete 0.3.0 calls matplotlib.cm.get_cmap, removed from the installed matplotlib
    matplotlib.cm.get_cmap = lambda name=None, lut=None: (
        matplotlib.colormaps[name] if lut is None else matplotlib.colormaps[name].resampled(lut)
    )
    from overcomplete import metrics

    return metrics


def offset_data(seed=0):
    g = torch.Generator().manual_seed(seed)
    means = torch.tensor([10.0, -5.0, 0.0, 3.0])
    stds = torch.tensor([1.0, 2.0, 0.5, 1.5])
    return means + stds * torch.randn(2000, 4, generator=g)


def test_r2_perfect_and_mean_predictor():
    x = offset_data()
    assert r2(x, x) == pytest.approx(1.0)
    # predicting each dimension's mean explains nothing: exactly 0 per dimension
    assert r2(x, x.mean(0).expand_as(x)) == pytest.approx(0.0, abs=1e-6)


def test_r2_differs_from_overcomplete_exactly_as_predicted():
    """overcomplete's r2_score divides the MSE by the spread around the *global* mean.

    Known: with per-dimension variances v_j and means mu_j (population statistics), the global spread is
    mean_j v_j + mean_j (mu_j - mean(mu))^2. So for the mean predictor ours is 0 and theirs is
    1 - mean_j v_j / (mean_j v_j + spread of means), close to 1 here since the means differ by ~15 while
    the stds are ~1. Tolerance: their epsilon 1e-8 plus float32 sums over 8000 entries.
    """
    om = overcomplete_metrics()
    x = offset_data()
    x_hat = x.mean(0).expand_as(x).clone()
    v = x.var(0, unbiased=False)
    mu = x.mean(0)
    predicted = 1 - v.mean() / (v.mean() + (mu - mu.mean()).pow(2).mean())
    theirs = float(om.r2_score(x, x_hat))
    assert theirs == pytest.approx(float(predicted), abs=1e-5)
    assert theirs > 0.9 and r2(x, x_hat) == pytest.approx(0.0, abs=1e-6)
    # with centred data the two definitions agree when every dimension has the same variance
    g = torch.Generator().manual_seed(1)
    xc = torch.randn(5000, 4, generator=g)
    xc = (xc - xc.mean(0)) / xc.std(0, unbiased=False)
    noisy = xc + 0.3 * torch.randn(5000, 4, generator=g)
    assert r2(xc, noisy) == pytest.approx(float(om.r2_score(xc, noisy)), abs=1e-5)


def test_r2_skips_constant_dimensions_and_checks_shapes():
    x = offset_data()
    x[:, 2] = 7.0
    assert r2(x, x) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="shape of x"):
        r2(x, x[:, :3])
    with pytest.raises(ValueError, match="2-D"):
        r2(x[0], x[0])


def test_l0_dead_dense_with_signed_codes():
    codes = torch.tensor(
        [
            [1.0, 0.0, 0.0, 2.0],
            [-1.0, 0.0, 0.0, 1.0],
            [0.0, 0.0, 0.0, 3.0],
            [0.0, 0.5, 0.0, 1.0],
        ]
    )
    assert l0(codes) == pytest.approx((2 + 2 + 1 + 2) / 4)
    # atom 0 fires twice with codes +1 and -1: alive, although its codes sum to 0
    assert dead_mask(codes).tolist() == [False, False, True, False]
    assert dead_fraction(codes) == pytest.approx(0.25)
    om = overcomplete_metrics()
    assert om.dead_codes(codes).tolist() == [1.0, 0.0, 1.0, 0.0]  # theirs calls atom 0 dead
    # atom 3 fires on 4/4 inputs, atom 0 on 2/4 (not > 0.5), so only atom 3 is dense
    assert dense_fraction(codes, 0.5) == pytest.approx(0.25)
    assert dense_fraction(codes, 0.4) == pytest.approx(0.5)


def test_recovery_is_one_for_permuted_scaled_atoms_and_sign_aware():
    g = torch.Generator().manual_seed(0)
    D = torch.randn(10, 16, generator=g)
    perm = torch.randperm(10, generator=g)
    learned = torch.cat([3.0 * D[perm], torch.randn(5, 16, generator=g)])  # extra atoms are ignored
    assert recovery(D, learned) == pytest.approx(1.0)
    rows, cols, cos = matching(D, learned)
    assert (perm[cols] == torch.as_tensor(rows)).all()
    flipped = learned.clone()
    flipped[:10] *= -1
    assert recovery(D, flipped, absolute=True) == pytest.approx(1.0)
    assert recovery(D, flipped) < 0.5
    assert stability(D, learned[:10]) == pytest.approx(stability(learned[:10], D))
    with pytest.raises(ValueError, match="dimension"):
        recovery(D, torch.randn(10, 8))


def test_recovery_of_orthogonal_pair_known_value():
    # two atoms rotated by 45 degrees in their own plane: every matching gives cos 45 = 0.7071
    D = torch.eye(2)
    R = torch.tensor([[1.0, 1.0], [-1.0, 1.0]]) / 2**0.5
    assert recovery(D, R, absolute=True) == pytest.approx(2**-0.5)


def test_cofiring_known_matrix():
    codes = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, -2.0, 0.0], [1.0, 1.0, 0.0]])
    joint = cofiring(codes)
    expected = np.array([[3, 2, 0], [2, 3, 0], [0, 0, 0]]) / 4
    assert np.allclose(joint.numpy(), expected)
    cond = cofiring(codes, "conditional")
    assert cond[0, 1] == pytest.approx(2 / 3) and cond[2].abs().sum() == 0
    assert cofiring(codes, "count")[0, 0] == 3
    with pytest.raises(ValueError, match="normalize"):
        cofiring(codes, "bogus")
