"""Batches of images with some pixels removed: what deletion, insertion and MuFidelity feed the model.

One function turns (model, images, baseline) into the forward callable and a ``remove(img, removed)``
that builds a batch, so that every perturbation metric builds its inputs the same way and at the same
speed.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from workbench._core.validation import check_baseline
from workbench.metrics.baselines import Baseline, resolve_fill
from workbench.models.model import Model
from workbench.models.scoring import Forward, forward_fn, normalize_and_net

__all__ = ["Remove", "remover"]

Remove = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def remover(
    model: Model | nn.Module | Forward, x: torch.Tensor, baseline: Baseline
) -> tuple[Forward, Remove]:
    """``(forward, remove)``: ``forward(remove(img, removed))`` scores the images ``x[img]`` whose pixels
    where ``removed`` (B, 1, H, W) is True take the baseline's value.

    For a static baseline (a number, a tensor, a name or a callable of ``x``) the N originals and the
    N baseline images are normalized once and the batches are mixed in the network's input space, so
    building a batch costs two row gathers and two elementwise passes, not a normalization and a
    ``torch.where`` with a mask broadcast over channels. A mask-aware baseline (ROAD) is called on each
    batch in pixel space and its output is checked.

    ``x`` must already be checked and on the model's device (see :func:`~workbench.models.scoring.prepare`).
    """
    pixel_range = isinstance(model, Model)
    base = resolve_fill(baseline, x, pixel_range=pixel_range)
    if not isinstance(base, torch.Tensor):  # mask-aware: the fill depends on what is removed

        def remove_masked(img: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
            originals = x.index_select(0, img)
            images = base.fill(originals, removed)
            check_baseline(images, originals, pixel_range=pixel_range)  # the user's fill: shape, range
            return images

        return forward_fn(model), remove_masked

    normalize, net = normalize_and_net(model)
    kept, filled = (normalize(v).expand_as(x).contiguous() for v in (x, base))

    def remove(img: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
        # kept * (1 - m) + filled * m with m in {0, 1} is exact (values are finite), and on a CPU
        # several times faster than torch.where with a mask broadcast over channels.
        m = removed.to(kept.dtype)
        return kept.index_select(0, img).mul_(1 - m).addcmul_(filled.index_select(0, img), m)

    return net, remove
