"""Estimators of the grid methods: total Sobol indices (Sobol attribution) and HSIC (HSIC attribution).

Both take the scores of perturbed images and return one number per grid cell; they run no model.
:mod:`workbench.attribution.grid_masks` makes the masks and the scores, the method modules
(:mod:`~workbench.attribution.sobol_sensitivity`, :mod:`~workbench.attribution.hsic_dependence`)
tie the two together.

Total Sobol indices
-------------------
``fn(f_A (N,), f_B (N,), f_C (d, N), variance=...) -> (d,)`` on the scores of the pick-freeze design
(:func:`split_scores` cuts the ``N (d + 2)`` scores of ``[A; B; C_1; ...; C_d]``). :data:`ESTIMATORS`
names them (Jansen, Saltelli, Homma, Janon, Glen). ``variance`` is the normalization ``V`` of the
estimators that use one (Jansen, Saltelli, Homma):

- ``"pooled"`` (default): the unbiased variance of the ``2N`` scores of ``A`` and ``B`` together (both
  samples estimate the same ``Var f``; twice the points, a steadier ratio).
- ``"xplique"``: the unbiased variance of ``f(A)`` only, as Xplique's estimators. The two differ per
  image (by a factor 0.64 to 0.92 measured on the texture CNN at N = 32), so per-image scales differ,
  not the ranking of cells within an image.

HSIC
----
``HSIC_i = tr(K_i H L H) / (p - 1)^2`` with the input kernel ``k(m, m') = 1/2 - (m - m')^2`` (Dirac
after centring) and a Gaussian output kernel ``l(y, y') = exp(-(y - y')^2 / (2 sigma^2))``. Its
bandwidth ``sigma`` (:data:`BANDWIDTHS`):

- ``"median_output"`` (default, Xplique's): the median of the outputs themselves, ``np.percentile(y, 50)``
  (its absolute value; it enters squared). Not translation invariant: adding a constant to the logits
  changes the maps. When it is 0, ``"median_distance"`` is used.
- ``"median_distance"``: the usual median heuristic, the median of ``|y_a - y_b|`` over pairs ``a < b``.

The two change relative scores, not only their scale. Xplique divides by ``p`` instead of
``(p - 1)^2``, a constant factor ``(p - 1)^2 / p`` for every cell and image.

Efficient forms. With ``s = 2m - 1`` in {-1, +1}, ``k_i(m, m') = s s' / 2`` is rank one, so with the
double-centred output Gram ``Lc = H L H``,

    HSIC_i    = s_i^T Lc s_i / (2 (p - 1)^2),
    HSIC_ij   = (s_i * s_j)^T Lc (s_i * s_j) / (4 (p - 1)^2),

evaluated for all cells with one (p, p) x (p, d) product and for all ``d (d - 1) / 2`` pairs with chunked
(p, p) x (p, pairs) products. :func:`input_grams` builds the explicit kernels for checking.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch

from workbench._core.registry import Registry
from workbench.attribution._base import finite_maps

Estimator = Callable[..., torch.Tensor]
Variance = Literal["pooled", "xplique"]
VARIANCES = ("pooled", "xplique")

ESTIMATORS: Registry[Estimator] = Registry("Sobol estimator")
BANDWIDTHS: Registry[Callable[[torch.Tensor], torch.Tensor]] = Registry("HSIC bandwidth")

# ----------------------------------------------------------------------------------------------------------
# Total Sobol indices
# ----------------------------------------------------------------------------------------------------------


def split_scores(f: torch.Tensor, nb_design: int, d: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split the scores of ``[A; B; C_1; ...; C_d]`` rows into ``f_A`` (N,), ``f_B`` (N,), ``f_C`` (d, N)."""
    n = int(nb_design)
    if f.shape != (n * (d + 2),):
        raise ValueError(
            f"split_scores: expected {n * (d + 2)} scores (N (d + 2)), got shape {tuple(f.shape)}"
        )
    return f[:n], f[n : 2 * n], f[2 * n :].reshape(d, n)


def _nonzero(den: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Where a variance-like denominator is not numerically zero (relative to the scores' square size)."""
    return den.abs() > 1e-12 * scale + 1e-300


def _ratio(num: torch.Tensor, den: torch.Tensor, scale: torch.Tensor, empty: float = 0.0) -> torch.Tensor:
    """``num / den``, and ``empty`` where ``den`` is numerically zero (a constant score: Var f = 0)."""
    ok = _nonzero(den, scale)
    return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), empty)


