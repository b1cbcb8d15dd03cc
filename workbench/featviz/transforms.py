"""The random views a feature visualization is optimized through: crops, jitter, scale, rotation, noise.

Each step, every image is seen through ``n_crops`` random square crops resampled to the model's input
size, all in one batch (one ``grid_sample`` call). A crop's side is drawn uniformly in exactly the stated
range ``scale = (low, high)`` (as a fraction of the image side) and its centre uniformly where the whole
(rotated) crop stays inside the image: the reference toolbox draws sides in ``[high, 2 * high - low]``
(its offset starts at ``box_size[1]``) and centres from a Gaussian that leaves the image in about 3 % of
crops (Horama 0.3.0, ``common.py``; measured in issue 13).

Reference: Fel et al., Unlocking Feature Visualization for Deeper Networks with MAgnitude Constrained
Optimization (MACO), NeurIPS 2023 (crops and noise as the only regularization); Olah, Mordvintsev &
Schubert, Feature Visualization, Distill 2017 (transformation robustness).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from workbench._core.validation import check_fraction, check_int

__all__ = ["CropBoxes", "CropTransform", "crop_boxes", "random_crops"]


@dataclass(frozen=True)
class CropBoxes:
    """Crops in the image's normalized frame [0, 1]^2: centres (M, 2) as (x, y), sides (M,) as fractions
    of the image side, rotations (M,) in radians."""

    centers: torch.Tensor
    sides: torch.Tensor
    angles: torch.Tensor


def _check_scale(scale: tuple[float, float]) -> tuple[float, float]:
    if len(scale) != 2:
        raise ValueError(f"scale: expected (low, high), got {scale!r}")
    low = check_fraction(scale[0], "scale[0]", inclusive=(False, True))
    high = check_fraction(scale[1], "scale[1]", inclusive=(False, True))
    if low > high:
        raise ValueError(f"scale: low {low} is above high {high}")
    return low, high


def crop_boxes(
    m: int, scale: tuple[float, float], rotation: float = 0.0, generator: torch.Generator | None = None
) -> CropBoxes:
    """``m`` random crops: sides uniform in ``scale``, angles uniform in +-``rotation`` degrees, centres
    uniform over the positions where the rotated crop lies inside the image.

    A crop whose rotated extent exceeds the image (a side near 1 with a rotation) is centred; its
    corners then read reflected pixels.
    """
    m = check_int(m, "m")
    low, high = _check_scale(scale)
    sides = low + (high - low) * torch.rand(m, generator=generator)
    angles = math.radians(float(rotation)) * (2 * torch.rand(m, generator=generator) - 1)
    half_extent = 0.5 * sides * (angles.cos().abs() + angles.sin().abs())  # half side of the bounding box
    room = (1 - 2 * half_extent).clamp_min(0)
    centers = half_extent.clamp(max=0.5)[:, None] + room[:, None] * torch.rand(m, 2, generator=generator)
    return CropBoxes(centers, sides, angles)


def random_crops(
    images: torch.Tensor,
    n_crops: int,
    out_size: int,
    scale: tuple[float, float],
    rotation: float = 0.0,
    noise: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``n_crops`` random crops of each image, resampled to ``out_size``: (K * n_crops, C, out, out).

    The crops of image k are rows ``k * n_crops`` to ``(k + 1) * n_crops - 1``. Differentiable with
    respect to ``images`` (bilinear ``grid_sample``).

    Parameters
    ----------
    images
        (K, C, S, S).
    n_crops
        Crops per image.
    out_size
        Side of the resampled crops (the model's input size).
    scale
        (low, high): the crop side as a fraction of the image side, uniform in exactly this range.
    rotation
        Largest rotation in degrees (uniform in +-rotation).
    noise
        Standard deviation of Gaussian noise added to the crops (pixel units).
    generator
        Source of randomness (the caller's seed).
    """
    k = images.shape[0]
    n_crops = check_int(n_crops, "n_crops")
    out_size = check_int(out_size, "out_size")
    boxes = crop_boxes(k * n_crops, scale, rotation, generator)
    boxes = CropBoxes(*(t.to(images.device) for t in (boxes.centers, boxes.sides, boxes.angles)))
    cos, sin, s = boxes.angles.cos(), boxes.angles.sin(), boxes.sides
    # affine_grid maps the output's [-1, 1] frame to the input's: x_in = s * R x_out + (2 c - 1)
    theta = torch.stack(
        [
            torch.stack([s * cos, -s * sin, 2 * boxes.centers[:, 0] - 1], dim=1),
            torch.stack([s * sin, s * cos, 2 * boxes.centers[:, 1] - 1], dim=1),
        ],
        dim=1,
    ).to(images.dtype)
    source = images.repeat_interleave(n_crops, dim=0)
    grid = F.affine_grid(theta, [source.shape[0], images.shape[1], out_size, out_size], align_corners=False)
    crops = F.grid_sample(source, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if noise > 0:
        crops = crops + noise * torch.randn(crops.shape, generator=generator).to(crops)
    return crops


@dataclass(frozen=True)
class CropTransform:
    """The per-step views of :func:`workbench.featviz.visualize`: ``n_crops`` crops of sides in
    ``scale``, rotations up to ``rotation`` degrees, Gaussian ``noise``."""

    n_crops: int = 8
    scale: tuple[float, float] = (0.5, 1.0)
    rotation: float = 0.0
    noise: float = 0.02

    def __post_init__(self):
        check_int(self.n_crops, "n_crops")
        _check_scale(self.scale)
        if not (math.isfinite(self.rotation) and 0 <= self.rotation <= 180):
            raise ValueError(f"rotation: expected degrees in [0, 180], got {self.rotation!r}")
        if not (math.isfinite(self.noise) and self.noise >= 0):
            raise ValueError(f"noise: expected a standard deviation >= 0, got {self.noise!r}")

    def __call__(
        self, images: torch.Tensor, out_size: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        return random_crops(images, self.n_crops, out_size, self.scale, self.rotation, self.noise, generator)
