"""MuFidelity, sparseness, complexity, average stability and the similarity measures, on cases with
known answers (a linear model, one-hot and uniform maps) and against scipy / scikit-image."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import pearsonr, spearmanr
from torch import nn

from workbench.attribution import gradient_input, saliency
from workbench.metrics.concentration import complexity, sparseness
from workbench.metrics.map_similarity import map_spearman, pearson, spearman, ssim
from workbench.metrics.mufidelity_correlation import mufidelity
from workbench.metrics.noise_stability import average_stability


class CountingLinear(nn.Module):
    """(N, C, H, W) -> (N, K) logits, W x + b; records the rows of every forward pass."""

    def __init__(self, c=3, size=18, k=4, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.linear = nn.Linear(c * size * size, k)
        with torch.no_grad():
            self.linear.weight.copy_(torch.randn(k, c * size * size, generator=g))
            self.linear.bias.copy_(torch.randn(k, generator=g))
        self.calls: list[int] = []

    def forward(self, x):
        self.calls.append(len(x))
        return self.linear(x.flatten(1))


def images(n=3, c=3, size=18, seed=1):
    return torch.rand(n, c, size, size, generator=torch.Generator().manual_seed(seed))


# -- MuFidelity -------------------------------------------------------------------------------------------
def test_mufidelity_of_gradient_input_on_a_linear_model_is_one():
    """Zero baseline, logit score: removing the cells S changes the logit by sum_{i in S} w_i x_i, which
    is exactly the sum of the gradient x input map over S, so both correlations are 1 (to float
    rounding: 1e-5). A random map is unrelated to the drops: |correlation| well under 0.5 over 200
    samples (its standard error is about 0.07)."""
    model, x = CountingLinear(), images()
    y = torch.tensor([0, 1, 2])
    gi = gradient_input(model, x, y)
    for corr in ("pearson", "spearman"):
        torch.testing.assert_close(
            mufidelity(model, x, y, gi, correlation=corr), torch.ones(3), atol=1e-5, rtol=0
        )
    rand = mufidelity(model, x, y, torch.randn(3, 18, 18, generator=torch.Generator().manual_seed(2)))
    assert bool((rand.abs() < 0.5).all()), rand
    # a constant map: every subset has the same sum, so the correlation is 0 (not NaN)
    torch.testing.assert_close(mufidelity(model, x, y, torch.ones(3, 18, 18)), torch.zeros(3))


def test_mufidelity_batches_counts_and_determinism():
    model, x = CountingLinear(), images(n=5)
    gi = gradient_input(model, x, 1)
    model.calls.clear()
    first = mufidelity(model, x, 1, gi, n_samples=30, batch_size=16, grid_size=6, seed=3)
    assert max(model.calls) <= 16 and sum(model.calls) == 5 * 30 + 5  # perturbations + the references
    again = mufidelity(model, x, 1, gi, n_samples=30, batch_size=7, grid_size=6, seed=3)
    torch.testing.assert_close(first, again)  # the batch size never changes the result
    x0, m0 = x.clone(), gi.clone()
    mufidelity(model, x, 1, gi, n_samples=10, baseline=lambda v: v.mul_(0))
    assert torch.equal(x, x0) and torch.equal(gi, m0)
    with pytest.raises(ValueError, match="subset_fraction"):
        mufidelity(model, x, 1, gi, subset_fraction=1.0)
    with pytest.raises(ValueError, match="correlation"):
        mufidelity(model, x, 1, gi, correlation="kendall")
    with pytest.raises(ValueError, match="grid_size"):
        mufidelity(model, x, 1, gi, grid_size=40)
    with pytest.raises(ValueError, match="maps"):
        mufidelity(model, x, 1, gi[:, :4])


# -- correlations and SSIM against the references ---------------------------------------------------------
def test_correlations_match_scipy_with_ties():
    g = torch.Generator().manual_seed(0)
    a = (torch.rand(4, 50, generator=g) * 6).floor()  # many ties
    b = a + torch.randn(4, 50, generator=g)
    for ours, ref in ((pearson, pearsonr), (spearman, spearmanr)):
        expected = torch.tensor([ref(u.numpy(), v.numpy())[0] for u, v in zip(a, b)], dtype=torch.float32)
        torch.testing.assert_close(ours(a, b), expected, atol=1e-6, rtol=0)
    maps = torch.rand(3, 8, 8, generator=g)
    torch.testing.assert_close(map_spearman(maps, maps), torch.ones(3))
    torch.testing.assert_close(map_spearman(maps, -maps, absolute=True), torch.ones(3))
    torch.testing.assert_close(spearman(torch.ones(2, 9), torch.rand(2, 9, generator=g)), torch.zeros(2))


def test_ssim_matches_scikit_image():
    """Same definition as skimage's structural_similarity with Gaussian weights (sigma 1.5, truncated
    at 3.5 sigma: 11 x 11), population covariance and data_range 1 on min-max rescaled maps: equal to
    float32 rounding (1e-5)."""
    from skimage.metrics import structural_similarity

    g = torch.Generator().manual_seed(0)
    a = torch.rand(3, 20, 24, generator=g)
    b = a + 0.3 * torch.rand(3, 20, 24, generator=g)
    ours = ssim(a, b)

    def unit(m):
        return (m - m.min()) / (m.max() - m.min())

    ref = [
        structural_similarity(unit(u).double().numpy(), unit(v).double().numpy(), data_range=1.0,
                              gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
        for u, v in zip(a, b)
    ]  # fmt: skip
    torch.testing.assert_close(ours, torch.tensor(ref, dtype=torch.float32), atol=1e-5, rtol=0)
    torch.testing.assert_close(ssim(a, a), torch.ones(3))
    with pytest.raises(ValueError, match="same shape"):
        ssim(a, b[:, :10])


# -- sparseness and complexity ----------------------------------------------------------------------------
def test_sparseness_and_complexity_closed_forms():
    n = 64
    one_hot = torch.zeros(2, 8, 8)
    one_hot[:, 3, 4] = 5.0
    uniform = torch.full((2, 8, 8), -2.0)  # magnitudes count, not signs
    torch.testing.assert_close(sparseness(one_hot), torch.full((2,), 1 - 1 / n))
    torch.testing.assert_close(sparseness(uniform), torch.zeros(2))
    torch.testing.assert_close(complexity(one_hot), torch.zeros(2))
    torch.testing.assert_close(complexity(uniform), torch.full((2,), math.log(n)))
    # half the pixels at 1, half at 0: Gini 1/2, entropy log(n / 2)
    half = torch.zeros(1, 8, 8)
    half[:, :4] = 1.0
    torch.testing.assert_close(sparseness(half), torch.tensor([0.5]))
    torch.testing.assert_close(complexity(half), torch.tensor([math.log(n / 2)]))
    # all zero: no concentration, never NaN
    torch.testing.assert_close(sparseness(torch.zeros(1, 8, 8)), torch.zeros(1))
    torch.testing.assert_close(complexity(torch.zeros(1, 8, 8)), torch.tensor([math.log(n)]))
    with pytest.raises(ValueError, match="NaN"):
        sparseness(torch.full((1, 4, 4), float("nan")))


# -- average stability ------------------------------------------------------------------------------------
def test_average_stability_on_a_linear_model():
    """Saliency of a linear model is |w| everywhere: the same for every input, so the stability is 0
    exactly. Gradient x input (channels summed) moves by sum_c w_c delta_c per pixel, delta uniform in
    [-r, r]: its squared L2 norm has mean sum_p sum_c w_pc^2 r^2 / 3, and with 972 terms the norm
    concentrates, so the mean distance is within 2 % of sqrt of that."""
    model, x = CountingLinear(size=18), images(n=2)
    y = torch.tensor([0, 3])
    torch.testing.assert_close(average_stability(saliency, model, x, y, n_samples=5), torch.zeros(2))
    r = 0.1
    got = average_stability(gradient_input, model, x, y, radius=r, n_samples=20, batch_size=8)
    w = model.linear.weight.detach().view(4, 3, 18, 18)[y]
    expected = (w.pow(2).sum((1, 2, 3)) * r**2 / 3).sqrt()
    torch.testing.assert_close(got, expected, rtol=0.02, atol=0)
    # normalized: divided by the norm of the explanation of x
    ref_norm = gradient_input(model, x, y).flatten(1).norm(dim=1)
    rel = average_stability(gradient_input, model, x, y, radius=r, n_samples=20, normalize=True, batch_size=8)
    torch.testing.assert_close(rel, got / ref_norm, rtol=1e-5, atol=0)
    x0 = x.clone()
    average_stability(gradient_input, model, x, y, n_samples=2)
    assert torch.equal(x, x0)
    with pytest.raises(ValueError, match="radius"):
        average_stability(saliency, model, x, y, radius=0)
    with pytest.raises(ValueError, match="explain"):
        average_stability("saliency", model, x, y)


def test_mufidelity_with_named_and_mask_aware_baselines():
    """A linear model with the 'mean' baseline: the drop of S is sum_{i in S} w_i (x_i - mean_c), which
    is the map w * (x - mean) summed over channels, so that map scores 1. ROAD fills each subset from
    its neighbours (mask-aware, per batch): the result is finite and deterministic."""
    model, x = CountingLinear(), images()
    y = torch.tensor([0, 1, 2])
    w = model.linear.weight.detach().view(4, 3, 18, 18)[y]
    centred = (w * (x - x.mean((2, 3), keepdim=True))).sum(1)
    torch.testing.assert_close(
        mufidelity(model, x, y, centred, baseline="mean"), torch.ones(3), atol=1e-5, rtol=0
    )
    road = mufidelity(model, x, y, centred, baseline="road", n_samples=20)
    assert bool(torch.isfinite(road).all())
    torch.testing.assert_close(road, mufidelity(model, x, y, centred, baseline="road", n_samples=20))
