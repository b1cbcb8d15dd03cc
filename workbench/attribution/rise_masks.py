"""RISE (Petsiuk, Das & Saenko, BMVC 2018): randomized input sampling for explanation.

Masks: a binary ``grid_size x grid_size`` grid whose cells are kept with probability ``p`` is
upsampled bilinearly to ``(grid_size + 1) * cell`` pixels (``cell = ceil(H / grid_size)``, per
dimension) and cropped to H x W at a random offset in ``[0, cell)``, as in the paper's code.

Estimators (``estimator=``), both about ``E[f | pixel kept]``:

- ``"expectation"`` (default, the paper's): ``sum_m f(x * M_m) M_m / (n_masks * p)``, dividing by the
  *expected* mask sum ``n_masks * p``.
- ``"mask_sum"`` (Xplique's): ``sum_m f(x * M_m) M_m / sum_m M_m``, dividing by each pixel's *actual*
  mask sum. With finite masks a pixel kept more often than ``n_masks * p`` is no longer inflated by it.

Centring (``center=True``, our default) subtracts the mean masked score ``mean f`` from every score
before the sum: ``sum_m (f_m - mean f) M_m / (n_masks * p)``, an estimate of ``E[f | pixel kept] - E[f]``:
positive where keeping the pixel raises the score, negative where it lowers it. Without it the map
carries an offset of about ``E[f]`` everywhere (for a non-negative score the object can never weigh
more than twice the background at ``p = 1/2``). With ``"expectation"`` the subtracted term is
``mean f * sum_m M_m / (n_masks * p)``: constant only in expectation; with finite masks each pixel's
mask sum differs, so centring **changes the ranking** (measured on the texture CNN: Spearman 0.84 and
0.79 between centred and uncentred maps on the same masks, 0.33 on one image); it also changes the
deletion and insertion curves. With ``"mask_sum"`` the subtracted term is exactly ``mean f``, a
constant, so centring leaves the ranking unchanged there. ``center=False, estimator="expectation"`` is
the paper's estimator exactly; ``center=False, estimator="mask_sum"`` is Xplique's.

Only the small grids and the shifts are drawn up front (from a CPU generator, so a seed gives the same
masks on every device); full-size masks are made on the model's device one batch at a time.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from workbench._core.batching import default_batch_size
from workbench._core.progress import auto_progress
from workbench._core.progress import progress as _progress
from workbench._core.seeding import make_generator
from workbench._core.validation import check_int
from workbench.attribution._base import batched_scores, finite_maps, prepare
from workbench.attribution.perturbations import Perturbation, resolve_perturbation
from workbench.attribution.registry import register


class RiseMasks:
    """The RISE masks of one seed, made on demand: ``masks[sl]`` -> (B, H, W) float on ``device``.

    Parameters
    ----------
    n_masks, grid_size, p
        How many masks, the grid side, the keep probability of a cell.
    size
        (H, W) of the images.
    seed
        An int or a CPU ``torch.Generator``.
    device
        Where the full-size masks are made.
    """

    def __init__(
        self,
        n_masks: int,
        grid_size: int,
        p: float,
        size: tuple[int, int],
        seed: int | torch.Generator = 0,
        device: torch.device | str = "cpu",
    ):
        self.size = size
        self.device = torch.device(device)
        gen = make_generator(seed)
        self.cell = tuple(math.ceil(s / grid_size) for s in size)
        self.up_size = tuple((grid_size + 1) * c for c in self.cell)
        self.grids = (torch.rand(n_masks, grid_size, grid_size, generator=gen) < p).to(self.device)
        shifts = [torch.randint(0, c, (n_masks,), generator=gen) for c in self.cell]
        self.shifts = torch.stack(shifts, 1).to(self.device)  # (n_masks, 2): row, column offsets
        self._rows = torch.arange(size[0], device=self.device)
        self._cols = torch.arange(size[1], device=self.device)

    def __len__(self) -> int:
        return len(self.grids)

    def __getitem__(self, sl: slice) -> torch.Tensor:
        grids = self.grids[sl].float()[:, None]
        up = F.interpolate(grids, size=self.up_size, mode="bilinear", align_corners=False)[:, 0]
        shifts = self.shifts[sl]
        rows = (shifts[:, 0, None] + self._rows)[:, :, None]  # (B, H, 1)
        cols = (shifts[:, 1, None] + self._cols)[:, None, :]  # (B, 1, W)
        batch = torch.arange(len(up), device=self.device)[:, None, None]
        return up[batch, rows, cols].clamp_(0.0, 1.0)  # bilinear weights sum to 1, up to rounding


RISE_ESTIMATORS = ("expectation", "mask_sum")


def check_probability(p: float) -> float:
    if not isinstance(p, int | float) or not 0.0 < float(p) < 1.0:
        raise ValueError(f"p: expected a probability strictly between 0 and 1, got {p!r}")
    return float(p)


@register("rise", paper="Petsiuk, Das & Saenko, RISE: Randomized Input Sampling for Explanation, BMVC 2018")
def rise(
    model,
    x: torch.Tensor,
    y: torch.Tensor | int,
    *,
    n_masks: int = 4000,
    grid_size: int = 7,
    p: float = 0.5,
    perturbation: str | Perturbation = "inpainting",
    perturbation_size: float | None = None,
    center: bool = True,
    estimator: str = "expectation",
    batch_size: int | None = None,
    seed: int | torch.Generator = 0,
    upsample: bool = True,
    progress: bool | None = None,
) -> torch.Tensor:
    """RISE maps: the score-weighted average of random smooth masks, ``sum_m f(x*M_m) M_m / (N p)``.

    Parameters
    ----------
    model
        A workbench Model (pixel-space input), an ``nn.Module`` or a callable (N, C, H, W) -> (N, K).
    x
        Images (N, C, H, W); in [0, 1] for a workbench Model. With the default perturbation, masks
        multiply every channel, so the implicit baseline is 0 (black).
    y
        Target classes (N,) or one int for all images.
    n_masks
        Masks per image (the paper uses 4,000 to 8,000). All images share the same masks.
    grid_size
        Side of the binary grid (7 in the paper); must not exceed the image size.
    p
        Probability that a grid cell is kept, in (0, 1).
    perturbation, perturbation_size
        How a mask is applied: ``"inpainting"`` (``x * M``, the paper's, default), ``"blurring"``,
        ``"amplitude"`` or a callable ``fn(x, masks)``; see :mod:`workbench.attribution.perturbations`.
    center
        Subtract the mean masked score (default). It changes the ranking with ``"expectation"`` (finite
        masks), not with ``"mask_sum"``; see the module notes. False: the paper's (or Xplique's) estimator.
    estimator
        ``"expectation"`` (default, the paper's: divide by ``n_masks * p``) or ``"mask_sum"`` (Xplique's:
        divide by each pixel's mask sum).
    batch_size
        Masked images per forward pass; None (default) from the image size
        (:func:`workbench._core.batching.default_batch_size`).
    seed
        An int or a CPU ``torch.Generator``; same seed, same masks, same maps (whatever batch_size).
    upsample
        True: maps (N, H, W). False: (N, grid_size, grid_size), the full-resolution map averaged over
        each cell of a ``grid_size`` grid (adaptive average pooling). Because of the random shifts,
        the small binary grids do not line up with fixed image regions, so they are not used directly.
    progress
        A progress bar ticking per forward pass; None (default) shows it beyond about 1,000 passes.

    Returns
    -------
    torch.Tensor
        Maps on the model's device, float32. The score ``f`` is the model's raw output for class
        ``y`` (logits for a workbench Model; the paper used probabilities: wrap the model in a
        softmax for that).

    Notes
    -----
    Forward passes: ``N * ceil(n_masks / batch_size)``, each with at most ``batch_size`` inputs.
    Peak memory holds one batch of full-size masks and masked images.
    """
    forward, x, y = prepare(model, x, y)  # NumPy images and targets are converted there
    n, _, h, w = x.shape
    check_int(n_masks, "n_masks")
    check_int(grid_size, "grid_size")
    batch_size = default_batch_size((h, w), x.device) if batch_size is None else batch_size
    check_int(batch_size, "batch_size")
    if estimator not in RISE_ESTIMATORS:
        raise ValueError(f"estimator: expected one of {RISE_ESTIMATORS}, got {estimator!r}")
    p = check_probability(p)
    if grid_size > min(h, w):
        raise ValueError(f"grid_size: {grid_size} is larger than the images ({h}, {w})")
    perturb = resolve_perturbation(perturbation, perturbation_size)
    masks = RiseMasks(n_masks, grid_size, p, (h, w), seed=seed, device=x.device)

    sal = torch.zeros(n, h * w, device=x.device)
    score_sum = torch.zeros(n, device=x.device)
    mask_sum = torch.zeros(h * w, device=x.device)
    batches = [slice(s, min(s + batch_size, n_masks)) for s in range(0, n_masks, batch_size)]
    show = auto_progress(progress, n * n_masks)
    steps = [(sl, i) for sl in batches for i in range(n)]  # masks of a batch are made once, used n times
    m = flat = None
    for sl, i in _progress(steps, enabled=show, desc="rise", total=len(steps)):
        if i == 0:
            m = masks[sl]  # (B, H, W)
            flat = m.reshape(len(m), -1)
            mask_sum += flat.sum(0)
        scores = batched_scores(forward, perturb(x[i : i + 1], m[:, None].to(x.dtype)), y[i], batch_size)
        sal[i] += scores @ flat
        score_sum[i] += scores.sum()
    if center:  # sum_m (f_m - mean f) M_m = sum_m f_m M_m - mean f * sum_m M_m
        sal -= (score_sum / n_masks)[:, None] * mask_sum[None]
    if estimator == "expectation":
        maps = (sal / (n_masks * p)).view(n, h, w)
    else:  # a pixel no mask kept has no estimate: 0 (its numerator is 0 too)
        maps = (sal / mask_sum.clamp(min=1e-12)[None]).view(n, h, w)
    if not upsample:
        maps = F.adaptive_avg_pool2d(maps[:, None], grid_size)[:, 0]
    return finite_maps(maps.float())
