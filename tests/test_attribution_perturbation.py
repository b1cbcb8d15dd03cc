"""Perturbation attributions (occlusion, RISE, LIME, KernelSHAP) against answers known in advance.

Ground truth used here, and why each tolerance is what it is:
- Occlusion = Captum's ``Occlusion`` (same windows, same mean-over-covering-windows convention): both
  compute the same float32 differences, so they agree to float rounding (1e-4 relative asked; 0 seen).
- Occlusion of a linear model with 1x1 patches is ``sum_c w_c x_c`` per pixel, in closed form; the
  only error is float32 rounding of f(x) - f(x') (atol 1e-5 on values of order 1).
- KernelSHAP on a model additive over segments: the Shapley value of segment s is its own term, and
  a least-squares fit of an exactly linear function is exact once the design has full rank (float64
  solve; 1e-5 covers the float32 scores). With all 2**S coalitions enumerated, KernelSHAP equals
  the exact Shapley values of any model (Lundberg & Lee 2017), checked against the permutation formula.
- LIME's ridge equals scikit-learn's ``Ridge(alpha)`` with ``sample_weight`` (same objective; 1e-8).
- RISE has no closed form; a model that reads one region must get its map's maximum in that region.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from workbench.attribution._base import reduce_channels
from workbench.attribution.lime_kernel_shap import (
    constrained_wls,
    grid_segments,
    kernel_shap,
    lime,
    segments,
    shap_coalitions,
    squared_pixel_distances,
    weighted_ridge,
)
from workbench.attribution.occlusion_patches import occlusion, window_grid
from workbench.attribution.registry import explainer
from workbench.attribution.rise_masks import RiseMasks, rise
from workbench.models import load_model


# -- helpers -------------------------------------------------------------------------------------
class Counted:
    """Wrap a callable model and record the batch size of every forward call."""

    def __init__(self, fn):
        self.fn, self.sizes = fn, []

    def __call__(self, x):
        self.sizes.append(len(x))
        return self.fn(x)


def two_class(f: torch.Tensor) -> torch.Tensor:
    """Scores (N,) -> logits (N, 2) with class 0 = f, class 1 = -f."""
    return torch.stack([f, -f], 1)


def linear_model(w: torch.Tensor):
    return lambda x: two_class((x * w).sum((1, 2, 3)))


def segment_means(x: torch.Tensor, labels: torch.Tensor, n_segments: int) -> torch.Tensor:
    """Mean over channels and pixels of each segment: (N, C, H, W), labels (H, W) -> (N, S)."""
    flat = x.mean(1).flatten(1)
    sums = torch.zeros(len(x), n_segments, dtype=x.dtype).index_add_(1, labels.flatten(), flat)
    return sums / torch.bincount(labels.flatten(), minlength=n_segments).to(x.dtype)


def additive_model(labels: torch.Tensor, a: torch.Tensor):
    """f(x) = sum_s a_s * mean of segment s: additive over segments, so Shapley values are a_s * mean_s."""
    return lambda x: two_class(segment_means(x, labels, len(a)) @ a.to(x.dtype))


@pytest.fixture(scope="module")
def tiny_cnn():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 3)
    )
    return load_model(net, input_size=(3, 16, 16), labels=["a", "b", "c"]).eval()


# -- occlusion -----------------------------------------------------------------------------------
def _captum_occlusion(model, x, y, patch, stride, baseline=0.0, batch_size=64):
    from captum.attr import Occlusion

    occ = Occlusion(lambda z: model(z, check=False))
    return occ.attribute(
        x,
        target=y,
        sliding_window_shapes=(x.shape[1], *patch),
        strides=(x.shape[1], *stride),
        baselines=baseline,
        perturbations_per_eval=batch_size,
    )


@pytest.mark.parametrize(
    ("patch", "stride", "reduce"),
    [((3, 3), (3, 3), "sum"), ((5, 3), (3, 2), "mean"), ((4, 4), (2, 2), "max_abs")],
)
def test_occlusion_matches_captum_on_a_small_cnn(tiny_cnn, patch, stride, reduce):
    """Same windows (border ones cut), same averaging: float rounding apart, identical."""
    x, y = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)), torch.tensor([0, 2])
    ours = occlusion(tiny_cnn, x, y, patch_size=patch, stride=stride, reduce=reduce)
    ref = reduce_channels(_captum_occlusion(tiny_cnn, x, y, patch, stride), reduce)
    assert ours.shape == (2, 16, 16) and ours.dtype == torch.float32
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))


def test_occlusion_matches_captum_with_a_colour_baseline(tiny_cnn):
    x, y = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(2)), torch.tensor([1])
    colour = torch.tensor([0.2, 0.5, 0.8]).view(3, 1, 1)
    ours = occlusion(tiny_cnn, x, y, patch_size=4, stride=2, baseline=colour, reduce="none")
    ref = _captum_occlusion(tiny_cnn, x, y, (4, 4), (2, 2), baseline=colour.expand(1, 3, 16, 16))
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))


@pytest.mark.slow
def test_occlusion_matches_captum_on_timm_resnet():
    """The brief's parity case: timm test_resnet (random init, seeded), 32 px, 1e-4 relative."""
    torch.manual_seed(0)
    model = load_model("timm:test_resnet", num_classes=5)
    x, y = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3)), torch.tensor([3])
    for patch, stride in [((4, 4), (4, 4)), ((5, 5), (3, 3))]:
        ours = occlusion(model, x, y, patch_size=patch, stride=stride, reduce="sum", batch_size=64)
        ref = _captum_occlusion(model, x, y, patch, stride).sum(1)
        rel = float((ours - ref).abs().max() / ref.abs().max())
        print(
            f"occlusion vs Captum, timm test_resnet, patch {patch} stride {stride}: max rel error {rel:.2e}"
        )
        assert rel <= 1e-4, rel


