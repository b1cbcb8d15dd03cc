"""Checks at the public boundary: fail early, say what was expected and what came."""

from __future__ import annotations

import difflib
import numbers
from collections.abc import Iterable, Sequence

import numpy as np
import torch


def as_tensor(value):
    """A NumPy array (or NumPy scalar array) as a torch tensor; anything else is returned unchanged.

    The one conversion at the public boundary, so every function that takes tensors (images, targets,
    maps, masks, baselines) also takes NumPy arrays. Floating arrays become float32 (NumPy's default
    float64 would not run through a float32 model, and a tensor of maps is float32 everywhere in the
    package); integer and bool arrays keep their dtype (class indices, masks). The array is copied
    when it is not writable or not in native byte order, since torch cannot share such memory.
    Lists and numbers are left to the caller's own checks, which name what they expect.
    """
    if not isinstance(value, np.ndarray):
        return value
    if value.dtype.kind not in "biuf":
        raise ValueError(f"expected a numeric NumPy array, got dtype {value.dtype}")
    if value.dtype.kind == "f":
        value = value.astype(np.float32, copy=False)
    if not value.flags.writeable or not value.dtype.isnative:
        value = value.astype(value.dtype.newbyteorder("="), copy=True)
    return torch.from_numpy(np.ascontiguousarray(value))


def tracing() -> bool:
    """True while ``torch.compile`` (Dynamo) or ``torch.export`` traces the code that calls this.

    Checks that read the values of a tensor (a range check) are data-dependent: under tracing they
    cannot be evaluated, so they are skipped there and run in eager mode only.
    """
    compiler = getattr(torch, "compiler", None)
    for probe in ("is_compiling", "is_exporting"):
        fn = getattr(compiler, probe, None)
        if fn is not None and fn():
            return True
    return False


