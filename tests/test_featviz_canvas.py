"""FeatureVizCanvas, Python side: targets -> objectives, the background run and its callback (previews
throttled, Stop), side by side, transparency overlays, atomic PNG export, bad input; and one short real run
on the zoo's texture CNN.

Most tests drive a stand-in optimizer that follows the contract of ``workbench.featviz.visualize`` (callback
every step with the current images and values, returning True stops; a ``FeatureViz`` back), so what the
canvas received and drew is known exactly. Buttons are clicked the way the browser does (``clicks += 1``).
The browser side is in tests/browser/test_featviz_canvas_browser.py.
"""

from __future__ import annotations

import functools
import io
import threading

import numpy as np
import pytest
import torch

pn = pytest.importorskip("panel", reason="the widgets need the ui extra (panel)")

from workbench.featviz import FeatureViz, objectives, visualize  # noqa: E402
from workbench.widgets import FeatureVizCanvas  # noqa: E402
from workbench.widgets.colormaps import map_range, map_strength  # noqa: E402
from workbench.widgets.html import fmt  # noqa: E402
from workbench.widgets.images import to_rgb_uint8, transparency_overlay  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

S = 12  # side of the stand-in images
CHANNELS = {"layer1": 4, "layer2": 6}


class StandInOptimizer:
    """``visualize`` without a model, as the canvas receives it: records its calls; its value at step t is
    ``t`` (+ 100 per earlier call); with ``gate``, it sets ``gate`` at step ``gate_step`` and then runs until
    the callback says stop (or ``steps``)."""

    def __init__(self, gate: threading.Event | None = None, gate_step: int = 3):
        self.calls: list[dict] = []
        self.gate, self.gate_step = gate, gate_step
        self.previews: list[torch.Tensor] = []

    def __call__(self, objective, param="maco", steps=16, callback=None, seed=0, **kw):
        objs = [objective] if isinstance(objective, objectives.Objective) else list(objective)
        self.calls.append({"objectives": [o.name for o in objs], "param": param, "steps": steps, "kw": kw})
        g = torch.Generator().manual_seed(seed + len(self.calls))
        k, history, stopped = len(objs), [], False
        image = torch.rand(k, 3, S, S, generator=g)
        for step in range(steps):
            values = torch.full((k,), 100.0 * (len(self.calls) - 1) + step)
            history.append(values)
            current = (image * (step + 1) / steps).clamp(0, 1)  # a different image every step
            self.previews.append(current[0])
            if self.gate is not None and step == self.gate_step:
                self.gate.set()
            if callback is not None and callback(step, current, values):
                stopped = step + 1 < steps
                break
        transparency = torch.zeros(k, 1, S, S)
        transparency[:, :, :, S // 2 :] = 1.0  # the right half carries all the gradient
        return FeatureViz(image=current, transparency=transparency, history=torch.stack(history),
                          objectives=[o.name for o in objs], param=param, final=values + 0.5, stopped=stopped)  # fmt: skip


def canvas(optimizer=None, **kw) -> FeatureVizCanvas:
    kw.setdefault("channels", CHANNELS)
    return FeatureVizCanvas(optimizer or StandInOptimizer(), **kw)


def decode(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)))


def test_targets_build_the_objectives_of_the_method_layer():
    """Each target's objective is the featviz constructor the issue names, checked by evaluating both on
    the same activations (a captured forward pass: known numbers, no model)."""
    g = torch.Generator().manual_seed(0)
    D, W = torch.randn(5, 6, generator=g), torch.rand(3, 4, generator=g)
    c = canvas(sae=D, sae_layer="layer2", concepts=W, concept_layer="layer1", concept_names=["a", "b", "c"],
               class_names=["cat", "dog"])  # fmt: skip
    assert c.param.target.objects == ["channel", "atom", "concept", "class"]
    assert c.target == "channel" and c.layer == "layer2" and c.index == 0  # default: the last layer given
    acts = {"layer1": torch.rand(2, 4, 3, 3, generator=g), "layer2": torch.randn(2, 6, 3, 3, generator=g)}
    cap = objectives.Capture(acts, torch.randn(2, 2, generator=g), torch.nn.Identity(), (12, 12))
    expected = {
        ("channel", 3, "layer1"): objectives.channel("layer1", 3),
        ("atom", 4, None): objectives.direction("layer2", D[4], cosine=True),
        ("concept", 1, None): objectives.direction("layer1", W[1]),
        ("class", 1, None): objectives.logit(1),
    }
    for (kind, i, layer), reference in expected.items():
        c.select(kind, i, layer)
        assert torch.allclose(c.objective()(cap), reference(cap)), kind
    assert c.target_label == "class 1 (dog)"
    c.select("concept", 2)
    assert c.target_label == "concept 2 \u201cc\u201d (layer1)" and "concept 2" in c._header.object
    c.select("channel", 5, "layer2")
    assert c.objective().name == "channel(layer2, 5)" and c.param.index.bounds == (0, 5)
    c = canvas(class_names=["cat", "dog"], target="class", index=1, layer="layer1", parameterization="pixel")
    assert (c.target, c.index, c.layer, c.parameterization) == ("class", 1, "layer1", "pixel")
    assert c.param.index.bounds == (0, 1) and not c._layer_select.visible
    c.target = "channel"  # from the menu: the index keeps within the layer's channels, the layer menu shows
    assert (
        c.param.index.bounds == (0, 3) and c._layer_select.visible and c.target_label == "channel 1 of layer1"
    )


