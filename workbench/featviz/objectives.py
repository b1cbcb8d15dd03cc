"""What a feature visualization maximizes: channels, neurons, layers, directions and logits.

An :class:`Objective` reads the outputs of some layers (and the logits) of one forward pass and returns
one score per image, higher is better. Objectives compose like numbers (``channel(...) - 0.5 *
logit(3)``), so a visualization of "this concept but not that class" is one expression. They read CNN
maps (N, C, H, W) and ViT tokens (N, T, C) alike: ``tokens="patches"`` averages the patch tokens (the
spatial positions), ``"cls"`` reads the first token, ``"all"`` averages every token.

:func:`evaluate` runs the model with hooks on the layers the objective reads (one helper,
:func:`workbench.models.hooks.forward_hooks`, whose hooks are removed on exit and on error), stopping the
forward pass after the last hooked layer when the logits are not needed.

References: Olah, Mordvintsev & Schubert, Feature Visualization, Distill 2017 (channel, neuron, layer and
direction objectives); Fel et al., Unlocking Feature Visualization for Deeper Networks with MAgnitude
Constrained Optimization (MACO), NeurIPS 2023 (logit and cosine-direction objectives for concepts).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from workbench._core.validation import as_tensor, check_images, check_int
from workbench.models.hooks import forward_hooks, network, resolve_layer, token_layout

__all__ = [
    "Objective",
    "channel",
    "direction",
    "evaluate",
    "layer_l2",
    "logit",
    "neuron",
]

TOKEN_MODES = ("patches", "cls", "all")


@dataclass(frozen=True)
class Capture:
    """What one forward pass exposes to objectives: the hooked layers' outputs, the logits (None when
    no objective needs them), the network (for its token layout) and the input's (H, W)."""

    acts: Mapping[str, torch.Tensor]
    logits: torch.Tensor | None
    net: nn.Module
    image_hw: tuple[int, int]


Score = Callable[[Capture], torch.Tensor]


class Objective:
    """A differentiable score per image, read from one forward pass; higher is better.

    Build objectives with :func:`channel`, :func:`neuron`, :func:`layer_l2`, :func:`direction` and
    :func:`logit`, and combine them with ``+``, ``-`` and multiplication by a number.

    Parameters
    ----------
    name
        Readable description, shown in results and widgets.
    layers
        Module names whose outputs the score reads.
    needs_logits
        Whether the score reads the model's logits (the forward pass then runs to the end).
    score
        ``score(capture) -> (N,)``.
    """

    def __init__(self, name: str, layers: Sequence[str], needs_logits: bool, score: Score):
        self.name = name
        self.layers = tuple(dict.fromkeys(layers))
        self.needs_logits = bool(needs_logits)
        self._score = score

    def __call__(self, capture: Capture) -> torch.Tensor:
        return self._score(capture)

    def __repr__(self) -> str:
        return f"Objective({self.name})"

    # -- algebra -----------------------------------------------------------------------------------
    def _combine(self, other: Objective, sign: float, symbol: str) -> Objective:
        if not isinstance(other, Objective):
            return NotImplemented
        return Objective(
            f"{self.name} {symbol} {other.name}",
            self.layers + other.layers,
            self.needs_logits or other.needs_logits,
            lambda cap: self(cap) + sign * other(cap),
        )

    def __add__(self, other: Objective) -> Objective:
        return self._combine(other, 1.0, "+")

    def __sub__(self, other: Objective) -> Objective:
        return self._combine(other, -1.0, "-")

    def __mul__(self, factor: float) -> Objective:
        if isinstance(factor, bool) or not isinstance(factor, numbers.Real):
            return NotImplemented
        factor = float(factor)
        return Objective(
            f"{factor:g} * ({self.name})", self.layers, self.needs_logits, lambda cap: factor * self(cap)
        )

    __rmul__ = __mul__

    def __neg__(self) -> Objective:
        return -1.0 * self


# -- reading a layer --------------------------------------------------------------------------------
def _check_tokens(tokens: str) -> str:
    if tokens not in TOKEN_MODES:
        raise ValueError(f"tokens: expected one of {TOKEN_MODES}, got {tokens!r}")
    return tokens