def check_int(value: int, name: str, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum`` (Python or NumPy integers; not bools), or a clear error naming it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def check_activations(
    a: torch.Tensor | np.ndarray,
    name: str = "A",
    *,
    n_features: int | None = None,
    nonnegative: bool = False,
) -> torch.Tensor:
    """A matrix of activations (n, d) as a floating tensor, or a clear error naming ``name``.

    The check every factorization (NMF, PCA, ...) runs on its input. Integer and bool matrices become
    float32; floating ones keep their dtype and device. ``n_features`` is the width the matrix must have
    (a fitted factorization's); ``nonnegative`` refuses negative entries and names the minimum found
    (NMF needs A >= 0; a caller such as CRAFT passes ``name="activations of layer 'layer4'"``). NaN and
    infinite values are refused. The value checks cost one device synchronisation.
    """
    a = as_tensor(a)
    if not isinstance(a, torch.Tensor) or a.ndim != 2:
        shape = tuple(a.shape) if isinstance(a, torch.Tensor) else type(a).__name__
        width = n_features if n_features is not None else "d"
        raise ValueError(f"{name}: expected a matrix of shape (n, {width}), got {shape}")
    if a.is_complex():
        raise ValueError(f"{name}: expected real values, got dtype {a.dtype}")
    if not a.is_floating_point():
        a = a.float()
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{name}: got an empty matrix, shape {tuple(a.shape)}")
    if n_features is not None and a.shape[1] != n_features:
        raise ValueError(
            f"{name}: expected {n_features} features (the width the factorization was fitted on),"
            f" got shape {tuple(a.shape)}"
        )
    if not tracing():
        lo, hi = torch.aminmax(a.detach())
        lo, hi = float(lo), float(hi)
        if not (lo == lo and hi == hi) or abs(lo) == float("inf") or abs(hi) == float("inf"):
            raise ValueError(f"{name}: contains NaN or infinite values")
        if nonnegative and lo < 0:
            raise ValueError(
                f"{name}: expected non-negative values (NMF factorizes A >= 0), got minimum {lo:.4g};"
                " take activations after a ReLU, or use a factorization that accepts signed data"
                " (semi_nmf, pca, ica, kmeans)"
            )
    return a


def check_images(
    x: torch.Tensor,
    name: str = "x",
    channels: int | Sequence[int] | None = 3,
    value_range: tuple[float, float] | None = (0.0, 1.0),
) -> torch.Tensor:
    """Validate an image batch: a float tensor (N, C, H, W) in pixel space [0, 1] (or a NumPy array).

    Parameters
    ----------
    x
        The batch to check: a tensor, or a NumPy array converted by :func:`as_tensor`.
    name
        The argument name used in error messages.
    channels
        Allowed channel counts (None accepts any).
    value_range
        Inclusive bounds for the values, or None to skip the range check (which needs one
        device synchronisation). The range check is also skipped while ``torch.compile`` or
        ``torch.export`` traces the caller (:func:`tracing`): a traced graph cannot branch on the
        values of its input, so the check would make the trace fail.

    Returns
    -------
    torch.Tensor
        ``x`` itself, unchanged (or the tensor made from a NumPy array), so the call can be chained:
        callers use the returned value.
    """
    x = as_tensor(x)
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
    if value_range is not None and not tracing():
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


def check_maps(
    maps: torch.Tensor | np.ndarray,
    name: str = "maps",
    *,
    n: int | None = None,
    size: Sequence[int] | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Attribution maps (N, H, W) or (N, C, H, W) as detached (N, H, W) values (channels averaged).

    Parameters
    ----------
    maps
        A tensor or a NumPy array (converted by :func:`as_tensor`).
    name
        The argument name used in error messages.
    n, size
        The number of maps and their (H, W) size when they must match images; None skips the check.
    dtype
        The floating dtype of the result (float64 where sums over many pixels need it).

    Raises
    ------
    ValueError
        For another type or number of dimensions, a count or size that does not match, complex or
        bool values, NaN or infinite values.
    """
    maps = as_tensor(maps)
    if not isinstance(maps, torch.Tensor) or maps.ndim not in (3, 4):
        shape = tuple(maps.shape) if isinstance(maps, torch.Tensor) else type(maps).__name__
        raise ValueError(f"{name}: expected maps (N, H, W) or (N, C, H, W), got {shape}")
    if (n is not None and maps.shape[0] != n) or (size is not None and tuple(maps.shape[-2:]) != tuple(size)):
        want = f"{n if n is not None else 'N'} maps of size {tuple(size) if size is not None else '(H, W)'}"
        raise ValueError(
            f"{name}: expected {want} to match the images, got shape {tuple(maps.shape)}"
            " (upsample grid maps to the image size first)"
        )
    if maps.is_complex() or maps.dtype == torch.bool:
        raise ValueError(f"{name}: expected real values, got dtype {maps.dtype}")
    out = maps.detach().to(dtype)
    if out.ndim == 4:
        out = out.mean(1)
    if not bool(torch.isfinite(out).all()):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return out


def check_targets(
    y: torch.Tensor | Sequence[int] | int, n: int, num_classes: int | None = None
) -> torch.Tensor:
    """Validate class-index targets: shape (N,), integer, within [0, num_classes).

    A Python (or NumPy) int is broadcast to all N images on purpose (a common, unambiguous case); anything
    else must already have N entries. One-hot targets are refused with a hint.
    """
    y = as_tensor(y)
    if isinstance(y, numbers.Integral) and not isinstance(y, bool):
        y = torch.full((n,), int(y), dtype=torch.long)
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


def check_fraction(
    value: float, name: str, low: float = 0.0, high: float = 1.0, inclusive: tuple[bool, bool] = (True, True)
) -> float:
    """``value`` as a float between ``low`` and ``high``, or a clear error naming it and the bounds.

    Parameters
    ----------
    value
        A real number (Python or NumPy; not a bool, not NaN).
    name
        The argument name used in the error message.
    low, high
        The bounds.
    inclusive
        Whether ``low`` and ``high`` themselves are allowed: (True, True) is [low, high], (False, False)
        is (low, high). Each caller states its own bounds (a fraction of cells to remove must be in
        (0, 1), a grey level in [0, 1]).
    """
    lo_ok = (lambda v: v >= low) if inclusive[0] else (lambda v: v > low)
    hi_ok = (lambda v: v <= high) if inclusive[1] else (lambda v: v < high)
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or value != value  # NaN
        or not (lo_ok(value) and hi_ok(value))
    ):
        interval = f"{'[' if inclusive[0] else '('}{low:g}, {high:g}{']' if inclusive[1] else ')'}"
        raise ValueError(f"{name}: expected a number in {interval}, got {value!r}")
    return float(value)


def check_baseline(
    baseline: float | torch.Tensor | np.ndarray, x: torch.Tensor, pixel_range: bool
) -> torch.Tensor:
    """A baseline as a tensor broadcastable to ``x`` (expanded, not copied), or a clear error.

    The one place a baseline value (what a removed pixel becomes) is checked, for every method and
    metric that takes one. Accepted, for images ``x`` of shape (N, C, H, W):

    - a number (int, float or NumPy scalar) or a 0-d tensor: one value everywhere;
    - (C, 1, 1) or (1, C, 1, 1): one colour per channel;
    - (C, H, W) or (1, C, H, W): one image for every input;
    - (N, C, H, W): one image per input (a blurred copy of ``x``, ...).

    Tensors or NumPy arrays (converted by :func:`as_tensor`). Any other shape is refused rather than
    broadcast silently. With ``pixel_range`` (a workbench Model, which normalizes inside) the values
    must lie in [0, 1].
    """
    n, c, h, w = x.shape
    baseline = as_tensor(baseline)
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


def check_codes(codes: torch.Tensor | np.ndarray, name: str = "codes") -> torch.Tensor:
    """Concept coefficients (N, r, *positions) as a detached float tensor, or a clear error.

    One row of ``r`` coefficients per image: (N, r) for pooled activations, (N, r, H, W) per position
    of a CNN map, (N, r, T) per ViT token. Float32 unless they are float64 already; NaN or infinite
    values are refused (a concept score computed from them would be NaN).
    """
    codes = as_tensor(codes)
    if not isinstance(codes, torch.Tensor) or codes.ndim < 2:
        shape = tuple(codes.shape) if isinstance(codes, torch.Tensor) else type(codes).__name__
        raise ValueError(
            f"{name}: expected concept coefficients (N, r), (N, r, H, W) or (N, r, T), got {shape}"
        )
    if codes.shape[0] == 0 or codes.shape[1] == 0:
        raise ValueError(
            f"{name}: expected at least one image and one concept, got shape {tuple(codes.shape)}"
        )
    if codes.is_complex() or codes.dtype == torch.bool:
        raise ValueError(f"{name}: expected real values, got dtype {codes.dtype}")
    codes = codes.detach()
    if codes.dtype != torch.float64:
        codes = codes.float()
    if not bool(torch.isfinite(codes).all()):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return codes
