"""Checks at the public boundary: fail early, say what was expected and what came."""

from __future__ import annotations

import difflib
import numbers
from collections.abc import Iterable, Sequence

import torch


def check_int(value: int, name: str, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum`` (Python or NumPy integers; not bools), or a clear error naming it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def check_images(
    x: torch.Tensor,
    name: str = "x",
    channels: int | Sequence[int] | None = 3,
    value_range: tuple[float, float] | None = (0.0, 1.0),
) -> torch.Tensor:
    """Validate an image batch: a float tensor (N, C, H, W) in pixel space [0, 1].

    Parameters
    ----------
    x
        The batch to check.
    name
        The argument name used in error messages.
    channels
        Allowed channel counts (None accepts any).
    value_range
        Inclusive bounds for the values, or None to skip the range check (which needs one
        device synchronisation).

    Returns
    -------
    torch.Tensor
        ``x`` itself, unchanged, so the call can be chained.
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor of shape (N, C, H, W), got {type(x).__name__}")
    if x.ndim != 4:
        hint = " (a single image? add a batch dimension with x[None])" if x.ndim == 3 else ""
        raise ValueError(f"{name}: expected 4 dimensions (N, C, H, W), got shape {tuple(x.shape)}{hint}")
    if not x.is_floating_point():
        raise ValueError(
            f"{name}: expected a float tensor in [0, 1], got dtype {x.dtype}"
            " (convert uint8 images with x.float() / 255)"
        )
    if channels is not None:
        allowed = (channels,) if isinstance(channels, int) else tuple(channels)
        if x.shape[1] not in allowed:
            if x.shape[-1] in allowed:
                raise ValueError(
                    f"{name}: got shape {tuple(x.shape)}, which looks channel-last (N, H, W, C);"
                    f" expected channel-first (N, C, H, W): use x.permute(0, 3, 1, 2)"
                )
            raise ValueError(
                f"{name}: expected {allowed} channels in dimension 1, got shape {tuple(x.shape)}"
            )
    if x.shape[0] == 0:
        raise ValueError(f"{name}: got an empty batch, shape {tuple(x.shape)}")
    if value_range is not None:
        lo, hi = torch.aminmax(x.detach())
        lo, hi = float(lo), float(hi)
        if not (lo == lo and hi == hi):  # NaN compares unequal to itself
            raise ValueError(f"{name}: contains NaN values")
        if lo < value_range[0] - 1e-6 or hi > value_range[1] + 1e-6:
            raise ValueError(
                f"{name}: expected pixel values in [{value_range[0]}, {value_range[1]}], got values in"
                f" [{lo:.4g}, {hi:.4g}]; pass images in pixel space, the model normalizes inside"
            )
    return x


def check_targets(
    y: torch.Tensor | Sequence[int] | int, n: int, num_classes: int | None = None
) -> torch.Tensor:
    """Validate class-index targets: shape (N,), integer, within [0, num_classes).

    A Python int is broadcast to all N images on purpose (a common, unambiguous case); anything
    else must already have N entries. One-hot targets are refused with a hint.
    """
    if isinstance(y, int):
        y = torch.full((n,), y, dtype=torch.long)
    elif not isinstance(y, torch.Tensor):
        y = torch.as_tensor(y)
    if y.is_floating_point() or y.dtype == torch.bool:
        raise ValueError(f"y: expected integer class indices of shape ({n},), got dtype {y.dtype}")
    if y.ndim == 2:
        raise ValueError(
            f"y: expected class indices of shape ({n},), got shape {tuple(y.shape)}; one-hot targets are"
            " not accepted, use y.argmax(1)"
        )
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"y: expected shape ({n},) to match the {n} images, got shape {tuple(y.shape)}")
    if n and num_classes is not None:
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(f"y: targets must lie in [0, {num_classes - 1}], got values in [{lo}, {hi}]")
    return y.long()


def closest_names(name: str, valid: Iterable[str], n: int = 5) -> list[str]:
    """The valid names closest to ``name``, for "did you mean" messages."""
    valid = list(valid)
    close = difflib.get_close_matches(name, valid, n=n, cutoff=0.4)
    if not close:
        close = [v for v in valid if name.split(".")[0] in v][:n]
    return close


def check_baseline(baseline: float | torch.Tensor, x: torch.Tensor, pixel_range: bool) -> torch.Tensor:
    """A baseline as a tensor broadcastable to ``x`` (expanded, not copied), or a clear error.

    Accepted: a number, a 0-d tensor, (C, 1, 1), (1, C, 1, 1), (C, H, W), (1, C, H, W) or
    (N, C, H, W). Any other shape is refused rather than broadcast silently.
    """
    n, c, h, w = x.shape
    if isinstance(baseline, bool):
        raise ValueError(f"baseline: expected a float or a tensor, got {baseline!r}")
    if isinstance(baseline, numbers.Real):  # int, float and numpy scalars
        base = torch.tensor(float(baseline)).view(1, 1, 1, 1)
    elif isinstance(baseline, torch.Tensor):
        shape = tuple(baseline.shape)
        if shape == ():
            base = baseline.view(1, 1, 1, 1)
        elif shape == (c, 1, 1) or shape == (c, h, w):
            base = baseline[None]
        elif shape in ((1, c, 1, 1), (1, c, h, w), (n, c, h, w)):
            base = baseline
        else:
            raise ValueError(
                f"baseline: expected a float or a tensor of shape (), ({c}, 1, 1), (1, {c}, 1, 1),"
                f" ({c}, {h}, {w}), (1, {c}, {h}, {w}) or ({n}, {c}, {h}, {w}) to match x of shape"
                f" {tuple(x.shape)}; got shape {shape}"
            )
        if base.is_complex():
            raise ValueError(f"baseline: expected a real tensor, got dtype {base.dtype}")
    else:
        raise ValueError(f"baseline: expected a float or a tensor, got {type(baseline).__name__}")
    base = base.detach().to(device=x.device, dtype=x.dtype)
    if not bool(torch.isfinite(base).all()):
        raise ValueError("baseline: contains NaN or infinite values")
    if pixel_range:
        lo, hi = float(base.min()), float(base.max())
        if lo < -1e-6 or hi > 1 + 1e-6:
            raise ValueError(
                f"baseline: expected pixel values in [0, 1] (the Model normalizes inside), got values"
                f" in [{lo:.4g}, {hi:.4g}]"
            )
    return base.expand(n, c, h, w)
