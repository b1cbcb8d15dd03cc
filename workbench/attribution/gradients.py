"""Gradient attribution: saliency, gradient x input, integrated gradients and the SmoothGrad family.

Every method differentiates the score of class ``y`` (the logit, before any softmax) with respect to
the pixel-space input, through :func:`torch.autograd.grad` on a fresh copy of the input, so

- the caller's ``x`` is never modified and no ``.grad`` is left on the model's parameters;
- models in eval mode with frozen parameters (``requires_grad=False``) work;
- every forward/backward pass holds at most ``batch_size`` inputs, whatever the number of
  integration steps or noise samples (those are flattened with the images and cut into chunks).

Gradients of a batch are taken as the gradient of the *sum* of the per-image scores, which equals
the per-image gradients as long as images do not interact inside the model (true in eval mode; a
BatchNorm in training mode would couple them).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from workbench._core.batching import iter_batches
from workbench._core.progress import progress as _progress
from workbench._core.seeding import make_generator
from workbench._core.validation import check_baseline, check_int
from workbench.attribution._base import (
    REDUCTIONS,
    Forward,
    Reduce,
    class_scores,
    finite_maps,
    prepare,
    reduce_channels,
)
from workbench.attribution.registry import register
from workbench.models.model import Model

__all__ = [
    "gradient_input",
    "integrated_gradients",
    "saliency",
    "smoothgrad",
    "squaregrad",
    "vargrad",
]

AnyModel = Model | nn.Module | Forward


# -- shared helpers ---------------------------------------------------------------------------------
def check_reduce(reduce: str) -> None:
    """Fail before any forward pass on an unknown channel reduction."""
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce: expected one of {REDUCTIONS}, got {reduce!r}")


def score_gradients(forward: Forward, inputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """d score_y / d input for a batch (B, C, H, W) built by the caller (no batching here).

    The input is copied into a fresh leaf tensor, so neither the caller's tensor nor the model's
    parameters receive a ``.grad``. Works inside ``torch.no_grad``/``inference_mode`` blocks.
    """
    with torch.inference_mode(False), torch.enable_grad():
        leaf = inputs.detach().clone().requires_grad_(True)
        scores = class_scores(forward(leaf), y.clone() if y.is_inference() else y)
        if not scores.requires_grad:
            raise ValueError(
                "the model's scores are not differentiable with respect to the input (does the model"
                " run under torch.no_grad() or detach its input?); gradient methods need autograd"
            )
        (grads,) = torch.autograd.grad(scores.sum(), leaf, allow_unused=True)
    return torch.zeros_like(leaf) if grads is None else grads.detach()


def _finish(maps: torch.Tensor, reduce: Reduce) -> torch.Tensor:
    return finite_maps(reduce_channels(maps, reduce)).float()


def _flat_chunks(n_rep: int, n_img: int, batch_size: int, progress: bool, desc: str):
    """Chunks of the flattened (repetition, image) grid, repetition-major: (rep_idx, img_idx)."""
    total = n_rep * n_img
    chunks = list(iter_batches(total, batch_size))
    for sl in _progress(chunks, enabled=progress, desc=desc, total=len(chunks)):
        k = torch.arange(sl.start, sl.stop)
        yield k // n_img, k % n_img


# -- plain gradients --------------------------------------------------------------------------------
def _input_gradients(forward: Forward, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> torch.Tensor:
    grads = torch.empty_like(x)
    for sl in iter_batches(len(x), batch_size):
        grads[sl] = score_gradients(forward, x[sl], y[sl])
    return grads


@register(
    "saliency",
    paper="Simonyan, Vedaldi & Zisserman, Deep Inside Convolutional Networks, ICLR workshop 2014",
)
def saliency(
    model: AnyModel,
    x: torch.Tensor,
    y: torch.Tensor | int,
    *,
    reduce: Reduce = "max_abs",
    batch_size: int = 64,
) -> torch.Tensor:
    """Saliency: the absolute gradient of the class score, ``|d f_y / d x|``.

    Simonyan, Vedaldi & Zisserman, "Deep Inside Convolutional Networks: Visualising Image
    Classification Models and Saliency Maps", ICLR Workshop 2014.

    Parameters
    ----------
    model
        A workbench :class:`~workbench.models.Model` (pixel-space input), any ``nn.Module`` or
        callable mapping (N, C, H, W) to (N, K) scores (inputs are passed as they are).
    x
        Images (N, C, H, W); in [0, 1] for a workbench Model. Never modified.
    y
        Target classes (N,) (an int applies to every image).
    reduce
        Channel reduction: "max_abs" (default, as in the paper: max over channels of ``|grad|``),
        "sum", "mean", or "none" to keep (N, C, H, W).
    batch_size
        Images per forward/backward pass.

    Returns
    -------
    torch.Tensor
        (N, H, W) float32 maps, non-negative (the only unsigned gradient method here), or
        (N, C, H, W) with ``reduce="none"``.
    """
    check_reduce(reduce)
    forward, x, y = prepare(model, x, y)
    return _finish(_input_gradients(forward, x, y, batch_size).abs(), reduce)


@register(
    "gradient_input",
    paper="Shrikumar et al., Learning Important Features Through Propagating Activation Differences, ICML 2017",
)
def gradient_input(
    model: AnyModel,
    x: torch.Tensor,
    y: torch.Tensor | int,
    *,
    reduce: Reduce = "sum",
    batch_size: int = 64,
) -> torch.Tensor:
    """Gradient x Input: ``x * d f_y / d x`` (signed).

    Shrikumar, Greenside, Shcherbina & Kundaje, "Not Just a Black Box: Learning Important
    Features Through Propagating Activation Differences", 2016 (arXiv:1605.01713).

    For a linear model ``f(x) = <w, x>`` the map is ``w * x`` and sums to ``f(x) - f(0)``.

    Parameters
    ----------
    model, x, y, batch_size
        As in :func:`saliency`.
    reduce
        "sum" (default, so the map sums to the first-order contribution of each pixel), "mean",
        "max_abs" or "none".

    Returns
    -------
    torch.Tensor
        (N, H, W) float32 signed maps, or (N, C, H, W) with ``reduce="none"``.
    """
    check_reduce(reduce)
    forward, x, y = prepare(model, x, y)
    return _finish(_input_gradients(forward, x, y, batch_size) * x, reduce)


# -- integrated gradients ---------------------------------------------------------------------------
def gauss_legendre(steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes ``alpha`` in (0, 1) and weights (summing to 1) of the ``steps``-point Gauss-Legendre rule.

    The same rule as Captum's ``method="gausslegendre"`` (its default): exact for polynomial
    integrands of degree ``2 * steps - 1``; the end points 0 and 1 are never evaluated.
    """
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    return torch.from_numpy(0.5 * (nodes + 1.0)), torch.from_numpy(0.5 * weights)


