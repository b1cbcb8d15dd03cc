"""Sobol attribution: total Sobol indices of grid cells under random masks.

Fel, Cadène, Chalvidal, Cord, Vigouroux & Serre, *Look at the Variance! Efficient Black-box Explanations
with Sobol-based Sensitivity Analysis*, NeurIPS 2021 (arXiv:2111.04138).

The image is cut into a ``grid_size x grid_size`` grid of ``d`` cells. Each cell ``i`` gets a random
intensity ``M_i`` in [0, 1]; the mask is upsampled **nearest** to the image and applied by a
perturbation (``x * M`` by default). The total Sobol index of cell ``i``,

    ST_i = E_{M_~i}[ Var_{M_i}( f(M) | M_~i ) ] / Var(f(M)),

is the share of the score's variance that involves cell ``i``, alone or through interactions of any
order. It is estimated with the pick-freeze design of Saltelli: two quasi-Monte Carlo matrices ``A`` and
``B`` of ``N`` rows (``nb_design``) and ``d`` matrices ``C_i`` (``A`` with column ``i`` taken from
``B``), so ``N (d + 2)`` forward passes per image (2,112 at the defaults: grid 8, N = 32; the paper's
PyTorch code used N = 64, 4,224 passes). The grid of indices is resized to the image **bicubically**.

The three ingredients are swappable, as in Xplique: a sampler (:mod:`workbench.attribution.sampling` or
a callable), an estimator (:data:`ESTIMATORS` or a callable) and a perturbation (:data:`PERTURBATIONS`
or a callable). The building blocks (:func:`sobol_design`, :func:`design_masks`, :func:`split_scores`,
:func:`total_indices`) also serve other variance-based methods (e.g. concept importance in CRAFT).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from workbench.attribution._base import Forward, finite_maps, prepare, upsample_grid
from workbench.attribution.perturbations import (
    Perturbation,
    check_grid,
    masked_scores,
    resolve_perturbation,
)
from workbench.attribution.registry import register
from workbench.attribution.sampling import SamplerFn, resolve_sampler, sample
from workbench.models.model import Model

Estimator = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

# ----------------------------------------------------------------------------------------------------------
# Design
# ----------------------------------------------------------------------------------------------------------


def sobol_design(
    sampler: str | SamplerFn = "sobol",
    nb_design: int = 32,
    d: int = 64,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The pick-freeze design of Saltelli (2002): matrices ``A``, ``B`` and ``C``.

    One ``2d``-dimensional design of ``nb_design`` points is drawn; ``A`` is its first ``d`` columns,
    ``B`` its last ``d``. ``C[i]`` is ``A`` with column ``i`` replaced by column ``i`` of ``B``.

    Parameters
    ----------
    sampler
        A sampler name (``"sobol"``, scrambled, the default; ``"sobol_unscrambled"``, ``"halton"``,
        ``"lhs"``, ``"uniform"``) or ``fn(n, d, seed) -> (n, d)`` in [0, 1].
    nb_design
        ``N``, the number of rows of ``A`` and ``B`` (a power of 2 for the Sobol samplers).
    d
        The number of variables (grid cells).
    seed
        Seeds the sampler.
    device
        Where the matrices are returned.

    Returns
    -------
    A, B : torch.Tensor
        (N, d) float32 designs in [0, 1].
    C : torch.Tensor
        (d, N, d): ``C[i] = A`` with ``C[i][:, i] = B[:, i]``.
    """
    check_nb_design(nb_design)
    points = sample(sampler, int(nb_design), 2 * int(d), seed=seed, device=device)
    A, B = points[:, :d].contiguous(), points[:, d:].contiguous()
    C = A.unsqueeze(0).repeat(d, 1, 1)
    idx = torch.arange(d, device=A.device)
    C[idx, :, idx] = B.T
    return A, B, C


def check_nb_design(nb_design: int) -> int:
    """Validate a design size: an integer >= 2 (a variance needs two points)."""
    if isinstance(nb_design, bool) or not isinstance(nb_design, int) or nb_design < 2:
        raise ValueError(f"nb_design: expected an integer >= 2, got {nb_design!r}")
    return nb_design


