"""Widgets, Python side: state, callbacks, validation and image helpers (no browser; see tests/browser)."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

pn = pytest.importorskip("panel", reason="the widgets need the ui extra (panel)")

from workbench.data.planted import planted_shapes  # noqa: E402
from workbench.models.scoring import predict  # noqa: E402
from workbench.widgets import DatasetViewer  # noqa: E402
from workbench.widgets.images import (  # noqa: E402
    contour_overlay,
    mask_contour,
    png_bytes,
    png_data_uri,
    rgba_to_uint32,
    to_rgb_uint8,
    to_rgba,
)


@pytest.fixture(scope="module")
def data():
    return planted_shapes(64, size=64, seed=7)


class ShapeOracle(nn.Module):
    """A 'model' that predicts a fixed function of the image, records its calls and inference mode."""

    def __init__(self, num_classes: int, labels: list[str] | None = None):
        super().__init__()
        self.proj = nn.Linear(3, num_classes, bias=False)
        torch.nn.init.normal_(self.proj.weight, generator=torch.Generator().manual_seed(0))
        self.calls: list[tuple[int, bool]] = []
        if labels is not None:
            self.labels = labels

    def forward(self, x):
        self.calls.append((x.shape[0], torch.is_inference_mode_enabled()))
        return self.proj(x.mean((2, 3)))


def fake_predictions(data, n_wrong: int = 10):
    preds = data.labels.clone()
    preds[:n_wrong] = (preds[:n_wrong] + 1) % len(data.class_names)
    return preds


def viewer_of(data, **kwargs):
    return DatasetViewer(
        data.images,
        labels=data.labels,
        predictions=kwargs.pop("predictions", fake_predictions(data)),
        class_names=data.class_names,
        masks=data.object_masks,
        concepts=data.concepts,
        concept_names=data.concept_names,
        **kwargs,
    )


# ---------------------------------------------------------------- selection


def test_initial_state_and_select(data):
    v = viewer_of(data, max_items=32)
    assert v.selected == 0 and v.page == 0 and v.n_pages == 2
    assert v.visible_indices == list(range(32))
    assert [item["index"] for item in v._grid.items] == list(range(32))
    assert 'data-index="0"' in v._detail_info.object

    v.select(3)
    assert v.selected == 3
    assert v._grid.selected == 3 and v._goto.value == 3
    html = v._detail_info.object
    assert 'data-index="3"' in html and "Image #3" in html
    info = v.item(3)
    assert info["label"] == data.class_names[int(data.labels[3])]
    assert info["prediction"] == data.class_names[(int(data.labels[3]) + 1) % 5]
    assert info["correct"] is False
    assert info["concepts"] == [n for n, on in zip(data.concept_names, data.concepts[3].tolist()) if on]
    assert len(info["concepts"]) == 5  # one per group: shape, color, texture, size, background
    group, value = info["concepts"][0].split("=")
    assert f"{group}:</span> {value}" in html
    assert "wb-bad" in html and "mistake" in html

    v.select(np.int64(12))
    assert v.selected == 12
    v.select(torch.tensor(13))
    assert v.selected == 13


def test_select_bounds_and_types(data):
    v = viewer_of(data)
    with pytest.raises(IndexError, match=r"index 64 is out of range for 64 images \(valid: 0\.\.63\)"):
        v.select(64)
    with pytest.raises(IndexError, match="out of range"):
        v.select(-1)
    for bad in ("3", 2.0, True, None, torch.tensor([1, 2]), torch.tensor(1.0)):
        with pytest.raises(ValueError, match="integer index"):
            v.select(bad)
    with pytest.raises(ValueError):  # the param itself is bounded too
        v.selected = 100
    assert v.selected == 0


def test_selected_is_watchable(data):
    v = viewer_of(data)
    seen = []
    v.param.watch(lambda e: seen.append((e.old, e.new)), "selected")
    v.select(5)
    v.select(5)  # no change, no event
    v.select(9)
    assert seen == [(0, 5), (5, 9)]


def test_click_in_grid_selects(data):
    """What the browser does on a click: the grid's `selected` changes; the viewer follows."""
    v = viewer_of(data, max_items=16)
    v.next_page()
    assert v.visible_indices == list(range(16, 32))
    v._grid.selected = 20
    assert v.selected == 20
    assert 'data-index="20"' in v._detail_info.object
    v._goto.value = 33  # the "Go to #" box
    assert v.selected == 33 and v.page == 2 and v._grid.selected == 33


