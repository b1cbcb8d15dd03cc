"""Average stability: do nearby inputs get nearby explanations?

Bhatt, Weller & Moura, "Evaluating and Aggregating Feature-based Model Explanations", IJCAI 2020
(average sensitivity; Yeh et al., NeurIPS 2019, define the max-sensitivity version). Xplique's
``AverageStability`` fixes the defaults used here: radius 0.1, 20 samples, L2 distance.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from workbench._core.batching import iter_batches
from workbench._core.seeding import make_generator
from workbench._core.validation import as_tensor, check_int
from workbench.metrics.registry import METRICS
from workbench.models.model import Model
from workbench.models.scoring import Forward, prepare

__all__ = ["Explain", "average_stability"]

Explain = Callable[..., torch.Tensor]
DISTANCES = ("l2", "l1")


def _flat_maps(maps: torch.Tensor, n: int, size: tuple[int, int]) -> torch.Tensor:
    maps = as_tensor(maps)
    if not isinstance(maps, torch.Tensor) or maps.ndim not in (3, 4) or len(maps) != n:
        shape = tuple(maps.shape) if isinstance(maps, torch.Tensor) else type(maps).__name__
        raise ValueError(f"explain: expected {n} maps (N, H, W) or (N, C, H, W), got {shape}")
    maps = maps.detach().float()
    if not bool(torch.isfinite(maps).all()):
        raise ValueError("explain: returned NaN or infinite values")
    return maps.flatten(1)


@METRICS.register(
    "average_stability",
    paper="Bhatt, Weller & Moura, Evaluating and Aggregating Feature-based Model Explanations, IJCAI 2020",
)
def average_stability(
    explain: Explain,
    model: Model | nn.Module | Forward,
    x: torch.Tensor,
    y: torch.Tensor | int,
    *,
    radius: float = 0.1,
    n_samples: int = 20,
    distance: str = "l2",
    normalize: bool = False,
    batch_size: int = 64,
    seed: int | None = 0,
) -> torch.Tensor:
    """Mean distance between the explanation of ``x`` and those of ``x + delta``, ``delta`` uniform in
    the L-infinity ball of ``radius`` (Bhatt et al., IJCAI 2020). **Lower is more stable.**

    Parameters
    ----------
    explain
        ``explain(model, x, y) -> maps``: any attribution method (``workbench.attribution.saliency``, an
        ``explainer(...)`` bound with its parameters and wrapped in a lambda, ...). Called once on ``x``
        and on chunks of ``batch_size`` noisy copies (images and samples mixed).
    model
        The model the method explains: a workbench Model, an ``nn.Module`` or a callable.
    x
        Images (N, C, H, W); in [0, 1] for a workbench Model, where noisy copies are clipped back to
        [0, 1] (the ball is cut at the borders of the pixel range). Never modified.
    y
        Target classes (N,) or one int; the noisy copies keep their image's target.
    radius
        Half-width of the uniform noise per input value (default 0.1, in pixel units for a Model).
    n_samples
        Noisy copies per image (default 20).
    distance
        "l2" (default) or "l1", between flattened maps.
    normalize
        Divide each distance by the norm of the explanation of ``x``: a relative sensitivity that
        compares methods of different scales. Where that explanation is all zero, the raw distance is
        kept (never ``inf``).
    batch_size
        Noisy images per call of ``explain``.
    seed
        Seed of the noise (same seed, same result).

    Returns
    -------
    torch.Tensor
        (N,) float32 mean distances.
    """
    if not callable(explain):
        raise ValueError(
            f"explain: expected a callable explain(model, x, y) -> maps, got {type(explain).__name__}"
        )
    if isinstance(radius, bool) or not isinstance(radius, int | float) or not radius > 0:
        raise ValueError(f"radius: expected a number > 0, got {radius!r}")
    check_int(n_samples, "n_samples")
    check_int(batch_size, "batch_size")
    if distance not in DISTANCES:
        raise ValueError(f"distance: expected one of {DISTANCES}, got {distance!r}")
    _, x, y = prepare(model, x, y)
    n = len(x)
    order = 2 if distance == "l2" else 1
    reference = _flat_maps(explain(model, x.clone(), y), n, x.shape[-2:])
    gen = make_generator(seed)
    total = torch.zeros(n, device=reference.device, dtype=torch.float64)
    for sl in iter_batches(n * n_samples, batch_size):
        idx = torch.arange(sl.start, sl.stop)
        img = idx // n_samples
        # noise drawn on the CPU from one generator, so the result does not depend on the device
        noise = (torch.rand((len(idx), *x.shape[1:]), generator=gen) * 2 - 1) * radius
        noisy = x[img.to(x.device)] + noise.to(device=x.device, dtype=x.dtype)
        if isinstance(model, Model):
            noisy = noisy.clamp(0.0, 1.0)
        maps = _flat_maps(explain(model, noisy, y[img.to(y.device)]), len(idx), x.shape[-2:])
        diff = (maps - reference[img.to(reference.device)]).double().norm(p=order, dim=1)
        total.index_add_(0, img.to(total.device), diff)
    mean = total / n_samples
    if normalize:
        scale = reference.double().norm(p=order, dim=1)
        mean = torch.where(scale > 0, mean / scale.clamp_min(1e-300), mean)
    return mean.float()
