"""A plain, reproducible supervised training loop for image classifiers in pixel space."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from workbench._core.batching import iter_batches
from workbench._core.progress import progress as _progress
from workbench._core.validation import check_fraction, check_images, check_targets
from workbench.models.model import Model
from workbench.training.occlusion_augment import random_occlusion


@dataclass
class TrainHistory:
    """Per-epoch training loss and accuracy."""

    loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)


def train_classifier(
    model: Model,
    images: torch.Tensor,
    labels: torch.Tensor,
    epochs: int = 10,
    batch_size: int = 128,
    lr: float = 2e-3,
    weight_decay: float = 0.05,
    seed: int = 0,
    hflip: bool = True,
    occlusion: float = 0.0,
    progress: bool = True,
) -> TrainHistory:
    """Train ``model`` in place with AdamW and a cosine schedule; return the history.

    The model is put in train mode for the loop and back in eval mode at the end, so the caller
    gets the model in the state it uses for analysis. Shuffling and augmentation draw from a
    generator seeded with ``seed``: the same seed gives the same weights on the same device.

    ``occlusion`` is the fraction of each batch that :func:`random_occlusion` masks with black, blur
    or mean cells, so that perturbation-based attributions probe the model in distribution.
    """
    images = check_images(images, "images")
    labels = check_targets(labels, len(images), model.num_classes)
    occlusion = check_fraction(occlusion, "occlusion (the fraction of each batch occluded)")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be positive, got {epochs} and {batch_size}")
    torch.manual_seed(seed)  # dropout / drop-path draws inside the network
    gen = torch.Generator().manual_seed(seed)
    device = model.device
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(images) / batch_size)
    total = epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(1, total // 20)) * 0.5 * (1 + math.cos(math.pi * s / total))
    )
    loss_fn = nn.CrossEntropyLoss()
    history = TrainHistory()
    model.train()
    try:
        bar = _progress(range(epochs), enabled=progress, desc="epochs")
        for _ in bar:
            order = torch.randperm(len(images), generator=gen)
            seen, correct, loss_sum = 0, 0, 0.0
            for sl in iter_batches(len(images), batch_size):
                idx = order[sl]
                xb, yb = images[idx].to(device), labels[idx].to(device)
                if hflip:
                    flip = (torch.rand(len(idx), generator=gen) < 0.5).to(device)
                    xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
                xb = random_occlusion(xb, occlusion, gen)
                logits = model(xb, check=False)
                loss = loss_fn(logits, yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                seen += len(idx)
                correct += int((logits.argmax(1) == yb).sum())
                loss_sum += float(loss.detach()) * len(idx)
            history.loss.append(loss_sum / seen)
            history.accuracy.append(correct / seen)
            if progress:
                bar.set_postfix(loss=f"{history.loss[-1]:.3f}", acc=f"{history.accuracy[-1]:.3f}")
    finally:
        model.eval()
    return history


@torch.inference_mode()
def evaluate_accuracy(
    model: Model, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 256
) -> float:
    """Top-1 accuracy of ``model`` on pixel-space ``images``."""
    labels = check_targets(labels, len(images), model.num_classes)
    correct = 0
    for sl in iter_batches(len(images), batch_size):
        pred = model(images[sl].to(model.device), check=False).argmax(1).cpu()
        correct += int((pred == labels[sl]).sum())
    return correct / len(images)