def _positions(cap: Capture, layer: str, tokens: str) -> torch.Tensor:
    """The layer's output as (N, C, P): channels by positions (CNN positions, or the chosen tokens)."""
    a = cap.acts[layer]
    if a.ndim == 4:
        if tokens == "cls":
            raise ValueError(
                f"layer {layer!r}: tokens='cls' but this layer is a map {tuple(a.shape)}, not tokens"
            )
        return a.flatten(2)
    if a.ndim == 2:
        return a.unsqueeze(-1)
    if a.ndim == 3:
        if tokens == "all":
            return a.transpose(1, 2)
        layout = token_layout(cap.net, a.shape[1], cap.image_hw)
        prefix = layout[0] if layout is not None else 0
        if tokens == "cls":
            if prefix < 1:
                raise ValueError(f"layer {layer!r}: tokens='cls' but this sequence has no prefix (CLS) token")
            return a[:, :1].transpose(1, 2)
        return a[:, prefix:].transpose(1, 2)
    raise ValueError(
        f"layer {layer!r}: expected (N, C, H, W), (N, T, C) or (N, C) outputs, got {tuple(a.shape)}"
    )


def _check_channel(c: int, n: int, layer: str) -> None:
    if not 0 <= c < n:
        raise ValueError(f"channel: {c} is out of range for layer {layer!r}, which has {n} channels")


def channel(layer: str, c: int, tokens: str = "patches") -> Objective:
    """Mean activation of channel ``c`` of ``layer`` over positions (Olah et al., Distill 2017).

    Parameters
    ----------
    layer
        Module name (see ``model.module_names()``).
    c
        Channel index.
    tokens
        For ViT tokens: ``"patches"`` (mean over patch tokens), ``"cls"`` or ``"all"``.
    """
    c = check_int(c, "c", minimum=0)
    tokens = _check_tokens(tokens)

    def score(cap: Capture) -> torch.Tensor:
        a = _positions(cap, layer, tokens)
        _check_channel(c, a.shape[1], layer)
        return a[:, c].mean(-1)

    return Objective(f"channel({layer}, {c})", [layer], False, score)