def test_run_in_background_with_throttled_previews_and_status():
    opt = StandInOptimizer()
    c = canvas(opt, steps=20, preview_every=8, optimizer_kwargs={"image_size": 64, "seed": 3})
    c.select("channel", 2, "layer1")
    renders = []
    c._canvas.param.watch(lambda e: renders.append(e.new), ["object"])
    fv = c.run(wait=True)
    assert opt.calls == [
        {"objectives": ["channel(layer1, 2)"], "param": "maco", "steps": 20, "kw": {"image_size": 64}}
    ]
    assert fv is c.result is c.results["maco"] and not c.running
    assert c.step == 20 and c.history == [float(t) for t in range(20)] and c.value == 19.0
    # Previews every 8 steps: steps 8 and 16 of 20, each the image the callback received at that step.
    assert c.n_previews == 2
    previews = [r for r in renders if "preview at step" in r]
    assert len(previews) == 2 and "preview at step 8" in previews[0] and "preview at step 16" in previews[1]
    assert torch.equal(c.preview, opt.previews[15])
    assert 'data-state="done"' in c._status.object and "final objective maco 19.5" in c._status.object
    assert 'data-param="maco" data-state="done" data-step="20"' in c._canvas.object
    assert not c._run_button.disabled and c._stop_button.disabled
    assert "idle" not in repr(c) and "done" in repr(c)


def test_run_button_starts_and_stop_button_stops_early():
    """The stand-in never ends by itself before 10^6 steps: only the Stop flag ends it."""
    gate = threading.Event()
    opt = StandInOptimizer(gate=gate)
    c = canvas(opt, steps=10**6, preview_every=2)
    c._run_button.clicks += 1  # returns at once: the optimization runs in its thread
    assert gate.wait(60), "the optimizer did not start"
    assert c.running and c._run_button.disabled and not c._stop_button.disabled
    with pytest.raises(RuntimeError, match="already running"):
        c.run()
    c._stop_button.clicks += 1
    fv = c.wait(timeout=60)
    assert fv.stopped and 4 <= fv.history.shape[0] < 10**6 and c.step == fv.history.shape[0]
    assert 'data-state="stopped"' in c._status.object and f"stopped at step {c.step}" in c._status.object
    assert not c.running and not c._run_button.disabled and c._stop_button.disabled
    c.steps = 5  # a new run starts afresh
    assert not c.run().stopped and c.step == 5 and c.n_previews == 2


def test_side_by_side_runs_each_parameterization_and_stop_skips_the_rest():
    opt = StandInOptimizer()
    c = canvas(opt, steps=6, compare=True, compared=["maco", "pixel"], parameterization="pixel")
    c.run()
    assert [call["param"] for call in opt.calls] == ["maco", "pixel"]
    assert list(c.results) == ["maco", "pixel"] and c.result is c.results["pixel"]
    html = c._canvas.object
    assert html.count('class="wb-fv-tile"') == 2 and html.index('data-param="maco"') < html.index(
        'data-param="pixel"'
    )
    assert "final objective 5.5" in html and "final objective 106" in html  # each tile its own final value
    assert "maco 5.5 \u00b7 pixel 106" in c._status.object
    # Stopped during the first parameterization: the others never start.
    gate = threading.Event()
    opt = StandInOptimizer(gate=gate)
    c = canvas(opt, steps=10**6, compare=True)
    c.run(wait=False)
    assert gate.wait(60)
    c.stop()
    c.wait(60)
    assert [call["param"] for call in opt.calls] == ["maco"] and list(c.results) == ["maco"]
    assert 'data-param="fourier" data-state="empty"' in c._canvas.object


