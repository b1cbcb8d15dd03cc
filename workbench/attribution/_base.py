"""What every attribution method shares: input checks, the forward callable, batched scoring of
perturbations, and channel reduction.

Every forward pass of every method goes through :func:`batched_scores` (or :func:`perturbed_scores`),
so peak memory is bounded by ``batch_size`` whatever the number of perturbations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import torch

from workbench._core.batching import iter_batches
from workbench.models.scoring import (  # noqa: F401  (re-exported: every method imports them from here)
    Forward,
    batched_scores,
    class_scores,
    forward_fn,
    model_device,
    prepare,
)

Reduce = Literal["sum", "mean", "max_abs", "none"]
REDUCTIONS = ("sum", "mean", "max_abs", "none")


@torch.inference_mode()
def perturbed_scores(
    forward: Forward,
    make_inputs: Callable[[slice], torch.Tensor],
    n: int,
    y: int | torch.Tensor,
    batch_size: int,
    device: torch.device,
) -> torch.Tensor:
    """Scores for ``n`` perturbations that are built lazily, one batch at a time.

    ``make_inputs(sl)`` returns the perturbed inputs for perturbation indices ``sl`` (on ``device``),
    so the full stack of perturbed images never exists in memory at once.
    """
    out = torch.empty(n, device=device)
    target = torch.as_tensor(y, device=device).view(1)
    for sl in iter_batches(n, batch_size):
        batch = make_inputs(sl)
        out[sl] = class_scores(forward(batch), target.expand(len(batch))).float()
    return out


def reduce_channels(maps: torch.Tensor, reduce: Reduce) -> torch.Tensor:
    """(N, C, H, W) -> (N, H, W) by "sum", "mean" or "max_abs"; "none" keeps the channels."""
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce: expected one of {REDUCTIONS}, got {reduce!r}")
    if reduce == "none":
        return maps
    if reduce == "sum":
        return maps.sum(1)
    if reduce == "mean":
        return maps.mean(1)
    return maps.abs().amax(1)


def as_tensor(x):
    """A numpy array (or nested sequence) as a tensor, a tensor unchanged: the public boundary accepts both."""
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


def finite_maps(maps: torch.Tensor) -> torch.Tensor:
    """Replace NaN/inf (e.g. 0/0 on a constant input) by 0 so no method returns a NaN map."""
    return torch.nan_to_num(maps, nan=0.0, posinf=0.0, neginf=0.0)