def test_paging(data):
    v = viewer_of(data, max_items=10)
    assert v.n_pages == 7
    v.previous_page()
    assert v.page == 0 and v._prev.disabled and not v._next.disabled
    for _ in range(10):
        v.next_page()
    assert v.page == 6 and v._next.disabled
    assert v.visible_indices == [60, 61, 62, 63]
    assert len(v._grid.items) == 4
    assert "Page 7 / 7" in v._page_info.object
    v.select(15)  # selecting jumps to the page that holds the image
    assert v.page == 1 and 15 in v.visible_indices
    v.page = 0  # turning pages keeps the selection
    assert v.selected == 15


def test_large_dataset_renders_one_page_only():
    n = 10_000
    images = torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(n) % 10
    v = DatasetViewer(images, labels=labels, predictions=labels, max_items=48)
    assert len(v._grid.items) == 48
    assert len(v._thumb_cache) == 48  # nothing beyond the page was encoded
    assert v.n_pages == 209
    v.select(9_999)
    assert v.page == 208 and v.visible_indices[-1] == 9_999
    assert len(v._grid.items) == 10_000 - 208 * 48
    assert v.class_names == [str(c) for c in range(10)]


def test_filters(data):
    preds = fake_predictions(data, n_wrong=10)
    v = viewer_of(data, predictions=preds, max_items=8)
    assert list(v.mistakes) == list(range(10))
    v.show = "mistakes"
    assert list(v.filtered_indices) == list(range(10))
    assert v.n_pages == 2 and all(item["wrong"] for item in v._grid.items)
    assert all(item["status"] == "bad" for item in v._grid.items)
    v.show = "correct"
    assert len(v.filtered_indices) == 54 and not any(item["wrong"] for item in v._grid.items)
    v.show = "all"
    v.class_filter = data.class_names[2]
    assert (data.labels[v.filtered_indices] == 2).all()
    # selecting an image hidden by the filters clears them
    hidden = int(np.flatnonzero(data.labels.numpy() != 2)[0])
    v.select(hidden)
    assert v.class_filter == "all classes" and v.show == "all" and hidden in v.visible_indices
    # an empty filter result still renders
    v2 = viewer_of(data, predictions=data.labels)
    v2.show = "mistakes"
    assert v2._grid.items == [] and v2.n_pages == 1 and "none" in v2._page_info.object


def test_captions_and_header(data):
    v = viewer_of(data, predictions=fake_predictions(data, n_wrong=4), title="Test set")
    first = v._grid.items[0]
    assert first["label"] == f"#0 {data.class_names[int(data.labels[0])]}"
    assert first["pred"].startswith("\u2192 ") and first["wrong"] and first["status"] == "bad"
    assert first["alt"].startswith("Image 0: label ") and first["alt"].endswith("(mistake)")
    assert first["src"].startswith("data:image/png;base64,")
    assert v._grid.items[5]["status"] == "ok"
    assert "Test set" in v._header.object and "accuracy 93.8% (60/64, 4 mistakes)" in v._header.object


def test_mask_toggle_changes_detail_image(data):
    v = viewer_of(data)
    with_mask = v._detail_image.object
    assert "with its object mask contour" in with_mask
    v.show_mask = False
    assert v._detail_image.object != with_mask and "contour" not in v._detail_image.object


def test_minimal_inputs():
    images = torch.rand(5, 3, 40, 30, generator=torch.Generator().manual_seed(1))
    v = DatasetViewer(images)
    assert v.item(2) == {
        "index": 2,
        "name": None,
        "label": None,
        "prediction": None,
        "confidence": None,
        "correct": None,
        "concepts": [],
    }
    assert v._grid.items[2]["label"] == "#2" and v._grid.items[2]["pred"] == ""
    v.select(4)
    assert "Image #4" in v._detail_info.object
    v.panel().get_root()  # renders to Bokeh models without a server


def test_renders_to_bokeh(data):
    from bokeh.document import Document

    v = viewer_of(data)
    layout = v.panel()
    assert layout is v.__panel__()
    doc = Document()
    root = layout.get_root(doc)
    models = list(root.references())
    esm = [m for m in models if "wb-thumb" in str(getattr(m, "esm", ""))]
    assert len(esm) == 1, "one JS component draws the whole page of thumbnails"
    assert len(esm[0].data.items) == 48
    assert pn.config.inline, "the widgets load Panel's JavaScript inline (no CDN)"