def test_occlusion_of_a_linear_model_is_weight_times_input():
    """f = <w, x>; occluding one pixel (all channels) drops f by sum_c w_c x_c exactly."""
    gen = torch.Generator().manual_seed(4)
    w, x = torch.randn(3, 8, 8, generator=gen), torch.rand(2, 3, 8, 8, generator=gen)
    expected = (w * x).sum(1)
    maps = occlusion(linear_model(w), x, 0, patch_size=1, stride=1)
    torch.testing.assert_close(maps, expected, rtol=0, atol=1e-5)
    # the same drop on every channel; "sum" is C times "mean"
    per_channel = occlusion(linear_model(w), x, 0, patch_size=1, stride=1, reduce="none")
    assert per_channel.shape == (2, 3, 8, 8)
    torch.testing.assert_close(per_channel, expected[:, None].expand(-1, 3, -1, -1), rtol=0, atol=1e-5)
    summed = occlusion(linear_model(w), x, 0, patch_size=1, stride=1, reduce="sum")
    torch.testing.assert_close(summed, 3 * expected, rtol=0, atol=3e-5)


def test_occlusion_averages_overlapping_windows_and_returns_the_window_grid():
    gen = torch.Generator().manual_seed(5)
    w, x = torch.randn(3, 10, 10, generator=gen), torch.rand(1, 3, 10, 10, generator=gen)
    contrib = (w * x[0]).sum(0)  # (10, 10): each pixel's term of f
    patch, stride = (3, 3), (2, 2)
    gh, gw = window_grid((10, 10), patch, stride)
    assert (gh, gw) == (5, 5)  # ceil((10 - 3) / 2) + 1: the last window (rows 8-10) is cut at the border
    grid = occlusion(linear_model(w), x, 0, patch_size=patch, stride=stride, upsample=False)
    assert grid.shape == (1, gh, gw)
    drops = torch.tensor(
        [[contrib[2 * i : 2 * i + 3, 2 * j : 2 * j + 3].sum() for j in range(gw)] for i in range(gh)]
    )
    torch.testing.assert_close(grid[0], drops, rtol=0, atol=1e-5)
    # each pixel: the mean drop over the windows that cover it
    total, count = torch.zeros(10, 10), torch.zeros(10, 10)
    for i, j in itertools.product(range(gh), range(gw)):
        total[2 * i : 2 * i + 3, 2 * j : 2 * j + 3] += drops[i, j]
        count[2 * i : 2 * i + 3, 2 * j : 2 * j + 3] += 1
    maps = occlusion(linear_model(w), x, 0, patch_size=patch, stride=stride)
    torch.testing.assert_close(maps[0], total / count, rtol=0, atol=1e-5)


