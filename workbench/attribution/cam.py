"""Class activation maps from gradients: GradCAM and GradCAM++, for CNN and ViT layers.

The activation ``A`` of a layer and its gradient ``dS/dA`` (S: the class logit) come from a forward
hook that swaps the layer's output for a detached leaf tensor, so the backward pass stops at the
layer, no ``.grad`` lands on parameters, and frozen models work. CNN layers give (N, C, h, w);
ViT token layers (N, T, C) are reshaped to a (N, C, h, w) grid of patch tokens, leaving out the
prefix tokens (CLS, distillation and register tokens). The CAM is upsampled bilinearly to the
input size (``align_corners=False``, as Captum's ``LayerAttribution.interpolate``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from workbench._core.batching import iter_batches
from workbench.attribution._base import Forward, class_scores, finite_maps, prepare
from workbench.attribution.registry import register
from workbench.models.hooks import forward_hooks, network, resolve_layer, token_layout
from workbench.models.model import Model
from workbench.models.split import SplitGraph

__all__ = ["default_cam_layer", "gradcam", "gradcam_pp"]

AnyModel = Model | nn.Module | Forward


# -- layers -----------------------------------------------------------------------------------------
_WHY = "CAM methods hook a layer"


def _split_points(model: AnyModel, net: nn.Module) -> list[str]:
    try:
        return model.layers() if isinstance(model, Model) else SplitGraph.trace(net).layers()
    except Exception as err:  # noqa: BLE001 - any tracing failure means: no default layer
        raise ValueError(
            f"layer: no default layer, the network's split points are unavailable ({err}); pass layer="
        ) from err


def _spatial_kind(act: torch.Tensor, net: nn.Module, image_hw: tuple[int, int]) -> str | None:
    if act.ndim == 4 and act.shape[2] * act.shape[3] > 1:
        return "spatial"
    if act.ndim == 3:
        layout = token_layout(net, act.shape[1], image_hw)
        if layout is not None and layout[1] * layout[2] > 1:
            return "tokens"
    return None


def default_cam_layer(model: AnyModel, x: torch.Tensor, y: torch.Tensor | int = 0) -> str:
    """The layer GradCAM uses when ``layer=None``, found with one forward (and backward) on ``x[:1]``.

    Among the split points (``model.layers()``) in forward order, the last whose activation is
    spatial: a 4-D (N, C, h, w) map with h * w > 1 (the last conv stage of a CNN, not the 1x1
    pooled output), or a ViT token sequence (N, T, C) whose patch tokens form a grid. For token
    layers, the last one whose *patch tokens* influence the score is taken: with CLS-token pooling
    the patch tokens of the last block's output (and of the final norm) have exactly zero gradient,
    so the default is the input of the last block (for a timm ViT with 6 blocks: ``"blocks.4"``).
    """
    net = network(model, _WHY)
    forward, x, y = prepare(model, x[:1], y if isinstance(y, int) else y[:1])
    names = _split_points(model, net)
    image_hw = (x.shape[2], x.shape[3])
    store: dict[str, list[torch.Tensor]] = {}
    with (
        forward_hooks(
            net, names, lambda name, out: store.setdefault(name, []).append(out), skip_non_tensors=True
        ),
        torch.inference_mode(False),
        torch.enable_grad(),
    ):
        probe = x.detach().clone().requires_grad_(True)
        score = class_scores(forward(probe), y.clone() if y.is_inference() else y).sum()
    kinds = [
        (name, _spatial_kind(store[name][0], net, image_hw))
        for name in names
        if len(store.get(name, ())) == 1  # modules run more than once per pass are ambiguous
    ]
    kinds = [(name, kind) for name, kind in kinds if kind is not None]
    if not kinds:
        raise ValueError(
            "layer: no split point has a spatial activation (N, C, h, w) with h * w > 1 or patch tokens"
            f" (N, T, C) for inputs of size {image_hw}; pass layer="
        )
    last_name, last_kind = kinds[-1]
    if last_kind == "spatial":
        return last_name
    tokens = []
    for name, kind in reversed(kinds):
        if kind != "tokens":
            break
        tokens.append(name)
    acts = [store[name][0] for name in tokens]
    grads = torch.autograd.grad(score, acts, allow_unused=True)
    for name, act, grad in zip(tokens, acts, grads, strict=True):
        prefix = token_layout(net, act.shape[1], image_hw)[0]
        if grad is not None and bool(grad[:, prefix:].ne(0).any()):
            return name
    raise ValueError(
        f"layer: the patch tokens of the token layers {tokens[::-1]} do not influence the score; pass layer="
    )


# -- the CAM computation ----------------------------------------------------------------------------
def _layer_grads(
    forward: Forward, net: nn.Module, name: str, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Activation of the layer ``name`` of ``net`` and d score_y / d activation, for one chunk of images."""
    store: list[torch.Tensor] = []

    def leaf(_name: str, out: torch.Tensor) -> torch.Tensor:
        if store:
            raise ValueError(
                f"layer {name!r} runs more than once per forward pass (a shared module); pick a module"
                " that runs once"
            )
        store.append(out.detach().requires_grad_(True))
        return store[0].clone()  # later in-place ops (ReLU(inplace=True)) must not touch the leaf

    with forward_hooks(net, [name], leaf), torch.inference_mode(False), torch.enable_grad():
        scores = class_scores(forward(x.detach().clone()), y.clone() if y.is_inference() else y)
        if not store:
            raise ValueError(f"layer {name!r} did not run in the forward pass")
        (grads,) = torch.autograd.grad(scores.sum(), store[0], allow_unused=True)
    act = store[0].detach()
    return act, torch.zeros_like(act) if grads is None else grads


