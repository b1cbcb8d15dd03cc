"""ConceptGallery, Python side: sorting, paging, the opacity of the maps, the link to an AttributionViewer,
the recursion tree, the feature-visualization slot, ``from_craft`` on a stand-in, and the boundary checks.

The data are hand-made (3 concepts, 6 crops of 8 px, 4 images of 16 px) so the expected order of concepts,
crops and images is known. Clicks go through the panes' message handler (what the browser sends). The
browser side (`panel serve` and JupyterLab) is in tests/browser/test_concept_gallery_browser.py.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

pn = pytest.importorskip("panel", reason="the widgets need the ui extra (panel)")

from workbench.widgets import AttributionViewer, ConceptGallery  # noqa: E402
from workbench.widgets.concept_gallery import EMPTY_FEATVIZ, tree_nodes  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

IMPORTANCES = [0.1, 0.5, -0.2]  # by importance: concept 1, 0, 2 (a signed estimator's negative last)
CODES = [  # (6 crops, 3 concepts): crop 4 has none of concept 0, concept 2 is in two crops only
    [0.9, 0.0, 0.0],
    [0.2, 0.3, 0.0],
    [0.5, 0.1, 0.7],
    [0.7, 0.6, 0.0],
    [0.0, 0.9, 0.1],
    [0.1, 0.2, 0.0],
]
IMAGE_IMPORTANCES = [[0.1, 0.4, 0.0], [0.3, 0.2, 0.1], [0.2, 0.9, 0.0], [0.0, 0.1, 0.5]]
TREE = {
    "concept": None,
    "layer": "layer4",
    "children": [
        {"concept": 1, "layer": "layer4", "importance": 0.5, "crops": [4, 3], "children": [
            {"concept": 0, "layer": "layer2", "importance": 0.3, "crops": [4]},
            {"concept": 1, "layer": "layer2", "importance": 0.2, "crops": [3]},
        ]},
        {"concept": 0, "layer": "layer4", "importance": 0.1},
        {"concept": 2, "layer": "layer4", "importance": -0.2},
    ],
}  # fmt: skip


def arrays(**overrides):
    g = torch.Generator().manual_seed(0)
    kw = {
        "crops": torch.rand(6, 3, 8, 8, generator=g),
        "crop_codes": torch.tensor(CODES),
        "importances": torch.tensor(IMPORTANCES),
        "crop_maps": torch.rand(6, 3, 4, 4, generator=g),
        "images": torch.rand(4, 3, 16, 16, generator=g),
        "image_importances": np.array(IMAGE_IMPORTANCES, np.float32),  # NumPy is accepted too
        "image_maps": torch.rand(4, 3, 4, 4, generator=g),
        "tree": TREE,
    }
    kw.update(overrides)
    return kw


def gallery(**overrides) -> ConceptGallery:
    kw = arrays(**overrides)
    kw.setdefault("page_size", 2)
    return ConceptGallery(**kw)


def srcs(html: str) -> list[str]:
    return re.findall(r'src="([^"]+)"', html)


def test_concepts_sorted_by_importance_paged_with_top_crops_and_images():
    g = gallery(concept_names=["a", "b", "c"], class_name="cat")
    assert g.order.tolist() == [1, 0, 2] and g.selected == 1, "the most important concept is selected"
    assert g.n_pages == 2 and g.page_concepts == [1, 0]
    assert 'data-concepts="1,0"' in g._cards.object and g.title == "Concepts of cat"
    # Top crops by code, positive codes only; images by their importance for the concept.
    assert [k for k, _ in g.top_crops(0)] == [0, 3, 2, 1, 5]
    assert [k for k, _ in g.top_crops(2)] == [2, 4] and g.top_crops(1, 2) == [
        (4, pytest.approx(0.9)),
        (3, pytest.approx(0.6)),
    ]
    assert [i for i, _ in g.top_images(1)] == [2, 0, 1, 3] and [i for i, _ in g.top_images(2, 1)] == [3]
    card = g._cards.object.split('data-concept="0"')[1]
    assert card.count('class="wb-ex wb-cg-crop"') == 5 and card.count('data-action="image"') == 4
    # Paging, and selecting a concept shows its page.
    g.next_page()
    assert g.page == 1 and g.page_concepts == [2] and 'data-concepts="2"' in g._cards.object
    g.next_page()
    assert g.page == 1, "stays on the last page"
    g.select(0)
    assert g.page == 0 and g.selected == 0 and 'wb-cg-card wb-selected" data-concept="0"' in g._cards.object
    g._cards._handle_msg({"action": "concept", "value": "2"})  # a click on a card's head
    assert g.selected == 2 and g.page == 1 and g.rank(2) == 2
    assert "ConceptGallery(n_concepts=3" in repr(g)
    with pytest.raises(IndexError, match=r"concept 3 is out of range: the gallery has concepts 0\.\.2"):
        g.select(3)


def test_opacity_slider_changes_the_overlay_payload():
    g = gallery()
    g.select_image(2)
    cards, detail = g._cards.object, g._image.object
    g.opacity = 0.2  # what the slider sets
    assert 'data-opacity="0.20"' in g._cards.object and 'data-opacity="0.20"' in g._image.object
    changed = [a != b for a, b in zip(srcs(cards), srcs(g._cards.object), strict=True)]
    assert all(changed), "every crop and image map is redrawn"
    assert srcs(detail)[0] == srcs(g._image.object)[0], "the plain image stays"
    assert all(a != b for a, b in zip(srcs(detail)[1:], srcs(g._image.object)[1:], strict=True))
    # Without maps the crops are plain: the opacity changes nothing there.
    signed = gallery(crop_maps=torch.randn(6, 3, 4, 4))  # drawn around 0, in another colormap
    assert srcs(signed._cards.object)[0] != srcs(cards)[0]
    plain = gallery(crop_maps=None, image_maps=None, image_importances=None)
    before = plain._cards.object
    plain.opacity = 0.9
    assert srcs(before) == srcs(plain._cards.object) and "Where it matters most" not in before


def test_select_image_links_the_attribution_viewer_both_ways():
    kw = arrays()
    maps = {"saliency": torch.rand(4, 16, 16), "signed": torch.randn(4, 4, 4)}
    av = AttributionViewer(kw["images"], maps, max_rows=2)
    g = ConceptGallery(**kw, attribution_viewer=av, page_size=2)
    g._cards._handle_msg({"action": "image", "value": "3"})  # a click on an image where a concept matters
    assert g.selected_image == 3 and av.selected == 3 and av.page == 1
    assert 'wb-cg-image wb-on" data-action="image" data-value="3"' in g._cards.object, (
        "highlighted in the cards"
    )
    detail = g._image.object
    assert 'data-image="3"' in detail and detail.count('class="wb-ex wb-cg-map') == 3
    assert 'data-method="saliency"' in detail and 'data-method="signed"' in detail
    seen = []
    g.on_select_image(seen.append)
    av.select(1)  # a click on the viewer's row
    assert g.selected_image == 1 and seen == [1] and 'data-image="1"' in g._image.object
    av.methods = ["signed"]  # the viewer's maps follow its method selection
    assert 'data-method="saliency"' not in g._image.object
    g._image._handle_msg({"action": "concept", "value": "2"})  # a concept map of the image selects it
    assert g.selected == 2
    g.select_image(None)
    assert g.selected_image is None and "select_image(i)" in g._image.object
    with pytest.raises(IndexError, match=r"select_image: index 4 is out of range for 4 images"):
        g.select_image(4)
    other = AttributionViewer(torch.rand(4, 3, 16, 16), maps)
    with pytest.raises(ValueError, match="attribution_viewer: it shows other images"):
        ConceptGallery(**kw, attribution_viewer=other)
    with pytest.raises(ValueError, match="attribution_viewer: expected an AttributionViewer"):
        ConceptGallery(**kw, attribution_viewer=object())


def test_tree_click_selects_concept_or_sub_concept():
    g = gallery()
    nodes = g.nodes
    assert [n.path for n in nodes] == ["0", "0.0", "0.0.0", "0.0.1", "0.1", "0.2"]
    assert [n.top for n in nodes] == [None, 1, 1, 1, 0, 2] and [n.sub for n in nodes][1:4] == [
        False,
        True,
        True,
    ]
    assert (
        "planted" not in g._tree.object
        and 'wb-cg-node wb-on" data-action="node" data-value="0.0"' in g._tree.object
    )
    g._tree._handle_msg({"action": "node", "value": "0.2"})  # concept 2, on page 2
    assert g.selected == 2 and g.page == 1 and g.selected_node == "0.2"
    g._tree._handle_msg({"action": "node", "value": "0.0.1"})  # a sub-concept: its parent is selected
    assert g.selected == 1 and g.page == 0 and g.selected_node == "0.0.1"
    assert (
        'class="wb-cg-node-detail" data-path="0.0.1"' in g._tree.object and "sub-concept 1" in g._tree.object
    )
    g._tree._handle_msg({"action": "node", "value": "0.0.1"})  # clicked again: unselected
    assert g.selected_node is None
    g._cards._handle_msg({"action": "concept", "value": "0"})
    assert g.selected_node is None and 'wb-on" data-action="node" data-value="0.1"' in g._tree.object
    with pytest.raises(ValueError, match=r"no tree node '7'"):
        g.select_node("7")
    start = gallery(selected_node="0.0.0", selected_image=1)  # initial state, rendered
    assert start.selected == 1 and 'data-selected-node="0.0.0"' in start._tree.object
    assert 'data-image="1"' in start._image.object

    class Tree:  # CRAFT's ConceptTree: an object with to_dict()
        def to_dict(self):
            return TREE["children"]

    assert [n.path for n in gallery(tree=Tree()).nodes] == ["0", "0.0", "0.1", "1", "2"]
    assert "no tree given" in gallery(tree=None)._tree.object
    for bad, match in (
        ({"concept": 3}, "concept 3 is out of range for the 3 concepts"),
        ({"concept": 0, "crops": [6]}, r"crops must index the 6 crops \(0\.\.5\), got \[6\]"),
        ({"concept": 0, "importance": float("nan")}, "importance must be a finite number"),
        ({"concept": 0, "children": [1]}, "tree node 0.0: expected a dict"),
        ("tree", "tree: expected a node dict"),
    ):
        with pytest.raises(ValueError, match=match):
            tree_nodes(bad, 3, 6)


def test_featviz_slot_empty_then_filled():
    g = gallery()
    assert g._cards.object.count(EMPTY_FEATVIZ) == 2 and 'data-featviz="filled"' not in g._cards.object
    g.featviz = {1: np.random.default_rng(0).random((3, 24, 24))}  # filled when a visualization lands
    assert g._cards.object.count(EMPTY_FEATVIZ) == 1
    assert 'alt="feature visualization of concept 1"' in g._cards.object and set(g.featviz) == {1}
    assert 'data-featviz="filled"' in gallery(featviz={0: torch.rand(1, 3, 8, 8)})._cards.object
    with pytest.raises(IndexError, match="concept 5 is out of range"):
        gallery(featviz={5: torch.rand(3, 8, 8)})
    with pytest.raises(ValueError, match=r"featviz\[0\]: expected pixel values in \[0.0, 1.0\]"):
        gallery(featviz={0: 2 * torch.ones(3, 8, 8)})


def test_from_craft_asks_only_the_public_api():
    kw = arrays()
    calls = []

    class StandInCraft:  # the attributes and methods CRAFT exposes (workbench.concepts.Craft)
        crops, crop_codes, class_id = kw["crops"], kw["crop_codes"], 7

        def importance(self, images, class_id, per_image=False):
            calls.append(("importance", class_id, per_image))
            return torch.as_tensor(kw["image_importances"]) if per_image else kw["importances"]

        def concept_maps(self, x, method="codes"):
            calls.append(("concept_maps", len(x), method))
            return kw["crop_maps"] if len(x) == 6 else kw["image_maps"]

        def tree(self):
            calls.append(("tree",))
            return TREE

    g = ConceptGallery.from_craft(StandInCraft(), kw["images"], page_size=2)
    assert sorted(calls) == sorted([("importance", 7, False), ("importance", 7, True), ("concept_maps", 4, "codes"),
                                    ("concept_maps", 6, "codes"), ("tree",)])  # fmt: skip
    assert g.class_name == "class 7" and g.order.tolist() == [1, 0, 2] and len(g.nodes) == 6
    calls.clear()
    g = ConceptGallery.from_craft(StandInCraft(), kw["images"], crop_maps=None, tree=None, class_name="dog")
    assert ("tree",) not in calls and len(calls) == 3 and g.crop_maps is None and g.class_name == "dog"


def test_bad_input_fails_at_the_boundary():
    cases = [
        (
            {"importances": torch.ones(4)},
            r"importances: expected shape \(3,\) \(one per concept: crop_codes has 3",
        ),
        ({"crop_codes": torch.ones(5, 3)}, r"crop_codes: expected shape \(6, \?\) \(one code per crop"),
        ({"crops": 2 * torch.rand(6, 3, 8, 8)}, r"crops: expected pixel values in \[0.0, 1.0\]"),
        ({"crops": torch.rand(6, 8, 8, 3)}, "crops: got shape .* which looks channel-last"),
        ({"crop_maps": torch.rand(6, 2, 4, 4)}, r"crop_maps: expected shape \(6, 3, \?, \?\)"),
        ({"image_importances": torch.ones(4, 2)}, r"image_importances: expected shape \(4, 3\)"),
        ({"image_maps": torch.full((4, 3, 4, 4), float("nan"))}, "image_maps: contains NaN values"),
        ({"images": None}, r"image_importances: needs the images they belong to \(images=...\)"),
        ({"concept_names": ["a", "b"]}, "concept_names: 2 names given, but at least 3 are needed"),
        ({"top_k": 0}, "top_k"),
        ({"tree": {"concept": 9}}, "concept 9 is out of range"),
    ]
    for overrides, match in cases:
        with pytest.raises(ValueError, match=match):
            gallery(**overrides)
    g = gallery(images=None, image_importances=None, image_maps=None)
    assert g.top_images(0) == [] and "no images given" in g._image.object
    with pytest.raises(ValueError, match="select_image: the gallery has no images"):
        g.select_image(0)
    with pytest.raises(ValueError, match="concept: expected an integer concept id"):
        g.select("a")
    assert gallery(importances=[0.1, 0.5, -0.2]).order.tolist() == [1, 0, 2], "a list of numbers is fine"