def test_occlusion_batches_and_counts_passes():
    gen = torch.Generator().manual_seed(6)
    w, x = torch.randn(3, 12, 12, generator=gen), torch.rand(3, 3, 12, 12, generator=gen)
    results = {}
    for bs in (7, 64):
        model = Counted(linear_model(w))
        results[bs] = occlusion(model, x, 0, patch_size=3, stride=2, batch_size=bs)
        n_windows = math.prod(window_grid((12, 12), (3, 3), (2, 2)))  # 5 x 5
        # docstring: ceil(N / bs) clean passes + N * ceil(windows / bs)
        assert len(model.sizes) == math.ceil(3 / bs) + 3 * math.ceil(n_windows / bs)
        assert max(model.sizes) <= bs
    torch.testing.assert_close(results[7], results[64], rtol=0, atol=1e-6)


def test_occlusion_with_the_image_as_baseline_is_zero_and_constant_input_is_finite(tiny_cnn):
    x = torch.rand(2, 3, 16, 16)
    assert occlusion(tiny_cnn, x, 0, patch_size=4, stride=4, baseline=x).abs().max() == 0
    maps = occlusion(tiny_cnn, torch.full((1, 3, 16, 16), 0.5), 1, patch_size=4, stride=4)
    assert torch.isfinite(maps).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"patch_size": 17}, "larger than the images"),
        ({"patch_size": (3, 20)}, "larger than the images"),
        ({"patch_size": 3, "stride": 4}, "stride"),
        ({"patch_size": 0}, "patch_size"),
        ({"patch_size": 2.5}, "patch_size"),
        ({"reduce": "median"}, "reduce"),
        ({"batch_size": 0}, "batch_size"),
        ({"baseline": torch.zeros(2, 16, 16)}, "baseline"),
    ],
)
def test_occlusion_bad_parameters(tiny_cnn, kwargs, match):
    with pytest.raises(ValueError, match=match):
        occlusion(tiny_cnn, torch.rand(1, 3, 16, 16), 0, **kwargs)


def test_occlusion_checks_images_at_the_boundary(tiny_cnn):
    with pytest.raises(ValueError, match="pixel values"):
        occlusion(tiny_cnn, torch.rand(1, 3, 16, 16) * 3, 0)
    with pytest.raises(ValueError, match="targets"):
        occlusion(tiny_cnn, torch.rand(1, 3, 16, 16), 5)


# -- RISE ----------------------------------------------------------------------------------------
def region_model(rows: slice, cols: slice):
    return lambda x: two_class(x[:, :, rows, cols].mean((1, 2, 3)))


def test_rise_peaks_inside_the_region_the_model_reads():
    rows, cols = slice(4, 12), slice(18, 26)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    maps = rise(region_model(rows, cols), x, 0, n_masks=500, grid_size=7)
    assert maps.shape == (2, 32, 32) and torch.isfinite(maps).all()
    for m in maps:
        r, c = divmod(int(m.argmax()), 32)
        assert rows.start <= r < rows.stop and cols.start <= c < cols.stop, (r, c)


def test_rise_masks_are_smooth_shifted_and_made_per_batch():
    masks = RiseMasks(300, grid_size=5, p=0.3, size=(20, 24), seed=1)
    assert masks.grids.shape == (300, 5, 5)  # only the small grids are stored
    assert masks.cell == (4, 5) and masks.up_size == (24, 30)
    batch = masks[slice(0, 100)]
    assert batch.shape == (100, 20, 24) and batch.min() >= 0 and batch.max() <= 1
    assert abs(float(masks[slice(0, 300)].mean()) - 0.3) < 0.05
    assert ((batch > 0) & (batch < 1)).any()  # bilinear, not nearest
    # a mask depends on its index only, not on the batch it is made in
    torch.testing.assert_close(masks[slice(40, 47)], batch[40:47])