def design_masks(A: torch.Tensor, B: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """The rows to evaluate, in order ``[A; B; C_1; ...; C_d]``: (N (d + 2), d)."""
    return torch.cat([A, B, C.reshape(-1, C.shape[-1])], dim=0)


def split_scores(f: torch.Tensor, nb_design: int, d: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split the scores of :func:`design_masks` rows into ``f_A`` (N,), ``f_B`` (N,), ``f_C`` (d, N)."""
    n = int(nb_design)
    if f.shape != (n * (d + 2),):
        raise ValueError(
            f"split_scores: expected {n * (d + 2)} scores (N (d + 2)), got shape {tuple(f.shape)}"
        )
    return f[:n], f[n : 2 * n], f[2 * n :].reshape(d, n)


# ----------------------------------------------------------------------------------------------------------
# Estimators of the total index: fn(f_A (N,), f_B (N,), f_C (d, N)) -> (d,)
# ----------------------------------------------------------------------------------------------------------


def _nonzero(den: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Where a variance-like denominator is not numerically zero (relative to the scores' square size)."""
    return den.abs() > 1e-12 * scale + 1e-300


def _ratio(num: torch.Tensor, den: torch.Tensor, scale: torch.Tensor, empty: float = 0.0) -> torch.Tensor:
    """``num / den``, and ``empty`` where ``den`` is numerically zero (a constant score: Var f = 0)."""
    ok = _nonzero(den, scale)
    return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), empty)


def _prep(f_A, f_B, f_C):
    f_A, f_B, f_C = (t.to(torch.float64) for t in (f_A, f_B, f_C))
    pooled = torch.cat([f_A, f_B])
    var = pooled.var(unbiased=True)
    scale = (pooled**2).mean()  # the square magnitude of the scores, for the zero-variance test
    return f_A, f_B, f_C, var, scale


def jansen_estimator(f_A: torch.Tensor, f_B: torch.Tensor, f_C: torch.Tensor) -> torch.Tensor:
    """Jansen (1999): ``ST_i = mean_n (f(A_n) - f(C_i,n))^2 / (2 V)``.

    ``V`` is the unbiased variance of the ``2N`` scores of ``A`` and ``B`` pooled. Non-negative; the
    estimator recommended by Saltelli et al. (2010) and the paper's default.
    """
    f_A, f_B, f_C, var, scale = _prep(f_A, f_B, f_C)
    return _ratio(((f_A - f_C) ** 2).mean(1), 2.0 * var, scale)


def saltelli_estimator(f_A: torch.Tensor, f_B: torch.Tensor, f_C: torch.Tensor) -> torch.Tensor:
    """Sobol (2007), Saltelli et al. (2010) Table 2 (f): ``ST_i = mean_n f(A_n) (f(A_n) - f(C_i,n)) / V``."""
    f_A, f_B, f_C, var, scale = _prep(f_A, f_B, f_C)
    return _ratio((f_A * (f_A - f_C)).mean(1), var, scale)


def homma_estimator(f_A: torch.Tensor, f_B: torch.Tensor, f_C: torch.Tensor) -> torch.Tensor:
    """Homma & Saltelli (1996): ``ST_i = (V - mean_n f(A_n) f(C_i,n) + f0^2) / V``, ``f0 = mean f(A)``."""
    f_A, f_B, f_C, var, scale = _prep(f_A, f_B, f_C)
    f0 = f_A.mean()
    return _ratio(var - (f_A * f_C).mean(1) + f0**2, var, scale)


def janon_estimator(f_A: torch.Tensor, f_B: torch.Tensor, f_C: torch.Tensor) -> torch.Tensor:
    """Janon et al. (2014): ``ST_i = 1 - (mean(f_A f_Ci) - m_i^2) / (mean((f_A^2 + f_Ci^2) / 2) - m_i^2)``.

    ``m_i = mean((f_A + f_Ci) / 2)``: mean and variance are estimated from both samples of each pair
    (asymptotically efficient). ``f(A)`` and ``f(C_i)`` share every variable but ``i``, so the ratio
    estimates the closed index of the complement of ``i``, ``1 - ST_i``.
    """
    f_A, f_B, f_C, _, scale = _prep(f_A, f_B, f_C)
    m = ((f_A + f_C) / 2).mean(1)
    den = ((f_A**2 + f_C**2) / 2).mean(1) - m**2
    return 1.0 - _ratio((f_A * f_C).mean(1) - m**2, den, scale, empty=1.0)


def glen_estimator(f_A: torch.Tensor, f_B: torch.Tensor, f_C: torch.Tensor) -> torch.Tensor:
    """Glen & Isaacs (2012): ``ST_i = 1 - corr(f(A), f(C_i))`` (Pearson, each sample centred on its mean)."""
    f_A, f_B, f_C, _, scale = _prep(f_A, f_B, f_C)
    a = f_A - f_A.mean()
    c = f_C - f_C.mean(1, keepdim=True)
    den = torch.sqrt((a**2).mean() * (c**2).mean(1))
    return 1.0 - _ratio((a * c).mean(1), den, scale, empty=1.0)


ESTIMATORS: dict[str, Estimator] = {
    "jansen": jansen_estimator,
    "saltelli": saltelli_estimator,
    "homma": homma_estimator,
    "janon": janon_estimator,
    "glen": glen_estimator,
}


