"""Deletion and insertion (Petsiuk et al. 2018) on a model whose curves are known in closed form.

``RegionProbability``: the probability of class 0 is the mean of x over a region R of r = 16 of the
P = 64 pixels. With x = 1 and baseline 0, removing k pixels of R gives p = 1 - k / r, so every curve is
piecewise linear with kinks on the steps and the trapezoid rule is exact.
"""

from __future__ import annotations

import pytest
import torch
from region_models import region_setup
from torch import nn

from workbench.metrics import CausalFidelity, deletion, insertion


def test_deletion_closed_form():
    """Ideal ranking, steps = 8 (8 pixels a step): step i removes 8 i pixels, all in R while 8 i <= 16,
    so p_i = 1 - min(8 i, 16) / 16 = (1, 0.5, 0, 0, ...): AUC = the triangle = (1 / 2) (r / P) = 1/8.
    Reversed ranking: R is untouched until 48 pixels are gone, p = (1 x 7, 0.5, 0): AUC = 6/8 +
    (1 + 0.5) / 16 + 0.5 / 16 = 7/8 = 1 - r / (2P). A random ranking lies in between."""
    model, x, _, ideal, reverse = region_setup()
    best = deletion(model, x, 0, ideal, steps=8)
    assert isinstance(best, CausalFidelity) and best.curve.shape == (2, 9) and best.auc.shape == (2,)
    torch.testing.assert_close(best.curve[0], torch.tensor([1, 0.5, 0, 0, 0, 0, 0, 0, 0]))
    torch.testing.assert_close(best.fractions, torch.arange(9) / 8)
    torch.testing.assert_close(best.auc, torch.full((2,), 1 / 8))
    worst = deletion(model, x, 0, reverse, steps=8).auc
    torch.testing.assert_close(worst, torch.full((2,), 7 / 8))
    rand = deletion(model, x, 0, torch.rand(2, 8, 8), steps=8).auc
    assert bool((best.auc < rand).all()) and bool((rand < worst).all())
    # max_fraction = 0.5, steps = 4: 32 pixels in chunks of 8, x axis rescaled to [0, 1]:
    # p = (1, 0.5, 0, 0, 0), AUC = (0.75 + 0.25) / 4 = r / (2 m) = 1/4
    half = deletion(model, x, 0, ideal, steps=4, max_fraction=0.5)
    torch.testing.assert_close(half.auc, torch.full((2,), 0.25))
    torch.testing.assert_close(half.fractions, torch.arange(5) / 8)
    # (N, C, H, W) maps are averaged over channels: same ranking, same AUC
    torch.testing.assert_close(
        deletion(model, x, 0, ideal[:, None].expand(2, 3, 8, 8), steps=8).auc, best.auc
    )


def test_insertion_is_the_reverse_walk():
    """Insertion from baseline 0: p_i = min(8 i, 16) / 16 = 1 - (deletion's p_i) for the same ranking,
    so insertion AUC = 1 - deletion AUC for any map: 7/8 for the ideal ranking, 1/8 for the reversed."""
    model, x, _, ideal, reverse = region_setup()
    best = insertion(model, x, 0, ideal, steps=8)
    torch.testing.assert_close(best.curve[0], torch.tensor([0, 0.5, 1, 1, 1, 1, 1, 1, 1]))
    torch.testing.assert_close(best.auc, torch.full((2,), 7 / 8))
    torch.testing.assert_close(insertion(model, x, 0, reverse, steps=8).auc, torch.full((2,), 1 / 8))
    rand = torch.rand(2, 8, 8)
    for steps in (3, 8, 10):
        total = insertion(model, x, 0, rand, steps=steps).auc + deletion(model, x, 0, rand, steps=steps).auc
        torch.testing.assert_close(total, torch.ones(2))


def test_every_forward_pass_is_batched():
    model, x, _, ideal, _ = region_setup(n=5)
    reference = deletion(model, x, torch.zeros(5, dtype=torch.long), ideal, steps=6, batch_size=64).auc
    for walk in (deletion, insertion):
        model.calls.clear()
        small = walk(model, x, 0, ideal, steps=6, batch_size=4)
        assert max(model.calls) <= 4 and sum(model.calls) == 5 * 7  # N (steps + 1) perturbed images
    torch.testing.assert_close(deletion(model, x, 0, ideal, steps=6, batch_size=4).auc, reference)
    assert small.curve.shape == (5, 7)