def test_rise_is_seeded_and_independent_of_batch_size():
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(8))
    model = region_model(slice(2, 8), slice(2, 8))
    runs = {}
    for bs in (7, 64):
        counted = Counted(model)
        runs[bs] = rise(counted, x, torch.tensor([0, 1]), n_masks=100, grid_size=4, batch_size=bs, seed=3)
        assert len(counted.sizes) == 2 * math.ceil(100 / bs)  # docstring: N * ceil(n_masks / bs)
        assert max(counted.sizes) <= bs
    # the same masks; only the summation order differs
    torch.testing.assert_close(runs[7], runs[64], rtol=1e-5, atol=1e-6)
    again = rise(model, x, torch.tensor([0, 1]), n_masks=100, grid_size=4, seed=3, batch_size=64)
    assert torch.equal(again, runs[64])
    other = rise(model, x, torch.tensor([0, 1]), n_masks=100, grid_size=4, seed=4)
    assert not torch.allclose(other, runs[64])


def test_rise_grid_resolution_is_the_cell_average_of_the_map():
    x = torch.rand(1, 3, 21, 21, generator=torch.Generator().manual_seed(9))
    model = region_model(slice(0, 7), slice(0, 7))
    full = rise(model, x, 0, n_masks=64, grid_size=7)
    coarse = rise(model, x, 0, n_masks=64, grid_size=7, upsample=False)
    assert coarse.shape == (1, 7, 7)
    torch.testing.assert_close(coarse, full.view(1, 7, 3, 7, 3).mean((2, 4)))


def test_rise_constant_input_gives_finite_maps(tiny_cnn):
    maps = rise(tiny_cnn, torch.zeros(1, 3, 16, 16), 0, n_masks=32, grid_size=4)
    assert torch.isfinite(maps).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"p": 0.0}, "p:"),
        ({"p": 1.0}, "p:"),
        ({"p": 1.5}, "p:"),
        ({"grid_size": 17}, "larger than the images"),
        ({"grid_size": 0}, "grid_size"),
        ({"n_masks": 0}, "n_masks"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_rise_bad_parameters(tiny_cnn, kwargs, match):
    with pytest.raises(ValueError, match=match):
        rise(tiny_cnn, torch.rand(1, 3, 16, 16), 0, **kwargs)


def test_rise_centering_subtracts_the_mean_score_times_the_mask_sum():
    """center=True is sum_m (f_m - mean f) M_m / (n p): for a model with a constant score the
    centred map is exactly 0, while the paper's map is that constant times sum_m M_m / (n p) (about
    the constant everywhere: the offset the centring removes)."""
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    const = lambda inp: two_class(torch.full((len(inp),), 3.0))  # noqa: E731
    kw = dict(n_masks=64, grid_size=4, seed=2)
    centred = rise(const, x, 0, **kw)
    raw = rise(const, x, 0, center=False, **kw)
    masks = RiseMasks(64, 4, 0.5, (16, 16), seed=2)
    expected_raw = 3.0 * masks[slice(0, 64)].sum(0) / (64 * 0.5)
    torch.testing.assert_close(raw[0], expected_raw, rtol=1e-5, atol=1e-5)
    assert centred.abs().max() < 1e-5
    # with a real dependence the two maps differ by the mean score times sum_m M_m / (n p): a shift
    # that varies across pixels with finite masks (so the rankings can differ)
    model = region_model(slice(0, 8), slice(0, 8))
    c, r = rise(model, x, 0, **kw), rise(model, x, 0, center=False, **kw)
    f_mean = (r - c)[0] / (masks[slice(0, 64)].sum(0) / (64 * 0.5))
    assert float(f_mean.std()) < 1e-4  # one constant: the mean masked score
    assert float((r - c).std()) > 1e-3  # but the shift itself is not constant


def test_rise_mask_sum_estimator_closed_form():
    """Xplique's estimator divides by each pixel's mask sum: a constant score c gives exactly c
    everywhere (the paper's estimator gives c * sum_m M_m / (n p), which varies with finite masks), and
    centring subtracts exactly the mean score, a constant (rank-preserving) shift. With the paper's
    estimator the centring term varies with the mask sums: it can reorder pixels."""
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    const = lambda inp: two_class(torch.full((len(inp),), 3.0))  # noqa: E731
    kw = dict(n_masks=64, grid_size=4, seed=2)
    raw = rise(const, x, 0, center=False, estimator="mask_sum", **kw)
    torch.testing.assert_close(raw, torch.full_like(raw, 3.0), rtol=1e-5, atol=1e-5)
    assert rise(const, x, 0, estimator="mask_sum", **kw).abs().max() < 1e-5
    # a model reading one region: the map is sum_m f_m M_m / sum_m M_m, from the same masks
    model = region_model(slice(0, 8), slice(0, 8))
    masks = RiseMasks(64, 4, 0.5, (16, 16), seed=2)[slice(0, 64)]
    f = model(x * masks[:, None])[:, 0]
    expected = (f[:, None, None] * masks).sum(0) / masks.sum(0)
    got = rise(model, x, 0, center=False, estimator="mask_sum", **kw)
    torch.testing.assert_close(got[0], expected, rtol=1e-4, atol=1e-5)
    centred = rise(model, x, 0, estimator="mask_sum", **kw)
    torch.testing.assert_close(got - centred, torch.full_like(got, float(f.mean())), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="estimator"):
        rise(model, x, 0, estimator="nope", **kw)


def test_rise_perturbation_is_swappable():
    """The perturbation registry of Sobol/HSIC also drives RISE: "inpainting" is x * M (the
    paper's), the others replace dropped pixels by a blur or the mean colour."""
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(6))
    model = region_model(slice(0, 8), slice(0, 8))
    maps = {p: rise(model, x, 0, n_masks=64, grid_size=4, perturbation=p) for p in ("inpainting", "blurring")}
    assert not torch.allclose(maps["inpainting"], maps["blurring"])
    seen = []
    rise(
        lambda inp: (seen.append(inp), two_class(inp.mean((1, 2, 3))))[1],
        x,
        0,
        n_masks=8,
        grid_size=4,
        perturbation=lambda xi, m: xi * m + 0.5 * (1 - m),
    )
    assert all(float(b.min()) >= 0.0 for b in seen) and len(seen) == 1
    with pytest.raises(ValueError, match="perturbation"):
        rise(model, x, 0, n_masks=8, grid_size=4, perturbation="nope")


