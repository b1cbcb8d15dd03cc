"""FORGrad: low-pass filter attribution maps in the Fourier domain, and pick the cutoff by fidelity.

Muzellec, Andeol, Fel, VanRullen & Serre, "Saliency strikes back: How filtering out high frequencies
improves white-box explanations", 2023 (arXiv:2307.09591; first titled "Gradient strikes back").

- :func:`forgrad` filters maps: ``|map| -> FFT -> keep frequencies of radius <= sigma -> inverse FFT
  -> |.|``, the pipeline of the paper and of Xplique's ``forgrad``. It does not compute maps, so it is
  not a registered method: apply it to the output of any method.
- :func:`forgrad_sigma` is the part no library ships: the paper picks sigma per architecture and per
  method by maximizing fidelity on validation images. Here fidelity is the deletion AUC (lower is
  better); the maps are computed once, filtered with every sigma of a grid and scored.
- :func:`deletion_score` is the deletion metric (Petsiuk, Das & Saenko, "RISE", BMVC 2018). It lives
  here **temporarily**: the attribution issue allows this in-module deletion so that FORGrad can be
  tuned now; the metrics package will own the single implementation (it moves to
  ``workbench/metrics`` with the same signature, and this module will then import it from there).

Frequency-radius convention
---------------------------
An (H, W) map has the DFT frequencies ``k_y`` in ``{-floor(H/2), ..., ceil(H/2) - 1}`` and ``k_x``
in ``{-floor(W/2), ..., ceil(W/2) - 1}``, in **cycles per image** along each axis (integer
frequency-index units, as ``torch.fft.fftfreq(n) * n``). The radius of a frequency is
``r = sqrt(k_y**2 + k_x**2)``, its distance to the centre (DC) of the centred spectrum. The ideal
low-pass keeps ``r <= sigma`` and zeroes the rest: the mask of Xplique (``dist_from_center <=
sigma`` on the ``fftshift``-ed grid), so ``sigma=15`` at 224 px matches Xplique's default. The
largest radius on the grid, ``sqrt(floor(H/2)**2 + floor(W/2)**2)``, is called the Nyquist radius
here; a sigma at or above it keeps every frequency, so the result is ``|map|`` exactly. For
non-square maps sigma is in cycles per image along each axis (the same sigma is a finer cutoff, in
cycles per pixel, along the longer side). To keep the same relative cutoff across image sizes, scale
sigma with the side: about ``15 / 224`` of it.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from workbench._core.batching import iter_batches
from workbench.attribution._base import Forward, batched_scores, prepare
from workbench.attribution.gradients import check_baseline
from workbench.attribution.registry import get_method
from workbench.models.model import Model

__all__ = ["ForgradSigma", "default_sigmas", "deletion_score", "forgrad", "forgrad_sigma", "nyquist_radius"]

Window = Literal["ideal", "gaussian"]
WINDOWS = ("ideal", "gaussian")


# -- the filter -------------------------------------------------------------------------------------
def nyquist_radius(size: tuple[int, int]) -> float:
    """The largest frequency radius on an (H, W) grid: ``sqrt(floor(H/2)**2 + floor(W/2)**2)``."""
    h, w = size
    return math.hypot(h // 2, w // 2)


def _radius(h: int, w: int, device: torch.device) -> torch.Tensor:
    """Frequency radius (H, W // 2 + 1) of the half spectrum of ``rfft2``, in cycles per image."""
    ky = torch.fft.fftfreq(h, d=1.0 / h, device=device, dtype=torch.float64)
    kx = torch.fft.rfftfreq(w, d=1.0 / w, device=device, dtype=torch.float64)
    return torch.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)


def _check_sigma(sigma: float) -> float:
    if isinstance(sigma, torch.Tensor) and sigma.numel() == 1:
        sigma = sigma.item()
    if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real):
        raise ValueError(f"sigma: expected a positive number (cycles per image), got {sigma!r}")
    sigma = float(sigma)
    if not sigma > 0:  # also catches NaN
        raise ValueError(
            f"sigma: expected a cutoff > 0 in cycles per image (0 would remove every frequency), got {sigma}"
        )
    return sigma


