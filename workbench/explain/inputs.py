"""What ``workbench explain`` explains: a model spec, a set of images, the classes asked for.

Every check here runs before any computation and fails with an :class:`ExplainInputError` (the CLI's exit
code 2) that says what was expected and what came: a model spec that does not load, a folder with no
images, a class name the model does not have. An unreadable image is not an error: it is skipped, with a
warning that lists it, and the rest are explained.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from workbench._core.validation import closest_names
from workbench.data.images import IMAGE_EXTENSIONS, center_crop_resize, load_image
from workbench.models import Model, load_model

__all__ = ["ExplainInputError", "ImageSource", "resolve_classes", "resolve_model", "scan_images"]


class ExplainInputError(ValueError):
    """Bad input to ``workbench explain``: the message says what was expected; the CLI exits with 2."""


def _model_from_file(path: Path, device: str) -> Model:
    """A model from a file: a ``.py`` defining ``model`` (an ``nn.Module``) or ``build_model()``, or a
    whole module saved with ``torch.save`` (``.pt`` / ``.pth``; unpickling runs code from the file: load
    only files you trust)."""
    if path.suffix == ".py":
        spec = importlib.util.spec_from_file_location(f"workbench_user_model_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        net = getattr(module, "model", None)
        if net is None and callable(getattr(module, "build_model", None)):
            net = module.build_model()
        if net is None:
            raise ExplainInputError(f"{path} defines neither `model` (an nn.Module) nor `build_model()`")
    else:
        net = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(net, Model):
        return net.to(device).eval()
    if not isinstance(net, torch.nn.Module):
        raise ExplainInputError(f"{path}: expected an nn.Module, got {type(net).__name__}")
    mean, std = getattr(net, "mean", None), getattr(net, "std", None)  # a module may carry its preprocessing
    model = load_model(net, device=device, mean=mean, std=std, labels=getattr(net, "labels", None),
                       input_size=getattr(net, "input_size", None))  # fmt: skip
    model.spec = f"file:{path.name}"
    return model


def resolve_model(spec: str | torch.nn.Module, device: str = "cpu") -> Model:
    """Load ``spec`` (``zoo:``, ``timm:``, ``torchvision:``, a ``.py`` / ``.pt`` file, or a module).

    Raises
    ------
    ExplainInputError
        When the spec does not load, with the loader's reason.
    """
    if isinstance(spec, torch.nn.Module):
        return load_model(spec, device=device)
    path = Path(str(spec))
    try:
        if path.suffix in (".py", ".pt", ".pth") and path.is_file():
            return _model_from_file(path.resolve(), device)
        return load_model(str(spec), device=device)
    except ExplainInputError:
        raise
    except Exception as err:  # noqa: BLE001 - any loader failure is the same user error: the spec
        raise ExplainInputError(
            f"model {spec!r} does not load ({type(err).__name__}: {err}). Expected zoo:NAME (workbench zoo list),"
            " timm:NAME, torchvision:NAME, or a .py file defining `model` / `build_model()` or a .pt module"
        ) from err


@dataclass
class ImageSource:
    """The images to explain, read on demand: files of a folder, PlantedShapes, or a tensor.

    Attributes
    ----------
    n
        Number of images (after unreadable files were skipped).
    names
        One name per image (a file path relative to the folder, or ``planted #i``).
    labels
        (n,) int64 true classes when known (PlantedShapes, class subfolders named like the model's
        classes), else None.
    skipped
        Files that could not be read (relative paths), left out of ``names``.
    description
        What the images are, for the signature of the result store and the report.
    """

    names: list[str]
    labels: torch.Tensor | None
    size: int
    description: dict
    root: Path | None = None
    tensor: torch.Tensor | None = None
    skipped: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.names)

    def get(self, indices: Sequence[int]) -> torch.Tensor:
        """Images ``indices`` as (k, 3, size, size) float32 in [0, 1]."""
        idx = [int(i) for i in indices]
        if self.tensor is not None:
            x = self.tensor[idx]
            return (
                x
                if x.shape[-1] == self.size
                else torch.stack([center_crop_resize(im, self.size) for im in x])
            )
        return torch.stack([load_image(self.root / self.names[i], self.size) for i in idx])


def _readable(path: Path) -> bool:
    """Whether Pillow decodes the whole file (``verify`` alone passes truncated JPEGs)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.convert("RGB").load()
        return True
    except Exception:  # noqa: BLE001 - any decoding failure means the same: skip the file
        return False


def scan_images(root: str | os.PathLike, size: int, class_names: Sequence[str]) -> ImageSource:
    """The images of a folder: its image files, or (when it has none) those of its class subfolders.

    Files are sorted by relative path. Subfolder names that are all class names of the model give the
    images their true labels; otherwise the images are unlabelled (the report summarizes predictions).
    Every file is decoded once here (every rank of a torchrun job does the same, so they agree on the
    list); unreadable files are skipped with a warning that lists them.

    Raises
    ------
    ExplainInputError
        When ``root`` is not a folder or holds no image file.
    """
    root = Path(root)
    if not root.is_dir():
        raise ExplainInputError(f"--images: {str(root)!r} is not a folder")

    def images_in(folder: Path, recursive: bool) -> list[Path]:
        paths = folder.rglob("*") if recursive else folder.iterdir()
        return sorted(p for p in paths if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                      and not p.name.startswith("."))  # fmt: skip

    files = images_in(root, recursive=False)
    labels = None
    if not files:
        subdirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        files = [f for d in subdirs for f in images_in(d, recursive=True)]
        if files and all(d.name in class_names for d in subdirs):
            labels = [class_names.index(f.relative_to(root).parts[0]) for f in files]
    if not files:
        raise ExplainInputError(
            f"--images: no image files in {str(root)!r} or its subfolders (extensions {list(IMAGE_EXTENSIONS)})"
        )
    ok = [_readable(f) for f in files]
    skipped = [str(f.relative_to(root)) for f, good in zip(files, ok) if not good]
    if skipped:
        warnings.warn(f"skipping {len(skipped)} unreadable image(s) in {root}: {skipped}", stacklevel=2)
    kept = [f for f, good in zip(files, ok) if good]
    if not kept:
        raise ExplainInputError(
            f"--images: none of the {len(files)} image files in {str(root)!r} can be read"
        )
    names = [str(f.relative_to(root)) for f in kept]
    if labels is not None:
        labels = torch.tensor([lab for lab, good in zip(labels, ok) if good], dtype=torch.long)
    digest = hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]
    description = {"kind": "folder", "root": str(root.resolve()), "n": len(names), "files_sha": digest}
    return ImageSource(names, labels, size, description, root=root.resolve(), skipped=skipped)


