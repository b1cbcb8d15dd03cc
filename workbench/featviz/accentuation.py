"""``accentuate``: what a feature responds to inside a given image.

Feature accentuation (Hamblin, Fel, Saha, Konkle & Alvarez, Feature Accentuation: Revealing 'What'
Features Respond to in Natural Images, 2024) starts from the seed image's own spectrum (phase and
magnitude) and optimizes a 1/f-scaled offset of it toward an objective, regularized toward the seed in a
layer of the model (``reg="latent"``, the paper's choice) or in pixels. The result stays a variant of the
seed: here also within ``max_distance`` (root-mean-square pixel distance), enforced at every step by
shrinking the difference to the seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from workbench._core.seeding import make_generator
from workbench._core.validation import check_images, check_int
from workbench.featviz.objectives import Objective, capture, evaluate_groups
from workbench.featviz.parameterizations import SpectrumImage
from workbench.featviz.transforms import CropTransform
from workbench.featviz.visualization import (
    Callback,
    FeatureViz,
    _model_input_size,
    _objectives,
    default_crop_scale,
    optimize_images,
    resolve_spectrum,
)

__all__ = ["REGULARIZATIONS", "accentuate", "rms_distance"]

REGULARIZATIONS = ("latent", "pixel")


def rms_distance(images: torch.Tensor, seeds: torch.Tensor) -> torch.Tensor:
    """Root-mean-square pixel distance of each image to its seed: (K,)."""
    return (images - seeds).square().flatten(1).mean(1).sqrt()


def _default_layer(model: nn.Module, objectives: Sequence[Objective]) -> str:
    for o in objectives:
        if o.layers:
            return o.layers[0]
    layers = model.layers() if hasattr(model, "layers") else []
    spatial = [
        name for name in layers if not name.startswith(("global_pool", "head", "fc", "norm", "fc_norm"))
    ]
    if not spatial:
        raise ValueError("layer: no default regularization layer for this model; pass layer=")
    return spatial[-1]


def accentuate(
    model: nn.Module,
    objective: Objective | Sequence[Objective],
    seed_image: torch.Tensor,
    reg: str = "latent",
    layer: str | None = None,
    strength: float = 1.0,
    steps: int = 128,
    max_distance: float = 0.1,
    lr: float = 0.05,
    n_crops: int = 8,
    seed: int = 0,
    progress: bool = True,
    *,
    crop_scale: tuple[float, float] | None = None,
    noise: float = 0.02,
    decay: float = 1.0,
    spectrum: str | dict | torch.Tensor | None = None,
    callback: Callback | None = None,
) -> FeatureViz:
    """Accentuate ``objective`` in ``seed_image``: the image near the seed that raises the objective.

    Parameters
    ----------
    model
        A workbench :class:`~workbench.models.Model` (pixel space).
    objective
        An objective, or one per seed image.
    seed_image
        (3, H, W) or (K, 3, H, W) in [0, 1], square.
    reg
        ``"latent"``: penalize the change of ``layer``'s activations, relative to their energy,
        ``mean((a(x) - a(seed))^2) / mean(a(seed)^2)`` (Hamblin et al.); ``"pixel"``: the mean squared
        pixel change.
    layer
        The regularization layer (default: the objective's own layer; for a logit, the last spatial
        split point of the model).
    strength
        Weight of the regularization.
    steps, lr, n_crops, seed, progress, crop_scale, noise, callback
        As in :func:`workbench.featviz.visualize` (lr is NAdam's on the spectrum offset).
    max_distance
        Largest root-mean-square pixel distance to the seed (pixels in [0, 1]); enforced at every step.
    decay
        The 1/f exponent scaling the spectrum offset (low frequencies move first).
    spectrum
        Its colour matrix decorrelates the spectrum (default as in :func:`visualize`).

    Returns
    -------
    FeatureViz
        ``info`` holds the final ``distance`` (K,) to the seeds and the ``seed_final`` objective (K,).

    References
    ----------
    Hamblin, Fel, Saha, Konkle & Alvarez, Feature Accentuation: Revealing 'What' Features Respond to in
    Natural Images, 2024.
    """
    seeds = check_images(seed_image[None] if seed_image.ndim == 3 else seed_image, "seed_image", channels=3)
    objectives = _objectives(objective)
    if len(objectives) == 1 and seeds.shape[0] > 1:
        objectives = objectives * seeds.shape[0]
    if len(objectives) != seeds.shape[0]:
        raise ValueError(f"objective: {len(objectives)} objectives for {seeds.shape[0]} seed images")
    if reg not in REGULARIZATIONS:
        raise ValueError(f"reg: expected one of {REGULARIZATIONS}, got {reg!r}")
    if not (math.isfinite(strength) and strength >= 0):
        raise ValueError(f"strength: expected a finite number >= 0, got {strength!r}")
    if not (math.isfinite(lr) and lr > 0):  # lr 0 would return the seed unchanged
        raise ValueError(f"lr: expected a positive learning rate, got {lr!r}")
    if not (math.isfinite(max_distance) and max_distance > 0):
        raise ValueError(f"max_distance: expected a positive RMS distance, got {max_distance!r}")
    steps = check_int(steps, "steps")
    model_size = _model_input_size(model)
    device = next(iter(model.parameters())).device
    spec = resolve_spectrum(spectrum, model)
    images = SpectrumImage(seeds, decay=decay, color=spec.get("color"))
    start = images().detach().to(device)  # the seed as the parameterization renders it (sigmoid range)

    def project(x: torch.Tensor) -> torch.Tensor:
        # shrink the change to the seed onto the ball of radius max_distance (RMS)
        d = x - start
        # clamp before the square root: at the start x == start and sqrt'(0) = inf would make the
        # gradient 0 * inf = NaN (the first step then turned every parameter into NaN)
        rms = d.square().flatten(1).mean(1).clamp_min(1e-24).sqrt()
        return start + d * (max_distance / rms).clamp(max=1.0).view(-1, 1, 1, 1)

    def whole(x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] == model_size:
            return x
        return F.interpolate(
            x, size=(model_size, model_size), mode="bilinear", antialias=True, align_corners=False
        )

    if reg == "pixel":

        def penalty(x: torch.Tensor) -> torch.Tensor:
            return strength * (x - start).square().flatten(1).mean(1)

    else:
        reg_layer = layer or _default_layer(model, objectives)
        with torch.no_grad():
            target = capture(model, whole(start), [reg_layer], logits=False).acts[reg_layer].detach()
        energy = target.square().flatten(1).mean(1).clamp_min(1e-12)

        def penalty(x: torch.Tensor) -> torch.Tensor:
            a = capture(model, whole(x), [reg_layer], logits=False).acts[reg_layer]
            return strength * (a - target).square().flatten(1).mean(1) / energy

    transform = CropTransform(
        n_crops, crop_scale or default_crop_scale(seeds.shape[-1], model_size), 0.0, noise
    )
    result = optimize_images(
        model,
        objectives,
        images,
        steps,
        lr,
        transform,
        make_generator(seed),
        progress,
        callback,
        penalty=penalty,
        project=project,
        name="accentuation",
    )
    with torch.no_grad():
        seed_final = evaluate_groups(model, objectives, whole(start)).cpu()
    result.info = {
        "reg": reg,
        "layer": None if reg == "pixel" else reg_layer,
        "strength": strength,
        "max_distance": max_distance,
        "distance": rms_distance(result.image, start.cpu()),
        "seed_final": seed_final,
        "steps": steps,
        "lr": lr,
        "seed": seed,
    }
    return result
