"""Real images: single files, class-per-subfolder trees, and the photos scikit-image ships.

Everything comes out as float tensors (3, H, W) in [0, 1], un-normalised: models normalise inside.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")

# skimage.data images bundled in the scikit-image wheel (no network fetch needed). The defaults are
# photos of everyday ImageNet-like objects; "motorcycle" is the left view of skimage's stereo pair.
SAMPLE_IMAGES = ("chelsea", "coffee", "astronaut", "rocket", "motorcycle")
OFFLINE_SAMPLES = (
    *SAMPLE_IMAGES,
    "hubble_deep_field", "immunohistochemistry", "retina", "colorwheel", "logo",  # colour
    "camera", "coins", "moon", "page", "grass", "gravel", "brick", "text", "clock", "cell",  # greyscale
)  # fmt: skip


def _skimage_array(data: Any, name: str) -> np.ndarray:
    return data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()


def _check_size(size: int | None, name: str = "size", allow_none: bool = False) -> None:
    if size is None and allow_none:
        return
    if not isinstance(size, int | np.integer) or isinstance(size, bool) or size < 1:
        raise ValueError(f"{name}: expected a positive integer number of pixels, got {size!r}")


def _to_tensor(array: np.ndarray) -> torch.Tensor:
    """(H, W), (H, W, 1|3|4) uint8 / bool / float array -> (3, H, W) float32 in [0, 1]."""
    a = np.asarray(array)
    if a.dtype == bool:
        a = a.astype(np.float32)
    elif np.issubdtype(a.dtype, np.integer):
        a = a.astype(np.float32) / float(np.iinfo(a.dtype).max)
    a = a.astype(np.float32)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[-1] not in (1, 3, 4):
        raise ValueError(f"expected an (H, W) or (H, W, 1|3|4) image array, got shape {a.shape}")
    a = a[..., :3]  # drop alpha
    if a.shape[-1] == 1:  # greyscale -> three equal channels, so every model accepts it
        a = np.repeat(a, 3, axis=-1)
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).clamp_(0, 1)


def center_crop_resize(image: torch.Tensor, size: int) -> torch.Tensor:
    """Center-crop a (C, H, W) image to a square, then resize it to ``size`` (bilinear, antialiased)."""
    _check_size(size)
    _, h, w = image.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = image[:, top : top + side, left : left + side]
    if side == size:
        return square.contiguous()
    out = F.interpolate(square[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out[0].clamp_(0, 1)  # interpolation can overshoot by rounding only; keep [0, 1] exact


def load_image(path: str | os.PathLike, size: int | None = None) -> torch.Tensor:
    """Read an image file as a float tensor (3, H, W) in [0, 1].

    Parameters
    ----------
    path
        Any format Pillow reads; greyscale and palette images become RGB, alpha is dropped.
    size
        None keeps the native size; an integer center-crops to a square and resizes to (size, size).

    Returns
    -------
    torch.Tensor
    """
    from PIL import Image

    _check_size(size, allow_none=True)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"load_image: no such file {str(path)!r}")
    with Image.open(path) as im:
        x = _to_tensor(np.asarray(im.convert("RGB")))
    return x if size is None else center_crop_resize(x, size)


def sample_images(names: Sequence[str] | None = None, size: int = 224) -> tuple[torch.Tensor, list[str]]:
    """Photos that scikit-image ships (offline), as a batch (N, 3, size, size) in [0, 1].

    Parameters
    ----------
    names
        Names from :data:`OFFLINE_SAMPLES` (``skimage.data`` functions, all bundled with scikit-image);
        default :data:`SAMPLE_IMAGES`, five colour photos: chelsea (a cat), coffee (a cup), astronaut,
        rocket and motorcycle.
    size
        Output side: each image is center-cropped to a square and resized (bilinear, antialiased).

    Returns
    -------
    images : torch.Tensor
        (N, 3, size, size) float32; greyscale images are repeated over the three channels.
    names : list[str]
        The names, in the order of the images.
    """
    _check_size(size)
    names = list(SAMPLE_IMAGES if names is None else ([names] if isinstance(names, str) else names))
    if not names:
        raise ValueError("names: expected at least one image name")
    unknown = [nm for nm in names if nm not in OFFLINE_SAMPLES]
    if unknown:
        raise ValueError(f"names: unknown sample image(s) {unknown}; valid names are {list(OFFLINE_SAMPLES)}")
    try:
        import skimage.data
    except ImportError as e:
        raise ImportError(
            "sample_images needs scikit-image; install it with `pip install 'xai-workbench[dev]'`"
            " (or `pip install scikit-image`)"
        ) from e
    images = [center_crop_resize(_to_tensor(_skimage_array(skimage.data, nm)), size) for nm in names]
    return torch.stack(images), names


class ImageFolder(torch.utils.data.Dataset):
    """Images in class subfolders (``root/<class>/**/<image>``), as float tensors in [0, 1].

    Like torchvision's ImageFolder, but each item is ``(image (3, size, size) float32, label int)``:
    center-cropped to a square and resized, never normalised (models normalise inside).

    Parameters
    ----------
    root
        Folder whose subfolders are the classes (sorted by name; label = position).
    size
        Output side in pixels.
    extensions
        File name endings accepted as images (case-insensitive).

    Attributes
    ----------
    classes : list[str]
        Class names (the subfolder names, sorted).
    class_to_idx : dict[str, int]
        Class name -> label.
    samples : list[tuple[str, int]]
        (path, label) for every image, sorted by class then path.
    targets : list[int]
        The labels of ``samples``.
    """

    def __init__(
        self, root: str | os.PathLike, size: int = 224, extensions: Sequence[str] = IMAGE_EXTENSIONS
    ) -> None:
        _check_size(size)
        self.root, self.size = Path(root), int(size)
        self.extensions = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)
        if not self.root.is_dir():
            raise FileNotFoundError(f"ImageFolder: root {str(self.root)!r} does not exist or is not a folder")
        self.classes = sorted(
            d.name for d in self.root.iterdir() if d.is_dir() and not d.name.startswith(".")
        )
        if not self.classes:
            raise ValueError(
                f"ImageFolder: {str(self.root)!r} has no class subfolders; expected root/<class>/<image> files"
            )
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.samples: list[tuple[str, int]] = []
        empty = []
        for c in self.classes:
            files = sorted(
                str(p)
                for p in (self.root / c).rglob("*")
                if p.is_file() and p.suffix.lower() in self.extensions and not p.name.startswith(".")
            )
            empty += [] if files else [c]
            self.samples += [(f, self.class_to_idx[c]) for f in files]
        if empty:
            raise ValueError(
                f"ImageFolder: no images with extensions {list(self.extensions)} in class folder(s) {empty}"
                f" under {str(self.root)!r}"
            )
        self.targets = [label for _, label in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[i]
        return load_image(path, self.size), label

    def __repr__(self) -> str:
        return (
            f"ImageFolder(root={str(self.root)!r}, size={self.size}, classes={self.classes}, n={len(self)})"
        )