@register(
    "integrated_gradients",
    paper="Sundararajan, Taly & Yan, Axiomatic Attribution for Deep Networks, ICML 2017",
)
def integrated_gradients(
    model: AnyModel,
    x: torch.Tensor,
    y: torch.Tensor | int,
    *,
    reduce: Reduce = "sum",
    batch_size: int = 64,
    steps: int = 50,
    baseline: float | torch.Tensor = 0.0,
    progress: bool = False,
) -> torch.Tensor:
    """Integrated Gradients: ``(x - x0) * integral_0^1 grad f_y(x0 + a (x - x0)) da``.

    Sundararajan, Taly & Yan, "Axiomatic Attribution for Deep Networks", ICML 2017.

    The path integral uses the ``steps``-point **Gauss-Legendre** rule (Captum's default
    ``method="gausslegendre"``, same nodes and weights), so results match Captum's
    ``IntegratedGradients`` with ``n_steps=steps``. Completeness: with ``reduce="sum"`` the map of
    each image sums to ``f_y(x) - f_y(x0)`` up to the quadrature error.

    The ``steps * N`` interpolated inputs are flattened and processed ``batch_size`` at a time (a
    chunk mixes steps and images), not one pass per step.

    Parameters
    ----------
    model, x, y
        As in :func:`saliency`.
    reduce
        "sum" (default, so completeness holds for the map), "mean", "max_abs" or "none".
    batch_size
        Interpolated inputs per forward/backward pass.
    steps
        Quadrature points (default 50, as in Xplique and Captum).
    baseline
        The reference ``x0``: a number (default 0.0, black in pixel space) or a tensor of shape
        (), (C, 1, 1), (1, C, 1, 1), (C, H, W), (1, C, H, W) or (N, C, H, W); other shapes are
        refused. For a workbench Model it must lie in [0, 1].
    progress
        Show a progress bar over chunks.

    Returns
    -------
    torch.Tensor
        (N, H, W) float32 signed maps, or (N, C, H, W) with ``reduce="none"``.
    """
    check_reduce(reduce)
    steps = check_int(steps, "steps")
    forward, x, y = prepare(model, x, y)
    base = check_baseline(baseline, x, pixel_range=isinstance(model, Model))
    alphas, weights = (t.to(device=x.device, dtype=x.dtype) for t in gauss_legendre(steps))
    delta = x - base
    total = torch.zeros_like(x)
    for step, img in _flat_chunks(steps, len(x), batch_size, progress, "integrated gradients"):
        step, img = step.to(x.device), img.to(x.device)
        a = alphas[step].view(-1, 1, 1, 1)
        grads = score_gradients(forward, base[img] + a * delta[img], y[img])
        total.index_add_(0, img, grads * weights[step].view(-1, 1, 1, 1))
    return _finish(delta * total, reduce)