def _prep(f_A, f_B, f_C, variance: Variance = "pooled"):
    if variance not in VARIANCES:
        raise ValueError(f"variance: expected one of {VARIANCES}, got {variance!r}")
    f_A, f_B, f_C = (t.to(torch.float64) for t in (f_A, f_B, f_C))
    pooled = torch.cat([f_A, f_B])
    var = (pooled if variance == "pooled" else f_A).var(unbiased=True)
    scale = (pooled**2).mean()  # the square magnitude of the scores, for the zero-variance test
    return f_A, f_B, f_C, var, scale


@ESTIMATORS.register("jansen", paper="Jansen, Comput. Phys. Commun. 117 (1999); Saltelli et al. (2010)")
def jansen_estimator(
    f_A: torch.Tensor, f_B: torch.Tensor, f_C: torch.Tensor, variance: Variance = "pooled"
) -> torch.Tensor:
    """Jansen (1999): ``ST_i = mean_n (f(A_n) - f(C_i,n))^2 / (2 V)``.

    ``V``: see ``variance`` in the module notes. Non-negative; the estimator recommended by Saltelli et
    al. (2010) and the paper's default.
    """
    f_A, f_B, f_C, var, scale = _prep(f_A, f_B, f_C, variance)
    return _ratio(((f_A - f_C) ** 2).mean(1), 2.0 * var, scale)


@ESTIMATORS.register("saltelli", paper="Sobol (2007); Saltelli et al., Comput. Phys. Commun. 181 (2010)")
def saltelli_estimator(
    f_A: torch.Tensor, f_B: torch.Tensor, f_C: torch.Tensor, variance: Variance = "pooled"
) -> torch.Tensor:
    """Sobol (2007), Saltelli et al. (2010) Table 2 (f): ``ST_i = mean_n f(A_n) (f(A_n) - f(C_i,n)) / V``."""
    f_A, f_B, f_C, var, scale = _prep(f_A, f_B, f_C, variance)
    return _ratio((f_A * (f_A - f_C)).mean(1), var, scale)


@ESTIMATORS.register("homma", paper="Homma & Saltelli, Reliab. Eng. Syst. Saf. 52 (1996)")
def homma_estimator(
    f_A: torch.Tensor, f_B: torch.Tensor, f_C: torch.Tensor, variance: Variance = "pooled"
) -> torch.Tensor:
    """Homma & Saltelli (1996): ``ST_i = (V - mean_n f(A_n) f(C_i,n) + f0^2) / V``, ``f0 = mean f(A)``."""
    f_A, f_B, f_C, var, scale = _prep(f_A, f_B, f_C, variance)
    f0 = f_A.mean()
    return _ratio(var - (f_A * f_C).mean(1) + f0**2, var, scale)


@ESTIMATORS.register("janon", paper="Janon et al., ESAIM: Probab. Stat. 18 (2014)")
def janon_estimator(
    f_A: torch.Tensor, f_B: torch.Tensor, f_C: torch.Tensor, variance: Variance = "pooled"
) -> torch.Tensor:
    """Janon et al. (2014): ``ST_i = 1 - (mean(f_A f_Ci) - m_i^2) / (mean((f_A^2 + f_Ci^2) / 2) - m_i^2)``.

    ``m_i = mean((f_A + f_Ci) / 2)``: mean and variance are estimated from both samples of each pair
    (asymptotically efficient; ``variance`` is unused). ``f(A)`` and ``f(C_i)`` share every variable but
    ``i``, so the ratio estimates the closed index of the complement of ``i``, ``1 - ST_i``.
    """
    f_A, f_B, f_C, _, scale = _prep(f_A, f_B, f_C, variance)
    m = ((f_A + f_C) / 2).mean(1)
    den = ((f_A**2 + f_C**2) / 2).mean(1) - m**2
    return 1.0 - _ratio((f_A * f_C).mean(1) - m**2, den, scale, empty=1.0)


