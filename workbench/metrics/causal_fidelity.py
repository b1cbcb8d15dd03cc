"""Deletion and insertion: the causal fidelity curves of an attribution map.

Petsiuk, Das & Saenko, "RISE: Randomized Input Sampling for Explanation of Black-box Models", BMVC
2018 (the two metrics); Xplique's ``Deletion`` / ``Insertion`` (CausalFidelity) fix the defaults used
here: 10 steps, baseline 0, pixels ranked by the map with channels averaged.

**Deletion** removes the most important pixels first (they take the baseline's value) and reads the
score after each chunk: a faithful map makes the score fall fast, so **lower is better**.
**Insertion** starts from the baseline image and puts the most important pixels back first: the score
should rise fast, so **higher is better**. The two are the same walk between ``x`` and the baseline
image, run in opposite directions, and share one implementation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from workbench._core.batching import iter_batches
from workbench._core.validation import check_fraction, check_int, check_maps
from workbench.metrics.baselines import Baseline
from workbench.metrics.registry import METRICS
from workbench.metrics.removal import remover
from workbench.models.model import Model
from workbench.models.scoring import Forward, batched_scores, prepare, score_fn

__all__ = ["CausalFidelity", "deletion", "insertion"]


@dataclass(frozen=True)
class CausalFidelity:
    """The result of :func:`deletion` or :func:`insertion`.

    Attributes
    ----------
    auc : torch.Tensor
        (N,) area under each curve, trapezoid rule with the x axis normalised to [0, 1].
    curve : torch.Tensor
        (N, steps + 1) score of the target class after 0, 1, ..., steps chunks.
    fractions : torch.Tensor
        (steps + 1,) fraction of the pixels removed (deletion) or inserted (insertion) at each point.
    """

    auc: torch.Tensor
    curve: torch.Tensor
    fractions: torch.Tensor

    @classmethod
    def from_curve(cls, curve: torch.Tensor, fractions: torch.Tensor) -> CausalFidelity:
        """The result for curves (N, steps + 1) read at equally spaced steps: trapezoid AUC on [0, 1]."""
        steps = curve.shape[1] - 1
        return cls(auc=(curve[:, :-1] + curve[:, 1:]).sum(1) / (2 * steps), curve=curve, fractions=fractions)


def descending_ranks(scores: torch.Tensor) -> torch.Tensor:
    """``rank[n, i]``: the position of item ``i`` (a pixel, a concept) in row ``n``'s decreasing order of
    ``scores`` (N, D); ties keep index order, so runs of equal scores are removed in order."""
    order = torch.argsort(scores, dim=1, descending=True, stable=True)
    positions = torch.arange(order.shape[1], device=order.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, positions)


def maps_for(maps: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Maps (N, H, W) or (N, C, H, W) matching ``x``, as detached (N, H, W) float32 on x's device."""
    return check_maps(maps, n=len(x), size=x.shape[-2:]).to(x.device)


@torch.inference_mode()
def _walk(model, x, y, maps, *, steps, baseline, max_fraction, batch_size, score, insert) -> CausalFidelity:
    steps = check_int(steps, "steps")
    batch_size = check_int(batch_size, "batch_size")
    max_fraction = check_fraction(max_fraction, "max_fraction", inclusive=(False, True))
    forward, x, y = prepare(model, x, y)
    maps = maps_for(maps, x)
    forward, remove = remover(model, x, baseline)
    forward = score_fn(forward, score)
    n, _, h, w = x.shape
    n_pixels = h * w
    moved_total = round(max_fraction * n_pixels)
    counts = torch.arange(steps + 1, device=x.device) * moved_total // steps  # pixels moved per step
    rank = descending_ranks(maps.flatten(1))  # rank[i, p]: position of pixel p (ties: row-major order)
    points = steps + 1
    scores = torch.empty(n * points, device=x.device)
    # The N (steps + 1) images are built one batch at a time (a batch mixes images and steps), so
    # memory does not grow with N or steps.
    for sl in iter_batches(n * points, batch_size):
        k = torch.arange(sl.start, sl.stop, device=x.device)
        img, step = k // points, k % points
        moved = (rank.index_select(0, img) < counts.index_select(0, step)[:, None]).view(-1, 1, h, w)
        images = remove(img, ~moved if insert else moved)  # insertion: not yet put back = removed
        scores[sl] = batched_scores(forward, images, y.index_select(0, img), batch_size)
    return CausalFidelity.from_curve(scores.view(n, points), counts.float().cpu() / n_pixels)


