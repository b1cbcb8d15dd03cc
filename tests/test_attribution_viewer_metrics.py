"""AttributionViewer's metrics panel, Python side: curves validation, the table's AUC columns, the SVG
curves for the selected image and the mean, and selecting a method by clicks (browser:
tests/browser/test_attribution_viewer_metrics_browser.py)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

pn = pytest.importorskip("panel", reason="the widgets need the ui extra (panel)")

from workbench.data.planted import planted_shapes  # noqa: E402
from workbench.metrics.causal_fidelity import CausalFidelity, deletion, insertion  # noqa: E402
from workbench.widgets import AttributionViewer  # noqa: E402
from workbench.widgets.metrics_panel import Curves  # noqa: E402

N, P = 6, 11


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data():
    return planted_shapes(N, size=32, seed=3)


@pytest.fixture(scope="module")
def maps(data):
    g = torch.Generator().manual_seed(1)
    return {"mask": data.object_masks.float(), "noise": torch.rand(N, 4, 4, generator=g), "signed": torch.randn(N, 32, 32, generator=g)}  # fmt: skip


def falling(n: int = N, p: int = P, speed: float = 3.0) -> torch.Tensor:
    """Stand-in deletion curves: exp(-speed * f), image i scaled by (1 - i / 20)."""
    f = torch.linspace(0, 1, p)
    return torch.exp(-speed * f)[None] * (1 - torch.arange(n)[:, None] / 20)


def stand_in(speed: float) -> dict:
    f = torch.linspace(0, 1, P)
    dele = falling(speed=speed)
    ins = 1 - dele.flip(1)
    auc = (dele[:, 1:] + dele[:, :-1]).sum(1) / (2 * (P - 1))  # what deletion() computes
    auc_ins = (ins[:, 1:] + ins[:, :-1]).sum(1) / (2 * (P - 1))
    return {"deletion": CausalFidelity(auc=auc, curve=dele, fractions=f), "insertion": (f, ins, auc_ins)}


@pytest.fixture(scope="module")
def curves():
    return {"mask": stand_in(6.0), "noise": stand_in(1.0), "signed": stand_in(3.0)}


def viewer_of(data, maps, **kwargs):
    return AttributionViewer(data.images, maps, labels=data.labels, class_names=data.class_names, **kwargs)


def polylines(html: str) -> list[dict[str, str]]:
    return [dict(re.findall(r'([\w-]+)="([^"]*)"', m)) for m in re.findall(r"<polyline ([^>]*)>", html)]


def figure(html: str, kind: str, scope: str) -> str:
    return html.split(f'<figure class="wb-plot" data-kind="{kind}" data-scope="{scope}"')[1].split(
        "</figure>"
    )[0]


def ylim(html: str, kind: str, scope: str) -> tuple[float, float]:
    lo, hi = re.match(r' data-ylim="([^"]+)"', figure(html, kind, scope)).group(1).split(",")
    return float(lo), float(hi)


def test_curves_are_validated_and_stored(data, maps, curves):
    v = viewer_of(data, maps, curves=curves)
    c = v.curves["mask"]["deletion"]
    assert isinstance(c, Curves) and c.curve.shape == (N, P) and c.fractions.shape == (P,)
    np.testing.assert_allclose(c.auc, curves["mask"]["deletion"].auc.numpy(), rtol=1e-6)  # given AUC kept
    np.testing.assert_allclose(v.curves["mask"]["insertion"].auc, curves["mask"]["insertion"][2].numpy())
    np.testing.assert_allclose(c.mean, c.curve.mean(0))
    assert c.sem.shape == (P,) and (c.sem >= 0).all()
    # a tuple without an AUC: the panel computes none (the one AUC is the metric's, CausalFidelity.auc)
    bare = {"mask": {"deletion": curves["mask"]["deletion"], "insertion": curves["mask"]["insertion"][:2]}}
    v = viewer_of(data, maps, curves=bare)
    assert v.curves["mask"]["insertion"].auc is None
    html = v._metrics_pane.object
    assert "insertion AUC" not in html and "deletion AUC" in html, (
        "an AUC column only for kinds that have one"
    )
    ins_fig = html[html.index('data-kind="insertion"') :]
    assert "AUC 0" not in ins_fig.split("</figure>")[0].split("wb-legend")[1]


def test_real_deletion_and_insertion_results_are_accepted(data, maps):
    """The results of workbench.metrics go in as they come (tiny linear model, 3 steps: fast)."""
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 4))
    y = torch.zeros(N, dtype=torch.long)
    d = deletion(model, data.images, y, maps["mask"], steps=3)
    i = insertion(model, data.images, y, maps["mask"], steps=3)
    v = viewer_of(data, maps, curves={"mask": {"deletion": d, "insertion": i}})
    np.testing.assert_allclose(v.curves["mask"]["deletion"].curve, d.curve.numpy(), rtol=1e-6)
    assert len(polylines(v._metrics_pane.object)) == 4, "deletion and insertion, image and mean"


def test_curve_validation(data, maps, curves):
    f = torch.linspace(0, 1, P)
    nan = falling()
    nan[2, 4] = float("nan")
    cases = [
        ([1], "curves: expected a dict"),
        ({"nope": {"deletion": (f, falling())}}, "curves: unknown method 'nope'"),
        ({"mask": (f, falling())}, r"curves\['mask'\]: expected a dict \{'deletion'"),
        ({"mask": {"": (f, falling())}}, "kinds must be non-empty strings"),
        ({"mask": {"deletion": falling()}}, r"curves\['mask'\]\['deletion'\]: expected a CausalFidelity"),
        ({"mask": {"deletion": {"curve": falling()}}}, r"missing key\(s\) \['fractions'\]"),
        ({"mask": {"deletion": (f, falling(n=4))}}, r"expected 6 curves \(one per image\)"),
        ({"mask": {"deletion": (f, falling()[0])}}, "add a batch dimension"),
        ({"mask": {"deletion": (f[:5], falling())}}, "mismatched lengths: each curve has 11 points but fractions has 5"),
        ({"mask": {"deletion": (f, nan)}}, r"NaN values in the curves of images \[2\]"),
        ({"mask": {"deletion": (f.flip(0), falling())}}, "non-decreasing values in \\[0, 1\\]"),
        ({"mask": {"deletion": (f * 2, falling())}}, "non-decreasing values in \\[0, 1\\]"),
        ({"mask": {"deletion": (f[:1], falling(p=1))}}, "at least 2 points"),
        ({"mask": {"deletion": (f, falling(), torch.ones(4))}}, r"expected auc of shape \(6,\)"),
        ({"mask": {"deletion": (f, falling(), torch.full((N,), float("inf")))}}, "infinite values in the auc"),
        ({"mask": {"deletion": ("abc", falling())}}, "fractions: expected numbers"),
    ]  # fmt: skip
    for bad, match in cases:
        with pytest.raises(ValueError, match=match):
            viewer_of(data, maps, curves=bad)
    v = viewer_of(data, maps, curves=curves)
    with pytest.raises(ValueError, match="unknown method"):
        v.curves = {"zzz": {}}
    assert v.curves.keys() == curves.keys(), "a failed assignment leaves the curves as they were"
    with pytest.raises(ValueError, match="unknown method 'zzz'"):
        v.select_method("zzz")
    with pytest.raises(ValueError):
        v.selected_method = "zzz"
    with pytest.raises(ValueError, match="unknown method"):
        viewer_of(data, maps, curves=curves, selected_method="zzz")


def test_table_gets_auc_columns(data, maps, curves):
    v = viewer_of(data, maps, curves=curves, metrics={"mask": {"pointing": torch.ones(N)}})
    v.select(2)
    html = v._metrics_pane.object
    assert v._metrics_pane.visible and 'class="wb-metrics" data-index="2"' in html
    head = html.split("<thead>")[1].split("</thead>")[0]
    assert re.findall(r"<th[^>]*>([^<]*)", head) == [
        "method",
        "pointing",
        "deletion AUC \u2193",
        "insertion AUC \u2191",
    ]
    row = html.split('<tr data-method="noise">')[1].split("</tr>")[0]
    auc = v.curves["noise"]["deletion"].auc
    assert f"{float(f'{auc[2]:.3g}'):g}" in row and f"({float(f'{auc.mean():.3g}'):g})" in row
    assert "<td>\u2013</td>" in row, "noise has no pointing score"
    # an AUC the user already gives as a metric is not repeated
    own = viewer_of(data, maps, curves=curves, metrics={"mask": {"deletion AUC": 0.5}})
    head = own._metrics_pane.object.split("<thead>")[1].split("</thead>")[0]
    assert head.count("deletion AUC") == 1 and "insertion AUC" in head


def test_curves_for_selected_image_and_mean(data, maps, curves):
    v = viewer_of(data, maps, curves=curves)
    v.select(4)
    html = v._metrics_pane.object
    assert '<div class="wb-curves" data-index="4" data-selected-method=""' in html
    lines = polylines(html)
    assert len(lines) == 3 * 2 * 2, "3 methods x (deletion, insertion) x (image, mean)"
    assert {(p["data-kind"], p["data-scope"]) for p in lines} == {
        (k, s) for k in ("deletion", "insertion") for s in ("image", "mean")
    }
    assert all(p["class"] == "wb-curve" and p["stroke-opacity"] == "0.9" for p in lines), "none highlighted"
    # the points are the curve itself: x = fraction, y = score on the plot's axis (data-ylim: fit to the data)
    (mask_img,) = [
        p
        for p in lines
        if p["data-method"] == "mask" and p["data-kind"] == "deletion" and p["data-scope"] == "image"
    ]
    xy = np.array([[float(a) for a in pt.split(",")] for pt in mask_img["points"].split()])
    assert xy.shape == (P, 2)
    x0, x1, y0, y1 = 34, 250 - 8, 8, 150 - 30  # plot area of metrics_panel
    np.testing.assert_allclose((xy[:, 0] - x0) / (x1 - x0), np.linspace(0, 1, P), atol=0.01)
    lo, hi = ylim(html, "deletion", "image")
    np.testing.assert_allclose(
        lo + (y1 - xy[:, 1]) / (y1 - y0) * (hi - lo),
        v.curves["mask"]["deletion"].curve[4],
        atol=0.01 * (hi - lo),
    )  # 0.01 of the axis: the points are rounded to 0.1 px of a 112 px axis
    (mask_mean,) = [
        p
        for p in lines
        if p["data-method"] == "mask" and p["data-kind"] == "deletion" and p["data-scope"] == "mean"
    ]
    ym = np.array([float(pt.split(",")[1]) for pt in mask_mean["points"].split()])
    lo, hi = ylim(html, "deletion", "mean")
    np.testing.assert_allclose(
        lo + (y1 - ym) / (y1 - y0) * (hi - lo), v.curves["mask"]["deletion"].mean, atol=0.01
    )
    # each plot's legend gives each method's AUC: for the image, and the mean AUC for the mean plot
    auc = v.curves["signed"]["insertion"].auc
    fig = figure(html, "insertion", "image")
    assert "Insertion \u00b7 image #4" in fig and "AUC: higher is better" in fig
    assert f"AUC {float(f'{auc[4]:.3g}'):g}</span>" in fig
    fig = figure(html, "deletion", "mean")
    assert f"mean of {N} images" in fig and "AUC: lower is better" in fig
    mean_auc = v.curves["signed"]["deletion"].auc.mean()
    assert f"AUC {float(f'{mean_auc:.3g}'):g}</span>" in fig
    # hidden methods leave the plots too; no curves, no plots
    v.methods = ["mask"]
    assert {p["data-method"] for p in polylines(v._metrics_pane.object)} == {"mask"}
    v.curves = None
    assert not v._metrics_pane.visible and v._metrics_pane.object == ""


def test_clicking_a_method_highlights_its_curves(data, maps, curves):
    v = viewer_of(data, maps, curves=curves)
    assert v.selected_method is None and v._grid.pickable and v._detail_view.pickable
    seen = []
    v.param.watch(lambda e: seen.append(e.new), "selected_method")

    v._metrics_pane._handle_msg({"action": "method", "value": "noise"})  # a click on its row in the table
    assert v.selected_method == "noise" and seen == ["noise"]
    html = v._metrics_pane.object
    assert 'data-selected-method="noise"' in html
    lines = polylines(html)
    focus = [p for p in lines if p["data-method"] == "noise"]
    others = [p for p in lines if p["data-method"] != "noise"]
    assert len(focus) == 4 and all("wb-focus" in p["class"] and p["stroke-width"] == "3" for p in focus)
    assert all("wb-faded" in p["class"] and float(p["stroke-opacity"]) < 0.3 for p in others)
    assert html.count('class="wb-band"') == 2, (
        "mean \u00b1 standard error band of the selected method, per kind"
    )
    assert html.count('class="wb-area"') == 2, "area under its curve for the selected image"
    assert '<td class="wb-method wb-focus" data-action="method" data-value="noise"' in html
    assert html.count('class="wb-leg wb-focus"') == 4 and html.count('class="wb-leg wb-faded"') == 8
    assert v._grid.focus == v._detail_view.focus == "noise", "its column title is marked too"

    v._metrics_pane._handle_msg({"action": "method", "value": "noise"})  # clicked again: all alike
    assert v.selected_method is None and v._grid.focus == ""
    v._grid._handle_msg({"method": "signed"})  # a click on the column title in the grid
    assert v.selected_method == "signed"
    v._detail_view._handle_msg({"method": "mask"})  # ... or in the detail view
    assert v.selected_method == "mask"
    v._metrics_pane._handle_msg({"action": "method", "value": "unknown"})  # ignored
    v._metrics_pane._handle_msg({"action": "other", "value": "noise"})  # ignored
    assert v.selected_method == "mask"

    # the highlight follows the selected image
    v.select(5)
    assert '<div class="wb-curves" data-index="5" data-selected-method="mask"' in v._metrics_pane.object
    # Python API: select_method / the param; a hidden method is not highlighted
    v.select_method("noise")
    v.methods = ["mask", "signed"]
    assert v.selected_method == "noise" and 'data-selected-method=""' in v._metrics_pane.object
    v.select_method(None)
    assert seen[-1] is None
    start = viewer_of(data, maps, curves=curves, selected_method="signed")
    assert 'data-selected-method="signed"' in start._metrics_pane.object


def test_backward_compatible_without_curves(data, maps):
    v = viewer_of(data, maps)
    assert v.curves == {} and v.selected_method is None
    assert not v._metrics_pane.visible and not v._grid.pickable
    v = viewer_of(data, maps, metrics={"mask": {"auc": 0.5}})
    assert v._grid.pickable and "wb-curves" not in v._metrics_pane.object
    # the panel asks for room for two plots even with a single method shown
    one = viewer_of(data, {"mask": maps["mask"]}, curves={"mask": stand_in(2.0)})
    assert int(one._detail.styles["min-width"].removesuffix("px")) >= 2 * 250 + 16


def test_curve_axis_fits_a_low_confidence_model(data, maps):
    """Scores of 0.001-0.02 (a 1000-class model unsure of itself) lie flat on a fixed [0, 1] axis; the default
    axis fits them, and "relative" divides each curve by its clean score (deletion: its first point)."""
    f = torch.linspace(0, 1, P)
    low = 0.02 * falling()  # image 0 falls from 0.02 to 0.02 * exp(-3) ~ 0.001
    v = viewer_of(data, maps, curves={"mask": {"deletion": (f, low), "insertion": (f, low.flip(1))}})
    y0, y1 = 8, 150 - 30  # plot area of metrics_panel

    def heights(html: str, scope: str = "image") -> np.ndarray:
        (line,) = [p for p in polylines(html) if p["data-kind"] == "deletion" and p["data-scope"] == scope]
        return np.array([(y1 - float(pt.split(",")[1])) / (y1 - y0) for pt in line["points"].split()])

    assert v.curve_axis == "data"
    h = heights(v._metrics_pane.object)  # fraction of the plot's height
    assert h.max() - h.min() > 2 / 3, "the curve fills at least two thirds of the plot"
    lo, hi = ylim(v._metrics_pane.object, "deletion", "image")
    assert lo <= float(low[0].min()) and hi >= float(low[0].max())
    assert (lo, hi) == (0.0, 0.02), "widened to round numbers: 0.001-0.02 in steps of 0.005"

    v.curve_axis = "fixed"
    h = heights(v._metrics_pane.object)
    assert h.max() < 0.025 and ylim(v._metrics_pane.object, "deletion", "image") == (0.0, 1.0), (
        "flat at the bottom"
    )

    v.curve_axis = "relative"
    html = v._metrics_pane.object
    assert 'data-axis="relative"' in html and "score \u00f7 clean score" in html
    lo, hi = ylim(html, "deletion", "image")
    want = (low[0] / low[0, 0]).numpy()
    np.testing.assert_allclose(lo + heights(html) * (hi - lo), want, atol=0.01 * (hi - lo))
    assert want[0] == 1.0 and lo <= want.min() and hi >= 1.0
    # the mean plot: the mean of the relative curves (every image starts at 1)
    mean = heights(html, "mean")
    lo, hi = ylim(html, "deletion", "mean")
    assert lo + mean[0] * (hi - lo) == pytest.approx(1.0, abs=0.01 * (hi - lo))
    # the AUC shown is never rescaled: none was given, none is shown
    assert "AUC 0" not in html and v.curves["mask"]["deletion"].auc is None
    with pytest.raises(ValueError):
        v.curve_axis = "log"


@pytest.mark.parametrize(
    "values, want",
    [
        ((0.0, 1.0), (0.0, 1.0)),  # probabilities that span [0, 1] keep it
        ((0.151, 0.343), (0.15, 0.35)),  # step 0.05 (>= a quarter of 0.192)
        ((0.549, 1.24), (0.4, 1.4)),  # step 0.2
        ((0.2, 0.2), (0.1, 0.3)),  # a flat curve: half its value either side
    ],
)
def test_data_axis_is_round_and_tight(values, want):
    from workbench.widgets.metrics_panel import _y_range

    got = _y_range([np.array(values)], "data")
    assert got == pytest.approx(want, abs=1e-12)  # exact up to float rounding of the step multiples
    lo, hi = min(values), max(values)
    assert got[0] <= lo and got[1] >= hi and (hi == lo or (hi - lo) / (got[1] - got[0]) >= 2 / 3)


def test_ids_number_the_images_in_every_caption(data, maps, curves):
    """A viewer of a few images of a larger dataset (the Explorer's: one image) says their dataset
    numbers, not their positions, while select() keeps taking positions."""
    per_image = {m: {"score": torch.arange(N, dtype=torch.float32)} for m in maps}
    v = AttributionViewer(
        data.images, maps, curves=curves, metrics=per_image, ids=[10 + 3 * i for i in range(N)]
    )
    v.select(2)
    assert "Image #16" in v._detail_info.object and "Image #2" not in v._detail_info.object
    html = v._metrics_pane.object
    assert "Deletion \u00b7 image #16" in html and "Per-image metrics: image #16" in html
    assert 'data-index="2"' in html  # the curves and values are still those of position 2
    assert v._grid.rows[1]["caption"].startswith("#13") and v._grid.rows[1]["id"] == 13
    assert v._grid.rows[1]["alt"].startswith("Image 13")
    for bad, match in (([1, 1, 2, 3, 4, 5], "distinct"), ([0, 1, 2], "6 non-negative integers"),
                       ([0.5] * 6, "non-negative integers"), ([-1, 0, 1, 2, 3, 4], "non-negative"),
                       ("abc", "expected a list of 6 image numbers")):  # fmt: skip
        with pytest.raises(ValueError, match=match):
            AttributionViewer(data.images, maps, ids=bad)