def test_prediction_names_other_label_space(data):
    names = [f"imagenet_{i}" for i in range(1000)]
    preds = torch.arange(64) * 7
    v = DatasetViewer(
        data.images,
        labels=data.labels,
        predictions=preds,
        class_names=data.class_names,
        prediction_names=names,
    )
    info = v.item(3)
    assert info["prediction"] == "imagenet_21" and info["correct"] is None
    assert len(v.mistakes) == 0 and "accuracy" not in v._header.object
    assert v._grid.items[3]["status"] == ""


# ---------------------------------------------------------------- from_planted


def test_from_planted_runs_model_batched_in_inference_mode(data):
    model = ShapeOracle(len(data.class_names), labels=list(data.class_names))
    v = DatasetViewer.from_planted(data, model=model, batch_size=20)
    assert model.calls == [(20, True), (20, True), (20, True), (4, True)]
    with torch.no_grad():
        expected = model.proj(data.images.mean((2, 3))).softmax(1)
    assert np.array_equal(v.predictions, expected.argmax(1).numpy())
    assert np.allclose(v.confidences, expected.max(1).values.numpy(), atol=1e-6)
    assert v.masks is not None and v.concepts is not None and v.class_names == data.class_names
    assert v.same_label_space and model.training  # the training flag is restored


def test_from_planted_without_model(data):
    v = DatasetViewer.from_planted(data, columns=4, max_items=12)
    assert v.predictions is None and v.columns == 4 and len(v._grid.items) == 12
    assert v.item(0)["label"] == data.class_names[int(data.labels[0])]


def test_from_planted_with_foreign_label_space(data):
    model = ShapeOracle(7, labels=[f"k{i}" for i in range(7)])
    v = DatasetViewer.from_planted(data, model=model)
    assert not v.same_label_space and v.prediction_names[0] == "k0"
    assert v.item(0)["correct"] is None
    unnamed = ShapeOracle(len(data.class_names))
    with pytest.warns(UserWarning, match="no class names"):
        DatasetViewer.from_planted(data, model=unnamed)


