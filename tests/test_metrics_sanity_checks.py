"""Sanity checks (Adebayo et al. 2018; Sixt et al. 2020): a model-independent "explanation" must pass
through unchanged (similarity 1 at every stage), real gradient maps must lose their resemblance to the
trained model's maps, and the trained model is never touched."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from workbench.attribution import gradcam, gradient_input, saliency
from workbench.metrics.sanity_checks import model_randomization, random_logit, randomizable_layers


def edge_map(model, x, y):
    """An 'explanation' that ignores the model: the image's horizontal gradient magnitude."""
    g = x.mean(1)
    return torch.nn.functional.pad((g[:, :, 1:] - g[:, :, :-1]).abs(), (0, 1))


def test_a_model_independent_map_never_changes(zoo_cnn, shapes_small):
    x, y = shapes_small.images[:4], shapes_small.labels[:4]
    before = {k: v.clone() for k, v in zoo_cnn.state_dict().items()}
    for mode in ("cascading", "independent"):
        result = model_randomization(edge_map, zoo_cnn, x, y, mode=mode)
        assert result.layers == tuple(randomizable_layers(zoo_cnn))
        for name, sims in result.similarity.items():
            assert sims.shape == (len(result.layers), 4), name
            torch.testing.assert_close(sims, torch.ones_like(sims), msg=name)
    after = zoo_cnn.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "the trained model was modified"


def test_gradient_maps_fail_to_resemble_after_randomization(zoo_cnn, shapes_small):
    """zoo:resnet_shapes, 8 images, cascading from fc down to conv1 (7 stages). Measured (mean over
    images, first -> last stage): saliency SSIM 0.69 -> 0.12 (its Spearman stays 0.54: |gradient| keeps
    the image's edges, Adebayo et al.'s observation), gradient x input signed Spearman -0.14 -> 0.00,
    Grad-CAM Spearman 0.16 -> -0.24. Asserted with margins: at the last stage saliency SSIM < 0.3 and
    below its first stage, |gradient x input Spearman| < 0.2, Grad-CAM Spearman < 0.3."""
    x, y = shapes_small.images[:8], shapes_small.labels[:8]
    sal = model_randomization(saliency, zoo_cnn, x, y).mean()
    assert sal["ssim"][-1] < 0.3 and sal["ssim"][-1] < sal["ssim"][0], sal
    gi = model_randomization(gradient_input, zoo_cnn, x, y, similarity="spearman").mean()
    assert abs(gi["spearman"][-1]) < 0.2, gi
    cam = model_randomization(gradcam, zoo_cnn, x, y, similarity="spearman").mean()
    assert cam["spearman"][-1] < 0.3, cam
    # same seed, same result
    again = model_randomization(saliency, zoo_cnn, x, y, similarity="ssim").mean()
    assert again["ssim"] == pytest.approx(sal["ssim"], abs=1e-6)


def test_independent_mode_and_bad_input(zoo_cnn, shapes_small):
    x, y = shapes_small.images[:2], shapes_small.labels[:2]
    result = model_randomization(saliency, zoo_cnn, x, y, mode="independent", layers=["fc", "conv1"])
    assert result.layers == ("fc", "conv1") and result.similarity["ssim"].shape == (2, 2)
    with pytest.raises(ValueError, match="unknown module"):
        model_randomization(saliency, zoo_cnn, x, y, layers=["layer9"])
    with pytest.raises(ValueError, match="mode"):
        model_randomization(saliency, zoo_cnn, x, y, mode="top-down")
    with pytest.raises(ValueError, match="similarity"):
        model_randomization(saliency, zoo_cnn, x, y, similarity="iou")
    with pytest.raises(ValueError, match="plain callable"):
        model_randomization(saliency, lambda v: v.flatten(1)[:, :3], x, y)


def test_random_logit():
    """A linear model whose classes share one weight vector has identical saliency maps for every class
    (|w|): similarity 1. With independent random weights per class the maps differ."""
    w = torch.randn(1, 3 * 8 * 8, generator=torch.Generator().manual_seed(0))
    shared = nn.Sequential(nn.Flatten(), nn.Linear(3 * 64, 5, bias=False))
    with torch.no_grad():
        shared[1].weight.copy_(w.expand(5, -1))
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 4])
    torch.testing.assert_close(
        random_logit(saliency, shared, x, y, num_classes=5, similarity="spearman"), torch.ones(4)
    )
    distinct = nn.Sequential(nn.Flatten(), nn.Linear(3 * 64, 5, bias=False))
    sims = random_logit(saliency, distinct, x, y, num_classes=5, similarity="spearman")
    assert bool((sims < 0.5).all()), sims
    with pytest.raises(ValueError, match="num_classes"):
        random_logit(saliency, distinct, x, y)