def _as_grid(t: torch.Tensor, layout: tuple[int, int, int] | None) -> torch.Tensor:
    """(B, C, h, w) as is; tokens (B, T, C) -> patch tokens as (B, C, h, w), prefix tokens dropped."""
    if layout is None:
        return t
    prefix, gh, gw = layout
    return t[:, prefix:].reshape(t.shape[0], gh, gw, t.shape[2]).permute(0, 3, 1, 2)


def _cam(
    model: AnyModel,
    x: torch.Tensor,
    y: torch.Tensor | int,
    layer: str | nn.Module | None,
    batch_size: int,
    combine: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    net = network(model, _WHY)
    forward, x, y = prepare(model, x, y)
    name = default_cam_layer(model, x, y) if layer is None else resolve_layer(net, layer)
    image_hw = (x.shape[2], x.shape[3])
    maps = torch.empty(len(x), *image_hw, device=x.device)
    layout: tuple[int, int, int] | None = None
    for sl in iter_batches(len(x), batch_size):
        act, grads = _layer_grads(forward, net, name, x[sl], y[sl])
        if act.ndim == 3:
            layout = token_layout(net, act.shape[1], image_hw)
            if layout is None:
                raise ValueError(
                    f"layer {name!r}: cannot arrange {act.shape[1]} tokens into a patch grid for inputs of"
                    f" size {image_hw}"
                )
        elif act.ndim != 4:
            raise ValueError(
                f"layer {name!r} gives shape {tuple(act.shape)}; GradCAM needs a spatial (N, C, h, w)"
                " activation or ViT tokens (N, T, C)"
            )
        cam = F.relu(combine(_as_grid(act, layout).float(), _as_grid(grads, layout).float()))
        maps[sl] = F.interpolate(cam[:, None], size=image_hw, mode="bilinear", align_corners=False)[:, 0]
    return finite_maps(maps)


def _gradcam_combine(act: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    weights = grads.mean(dim=(2, 3), keepdim=True)  # alpha_k: global-average-pooled gradients
    return (weights * act).sum(1)


def _gradcam_pp_combine(act: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    g2 = grads * grads
    g3 = g2 * grads
    denom = 2 * g2 + act.sum(dim=(2, 3), keepdim=True) * g3
    safe = torch.where(denom != 0, denom, torch.ones_like(denom))
    alpha = torch.where(denom != 0, g2 / safe, torch.zeros_like(denom))
    weights = (alpha * F.relu(grads)).sum(dim=(2, 3), keepdim=True)
    return (weights * act).sum(1)


@register(
    "gradcam",
    paper="Selvaraju et al., Grad-CAM: Visual Explanations from Deep Networks via Gradient-based Localization, ICCV 2017",
)
def gradcam(
    model: AnyModel,
    x: torch.Tensor,
    y: torch.Tensor | int,
    *,
    layer: str | nn.Module | None = None,
    batch_size: int = 64,
) -> torch.Tensor:
    """GradCAM: ``ReLU(sum_k alpha_k A_k)`` with ``alpha_k`` the spatial mean of ``dS/dA_k``.

    Selvaraju, Cogswell, Das, Vedantam, Parikh & Batra, "Grad-CAM: Visual Explanations from Deep
    Networks via Gradient-based Localization", ICCV 2017. S is the class logit (before softmax),
    A the layer's activation; the CAM is upsampled bilinearly to the input size, so it matches
    Captum's ``LayerGradCam(relu_attributions=True)`` followed by
    ``LayerAttribution.interpolate(..., "bilinear")``.

    Parameters
    ----------
    model
        A workbench :class:`~workbench.models.Model` or any ``nn.Module`` (hooks need modules).
    x
        Images (N, C, H, W); in [0, 1] for a workbench Model. Never modified.
    y
        Target classes (N,) (an int applies to every image).
    layer
        A module name relative to ``model.net`` for a Model (as ``model.layers()`` lists them) or
        to the module itself, or the submodule. Default None: :func:`default_cam_layer` (the last
        conv stage of a CNN; for a ViT the last token layer whose patch tokens reach the score, i.e.
        the input of the last block under CLS pooling). Token layers (N, T, C) are reshaped to the
        patch grid without the prefix (CLS / register) tokens (``num_prefix_tokens`` in timm).
    batch_size
        Images per forward/backward pass.

    Returns
    -------
    torch.Tensor
        (N, H, W) float32 non-negative maps.
    """
    return _cam(model, x, y, layer, batch_size, _gradcam_combine)


@register(
    "gradcam_pp",
    paper="Chattopadhay et al., Grad-CAM++: Generalized Gradient-Based Visual Explanations, WACV 2018",
)
def gradcam_pp(
    model: AnyModel,
    x: torch.Tensor,
    y: torch.Tensor | int,
    *,
    layer: str | nn.Module | None = None,
    batch_size: int = 64,
) -> torch.Tensor:
    """GradCAM++: GradCAM with pixel-wise weights ``alpha`` on the positive gradients.

    Chattopadhay, Sarkar, Howlader & Balasubramanian, "Grad-CAM++: Generalized Gradient-based
    Visual Explanations for Deep Convolutional Networks", WACV 2018. With ``Y = exp(S)`` and the
    network piecewise linear (higher derivatives of S vanish), the closed form (eq. 19) is::

        alpha_kij = g_kij^2 / (2 g_kij^2 + sum_ab A_kab g_kij^3),   g = dS/dA
        w_k       = sum_ij alpha_kij ReLU(g_kij)
        CAM       = ReLU(sum_k w_k A_k)

    (``exp(S)`` cancels in alpha; ``alpha = 0`` where the denominator is 0.) The paper's weights
    carry an extra positive factor ``exp(S)`` per image; like the common reference implementation
    (pytorch-grad-cam) it is left out, as it only rescales each map and overflows for logits
    above ~88. The authors' code further normalizes alpha per channel; that is not done here.

    Parameters
    ----------
    model, x, y, layer, batch_size
        As in :func:`gradcam`.

    Returns
    -------
    torch.Tensor
        (N, H, W) float32 non-negative maps.
    """
    return _cam(model, x, y, layer, batch_size, _gradcam_pp_combine)
