"""AttributionViewer, Python side: state, callbacks, payloads and validation (browser: tests/browser)."""

from __future__ import annotations

import base64

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

pn = pytest.importorskip("panel", reason="the widgets need the ui extra (panel)")

from workbench.data.planted import planted_shapes  # noqa: E402
from workbench.widgets import AttributionViewer  # noqa: E402
from workbench.widgets.colormaps import COLORMAPS, colorize, colormap_lut, map_range, map_strength  # noqa: E402
from workbench.widgets.images import contour_layer, map_overlay  # noqa: E402

N = 12


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data():
    return planted_shapes(N, size=32, seed=5)


@pytest.fixture(scope="module")
def maps(data):
    g = torch.Generator().manual_seed(0)
    return {
        "mask": data.object_masks.float(),  # unsigned, pixel resolution
        "grid": torch.rand(N, 4, 4, generator=g),  # unsigned, grid resolution
        "signed": torch.randn(N, 32, 32, generator=g),  # signed
    }


def viewer_of(data, maps, **kwargs):
    kwargs.setdefault("masks", data.object_masks)
    kwargs.setdefault("labels", data.labels)
    kwargs.setdefault("class_names", data.class_names)
    return AttributionViewer(data.images, maps, **kwargs)


def decode(cell):
    values = np.frombuffer(base64.b64decode(cell["data"]), dtype="<f4")
    return values.reshape(cell["h"], cell["w"])


# ---------------------------------------------------------------- state and rendering


def test_initial_state(data, maps):
    v = viewer_of(data, maps)
    assert v.selected == 0 and v.page == 0 and v.n_pages == 2 and v.visible_indices == list(range(8))
    assert v.methods == ["mask", "grid", "signed"] == v.shown_methods
    assert v.cmap == "auto" and v.opacity == 0.6 and v.upsampling == "nearest" and not v.fade
    assert v.signed == {"mask": False, "grid": False, "signed": True}
    assert [c["key"] for c in v._grid.columns] == ["mask", "grid", "signed"]
    assert [c["cmap"] for c in v._grid.columns] == ["inferno", "inferno", "RdBu_r"]
    assert sorted(v._grid.luts) == ["RdBu_r", "inferno"]
    assert [r["index"] for r in v._grid.rows] == list(range(8))
    assert all(sorted(r["cells"]) == ["grid", "mask", "signed"] for r in v._grid.rows)
    assert all(r["contour"] == "" for r in v._grid.rows), "contours only in the detail view"
    (row,) = v._detail_view.rows
    assert row["index"] == 0 and row["contour"].startswith("data:image/png;base64,")
    assert 'data-index="0"' in v._detail_info.object and "Image #0" in v._detail_info.object
    assert v._grid.opacity == v._detail_view.opacity == 0.6
    assert "AttributionViewer(n=12" in repr(v)


def test_payload_values_and_ranges(data, maps):
    v = viewer_of(data, maps)
    row = v._grid.rows[2]
    cell = row["cells"]["signed"]
    assert cell["kind"] == "pixel" and (cell["h"], cell["w"]) == (32, 32)
    np.testing.assert_array_equal(decode(cell), maps["signed"][2].numpy())
    s = float(np.percentile(maps["signed"][2].abs().numpy(), 99.5))
    assert cell["vmin"] == pytest.approx(-s) and cell["vmax"] == pytest.approx(s)
    grid = row["cells"]["grid"]
    assert grid["kind"] == "grid" and (grid["h"], grid["w"]) == (4, 4)
    np.testing.assert_array_equal(decode(grid), maps["grid"][2].numpy())
    assert grid["vmin"] == 0.0 and 0 < grid["vmax"] <= float(maps["grid"][2].max())
    assert v.value_range(2, "signed") == (cell["vmin"], cell["vmax"])

    exact = viewer_of(data, maps, clip_percentile=100)
    assert exact.value_range(2, "signed")[1] == pytest.approx(float(maps["signed"][2].abs().max()))
    assert exact.value_range(2, "mask") == (0.0, 1.0)