# -- LIME ----------------------------------------------------------------------------------------
def test_weighted_ridge_matches_scikit_learn():
    from sklearn.linear_model import Ridge

    gen = torch.Generator().manual_seed(10)
    z = (torch.rand(2, 40, 6, generator=gen) < 0.5).double()
    f, w = torch.randn(2, 40, generator=gen, dtype=torch.float64), torch.rand(2, 40, generator=gen).double()
    ours = weighted_ridge(z, f, w, 2.0, torch.ones(2, 6, dtype=torch.bool))
    for i in range(2):
        ref = Ridge(alpha=2.0).fit(z[i].numpy(), f[i].numpy(), sample_weight=w[i].numpy()).coef_
        torch.testing.assert_close(ours[i], torch.from_numpy(ref), rtol=1e-8, atol=1e-10)


def test_lime_weights_use_the_pixel_space_distance():
    """Xplique's kernel: d = ||x - x_perturbed||_2 in pixel space, computed here per segment."""
    gen = torch.Generator().manual_seed(11)
    x, b = torch.rand(3, 8, 8, generator=gen), torch.rand(3, 8, 8, generator=gen)
    labels = grid_segments(8, 8, 4)
    z = torch.rand(5, 16, generator=gen) < 0.5
    perturbed = torch.where(z[:, labels][:, None], x, b)
    expected = ((perturbed - x) ** 2).flatten(1).sum(1).double()
    torch.testing.assert_close(squared_pixel_distances(x, b, labels, z, 16), expected, rtol=1e-6, atol=0)