def resolve_estimator(estimator: str | Estimator) -> Estimator:
    """The estimator function for a name (or the callable itself); ValueError listing the valid names."""
    if callable(estimator):
        return estimator
    if estimator not in ESTIMATORS:
        raise ValueError(
            f"estimator: unknown estimator {estimator!r}; valid: {sorted(ESTIMATORS)} or a callable"
        )
    return ESTIMATORS[estimator]


def total_indices(
    f: torch.Tensor, nb_design: int, d: int, estimator: str | Estimator = "jansen"
) -> torch.Tensor:
    """Total Sobol indices (d,) from the scores of the :func:`design_masks` rows (0 where Var f = 0)."""
    f = f.detach().to("cpu", torch.float64)  # N (d + 2) numbers: float64 on the CPU (MPS lacks float64)
    out = resolve_estimator(estimator)(*split_scores(f, nb_design, d))
    return finite_maps(torch.as_tensor(out, dtype=torch.float64).reshape(d))


@register("sobol")
def sobol(
    model: Model | nn.Module | Forward,
    x: torch.Tensor,
    y: torch.Tensor | int,
    *,
    grid_size: int = 8,
    nb_design: int = 32,
    sampler: str | SamplerFn = "sobol",
    estimator: str | Estimator = "jansen",
    perturbation: str | Perturbation = "inpainting",
    perturbation_size: float | None = None,
    batch_size: int = 64,
    upsample: bool = True,
    seed: int = 0,
    progress: bool = False,
) -> torch.Tensor:
    """Sobol attribution maps: the total Sobol index of each grid cell (Fel et al., NeurIPS 2021).

    Parameters
    ----------
    model
        A workbench ``Model``, an ``nn.Module`` or a callable mapping (B, C, H, W) to (B, K) scores.
    x
        Images (N, C, H, W); pixel space [0, 1] for a workbench ``Model``.
    y
        Target classes (N,) or one int for all images; the explained score is the class logit.
    grid_size
        Cells per side, ``d = grid_size**2`` variables (default 8, d = 64).
    nb_design
        ``N``, rows of the ``A`` and ``B`` designs (default 32); ``N (d + 2)`` forward passes per image
        (2,112 at the defaults). A power of 2 for the Sobol samplers.
    sampler
        ``"sobol"`` (scrambled, default), ``"sobol_unscrambled"``, ``"halton"``, ``"lhs"``, ``"uniform"``
        or ``fn(n, d, seed) -> (n, d)`` in [0, 1]; see :mod:`workbench.attribution.sampling`.
    estimator
        ``"jansen"`` (default), ``"saltelli"``, ``"homma"``, ``"janon"``, ``"glen"`` (see
        :data:`ESTIMATORS`) or ``fn(f_A (N,), f_B (N,), f_C (d, N)) -> (d,)``.
    perturbation
        ``"inpainting"`` (``x * M``, default), ``"blurring"`` or ``"amplitude"`` (see :data:`PERTURBATIONS`),
        or ``fn(x (1, C, H, W), masks (B, 1, H, W)) -> (B, C, H, W)``.
    perturbation_size
        The blur sigma in pixels for ``"blurring"`` (default ``max(H, W) / 22.4``) or the ``sigma`` of
        ``"amplitude"`` (default 1); unused by ``"inpainting"``.
    batch_size
        The most perturbed images per forward pass.
    upsample
        Resize the (g, g) indices bicubically to (H, W); False returns the (N, g, g) grid.
    seed
        Seeds the design; the same design serves every image.
    progress
        Show a progress bar over the images.

    Returns
    -------
    torch.Tensor
        (N, H, W) float32 maps (or (N, g, g) with ``upsample=False``); cell ``i`` of the grid is row
        ``i // g``, column ``i % g``. A constant score (Var f = 0) gives a zero map, never NaN.

    References
    ----------
    Fel, T., Cadène, R., Chalvidal, M., Cord, M., Vigouroux, D., Serre, T. *Look at the Variance!
    Efficient Black-box Explanations with Sobol-based Sensitivity Analysis*. NeurIPS 2021.
    Saltelli, A. et al. *Variance based sensitivity analysis of model output. Design and estimator for
    the total sensitivity index*. Computer Physics Communications 181 (2010).
    """
    forward, x, y = prepare(model, x, y)
    size = tuple(x.shape[-2:])
    g = check_grid(grid_size, size)
    d = g * g
    est = resolve_estimator(estimator)
    perturb = resolve_perturbation(perturbation, perturbation_size)
    resolve_sampler(sampler)
    A, B, C = sobol_design(sampler, nb_design, d, seed=seed, device=x.device)
    masks = design_masks(A, B, C).view(-1, g, g)
    f = masked_scores(forward, x, y, masks, perturb, batch_size, progress=progress, desc="sobol")
    indices = torch.stack([total_indices(fi, nb_design, d, est) for fi in f]).float().to(x.device)
    maps = finite_maps(indices.view(-1, g, g))
    return finite_maps(upsample_grid(maps, size)) if upsample else maps
