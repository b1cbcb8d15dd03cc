"""Image files, class folders and the offline sample photos."""

from __future__ import annotations

import socket
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from workbench.data.images import (
    OFFLINE_SAMPLES,
    SAMPLE_IMAGES,
    ImageFolder,
    center_crop_resize,
    load_image,
    sample_images,
)


def write(path, array: np.ndarray, mode: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path)


def test_load_image_rgb_values_exact(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (10, 14, 3), dtype=np.uint8)
    write(tmp_path / "a.png", rgb)
    x = load_image(tmp_path / "a.png")
    assert x.shape == (3, 10, 14) and x.dtype == torch.float32
    assert torch.allclose(x, torch.from_numpy(rgb).permute(2, 0, 1).float() / 255)


def test_load_image_grey_and_rgba_become_rgb(tmp_path):
    write(tmp_path / "g.png", np.full((8, 8), 128, np.uint8))
    g = load_image(tmp_path / "g.png")
    assert g.shape == (3, 8, 8) and torch.allclose(g, torch.full_like(g, 128 / 255))
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 10
    write(tmp_path / "t.png", rgba)
    t = load_image(tmp_path / "t.png")
    assert t.shape == (3, 8, 8) and torch.equal(t[0], torch.ones(8, 8)) and not t[1:].any()


def test_load_image_resizes_with_center_crop(tmp_path):
    img = np.zeros((20, 60, 3), np.uint8)  # wide: left third red, middle green, right third blue
    img[:, :20, 0], img[:, 20:40, 1], img[:, 40:, 2] = 255, 255, 255
    write(tmp_path / "wide.png", img)
    x = load_image(tmp_path / "wide.png", size=16)
    assert x.shape == (3, 16, 16)
    assert 0 <= float(x.min()) and float(x.max()) <= 1
    assert torch.allclose(x[1], torch.ones(16, 16)) and not x[[0, 2]].any()  # only the green centre kept


def test_center_crop_resize_antialiases():
    checker = (torch.arange(64)[:, None] + torch.arange(64)[None]) % 2
    out = center_crop_resize(checker.float().expand(3, 64, 64), 8)
    assert torch.allclose(out, torch.full_like(out, 0.5), atol=0.02)  # averaged, not aliased


def test_load_image_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_image(tmp_path / "missing.png")
    write(tmp_path / "a.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="size"):
        load_image(tmp_path / "a.png", size=0)


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "data"
    for cls, n in (("dog", 2), ("cat", 3)):
        for i in range(n):
            write(root / cls / f"{i}.png", rng.integers(0, 256, (20 + i, 30, 3), dtype=np.uint8))
    write(root / "cat" / "nested" / "deep.JPG", rng.integers(0, 256, (12, 12, 3), dtype=np.uint8))
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / "README.md").write_text("a file at the root, not a class")
    return root


def test_image_folder(folder):
    ds = ImageFolder(folder, size=16)
    assert ds.classes == ["cat", "dog"] and ds.class_to_idx == {"cat": 0, "dog": 1}
    assert len(ds) == 6 and ds.targets == [0, 0, 0, 0, 1, 1]
    assert any(p.endswith("deep.JPG") for p, _ in ds.samples)
    x, y = ds[5]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32 and y == 1
    assert 0 <= float(x.min()) and float(x.max()) <= 1
    xb, yb = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert xb.shape == (4, 3, 16, 16) and yb.tolist() == [0, 0, 0, 0]
    assert len(ImageFolder(folder, size=16, extensions=("png",))) == 5
    assert "classes=['cat', 'dog']" in repr(ds)


def test_image_folder_errors(tmp_path, folder):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageFolder(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="not a folder"):
        ImageFolder(folder / "README.md")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no class subfolders"):
        ImageFolder(tmp_path / "empty")
    (folder / "bird").mkdir()
    with pytest.raises(ValueError, match=r"no images .* class folder\(s\) \['bird'\]"):
        ImageFolder(folder)
    with pytest.raises(ValueError, match="size"):
        ImageFolder(folder, size=-3)


def test_sample_images_defaults():
    pytest.importorskip("skimage")
    x, names = sample_images(size=32)
    assert names == list(SAMPLE_IMAGES) and len(names) >= 4
    assert x.shape == (len(names), 3, 32, 32) and x.dtype == torch.float32
    assert 0 <= float(x.min()) and float(x.max()) <= 1
    assert all(float(img.std()) > 0.05 for img in x)  # real content, not blank
    assert not all(torch.allclose(img[0], img[1]) for img in x)  # colour photos


def test_sample_images_grey_and_choice():
    pytest.importorskip("skimage")
    x, names = sample_images(["camera", "chelsea"], size=24)
    assert names == ["camera", "chelsea"] and x.shape == (2, 3, 24, 24)
    assert torch.equal(x[0, 0], x[0, 1]) and torch.equal(x[0, 1], x[0, 2])
    assert sample_images("coffee", size=8)[1] == ["coffee"]


def test_sample_images_work_offline(monkeypatch):
    pytest.importorskip("skimage")

    def no_network(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    x, names = sample_images(list(OFFLINE_SAMPLES), size=8)
    assert x.shape == (len(OFFLINE_SAMPLES), 3, 8, 8) and names == list(OFFLINE_SAMPLES)


def test_sample_images_errors(monkeypatch):
    with pytest.raises(ValueError, match="unknown sample image.*'chelsea'"):
        sample_images(["kitten"])
    with pytest.raises(ValueError, match="size"):
        sample_images(size=0)
    monkeypatch.setitem(sys.modules, "skimage", None)  # makes `import skimage` fail
    monkeypatch.setitem(sys.modules, "skimage.data", None)
    with pytest.raises(ImportError, match=r"scikit-image.*\[dev\]"):
        sample_images(["chelsea"])