def test_lime_recovers_the_ranking_of_a_linear_in_segments_model():
    gen = torch.Generator().manual_seed(12)
    labels = grid_segments(16, 16, 4)
    a = torch.randn(16, generator=gen)
    x = torch.rand(2, 3, 16, 16, generator=gen)
    contributions = a * segment_means(x, labels, 16)
    coefs = lime(additive_model(labels, a), x, 0, grid_size=4, upsample=False)
    assert coefs.shape == (2, 4, 4)
    for c, truth in zip(coefs.flatten(1), contributions):
        rank_c, rank_t = c.argsort().argsort().float(), truth.argsort().argsort().float()
        spearman = torch.corrcoef(torch.stack([rank_c, rank_t]))[0, 1]
        assert spearman > 0.95, spearman
        assert torch.equal(c.sign(), truth.sign())
    # with equal weights and no penalty, the fit of an exactly linear function is exact
    exact = lime(additive_model(labels, a), x, 0, grid_size=4, kernel_width=float("inf"), alpha=0.0)
    torch.testing.assert_close(
        exact,
        (contributions.view(2, 4, 4)).repeat_interleave(4, 1).repeat_interleave(4, 2),
        atol=1e-5,
        rtol=0,
    )


def test_lime_batches_seeds_and_counts_passes(tiny_cnn):
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(13))
    runs = {}
    for bs in (7, 64):
        counted = Counted(lambda z: tiny_cnn(z, check=False))
        runs[bs] = lime(counted, x, 1, n_samples=30, grid_size=4, batch_size=bs, seed=5)
        assert len(counted.sizes) == 2 * math.ceil(30 / bs)  # docstring: N * ceil(n_samples / bs)
        assert max(counted.sizes) <= bs
    torch.testing.assert_close(runs[7], runs[64], rtol=1e-5, atol=1e-6)
    # the Model itself runs its no-grad passes channels-last on a CPU (forward_fn), the callable above
    # contiguous: the same samples, logits equal to float rounding
    torch.testing.assert_close(
        lime(tiny_cnn, x, 1, n_samples=30, grid_size=4, seed=5), runs[64], rtol=1e-5, atol=1e-6
    )
    assert not torch.equal(lime(tiny_cnn, x, 1, n_samples=30, grid_size=4, seed=6), runs[64])


def test_segmentations_grid_precomputed_and_slic():
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(14))
    labels, counts = segments(x, "grid", 4)
    assert labels.shape == (2, 16, 16) and counts.tolist() == [16, 16]
    assert torch.equal(labels[0, :4, :4], torch.zeros(4, 4, dtype=torch.long))
    # precomputed labels: any integers, relabelled to 0..S-1 in order; (H, W) is shared by all images
    custom = torch.zeros(2, 16, 16, dtype=torch.int32)
    custom[0, :, 8:] = 7
    custom[1, 8:] = -3
    custom[1, 8:, 8:] = 5
    labels, counts = segments(x, custom)
    assert counts.tolist() == [2, 3] and labels[0, 0, 15] == 1 and labels[1, 15, 0] == 0
    assert segments(x, custom[0])[1].tolist() == [2, 2]
    pytest.importorskip("skimage")
    labels, counts = segments(x, "slic", 3)
    assert labels.shape == (2, 16, 16) and all(1 <= c <= 30 for c in counts.tolist())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"segmentation": "quickshift"}, "segmentation"),
        ({"segmentation": torch.zeros(16, 16)}, "integers"),
        ({"segmentation": torch.zeros(3, 16, 16, dtype=torch.long)}, "shape"),
        ({"segmentation": [1, 2]}, "segmentation"),
        ({"n_samples": 1}, "n_samples"),
        ({"p": 1.0}, "p:"),
        ({"grid_size": 20}, "larger than the images"),
        ({"kernel_width": 0.0}, "kernel_width"),
        ({"alpha": -1.0}, "alpha"),
        ({"segmentation": torch.zeros(16, 16, dtype=torch.long), "upsample": False}, "upsample"),
    ],
)
def test_lime_bad_parameters(tiny_cnn, kwargs, match):
    with pytest.raises(ValueError, match=match):
        lime(tiny_cnn, torch.rand(1, 3, 16, 16), 0, **kwargs)


def test_lime_constant_input_gives_finite_maps(tiny_cnn):
    x = torch.zeros(1, 3, 16, 16)
    maps = lime(tiny_cnn, x, 0, n_samples=20, grid_size=4)  # every sample is x itself: distance 0
    assert torch.isfinite(maps).all()
    assert maps.abs().max() < 1e-5


