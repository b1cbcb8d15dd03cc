"""``evaluate_groups``, the batched path of ``visualize``: K objectives on K slices of one forward pass give
the values and gradients of K separate evaluations.

The batch runs the network once on all rows, so the only differences allowed are float32 rounding of a
different batch size inside the convolutions (BatchNorm is in eval mode: no statistics across rows);
measured: values equal, gradients within 2e-7 of gradients of magnitude ~1. Tolerance 1e-5 relative.
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


def test_groups_match_separate_evaluations(textures):
    g = torch.Generator().manual_seed(0)
    directions = torch.rand(3, 192, generator=g)
    objectives = [obj.direction("layer3", v, cosine=True) for v in directions]
    objectives += [obj.direction("layer3", directions[0]), obj.logit(1), obj.channel("layer4", 3)]
    objectives += [obj.channel("layer3", 5) - 0.5 * obj.logit(2)]
    per = 3
    x = torch.rand(per * len(objectives), 3, 64, 64, generator=g).requires_grad_(True)
    separate = torch.cat(
        [obj.evaluate(textures, o, x[i * per : (i + 1) * per]) for i, o in enumerate(objectives)]
    )
    (grad_separate,) = torch.autograd.grad(separate.sum(), x)
    grouped = evaluate_groups(textures, objectives, x)
    (grad_grouped,) = torch.autograd.grad(grouped.sum(), x)
    assert grouped.shape == (len(objectives) * per,)
    torch.testing.assert_close(grouped, separate, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        grad_grouped, grad_separate, rtol=1e-5, atol=1e-5 * float(grad_separate.abs().max())
    )