def test_large_maps_are_sent_as_block_means(data, maps):
    v = viewer_of(data, maps, payload_size=8)
    cell = v._grid.rows[0]["cells"]["signed"]
    assert cell["kind"] == "block" and (cell["h"], cell["w"]) == (8, 8) and cell["block"] == "4\u00d74"
    want = F.avg_pool2d(maps["signed"][0][None, None], 4)[0, 0].numpy()
    np.testing.assert_allclose(decode(cell), want, rtol=1e-6, atol=1e-7)
    # the range still comes from the full-resolution map
    assert cell["vmax"] == pytest.approx(v.value_range(0, "signed")[1])
    detail = v._detail_view.rows[0]["cells"]["signed"]
    assert (detail["h"], detail["w"]) == (16, 16), "the detail view gets twice the values a side"


def test_select_page_and_grid_click(data, maps):
    v = viewer_of(data, maps)
    v.select(9)
    assert v.selected == 9 and v.page == 1 and v._grid.selected == 9
    assert [r["index"] for r in v._grid.rows] == [8, 9, 10, 11]
    assert v._detail_view.rows[0]["index"] == 9
    assert 'data-index="9"' in v._detail_info.object and "Image #9" in v._detail_info.object
    assert v.class_names[int(data.labels[9])] in v._detail_info.object
    v._grid.selected = 3  # what a click in the browser does
    assert v.selected == 3 and v.page == 0 and v._detail_view.rows[0]["index"] == 3
    v.select(np.int64(4))
    v.select(torch.tensor(5))
    assert v.selected == 5

    v.next_page()
    assert v.page == 1 and v.selected == 5, "turning pages does not change the selection"
    v.next_page()
    assert v.page == 1
    v.previous_page()
    v.previous_page()
    assert v.page == 0
    with pytest.raises(ValueError):
        v.page = 2


def test_select_errors(data, maps):
    v = viewer_of(data, maps)
    with pytest.raises(IndexError, match=r"index 12 is out of range for 12 images \(valid: 0\.\.11\)"):
        v.select(12)
    with pytest.raises(IndexError, match="out of range"):
        v.select(-1)
    for bad in ("3", 2.0, True, None, torch.tensor([1, 2]), torch.tensor(1.0)):
        with pytest.raises(ValueError, match="integer index"):
            v.select(bad)
    with pytest.raises(ValueError):
        v.selected = 12
    assert v.selected == 0


def test_methods_choose_the_columns(data, maps):
    v = viewer_of(data, maps)
    seen = []
    v.param.watch(lambda e: seen.append(e.new), "methods")
    v.methods = ["signed", "mask"]
    assert v.shown_methods == ["mask", "signed"], "shown in the order of maps_by_method"
    assert [c["key"] for c in v._grid.columns] == ["mask", "signed"]
    assert all(sorted(r["cells"]) == ["mask", "signed"] for r in v._grid.rows)
    assert sorted(v._detail_view.rows[0]["cells"]) == ["mask", "signed"]
    assert 'data-methods="mask,signed"' in v._detail_info.object
    narrow = v._grid.width
    v.methods = ["grid", "mask", "signed"]
    assert v._grid.width > narrow
    v.methods = []
    assert v._grid.columns == [] and v._detail_view.rows[0]["cells"] == {}
    assert len(seen) == 3
    with pytest.raises(ValueError):
        v.methods = ["nope"]
    assert viewer_of(data, maps, methods=["grid"]).shown_methods == ["grid"]


