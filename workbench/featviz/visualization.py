"""``visualize``: the image that maximizes an objective, with its transparency (MACO) and history.

One optimization loop serves every parameterization (pixel, Fourier, MACO) and many objectives at once:
K objectives get K images, optimized together (their crops form one batch, one forward and one backward
pass per step). The images do not interact: each objective reads only its own image's crops and NAdam
updates parameters elementwise, so a batch gives the same images as K separate runs would with the same
crops.

Reference: Fel, Boissin, Boutin, Picard, Novello, Colin, Linsley, Rousseau, Cadène, Goetschalckx,
Gardes & Serre, Unlocking Feature Visualization for Deeper Networks with MAgnitude Constrained
Optimization, NeurIPS 2023.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from workbench._core.devices import eval_mode, module_device
from workbench._core.progress import progress as progress_bar
from workbench._core.seeding import make_generator
from workbench._core.validation import check_int
from workbench.featviz.natural_spectra import load_spectrum
from workbench.featviz.objectives import Objective, evaluate_groups
from workbench.featviz.parameterizations import PARAMETERIZATIONS, ImageParameterization
from workbench.featviz.transforms import CropTransform
from workbench.models.hooks import network

__all__ = [
    "FeatureViz",
    "Callback",
    "default_crop_scale",
    "LR_SCHEDULES",
    "optimize_images",
    "redirected_relu",
    "scheduled_lr",
    "visualize",
]

# callback(step, images (K, 3, S, S) on the CPU, objective values (K,)) -> True to stop
Callback = Callable[[int, torch.Tensor, torch.Tensor], "bool | None"]


@dataclass
class FeatureViz:
    """A feature visualization.

    Attributes
    ----------
    image
        (K, 3, S, S) in [0, 1], one image per objective.
    transparency
        (K, 1, S, S) >= 0: the |gradient| of the objective with respect to the image, summed over
        colour channels and accumulated over the steps (MACO's attribution of the visualization: where
        the optimization kept acting).
    history
        (steps run, K) the objective per step, averaged over the step's crops.
    objectives
        Names of the objectives.
    param
        The parameterization (``"maco"``, ``"fourier"``, ``"pixel"``, ``"spectrum"``).
    final
        (K,) the objective of each whole final image, resized to the model's input.
    stopped
        Whether a callback stopped the optimization before ``steps``.
    info
        Settings used (steps, lr, crop scale, image size...).
    """

    image: torch.Tensor
    transparency: torch.Tensor
    history: torch.Tensor
    objectives: list[str]
    param: str
    final: torch.Tensor
    stopped: bool = False
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return self.image.shape[0]

    def __repr__(self) -> str:
        return (
            f"FeatureViz(param={self.param!r}, images={tuple(self.image.shape)}, steps={self.history.shape[0]},"
            f" final={[round(float(v), 3) for v in self.final]})"
        )


def _model_input_size(model: nn.Module) -> int:
    size = getattr(model, "input_size", None)
    if size is None:
        raise ValueError("image_size: this model does not declare its input size; pass image_size=")
    return int(size[-1])


def default_crop_scale(image_size: int, model_size: int) -> tuple[float, float]:
    """Crop sides (fractions of the image side) such that a crop covers about the model's field.

    When the image is near the model's input size (the 64-px zoo), crops of 0.6 to 1 of the side keep
    the whole object in view; the reference's 0.20-0.25 (for 1,280-px images seen by a 224-px model)
    would show a small model single stripes. For larger images the side is 1 to 1.25 times
    ``model_size / image_size``.
    """
    ratio = model_size / image_size
    if ratio >= 0.65:
        return (0.6, 1.0)
    return (ratio, min(1.0, 1.25 * ratio))


def _objectives(objective: Objective | Sequence[Objective]) -> list[Objective]:
    objectives = [objective] if isinstance(objective, Objective) else list(objective)
    if not objectives or not all(isinstance(o, Objective) for o in objectives):
        raise ValueError("objective: expected an Objective or a non-empty list of Objectives")
    return objectives


def resolve_spectrum(spectrum: str | dict | torch.Tensor | None, model: nn.Module) -> dict[str, torch.Tensor]:
    """``{"magnitude", "color"}`` from a shipped name, a dict, a magnitude tensor, or None (the zoo's
    PlantedShapes spectrum for zoo models, the sample photos' otherwise)."""
    if spectrum is None:
        spec = str(getattr(model, "spec", ""))
        spectrum = "planted_shapes_64" if spec.startswith("zoo:") else "sample_photos_224"
    if isinstance(spectrum, str):
        return load_spectrum(spectrum)
    if isinstance(spectrum, torch.Tensor):
        return {"magnitude": spectrum}
    if isinstance(spectrum, dict) and "magnitude" in spectrum:
        return dict(spectrum)
    raise ValueError("spectrum: expected a shipped name, a magnitude tensor (3, S, S // 2 + 1) or a dict")


class _RedirectedReLU(torch.autograd.Function):
    """ReLU whose backward, for an image whose ReLU gradient is zero everywhere, lets through the
    gradient that would raise the objective (Lucid's ``redirected_relu_grad``, Olah et al. 2017).

    The incoming gradient is that of the objective (ascent): where the input is negative, a positive
    gradient asks to raise it and passes, a negative one would push it lower and is dropped. An image
    for which the plain ReLU passes any gradient gets exactly the plain ReLU gradient.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x.clamp_min(0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        plain = grad * (x > 0)
        redirected = torch.where((x < 0) & (grad < 0), torch.zeros_like(grad), grad)
        stuck = (plain.flatten(1).abs().amax(1) == 0).view(-1, *[1] * (x.ndim - 1))
        return torch.where(stuck, redirected, plain)


@contextlib.contextmanager
def redirected_relu(model: nn.Module) -> Iterator[int]:
    """Within the block, every ``nn.ReLU`` of ``model`` computes the same outputs but back-propagates
    as :class:`_RedirectedReLU`; yields how many were replaced; restored on exit and on error.

    A channel that is zero on the whole starting image (a ReLU output below zero everywhere) has no
    gradient and stays zero: on ``zoo:resnet_shapes``, 36 of the 96 channels of ``layer4`` never moved
    from 0 with the Fourier parameterization (57 % of the channels above the data's maximum after 24
    steps; 0 dead channels and 98 % after 64 steps with the redirection). Lucid renders with the same
    override (Olah, Mordvintsev & Schubert, Feature Visualization, Distill 2017).
    """
    relus = [
        m for m in network(model, "redirected_relu replaces its ReLUs").modules() if isinstance(m, nn.ReLU)
    ]
    for m in relus:
        m.forward = _RedirectedReLU.apply  # an instance attribute: nn.Module.__call__ finds it first
    try:
        yield len(relus)
    finally:
        for m in relus:
            del m.forward


LR_SCHEDULES = ("constant", "cosine")


def scheduled_lr(lr: float, step: int, steps: int, schedule: str) -> float:
    """The learning rate of ``step`` (0-based) out of ``steps``: ``lr`` (``"constant"``, the reference's)
    or ``lr * (1 + cos(pi * step / steps)) / 2`` (``"cosine"``: from ``lr`` down to nearly 0 at the end).

    Why the decay: MACO's NAdam at lr 1.0 on the phase never settles. On ``zoo:resnet_textures``, class
    logits, 8 crops per step, constant lr, the whole-image probability of the target fell to 0.03 at
    step 88 and back to 1.00 at step 96 (seed 0), and 6 of 40 final images (10 seeds, 128 steps) were
    classified as another class by the twin model; with the cosine decay over 64 steps every one of the
    20 final images (5 seeds) had probability 1.00 and was classified as its class by the twin.
    """
    if schedule == "cosine":
        return lr * 0.5 * (1.0 + math.cos(math.pi * step / steps))
    return lr


def optimize_images(
    model: nn.Module,
    objectives: Sequence[Objective],
    images: ImageParameterization,
    steps: int,
    lr: float,
    transform: CropTransform,
    generator: torch.Generator,
    progress: bool = True,
    callback: Callback | None = None,
    penalty: Callable[[torch.Tensor], torch.Tensor] | None = None,
    project: Callable[[torch.Tensor], torch.Tensor] | None = None,
    name: str = "",
    redirect_relu: bool = False,
    lr_schedule: str = "constant",
) -> FeatureViz:
    """The loop shared by :func:`visualize` and :func:`workbench.featviz.accentuate`.

    Each step: images from the parameterization (through ``project`` when given), crops, objective k on
    the crops of image k, loss = -sum of the objectives' crop means + ``penalty(images)`` (per image,
    summed), NAdam step. The transparency accumulates |d objective / d image|. With ``redirect_relu``
    the objective's forward pass runs under :func:`redirected_relu` (the penalty's never does).
    ``lr_schedule`` is one of :data:`LR_SCHEDULES` (:func:`scheduled_lr`).
    """
    steps = check_int(steps, "steps")
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule: expected one of {LR_SCHEDULES}, got {lr_schedule!r}")
    k = len(objectives)
    device = module_device(model)
    images = images.to(device)
    params = [p for p in images.parameters() if p.requires_grad]
    optimizer = torch.optim.NAdam(params, lr=lr)
    out_size = _model_input_size(model)
    transparency = torch.zeros(k, 1, images.size, images.size, device=device)
    history: list[torch.Tensor] = []
    stopped = False
    with eval_mode(model), torch.enable_grad():
        for step in progress_bar(range(steps), enabled=progress, desc=f"featviz {name}".strip(), total=steps):
            x = images()
            x = project(x) if project is not None else x
            # the model's backward runs once, to a detached copy of the images; the gradient then goes
            # through the (cheap) parameterization: transparency and update from the same pass
            leaf = x.detach().requires_grad_(True)
            crops = transform(leaf, out_size, generator)
            with redirected_relu(model) if redirect_relu else contextlib.nullcontext():
                scores = evaluate_groups(model, objectives, crops).view(k, -1).mean(1)
            if not torch.isfinite(scores).all():
                raise FloatingPointError(f"the objective became non-finite at step {step}: {scores.tolist()}")
            (grad,) = torch.autograd.grad(scores.sum(), leaf)
            transparency += grad.abs().sum(1, keepdim=True)
            if penalty is not None:
                grad = grad - torch.autograd.grad(penalty(leaf).sum(), leaf)[0]
            for group in optimizer.param_groups:
                group["lr"] = scheduled_lr(lr, step, steps, lr_schedule)
            optimizer.zero_grad(set_to_none=True)
            x.backward(-grad, inputs=params)
            optimizer.step()
            history.append(scores.detach().cpu())
            if callback is not None and callback(step, x.detach().cpu(), scores.detach().cpu()):
                stopped = step + 1 < steps
                break
        with torch.no_grad():
            final_images = images()
            final_images = project(final_images) if project is not None else final_images
            whole = (
                final_images
                if images.size == out_size
                else F.interpolate(
                    final_images,
                    size=(out_size, out_size),
                    mode="bilinear",
                    antialias=True,
                    align_corners=False,
                )
            )
            final = evaluate_groups(model, objectives, whole)
    return FeatureViz(
        image=final_images.detach().cpu(),
        transparency=transparency.cpu(),
        history=torch.stack(history),
        objectives=[o.name for o in objectives],
        param=name,
        final=final.detach().cpu(),
        stopped=stopped,
    )


def visualize(
    model: nn.Module,
    objective: Objective | Sequence[Objective],
    param: str = "maco",
    steps: int = 256,
    image_size: int | None = None,
    lr: float | None = None,
    n_crops: int = 8,
    seed: int = 0,
    progress: bool = True,
    *,
    crop_scale: tuple[float, float] | None = None,
    rotation: float = 0.0,
    noise: float = 0.02,
    spectrum: str | dict | torch.Tensor | None = None,
    decay: float = 1.0,
    valid_range: str = "sigmoid",
    callback: Callback | None = None,
    redirect_relu: bool = True,
    lr_schedule: str | None = None,
) -> FeatureViz:
    """The image that maximizes ``objective`` (one image per objective, optimized in one batch).

    Parameters
    ----------
    model
        A workbench :class:`~workbench.models.Model` (pixel space [0, 1]; it normalizes) or a module
        taking [0, 1] images with an ``input_size`` attribute.
    objective
        An :class:`~workbench.featviz.objectives.Objective`, or a list of them (a page of SAE atoms, the
        concepts of a class): K objectives give K images, optimized together.
    param
        ``"maco"`` (phase only, fixed natural magnitude), ``"fourier"`` (1/f-scaled spectrum) or
        ``"pixel"``.
    steps
        Optimization steps.
    image_size
        Side of the optimized image (default: the model's input size; MACO at higher resolution, e.g.
        512 for a 224-px model, shows more detail).
    lr
        NAdam learning rate (default: 1.0 for MACO, the reference's; 0.05 for pixel and Fourier).
    n_crops
        Random crops per image and step (batched).
    seed
        Seeds the initialization and the crops: the same seed gives the same images.
    progress
        Show a progress bar over the steps.
    crop_scale
        (low, high) crop side as a fraction of the image side (default :func:`default_crop_scale`).
    rotation, noise
        Largest crop rotation (degrees) and the standard deviation of the noise added to crops.
    spectrum
        MACO's magnitude: a shipped name (``"planted_shapes_64"``, ``"sample_photos_224"``), a tensor
        (3, S, S // 2 + 1) or ``{"magnitude", "color"}``; default: PlantedShapes for zoo models, the
        sample photos otherwise. Its colour matrix also decorrelates the Fourier and pixel images.
    decay
        Fourier's 1/f exponent.
    valid_range
        ``"sigmoid"`` or ``"clip"``.
    callback
        ``callback(step, images, values) -> bool``, called after every step with the current images
        (K, 3, S, S) and objectives (K,) on the CPU; returning True stops (widgets' live preview and
        stop button).
    redirect_relu
        Back-propagate through the model's ReLUs as Lucid does (:func:`redirected_relu`): an objective
        that is zero on the whole starting image (a dead channel) still gets a gradient. The images'
        forward values are unchanged; only images whose plain gradient is zero at a ReLU are affected.
    lr_schedule
        ``"cosine"``: the learning rate decays from ``lr`` to nearly 0 over the steps, so the final image
        settles (:func:`scheduled_lr`); ``"constant"``: the reference's fixed rate. Default: cosine for
        MACO (whose lr 1.0 on the phase never settles), constant for pixel and Fourier.

    Returns
    -------
    FeatureViz
        Images, transparency, history, final objectives.

    References
    ----------
    Fel et al., Unlocking Feature Visualization for Deeper Networks with MAgnitude Constrained
    Optimization (MACO), NeurIPS 2023; Olah, Mordvintsev & Schubert, Feature Visualization, Distill 2017.
    """
    objectives = _objectives(objective)
    model_size = _model_input_size(model)
    image_size = model_size if image_size is None else check_int(image_size, "image_size", minimum=8)
    transform = CropTransform(
        n_crops, crop_scale or default_crop_scale(image_size, model_size), rotation, noise
    )
    generator = make_generator(seed)
    cls = PARAMETERIZATIONS.get(param)
    if param == "spectrum":
        raise ValueError("param: 'spectrum' starts from given images; use workbench.featviz.accentuate")
    spec = resolve_spectrum(spectrum, model)
    kwargs = {"color": spec.get("color"), "valid_range": valid_range, "generator": generator}
    if param == "maco":
        kwargs["magnitude"] = spec["magnitude"]
    elif param == "fourier":
        kwargs["decay"] = decay
    images = cls(len(objectives), image_size, **kwargs)
    lr = images.default_lr if lr is None else float(lr)
    lr_schedule = images.default_lr_schedule if lr_schedule is None else lr_schedule
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr: expected a positive learning rate, got {lr!r}")
    result = optimize_images(
        model,
        objectives,
        images,
        steps,
        lr,
        transform,
        generator,
        progress,
        callback,
        name=param,
        redirect_relu=redirect_relu,
        lr_schedule=lr_schedule,
    )
    result.info = {
        "steps": steps,
        "lr": lr,
        "image_size": image_size,
        "n_crops": n_crops,
        "crop_scale": transform.scale,
        "rotation": rotation,
        "noise": noise,
        "seed": seed,
        "redirect_relu": redirect_relu,
        "lr_schedule": lr_schedule,
    }
    return result