def test_transparency_overlay_modes():
    """The stand-in's transparency is 0 on the left half and 1 on the right: as alpha the left is clear and the
    right opaque; as heat the right half changes colour and the left stays the image."""
    g = torch.Generator().manual_seed(1)
    image, t = torch.rand(3, 8, 8, generator=g), torch.zeros(1, 8, 8)
    t[..., 4:] = 1.0
    rgba = transparency_overlay(image, t, "alpha")
    assert rgba.shape == (8, 8, 4) and (rgba[..., :4, 3] == 0).all() and (rgba[..., 4:, 3] == 255).all()
    assert np.array_equal(rgba[..., :3], to_rgb_uint8(image))
    ramp = torch.linspace(0, 1, 64).reshape(1, 8, 8)
    expected = (map_strength(ramp[0].numpy(), *map_range(ramp[0], signed=False)) * 255 + 0.5).astype(np.uint8)
    assert np.array_equal(transparency_overlay(image, ramp, "alpha")[..., 3], expected)
    heat = transparency_overlay(image, t, "heat")
    assert np.array_equal(heat[:, :4], to_rgb_uint8(image)[:, :4]) and not np.array_equal(heat[:, 4:], to_rgb_uint8(image)[:, 4:])  # fmt: skip
    assert np.array_equal(transparency_overlay(image, t, "none"), to_rgb_uint8(image))
    with pytest.raises(ValueError, match="overlay: expected one of"):
        transparency_overlay(image, t, "glow")
    c = canvas(steps=3)
    c.run()
    for mode in ("none", "heat", "alpha"):
        c.overlay = mode
        assert f'data-overlay="{mode}"' in c._canvas.object and f"({mode} transparency)" in c._canvas.object
    assert "wb-fv-checker" in c._canvas.object  # alpha is shown over a checkerboard
    c.overlay = "none"
    assert "wb-fv-checker" not in c._canvas.object