@pytest.mark.slow  # imports timm
def test_from_planted_with_workbench_model(data):
    from workbench.models import load_model

    model = load_model("timm:test_resnet", num_classes=5, output_stride=8, labels=data.class_names)
    preds, conf = predict(model, data.images[:10], batch_size=4)
    assert preds.shape == (10,) and preds.dtype == torch.int64 and ((conf > 0) & (conf <= 1)).all()
    v = DatasetViewer.from_planted(data.subset(slice(0, 10)), model=model, batch_size=4)
    assert np.array_equal(v.predictions, preds.numpy())


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"images": torch.rand(4, 8, 8, 3)}, "channel-last"),
        ({"images": torch.rand(4, 3, 8)}, "4 dimensions"),
        ({"images": torch.rand(4, 3, 8, 8) * 2}, r"pixel values in \[0.0, 1.0\]"),
        ({"images": (torch.rand(4, 3, 8, 8) * 255).to(torch.uint8)}, "float tensor"),
        ({"images": torch.rand(4, 1, 8, 8)}, "channels"),
        ({"images": torch.rand(0, 3, 8, 8)}, "empty batch"),
        ({"images": [[1.0]]}, "torch.Tensor"),
        ({"labels": [0, 1, 2]}, r"labels: expected shape \(4,\)"),
        ({"labels": [0.5, 1, 2, 3]}, "integer class indices"),
        ({"labels": [0, 1, -1, 2]}, ">= 0"),
        ({"predictions": torch.rand(4, 5)}, "argmax"),
        ({"labels": [0, 1, 2, 5], "class_names": ["a", "b", "c"]}, "out of range for 3 class_names"),
        ({"predictions": [0, 1, 2, 5], "class_names": ["a", "b", "c"]}, "predictions: class index 5"),
        ({"class_names": "abc", "labels": [0, 1, 2, 0]}, "list of names"),
        ({"masks": torch.zeros(4, 8, 9, dtype=torch.bool)}, r"masks: expected shape \(4, 8, 8\)"),
        ({"masks": torch.full((4, 8, 8), 0.5)}, "booleans"),
        ({"concepts": torch.zeros(4, 3, dtype=torch.bool), "concept_names": ["a", "b"]}, "at least 3"),
        (
            {"concepts": torch.zeros(4, 3, dtype=torch.bool), "concept_names": list("abcd")},
            "expected 3 names",
        ),
        ({"concepts": torch.zeros(3, 3, dtype=torch.bool)}, r"concepts: expected shape \(4, 3\)"),
        ({"concept_names": ["a"]}, "without concepts"),
        ({"confidences": [0.5, 1.5, 0.1, 0.2]}, "confidences"),
        ({"columns": 0}, "columns"),
        ({"thumb_size": 4}, "thumb_size"),
        ({"max_items": 2.5}, "max_items"),
    ],
)
def test_validation(kwargs, match):
    args = {"images": torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        DatasetViewer(**args)


def test_numpy_inputs_are_accepted():
    images = np.random.default_rng(0).random((6, 3, 16, 16), dtype=np.float32)
    v = DatasetViewer(
        images, labels=np.arange(6) % 2, masks=np.ones((6, 16, 16), np.uint8), class_names=["a", "b"]
    )
    assert v.item(5)["label"] == "b" and v.masks.dtype == bool


# ---------------------------------------------------------------- image helpers


def test_image_conversions():
    img = torch.zeros(3, 4, 5)
    img[0] = 1.0
    img[1, 0, 0] = 0.5
    rgb = to_rgb_uint8(img)
    assert rgb.shape == (4, 5, 3) and rgb.dtype == np.uint8
    assert rgb[1, 1].tolist() == [255, 0, 0] and rgb[0, 0].tolist() == [255, 128, 0]
    assert to_rgb_uint8(torch.full((3, 2, 2), 2.0)).max() == 255  # clipped
    assert to_rgb_uint8(torch.ones(1, 2, 2)).shape == (2, 2, 3)  # grey -> RGB
    rgba = to_rgba(img)
    assert rgba.shape == (4, 5, 4) and (rgba[..., 3] == 255).all()
    assert to_rgba(img, alpha=np.zeros((4, 5)))[..., 3].max() == 0
    packed = rgba_to_uint32(rgba)
    assert packed.shape == (4, 5) and packed.dtype == np.uint32
    with pytest.raises(ValueError, match="expected shape"):
        to_rgb_uint8(torch.zeros(4, 4))


def test_png_encoding_and_resize():
    from PIL import Image

    img = torch.rand(3, 20, 10, generator=torch.Generator().manual_seed(0))
    raw = png_bytes(img)
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    assert Image.open(io.BytesIO(raw)).size == (10, 20)
    up = Image.open(io.BytesIO(png_bytes(img, size=80)))
    assert up.size == (40, 80)
    assert np.array_equal(np.asarray(up)[::4, ::4], to_rgb_uint8(img))  # nearest: crisp pixels
    assert Image.open(io.BytesIO(png_bytes(img, size=5))).size == (2, 5)
    assert png_data_uri(img).startswith("data:image/png;base64,iVBOR")


def test_mask_contour_and_overlay():
    mask = np.zeros((10, 10), bool)
    mask[3:7, 3:7] = True
    inner = mask_contour(mask, 1, inside=True)
    outer = mask_contour(mask, 1, inside=False)
    assert inner.sum() == 12 and not inner[4:6, 4:6].any() and (inner <= mask).all()
    assert outer.sum() == 6 * 6 - 16 and not (outer & mask).any()
    img = torch.full((3, 10, 10), 0.5)
    out = contour_overlay(img, torch.from_numpy(mask), scale=4, thickness=1)
    assert out.shape == (40, 40, 3)
    assert out[12, 20].tolist() == [255, 255, 255]  # top edge of the square, inside
    assert out[11, 20].tolist() == [0, 0, 0]  # just outside
    assert out[20, 20].tolist() == [128, 128, 128]  # interior untouched
    assert np.array_equal(contour_overlay(img, None, scale=2), to_rgb_uint8(img).repeat(2, 0).repeat(2, 1))
    with pytest.raises(ValueError, match="mask"):
        contour_overlay(img, np.zeros((3, 3), bool))


def test_instances_do_not_share_parameter_state():
    a = DatasetViewer(torch.rand(3, 3, 8, 8), labels=[0, 1, 0], class_names=["x", "y"])
    b = DatasetViewer(torch.rand(5, 3, 8, 8), labels=[0, 1, 2, 0, 1], class_names=["p", "q", "r"])
    assert a.param.class_filter.objects == ["all classes", "x", "y"]
    assert b.param.class_filter.objects == ["all classes", "p", "q", "r"]
    assert a.param.selected.bounds == (0, 2) and b.param.selected.bounds == (0, 4)
    b.select(4)
    assert a.selected == 0


# ---------------------------------------------------------------- assets (JS / CSS shipped as package data)

WIDGETS_DIR = Path(__file__).resolve().parents[1] / "workbench" / "widgets"


def test_every_asset_named_in_the_code_exists_and_every_file_is_used():
    from workbench.widgets.html import asset

    named = set()
    for src in WIDGETS_DIR.glob("*.py"):
        named |= set(re.findall(r'asset\("([^"]+)"\)', src.read_text()))
    files = {p.name for p in (WIDGETS_DIR / "assets").iterdir() if p.suffix in (".js", ".css")}
    assert named == files, f"named but missing: {named - files}; shipped but unused: {files - named}"
    for name in named:
        assert asset(name).strip(), name
    assert "export function render" in asset("map_grid.js")
    with pytest.raises(FileNotFoundError, match="nope.js"):
        asset("nope.js")
    # no widget keeps its browser code inline any more
    for src in WIDGETS_DIR.glob("*.py"):
        assert "export function render" not in src.read_text(), src.name


@pytest.mark.slow  # builds a wheel (about 10 s)
def test_installed_package_finds_its_assets(tmp_path):
    """A wheel of the project carries the assets, and the installed package (not the source tree) reads them."""
    import shutil
    import subprocess
    import sys
    import zipfile

    root, src = WIDGETS_DIR.parents[1], tmp_path / "src"  # a copy: the build writes build/ and egg-info
    shutil.copytree(root / "workbench", src / "workbench", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, src / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(src)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    wheel = next(tmp_path.glob("*.whl"))
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        shipped = {n.rsplit("/", 1)[-1] for n in zf.namelist() if n.startswith("workbench/widgets/assets/")}
        zf.extractall(site)
    assert shipped == {p.name for p in (WIDGETS_DIR / "assets").iterdir() if p.suffix in (".js", ".css")}
    code = (
        "import workbench, pathlib, sys; from workbench.widgets.html import asset\n"
        "assert pathlib.Path(workbench.__file__).is_relative_to(sys.argv[1]), workbench.__file__\n"
        "print(len(asset('map_grid.js')) > 1000, len(asset('metrics_panel.css')) > 100)"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(site)}
    out = subprocess.run(
        [sys.executable, "-c", code, str(site)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["True", "True"]


def test_names_show_in_thumbnails_and_detail(data):
    names = [f"img_{i:03d}" for i in range(len(data))]
    v = viewer_of(data, names=names, max_items=8)
    first = v._grid.items[0]
    label = data.class_names[int(data.labels[0])]
    assert first["label"] == f"img_000 {label}" and first["alt"].startswith(
        f"Image 0 (img_000): label {label}"
    )
    assert v.item(4)["name"] == "img_004"
    v.select(4)
    assert 'Image #4 \u00b7 <span class="wb-name">img_004</span>' in v._detail_info.object
    with pytest.raises(ValueError, match="expected 64 names"):
        viewer_of(data, names=names[:10])


def test_widget_bases_show_one_layout_and_page_within_bounds():
    """Every widget shows ``_layout`` through :class:`LayoutViewer` (``panel()``, ``__panel__``, ``str``
    = ``repr``); :class:`PagedViewer` pages stay in [0, n_pages)."""
    import param

    import workbench.widgets as widgets
    from workbench.widgets.viewer import LayoutViewer, PagedViewer

    for name in widgets.__all__:
        obj = getattr(widgets, name)
        if isinstance(obj, type):
            assert issubclass(obj, LayoutViewer), name

    class Pages(PagedViewer):
        page = param.Integer(default=0)
        n_pages = 3

        def __init__(self):
            super().__init__()
            self._layout = pn.pane.HTML("pages")

        def __repr__(self) -> str:
            return f"Pages(page={self.page})"

    p = Pages()
    p.previous_page()
    assert p.page == 0
    for _ in range(5):
        p.next_page()
    assert p.page == 2
    assert p.panel() is p.__panel__() is p._layout
    assert str(p) == repr(p) == "Pages(page=2)"