def neuron(layer: str, c: int, position: tuple[int, int] | None = None) -> Objective:
    """Activation of channel ``c`` at one spatial position of ``layer`` (the centre by default).

    Parameters
    ----------
    layer
        Module name.
    c
        Channel index.
    position
        (row, column) in the layer's grid (the patch grid for ViT tokens); None is the centre,
        ``(h // 2, w // 2)``.
    """
    c = check_int(c, "c", minimum=0)
    if position is not None:
        if len(position) != 2:
            raise ValueError(f"position: expected (row, column), got {position!r}")
        position = (check_int(position[0], "position[0]", 0), check_int(position[1], "position[1]", 0))

    def score(cap: Capture) -> torch.Tensor:
        a = cap.acts[layer]
        if a.ndim == 3:  # tokens -> patch grid
            layout = token_layout(cap.net, a.shape[1], cap.image_hw)
            if layout is None:
                raise ValueError(f"layer {layer!r}: cannot lay its {a.shape[1]} tokens out on a grid")
            prefix, gh, gw = layout
            a = a[:, prefix:].reshape(a.shape[0], gh, gw, a.shape[2]).permute(0, 3, 1, 2)
        if a.ndim != 4:
            raise ValueError(f"layer {layer!r}: a neuron needs a spatial map or tokens, got {tuple(a.shape)}")
        _check_channel(c, a.shape[1], layer)
        h, w = a.shape[2:]
        i, j = position if position is not None else (h // 2, w // 2)
        if not (i < h and j < w):
            raise ValueError(f"position: {(i, j)} is outside the {h} x {w} grid of layer {layer!r}")
        return a[:, c, i, j]

    where = "centre" if position is None else f"{position[0]}, {position[1]}"
    return Objective(f"neuron({layer}, {c}, {where})", [layer], False, score)


def layer_l2(layer: str, tokens: str = "patches") -> Objective:
    """Mean squared activation of ``layer`` (DeepDream's objective; Olah et al., Distill 2017)."""
    tokens = _check_tokens(tokens)

    def score(cap: Capture) -> torch.Tensor:
        return _positions(cap, layer, tokens).square().mean(dim=(1, 2))

    return Objective(f"layer_l2({layer})", [layer], False, score)


def direction(
    layer: str,
    v: torch.Tensor,
    cosine: bool = False,
    tokens: str = "patches",
    name: str | None = None,
) -> Objective:
    """Projection of ``layer``'s activations on a direction ``v`` (a concept, an SAE atom, a probe).

    ``<a, v>`` averaged over positions; with ``cosine=True``, ``<a, v> * cos(a, v)`` per position, as
    used for SAE atoms and concepts (MACO, Fel et al. 2023; Olah et al. 2017's "direction, cossim"):
    the cosine factor rewards aligning with ``v`` rather than growing every channel.

    Parameters
    ----------
    layer
        Module name.
    v
        (C,) the direction, in the layer's channel space (a concept bank's row, a dictionary row).
    cosine
        Multiply by the cosine similarity (clamped at 0, so anti-aligned activations score 0).
    tokens
        For ViT tokens: ``"patches"``, ``"cls"`` or ``"all"``.
    name
        Readable name (default ``direction(layer)``).
    """
    v = as_tensor(v)
    if not isinstance(v, torch.Tensor) or v.ndim != 1 or not v.is_floating_point():
        raise ValueError(f"v: expected a float vector (C,), got {getattr(v, 'shape', type(v).__name__)}")
    if not torch.isfinite(v).all() or float(v.norm()) == 0.0:
        raise ValueError("v: the direction must be finite and non-zero")
    tokens = _check_tokens(tokens)
    v = v.detach().float()

    def score(cap: Capture) -> torch.Tensor:
        a = _positions(cap, layer, tokens)  # (N, C, P)
        if a.shape[1] != v.numel():
            raise ValueError(f"v: has {v.numel()} entries but layer {layer!r} has {a.shape[1]} channels")
        u = v.to(a)
        dot = torch.einsum("ncp,c->np", a, u)
        if cosine:
            cos = dot / (a.norm(dim=1) * u.norm()).clamp_min(1e-8)
            dot = dot * cos.clamp_min(0.0)
        return dot.mean(-1)

    return Objective(name or f"direction({layer}{', cosine' if cosine else ''})", [layer], False, score)


def logit(c: int) -> Objective:
    """The logit of class ``c`` (class visualization; MACO, Fel et al. 2023)."""
    c = check_int(c, "c", minimum=0)

    def score(cap: Capture) -> torch.Tensor:
        if c >= cap.logits.shape[1]:
            raise ValueError(
                f"logit: class {c} is out of range for a model with {cap.logits.shape[1]} classes"
            )
        return cap.logits[:, c]

    return Objective(f"logit({c})", [], True, score)


# -- running ------------------------------------------------------------------------------------
class _StopForward(Exception):
    """Raised by the last hook when the logits are not needed: the rest of the network is skipped."""


def capture(model: nn.Module, images: torch.Tensor, layers: Sequence[str], logits: bool) -> Capture:
    """One forward pass of pixel-space ``images`` keeping the outputs of ``layers`` (with gradients).

    Hooks go through :func:`workbench.models.hooks.forward_hooks`, so none outlives the call.
    """
    net = network(model, "feature visualization hooks its layers")
    names = [resolve_layer(net, layer) for layer in dict.fromkeys(layers)]
    store: dict[str, torch.Tensor] = {}

    def keep(name: str, out: torch.Tensor) -> None:
        store[name] = out
        if not logits and len(store) == len(names):
            raise _StopForward

    forward = (lambda x: model(x, check=False)) if hasattr(model, "normalize") else model
    out = None
    with forward_hooks(net, names, keep):
        try:
            out = forward(images)
        except _StopForward:
            pass
    missing = [n for n in names if n not in store]
    if missing:
        raise ValueError(f"layers {missing} did not run in the forward pass")
    return Capture(store, out, net, tuple(images.shape[-2:]))


def evaluate(model: nn.Module, objective: Objective, images: torch.Tensor) -> torch.Tensor:
    """The objective of each image (N,), differentiable with respect to the images.

    Parameters
    ----------
    model
        A workbench :class:`~workbench.models.Model` (pixel space, it normalizes) or an ``nn.Module``.
    objective
        An :class:`Objective`.
    images
        (N, C, H, W) in [0, 1].
    """
    if not isinstance(objective, Objective):
        raise ValueError(f"objective: expected an Objective, got {type(objective).__name__}")
    images = check_images(images, "images", channels=None)
    cap = capture(model, images, objective.layers, objective.needs_logits)
    return objective(cap)


def evaluate_groups(model: nn.Module, objectives: Sequence[Objective], images: torch.Tensor) -> torch.Tensor:
    """Objective ``k`` on the ``k``-th equal slice of ``images``, from one forward pass: (N,).

    The batched path of :func:`workbench.featviz.visualize`: K images' crops, K objectives, one pass.
    """
    k = len(objectives)
    if images.shape[0] % k:
        raise ValueError(f"images: {images.shape[0]} rows do not split into {k} equal groups")
    layers = [layer for o in objectives for layer in o.layers]
    cap = capture(model, images, layers, any(o.needs_logits for o in objectives))
    per = images.shape[0] // k
    # one split per tensor, not K slices: the backward of K slices writes K full-size zero gradients
    # (measured: 20 % of a step with 96 channel objectives), a split's backward concatenates once
    acts = {name: a.split(per) for name, a in cap.acts.items()}
    logits = None if cap.logits is None else cap.logits.split(per)
    scores = []
    for i, o in enumerate(objectives):
        part = Capture(
            {name: parts[i] for name, parts in acts.items()},
            None if logits is None else logits[i],
            cap.net,
            cap.image_hw,
        )
        scores.append(o(part))
    return torch.cat(scores)