def test_cmap_opacity_upsampling_fade(data, maps):
    v = viewer_of(data, maps)
    before = v.overlay(1, "signed")
    v.cmap = "viridis"
    assert [c["cmap"] for c in v._grid.columns] == ["viridis"] * 3
    assert [c["cmap"] for c in v._detail_view.columns] == ["viridis"] * 3
    assert v._grid.luts == {"viridis": colormap_lut("viridis").reshape(-1).tolist()}
    assert v.colormap_of("signed") == "viridis"
    assert not np.array_equal(v.overlay(1, "signed"), before)
    with pytest.raises(ValueError):
        v.cmap = "rainbow"
    v.cmap = "auto"
    assert v.colormap_of("signed") == "RdBu_r" and v.colormap_of("mask") == "inferno"

    v.opacity = 0.25
    assert v._grid.opacity == v._detail_view.opacity == 0.25
    assert "0.25" in v._opacity_label.object
    img = (data.images[1].permute(1, 2, 0).numpy() * 255).round()
    err_low = np.abs(v.overlay(1, "signed").astype(float) - img).mean()
    v.opacity = 0.9
    assert np.abs(v.overlay(1, "signed").astype(float) - img).mean() > err_low
    with pytest.raises(ValueError):
        v.opacity = 1.5

    v.upsampling = "bilinear"
    assert v._grid.smooth and v._detail_view.smooth
    v.fade = True
    assert v._grid.fade and v._detail_view.fade
    assert v.overlay(0, "grid").shape == (32, 32, 3)


def test_masks_contour_toggle_and_absence(data, maps):
    v = viewer_of(data, maps)
    assert v._detail_view.rows[0]["contour"]
    v.show_mask = False
    assert v._detail_view.rows[0]["contour"] == ""
    v.show_mask = True
    assert v._detail_view.rows[0]["contour"]
    bare = AttributionViewer(data.images, maps)
    assert bare._detail_view.rows[0]["contour"] == ""
    assert bare._grid.rows[0]["caption"] == "#0" and bare._grid.rows[0]["sub"] == ""


def test_metrics_table(data, maps):
    per_image = torch.linspace(0, 1, N)
    v = viewer_of(data, maps, metrics={"mask": {"auc": 0.75, "hit": per_image}, "signed": {"auc": 0.5}})
    v.select(4)
    table = v._metrics_pane.object
    assert v._metrics_pane.visible and 'class="wb-metrics" data-index="4"' in table
    assert '<tr data-method="mask">' in table and '<tr data-method="signed">' in table
    assert "grid" not in table, "methods without metrics have no row"
    assert "0.75" in table and f"{float(per_image[4]):.3g}" in table and "(0.5)" in table  # value + mean
    assert "image #4" in table
    v.methods = ["grid"]
    assert not v._metrics_pane.visible
    v.methods = ["mask", "grid", "signed"]

    v.metrics = {"grid": {"iou": np.float32(0.125)}}
    assert v.metrics == {"grid": {"iou": 0.125}}
    assert '<tr data-method="grid">' in v._metrics_pane.object and "0.125" in v._metrics_pane.object
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        v.metrics = {"nope": {"auc": 1.0}}
    with pytest.raises(ValueError, match=r"shape \(12,\)"):
        v.metrics = {"mask": {"auc": [0.1, 0.2]}}
    with pytest.raises(ValueError, match="expected a dict"):
        v.metrics = {"mask": 0.5}
    v.metrics = None
    assert not v._metrics_pane.visible


def test_model_predictions(data, maps):
    class Oracle(nn.Module):
        labels = list(data.class_names)

        def __init__(self):
            super().__init__()
            self.calls = []

        def forward(self, x):
            self.calls.append(torch.is_inference_mode_enabled())
            return F.one_hot(torch.arange(len(x)) % 5, 5).float() * 3

    model = Oracle()
    v = AttributionViewer(data.images, maps, model=model, labels=data.labels)
    assert model.calls == [True], "the model runs once, under inference mode"
    assert v.predictions.tolist() == [i % 5 for i in range(N)]
    assert v.class_names == list(data.class_names)
    row = v._grid.rows[1]
    assert row["sub"].startswith(f"\u2192 {data.class_names[1]}")
    assert row["status"] == ("ok" if int(data.labels[1]) == 1 else "bad")
    assert "prediction" in v._detail_info.object


