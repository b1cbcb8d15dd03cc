"""Results save as two files side by side: tensors in safetensors, everything else in JSON.

Both are written to a temporary name first and renamed, so an interrupted save never leaves a
half-written result behind.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_result(result: Any, path: str | os.PathLike) -> Path:
    """Save a dataclass result: tensor fields to ``path.safetensors``, the rest to ``path.json``."""
    from safetensors.torch import save

    if not dataclasses.is_dataclass(result):
        raise ValueError(f"save_result: expected a dataclass instance, got {type(result).__name__}")
    path = Path(path)
    tensors, rest = {}, {}
    for field in dataclasses.fields(result):
        value = getattr(result, field.name)
        if isinstance(value, torch.Tensor):
            tensors[field.name] = value.detach().cpu().contiguous()
        elif isinstance(value, np.ndarray):
            tensors[field.name] = torch.from_numpy(np.ascontiguousarray(value))
            rest.setdefault("__numpy__", []).append(field.name)
        else:
            rest[field.name] = value
    rest["__class__"] = f"{type(result).__module__}.{type(result).__qualname__}"
    atomic_write_bytes(path.with_suffix(".safetensors"), save(tensors))
    atomic_write_bytes(path.with_suffix(".json"), json.dumps(rest, indent=1).encode())
    return path


def load_result(path: str | os.PathLike, cls: type | None = None) -> Any:
    """Load what :func:`save_result` wrote; ``cls`` defaults to the class recorded in the JSON."""
    import importlib

    from safetensors.torch import load_file

    path = Path(path)
    rest = json.loads(path.with_suffix(".json").read_text())
    tensors = load_file(str(path.with_suffix(".safetensors")))
    qualname = rest.pop("__class__")
    numpy_fields = set(rest.pop("__numpy__", []))
    if cls is None:
        module, _, name = qualname.rpartition(".")
        cls = getattr(importlib.import_module(module), name)
    values = {k: (v.numpy() if k in numpy_fields else v) for k, v in tensors.items()}
    values.update(rest)
    return cls(**values)
