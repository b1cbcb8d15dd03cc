"""Baselines: what a removed pixel becomes. Every metric that removes information takes one.

A baseline can be given as

- a **number**: a constant colour in pixel space on all channels (0.0 is black);
- a **tensor** or NumPy array of one of the shapes every baseline argument accepts
  (:func:`workbench._core.validation.check_baseline`): (), (C, 1, 1), (1, C, 1, 1), (C, H, W),
  (1, C, H, W) or (N, C, H, W). Any image works, for instance the feature-visualization baseline proposed by Picard et
  al. (2025), computed elsewhere and passed as a plain (C, H, W) tensor;
- a **callable** ``baseline(x) -> tensor`` of one of those shapes, built per image batch (it receives a
  copy of ``x``, so it cannot modify the caller's images);
- a **name** from :data:`BASELINES` (``"zero"``, ``"mean"``, ``"uniform"``, ``"blur"``,
  ``"local_mean"``, ``"scramble"``, ``"road"``), with the default parameters; build the object
  (``Blur(sigma=3.0)``, or ``get_baseline("blur", sigma=3.0)``) to change them;
- a **mask-aware** baseline: any object with a method ``fill(x, removed) -> images`` (see
  :class:`MaskAware`). Its fill depends on *which* pixels are removed, so deletion and insertion call it
  once per batch of perturbed images instead of computing one baseline image up front. :class:`Road` is
  one; calling it like a static baseline (``road(x)``) removes every pixel.

Why this matters: the baseline decides which attribution method wins a deletion or insertion benchmark,
even for a linear model (Picard et al., "Back to the Baseline: Examining Baseline Effects on
Explainability Metrics", 2025). :mod:`workbench.metrics.baseline_effects` measures the two properties
they ask of a baseline: it removes the class information, and it stays close to the data.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from workbench._core.filters import gaussian_blur
from workbench._core.registry import Registry
from workbench._core.seeding import make_generator
from workbench._core.validation import as_tensor, check_baseline, check_fraction, check_int, closest_names

__all__ = [
    "BASELINES",
    "Baseline",
    "Blur",
    "LocalMean",
    "MaskAware",
    "Mean",
    "NamedBaseline",
    "Road",
    "Scramble",
    "Uniform",
    "Zero",
    "get_baseline",
    "list_baselines",
    "resolve_baseline",
    "resolve_fill",
]


@runtime_checkable
class MaskAware(Protocol):
    """A baseline whose fill depends on which pixels are removed (for instance ROAD's imputation).

    ``fill(x, removed)`` receives images ``x`` (B, C, H, W) and a boolean mask ``removed`` (B, 1, H, W),
    True where a pixel is removed, and returns new images (B, C, H, W): the kept pixels equal to ``x``,
    the removed ones filled. It must not modify ``x``. Deletion and insertion call it on every batch of
    perturbed images.
    """

    def fill(self, x: torch.Tensor, removed: torch.Tensor) -> torch.Tensor: ...


Baseline = float | str | torch.Tensor | Callable[[torch.Tensor], torch.Tensor] | MaskAware


# -- checks -----------------------------------------------------------------------------------------
def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed: expected an integer, got {seed!r}")
    return int(seed)


def _check_positive(value, name: str, allow_zero: bool = False) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and value == value
    if not ok or value < 0 or (value == 0 and not allow_zero) or value == float("inf"):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}: expected a finite number {bound}, got {value!r}")
    return float(value)


# -- named baselines --------------------------------------------------------------------------------
class NamedBaseline:
    """Base class of the named baselines: a callable ``baseline(x) -> (N, C, H, W)``, never in place.

    Subclasses are frozen dataclasses whose fields are the parameters, checked on construction.
    """

    name: ClassVar[str] = ""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


@dataclass(frozen=True)
class Zero(NamedBaseline):
    """Black: every removed pixel is 0 in pixel space (Xplique's and Petsiuk et al.'s default)."""

    name: ClassVar[str] = "zero"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


@dataclass(frozen=True)
class Mean(NamedBaseline):
    """Each image's own mean colour, per channel: (N, C, 1, 1) expanded to the image size."""

    name: ClassVar[str] = "mean"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3), keepdim=True).expand_as(x)


@dataclass(frozen=True)
class Uniform(NamedBaseline):
    """Uniform noise in [0, 1], independent per pixel, channel and image.

    Drawn on the CPU from ``seed`` then moved to the images' device, so the same seed gives the same
    noise on every device (for the same number and size of images).
    """

    seed: int = 0
    name: ClassVar[str] = "uniform"

    def __post_init__(self):
        _check_seed(self.seed)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        g = make_generator(self.seed)
        return torch.rand(x.shape, generator=g).to(device=x.device, dtype=x.dtype)