# -- KernelSHAP ----------------------------------------------------------------------------------
def test_kernel_shap_is_exact_on_an_additive_model():
    gen = torch.Generator().manual_seed(15)
    labels = grid_segments(16, 16, 4)
    a = torch.randn(16, generator=gen)
    x = torch.rand(2, 3, 16, 16, generator=gen)
    exact = (a * segment_means(x, labels, 16)).view(2, 4, 4)
    # 2**16 coalitions do not fit in 100 samples: sampled from the Shapley kernel
    phi = kernel_shap(additive_model(labels, a), x, 0, n_samples=100, grid_size=4, upsample=False)
    torch.testing.assert_close(phi, exact, rtol=0, atol=1e-5)
    maps = kernel_shap(additive_model(labels, a), x, 0, n_samples=100, grid_size=4)
    torch.testing.assert_close(maps, exact.repeat_interleave(4, 1).repeat_interleave(4, 2), rtol=0, atol=1e-5)


def test_kernel_shap_agrees_with_captum_on_an_additive_model():
    """Both estimate the same Shapley values; on an additive model both must hit them."""
    from captum.attr import KernelShap

    gen = torch.Generator().manual_seed(16)
    labels = grid_segments(12, 12, 3)
    a = torch.randn(9, generator=gen)
    x = torch.rand(1, 3, 12, 12, generator=gen)
    model = additive_model(labels, a)
    ours = kernel_shap(model, x, 0, n_samples=100, grid_size=3)
    torch.manual_seed(0)  # Captum samples from the global generator
    ref = KernelShap(model).attribute(
        x, target=0, baselines=0.0, feature_mask=labels[None, None], n_samples=100, perturbations_per_eval=64
    )[:, 0]  # the same value on every channel of a segment
    exact = (a * segment_means(x, labels, 9))[0][labels]
    torch.testing.assert_close(ours[0], exact, rtol=0, atol=1e-5)
    # Captum weights the end points by 1e6 instead of constraining them: float32 lstsq, looser
    torch.testing.assert_close(ref[0], exact, rtol=0, atol=1e-4)


def test_kernel_shap_enumerates_small_games_exactly():
    """With every coalition enumerated, KernelSHAP = the Shapley values of any (nonlinear) model."""
    gen = torch.Generator().manual_seed(17)
    labels = grid_segments(8, 8, 2)
    x = torch.rand(2, 3, 8, 8, generator=gen)

    def game(z):
        s = segment_means(z, labels, 4)
        return two_class(s[:, 0] * s[:, 1] + torch.relu(s[:, 2] - 0.3 * s[:, 3]) + s[:, 3] ** 2)

    counted = Counted(game)
    phi = kernel_shap(counted, x, 0, n_samples=800, grid_size=2, upsample=False).flatten(1)
    assert len(counted.sizes) == 2  # min(800, 2**4) = 16 inputs per image, one pass each

    def value(i, coalition):
        keep = torch.zeros(4, dtype=torch.bool)
        keep[list(coalition)] = True
        return float(game(torch.where(keep[labels], x[i], 0.0)[None])[0, 0])

    exact = torch.zeros(2, 4)
    for i, s in itertools.product(range(2), range(4)):
        others = [t for t in range(4) if t != s]
        for r in range(4):
            weight = math.factorial(r) * math.factorial(3 - r) / math.factorial(4)
            for c in itertools.combinations(others, r):
                exact[i, s] += weight * (value(i, (*c, s)) - value(i, c))
    torch.testing.assert_close(phi, exact, rtol=0, atol=1e-5)


def test_kernel_shap_is_efficient_with_uneven_segment_counts(tiny_cnn):
    """Padding: images with 2 and 5 segments solve together; sum(phi) = f(x) - f(baseline) each."""
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(18))
    labels = torch.zeros(2, 16, 16, dtype=torch.long)
    labels[0, 8:] = 1
    for k in range(5):
        labels[1, :, 3 * k :] = k
    y = torch.tensor([0, 2])
    phi = kernel_shap(tiny_cnn, x, y, n_samples=20, segmentation=labels)
    with torch.no_grad():
        f_x = tiny_cnn(x).gather(1, y[:, None])[:, 0]
        f_b = tiny_cnn(torch.zeros_like(x)).gather(1, y[:, None])[:, 0]
    values = [
        torch.stack([phi[i][labels[i] == s][0] for s in range(int(labels[i].max()) + 1)]) for i in range(2)
    ]
    for i in range(2):
        assert torch.allclose(values[i].sum(), f_x[i] - f_b[i], atol=1e-5)
        # every pixel of a segment carries its segment's value
        assert all(phi[i][labels[i] == s].unique().numel() == 1 for s in range(len(values[i])))