def test_export_png_is_atomic_and_decodes_to_the_image(tmp_path, monkeypatch):
    c = canvas(steps=4)
    with pytest.raises(ValueError, match="no visualization .* run\\(\\) first"):
        c.export_png(tmp_path / "none.png")
    fv = c.run()
    path = c.export_png(tmp_path / "out" / "fv.png")  # a missing folder is created
    pixels = decode(path.read_bytes())
    assert pixels.shape == (S, S, 3) and np.array_equal(pixels, to_rgb_uint8(fv.image[0]))
    rgba = decode(c.export_png(tmp_path / "fv_alpha.png", overlay="alpha").read_bytes())
    assert (
        rgba.shape == (S, S, 4) and (rgba[:, : S // 2, 3] == 0).all() and (rgba[:, S // 2 :, 3] == 255).all()
    )
    leftovers = [p.name for p in tmp_path.rglob("*") if ".tmp" in p.name]
    assert not leftovers, f"temporary files left behind: {leftovers}"
    # The button writes export_path through the same method, then says where.
    c.export_path = str(tmp_path / "button.png")
    c.param.update(overlay="heat")
    next(w for w in c._layout.select(pn.widgets.Button) if "wb-fv-export" in w.css_classes).clicks += 1
    assert (tmp_path / "button.png").exists() and "wrote" in c._message.object
    # An interrupted write never leaves a half-written file under the final name.
    monkeypatch.setattr("os.replace", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        c.export_png(tmp_path / "never.png")
    assert not (tmp_path / "never.png").exists()
    with pytest.raises(ValueError, match="ending in .png"):
        c.export_png(tmp_path / "fv.jpg")


def test_bad_input_fails_at_the_boundary():
    c = canvas(class_names=["a", "b"])
    with pytest.raises(KeyError, match="unknown layer 'layer3'; closest: \\['layer2', 'layer1'\\]"):
        c.select("channel", 0, "layer3")
    with pytest.raises(ValueError, match="channel 6 is out of range: there are 6 channels of layer 'layer2'"):
        c.select("channel", 6, "layer2")
    with pytest.raises(ValueError, match="class 2 is out of range: there are 2 classes"):
        c.select("class", 2)
    with pytest.raises(ValueError, match="target: expected one of \\['channel', 'class'\\], got 'atom'"):
        c.select("atom", 0)
    with pytest.raises(ValueError, match="only channel targets take a layer"):
        c.select("class", 0, "layer1")
    with pytest.raises(ValueError):
        c.index = 9  # beyond the bounds of the picked layer's channels
    cases = [
        ({"channels": {}}, "nothing to visualize"),
        ({"channels": {"layer1": 0}}, "channels\\['layer1'\\]: expected an integer >= 1"),
        (
            {"sae": torch.randn(3, 5), "sae_layer": "layer2"},
            "layer 'layer2' has 6 channels, but the dictionary's atoms have dimension 5",
        ),  # fmt: skip
        ({"sae": torch.randn(3, 6)}, "sae_layer: sae needs the layer"),
        ({"concepts": torch.rand(2, 4)}, "concept_layer: concepts needs the layer"),
        (
            {"concepts": torch.rand(2, 4), "concept_layer": "layer1", "concept_names": ["x"]},
            "concept_names: 1 names",
        ),
        ({"sae_layer": "layer1"}, "sae_layer: given without an sae"),
        (
            {"optimizer_kwargs": {"steps": 3}},
            "optimizer_kwargs: expected a dict of extra keywords other than",
        ),
        ({"parameterizations": []}, "parameterizations: expected distinct names"),
        ({"display_size": 8}, "display_size: expected an integer in \\[32, 2048\\]"),
        ({"preview_every": 0}, "preview_every"),
    ]
    for kw, message in cases:
        with pytest.raises(ValueError, match=message):
            canvas(**kw)
    with pytest.raises(ValueError, match="optimizer: expected a callable"):
        FeatureVizCanvas("visualize", channels=CHANNELS)
    with pytest.raises(ValueError, match="compared: choose at least one"):
        canvas(compare=True, compared=[]).run()


def test_optimizer_failures_show_in_the_status_and_raise_from_wait():
    def broken(objective, param, steps, callback):
        callback(0, torch.rand(1, 3, 8, 8), torch.ones(1))
        raise FloatingPointError("the objective became non-finite at step 1")

    c = canvas(broken, steps=4)
    with pytest.raises(RuntimeError, match="the optimizer failed: FloatingPointError: the objective became"):
        c.run()
    assert 'data-state="error"' in c._status.object and not c.running and not c.results
    c = canvas(lambda objective, param, steps, callback: torch.rand(1, 3, 8, 8), steps=2)
    with pytest.raises(RuntimeError, match="expected a FeatureViz"):
        c.run()


def test_real_run_on_the_texture_cnn(zoo_textures):
    """One short run of the real core (8 steps, 32 px; about a second on one thread): the canvas shows what
    ``visualize`` returned for the picked class, and the channel counts come from the model."""
    opt = functools.partial(visualize, zoo_textures, progress=False, image_size=32)
    c = FeatureVizCanvas.from_model(opt, zoo_textures, layers=["layer3", "layer4"], steps=8, preview_every=4)
    assert (
        c.targets.channels == {"layer3": 192, "layer4": 96} and c.targets.class_names == zoo_textures.labels
    )
    c.select("class", 1)
    fv = c.run()
    assert fv.image.shape == (1, 3, 32, 32) and fv.history.shape == (8, 1) and fv.objectives == ["logit(1)"]
    assert c.n_previews == 2 and c.history == pytest.approx(fv.history[:, 0].tolist())
    assert f"final objective maco {fmt(float(fv.final[0]))}" in c._status.object
    with pytest.raises(KeyError, match="closest"):
        FeatureVizCanvas.from_model(opt, zoo_textures, layers=["layer9"])


def test_real_stop_ends_the_optimization_early(zoo_textures):
    opt = functools.partial(visualize, zoo_textures, progress=False, image_size=32, n_crops=2)
    c = FeatureVizCanvas.from_model(opt, zoo_textures, layers=["layer4"], steps=100_000, preview_every=1)
    c.select("channel", 7, "layer4")
    c.run(wait=False)
    started = threading.Event()
    watcher = c._status.param.watch(lambda e: started.set() if c.step >= 2 else None, ["object"])
    assert started.wait(60), "no step reached"
    c._status.param.unwatch(watcher)
    c.stop()
    fv = c.wait(timeout=120)
    assert fv.stopped and 2 <= fv.history.shape[0] < 100_000


@pytest.fixture(scope="module")
def zoo_textures():
    from workbench.models import load_model

    return load_model("zoo:resnet_textures")