# -- SmoothGrad, VarGrad, SquareGrad ----------------------------------------------------------------
def _noisy_gradient_moments(
    model: AnyModel,
    x: torch.Tensor,
    y: torch.Tensor | int,
    reduce: str,
    batch_size: int,
    n_samples: int,
    noise: float,
    seed: int | torch.Generator | None,
    progress: bool,
    name: str,
    min_samples: int = 1,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Per-image (mean gradient, unbiased gradient variance, mean squared gradient, n) over noise.

    The noise std of image i is ``noise * (max(x_i) - min(x_i))``. Moments are accumulated around
    the first sample's gradient (a shifted-data estimate), so a constant gradient gives a variance of
    exactly 0 and there is no cancellation when the spread is small.
    """
    check_reduce(reduce)
    n_samples = check_int(n_samples, "n_samples", min_samples)
    noise = float(noise)
    if not noise >= 0 or noise == float("inf"):
        raise ValueError(f"noise: expected a finite std >= 0 (a fraction of the input range), got {noise}")
    forward, x, y = prepare(model, x, y)
    n = len(x)
    sigma = noise * (x.amax(dim=(1, 2, 3)) - x.amin(dim=(1, 2, 3)))
    gen = make_generator(seed, x.device)
    shift = torch.zeros_like(x)
    sum_d, sum_d2, sum_g2 = torch.zeros_like(x), torch.zeros_like(x), torch.zeros_like(x)
    for sample, img in _flat_chunks(n_samples, n, batch_size, progress, name):
        sample, img = sample.to(x.device), img.to(x.device)
        eps = torch.randn((len(img), *x.shape[1:]), generator=gen, device=x.device, dtype=x.dtype)
        grads = score_gradients(forward, x[img] + sigma[img].view(-1, 1, 1, 1) * eps, y[img])
        first = sample == 0  # rows of sample 0 come first in the flat order: set the shift now
        if bool(first.any()):
            shift[img[first]] = grads[first]
        d = grads - shift[img]
        sum_d.index_add_(0, img, d)
        sum_d2.index_add_(0, img, d * d)
        sum_g2.index_add_(0, img, grads * grads)
    mean = shift + sum_d / n_samples
    if n_samples > 1:
        var = ((sum_d2 - sum_d * sum_d / n_samples) / (n_samples - 1)).clamp_min(0)
    else:
        var = torch.zeros_like(x)
    return mean, var, sum_g2 / n_samples, n_samples


_NOISE_DOC = """
    model, x, y
        As in :func:`saliency`.
    reduce
        Channel reduction of the per-channel statistic: "max_abs" (default, the saliency
        convention; Xplique defaults to "mean"), "sum", "mean" or "none" for (N, C, H, W).
    batch_size
        Noisy inputs per forward/backward pass (the ``n_samples * N`` inputs are flattened and
        chunked).
    n_samples
        Noisy copies per image (default 50, as in Xplique).
    noise
        Noise std as a fraction of each image's value range ``max(x_i) - min(x_i)`` (default 0.2,
        the paper's "noise level" sigma / (x_max - x_min); Xplique's 0.2 is an absolute std, the same
        for images spanning [0, 1]). Noisy inputs are not clipped. A constant image gets no noise.
    seed
        Seed (or ``torch.Generator``) of the Gaussian noise, drawn on the model's device: the same
        seed and ``batch_size`` give the same result.
    progress
        Show a progress bar over chunks.