@ESTIMATORS.register("glen", paper="Glen & Isaacs, Environ. Model. Softw. 37 (2012)")
def glen_estimator(
    f_A: torch.Tensor, f_B: torch.Tensor, f_C: torch.Tensor, variance: Variance = "pooled"
) -> torch.Tensor:
    """Glen & Isaacs (2012): ``ST_i = 1 - corr(f(A), f(C_i))`` (Pearson, each sample centred on its mean;
    ``variance`` is unused)."""
    f_A, f_B, f_C, _, scale = _prep(f_A, f_B, f_C, variance)
    a = f_A - f_A.mean()
    c = f_C - f_C.mean(1, keepdim=True)
    den = torch.sqrt((a**2).mean() * (c**2).mean(1))
    return 1.0 - _ratio((a * c).mean(1), den, scale, empty=1.0)


def resolve_estimator(estimator: str | Estimator) -> Estimator:
    """The estimator function for a name (or the callable itself); ValueError listing the valid names."""
    if callable(estimator):
        return estimator
    if not isinstance(estimator, str) or estimator not in ESTIMATORS:
        raise ValueError(
            f"estimator: unknown estimator {estimator!r}; valid: {ESTIMATORS.names()} or a callable"
        )
    return ESTIMATORS.get(estimator)


def total_indices(
    f: torch.Tensor,
    nb_design: int,
    d: int,
    estimator: str | Estimator = "jansen",
    variance: Variance = "pooled",
) -> torch.Tensor:
    """Total Sobol indices (d,) from the scores of the ``[A; B; C_1..C_d]`` rows (0 where Var f = 0).

    ``variance`` is passed to a named estimator; a callable estimator receives it only when it is not
    the default ``"pooled"`` (so ``fn(f_A, f_B, f_C)`` callables keep working).
    """
    if variance not in VARIANCES:
        raise ValueError(f"variance: expected one of {VARIANCES}, got {variance!r}")
    f = f.detach().to("cpu", torch.float64)  # N (d + 2) numbers: float64 on the CPU (MPS lacks float64)
    fn = resolve_estimator(estimator)
    kw = {} if callable(estimator) and variance == "pooled" else {"variance": variance}
    out = fn(*split_scores(f, nb_design, d), **kw)
    return finite_maps(torch.as_tensor(out, dtype=torch.float64).reshape(d))


# ----------------------------------------------------------------------------------------------------------
# HSIC: kernels and estimators
# ----------------------------------------------------------------------------------------------------------


def _acc(t: torch.Tensor) -> torch.dtype:
    """Accumulation dtype: float64, except on MPS (no float64 there)."""
    return torch.float32 if t.device.type == "mps" else torch.float64


@BANDWIDTHS.register(
    "median_distance", paper="Gretton et al., A Kernel Statistical Test of Independence, NeurIPS 2007"
)
def median_bandwidth(outputs: torch.Tensor) -> torch.Tensor:
    """The median heuristic: the median of ``|y_a - y_b|`` over pairs ``a < b`` of the outputs (p,).

    ``torch.median`` is used (the lower middle value for an even count). Falls back to the median of
    the non-zero distances when more than half the pairs tie, and to 1
    when the outputs are constant (the RBF Gram is then all ones and every HSIC is 0).
    """
    y = outputs.to(_acc(outputs)).reshape(-1)
    dist = torch.pdist(y[:, None])  # the p (p - 1) / 2 distances |y_a - y_b|, a < b
    med = dist.median() if len(dist) else torch.zeros((), dtype=y.dtype, device=y.device)
    if med <= 0:
        pos = dist[dist > 0]
        med = pos.median() if len(pos) else torch.ones((), dtype=y.dtype, device=y.device)
    return med


@BANDWIDTHS.register("median_output", paper="Novello, Fel & Vigouroux, NeurIPS 2022 (Xplique's estimator)")
def median_output_bandwidth(outputs: torch.Tensor) -> torch.Tensor:
    """Xplique's bandwidth: ``|median of the outputs|`` (linear interpolation between the two middle
    values for an even count, as ``np.percentile(y, 50)``). Falls back to :func:`median_bandwidth` when
    that median is 0 (the Gaussian would be undefined)."""
    y = outputs.to(_acc(outputs)).reshape(-1)
    med = torch.quantile(y, 0.5).abs()
    return med if med > 0 else median_bandwidth(y)


