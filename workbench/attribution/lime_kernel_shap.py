"""Surrogate-model attributions over segments: LIME (Ribeiro et al. 2016) and KernelSHAP (Lundberg &
Lee 2017).

Both switch segments of the image on (kept) or off (replaced by the baseline), read the score of
class ``y`` and fit a linear model in the binary "interpretable" space; the map paints each
segment's coefficient over its pixels. Segments come from a regular grid (``"grid"``), SLIC
superpixels (``"slic"``, needs scikit-image) or precomputed integer labels.

The regressions run in float64 on the CPU, one batched ``torch.linalg.solve`` for all images (images
with fewer segments are padded with inert features whose coefficient is exactly 0).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch

from workbench._core.progress import progress as _progress
from workbench._core.seeding import make_generator
from workbench._core.validation import check_baseline, check_int
from workbench.attribution._base import finite_maps, perturbed_scores, prepare
from workbench.attribution.registry import register
from workbench.attribution.rise_masks import check_probability

Segmentation = Literal["grid", "slic"] | torch.Tensor | np.ndarray


# -- segments ------------------------------------------------------------------------------------
def grid_segments(h: int, w: int, grid_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Row-major labels (H, W) of a ``grid_size x grid_size`` grid (cells differ by at most a pixel)."""
    rows = torch.arange(h, device=device) * grid_size // h
    cols = torch.arange(w, device=device) * grid_size // w
    return rows[:, None] * grid_size + cols[None, :]


def slic_segments(x: torch.Tensor, n_segments: int, compactness: float = 10.0) -> torch.Tensor:
    """SLIC superpixels (scikit-image) of each image (N, C, H, W) -> labels (N, H, W) on CPU."""
    try:
        from skimage.segmentation import slic
    except ImportError as err:
        raise ImportError(
            "segmentation='slic' needs scikit-image, which is part of the dev extra:"
            " pip install 'xai-workbench[dev]' (or pip install scikit-image);"
            " segmentation='grid' or precomputed labels work without it"
        ) from err
    images = x.detach().float().cpu().permute(0, 2, 3, 1).numpy().astype(np.float64)
    labels = []
    for img in images:
        if img.shape[-1] == 1:
            lab = slic(
                img[..., 0], n_segments=n_segments, compactness=compactness, start_label=0, channel_axis=None
            )
        else:
            lab = slic(img, n_segments=n_segments, compactness=compactness, start_label=0, channel_axis=-1)
        labels.append(torch.from_numpy(np.asarray(lab, dtype=np.int64)))
    return torch.stack(labels)


