"""Sobol and HSIC attribution, and the samplers they share, checked against known answers.

The toy models read grid-cell means straight from the image: with ``x = ones`` and the inpainting
perturbation ``x * M``, the mean of cell ``i`` is exactly the mask value ``M_i``, so the real pipeline
(design -> nearest upsampling -> perturbation -> batched forward passes -> estimator) is exercised on a
function of the masks whose sensitivity indices are known in closed form.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from workbench.attribution import hsic_dependence as hsic_mod
from workbench.attribution import perturbations as perturbations_mod
from workbench.attribution import sampling
from workbench.attribution.estimators import (
    ESTIMATORS,
    center_gram,
    hsic_interaction_scores,
    hsic_scores,
    input_grams,
    median_bandwidth,
    median_output_bandwidth,
    output_gram,
)
from workbench.attribution.hsic_dependence import hsic, hsic_interactions
from workbench.attribution.perturbations import PERTURBATIONS
from workbench.attribution.registry import METHODS
from workbench.attribution.sobol_sensitivity import design_masks, sobol, sobol_design

# ----------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------


def cell_means(x: torch.Tensor, g: int) -> torch.Tensor:
    """(B, 3, g*k, g*k) -> (B, g*g): the mean of each grid cell, row-major."""
    b, c, h, w = x.shape
    k = h // g
    return x.view(b, c, g, k, g, k).mean((1, 3, 5)).flatten(1)


class CellModel(nn.Module):
    """A 'model' whose single logit is ``fn(cell means)``; it counts calls and batch sizes."""

    def __init__(self, g: int, fn):
        super().__init__()
        self.g, self.fn, self.batches = g, fn, []

    def forward(self, x):
        self.batches.append(len(x))
        return self.fn(cell_means(x, self.g))[:, None]


def tiny_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(64, 3)
    ).eval()


def energy_in_mask(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    pos = maps.clamp(min=0)
    return (pos * masks).sum((1, 2)) / pos.sum((1, 2))


# ----------------------------------------------------------------------------------------------------------
# samplers
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(sampling.SAMPLERS))
def test_samplers_shape_range_determinism(name):
    a = sampling.sample(name, 16, 5, seed=1)
    assert a.shape == (16, 5) and a.dtype == torch.float32
    assert float(a.min()) >= 0 and float(a.max()) < 1
    torch.testing.assert_close(a, sampling.sample(name, 16, 5, seed=1))
    if name not in ("sobol_unscrambled", "sobol_xplique", "halton_xplique"):  # plain sequences: no randomness
        assert not torch.equal(a, sampling.sample(name, 16, 5, seed=2))


def test_binary_masks_and_errors():
    m = sampling.binary_masks("lhs", 10, 7, seed=0)
    assert set(m.unique().tolist()) == {0.0, 1.0}
    assert (m.sum(0) == 5).all()  # thresholded LHS keeps exactly half the masks per cell
    b = sampling.binary_masks("bernoulli", 400, 3, seed=0)
    assert abs(float(b.mean()) - 0.5) < 0.05
    with pytest.raises(ValueError, match="power of 2"):
        sampling.sample("sobol", 30, 2)
    with pytest.raises(ValueError, match=r"valid: \['halton', 'halton_xplique', 'lhs'"):
        sampling.sample("nope", 4, 2)
    with pytest.raises(ValueError, match="'bernoulli'"):
        sampling.binary_masks("nope", 4, 2)
    # a user sampler: fn(n, d, seed) -> (n, d) in [0, 1]
    pts = sampling.sample(lambda n, d, seed: np.full((n, d), 0.25), 3, 2)
    torch.testing.assert_close(pts, torch.full((3, 2), 0.25))
    with pytest.raises(ValueError, match="shape"):
        sampling.sample(lambda n, d, seed: np.zeros((n, d + 1)), 3, 2)


# ----------------------------------------------------------------------------------------------------------
# Sobol
# ----------------------------------------------------------------------------------------------------------


def test_sobol_design_structure():
    A, B, C = sobol_design("sobol", 8, 5, seed=0)
    assert A.shape == B.shape == (8, 5) and C.shape == (5, 8, 5)
    for i in range(5):
        expected = A.clone()
        expected[:, i] = B[:, i]
        torch.testing.assert_close(C[i], expected)
    assert design_masks(A, B, C).shape == (8 * 7, 5)


@pytest.mark.parametrize("estimator", sorted(ESTIMATORS))
def test_sobol_total_indices_ground_truth(estimator):
    """f = m1 + m2 m3 with m_i ~ U[0, 1] independent (three cell means), other cells unused.

    Var f = Var m1 + Var(m2 m3) = 1/12 + (E[m2^2] E[m3^2] - E[m2]^2 E[m3]^2) = 1/12 + (1/9 - 1/16)
          = 12/144 + 7/144 = 19/144.
    ST_1 = Var m1 / Var f = (1/12) / (19/144) = 12/19 (m1 enters additively).
    ST_2 = E[Var(f | m1, m3)] / Var f = E[m3^2] Var(m2) / Var f = (1/3)(1/12) / (19/144) = 4/19; ST_3 alike.
    Unused cells: 0.
    Tolerance 0.05 at N = 1024 scrambled Sobol points: every estimator measured within 0.007 of the
    truth here (seeds 0-2); 0.05 leaves room for other seeds and the slower Homma/Saltelli estimators.
    """
    g = 4
    model = CellModel(g, lambda m: m[:, 0] + m[:, 1] * m[:, 2])
    x = torch.ones(1, 3, 2 * g, 2 * g)
    st = sobol(model, x, 0, grid_size=g, nb_design=1024, estimator=estimator, upsample=False, batch_size=4096)
    assert st.shape == (1, g, g)
    truth = torch.zeros(g * g)
    truth[:3] = torch.tensor([12.0, 4.0, 4.0]) / 19
    err = (st.flatten() - truth).abs().max()
    assert err < 0.05, f"{estimator}: max error {err:.4f}, indices {st.flatten()[:4]}"


def test_sobol_batching_counts_and_invariance():
    g, nb = 3, 8
    passes = nb * (g * g + 2)  # N (d + 2) = 88
    fn = lambda m: m[:, 0] * 2 + m[:, 4] * m[:, 8]  # noqa: E731
    small, big = CellModel(g, fn), CellModel(g, fn)
    x = torch.ones(1, 3, 6, 6)
    a = sobol(small, x, 0, grid_size=g, nb_design=nb, batch_size=7)
    b = sobol(big, x, 0, grid_size=g, nb_design=nb, batch_size=64)
    torch.testing.assert_close(a, b)
    assert len(small.batches) == math.ceil(passes / 7) and max(small.batches) <= 7
    assert sum(small.batches) == passes
    assert len(big.batches) == math.ceil(passes / 64) and max(big.batches) <= 64
    # two images: one batched pass sequence per image
    small.batches.clear()
    sobol(small, torch.ones(2, 3, 6, 6), 0, grid_size=g, nb_design=nb, batch_size=7)
    assert len(small.batches) == 2 * math.ceil(passes / 7)


def test_sobol_shapes_determinism_and_seeds():
    model = tiny_cnn()
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 2])
    a = sobol(model, x, y, grid_size=4, nb_design=8)
    assert a.shape == (2, 16, 16) and a.dtype == torch.float32
    torch.testing.assert_close(a, sobol(model, x, y, grid_size=4, nb_design=8))
    assert not torch.allclose(a, sobol(model, x, y, grid_size=4, nb_design=8, seed=1))
    grid = sobol(model, x, y, grid_size=4, nb_design=8, upsample=False)
    assert grid.shape == (2, 4, 4)


@pytest.mark.parametrize("perturbation", sorted(PERTURBATIONS))
@pytest.mark.parametrize("estimator", sorted(ESTIMATORS))
def test_sobol_constant_score_gives_zero_map(perturbation, estimator):
    """A black image under inpainting, or a model that ignores its input: Var f = 0 -> zeros, no NaN."""
    const = lambda x: torch.ones(len(x), 2)  # noqa: E731
    x = torch.rand(1, 3, 8, 8)
    out = sobol(const, x, 1, grid_size=2, nb_design=4, perturbation=perturbation, estimator=estimator)
    assert torch.equal(out, torch.zeros_like(out))
    black = sobol(tiny_cnn(), torch.zeros(1, 3, 8, 8), 0, grid_size=2, nb_design=4, estimator=estimator)
    assert torch.isfinite(black).all() and torch.equal(black, torch.zeros_like(black))


def test_sobol_bad_parameters():
    model, x = tiny_cnn(), torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match="grid_size"):
        sobol(model, x, 0, grid_size=1)
    with pytest.raises(ValueError, match="grid_size"):
        sobol(model, x, 0, grid_size=9)
    with pytest.raises(ValueError, match="power of 2"):
        sobol(model, x, 0, grid_size=2, nb_design=30)
    sobol(model, x, 0, grid_size=2, nb_design=6, sampler="lhs")  # any size for the other samplers
    with pytest.raises(ValueError, match=r"valid: \['glen', 'homma', 'janon', 'jansen', 'saltelli'\]"):
        sobol(model, x, 0, grid_size=2, estimator="nope")
    with pytest.raises(
        ValueError, match=r"valid: \['amplitude', 'blurring', 'gaussian_blurring', 'inpainting'\]"
    ):
        sobol(model, x, 0, grid_size=2, perturbation="nope")
    with pytest.raises(ValueError, match="sampler"):
        sobol(model, x, 0, grid_size=2, sampler="nope")
    with pytest.raises(ValueError, match="batch_size"):
        sobol(model, x, 0, grid_size=2, nb_design=4, batch_size=0)


def test_sobol_swappable_callables():
    """A user sampler, estimator and perturbation are used as given."""
    g = 2
    model = CellModel(g, lambda m: m[:, 0])
    seen = {}

    def my_estimator(f_a, f_b, f_c):
        seen["shapes"] = (f_a.shape, f_b.shape, f_c.shape)
        return torch.arange(4.0)

    def my_perturbation(x, masks):
        seen["masks"] = masks.shape[1:]
        return x * masks

    out = sobol(
        model,
        torch.ones(1, 3, 4, 4),
        0,
        grid_size=g,
        nb_design=5,
        sampler=lambda n, d, seed: np.random.default_rng(seed).random((n, d)),
        estimator=my_estimator,
        perturbation=my_perturbation,
        upsample=False,
    )
    assert seen["shapes"] == ((5,), (5,), (4, 5)) and seen["masks"] == (1, 4, 4)
    torch.testing.assert_close(out, torch.arange(4.0).view(1, 2, 2))


def test_perturbations():
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    ones, zeros, half = (torch.full((1, 1, 16, 16), v) for v in (1.0, 0.0, 0.5))
    torch.testing.assert_close(perturbations_mod.inpainting(x, zeros), torch.zeros_like(x))
    for blur in (perturbations_mod.blurring, perturbations_mod.gaussian_blurring):
        torch.testing.assert_close(blur(x, ones), x)
        assert blur(x, zeros).std() < x.std() / 2  # a blurred copy, smoother than x
    torch.testing.assert_close(perturbations_mod.amplitude(x, half), x)  # M = 1/2 leaves the image unchanged
    flat = perturbations_mod.amplitude(x, zeros)  # M = 0 flattens to the channel means
    torch.testing.assert_close(flat, x.mean((2, 3), keepdim=True).expand_as(x))
    boosted = perturbations_mod.amplitude(x, ones)
    assert boosted.min() >= 0 and boosted.max() <= 1 and boosted.std() > x.std()


def test_methods_are_registered():
    assert METHODS["sobol"] is sobol and METHODS["hsic"] is hsic


# ----------------------------------------------------------------------------------------------------------
# HSIC
# ----------------------------------------------------------------------------------------------------------


def test_hsic_closed_forms_match_explicit_traces():
    """The rank-one forms equal tr(K H L H) / (p - 1)^2 with the explicit (d, p, p) kernels."""
    p, d = 40, 5
    masks = sampling.binary_masks("bernoulli", p, d, seed=3).double()
    out = (
        masks[:, 0] * 2.0
        - masks[:, 1] * masks[:, 3]
        + 0.1 * torch.randn(p, generator=torch.Generator().manual_seed(0)).double()
    )
    H = torch.eye(p, dtype=torch.float64) - 1.0 / p
    L = output_gram(out)
    K = input_grams(masks)
    explicit = torch.stack([torch.trace(K[i] @ H @ L @ H) for i in range(d)]) / (p - 1) ** 2
    torch.testing.assert_close(hsic_scores(masks, out), explicit)
    pairs = torch.zeros(d, d, dtype=torch.float64)
    for i in range(d):
        for j in range(d):
            if i != j:
                pairs[i, j] = torch.trace((K[i] * K[j]) @ H @ L @ H) / (p - 1) ** 2
    torch.testing.assert_close(hsic_interaction_scores(masks, out, chunk=3), pairs)
    torch.testing.assert_close(center_gram(L), H @ L @ H)
    # median heuristic: median of the pairwise distances |y_a - y_b|, a < b
    y = torch.tensor([0.0, 1.0, 3.0])  # distances 1, 3, 2
    assert float(median_bandwidth(y)) == 2.0
    # a binary score (most pairs tie): median of the non-zero distances; constant score: 1
    assert float(median_bandwidth(torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0]))) == 1.0
    assert float(median_bandwidth(torch.zeros(5))) == 1.0
    # Xplique's rule: |median of the outputs| (np.percentile(y, 50): the mean of the middle two here)
    assert float(median_output_bandwidth(torch.tensor([-4.0, -3.0, -1.0, 5.0]))) == 2.0
    # a zero median falls back to the pairwise rule (a zero width is undefined)
    torch.testing.assert_close(
        median_output_bandwidth(torch.tensor([-1.0, 0.0, 2.0])),
        median_bandwidth(torch.tensor([-1.0, 0.0, 2.0])),
    )
    with pytest.raises(ValueError, match="binary"):
        hsic_scores(torch.rand(4, 2), torch.rand(4))


def _and_model(g, a, b):
    return CellModel(g, lambda m: ((m[:, a] > 0.5) & (m[:, b] > 0.5)).float())


@pytest.mark.parametrize("sampler", ["lhs", "bernoulli"])
def test_hsic_interactions_find_the_and_pair(sampler):
    """f = 1[cell a AND cell b]: the product kernel k_a k_b carries the whole AND beyond main effects.

    With s = 2m - 1, f = (1 + s_a + s_b + s_a s_b) / 4, so the pair feature s_a s_b has covariance 1/4
    with f while any other pair's has 0 in expectation and sd about 0.5 / sqrt(p) ~ 0.022 at p = 500:
    (a, b) must win by a wide margin (measured: about 10x the runner-up, both samplers).
    """
    g, a, b = 8, 3, 42
    inter = hsic_interactions(_and_model(g, a, b), torch.ones(1, 3, 16, 16), 0, grid_size=g, sampler=sampler)[
        0
    ]
    assert inter.shape == (64, 64)
    torch.testing.assert_close(inter, inter.T)
    assert torch.equal(inter.diagonal(), torch.zeros(64))
    upper = inter.triu(1).flatten()
    top2 = torch.topk(upper, 2)
    assert divmod(int(top2.indices[0]), 64) == (a, b)
    assert top2.values[1] < 0.3 * top2.values[0]


def test_binary_sobol_masks_alias_interactions():
    """Why the interaction map does not default to binary Sobol masks (see REFERENCES.md).

    Thresholded Sobol coordinates keep their first bit; those bits are linear over GF(2), so the product
    of the masks of (3, 42) equals (up to sign) that of other pairs: with f = 1[3 AND 42] and 1,024
    binary scrambled-Sobol masks, several pairs get exactly the same top score (and one ranks first),
    while LHS masks single out (3, 42).
    """
    g, a, b = 8, 3, 42
    model, x = _and_model(g, a, b), torch.ones(1, 3, 16, 16)
    inter = hsic_interactions(
        model, x, 0, grid_size=g, nb_design=1024, sampler="sobol_binary", batch_size=1024
    )[0]
    target = inter[a, b]
    rivals = [
        (i, j)
        for i in range(64)
        for j in range(i + 1, 64)
        if (i, j) != (a, b) and inter[i, j] >= target * (1 - 1e-6)
    ]
    assert len(rivals) >= 1, "binary Sobol masks should alias (3, 42) with other pairs"
    # the aliasing is in the design itself: some other pair's mask product equals (3, 42)'s up to sign
    s = 2 * sampling.binary_masks("sobol_binary", 1024, 64, seed=0) - 1
    z = s[:, a] * s[:, b]
    i, j = rivals[0]
    assert torch.equal(s[:, i] * s[:, j], z) or torch.equal(s[:, i] * s[:, j], -z)
    # main effects are not aliased: the 64 mask columns are distinct
    assert len({tuple((c * c[0]).int().tolist()) for c in s.T}) == 64


def test_hsic_main_effects_top2():
    """A score that depends only on cells a and b: those two cells have the two largest HSIC scores."""
    g, a, b = 4, 5, 10
    model = CellModel(g, lambda m: 2.0 * m[:, a] - m[:, b])
    scores = hsic(model, torch.ones(1, 3, 8, 8), 0, grid_size=g, nb_design=256, upsample=False)[0].flatten()
    assert set(torch.topk(scores, 2).indices.tolist()) == {a, b}
    others = scores[[i for i in range(g * g) if i not in (a, b)]]
    assert others.max() < 0.2 * scores[[a, b]].min()
    # the same with the AND score (both cells matter, and each alone carries part of it)
    scores = hsic(_and_model(g, a, b), torch.ones(1, 3, 8, 8), 0, grid_size=g, nb_design=256, upsample=False)
    assert set(torch.topk(scores[0].flatten(), 2).indices.tolist()) == {a, b}


def test_hsic_batching_determinism_constant_and_errors():
    g, nb = 4, 64  # a power of 2: the default sampler is binary Sobol
    fn = lambda m: m[:, 1] + m[:, 2] * m[:, 7]  # noqa: E731
    small, big = CellModel(g, fn), CellModel(g, fn)
    x = torch.ones(1, 3, 8, 8)
    a = hsic(small, x, 0, grid_size=g, nb_design=nb, batch_size=7)
    torch.testing.assert_close(a, hsic(big, x, 0, grid_size=g, nb_design=nb, batch_size=64))
    assert len(small.batches) == math.ceil(nb / 7) and max(small.batches) <= 7
    assert len(big.batches) == 1
    assert a.shape == (1, 8, 8) and a.dtype == torch.float32
    i7 = hsic_interactions(small, x, 0, grid_size=g, nb_design=nb, batch_size=7)
    torch.testing.assert_close(i7, hsic_interactions(big, x, 0, grid_size=g, nb_design=nb, batch_size=64))
    # determinism per seed, different seeds differ
    model, xr = tiny_cnn(), torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    h = hsic(model, xr, 1, grid_size=2, nb_design=16)
    torch.testing.assert_close(h, hsic(model, xr, 1, grid_size=2, nb_design=16))
    # 16 binary Sobol masks over 4 cells are the full 2^4 factorial whatever the scrambling seed (a seed
    # only flips columns, which permutes the rows), so the seed shows with a random design
    lhs = hsic(model, xr, 1, grid_size=2, nb_design=16, sampler="lhs")
    assert not torch.allclose(lhs, hsic(model, xr, 1, grid_size=2, nb_design=16, sampler="lhs", seed=5))
    # constant score: zero maps and zero interactions, no NaN
    const = lambda x: torch.zeros(len(x), 3)  # noqa: E731
    assert torch.equal(hsic(const, xr, 0, grid_size=2, nb_design=16), torch.zeros(2, 8, 8))
    assert torch.equal(hsic_interactions(const, xr, 0, grid_size=2, nb_design=16), torch.zeros(2, 4, 4))
    # bad parameters
    with pytest.raises(ValueError, match="grid_size"):
        hsic(model, xr, 0, grid_size=1)
    with pytest.raises(ValueError, match="power of 2"):
        hsic(model, xr, 0, grid_size=2, nb_design=500)  # the default sampler is binary Sobol
    with pytest.raises(ValueError, match=r"valid: \['bernoulli', 'halton', 'halton_xplique', 'lhs'"):
        hsic_interactions(model, xr, 0, grid_size=2, sampler="nope")
    with pytest.raises(ValueError, match="nb_design"):
        hsic(model, xr, 0, grid_size=2, nb_design=1)
    with pytest.raises(ValueError, match="perturbation"):
        hsic(model, xr, 0, grid_size=2, nb_design=4, perturbation="nope")


def test_hsic_module_documents_the_paper_budget():
    assert "1,500" in hsic_mod.__doc__ and "grid 7" in hsic_mod.__doc__
    assert "2,112" in sobol.__doc__


# ----------------------------------------------------------------------------------------------------------
# The zoo CNN on PlantedShapes
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_zoo_cnn_attribution_energy_in_object_mask(zoo_cnn):
    """Share of the positive map inside the object mask, 8 PlantedShapes images, grid 8 (d = 64).

    Known: the class depends on the object's shape only, and the object covers 9-22 % of these images
    (a uniform map scores that much); the best grid-8 map (the per-cell object fraction, upsampled
    bicubically) scores 0.76. Threshold 0.6, as asked of the method.

    The perturbation is ``"amplitude"`` (M = 0 flattens a cell to the image's mean colour, close to the
    background here). Measured means (seed 0; 2 CPU cores): Sobol, nb_design 32: 0.82 (0.65 to 0.93 per
    image); HSIC, nb_design 512 (bandwidth "median_distance", the default before issue 11; passes with
    Xplique's "median_output" too): 0.645 (seeds 1, 2: 0.667, 0.665), but only 0.52 to 0.57 with 256 masks,
    because the biased HSIC estimator gives every independent cell a positive floor of order 1/p, which
    spreads positive energy over the background. With the default black inpainting the same maps score
    only 0.39 (Sobol) and 0.25 (HSIC, 256): a black cell is far out of distribution for this CNN (an
    all-black image gets a triangle logit of 11.5), so background cells matter to the score too.
    """
    from workbench.data import planted_shapes

    data = planted_shapes(8, size=64, seed=7)
    x, y, masks = data.images, data.labels, data.object_masks.float()
    s = sobol(zoo_cnn, x, y, grid_size=8, nb_design=32, perturbation="amplitude", batch_size=64)
    h = hsic(zoo_cnn, x, y, grid_size=8, nb_design=512, perturbation="amplitude", batch_size=64)
    es, eh = energy_in_mask(s, masks), energy_in_mask(h, masks)
    assert es.mean() >= 0.6, f"sobol energy {es}"
    assert eh.mean() >= 0.6, f"hsic energy {eh}"


# ----------------------------------------------------------------------------------------------------------
# Issue 11: the reference's box blur, no ringing, Xplique's variance and bandwidth, progress
# ----------------------------------------------------------------------------------------------------------


def test_blurring_is_opencvs_10x10_box_filter():
    """cv2.blur(x, (10, 10)): the mean over [i - 5, i + 4] (OpenCV's anchor for an even size) with
    BORDER_REFLECT_101, i.e. scipy's uniform_filter(size=10, origin=0, mode="mirror"); float32 sums
    of 100 values in [0, 1]: 1e-5 absolute is generous."""
    from scipy.ndimage import uniform_filter

    from workbench._core.filters import box_blur

    x = torch.rand(2, 3, 23, 37, generator=torch.Generator().manual_seed(0))
    ref = uniform_filter(x.numpy(), size=(1, 1, 10, 10), mode="mirror", origin=0)
    np.testing.assert_allclose(box_blur(x, 10).numpy(), ref, rtol=0, atol=1e-5)
    tiny = torch.rand(1, 1, 4, 3)  # a box larger than the image: reflected again, as OpenCV does
    ref = uniform_filter(tiny.numpy(), size=(1, 1, 10, 10), mode="mirror", origin=0)
    np.testing.assert_allclose(box_blur(tiny, 10).numpy(), ref, rtol=0, atol=1e-5)
    zeros = torch.zeros(1, 1, 23, 37)
    torch.testing.assert_close(perturbations_mod.blurring(x, zeros), box_blur(x, 10))  # default: 10 px
    torch.testing.assert_close(perturbations_mod.blurring(x, zeros, 3), box_blur(x, 3))
    cv2 = pytest.importorskip("cv2")
    img = x[0].permute(1, 2, 0).contiguous().numpy()
    np.testing.assert_allclose(
        box_blur(x[:1], 10)[0].permute(1, 2, 0).numpy(), cv2.blur(img, (10, 10)), atol=1e-5
    )


def test_upsampled_nonnegative_grids_stay_nonnegative():
    """A single strong cell: plain bicubic rings below 0 around it; the clamp to the grid's range
    removes only that (inside the range the values are the bicubic ones)."""
    import torch.nn.functional as F

    from workbench.attribution.grid_masks import upsample_scores

    grid = torch.zeros(1, 8, 8)
    grid[0, 3, 4] = 1.0
    plain = F.interpolate(grid[:, None], size=(64, 64), mode="bicubic", align_corners=False)[:, 0]
    assert float(plain.min()) < -0.01  # the ringing this fixes
    up = upsample_scores(grid, (64, 64))
    assert float(up.min()) == 0.0 and float(up.max()) <= 1.0
    inside = (plain >= 0) & (plain <= 1)
    torch.testing.assert_close(up[inside], plain[inside])
    # end to end: Sobol (Jansen >= 0) and HSIC maps of a peaked score have no negative pixel
    model = CellModel(4, lambda m: 5.0 * m[:, 5] + 0.1 * m[:, 6])
    x = torch.ones(1, 3, 16, 16)
    assert float(sobol(model, x, 0, grid_size=4, nb_design=16).min()) >= 0.0
    assert float(hsic(model, x, 0, grid_size=4, nb_design=64).min()) >= 0.0


def test_sobol_variance_xplique_uses_f_a_only():
    """Jansen with variance="xplique" divides by Var f(A); "pooled" by the variance of f(A) and f(B):
    the ratio of the two maps is Var_pooled / Var_A, the same for every cell."""
    from workbench.attribution.estimators import total_indices

    n, d = 16, 3
    f = torch.randn(n * (d + 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    pooled = total_indices(f, n, d, "jansen")
    xpl = total_indices(f, n, d, "jansen", variance="xplique")
    ratio = float(torch.cat([f[:n], f[n : 2 * n]]).var() / f[:n].var())
    torch.testing.assert_close(xpl / pooled, torch.full((d,), ratio, dtype=torch.float64))
    with pytest.raises(ValueError, match="variance"):
        total_indices(f, n, d, "jansen", variance="nope")
    with pytest.raises(ValueError, match="variance"):
        sobol(tiny_cnn(), torch.rand(1, 3, 8, 8), 0, grid_size=2, nb_design=4, variance="nope")


def test_hsic_bandwidth_rules():
    """The default is Xplique's median of the outputs; "median_distance" the pairwise heuristic."""
    g, nb = 2, 32
    fn = lambda m: 3.0 + m[:, 0] + 0.5 * m[:, 1] * m[:, 2]  # noqa: E731
    x = torch.ones(1, 3, 4, 4)
    kw = {"grid_size": g, "nb_design": nb, "upsample": False, "sampler": "lhs"}
    masks = sampling.binary_masks("lhs", nb, g * g, seed=0)
    f = fn(masks.double())
    default = hsic(CellModel(g, fn), x, 0, **kw)[0].flatten().double()
    torch.testing.assert_close(
        default, hsic_scores(masks, f, float(np.median(f.numpy()))), rtol=1e-5, atol=1e-7
    )
    other = hsic(CellModel(g, fn), x, 0, bandwidth="median_distance", **kw)[0].flatten().double()
    torch.testing.assert_close(other, hsic_scores(masks, f, median_bandwidth(f)), rtol=1e-5, atol=1e-7)
    fixed = hsic(CellModel(g, fn), x, 0, bandwidth=0.7, **kw)[0].flatten().double()
    torch.testing.assert_close(fixed, hsic_scores(masks, f, 0.7), rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="median_output"):
        hsic(CellModel(g, fn), x, 0, bandwidth="nope", **kw)


def test_progress_ticks_per_batch_and_shows_beyond_1000_passes(monkeypatch):
    from workbench.attribution import perturbations as pmod

    calls = []

    def fake(iterable, enabled=True, desc=None, total=None):
        calls.append((enabled, total))
        return iterable

    monkeypatch.setattr(pmod, "_progress", fake)
    model = CellModel(2, lambda m: m[:, 0])
    x = torch.ones(2, 3, 4, 4)
    sobol(model, x, 0, grid_size=2, nb_design=16, batch_size=10)  # 2 x 96 passes: quiet by default
    sobol(model, x, 0, grid_size=2, nb_design=16, batch_size=10, progress=True)
    sobol(model, x, 0, grid_size=2, nb_design=128, batch_size=100)  # 2 x 768 = 1536 passes: shown
    sobol(model, x, 0, grid_size=2, nb_design=128, batch_size=100, progress=False)
    # one tick per batch: 2 images x ceil(96 / 10) batches
    assert calls == [(False, 20), (True, 20), (True, 16), (False, 16)]
    with pytest.raises(ValueError, match="progress"):
        sobol(model, x, 0, grid_size=2, nb_design=4, progress="yes")


def test_default_batch_size_follows_the_image_size():
    from workbench._core.batching import default_batch_size

    sizes = [default_batch_size(s) for s in (16, 64, 128, 224, 512)]
    assert sizes == sorted(sizes, reverse=True) and all(isinstance(b, int) and b >= 1 for b in sizes)
    # the measured CPU optimum (benchmarks/batch_size.py): 64 rows at 64 px, the smallest at 224 px
    assert default_batch_size(64) == 64 and default_batch_size((224, 224)) == 8
    assert default_batch_size(224, "cuda") == 256 and default_batch_size(224, "cpu") == 8
    model = CellModel(2, lambda m: m[:, 0])
    sobol(model, torch.ones(1, 3, 4, 4), 0, grid_size=2, nb_design=16)  # 96 rows, one default batch
    assert model.batches == [min(96, default_batch_size(4))] * (96 // min(96, default_batch_size(4)))