"""


def _doc(fn: Callable) -> Callable:
    fn.__doc__ = fn.__doc__.replace("    {params}\n", _NOISE_DOC.lstrip("\n"))
    return fn


@register(
    "smoothgrad",
    paper="Smilkov et al., SmoothGrad: removing noise by adding noise, 2017",
)
@_doc
def smoothgrad(
    model: AnyModel,
    x: torch.Tensor,
    y: torch.Tensor | int,
    *,
    reduce: Reduce = "max_abs",
    batch_size: int = 64,
    n_samples: int = 50,
    noise: float = 0.2,
    seed: int | torch.Generator | None = 0,
    progress: bool = False,
) -> torch.Tensor:
    """SmoothGrad: the mean *signed* gradient over Gaussian-noised copies of the input.

    Smilkov, Thorat, Kim, Viegas & Wattenberg, "SmoothGrad: removing noise by adding noise", 2017
    (arXiv:1706.03825). ``E_eps[grad f_y(x + eps)]``, eps ~ N(0, sigma^2). With ``reduce="none"``
    the map of a linear model ``<w, x>`` is exactly ``w``.

    Parameters
    ----------
    {params}

    Returns
    -------
    torch.Tensor
        (N, H, W) float32 maps, or (N, C, H, W) signed mean gradients with ``reduce="none"``.
    """
    mean, _, _, _ = _noisy_gradient_moments(
        model, x, y, reduce, batch_size, n_samples, noise, seed, progress, "smoothgrad"
    )
    return _finish(mean, reduce)


@register(
    "vargrad",
    paper="Adebayo et al., Sanity Checks for Saliency Maps, NeurIPS 2018",
)
@_doc
def vargrad(
    model: AnyModel,
    x: torch.Tensor,
    y: torch.Tensor | int,
    *,
    reduce: Reduce = "max_abs",
    batch_size: int = 64,
    n_samples: int = 50,
    noise: float = 0.2,
    seed: int | torch.Generator | None = 0,
    progress: bool = False,
) -> torch.Tensor:
    """VarGrad: the variance of the gradient over Gaussian-noised copies of the input.

    Adebayo, Gilmer, Goodfellow & Kim, "Local Explanation Methods for Deep Neural Networks Lack
    Sensitivity to Parameter Values", ICLR Workshop 2018. The unbiased variance (divisor
    ``n_samples - 1``, as Xplique), so ``n_samples >= 2``; 0 everywhere for a linear model.

    Parameters
    ----------
    {params}

    Returns
    -------
    torch.Tensor
        (N, H, W) float32 non-negative maps, or (N, C, H, W) with ``reduce="none"``.
    """
    _, var, _, _ = _noisy_gradient_moments(
        model, x, y, reduce, batch_size, n_samples, noise, seed, progress, "vargrad", min_samples=2
    )
    return _finish(var, reduce)


@register(
    "squaregrad",
    paper="Hooker et al., A Benchmark for Interpretability Methods in Deep Neural Networks, NeurIPS 2019",
)
@_doc
def squaregrad(
    model: AnyModel,
    x: torch.Tensor,
    y: torch.Tensor | int,
    *,
    reduce: Reduce = "max_abs",
    batch_size: int = 64,
    n_samples: int = 50,
    noise: float = 0.2,
    seed: int | torch.Generator | None = 0,
    progress: bool = False,
) -> torch.Tensor:
    """SquareGrad: the mean squared gradient over Gaussian-noised copies of the input.

    Hooker, Erhan, Kindermans & Kim, "A Benchmark for Interpretability Methods in Deep Neural
    Networks", NeurIPS 2019 (SmoothGrad-SQ). ``E_eps[(grad f_y(x + eps))^2]``; ``w ** 2`` for a
    linear model.

    Parameters
    ----------
    {params}

    Returns
    -------
    torch.Tensor
        (N, H, W) float32 non-negative maps, or (N, C, H, W) with ``reduce="none"``.
    """
    _, _, sq, _ = _noisy_gradient_moments(
        model, x, y, reduce, batch_size, n_samples, noise, seed, progress, "squaregrad"
    )
    return _finish(sq, reduce)
