"""Forward hooks and network unwrapping: the one place that registers hooks on a model's modules.

Every hook registered here is removed when the ``with`` block ends, on success and on error, so a
failed call never leaves a hook behind.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
from torch import nn

from workbench._core.validation import closest_names

if TYPE_CHECKING:
    from workbench.models.model import Model

__all__ = ["forward_hooks", "network", "resolve_layer", "token_layout"]

# hook(name, value) -> None, or a tensor that replaces the module's output (output hooks only)
Hook = Callable[[str, torch.Tensor], torch.Tensor | None]


def network(model: Model | nn.Module, why: str = "this needs to reach the model's layers") -> nn.Module:
    """The module whose submodules are hooked or re-initialized: ``model.net`` for a workbench Model.

    Parameters
    ----------
    model
        A workbench :class:`Model` or any ``nn.Module``.
    why
        Completes the error message for other inputs (a plain callable has no layers).
    """
    from workbench.models.model import Model  # here, not at the top: model.py hooks through this module

    if isinstance(model, Model):
        return model.net
    if isinstance(model, nn.Module):
        return model
    raise ValueError(
        f"model: {why}, so it must be a workbench Model or an nn.Module, got {type(model).__name__}"
    )


def resolve_layer(net: nn.Module, layer: str | nn.Module) -> str:
    """The name of ``layer`` in ``net`` (a name or a submodule), or a KeyError with the closest names."""
    if isinstance(layer, nn.Module):
        for name, module in net.named_modules():
            if module is layer and name:
                return name
        raise ValueError(f"layer: the module {type(layer).__name__} is not a submodule of the model")
    if not isinstance(layer, str):
        raise ValueError(f"layer: expected a module name (str) or a submodule, got {type(layer).__name__}")
    names = [name for name, _ in net.named_modules() if name]
    if layer not in names:
        raise KeyError(
            f"unknown layer {layer!r}; closest valid names: {closest_names(layer, names)}"
            " (model.layers() lists the split points)"
        )
    return layer


@contextmanager
def forward_hooks(
    net: nn.Module,
    layers: Sequence[str],
    hook: Hook,
    *,
    on_input: bool = False,
    skip_non_tensors: bool = False,
) -> Iterator[None]:
    """Call ``hook(name, tensor)`` whenever one of ``layers`` runs, for the duration of the block.

    Parameters
    ----------
    net
        The network (see :func:`network`).
    layers
        Names of submodules of ``net``.
    hook
        Receives the layer name and its output (or, with ``on_input``, its first positional input).
        For output hooks, a returned tensor replaces the module's output (what a gradient-reading
        method needs to make the activation a leaf); None leaves it unchanged. It may raise to stop the
        forward pass early.
    on_input
        Hook the module's input instead of its output (a classifier head's features).
    skip_non_tensors
        Pass over a module that returns (or receives) something other than a tensor instead of
        failing (a probe over many layers, such as GradCAM's default layer, keeps the tensor ones).

    Raises
    ------
    ValueError
        When a hooked module returns (or receives) something other than a tensor (unless
        ``skip_non_tensors``).
    """
    handles = []
    try:
        for name in layers:
            module = net.get_submodule(name)
            if on_input:

                def pre(_m, args, name=name):
                    value = args[0] if args else None
                    if not isinstance(value, torch.Tensor):
                        if skip_non_tensors:
                            return
                        raise ValueError(
                            f"layer {name!r}: expected a tensor input, got {type(value).__name__}"
                        )
                    hook(name, value)

                handles.append(module.register_forward_pre_hook(pre))
            else:

                def post(_m, _args, out, name=name):
                    if not isinstance(out, torch.Tensor):
                        if skip_non_tensors:
                            return None
                        raise ValueError(
                            f"layer {name!r} returns {type(out).__name__}, not a tensor; pick another layer"
                        )
                    return hook(name, out)

                handles.append(module.register_forward_hook(post))
        yield
    finally:  # hooks never outlive the call, exceptions included
        for handle in handles:
            handle.remove()


def token_layout(net: nn.Module, tokens: int, image_hw: tuple[int, int]) -> tuple[int, int, int] | None:
    """(prefix tokens, grid h, grid w) of a token sequence of length ``tokens``, or None.

    The prefix count is ``net.num_prefix_tokens`` (timm) when present; otherwise the tokens beyond
    the largest grid with the image's aspect ratio. The grid comes from ``patch_embed`` (timm) when
    its size matches, otherwise from the token count and the image's aspect ratio.
    """
    H, W = image_hw
    prefix = getattr(net, "num_prefix_tokens", None)

    def aspect_grid(n: int) -> tuple[int, int] | None:
        if n < 1:
            return None
        gh = max(1, round(math.sqrt(n * H / W)))
        return (gh, n // gh) if gh * (n // gh) == n else None

    if not isinstance(prefix, int):
        prefix = None
        for p in range(0, min(tokens, 17)):  # CLS + registers: a handful at most
            grid = aspect_grid(tokens - p)
            if grid is not None and tokens - p > 1:
                prefix = p
                break
        if prefix is None:
            return None
    n = tokens - prefix
    if n < 1:
        return None
    patch_embed = getattr(net, "patch_embed", None)
    candidates = []
    if patch_embed is not None:
        if hasattr(patch_embed, "dynamic_feat_size"):
            try:
                candidates.append(tuple(int(s) for s in patch_embed.dynamic_feat_size((H, W))))
            except Exception:  # noqa: BLE001, S110 - fall back to the other guesses
                pass
        if getattr(patch_embed, "grid_size", None) is not None:
            candidates.append(tuple(int(s) for s in patch_embed.grid_size))
    candidates.append(aspect_grid(n))
    for grid in candidates:
        if grid is not None and len(grid) == 2 and grid[0] * grid[1] == n:
            return prefix, grid[0], grid[1]
    return None