def forgrad(maps: torch.Tensor, sigma: float, *, window: Window = "ideal") -> torch.Tensor:
    """Low-pass filter attribution maps in the Fourier domain (FORGrad).

    ``|map| -> rfft2 -> multiply by the window -> irfft2 -> |.|``, batched over every leading
    dimension. FORGrad filters the **magnitude** of the map, as the paper and Xplique do: the sign of a
    signed map is dropped first. The final ``|.|`` follows Xplique too; the inverse transform of the
    Hermitian half spectrum is real, and ``|.|`` only flips the small negative ripples (Gibbs ringing)
    an ideal low-pass leaves next to sharp peaks.

    Parameters
    ----------
    maps
        (N, H, W) or (N, C, H, W) real maps. With channels, every channel is filtered on its own
        (Xplique averages the channels first: reduce the channels before calling for that).
    sigma
        Cutoff radius in cycles per image (see the module docstring for the exact convention), > 0.
        About 15 at 224 px (Xplique's default), so about ``15 * H / 224`` at other sizes;
        :func:`forgrad_sigma` tunes it on validation images. With the ideal window, a sigma at or
        above :func:`nyquist_radius` keeps every frequency and returns ``|maps|`` exactly.
    window
        "ideal" (default): the hard mask ``r <= sigma`` of the paper and Xplique. "gaussian": the
        smooth window ``exp(-r**2 / (2 sigma**2))`` (sigma is then its standard deviation in cycles
        per image; no ringing, but it never becomes the identity).

    Returns
    -------
    torch.Tensor
        Non-negative filtered maps of the same shape, dtype and device (half precision is computed in
        float32 and cast back).
    """
    sigma = _check_sigma(sigma)
    if window not in WINDOWS:
        raise ValueError(f"window: expected one of {WINDOWS}, got {window!r}")
    if not isinstance(maps, torch.Tensor) or maps.ndim not in (3, 4):
        shape = tuple(maps.shape) if isinstance(maps, torch.Tensor) else type(maps).__name__
        raise ValueError(f"maps: expected a tensor (N, H, W) or (N, C, H, W), got {shape}")
    if not maps.is_floating_point():
        raise ValueError(f"maps: expected a real floating-point tensor, got dtype {maps.dtype}")
    if not bool(torch.isfinite(maps).all()):
        raise ValueError("maps: contains NaN or infinite values (the FFT would spread them everywhere)")
    h, w = maps.shape[-2:]
    magnitude = maps.abs()
    if window == "ideal" and sigma >= nyquist_radius((h, w)):
        return magnitude  # every frequency is kept: the filter is the identity on |map|
    work = magnitude if maps.dtype in (torch.float32, torch.float64) else magnitude.float()
    radius = _radius(h, w, maps.device)
    if window == "ideal":
        gain = (radius <= sigma).to(work.dtype)
    else:
        gain = torch.exp(-(radius**2) / (2.0 * sigma**2)).to(work.dtype)
    spectrum = torch.fft.rfft2(work, s=(h, w))
    filtered = torch.fft.irfft2(spectrum * gain, s=(h, w))
    return filtered.abs().to(maps.dtype)


# -- deletion (temporary: moves to workbench/metrics) ------------------------------------------------
def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
    return value


