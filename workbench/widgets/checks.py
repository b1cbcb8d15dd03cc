"""Argument checks of the widgets: indices, atom ids, class-index vectors, boolean masks, names, maps.

Every check accepts tensors, NumPy arrays (and lists where it says so) and raises a ``ValueError`` or
``IndexError`` that names the argument.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch


def check_atom(atom: Any, n_atoms: int, kind: str = "atom", owner: str = "dictionary") -> int | None:
    """An atom id for a dictionary widget's ``select``: None, or an int in [0, n_atoms); clear errors otherwise.

    ``kind`` and ``owner`` name the item and what holds it in the messages (a gallery's "concept" ids).
    """
    if atom is None:
        return None
    if isinstance(atom, bool) or not isinstance(atom, int | np.integer):
        raise ValueError(f"{kind}: expected an integer {kind} id, got {atom!r}")
    if not 0 <= int(atom) < n_atoms:
        raise IndexError(f"{kind} {atom} is out of range: the {owner} has {kind}s 0..{n_atoms - 1}")
    return int(atom)


def check_index(index: Any, n: int, where: str = "select") -> int:
    """An image index for ``select`` (``where`` names the method in the messages): an int (or 1-element
    integer tensor) in [0, n); clear errors otherwise."""
    if isinstance(index, bool) or not isinstance(index, int | np.integer | torch.Tensor):
        raise ValueError(f"{where}: expected an integer index, got {type(index).__name__} {index!r}")
    if isinstance(index, torch.Tensor):
        if index.numel() != 1 or index.is_floating_point() or index.dtype == torch.bool:
            raise ValueError(
                f"{where}: expected an integer index, got a tensor of shape {tuple(index.shape)}"
                f" and dtype {index.dtype}"
            )
        index = int(index.item())
    index = int(index)
    if not 0 <= index < n:
        raise IndexError(f"{where}: index {index} is out of range for {n} images (valid: 0..{n - 1})")
    return index


def to_numpy(x: Any, name: str) -> np.ndarray:
    """``x`` (tensor, array or list) as a NumPy array; a clear error naming ``name`` otherwise."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    try:
        return np.asarray(x)
    except Exception as err:  # noqa: BLE001 - re-raised with the argument name
        raise ValueError(f"{name}: could not convert {type(x).__name__} to an array ({err})") from err


def check_class_indices(x: Any, name: str, n: int) -> np.ndarray:
    """(N,) non-negative integer class indices (int64); whole floats are accepted, logits are not."""
    arr = to_numpy(x, name)
    if arr.ndim == 2 and arr.shape[0] == n:
        raise ValueError(
            f"{name}: expected class indices of shape ({n},), got shape {arr.shape}; pass indices, e.g. logits.argmax(1)"
        )
    if arr.shape != (n,):
        raise ValueError(f"{name}: expected shape ({n},) to match the {n} images, got shape {arr.shape}")
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        if (
            np.issubdtype(arr.dtype, np.floating)
            and np.all(np.isfinite(arr))
            and np.all(arr == np.round(arr))
        ):
            arr = arr.astype(np.int64)
        else:
            raise ValueError(f"{name}: expected integer class indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if n and arr.min() < 0:
        raise ValueError(f"{name}: class indices must be >= 0, got {int(arr.min())}")
    return arr


def check_bool_array(x: Any, name: str, shape: tuple[int, ...], what: str) -> np.ndarray:
    """A bool array of ``shape`` (0/1 numbers are accepted); ``what`` names the axes in errors."""
    arr = to_numpy(x, name)
    if arr.shape != shape:
        raise ValueError(f"{name}: expected shape {shape} ({what}), got shape {arr.shape}")
    if arr.dtype != bool:
        if not np.all((arr == 0) | (arr == 1)):
            raise ValueError(f"{name}: expected booleans (or 0/1), got dtype {arr.dtype} with other values")
        arr = arr.astype(bool)
    return arr


def check_names(names: Sequence[str] | None, count: int, name: str, default: str) -> list[str]:
    """At least ``count`` names as strings; None gives ``default`` + "0", "1", ..."""
    if names is None:
        return [f"{default}{i}" for i in range(count)]
    if isinstance(names, str):
        raise ValueError(f"{name}: expected a list of names, got the string {names!r}")
    out = [str(s) for s in names]
    if len(out) < count:
        raise ValueError(f"{name}: {len(out)} names given, but at least {count} are needed")
    return out


def as_tensor(x: Any, name: str, what: str) -> torch.Tensor:
    """``x`` as a tensor (NumPy arrays by the package's one conversion, :func:`workbench._core.validation.as_tensor`);
    ``what`` is the expected shape."""
    from workbench._core.validation import as_tensor as to_tensor

    try:
        x = to_tensor(x)
    except ValueError as err:
        raise ValueError(f"{name}: could not convert the array to a tensor ({err})") from err
    if isinstance(x, torch.Tensor):
        return x
    raise ValueError(f"{name}: expected a torch.Tensor of shape {what}, got {type(x).__name__}")


def check_values(x: Any, name: str, shape: Sequence[int | None], what: str) -> torch.Tensor:
    """Finite real numbers of ``shape`` (``None``: any size on that axis) as a float32 CPU tensor;
    ``what`` names the axes in errors ("M crops, r concepts"). Lists of numbers are accepted too."""
    if isinstance(x, list | tuple):
        x = float_array(x, name, f"numbers of shape {tuple(shape)}")
    t = as_tensor(x, name, str(tuple(shape)))
    if t.dtype == torch.bool or t.is_complex():
        raise ValueError(f"{name}: expected real numbers, got dtype {t.dtype}")
    got = tuple(t.shape)
    if len(got) != len(shape) or any(s is not None and s != g for s, g in zip(shape, got, strict=False)):
        dims = ", ".join("?" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "")
        raise ValueError(f"{name}: expected shape ({dims}) ({what}), got {got}")
    t = t.detach().to("cpu", torch.float32)
    if not bool(torch.isfinite(t).all()):
        kind = "NaN" if bool(torch.isnan(t).any()) else "infinite"
        raise ValueError(f"{name}: contains {kind} values")
    return t


def check_maps(
    maps_by_method: Any, n: int, image_hw: tuple[int, int]
) -> tuple[OrderedDict[str, torch.Tensor], dict[str, bool]]:
    """Validate ``maps_by_method``: a non-empty dict name -> (N, h, w) finite float maps."""
    if not isinstance(maps_by_method, Mapping):
        raise ValueError(
            "maps_by_method: expected a dict {method name: maps of shape (N, H, W)}, got"
            f" {type(maps_by_method).__name__}"
        )
    if not maps_by_method:
        raise ValueError("maps_by_method: expected at least one method, got an empty dict")
    maps: OrderedDict[str, torch.Tensor] = OrderedDict()
    signed: dict[str, bool] = {}
    H, W = image_hw
    for key, value in maps_by_method.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"maps_by_method: method names must be non-empty strings, got {key!r}")
        name = f"maps_by_method[{key!r}]"
        m = as_tensor(value, name, f"({n}, H, W)")
        if m.ndim == 4 and m.shape[1] == 1:
            m = m[:, 0]
        if m.ndim != 3:
            hint = " (one map? add a batch dimension with m[None])" if m.ndim == 2 else ""
            raise ValueError(f"{name}: expected shape ({n}, H, W), got {tuple(m.shape)}{hint}")
        if m.shape[0] != n:
            raise ValueError(
                f"{name}: expected {n} maps (one per image), got shape {tuple(m.shape)}; maps must be (N, H, W)"
            )
        h, w = int(m.shape[1]), int(m.shape[2])
        if h < 1 or w < 1:
            raise ValueError(f"{name}: got an empty map, shape {tuple(m.shape)}")
        if h * W != w * H:
            raise ValueError(
                f"{name}: maps of shape {(h, w)} do not have the aspect ratio of the {(H, W)} images;"
                " expected (H, W) or a coarser grid such as (8, 8) for square images"
            )
        if m.is_complex():
            raise ValueError(f"{name}: expected real values, got dtype {m.dtype}")
        m = m.detach().to("cpu", torch.float32)
        finite = torch.isfinite(m).flatten(1).all(1)
        if not bool(finite.all()):
            bad = torch.nonzero(~finite).flatten().tolist()
            kind = "NaN" if bool(torch.isnan(m).any()) else "infinite"
            shown = ", ".join(map(str, bad[:8])) + (", ..." if len(bad) > 8 else "")
            raise ValueError(f"{name}: method {key!r} has {kind} values in the maps of images [{shown}]")
        maps[key] = m.contiguous()
        signed[key] = bool((m < 0).any())
    return maps, signed


def check_image_names(names: Any, n: int) -> list[str] | None:
    """``names`` of the N images (a list, tuple or array of N strings, e.g. what
    :func:`workbench.data.sample_images` returns), or None."""
    if names is None:
        return None
    if isinstance(names, str) or not isinstance(names, Sequence | np.ndarray):
        raise ValueError(
            f"names: expected a list of {n} image names, got {type(names).__name__} {names!r:.60}"
        )
    out = [str(s) for s in names]
    if len(out) != n:
        raise ValueError(f"names: expected {n} names (one per image), got {len(out)}")
    return out


def check_image_ids(ids: Any, n: int) -> list[int] | None:
    """``ids``: the N distinct non-negative integers the images are numbered by (e.g. their indices in
    the dataset a viewer of a few of its images comes from), or None (numbered 0 ... N-1)."""
    if ids is None:
        return None
    if isinstance(ids, str) or not isinstance(ids, Sequence | np.ndarray | torch.Tensor):
        raise ValueError(f"ids: expected a list of {n} image numbers, got {type(ids).__name__} {ids!r:.60}")
    out = to_numpy(ids, "ids")
    if out.shape != (n,) or not (np.issubdtype(out.dtype, np.integer) and (out >= 0).all()):
        raise ValueError(f"ids: expected {n} non-negative integers (one per image), got {ids!r:.80}")
    if len(set(out.tolist())) != n:
        raise ValueError(f"ids: expected distinct numbers, got {ids!r:.80}")
    return [int(v) for v in out]


def check_sizes(**sizes: tuple[Any, int, int]) -> None:
    """Check layout sizes given as ``name=(value, lo, hi)``: each an integer in [lo, hi]."""
    for name, (value, lo, hi) in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or not lo <= value <= hi:
            raise ValueError(f"{name}: expected an integer in [{lo}, {hi}], got {value!r}")


def as_images(images: Any) -> torch.Tensor:
    """A viewer's ``images``: (N, 3, H, W) in [0, 1], a tensor or a NumPy array, as a CPU tensor."""
    from workbench._core.validation import check_images

    return check_images(images, name="images", channels=3).detach().cpu()  # NumPy converted there


def check_class_names(
    names: Sequence[str] | None, indices: Mapping[str, np.ndarray | None], arg: str = "class_names"
) -> list[str]:
    """The names of the class indices in ``indices`` (``{argument: (N,) indices or None}``): ``names`` as
    strings, by default "0", "1", ... up to the largest index; an index past the names is an error."""
    top = max([int(a.max()) for a in indices.values() if a is not None and a.size], default=-1)
    out = check_names(names, top + 1 if names is None else 0, arg, "")
    for name, arr in indices.items():
        if arr is not None and arr.size and int(arr.max()) >= len(out):
            raise ValueError(f"{name}: class index {int(arr.max())} is out of range for {len(out)} {arg}")
    return out


def float_array(value: Any, where: str, expected: str, got: Callable[[Any], str] = repr) -> np.ndarray:
    """``value`` (a number, list, array or tensor of any dtype) as a float64 NumPy array; otherwise a
    ``ValueError`` "``where``: expected ``expected``, got ``got(value)``"."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().double().numpy()  # via float64: NumPy has no bfloat16
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: expected {expected}, got {got(value)}") from err


def method_dicts(
    table: Any, name: str, outer: str, inner: str, methods: Sequence[str] | None = None
) -> Iterator[tuple[Any, Mapping]]:
    """The ``(method, dict)`` items of a ``{method: {key: value}}`` argument ``name``, checked as they are
    read: ``table`` a dict (checked at once; ``outer`` shows the expected form), each method among
    ``methods`` (any non-empty string when None), each value a dict (``inner`` shows its form)."""
    if not isinstance(table, Mapping):
        raise ValueError(f"{name}: expected a dict {outer}, got {type(table).__name__}")

    def items() -> Iterator[tuple[Any, Mapping]]:
        for method, value in table.items():
            if methods is None:
                if not isinstance(method, str) or not method:
                    raise ValueError(f"{name}: method names must be non-empty strings, got {method!r}")
            elif method not in methods:
                raise ValueError(f"{name}: unknown method {method!r}; the methods are {list(methods)}")
            if not isinstance(value, Mapping):
                raise ValueError(f"{name}[{method!r}]: expected a dict {inner}, got {type(value).__name__}")
            yield method, value

    return items()