def planted_source(n: int, size: int, rule: str, seed: int) -> ImageSource:
    """``n`` PlantedShapes images of the given rule (labels known)."""
    from workbench.data.planted import RULES, planted_shapes

    if n < 1:
        raise ExplainInputError(f"--planted: expected a positive number of images, got {n}")
    if rule not in RULES:
        raise ExplainInputError(f"--rule: unknown rule {rule!r}; valid: {sorted(RULES)}")
    data = planted_shapes(n, size=size, seed=seed, rule=rule)
    names = [f"planted #{i}" for i in range(n)]
    description = {"kind": "planted", "n": n, "rule": rule, "seed": seed, "size": size}
    return ImageSource(names, data.labels.long(), size, description, tensor=data.images)


def tensor_source(images: torch.Tensor, labels: torch.Tensor | None, size: int) -> ImageSource:
    """Images given as a tensor (N, 3, H, W) in [0, 1] (the Python API)."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3 or len(images) == 0:
        raise ExplainInputError(f"images: expected a tensor (N, 3, H, W) in [0, 1], got {getattr(images, 'shape', images)!r:.80}")  # fmt: skip
    digest = hashlib.sha256(images.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]
    names = [f"image #{i}" for i in range(len(images))]
    labels = None if labels is None else torch.as_tensor(labels).long()
    return ImageSource(names, labels, size, {"kind": "tensor", "n": len(images), "sha": digest},
                       tensor=images.detach().cpu().float())  # fmt: skip


def resolve_classes(classes: Sequence[str | int] | None, class_names: Sequence[str]) -> list[int] | None:
    """Class indices from names or indices (None: decided from the data later).

    Raises
    ------
    ExplainInputError
        For a name the model does not have (with the closest names) or an index out of range.
    """
    if not classes:
        return None
    out = []
    for c in classes:
        if isinstance(c, int) or (isinstance(c, str) and c.isdigit() and c not in class_names):
            i = int(c)
            if not 0 <= i < len(class_names):
                raise ExplainInputError(
                    f"--classes: class index {i} is out of range [0, {len(class_names) - 1}]"
                )
            out.append(i)
        elif c in class_names:
            out.append(list(class_names).index(c))
        else:
            raise ExplainInputError(
                f"--classes: the model has no class {c!r}; closest: {closest_names(str(c), class_names)}"
            )
    return sorted(dict.fromkeys(out))