def _check_maps(maps: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Maps (N, H, W) or (N, C, H, W) matching x, as (N, H, W) float (channels averaged)."""
    n, _, h, w = x.shape
    if not isinstance(maps, torch.Tensor) or maps.ndim not in (3, 4):
        shape = tuple(maps.shape) if isinstance(maps, torch.Tensor) else type(maps).__name__
        raise ValueError(f"maps: expected a tensor (N, H, W) or (N, C, H, W), got {shape}")
    if maps.shape[0] != n or tuple(maps.shape[-2:]) != (h, w):
        raise ValueError(
            f"maps: expected {n} maps of size ({h}, {w}) to match x of shape {tuple(x.shape)}, got shape"
            f" {tuple(maps.shape)} (upsample grid maps to the image size first)"
        )
    maps = maps.detach().to(device=x.device, dtype=torch.float32)
    if maps.ndim == 4:
        maps = maps.mean(1)
    if not bool(torch.isfinite(maps).all()):
        raise ValueError("maps: contains NaN or infinite values, so the pixel ranking is undefined")
    return maps


def _probabilities(forward: Forward) -> Forward:
    return lambda b: torch.softmax(forward(b).float(), dim=1)


@torch.no_grad()
def deletion_score(
    model: Model | nn.Module | Forward,
    x: torch.Tensor,
    y: torch.Tensor | int,
    maps: torch.Tensor,
    *,
    steps: int = 10,
    baseline: float | torch.Tensor = 0.0,
    max_fraction: float = 1.0,
    batch_size: int = 64,
) -> torch.Tensor:
    """Deletion AUC per image (Petsiuk et al. 2018): remove the most important pixels first.

    Pixels are ranked by the map (channels averaged for (N, C, H, W) maps; ties broken by row-major
    pixel index, so a constant map deletes from the top row). At step ``i = 0..steps`` the first
    ``floor(i * m / steps)`` pixels of the ranking, ``m = round(max_fraction * H * W)``, are set to
    the baseline on **all channels** at once, and the score read is the **softmax probability** of
    class ``y`` (not the logit: probabilities are bounded, so AUCs compare across images). The AUC is
    the trapezoid rule over the ``steps + 1`` points with the x axis normalised to [0, 1] (x = i /
    steps, whatever ``max_fraction``), so it lies in [0, 1]. **Lower is better**: a faithful map
    makes the probability fall fast.

    Parameters
    ----------
    model
        A workbench Model (pixel-space input), an ``nn.Module`` or a callable (N, C, H, W) -> (N, K)
        logits; the softmax is taken here.
    x
        Images (N, C, H, W); in [0, 1] for a workbench Model. Never modified.
    y
        Target classes (N,) or one int for all images.
    maps
        (N, H, W) or (N, C, H, W) attribution maps at the image size; higher means more important.
        Signed maps are ranked by value (not magnitude): pass ``maps.abs()`` to rank by magnitude.
    steps
        Number of equal chunks (default 10, as Xplique); ``steps + 1`` points per curve.
    baseline
        The value of a removed pixel: a number (default 0.0, black in pixel space) or a tensor of
        shape (), (C, 1, 1), (1, C, 1, 1), (C, H, W), (1, C, H, W) or (N, C, H, W); in [0, 1] for a
        workbench Model.
    max_fraction
        Fraction of the pixels removed at the last step, in (0, 1] (default 1: the whole image).
    batch_size
        Perturbed images per forward pass. The ``N * (steps + 1)`` perturbed images are built lazily,
        one batch at a time on the model's device (a batch mixes images and steps).

    Returns
    -------
    torch.Tensor
        (N,) float32 AUCs in [0, 1], on the model's device.
    """
    steps = _positive_int(steps, "steps")
    batch_size = _positive_int(batch_size, "batch_size")
    if (
        isinstance(max_fraction, bool)
        or not isinstance(max_fraction, int | float)
        or not 0 < max_fraction <= 1
    ):
        raise ValueError(f"max_fraction: expected a fraction in (0, 1], got {max_fraction!r}")
    forward, x, y = prepare(model, x, y)
    maps = _check_maps(maps, x)
    base = check_baseline(baseline, x, pixel_range=isinstance(model, Model))
    n, _, h, w = x.shape
    n_pixels = h * w
    removed_total = round(max_fraction * n_pixels)
    counts = torch.arange(steps + 1, device=x.device) * removed_total // steps  # pixels removed per step
    order = torch.argsort(maps.flatten(1), dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)  # rank[i, p]: position of pixel p in image i's ranking
    rank.scatter_(1, order, torch.arange(n_pixels, device=x.device).expand(n, -1))
    prob = _probabilities(forward)
    points = steps + 1
    scores = torch.empty(n * points, device=x.device)
    for sl in iter_batches(n * points, batch_size):
        k = torch.arange(sl.start, sl.stop, device=x.device)
        img, step = k // points, k % points
        removed = (rank[img] < counts[step][:, None]).view(-1, 1, h, w)
        inputs = torch.where(removed, base[img], x[img])
        scores[sl] = batched_scores(prob, inputs, y[img], batch_size)
    curves = scores.view(n, points)
    return ((curves[:, :-1] + curves[:, 1:]).sum(1) / (2 * steps)).float()


# -- choosing sigma ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ForgradSigma:
    """The result of :func:`forgrad_sigma`.

    Attributes
    ----------
    sigma : float
        The sigma of the grid with the lowest mean deletion AUC (ties: the smallest sigma).
    sigmas : tuple[float, ...]
        The grid, in increasing order.
    scores : tuple[float, ...]
        Mean deletion AUC over the validation images for each sigma (lower is better).
    unfiltered_score : float
        Mean deletion AUC of the raw maps (no filter, not even ``|.|``), for comparison.
    """

    sigma: float
    sigmas: tuple[float, ...]
    scores: tuple[float, ...]
    unfiltered_score: float

    @property
    def best_score(self) -> float:
        """Mean deletion AUC at the chosen sigma."""
        return self.scores[self.sigmas.index(self.sigma)]

    @property
    def improves(self) -> bool:
        """Whether the filtered maps beat the raw maps (a strictly lower deletion AUC)."""
        return self.best_score < self.unfiltered_score


def default_sigmas(size: tuple[int, int], n: int = 8) -> tuple[float, ...]:
    """A geometric grid of ``n`` cutoffs from 1 to ``min(H, W) / 2`` cycles per image.

    At 64 px: 1, 1.6, 2.7, 4.4, 7.2, 11.9, 19.5, 32. Low cutoffs are dense, where the map changes
    most; ``min(H, W) / 2`` is the axis Nyquist frequency (only the diagonal corners are cut there).
    """
    top = min(size) / 2
    if top <= 1:
        return (1.0,)
    return tuple(round(top ** (i / (n - 1)), 4) for i in range(n))


def _accepts(fn: Callable, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def forgrad_sigma(
    model: Model | nn.Module | Forward,
    method: str | Callable[..., torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor | int,
    *,
    sigmas: Sequence[float] | None = None,
    metric: str = "deletion",
    batch_size: int = 64,
    window: Window = "ideal",
    metric_params: dict | None = None,
    **method_params,
) -> ForgradSigma:
    """Choose the FORGrad cutoff of a method on validation images by deletion fidelity (the paper's
    procedure: sigma per architecture and method, maximizing fidelity).

    The maps are computed **once** (``method(model, x, y, **method_params)``), filtered with every
    sigma of the grid by :func:`forgrad`, and each filtered set is scored by :func:`deletion_score`;
    the sigma with the lowest mean AUC over the images wins. Cost: one run of the method plus
    ``(len(sigmas) + 1) * N * (steps + 1)`` forward passes, ``batch_size`` at a time.

    Parameters
    ----------
    model
        A workbench Model, an ``nn.Module`` or a callable (N, C, H, W) -> (N, K).
    method
        A registered method name (see :func:`~workbench.attribution.list_methods`) or a callable
        ``fn(model, x, y, **params) -> (N, H, W)`` maps (or (N, C, H, W)).
    x, y
        Validation images (N, C, H, W) and their target classes (N,) or one int.
    sigmas
        The cutoffs to try, in cycles per image (see :func:`forgrad`); default
        :func:`default_sigmas` of the image size (8 values, geometric from 1 to ``min(H, W) / 2``).
    metric
        Only "deletion" for now (lower is better).
    batch_size
        Forward passes of the metric; also passed to the method when it accepts ``batch_size`` and
        ``method_params`` does not set it.
    window
        The filter window, as in :func:`forgrad`.
    metric_params
        Extra keywords of :func:`deletion_score` (``steps``, ``baseline``, ``max_fraction``); a dict so
        they never clash with the method's own parameters (integrated gradients has ``steps`` too).
    **method_params
        Parameters of the method.

    Returns
    -------
    ForgradSigma
        The chosen sigma, the grid, the mean score per sigma and the score of the raw maps.
    """
    if metric != "deletion":
        raise ValueError(f"metric: only 'deletion' is implemented, got {metric!r}")
    if window not in WINDOWS:
        raise ValueError(f"window: expected one of {WINDOWS}, got {window!r}")
    fn = get_method(method) if isinstance(method, str) else method
    if not callable(fn):
        raise ValueError(f"method: expected a registered name or a callable, got {type(method).__name__}")
    if sigmas is None:
        grid = default_sigmas(tuple(x.shape[-2:]))
    else:
        grid = tuple(sorted({_check_sigma(s) for s in sigmas}))
        if not grid:
            raise ValueError("sigmas: expected at least one cutoff")
    metric_params = dict(metric_params or {})
    unknown = set(metric_params) - {"steps", "baseline", "max_fraction"}
    if unknown:
        raise TypeError(
            f"metric_params: unknown keys {sorted(unknown)}; valid: steps, baseline, max_fraction"
        )
    if "batch_size" not in method_params and _accepts(fn, "batch_size"):
        method_params["batch_size"] = batch_size

    maps = fn(model, x, y, **method_params)
    if maps.shape[0] != x.shape[0] or tuple(maps.shape[-2:]) != tuple(x.shape[-2:]):
        raise ValueError(
            f"method returned maps of shape {tuple(maps.shape)}; expected {x.shape[0]} maps of size"
            f" {tuple(x.shape[-2:])}"
        )
    maps = maps.detach()

    def score(m: torch.Tensor) -> float:
        return float(deletion_score(model, x, y, m, batch_size=batch_size, **metric_params).mean())

    unfiltered = score(maps)
    scores = tuple(score(forgrad(maps, s, window=window)) for s in grid)
    best = min(range(len(grid)), key=lambda i: (scores[i], grid[i]))
    return ForgradSigma(sigma=grid[best], sigmas=grid, scores=scores, unfiltered_score=unfiltered)
