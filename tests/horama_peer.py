"""Horama (the MACO authors' PyTorch toolbox, ``horama==0.3.0``) run on a workbench model and objective.

The peer of :func:`workbench.featviz.visualize` in ``tests/test_featviz_horama.py`` and
``benchmarks/featviz.py``. Horama works in the network's normalized input space: its images take values in
``values_range`` and its objective function receives normalized crops. Here

- ``values_range`` is the image of the pixel range [0, 1] under the model's normalization (``(-1, 1)``
  for the zoo's mean = std = 0.5), so both toolboxes produce valid images and are judged by the same
  function (:func:`workbench.featviz.objectives.evaluate` on the whole image in pixel space); Horama's
  default (-2.5, 2.5) would give it pixels in [-0.75, 1.75] on the zoo;
- the objective function runs ``model.net`` on Horama's crops through the workbench objective's hooks;
- MACO's magnitude: Horama downloads an ImageNet spectrum to ``spectrum_decorrelated.npy`` in the working
  directory at its first call; this writes the workbench's magnitude there instead (no network needed) and
  runs Horama with a temporary directory as working directory;
- the network is in eval mode and its parameters are frozen during the run (Horama's ``loss.backward()`` would otherwise also
  compute every weight gradient, a cost ``visualize`` does not pay), and its progress bar is silenced;
- Horama draws everything from the global RNG: the run is seeded with ``torch.manual_seed`` inside
  ``torch.random.fork_rng``, so the caller's global state is left as it was.

Reference: Fel et al., Unlocking Feature Visualization for Deeper Networks with MAgnitude Constrained
Optimization (MACO), NeurIPS 2023 (https://github.com/serre-lab/Horama).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from workbench._core.devices import eval_mode
from workbench.featviz.objectives import Objective, capture

HORAMA_AVAILABLE = importlib.util.find_spec("horama") is not None
SPECTRUM_FILENAME = "spectrum_decorrelated.npy"  # horama.maco_fv.MACO_SPECTRUM_FILENAME


def normalized_pixel_range(model) -> tuple[float, float]:
    """The pixel range [0, 1] in the model's normalized units: Horama's ``values_range``.

    Horama takes one range for all channels: the model's mean and std must be the same for each.
    """
    lows = {round((0.0 - m) / s, 6) for m, s in zip(model.mean, model.std)}
    highs = {round((1.0 - m) / s, 6) for m, s in zip(model.mean, model.std)}
    if len(lows) != 1 or len(highs) != 1:
        raise ValueError(
            "Horama's values_range is one interval: the model's channels must share mean and std"
        )
    return lows.pop(), highs.pop()


def net_objective(model, objective: Objective, normalized: torch.Tensor) -> torch.Tensor:
    """The workbench ``objective`` of already-normalized images, through ``model.net``: (N,)."""
    return objective(capture(model.net, normalized, objective.layers, objective.needs_logits))


@contextlib.contextmanager
def _frozen(module: torch.nn.Module) -> Iterator[None]:
    flags = [(p, p.requires_grad) for p in module.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def run_horama(
    model,
    objective: Objective,
    magnitude: torch.Tensor,
    workdir: str | Path,
    steps: int,
    n_crops: int,
    seed: int,
    param: str = "maco",
    box_size: tuple[float, float] = (0.20, 0.25),
    noise: float = 0.05,
    learning_rate: float = 1.0,
) -> torch.Tensor:
    """Horama's visualization of ``objective`` on ``model``: (1, 3, S, S) in pixel space [0, 1].

    ``S`` is the model's input side (Horama's ``image_size`` = ``model_input_size``); ``magnitude`` is
    MACO's (3, S, S // 2 + 1) spectrum (ignored by ``param="fourier"``). ``box_size``, ``noise`` and
    ``learning_rate`` are Horama's defaults.
    """
    import horama.fourier_fv
    import horama.maco_fv

    side = int(model.input_size[-1])
    low, high = normalized_pixel_range(model)
    np.save(Path(workdir) / SPECTRUM_FILENAME, magnitude.detach().cpu().numpy())

    def objective_function(crops: torch.Tensor) -> torch.Tensor:
        return net_objective(model, objective, crops).mean()

    method = {"maco": horama.maco_fv.maco, "fourier": horama.fourier_fv.fourier}[param]
    module = horama.maco_fv if param == "maco" else horama.fourier_fv
    original_tqdm, module.tqdm = module.tqdm, lambda iterable, **kwargs: iterable
    cwd = os.getcwd()
    try:
        os.chdir(workdir)
        with _frozen(model), eval_mode(model), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            image, _ = method(
                objective_function,
                total_steps=steps,
                learning_rate=learning_rate,
                image_size=side,
                model_input_size=side,
                noise=noise,
                values_range=(low, high),
                crops_per_iteration=n_crops,
                box_size=box_size,
                device=str(model.device),
            )
    finally:
        os.chdir(cwd)
        module.tqdm = original_tqdm
    return ((image.detach()[None] - low) / (high - low)).clamp(0, 1).cpu()
