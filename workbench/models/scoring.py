"""Scoring a model on batches of images: the forward callable, input checks at a public boundary,
and class scores read ``batch_size`` rows at a time. Shared by attribution methods and metrics.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from workbench._core.batching import iter_batches
from workbench._core.devices import eval_mode, module_device
from workbench._core.validation import as_tensor, check_images, check_int, check_targets
from workbench.models.model import Model

__all__ = [
    "Forward",
    "batched_scores",
    "class_scores",
    "forward_fn",
    "model_device",
    "normalize_and_net",
    "predict",
    "prepare",
    "score_fn",
]

Forward = Callable[[torch.Tensor], torch.Tensor]


def _channels_last_on_cpu(net: Forward) -> Forward:
    """``net`` fed channels-last batches on a CPU when no gradient is recorded.

    oneDNN's convolutions run faster on channels-last input: measured with the Sobol/HSIC/RISE pipeline
    (``benchmarks/batch_size.py``), 1.2x on the zoo CNNs and on resnet18 at one thread and 1.4x at two;
    a ViT is unchanged. The logits agree to float rounding (4e-6 on logits of about 19). Only for the
    black-box methods' no-grad passes: with gradients, an input gradient in channels-last strides would
    reach code that ``view``s it. A network that cannot take strided input (a ``view`` on its input)
    is called as before from then on.
    """
    state = {"channels_last": True}

    def call(x: torch.Tensor) -> torch.Tensor:
        if state["channels_last"] and x.dim() == 4 and x.device.type == "cpu" and not torch.is_grad_enabled():
            try:
                return net(x.contiguous(memory_format=torch.channels_last))
            except RuntimeError as err:
                if "view" not in str(err):
                    raise
                state["channels_last"] = False
        return net(x)

    return call


def forward_fn(model: Model | nn.Module | Forward) -> Forward:
    """The callable that maps (N, C, H, W) to (N, K) scores, without per-call validation.

    A workbench :class:`Model` is called with ``check=False`` (inputs were checked once at the
    boundary); plain modules and callables get their inputs as they are.
    """
    if isinstance(model, Model):
        return _channels_last_on_cpu(lambda x: model(x, check=False))
    if callable(model):
        return model
    raise ValueError(
        f"model: expected a workbench Model, an nn.Module or a callable, got {type(model).__name__}"
    )


def normalize_and_net(model: Model | nn.Module | Forward) -> tuple[Forward, Forward]:
    """``(normalize, net)`` with ``forward_fn(model)(x) == net(normalize(x))``.

    A workbench :class:`Model` normalizes every batch it is given; a caller that builds many images
    from a few (deletion's N (steps + 1) images from N originals and N baselines) can normalize the few
    once and build the rest in normalized space. Per-channel normalization is elementwise, so choosing
    a pixel before or after it gives the same value. Other models get the identity.
    """
    if isinstance(model, Model):
        return model.normalize, _channels_last_on_cpu(model.net)
    return (lambda x: x), forward_fn(model)


def model_device(model: Model | nn.Module | Forward, x: torch.Tensor) -> torch.device:
    """Perturbations are made where the model lives (the input's device for plain callables)."""
    return module_device(model) if isinstance(model, nn.Module) else x.device


def prepare(
    model: Model | nn.Module | Forward, x: torch.Tensor, y: torch.Tensor | int
) -> tuple[Forward, torch.Tensor, torch.Tensor]:
    """Check ``x`` and ``y`` at the public boundary and move them to the model's device.

    Images for a workbench Model must be pixel-space [0, 1]; other models get any float values.
    Targets are class indices (N,), checked against the number of classes when it is known.
    """
    is_model = isinstance(model, Model)
    x = check_images(
        x, channels=model.input_size[0] if is_model else None, value_range=(0.0, 1.0) if is_model else None
    )
    if not is_model and bool(torch.isnan(x).any()):
        raise ValueError("x: contains NaN values")
    num_classes = model.num_classes if is_model else None
    y = check_targets(y, len(x), num_classes)
    device = model_device(model, x)
    return forward_fn(model), x.to(device), y.to(device)


def class_scores(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The score of class ``y[i]`` for each row (N,), with a clear error when y exceeds K."""
    if logits.ndim != 2:
        raise ValueError(f"the model must return (N, K) scores, got shape {tuple(logits.shape)}")
    if int(y.max()) >= logits.shape[1]:
        raise ValueError(f"y: targets must lie in [0, {logits.shape[1] - 1}], got {int(y.max())}")
    return logits.gather(1, y.view(-1, 1)).squeeze(1)


@torch.inference_mode()
def batched_scores(forward: Forward, inputs: torch.Tensor, y: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Scores of class ``y`` for already-built inputs (M, C, H, W), at most ``batch_size`` per pass."""
    if y.ndim == 0:
        y = y.expand(len(inputs))
    out = torch.empty(len(inputs), device=inputs.device)
    for sl in iter_batches(len(inputs), batch_size):
        out[sl] = class_scores(forward(inputs[sl]), y[sl]).float()
    return out


SCORES = ("probability", "logit")


def score_fn(forward: Forward, score: str) -> Forward:
    """``forward`` returning softmax probabilities ("probability") or its raw outputs ("logit"), float32."""
    if score not in SCORES:
        raise ValueError(f"score: expected one of {SCORES}, got {score!r}")
    if score == "probability":
        return lambda b: torch.softmax(forward(b).float(), dim=1)
    return lambda b: forward(b).float()


def predict(
    model: Model | nn.Module | Forward, images: torch.Tensor, batch_size: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted classes (N,) and their softmax probabilities (N,), on the CPU.

    ``images`` is a tensor or a NumPy array (N, C, H, W); it is not validated further (any model input).

    Batched (``batch_size`` rows a pass) under inference mode, on the model's device. A module is put in
    eval mode for the call and its mode restored afterwards, errors included.

    Raises
    ------
    ValueError
        When the model does not return logits of shape (N, K).
    """
    batch_size = check_int(batch_size, "batch_size")
    images = as_tensor(images)
    if not isinstance(images, torch.Tensor):
        raise ValueError(
            f"images: expected a tensor or a NumPy array (N, C, H, W), got {type(images).__name__}"
        )
    forward = forward_fn(model)
    device = model_device(model, images)
    labels, confidence = [], []
    with eval_mode(model if isinstance(model, nn.Module) else None), torch.inference_mode():
        for sl in iter_batches(len(images), batch_size):
            logits = forward(images[sl].to(device))
            if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
                shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
                raise ValueError(f"model: expected logits of shape (N, K), got {shape}")
            conf, pred = logits.float().softmax(1).max(1)
            labels.append(pred.cpu())
            confidence.append(conf.cpu())
    return torch.cat(labels), torch.cat(confidence)
