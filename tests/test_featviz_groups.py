"""``evaluate_groups``, the batched path of ``visualize``: K objectives on K slices of one forward pass give
the values and gradients of K separate evaluations.

Directions of the same layer (a page of SAE atoms) are scored together by one product, the other
objectives on their own slice. The batch runs the network once on all rows, so the only differences
allowed are float32 rounding (other batch sizes inside the convolutions, another summation order in the
product; BatchNorm is in eval mode: no statistics across rows). Measured: values within 2e-6 of values
~10, gradients within 2e-7 of gradients ~1; tolerance 1e-5 relative to the largest entry.
"""

from __future__ import annotations

import pytest
import torch

from workbench.featviz import objectives as obj
from workbench.featviz.objectives import evaluate_groups


@pytest.fixture(scope="module")
def textures():
    from workbench.models import load_model

    return load_model("zoo:resnet_textures").eval()


def _page(g: torch.Generator) -> list[obj.Objective]:
    """Four cosine atoms of layer3: one group, all of the batch."""
    return [obj.direction("layer3", v, cosine=True) for v in torch.rand(4, 192, generator=g)]


def _mixed(g: torch.Generator) -> list[obj.Objective]:
    """Groups that are a part of the batch, not contiguous (layer4 atoms around others), a lone plain
    direction, a composed direction (not grouped), logits, channels and a combination."""
    v3, v4 = torch.rand(3, 192, generator=g), torch.rand(2, 96, generator=g)
    return [
        obj.direction("layer3", v3[0], cosine=True),
        obj.direction("layer4", v4[0], cosine=True),
        obj.direction("layer3", v3[1], cosine=True),
        obj.logit(1),
        obj.direction("layer4", v4[1], cosine=True),
        obj.direction("layer3", v3[2]),
        2.0 * obj.direction("layer3", v3[0], cosine=True),
        obj.channel("layer4", 3),
        obj.channel("layer3", 5) - 0.5 * obj.logit(2),
    ]


@pytest.mark.parametrize("make", [_page, _mixed], ids=["page", "mixed"])
def test_groups_match_separate_evaluations(textures, make):
    g = torch.Generator().manual_seed(0)
    objectives = make(g)
    per = 3
    x = torch.rand(per * len(objectives), 3, 64, 64, generator=g).requires_grad_(True)
    separate = torch.cat(
        [obj.evaluate(textures, o, x[i * per : (i + 1) * per]) for i, o in enumerate(objectives)]
    )
    (grad_separate,) = torch.autograd.grad(separate.sum(), x)
    grouped = evaluate_groups(textures, objectives, x)
    (grad_grouped,) = torch.autograd.grad(grouped.sum(), x)
    assert grouped.shape == (len(objectives) * per,)
    assert float(grad_separate.abs().max()) > 0  # every objective has a gradient to compare
    torch.testing.assert_close(grouped, separate, rtol=1e-5, atol=1e-5 * float(separate.detach().abs().max()))
    torch.testing.assert_close(
        grad_grouped, grad_separate, rtol=1e-5, atol=1e-5 * float(grad_separate.abs().max())
    )


def test_a_direction_of_the_wrong_size_is_named_in_a_batch(textures):
    objectives = [obj.direction("layer3", torch.ones(96)), obj.direction("layer3", torch.ones(96))]
    with pytest.raises(ValueError, match="96 entries but layer 'layer3' has 192 channels"):
        evaluate_groups(textures, objectives, torch.rand(2, 3, 64, 64))