def test_renders_to_bokeh(data, maps):
    from bokeh.document import Document

    v = viewer_of(data, maps)
    layout = v.panel()
    assert layout is v.__panel__()
    models = list(layout.get_root(Document()).references())
    grids = [m for m in models if "wb-attr-grid" in str(getattr(m, "esm", ""))]
    assert len(grids) == 2, "one JS component for the grid, one for the detail view"
    assert pn.config.inline, "the widgets load Panel's JavaScript inline (no CDN)"


def test_instances_do_not_share_parameter_state(data, maps):
    a = viewer_of(data, maps)
    b = AttributionViewer(torch.rand(3, 3, 8, 8), {"x": torch.rand(3, 8, 8)})
    assert a.param.methods.objects == ["mask", "grid", "signed"] and b.param.methods.objects == ["x"]
    assert a.param.selected.bounds == (0, 11) and b.param.selected.bounds == (0, 2)
    b.select(2)
    assert a.selected == 0


# ---------------------------------------------------------------- validation


def test_validation(data, maps):
    imgs = data.images
    nan = maps["signed"].clone()
    nan[3, 0, 0] = float("nan")
    inf = maps["signed"].clone()
    inf[5, 1, 1] = float("inf")
    cases = [
        (dict(images=imgs.tolist(), maps_by_method=maps), "images: expected a torch.Tensor"),
        (dict(images=imgs, maps_by_method=[maps["mask"]]), "maps_by_method: expected a dict"),
        (dict(images=imgs, maps_by_method={}), "at least one method"),
        (dict(images=imgs, maps_by_method={"m": maps["mask"].tolist()}), r"maps_by_method\['m'\]: expected a torch.Tensor"),
        (dict(images=imgs, maps_by_method={"m": maps["mask"][:5]}), r"expected 12 maps \(one per image\)"),
        (dict(images=imgs, maps_by_method={"m": maps["mask"][0]}), "add a batch dimension"),
        (dict(images=imgs, maps_by_method={"m": torch.rand(N, 4, 8)}), "aspect ratio"),
        (dict(images=imgs, maps_by_method={"ok": maps["mask"], "bad": nan}), r"method 'bad' has NaN values in the maps of images \[3\]"),
        (dict(images=imgs, maps_by_method={"inf": inf}), r"method 'inf' has infinite values .*\[5\]"),
        (dict(images=imgs, maps_by_method=maps, masks=data.object_masks[:, :8]), "masks: expected shape"),
        (dict(images=imgs, maps_by_method=maps, labels=data.labels, class_names=["a"]), "out of range"),
        (dict(images=imgs, maps_by_method=maps, metrics={"zzz": {}}), "unknown method"),
        (dict(images=imgs, maps_by_method=maps, max_rows=0), "max_rows"),
        (dict(images=imgs, maps_by_method=maps, clip_percentile=0), "clip_percentile"),
        (dict(images=imgs, maps_by_method=maps, methods=["zzz"]), "zzz"),
    ]  # fmt: skip
    for kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            AttributionViewer(**kwargs)
    # accepted: (N, 1, H, W) maps, numpy maps, integer maps
    v = AttributionViewer(
        imgs, {"a": maps["mask"][:, None], "b": maps["grid"].numpy(), "c": data.object_masks.long()}
    )
    assert v.maps["a"].shape == (N, 32, 32) and v.maps["c"].dtype == torch.float32


# ---------------------------------------------------------------- helpers


