"""What every attribution method shares: input checks, the forward callable, batched scoring of
perturbations, channel reduction and grid upsampling.

Every forward pass of every method goes through :func:`batched_scores` (or :func:`perturbed_scores`),
so peak memory is bounded by ``batch_size`` whatever the number of perturbations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from workbench._core.batching import iter_batches
from workbench._core.devices import module_device
from workbench._core.validation import check_images, check_targets
from workbench.models.model import Model

Reduce = Literal["sum", "mean", "max_abs", "none"]
REDUCTIONS = ("sum", "mean", "max_abs", "none")
Forward = Callable[[torch.Tensor], torch.Tensor]


def forward_fn(model: Model | nn.Module | Forward) -> Forward:
    """The callable that maps (N, C, H, W) to (N, K) scores, without per-call validation.

    A workbench :class:`Model` is called with ``check=False`` (inputs were checked once at the
    boundary); plain modules and callables get their inputs as they are.
    """
    if isinstance(model, Model):
        return lambda x: model(x, check=False)
    if callable(model):
        return model
    raise ValueError(
        f"model: expected a workbench Model, an nn.Module or a callable, got {type(model).__name__}"
    )


def model_device(model: Model | nn.Module | Forward, x: torch.Tensor) -> torch.device:
    """Perturbations are made where the model lives (the input's device for plain callables)."""
    return module_device(model) if isinstance(model, nn.Module) else x.device


def prepare(
    model: Model | nn.Module | Forward, x: torch.Tensor, y: torch.Tensor | int
) -> tuple[Forward, torch.Tensor, torch.Tensor]:
    """Check ``x`` and ``y`` at the public boundary and move them to the model's device.

    Images for a workbench Model must be pixel-space [0, 1]; other models get any float values.
    Targets are class indices (N,), checked against the number of classes when it is known.
    """
    is_model = isinstance(model, Model)
    check_images(
        x, channels=model.input_size[0] if is_model else None, value_range=(0.0, 1.0) if is_model else None
    )
    if not is_model and bool(torch.isnan(x).any()):
        raise ValueError("x: contains NaN values")
    num_classes = model.num_classes if is_model else None
    y = check_targets(y, len(x), num_classes)
    device = model_device(model, x)
    return forward_fn(model), x.to(device), y.to(device)


def class_scores(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The score of class ``y[i]`` for each row (N,), with a clear error when y exceeds K."""
    if logits.ndim != 2:
        raise ValueError(f"the model must return (N, K) scores, got shape {tuple(logits.shape)}")
    if int(y.max()) >= logits.shape[1]:
        raise ValueError(f"y: targets must lie in [0, {logits.shape[1] - 1}], got {int(y.max())}")
    return logits.gather(1, y.view(-1, 1)).squeeze(1)


@torch.inference_mode()
def batched_scores(forward: Forward, inputs: torch.Tensor, y: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Scores of class ``y`` for already-built inputs (M, C, H, W), at most ``batch_size`` per pass."""
    if y.ndim == 0:
        y = y.expand(len(inputs))
    out = torch.empty(len(inputs), device=inputs.device)
    for sl in iter_batches(len(inputs), batch_size):
        out[sl] = class_scores(forward(inputs[sl]), y[sl]).float()
    return out


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


def upsample_grid(scores: torch.Tensor, size: tuple[int, int], mode: str = "bicubic") -> torch.Tensor:
    """Grid scores (N, g, g) -> maps (N, H, W); bicubic by default, as the Sobol reference does."""
    kw = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
    return F.interpolate(scores[:, None].float(), size=size, mode=mode, **kw)[:, 0]


def finite_maps(maps: torch.Tensor) -> torch.Tensor:
    """Replace NaN/inf (e.g. 0/0 on a constant input) by 0 so no method returns a NaN map."""
    return torch.nan_to_num(maps, nan=0.0, posinf=0.0, neginf=0.0)