def _contiguous(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Relabel each image's segments to 0..S_i-1 (keeping their order); also return S_i."""
    out, counts = torch.empty_like(labels), []
    for i, lab in enumerate(labels):
        uniq, inv = torch.unique(lab, return_inverse=True)
        out[i] = inv.view_as(lab)
        counts.append(len(uniq))
    return out, torch.tensor(counts)


def segments(
    x: torch.Tensor, segmentation: Segmentation = "grid", grid_size: int = 8
) -> tuple[torch.Tensor, torch.Tensor]:
    """Segment labels (N, H, W) long on x's device, contiguous per image, and the counts S_i (N,).

    ``segmentation``: "grid" (``grid_size`` x ``grid_size`` cells), "slic" (about ``grid_size**2``
    SLIC superpixels) or integer labels (N, H, W) or (H, W) (shared by all images).
    """
    n, _, h, w = x.shape
    if isinstance(segmentation, str):
        if segmentation == "grid":
            check_int(grid_size, "grid_size")
            if grid_size > min(h, w):
                raise ValueError(f"grid_size: {grid_size} is larger than the images ({h}, {w})")
            labels = grid_segments(h, w, grid_size, x.device).expand(n, h, w)
            return labels, torch.full((n,), grid_size * grid_size)
        if segmentation == "slic":
            check_int(grid_size, "grid_size")
            labels, counts = _contiguous(slic_segments(x, grid_size * grid_size))
            return labels.to(x.device), counts
        raise ValueError(
            f"segmentation: expected 'grid', 'slic' or integer labels (N, H, W), got {segmentation!r}"
        )
    if isinstance(segmentation, np.ndarray):
        segmentation = torch.from_numpy(segmentation)
    if not isinstance(segmentation, torch.Tensor):
        raise ValueError(
            "segmentation: expected 'grid', 'slic' or integer labels (N, H, W),"
            f" got {type(segmentation).__name__}"
        )
    if segmentation.is_floating_point() or segmentation.dtype == torch.bool:
        raise ValueError(f"segmentation: labels must be integers, got dtype {segmentation.dtype}")
    if segmentation.ndim == 2:
        segmentation = segmentation.expand(n, -1, -1)
    if tuple(segmentation.shape) != (n, h, w):
        raise ValueError(
            f"segmentation: labels must have shape ({n}, {h}, {w}) or ({h}, {w}) to match the images,"
            f" got {tuple(segmentation.shape)}"
        )
    labels, counts = _contiguous(segmentation.long().cpu())
    return labels.to(x.device), counts


def paint(coefs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-segment values (N, S) painted over their pixels: labels (N, H, W) -> maps (N, H, W)."""
    n = len(labels)
    return coefs.gather(1, labels.reshape(n, -1)).view(labels.shape)


def _segment_inputs(xi, bi, labels_i, z):
    """Inputs for binary segment vectors z (B, S): segment on -> x, off -> baseline."""
    keep = z[:, labels_i]  # (B, H, W) bool
    return torch.where(keep[:, None], xi, bi)


def squared_pixel_distances(
    xi: torch.Tensor, bi: torch.Tensor, labels_i: torch.Tensor, z: torch.Tensor, n_segments: int
) -> torch.Tensor:
    """``||x - x_z||^2`` in pixel space for segment vectors z (B, S), without building the images.

    Returns float64 on the CPU, where the regressions run.

    Switching a segment off moves its pixels from x to the baseline, so the squared distance is the
    sum, over the switched-off segments, of ``sum_{pixels, channels} (x - b)^2``.
    """
    dev = ((xi - bi).float() ** 2).sum(0).flatten()  # float32 on the device (MPS has no float64)
    per_segment = torch.zeros(n_segments, device=xi.device).index_add_(0, labels_i.flatten(), dev)
    return (~z).cpu().double() @ per_segment.cpu().double()


def _output(coefs, labels, segmentation, grid_size, upsample) -> torch.Tensor:
    if upsample:
        return finite_maps(paint(coefs, labels).float())
    if not (isinstance(segmentation, str) and segmentation == "grid"):
        raise ValueError("upsample=False is only defined for segmentation='grid' (it returns the grid)")
    return finite_maps(coefs.view(-1, grid_size, grid_size).float())


# -- regressions ---------------------------------------------------------------------------------
# Each image's samples are reduced to its normal equations (S x S) as soon as they are scored, so the
# memory of the fit is O(N S^2) whatever n_samples; one batched solve then fits every image.
def _jitter(a: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """A tiny relative ridge on the active features so rank-deficient designs still solve."""
    diag = torch.diagonal(a, dim1=-2, dim2=-1)
    scale = (diag * active).sum(-1) / active.sum(-1).clamp(min=1)
    return (1e-10 * scale + 1e-12)[:, None] * active


def ridge_system(
    z: torch.Tensor, f: torch.Tensor, weights: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normal equations of a weighted fit with an unpenalized intercept, for one image.

    z (n, S), f and weights (n,) -> ``(Zc^T W Zc, Zc^T W fc)`` in float64 on the CPU, with ``Zc`` and
    ``fc`` centred on their weighted means (which is how the intercept drops out).
    """
    z, f, w = z.cpu().double(), f.cpu().double(), weights.cpu().double()
    wsum = w.sum().clamp(min=1e-300)
    zc = z - (w[:, None] * z).sum(0) / wsum
    fc = f - (w * f).sum() / wsum
    return zc.T @ (w[:, None] * zc), zc.T @ (w * fc)


def solve_ridge(a: torch.Tensor, b: torch.Tensor, alpha: float, active: torch.Tensor) -> torch.Tensor:
    """Batched ridge solve ``(A + alpha I) c = b``: a (N, S, S), b (N, S), active (N, S) bool -> c (N, S).

    Padded (inactive) features get coefficient exactly 0.
    """
    act = active.double()
    a = a + torch.diag_embed(alpha * act + (1 - act) + _jitter(a, act))
    return torch.linalg.solve(a, b) * act


def weighted_ridge(
    z: torch.Tensor, f: torch.Tensor, weights: torch.Tensor, alpha: float, active: torch.Tensor
) -> torch.Tensor:
    """Batched weighted ridge with an unpenalized intercept (scikit-learn's ``Ridge`` with
    ``sample_weight``): minimize ``sum_n w_n (f_n - b - z_n . c)^2 + alpha |c|^2`` per image.

    z (N, n, S), f and weights (N, n), active (N, S) bool (False for padding) -> c (N, S).
    """
    systems = [ridge_system(*args) for args in zip(z, f, weights)]
    a, b = torch.stack([s[0] for s in systems]), torch.stack([s[1] for s in systems])
    return solve_ridge(a, b, alpha, active)


def wls_system(z: torch.Tensor, f: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Normal equations ``(Z^T W Z, Z^T W f)`` of a weighted fit without intercept, for one image."""
    z, f, w = z.cpu().double(), f.cpu().double(), weights.cpu().double()
    return z.T @ (w[:, None] * z), z.T @ (w * f)


def solve_efficient(
    a: torch.Tensor, b: torch.Tensor, total: torch.Tensor, active: torch.Tensor
) -> torch.Tensor:
    """Batched constrained solve: minimize the fit of ``(a, b)`` subject to ``sum(phi) = total``.

    a (N, S, S), b (N, S), total (N,), active (N, S) bool -> phi (N, S), exactly 0 on padded features.
    Solved through the KKT system ``[[A, 1], [1^T, 0]] [phi, lambda] = [b, total]``; a tiny relative
    ridge makes under-determined fits (fewer samples than segments) pick the minimum-norm solution.
    """
    act = active.double()
    n, s = act.shape
    a = a + torch.diag_embed((1 - act) + _jitter(a, act))
    kkt = torch.zeros(n, s + 1, s + 1, dtype=torch.float64)
    kkt[:, :s, :s] = a
    kkt[:, :s, s] = act
    kkt[:, s, :s] = act
    rhs = torch.cat([b, total.cpu().double()[:, None]], 1)
    return torch.linalg.solve(kkt, rhs)[:, :s] * act


def constrained_wls(
    z: torch.Tensor, f: torch.Tensor, weights: torch.Tensor, total: torch.Tensor, active: torch.Tensor
) -> torch.Tensor:
    """Batched weighted least squares ``f_n ~ z_n . phi`` subject to ``sum(phi) = total``.

    z (N, n, S), f and weights (N, n), total (N,), active (N, S) bool -> phi (N, S). This is
    KernelSHAP's fit with efficiency as an exact constraint.
    """
    systems = [wls_system(*args) for args in zip(z, f, weights)]
    a, b = torch.stack([m[0] for m in systems]), torch.stack([m[1] for m in systems])
    return solve_efficient(a, b, total, active)


def shapley_kernel(m: int, k: torch.Tensor) -> torch.Tensor:
    """Shapley kernel weight ``(M - 1) / (C(M, k) k (M - k))`` of coalitions of size k (0 < k < M)."""
    k = k.double()
    log_binom = math.lgamma(m + 1) - torch.lgamma(k + 1) - torch.lgamma(m - k + 1)
    return (m - 1) / (torch.exp(log_binom) * k * (m - k))


# -- LIME ----------------------------------------------------------------------------------------
@register("lime", paper='Ribeiro, Singh & Guestrin, "Why Should I Trust You?", KDD 2016')
def lime(
    model,
    x: torch.Tensor,
    y: torch.Tensor | int,
    *,
    n_samples: int = 150,
    segmentation: Segmentation = "grid",
    grid_size: int = 8,
    kernel_width: float = 45.0,
    alpha: float = 2.0,
    p: float = 0.5,
    baseline: float | torch.Tensor = 0.0,
    batch_size: int = 64,
    seed: int | torch.Generator = 0,
    upsample: bool = True,
    progress: bool = False,
) -> torch.Tensor:
    """LIME maps: ridge coefficients of the score on random on/off segment vectors.

    Defaults follow Xplique: 150 samples, each segment kept with probability ``p = 0.5``, ridge
    ``alpha = 2`` with an intercept, and the sample weight ``exp(-d^2 / kernel_width^2)`` where ``d`` is
    the **Euclidean distance in pixel space** between the image and the perturbed image (Xplique's
    default ``distance_mode="euclidean"``, computed on the perturbed inputs, not in the binary
    interpretable space; width 45). In pixel space [0, 1] this distance grows with the image size:
    at 64 px a half-masked image is about 30-40 away (weights ~0.5), at 224 px about 3.5x farther, where
    all weights become tiny and ``alpha`` shrinks the coefficients to ~0, so raise ``kernel_width``
    roughly in proportion to the image side (or use ``kernel_width=float("inf")`` for equal weights).

    Parameters
    ----------
    model
        A workbench Model (pixel-space input), an ``nn.Module`` or a callable (N, C, H, W) -> (N, K).
    x, y
        Images (N, C, H, W) and target classes (N,) or one int.
    n_samples
        Perturbed images per image (>= 2).
    segmentation
        "grid" (``grid_size`` x ``grid_size`` cells, default 8 x 8), "slic" (about ``grid_size**2``
        superpixels, needs scikit-image), or integer labels (N, H, W) or (H, W).
    grid_size
        Cells per side for "grid"; sets the number of superpixels for "slic".
    kernel_width
        Width of the exponential kernel on the pixel-space distance (> 0; ``inf`` = equal weights).
    alpha
        Ridge penalty (>= 0) on the coefficients; the intercept is not penalized.
    p
        Probability that a segment is kept in a sample, in (0, 1).
    baseline
        What a switched-off segment becomes: a number or a tensor broadcastable to (N, C, H, W).
    batch_size
        Perturbed images per forward pass.
    seed
        An int or a CPU ``torch.Generator``; samples do not depend on ``batch_size`` or the device.
    upsample
        True: maps (N, H, W) with each coefficient painted over its segment. False (grid only): the
        coefficients as (N, grid_size, grid_size).
    progress
        Show a progress bar over the images.

    Notes
    -----
    Forward passes: ``N * ceil(n_samples / batch_size)``, each with at most ``batch_size`` inputs.
    """
    forward, x, y = prepare(model, x, y)
    check_int(n_samples, "n_samples", 2)
    check_int(batch_size, "batch_size")
    p = check_probability(p)
    if not (isinstance(kernel_width, int | float) and kernel_width > 0):
        raise ValueError(f"kernel_width: expected a positive number, got {kernel_width!r}")
    if not (isinstance(alpha, int | float) and alpha >= 0):
        raise ValueError(f"alpha: expected a non-negative number, got {alpha!r}")
    labels, counts = segments(x, segmentation, grid_size)
    base = check_baseline(baseline, x, pixel_range=False)
    n, s_max = len(x), int(counts.max())
    active = torch.arange(s_max)[None] < counts[:, None]  # (N, S) on CPU

    gen = make_generator(seed)
    z = (torch.rand(n, n_samples, s_max, generator=gen) < p) & active[:, None]
    a = torch.zeros(n, s_max, s_max, dtype=torch.float64)
    b = torch.zeros(n, s_max, dtype=torch.float64)
    with torch.no_grad():
        for i in _progress(range(n), enabled=progress, desc="lime", total=n):
            xi, bi, li = x[i], base[i], labels[i]
            zi = z[i].to(x.device)
            scores = perturbed_scores(
                forward,
                lambda sl, xi=xi, bi=bi, li=li, zi=zi: _segment_inputs(xi, bi, li, zi[sl]),
                n_samples,
                y[i],
                batch_size,
                x.device,
            )
            dist2 = squared_pixel_distances(xi, bi, li, zi, s_max)
            weights = torch.exp(-dist2 / float(kernel_width) ** 2)
            a[i], b[i] = ridge_system(z[i], scores, weights)
    coefs = solve_ridge(a, b, float(alpha), active).to(device=x.device, dtype=torch.float32)
    return _output(coefs, labels, segmentation, grid_size, upsample)


# -- KernelSHAP ----------------------------------------------------------------------------------
def shap_coalitions(m: int, n_samples: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Coalitions (n, m) bool and regression weights (n,) for KernelSHAP over ``m`` features.

    Rows 0 and 1 are the full and the empty coalition (weight 0: they enter through the efficiency
    constraint). If all ``2**m`` coalitions fit in ``n_samples``, every coalition is enumerated with
    its exact Shapley kernel weight (the fit then gives the exact Shapley values). Otherwise
    ``n_samples - 2`` coalitions are drawn from the Shapley kernel (size k with probability
    proportional to ``1 / (k (m - k))``, then a uniform subset of that size), in complementary pairs,
    each with weight 1.
    """
    full, empty = torch.ones(1, m, dtype=torch.bool), torch.zeros(1, m, dtype=torch.bool)
    if m <= 20 and 2**m <= n_samples:
        codes = torch.arange(1, 2**m - 1)
        middle = (codes[:, None] >> torch.arange(m)) & 1 == 1
        w = shapley_kernel(m, middle.sum(1))
    else:
        n_mid = n_samples - 2
        half = (n_mid + 1) // 2
        if half == 0:
            return torch.cat([full, empty]), torch.zeros(2, dtype=torch.float64)
        sizes = torch.arange(1, m, dtype=torch.float64)
        probs = 1.0 / (sizes * (m - sizes))
        k = torch.multinomial(probs, half, replacement=True, generator=gen) + 1  # (half,)
        ranks = torch.rand(half, m, generator=gen).argsort(1).argsort(1)
        drawn = ranks < k[:, None]
        middle = torch.cat([drawn, ~drawn])[:n_mid]
        w = torch.ones(n_mid, dtype=torch.float64)
    coalitions = torch.cat([full, empty, middle])
    weights = torch.cat([torch.zeros(2, dtype=torch.float64), w])
    return coalitions, weights


@register(
    "kernel_shap", paper="Lundberg & Lee, A Unified Approach to Interpreting Model Predictions, NeurIPS 2017"
)
def kernel_shap(
    model,
    x: torch.Tensor,
    y: torch.Tensor | int,
    *,
    n_samples: int = 800,
    segmentation: Segmentation = "grid",
    grid_size: int = 8,
    baseline: float | torch.Tensor = 0.0,
    batch_size: int = 64,
    seed: int | torch.Generator = 0,
    upsample: bool = True,
    progress: bool = False,
) -> torch.Tensor:
    """KernelSHAP maps: Shapley values of segments (absent = baseline), by weighted least squares.

    The Shapley kernel gives the full and the empty coalitions infinite weight. Captum approximates
    that with a weight of 1e6 and SHAP eliminates one variable; here they are exact constraints:
    ``phi_0 = f(baseline)`` and **efficiency** ``sum_s phi_s = f(x) - f(baseline)`` holds to float
    precision, via the KKT system of the constrained fit (symmetric in the segments). The other
    coalitions are drawn from the Shapley kernel distribution in complementary pairs with equal
    weights (Captum's sampling, plus pairing), or all enumerated with exact kernel weights when
    ``2**S <= n_samples`` (then the result is the exact Shapley value of every segment). For a model
    that is additive over segments, any full-rank sample gives the exact values.

    Parameters
    ----------
    model
        A workbench Model (pixel-space input), an ``nn.Module`` or a callable (N, C, H, W) -> (N, K).
    x, y
        Images (N, C, H, W) and target classes (N,) or one int.
    n_samples
        Perturbed inputs per image, the full and empty coalitions included (>= 2; Xplique's default
        800). With fewer than S + 2 the fit is under-determined and a tiny ridge picks the
        minimum-norm solution (with 2, the drop is split equally).
    segmentation, grid_size
        As in :func:`lime`: "grid" (8 x 8 by default), "slic", or integer labels (N, H, W) / (H, W).
    baseline
        What an absent segment becomes: a number or a tensor broadcastable to (N, C, H, W).
    batch_size
        Perturbed images per forward pass.
    seed
        An int or a CPU ``torch.Generator``; samples do not depend on ``batch_size`` or the device.
    upsample
        True: maps (N, H, W). False (grid only): the Shapley values as (N, grid_size, grid_size).
    progress
        Show a progress bar over the images.

    Notes
    -----
    Forward passes per image: ``ceil(n_i / batch_size)`` with ``n_i = min(n_samples, 2**S_i)``
    (``S_i`` segments of image i), each with at most ``batch_size`` inputs.
    """
    forward, x, y = prepare(model, x, y)
    check_int(n_samples, "n_samples", 2)
    check_int(batch_size, "batch_size")
    labels, counts = segments(x, segmentation, grid_size)
    base = check_baseline(baseline, x, pixel_range=False)
    n, s_max = len(x), int(counts.max())
    gen = make_generator(seed)
    active = torch.arange(s_max)[None] < counts[:, None]
    a = torch.zeros(n, s_max, s_max, dtype=torch.float64)
    b = torch.zeros(n, s_max, dtype=torch.float64)
    total = torch.zeros(n, dtype=torch.float64)
    with torch.no_grad():
        for i in _progress(range(n), enabled=progress, desc="kernel_shap", total=n):
            m = int(counts[i])
            coal, weights = shap_coalitions(m, n_samples, gen)
            xi, bi, li = x[i], base[i], labels[i]
            zi = coal.to(x.device)
            scores = (
                perturbed_scores(
                    forward,
                    lambda sl, xi=xi, bi=bi, li=li, zi=zi: _segment_inputs(xi, bi, li, zi[sl]),
                    len(coal),
                    y[i],
                    batch_size,
                    x.device,
                )
                .cpu()
                .double()
            )
            f_full, f_empty = scores[0], scores[1]  # rows 0 and 1: full and empty coalitions
            a[i, :m, :m], b[i, :m] = wls_system(coal, scores - f_empty, weights)
            total[i] = f_full - f_empty
    phi = solve_efficient(a, b, total, active).to(device=x.device, dtype=torch.float32)
    return _output(phi, labels, segmentation, grid_size, upsample)