_PARAMS_DOC = """
    Parameters
    ----------
    model
        A workbench Model (pixel-space input), an ``nn.Module`` or a callable (N, C, H, W) -> (N, K)
        logits.
    x
        Images (N, C, H, W); in [0, 1] for a workbench Model. Never modified.
    y
        Target classes (N,) or one int for all images.
    maps
        (N, H, W) or (N, C, H, W) attribution maps at the image size; higher means more important.
        (N, C, H, W) maps are averaged over channels; ties are broken by row-major pixel index.
        Signed maps are ranked by value, not magnitude: pass ``maps.abs()`` to rank by magnitude.
    steps
        Number of equal chunks (default 10, as Xplique); ``steps + 1`` points per curve.
    baseline
        The value of a removed pixel, on **all channels** at once: a number (default 0.0, black in
        pixel space), a tensor of shape (), (C, 1, 1), (1, C, 1, 1), (C, H, W), (1, C, H, W) or
        (N, C, H, W), a callable ``baseline(x) -> tensor`` of one of those shapes (a blurred copy of
        ``x``, say), a name of :data:`workbench.metrics.baselines.BASELINES` ("zero", "mean",
        "uniform", "blur", "local_mean", "scramble", "road"), or a mask-aware object with
        ``fill(x, removed) -> images`` (ROAD's imputation, :class:`~workbench.metrics.baselines.Road`),
        called on every batch of perturbed images because its fill depends on which pixels are
        removed. In [0, 1] for a workbench Model.
    max_fraction
        Fraction of the pixels moved at the last step, in (0, 1] (default 1: the whole image). The x
        axis of the AUC is normalised to [0, 1] whatever ``max_fraction``.
    batch_size
        Perturbed images per forward pass; they are built lazily on the model's device.
    score
        "probability" (default: the softmax probability of class ``y``, bounded, so AUCs compare across
        images) or "logit".

    Returns
    -------
    CausalFidelity
        ``.auc`` (N,), ``.curve`` (N, steps + 1) and ``.fractions`` (steps + 1,), on the model's device
        (fractions on the CPU).
"""


_RISE = (
    "Petsiuk, Das & Saenko, RISE: Randomized Input Sampling for Explanation of Black-box Models, BMVC 2018"
)


@METRICS.register(
    "deletion",
    paper=_RISE,
)
def deletion(
    model: Model | nn.Module | Forward,
    x: torch.Tensor,
    y: torch.Tensor | int,
    maps: torch.Tensor,
    *,
    steps: int = 10,
    baseline: Baseline = 0.0,
    max_fraction: float = 1.0,
    batch_size: int = 64,
    score: str = "probability",
) -> CausalFidelity:
    """Deletion (Petsiuk et al., BMVC 2018): remove the most important pixels first; **lower is better**.

    At step ``i = 0..steps`` the first ``floor(i * m / steps)`` pixels of the ranking,
    ``m = round(max_fraction * H * W)``, take the baseline's value, and the score of class ``y`` is read.
    """
    return _walk(model, x, y, maps, steps=steps, baseline=baseline, max_fraction=max_fraction,
                 batch_size=batch_size, score=score, insert=False)  # fmt: skip


@METRICS.register(
    "insertion",
    paper=_RISE,
)
def insertion(
    model: Model | nn.Module | Forward,
    x: torch.Tensor,
    y: torch.Tensor | int,
    maps: torch.Tensor,
    *,
    steps: int = 10,
    baseline: Baseline = 0.0,
    max_fraction: float = 1.0,
    batch_size: int = 64,
    score: str = "probability",
) -> CausalFidelity:
    """Insertion (Petsiuk et al., BMVC 2018): start from the baseline image and put the most important
    pixels back first; **higher is better**.

    At step ``i = 0..steps`` the first ``floor(i * m / steps)`` pixels of the ranking,
    ``m = round(max_fraction * H * W)``, have their value from ``x``, the rest the baseline's.
    """
    return _walk(model, x, y, maps, steps=steps, baseline=baseline, max_fraction=max_fraction,
                 batch_size=batch_size, score=score, insert=True)  # fmt: skip


deletion.__doc__ += _PARAMS_DOC
insertion.__doc__ += _PARAMS_DOC
