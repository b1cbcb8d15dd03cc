"""FORGrad: low-pass filter attribution maps in the Fourier domain, and pick the cutoff by fidelity.

Muzellec, Andeol, Fel, VanRullen & Serre, "Saliency strikes back: How filtering out high frequencies
improves white-box explanations", 2023 (arXiv:2307.09591; first titled "Gradient strikes back").

- :func:`forgrad` filters maps: ``|map| -> FFT -> keep frequencies of radius <= sigma -> inverse FFT
  -> |.|``, the pipeline of the paper and of Xplique's ``forgrad``. It does not compute maps, so it is
  not a registered method: apply it to the output of any method.
- :func:`forgrad_sigma` is the part no library ships: the paper picks sigma per architecture and per
  method by maximizing fidelity on validation images. Here fidelity is the insertion AUC (default,
  higher is better) or the deletion AUC (lower is better) of :mod:`workbench.metrics`; the maps are
  computed once, filtered with every sigma of a grid and scored.

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

import numpy as np
import torch
from torch import nn

from workbench.attribution._base import Forward
from workbench.attribution.registry import get_method
from workbench.models.model import Model

__all__ = ["ForgradSigma", "default_sigmas", "forgrad", "forgrad_sigma", "nyquist_radius"]

# fidelity metric -> whether higher is better
METRICS = {"insertion": True, "deletion": False}

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
    if isinstance(maps, np.ndarray):
        maps = torch.from_numpy(maps)
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


# -- choosing sigma ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ForgradSigma:
    """The result of :func:`forgrad_sigma`.

    Attributes
    ----------
    sigma : float
        The sigma of the grid with the best mean score (ties: the smallest sigma).
    sigmas : tuple[float, ...]
        The grid, in increasing order.
    scores : tuple[float, ...]
        Mean AUC of the metric over the validation images for each sigma.
    unfiltered_score : float
        Mean AUC of the unfiltered ``|maps|``, for comparison: FORGrad filters ``|map|``, so this is
        the like-for-like baseline (the signed map would rank negative evidence last, and a filter would
        then "improve" it by dropping the sign alone).
    metric : str
        "insertion" (higher is better) or "deletion" (lower is better).
    """

    sigma: float
    sigmas: tuple[float, ...]
    scores: tuple[float, ...]
    unfiltered_score: float
    metric: str = "insertion"

    @property
    def higher_is_better(self) -> bool:
        return METRICS[self.metric]

    @property
    def best_score(self) -> float:
        """Mean AUC at the chosen sigma."""
        return self.scores[self.sigmas.index(self.sigma)]

    @property
    def improves(self) -> bool:
        """Whether the filtered ``|maps|`` strictly beat the unfiltered ``|maps|`` on the metric."""
        if self.higher_is_better:
            return self.best_score > self.unfiltered_score
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
    metric: str = "insertion",
    batch_size: int = 64,
    window: Window = "ideal",
    metric_params: dict | None = None,
    **method_params,
) -> ForgradSigma:
    """Choose the FORGrad cutoff of a method on validation images by fidelity (the paper's procedure:
    sigma per architecture and method, maximizing fidelity).

    The maps are computed **once** (``method(model, x, y, **method_params)``), filtered with every
    sigma of the grid by :func:`forgrad`, and each filtered set is scored by
    :func:`workbench.metrics.insertion` (default: the highest mean AUC wins) or
    :func:`workbench.metrics.deletion` (the lowest wins).

    Insertion is the default because deletion with a constant baseline rewards *scattered*
    high-frequency rankings: blacking out isolated pixels all over an object destroys a small CNN's
    evidence faster than removing the object region by region, so deletion tends to prefer the raw
    gradient over any low-pass version of it (measured on the zoo CNNs, see notebook
    ``12_forgrad``). Insertion asks the opposite question (which pixels *restore* the score), which
    a scattered ranking cannot game. Cost: one run of the method plus
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
        "insertion" (default, higher is better) or "deletion" (lower is better).
    batch_size
        Forward passes of the metric; also passed to the method when it accepts ``batch_size`` and
        ``method_params`` does not set it.
    window
        The filter window, as in :func:`forgrad`.
    metric_params
        Extra keywords of the metric (``steps``, ``baseline``, ``max_fraction``, ``score``); a dict so
        they never clash with the method's own parameters (integrated gradients has ``steps`` too).
    **method_params
        Parameters of the method.

    Returns
    -------
    ForgradSigma
        The chosen sigma, the grid, the mean score per sigma and the score of the unfiltered ``|maps|``.
    """
    if metric not in METRICS:
        raise ValueError(f"metric: expected one of {sorted(METRICS)}, got {metric!r}")
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
    unknown = set(metric_params) - {"steps", "baseline", "max_fraction", "score"}
    if unknown:
        raise TypeError(
            f"metric_params: unknown keys {sorted(unknown)}; valid: steps, baseline, max_fraction, score"
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

    from workbench.metrics import causal_fidelity  # the metrics package imports attribution helpers

    walk = getattr(causal_fidelity, metric)
    sign = -1.0 if METRICS[metric] else 1.0  # minimise sign * score

    def score(m: torch.Tensor) -> float:
        return float(walk(model, x, y, m, batch_size=batch_size, **metric_params).auc.mean())

    unfiltered = score(maps.abs())  # like with like: forgrad filters |map|
    scores = tuple(score(forgrad(maps, s, window=window)) for s in grid)
    best = min(range(len(grid)), key=lambda i: (sign * scores[i], grid[i]))
    return ForgradSigma(
        sigma=grid[best], sigmas=grid, scores=scores, unfiltered_score=unfiltered, metric=metric
    )