def test_baselines_targets_and_scores():
    model, x, region, ideal, _ = region_setup()
    # baseline 0.5: p falls from 1 to 0.5 only, AUC = 1/2 + 1/16 (half the triangle is kept)
    torch.testing.assert_close(
        deletion(model, x, 0, ideal, steps=8, baseline=0.5).auc, torch.full((2,), 9 / 16)
    )
    # the same baseline as a tensor of each accepted shape, and as a callable of x
    for base in (
        torch.tensor(0.5),
        torch.full((3, 1, 1), 0.5),
        torch.full((2, 3, 8, 8), 0.5),
        lambda v: v * 0.5,
    ):
        torch.testing.assert_close(
            deletion(model, x, 0, ideal, steps=8, baseline=base).auc, torch.full((2,), 9 / 16)
        )
    # class 1 has probability 1 - p: deleting R raises it, AUC = 1 - 1/8
    torch.testing.assert_close(deletion(model, x, 1, ideal, steps=8).auc, torch.full((2,), 7 / 8))
    # score="logit" reads the raw output: a linear model whose logit is the sum of the pixels of R
    linear = nn.Conv2d(3, 1, 8, bias=False)
    with torch.no_grad():
        linear.weight.copy_(region.float().expand(1, 3, 8, 8))
    logit_model = nn.Sequential(linear, nn.Flatten())  # (N, 1): class 0's logit = 3 * (pixels of R kept)
    curve = deletion(logit_model, x, 0, ideal, steps=8, score="logit").curve[0]
    torch.testing.assert_close(curve, torch.tensor([48.0, 24, 0, 0, 0, 0, 0, 0, 0]))
    # a single class makes the softmax probability 1 at every step
    torch.testing.assert_close(deletion(logit_model, x, 0, ideal, steps=8).auc, torch.ones(2))


def test_inputs_are_left_alone_and_bad_arguments_are_refused():
    model, x, _, ideal, _ = region_setup()
    x0, m0 = x.clone(), ideal.clone()
    for walk in (deletion, insertion):
        walk(
            model, x, 0, ideal, steps=3, baseline=lambda v: v.mul_(0.5)
        )  # even a baseline that writes in place
        assert torch.equal(x, x0) and torch.equal(ideal, m0)
    with pytest.raises(ValueError, match="maps"):
        deletion(model, x, 0, ideal[:, :4])
    with pytest.raises(ValueError, match="maps"):
        insertion(model, x, 0, ideal[:1])
    with pytest.raises(ValueError, match="max_fraction"):
        deletion(model, x, 0, ideal, max_fraction=0.0)
    with pytest.raises(ValueError, match="steps"):
        insertion(model, x, 0, ideal, steps=0)
    with pytest.raises(ValueError, match="score"):
        deletion(model, x, 0, ideal, score="prob")
    with pytest.raises(ValueError, match="baseline"):
        deletion(model, x, 0, ideal, baseline=torch.zeros(3, 4, 4))
    with pytest.raises(ValueError, match="baseline"):
        deletion(model, x, 0, ideal, baseline=lambda v: "black")
    bad = ideal.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        deletion(model, x, 0, bad)


def test_a_workbench_model_sees_exactly_the_perturbed_images():
    """For a workbench Model the perturbed images are mixed from originals and baseline normalized once
    (workbench.metrics.removal). Normalization is elementwise and the mix x (1 - m) + b m with m in
    {0, 1} is exact, so the network must receive, bit for bit, normalize(where(removed, b, x)) for the
    first floor(s P / steps) pixels of each ranking: tolerance zero."""
    from workbench.models import load_model

    model = load_model("zoo:resnet_shapes")
    gen = torch.Generator().manual_seed(0)
    x, base = torch.rand(2, 2, 3, 32, 32, generator=gen)
    maps = torch.rand(2, 32, 32, generator=gen)
    steps, pixels = 4, 32 * 32
    order = torch.argsort(maps.flatten(1), dim=1, descending=True, stable=True)
    for walk in (deletion, insertion):
        seen = []
        hook = model.net.register_forward_hook(lambda mod, inp, out, seen=seen: seen.append(inp[0].clone()))
        try:
            walk(model, x, 0, maps, steps=steps, baseline=base, batch_size=3)  # batches mix images
        finally:
            hook.remove()
        seen = torch.cat(seen)
        assert seen.shape == (2 * (steps + 1), 3, 32, 32)
        for i in range(2):
            for s in range(steps + 1):
                moved = torch.zeros(pixels, dtype=torch.bool)
                moved[order[i, : s * pixels // steps]] = True
                moved = moved.view(1, 32, 32)
                removed = moved if walk is deletion else ~moved
                expected = model.normalize(torch.where(removed, base[i], x[i])[None])[0]
                assert torch.equal(seen[i * (steps + 1) + s], expected)


def test_numpy_images_targets_maps_and_baselines_give_the_tensor_result():
    """Public functions take NumPy arrays where they take tensors (converted once at the boundary, float64
    arrays to float32): the same AUC exactly, here the closed form 1/8 of test_deletion_closed_form. A
    NumPy baseline is a baseline, not a mask-aware object (an ndarray has a ``fill`` method)."""
    import numpy as np

    from workbench.metrics import mufidelity

    model, x, _, ideal, _ = region_setup()
    c = x.shape[1]
    ours = deletion(
        model,
        x.double().numpy(),
        np.zeros(2, dtype=np.int64),
        ideal.double().numpy(),
        steps=8,
        baseline=np.zeros((c, 1, 1)),
    )
    torch.testing.assert_close(ours.auc, torch.full((2,), 1 / 8))
    torch.testing.assert_close(
        insertion(model, x.numpy(), 0, ideal.numpy(), steps=8).auc,
        insertion(model, x, 0, ideal, steps=8).auc,
        atol=0,
        rtol=0,
    )
    torch.testing.assert_close(
        mufidelity(model, x.numpy(), 0, ideal.numpy(), grid_size=4, n_samples=16),
        mufidelity(model, x, 0, ideal, grid_size=4, n_samples=16),
        atol=0,
        rtol=0,
    )