def test_colormaps_and_overlays():
    for name in COLORMAPS:
        lut = colormap_lut(name)
        assert lut.shape == (256, 3) and lut.dtype == np.uint8
    rdbu = colormap_lut("RdBu_r")
    assert rdbu[0].tolist() == [5, 48, 97] and rdbu[-1].tolist() == [103, 0, 31]  # blue -> red
    assert np.all(rdbu[127:129] > 240), "white in the middle, at 0"
    with pytest.raises(ValueError, match="colormap"):
        colormap_lut("nope")

    m = np.array([[-2.0, 0.0], [1.0, 4.0]])
    assert map_range(m, percentile=100) == (-4.0, 4.0)
    assert map_range(np.abs(m), percentile=100) == (0.0, 4.0)
    assert map_range(np.zeros((2, 2))) == (0.0, 1.0)
    colors = colorize(m, "RdBu_r", -4, 4)
    assert colors[0, 1].tolist() == rdbu[128].tolist() and colors[1, 1].tolist() == rdbu[255].tolist()
    np.testing.assert_allclose(map_strength(m, -4, 4), [[0.5, 0], [0.25, 1]])

    img = torch.zeros(3, 4, 4)
    out = map_overlay(img, torch.tensor(m, dtype=torch.float32), "gray", opacity=1.0, vmin=-4, vmax=4)
    assert out.shape == (4, 4, 3) and out[0, 0].tolist() == [64, 64, 64]  # nearest upsampling of (2, 2)
    assert out[3, 3].tolist() == [255, 255, 255]
    half = map_overlay(img, m, "gray", opacity=0.5, vmin=-4, vmax=4)
    assert half[3, 3].tolist() == [128, 128, 128]
    faded = map_overlay(img, m, "gray", opacity=1.0, vmin=-4, vmax=4, fade=True)
    assert faded[0, 2].tolist() == [0, 0, 0] and faded[3, 3].tolist() == [255, 255, 255]

    mask = np.zeros((6, 6), bool)
    mask[2:4, 2:4] = True
    layer = contour_layer(mask, scale=2, thickness=1)
    assert layer.shape == (12, 12, 4)
    assert layer[..., 3].any() and layer[0, 0, 3] == 0 and layer[5, 5, 3] == 0, (
        "transparent away from the edge"
    )
    assert layer[4, 5].tolist() == [255, 255, 255, 255] and layer[3, 5].tolist() == [0, 0, 0, 255]


# ---------------------------------------------------------------- names, layout, numpy inputs


def test_names_show_in_captions_and_detail(data, maps):
    names = np.array([f"photo_{i:02d}" for i in range(N)])  # a NumPy array of names works like a list
    v = viewer_of(data, maps, names=names)
    row = v._grid.rows[3]
    label = data.class_names[int(data.labels[3])]
    assert row["caption"] == f"photo_03 {label}" and row["alt"].startswith(
        f"Image 3 (photo_03): label {label}"
    )
    v.select(5)
    assert "Image #5 \u00b7 photo_05" in v._detail_info.object
    plain = viewer_of(data, maps)
    assert plain._grid.rows[3]["caption"] == f"#3 {label}" and plain.names is None
    for bad, match in (("abc", "expected a list of 12 image names"), (["a"] * 3, "expected 12 names")):
        with pytest.raises(ValueError, match=match):
            viewer_of(data, maps, names=bad)


def test_detail_sits_beside_the_grid_when_there_is_room(data, maps):
    """The detail pane grows into the room beside the grid (flex) down to a minimum width, then wraps below;
    the minimum holds the image and one map side by side (or the curves), the maximum every map on a line."""
    v = viewer_of(data, maps)
    styles = v._detail.styles
    assert styles["flex"] == f"1 1 {styles['min-width']}"
    lo, hi = (int(styles[k].removesuffix("px")) for k in ("min-width", "max-width"))
    cell = 200 + 14  # detail_size + gaps
    assert lo == 2 * cell + 4 + 24 and hi == 4 * cell + 4 + 24  # image + 3 methods on one line
    assert v._detail.sizing_mode == "stretch_width" and v._detail_view.sizing_mode == "stretch_width"
    v.methods = ["mask"]
    assert v._detail.styles["max-width"] == f"{2 * cell + 4 + 24}px"


def test_numpy_inputs_equal_tensor_inputs(data, maps):
    as_np = {k: m.numpy() for k, m in maps.items()}
    a = AttributionViewer(
        data.images.numpy(), as_np, masks=data.object_masks.numpy(), labels=data.labels.numpy()
    )
    b = AttributionViewer(data.images, maps, masks=data.object_masks, labels=data.labels)
    assert a._grid.rows == b._grid.rows and a._detail_view.rows == b._detail_view.rows