def test_kernel_shap_batches_seeds_and_counts_passes(tiny_cnn):
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(19))
    runs = {}
    for bs in (7, 64):
        counted = Counted(lambda z: tiny_cnn(z, check=False))
        runs[bs] = kernel_shap(counted, x, 1, n_samples=40, grid_size=4, batch_size=bs, seed=2)
        assert len(counted.sizes) == 2 * math.ceil(40 / bs)  # 40 < 2**16: n_samples per image
        assert max(counted.sizes) <= bs
    torch.testing.assert_close(runs[7], runs[64], rtol=1e-5, atol=1e-6)
    # channels-last passes for the Model, contiguous for the callable (see the LIME test above)
    torch.testing.assert_close(
        kernel_shap(tiny_cnn, x, 1, n_samples=40, grid_size=4, seed=2), runs[64], rtol=1e-5, atol=1e-6
    )
    assert not torch.equal(kernel_shap(tiny_cnn, x, 1, n_samples=40, grid_size=4, seed=3), runs[64])


def test_shap_coalitions_follow_the_kernel():
    coal, w = shap_coalitions(12, 2002, torch.Generator().manual_seed(0))  # 2**12 > 2002: sampled
    assert coal.shape == (2002, 12) and coal[0].all() and not coal[1].any()
    assert w[:2].eq(0).all() and w[2:].eq(1).all()
    middle = coal[2:]
    torch.testing.assert_close(middle[1000:], ~middle[:1000])  # complementary pairs
    sizes = torch.bincount(middle.sum(1), minlength=13)[1:12].double()
    expected = 1.0 / (torch.arange(1, 12) * (12 - torch.arange(1, 12))).double()
    torch.testing.assert_close(sizes / sizes.sum(), expected / expected.sum(), atol=0.03, rtol=0)
    all_coal, all_w = shap_coalitions(3, 8, torch.Generator())
    assert len(all_coal) == 8 and len({tuple(c.tolist()) for c in all_coal}) == 8


def test_constrained_wls_splits_equally_without_data():
    phi = constrained_wls(
        torch.zeros(1, 0, 4),
        torch.zeros(1, 0),
        torch.zeros(1, 0),
        torch.tensor([2.0]),
        torch.ones(1, 4, dtype=torch.bool),
    )
    torch.testing.assert_close(phi, torch.full((1, 4), 0.5, dtype=torch.float64))


def test_kernel_shap_constant_input_and_bad_parameters(tiny_cnn):
    maps = kernel_shap(tiny_cnn, torch.full((1, 3, 16, 16), 0.3), 0, n_samples=10, grid_size=4)
    assert torch.isfinite(maps).all()
    with pytest.raises(ValueError, match="n_samples"):
        kernel_shap(tiny_cnn, torch.rand(1, 3, 16, 16), 0, n_samples=1)
    with pytest.raises(ValueError, match="segmentation"):
        kernel_shap(tiny_cnn, torch.rand(1, 3, 16, 16), 0, segmentation="superpixels")


# -- registry ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("occlusion", {"patch_size": 4, "stride": 4}),
        ("rise", {"n_masks": 16, "grid_size": 4}),
        ("lime", {"n_samples": 10, "grid_size": 4}),
        ("kernel_shap", {"n_samples": 10, "grid_size": 4}),
    ],
)
def test_methods_are_registered(tiny_cnn, name, params):
    maps = explainer(name, tiny_cnn, **params)(torch.rand(2, 3, 16, 16), torch.tensor([0, 1]))
    assert maps.shape == (2, 16, 16) and maps.dtype == torch.float32 and torch.isfinite(maps).all()
    maps.add_(1)  # an ordinary tensor, not an inference-mode one