@dataclass(frozen=True)
class Blur(NamedBaseline):
    """A Gaussian blur of the image itself, ``sigma`` in pixels (default 5), replicate-padded borders.

    The default keeps the layout and colours of a 64 px image but removes its edges and textures; scale
    it with the image (about 15-20 px at 224 px). Fong & Vedaldi (ICCV 2017) perturb by blurring; RISE's
    insertion metric (Petsiuk et al. 2018) starts from a blurred image.
    """

    sigma: float = 5.0
    name: ClassVar[str] = "blur"

    def __post_init__(self):
        _check_positive(self.sigma, "sigma")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return gaussian_blur(x, float(self.sigma))


@dataclass(frozen=True)
class LocalMean(NamedBaseline):
    """The mean over a ``size`` x ``size`` window around each pixel (box filter, default 9, odd).

    At the borders the mean is over the pixels inside the image only.
    """

    size: int = 9
    name: ClassVar[str] = "local_mean"

    def __post_init__(self):
        s = self.size
        if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1 or s % 2 == 0:
            raise ValueError(f"size: expected an odd integer >= 1, got {s!r}")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        s = int(self.size)
        return F.avg_pool2d(x, s, stride=1, padding=s // 2, count_include_pad=False)


@dataclass(frozen=True)
class Scramble(NamedBaseline):
    """The image's own pixels in a random order (one permutation per image, the same for all channels).

    Keeps the colour histogram exactly and destroys the layout. Seeded like :class:`Uniform`.
    """

    seed: int = 0
    name: ClassVar[str] = "scramble"

    def __post_init__(self):
        _check_seed(self.seed)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = make_generator(self.seed)
        perm = torch.rand(n, h * w, generator=g).argsort(1).to(x.device)
        return x.flatten(2).gather(2, perm[:, None].expand(n, c, -1)).view_as(x)


# ROAD's neighbour weights (tleemann/road_evaluation, NoisyLinearImputer): 1/6 for the 4 direct
# neighbours, 1/12 for the 4 diagonal ones; they sum to 1.
_ROAD_WEIGHTS = torch.tensor([[1 / 12, 1 / 6, 1 / 12], [1 / 6, 0.0, 1 / 6], [1 / 12, 1 / 6, 1 / 12]])


@dataclass(frozen=True)
class Road(NamedBaseline):
    """ROAD's noisy linear imputation: a removed pixel is the weighted mean of its 8 neighbours, plus noise.

    Rong, Leemann, Borisov, Kasneci & Kasneci, "A Consistent and Efficient Evaluation Strategy for
    Attribution Methods" (ROAD), ICML 2022. The removed pixels solve the sparse linear system

        s_p v_p - sum_{q in N(p), q removed} w_pq v_q = sum_{q in N(p), q kept} w_pq x_q

    with weights w = 1/6 for direct and 1/12 for diagonal neighbours and s_p the sum of the weights of
    p's neighbours inside the image (as in the reference code), so every removed pixel equals the
    weighted mean of its neighbours: a discrete harmonic fill of the holes from their borders. Then
    Gaussian noise of standard deviation ``noise`` is added to the removed pixels (the reference's
    default 0.01) and the result is clipped to [0, 1] (pixel space).

    The system is symmetric positive definite for every image that keeps at least one pixel; it is
    solved for all images and channels of a batch at once by conjugate gradients with a diagonal
    preconditioner (3 x 3 convolutions on the images' device, no per-pixel Python loop), starting from
    a push-pull guess (mask-weighted means on an image pyramid), until the residual of every system is
    below ``tol`` times its right-hand side (or ``max_iter`` iterations). An image with every pixel
    removed has no solution to interpolate: its pixels take ``fill_value`` (plus the noise).

    The noise is one field (C, H, W) drawn on the CPU from ``seed`` and shared by all images and
    steps, so results do not depend on the batch size or the device.

    Parameters
    ----------
    noise
        Standard deviation of the noise added to the imputed pixels, in pixel units (default 0.01).
    seed
        Seed of the noise field.
    fill_value
        Value of the pixels of an image with nothing kept (default 0.5, mid-grey).
    tol
        Relative residual at which conjugate gradients stop (default 1e-4: on 64 px PlantedShapes
        images the imputed pixels are then within about 1e-3 of the exact solution, a tenth of the
        default noise).
    max_iter
        Most conjugate-gradient iterations (default 2000).
    """

    noise: float = 0.01
    seed: int = 0
    fill_value: float = 0.5
    tol: float = 1e-4
    max_iter: int = 2000
    name: ClassVar[str] = "road"

    def __post_init__(self):
        _check_positive(self.noise, "noise", allow_zero=True)
        _check_seed(self.seed)
        check_fraction(self.fill_value, "fill_value")
        _check_positive(self.tol, "tol")
        check_int(self.max_iter, "max_iter")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The fully removed image: ``fill_value`` plus the noise (nothing is left to interpolate)."""
        return self.fill(x, torch.ones(len(x), 1, *x.shape[-2:], dtype=torch.bool, device=x.device))

    def fill(self, x: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
        """Impute the ``removed`` pixels (B, 1, H, W) of ``x`` (B, C, H, W); returns new images."""
        n, c, h, w = x.shape
        if removed.shape != (n, 1, h, w) or removed.dtype != torch.bool:
            raise ValueError(
                f"removed: expected a bool mask of shape ({n}, 1, {h}, {w}), got"
                f" {tuple(removed.shape)} {removed.dtype}"
            )
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        xs = x.detach().to(dtype)
        u = removed.to(dtype)  # 1 where the pixel is an unknown
        solved = solve_harmonic(xs, u, tol=self.tol, max_iter=self.max_iter)
        everything = removed.flatten(1).all(1).view(n, 1, 1, 1)
        solved = torch.where(everything, torch.full_like(solved, self.fill_value), solved)
        if self.noise > 0:
            g = make_generator(self.seed)
            field = torch.randn((c, h, w), generator=g, dtype=torch.float64).to(device=x.device, dtype=dtype)
            solved = solved + self.noise * field
        out = torch.where(removed, solved.clamp(0.0, 1.0), xs)
        return out.to(x.dtype)


def _neighbour_sum(v: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """sum_q w_pq v_q over the 8 neighbours inside the image (zero padding), per channel."""
    c = v.shape[1]
    return F.conv2d(v, kernel.expand(c, 1, 3, 3), padding=1, groups=c)


def _push_pull(x: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """A smooth first guess for the holes: mask-weighted means on a pyramid of 2 x 2 poolings, each
    hole taking the value of the finest level where its cell holds a known pixel (upsampled bilinearly).
    It removes the low frequencies of the error, the ones conjugate gradients reduce slowest."""
    vals, wts = [x * known], [known]
    while min(vals[-1].shape[-2:]) > 1:
        vals.append(F.avg_pool2d(vals[-1], 2, ceil_mode=True))
        wts.append(F.avg_pool2d(wts[-1], 2, ceil_mode=True))
    guess = vals[-1] / wts[-1].clamp_min(1e-12)
    for v, wt in zip(reversed(vals[:-1]), reversed(wts[:-1]), strict=True):
        up = F.interpolate(guess, size=v.shape[-2:], mode="bilinear", align_corners=False)
        guess = torch.where(wt > 0, v / wt.clamp_min(1e-12), up)
    return guess


def solve_harmonic(
    x: torch.Tensor, unknown: torch.Tensor, tol: float = 1e-4, max_iter: int = 2000
) -> torch.Tensor:
    """Solve ROAD's linear system for the ``unknown`` pixels (float mask (N, 1, H, W)) of every image.

    Returns images whose unknown pixels hold the solution and whose known pixels equal ``x``. Images
    without a known pixel are returned with their unknowns at 0 (the caller fills them). Batched
    preconditioned conjugate gradients, one system per image and channel.
    """
    n, c, h, w = x.shape
    kernel = _ROAD_WEIGHTS.to(device=x.device, dtype=x.dtype).view(1, 1, 3, 3)
    known = 1.0 - unknown
    # s_p: the weights of p's neighbours inside the image (1 in the interior, less on the borders)
    s = _neighbour_sum(torch.ones(1, 1, h, w, device=x.device, dtype=x.dtype), kernel)

    def apply(v):  # A v on the unknowns, v zero on the known pixels
        return unknown * (s * v - _neighbour_sum(v, kernel))

    b = unknown * _neighbour_sum(x * known, kernel)
    v = unknown * _push_pull(x, known)
    r = b - apply(v)
    inv_diag = unknown / s
    z = inv_diag * r
    p = z
    rz = (r * z).sum((2, 3), keepdim=True)
    b_norm = b.square().sum((2, 3), keepdim=True).sqrt().clamp_min(1e-30)
    for it in range(max_iter):
        # the stopping test syncs with the device: every 8 iterations only
        if it % 8 == 0 and not bool((r.square().sum((2, 3), keepdim=True).sqrt() > tol * b_norm).any()):
            break
        ap = apply(p)
        pap = (p * ap).sum((2, 3), keepdim=True)
        alpha = torch.where(pap > 0, rz / pap.clamp_min(1e-300), torch.zeros_like(pap))
        v = v + alpha * p
        r = r - alpha * ap
        z = inv_diag * r
        rz_new = (r * z).sum((2, 3), keepdim=True)
        beta = torch.where(rz > 0, rz_new / rz.clamp_min(1e-300), torch.zeros_like(rz))
        p = z + beta * p
        rz = rz_new
    return torch.where(unknown.bool(), v, x)


BASELINES: Registry[type[NamedBaseline]] = Registry("baseline")
for _cls, _paper in (
    (Zero, "Petsiuk, Das & Saenko, RISE, BMVC 2018 (deletion's black canvas; Xplique's default)"),
    (
        Mean,
        "Sturmfels, Lundberg & Lee, Visualizing the Impact of Feature Attribution Baselines, Distill 2020",
    ),
    (
        Uniform,
        "Sturmfels, Lundberg & Lee, Visualizing the Impact of Feature Attribution Baselines, Distill 2020",
    ),
    (Blur, "Fong & Vedaldi, Interpretable Explanations of Black Boxes by Meaningful Perturbation, ICCV 2017"),
    (
        LocalMean,
        "Picard et al., Back to the Baseline: Examining Baseline Effects on Explainability Metrics, 2025",
    ),
    (
        Scramble,
        "Picard et al., Back to the Baseline: Examining Baseline Effects on Explainability Metrics, 2025",
    ),
    (Road, "Rong, Leemann, Borisov, Kasneci & Kasneci, ROAD, ICML 2022"),
):
    BASELINES.register(_cls.name, _cls, paper=_paper)


def list_baselines() -> list[str]:
    """Names of the named baselines, sorted, for ``deletion(..., baseline=name)`` and :func:`get_baseline`.

    ``BASELINES.table()`` lists them with their papers.
    """
    return BASELINES.names()


def get_baseline(name: str, **params) -> NamedBaseline:
    """The named baseline ``name`` built with ``params`` (``get_baseline("blur", sigma=3.0)``).

    Parameters
    ----------
    name
        One of :func:`list_baselines`: "zero", "mean", "uniform", "blur", "local_mean", "scramble",
        "road" (Rong et al., ICML 2022).
    **params
        The parameters of that baseline's class (:class:`Blur`, :class:`Road`, ...).

    Returns
    -------
    NamedBaseline
        A callable ``baseline(x) -> (N, C, H, W)``; :class:`Road` is also mask-aware (``fill``).

    Raises
    ------
    ValueError
        For an unknown name (with the closest valid names) or a bad parameter.
    """
    if not isinstance(name, str) or name not in BASELINES:
        close = closest_names(str(name), BASELINES)
        raise ValueError(
            f"baseline: unknown name {name!r}; closest: {close}; valid names: {list_baselines()}"
        )
    cls = BASELINES[name]
    try:
        return cls(**params)
    except TypeError as err:
        fields = [f for f in cls.__dataclass_fields__]
        raise ValueError(f"baseline {name!r}: {err}; its parameters are {fields}") from None


def _named(baseline: Baseline) -> Baseline:
    # NumPy arrays become tensors first: an ndarray has a ``fill`` method, so it would otherwise pass
    # for a mask-aware baseline
    baseline = as_tensor(baseline)
    return get_baseline(baseline) if isinstance(baseline, str) else baseline


def resolve_baseline(baseline: Baseline, x: torch.Tensor, pixel_range: bool) -> torch.Tensor:
    """The baseline image (N, C, H, W) (possibly an expanded view) for images ``x``.

    A number, a tensor, a name of :data:`BASELINES`, or a callable ``baseline(x) -> tensor`` (for
    instance a blur of ``x``) whose output is checked like a tensor. A mask-aware baseline is called
    like a static one: for :class:`Road` that is the image with every pixel removed.
    """
    baseline = _named(baseline)
    if callable(baseline) and not isinstance(baseline, torch.Tensor):
        with torch.inference_mode():
            made = baseline(x.clone())  # a copy: a callable that writes in place cannot touch x
        if not isinstance(made, torch.Tensor):
            raise ValueError(f"baseline: the callable must return a tensor, got {type(made).__name__}")
        baseline = made
    elif isinstance(baseline, MaskAware) and not isinstance(baseline, torch.Tensor):
        with torch.inference_mode():
            removed = torch.ones(len(x), 1, *x.shape[-2:], dtype=torch.bool, device=x.device)
            baseline = baseline.fill(x.clone(), removed)
    return check_baseline(baseline, x, pixel_range=pixel_range)


def resolve_fill(baseline: Baseline, x: torch.Tensor, pixel_range: bool) -> torch.Tensor | MaskAware:
    """What deletion and insertion use to fill removed pixels: the mask-aware object itself (a
    :class:`MaskAware`, called per batch) or the static baseline image of :func:`resolve_baseline`."""
    baseline = _named(baseline)
    if isinstance(baseline, MaskAware) and not isinstance(baseline, torch.Tensor):
        return baseline
    return resolve_baseline(baseline, x, pixel_range=pixel_range)
