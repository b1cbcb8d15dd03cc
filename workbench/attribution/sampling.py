"""Seeded samplers of designs in the unit cube, shared by Sobol, HSIC and other mask-based methods.

A sampler draws ``n`` points in ``d`` dimensions, every coordinate in [0, 1); the result is a float32
tensor (n, d) on the requested device. Points are always drawn on the CPU with a seeded generator and
then moved, so the same seed gives the same design on every device.

Continuous samplers (:data:`SAMPLERS`):

- ``"sobol"``: scrambled Sobol sequence (``scipy.stats.qmc.Sobol``, LMS + digital shift); ``n`` must be a
  power of 2, the sizes at which a Sobol sequence is balanced.
- ``"sobol_unscrambled"``: the plain Sobol sequence (its first point is the origin); power of 2 too. The
  seed is ignored: the sequence is deterministic.
- ``"sobol_xplique"``: Xplique's design (``TFSobolSequenceRS`` / ``TFSobolSequence``): the plain Sobol
  sequence **without its first point** (the origin), so points 1 to ``n``; any ``n`` (Xplique draws
  1,000 HSIC masks), seed ignored. Binary masks from it are rounded as Xplique rounds them
  (``tf.round``, half to even: a coordinate of exactly 0.5, frequent in this sequence, gives 0).
- ``"halton"``: scrambled Halton sequence (``scipy.stats.qmc.Halton``).
- ``"halton_xplique"``: Xplique's ``HaltonSequenceRS`` (the sampler of its CRAFT concept importance):
  the plain, unscrambled Halton sequence **with** its first point (the origin, so the first ``A`` row
  masks every variable to 0); any ``n``, seed ignored.
- ``"lhs"``: Latin hypercube (``scipy.stats.qmc.LatinHypercube``): each column is stratified into ``n``
  equal bins with one point per bin.
- ``"uniform"``: i.i.d. uniform draws (``torch.rand`` with a seeded generator).

Binary masks (:func:`binary_masks`) threshold any of these at 0.5 (``>= 0.5`` is kept; ``> 0.5`` for
``"sobol_xplique"``, see above), so each cell is kept with probability 1/2. Two aliases name the binary designs: ``"bernoulli"`` (thresholded ``"uniform"``: i.i.d.
Bernoulli(1/2)) and ``"sobol_binary"`` (thresholded scrambled ``"sobol"``). Thresholded LHS keeps
exactly ``n // 2`` cells on per column.

.. warning::
   Binary Sobol masks alias interactions: the first bits of the Sobol coordinates form a linear code over
   GF(2), so the product (XOR) of two cells' masks equals the product of other pairs' masks and pairwise
   interaction scores of different pairs coincide. Main effects are unaffected. Use ``"lhs"`` or
   ``"bernoulli"`` for interactions.

Every name lives in the :data:`SAMPLERS` registry (:class:`workbench._core.registry.Registry`, with its
paper); the binary aliases in :data:`BINARY_SAMPLERS`. A user sampler is any callable ``fn(n, d, seed) -> array-like (n, d)`` with values in [0, 1].
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch
from scipy.stats import qmc

from workbench._core.registry import Registry
from workbench._core.seeding import make_generator

SamplerFn = Callable[[int, int, int], "np.ndarray | torch.Tensor"]

SAMPLERS: Registry[SamplerFn] = Registry("sampler")
# binary aliases: name -> the continuous sampler thresholded at 1/2
BINARY_SAMPLERS: Registry[str] = Registry("binary sampler")
# samplers whose binary masks round like Xplique (0.5 -> 0) instead of ``>= 0.5``
ROUNDED_HALF_DOWN = ("sobol_xplique",)

_SOBOL = "Sobol, I. M. USSR Comput. Math. & Math. Phys. 7 (1967); Joe & Kuo, SIAM J. Sci. Comput. (2008)"


def _qmc(engine, d: int, seed: int, **kw):
    """Build a scipy QMC engine with ``rng=`` (scipy >= 1.15) or ``seed=`` (older releases)."""
    try:
        return engine(d, rng=np.random.default_rng(seed), **kw)
    except TypeError:  # pragma: no cover - scipy < 1.15
        return engine(d, seed=np.random.default_rng(seed), **kw)


def _check_power_of_two(name: str, n: int) -> None:
    if n < 1 or n & (n - 1):
        lo = 1 << max(0, int(n).bit_length() - 1)
        raise ValueError(
            f"nb_design: the {name!r} sampler needs a power of 2 (Sobol sequences are balanced only at"
            f" those sizes), got {n}; use {lo} or {lo * 2}, or another sampler ('lhs', 'halton', 'uniform')"
        )


@SAMPLERS.register("sobol", paper=_SOBOL + "; Owen, scrambling (1998)")
def sobol_points(n: int, d: int, seed: int = 0) -> np.ndarray:
    """Scrambled Sobol points (n, d); ``n`` a power of 2."""
    _check_power_of_two("sobol", n)
    return _qmc(qmc.Sobol, d, seed, scramble=True).random_base2(int(n).bit_length() - 1)


@SAMPLERS.register("sobol_unscrambled", paper=_SOBOL)
def sobol_unscrambled_points(n: int, d: int, seed: int = 0) -> np.ndarray:
    """The plain Sobol sequence (n, d), starting at the origin; ``n`` a power of 2; ``seed`` unused."""
    _check_power_of_two("sobol_unscrambled", n)
    return _qmc(qmc.Sobol, d, seed, scramble=False).random_base2(int(n).bit_length() - 1)


@SAMPLERS.register(
    "sobol_xplique",
    paper=_SOBOL + "; Xplique's design (Fel et al., NeurIPS 2021; Novello et al., NeurIPS 2022)",
)
def sobol_xplique_points(n: int, d: int, seed: int = 0) -> np.ndarray:
    """Xplique's design (n, d): the plain Sobol sequence without its first point (the origin);
    ``seed`` unused. Not restricted to powers of 2, as in Xplique (``skip=1`` breaks the balance
    anyway)."""
    engine = _qmc(qmc.Sobol, d, seed, scramble=False)
    engine.fast_forward(1)
    with warnings.catch_warnings():  # scipy warns on non powers of 2: Xplique's sizes are what we match
        warnings.simplefilter("ignore", UserWarning)
        return engine.random(int(n))


@SAMPLERS.register("halton", paper="Halton, Numer. Math. 2 (1960); Owen, scrambled Halton (2017)")
def halton_points(n: int, d: int, seed: int = 0) -> np.ndarray:
    """Scrambled Halton points (n, d)."""
    return _qmc(qmc.Halton, d, seed, scramble=True).random(n)


@SAMPLERS.register(
    "halton_xplique",
    paper="Halton, Numer. Math. 2 (1960); Xplique's HaltonSequenceRS (CRAFT, Fel et al., CVPR 2023)",
)
def halton_xplique_points(n: int, d: int, seed: int = 0) -> np.ndarray:
    """Xplique's Halton design (n, d): the unscrambled Halton sequence from its first point (the
    origin), as ``HaltonSequenceRS``; ``seed`` unused (the sequence is deterministic)."""
    return _qmc(qmc.Halton, d, seed, scramble=False).random(int(n))


@SAMPLERS.register("lhs", paper="McKay, Beckman & Conover, Technometrics 21 (1979)")
def lhs_points(n: int, d: int, seed: int = 0) -> np.ndarray:
    """Latin hypercube points (n, d): one point per 1/n stratum in every column."""
    return _qmc(qmc.LatinHypercube, d, seed).random(n)


@SAMPLERS.register("uniform", paper="i.i.d. uniform (Monte Carlo)")
def uniform_points(n: int, d: int, seed: int = 0) -> torch.Tensor:
    """I.i.d. uniform points (n, d) from a seeded CPU ``torch.Generator``."""
    return torch.rand(n, d, generator=make_generator(seed), dtype=torch.float64)


BINARY_SAMPLERS.register(
    "bernoulli", "uniform", paper="i.i.d. Bernoulli(1/2) masks (RISE, Petsiuk et al. 2018)"
)
BINARY_SAMPLERS.register(
    "sobol_binary", "sobol", paper="thresholded scrambled Sobol (Novello et al., NeurIPS 2022; Xplique)"
)


def sampler_names(binary: bool = False) -> list[str]:
    """The valid sampler names (with the binary aliases when ``binary``)."""
    return sorted([*SAMPLERS, *BINARY_SAMPLERS]) if binary else SAMPLERS.names()


def resolve_sampler(sampler: str | SamplerFn, binary: bool = False) -> SamplerFn:
    """The sampler function for a name (or the callable itself); ValueError listing valid names."""
    if callable(sampler):
        return sampler
    name = BINARY_SAMPLERS.get(sampler) if binary and sampler in BINARY_SAMPLERS else sampler
    if not isinstance(name, str) or name not in SAMPLERS:
        raise ValueError(
            f"sampler: unknown sampler {sampler!r}; valid: {sampler_names(binary)} or a callable"
        )
    return SAMPLERS[name]


def sample(
    sampler: str | SamplerFn,
    n: int,
    d: int,
    seed: int = 0,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Draw ``n`` points in ``[0, 1)^d`` with ``sampler`` (a name in :data:`SAMPLERS` or a callable).

    Parameters
    ----------
    sampler
        A name in :data:`SAMPLERS` or ``fn(n, d, seed) -> (n, d)`` array-like in [0, 1].
    n, d
        Number of points and dimension (both >= 1).
    seed
        Seeds the draw (scrambling for quasi-Monte Carlo sequences): same seed, same points.
    device, dtype
        Where and in which float type the points are returned.

    Returns
    -------
    torch.Tensor
        (n, d) points.
    """
    if int(n) < 1 or int(d) < 1:
        raise ValueError(f"sample: n and d must be positive integers, got n={n}, d={d}")
    fn = resolve_sampler(sampler)
    points = fn(int(n), int(d), int(seed))
    points = (
        points.detach().cpu() if isinstance(points, torch.Tensor) else torch.as_tensor(np.asarray(points))
    )
    if points.shape != (n, d):
        raise ValueError(f"sampler: expected points of shape ({n}, {d}), got {tuple(points.shape)}")
    points = points.to(dtype=torch.float64)
    if bool(torch.isnan(points).any()) or float(points.min()) < 0.0 or float(points.max()) > 1.0:
        raise ValueError("sampler: points must lie in [0, 1] without NaN")
    return points.to(device=device, dtype=dtype)


def binary_masks(
    sampler: str | SamplerFn,
    n: int,
    d: int,
    seed: int = 0,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Binary designs (n, d) in {0, 1}: ``sample(...) >= 0.5``, each cell kept with probability 1/2.

    ``sampler`` also accepts the aliases ``"bernoulli"`` (i.i.d. Bernoulli(1/2)) and ``"sobol_binary"``
    (thresholded scrambled Sobol, which aliases pairwise interactions: see the module notes).
    ``"sobol_xplique"`` rounds as Xplique does (``> 0.5``: its many exact 0.5 coordinates give 0).
    """
    fn = resolve_sampler(sampler, binary=True)
    points = sample(fn, n, d, seed, device="cpu", dtype=torch.float64)
    keep = points > 0.5 if isinstance(sampler, str) and sampler in ROUNDED_HALF_DOWN else points >= 0.5
    return keep.to(device=device, dtype=dtype)