def resolve_bandwidth(outputs: torch.Tensor, bandwidth: str | float | torch.Tensor) -> torch.Tensor:
    """The RBF width for ``outputs``: a rule of :data:`BANDWIDTHS` or a positive number."""
    y = outputs.to(_acc(outputs)).reshape(-1)
    if isinstance(bandwidth, str):
        if bandwidth not in BANDWIDTHS:
            raise ValueError(
                f"bandwidth: unknown rule {bandwidth!r}; valid: {BANDWIDTHS.names()} or a number"
            )
        return BANDWIDTHS.get(bandwidth)(y)
    if bandwidth is None or isinstance(bandwidth, bool):
        raise ValueError(f"bandwidth: expected {BANDWIDTHS.names()} or a positive number, got {bandwidth!r}")
    sigma = torch.as_tensor(bandwidth, dtype=y.dtype, device=y.device)
    if not float(sigma) > 0:
        raise ValueError(f"bandwidth: expected a positive number, got {float(sigma)}")
    return sigma


def output_gram(
    outputs: torch.Tensor, bandwidth: str | float | torch.Tensor = "median_output"
) -> torch.Tensor:
    """RBF Gram (p, p) of the outputs, ``exp(-(y_a - y_b)^2 / (2 sigma^2))``; see :func:`resolve_bandwidth`."""
    y = outputs.to(_acc(outputs)).reshape(-1)
    sigma = resolve_bandwidth(y, bandwidth)
    return torch.exp(-((y[:, None] - y[None, :]) ** 2) / (2.0 * sigma**2))


def center_gram(L: torch.Tensor) -> torch.Tensor:
    """``H L H`` with ``H = I - 11^T / p`` (subtract row and column means, add back the grand mean)."""
    return L - L.mean(0, keepdim=True) - L.mean(1, keepdim=True) + L.mean()


def input_grams(masks: torch.Tensor) -> torch.Tensor:
    """The explicit per-cell input kernels (d, p, p): ``K_i[a, b] = 1/2 - (m_ai - m_bi)^2``."""
    m = masks.to(_acc(masks)).T  # (d, p)
    return 0.5 - (m[:, :, None] - m[:, None, :]) ** 2


def _check_binary(masks: torch.Tensor) -> torch.Tensor:
    if masks.ndim != 2:
        raise ValueError(f"masks: expected a (p, d) design, got shape {tuple(masks.shape)}")
    if not bool(((masks == 0) | (masks == 1)).all()):
        raise ValueError("masks: HSIC expects binary masks (values in {0, 1})")
    return 2.0 * masks.to(_acc(masks)) - 1.0  # s in {-1, +1}


def hsic_scores(
    masks: torch.Tensor, outputs: torch.Tensor, bandwidth: str | float | torch.Tensor = "median_output"
) -> torch.Tensor:
    """First-order HSIC of each cell (d,): ``tr(K_i H L H) / (p - 1)^2``.

    Parameters
    ----------
    masks
        Binary designs (p, d).
    outputs
        Scores (p,).
    bandwidth
        RBF width of the output kernel: ``"median_output"`` (default, Xplique's), ``"median_distance"``
        or a positive number (see the module notes).
    """
    s = _check_binary(masks)
    p = len(s)
    Lc = center_gram(output_gram(outputs.to(s.device), bandwidth))
    return ((Lc @ s) * s).sum(0) / (2.0 * (p - 1) ** 2)


def hsic_interaction_scores(
    masks: torch.Tensor,
    outputs: torch.Tensor,
    bandwidth: str | float | torch.Tensor = "median_output",
    chunk: int = 512,
) -> torch.Tensor:
    """Pairwise HSIC interactions (d, d): ``tr((K_i o K_j) H L H) / (p - 1)^2``, zero diagonal.

    The pairs are processed ``chunk`` at a time as columns ``z = s_i * s_j`` (p, chunk), so memory is
    O(p^2 + p * chunk) whatever ``d``.
    """
    s = _check_binary(masks)
    p, d = s.shape
    Lc = center_gram(output_gram(outputs.to(s.device), bandwidth))
    ii, jj = torch.triu_indices(d, d, 1, device=s.device)
    vals = torch.empty(len(ii), dtype=s.dtype, device=s.device)
    for start in range(0, len(ii), chunk):
        sl = slice(start, start + chunk)
        z = s[:, ii[sl]] * s[:, jj[sl]]
        vals[sl] = ((Lc @ z) * z).sum(0)
    out = torch.zeros(d, d, dtype=s.dtype, device=s.device)
    out[ii, jj] = vals / (4.0 * (p - 1) ** 2)
    out[jj, ii] = out[ii, jj]
    return out
