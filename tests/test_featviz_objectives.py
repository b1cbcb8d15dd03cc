"""Feature-visualization objectives against values computed by hand from ``model.activations``.

What is known: each objective is a closed-form reduction of one layer's output (a mean over positions,
a square, a dot product, a cosine) or a logit, so it must equal the same reduction written here from the
activations that :meth:`Model.activations` returns; the two paths run the same float32 forward pass, so
the tolerance is float32 round-off (1e-5 relative). Hooks must never outlive a call, and a forward pass
must stop at the last hooked layer when no logit is read.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from workbench.featviz import objectives as obj
from workbench.models.model import Model

pytestmark = pytest.mark.usefixtures("one_thread")

TOL = {"rtol": 1e-5, "atol": 1e-5}


class Boom(nn.Module):
    """A layer that must not run: the objectives below read only layers before it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("Boom ran: the forward pass did not stop after the last hooked layer")


def tiny_cnn(seed: int = 0, tail: nn.Module | None = None) -> Model:
    torch.manual_seed(seed)
    net = nn.Sequential()
    net.add_module("conv1", nn.Conv2d(3, 6, 3, padding=1))
    net.add_module("act1", nn.ReLU())
    net.add_module("conv2", nn.Conv2d(6, 5, 3, stride=2, padding=1))
    net.add_module("act2", nn.Tanh())
    if tail is not None:
        net.add_module("tail", tail)
    net.add_module("pool", nn.AdaptiveAvgPool2d(1))
    net.add_module("flat", nn.Flatten())
    net.add_module("fc", nn.Linear(5, 4))
    return Model(net, mean=(0.5,) * 3, std=(0.25,) * 3, input_size=(3, 16, 16))


class TinyViT(nn.Module):
    """Tokens (N, 1 + 4 * 4, C): a CLS token then a 4 x 4 grid of 4-px patches; the head reads CLS.

    No ``num_prefix_tokens`` attribute unless asked: the token layout is then inferred from the count
    (17 = 1 + 4 * 4), the path taken for ViTs that are not timm's.
    """

    def __init__(self, width: int = 6, classes: int = 3, declare_prefix: bool = False):
        super().__init__()
        self.patch = nn.Conv2d(3, width, 4, stride=4)
        self.cls_token = nn.Parameter(torch.randn(1, 1, width))
        self.blocks = nn.Sequential(
            nn.Sequential(nn.Linear(width, width), nn.GELU()),
            nn.Sequential(nn.Linear(width, width), nn.GELU()),
        )
        self.head = nn.Linear(width, classes)
        if declare_prefix:
            self.num_prefix_tokens = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), p], dim=1)
        return self.head(self.blocks(tokens)[:, 0])


def tiny_vit(seed: int = 0, declare_prefix: bool = False) -> Model:
    torch.manual_seed(seed)
    return Model(
        TinyViT(declare_prefix=declare_prefix), mean=(0.5,) * 3, std=(0.25,) * 3, input_size=(3, 16, 16)
    )


def images(n: int = 3, size: int = 16, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def hook_count(model: Model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


# -- values on a CNN ----------------------------------------------------------------------------------
def test_cnn_objectives_equal_hand_computed_reductions():
    model, x = tiny_cnn(), images()
    a = model.activations(x, ["act1", "act2"])
    a1, a2 = a["act1"], a["act2"]  # (3, 6, 16, 16), (3, 5, 8, 8)
    logits = model(x)
    v = torch.tensor([0.5, -1.0, 2.0, 0.0, 0.3])
    ev = lambda o: obj.evaluate(model, o, x)  # noqa: E731
    torch.testing.assert_close(ev(obj.channel("act1", 4)), a1[:, 4].mean((1, 2)), **TOL)
    # neuron: the centre of an 8 x 8 grid is (4, 4), (h // 2, w // 2) as documented
    torch.testing.assert_close(ev(obj.neuron("act2", 2)), a2[:, 2, 4, 4], **TOL)
    torch.testing.assert_close(ev(obj.neuron("act2", 2, position=(1, 7))), a2[:, 2, 1, 7], **TOL)
    torch.testing.assert_close(ev(obj.layer_l2("act1")), a1.square().mean((1, 2, 3)), **TOL)
    torch.testing.assert_close(
        ev(obj.direction("act2", v)), torch.einsum("nchw,c->nhw", a2, v).mean((1, 2)), **TOL
    )
    torch.testing.assert_close(ev(obj.logit(3)), logits[:, 3], **TOL)
    # tokens="all" on a map is every position, as "patches"
    torch.testing.assert_close(ev(obj.channel("act1", 4, tokens="all")), a1[:, 4].mean((1, 2)), **TOL)


def test_cosine_direction_is_dot_times_clamped_cosine_averaged():
    """direction(cosine=True) = mean over positions of <a, v> * max(cos(a, v), 0) (MACO's SAE objective).

    v has negative entries so that some positions are anti-aligned: the clamp must zero them. Without
    the clamp an anti-aligned position would add <a, v> * cos = <a, v>^2 / (|a| |v|) > 0, so the score
    would differ (checked below).
    """
    model, x = tiny_cnn(), images()
    a2 = model.activations(x, "act2")["act2"]  # tanh outputs: signed, so cosines of both signs occur
    v = torch.tensor([1.0, -2.0, 0.5, 0.0, 1.5])
    dot = torch.einsum("nchw,c->nhw", a2, v)
    cos = dot / (a2.norm(dim=1) * v.norm())
    assert (cos < 0).any() and (cos > 0).any()  # both signs present: the clamp matters here
    expected = (dot * cos.clamp_min(0)).mean((1, 2))
    got = obj.evaluate(model, obj.direction("act2", v, cosine=True), x)
    torch.testing.assert_close(got, expected, **TOL)
    assert not torch.allclose(got, (dot * cos).mean((1, 2)), atol=1e-4)
    # scale invariance of the direction: 3 v gives 3 times the score (the cosine does not change)
    torch.testing.assert_close(
        obj.evaluate(model, obj.direction("act2", 3 * v, cosine=True), x), 3 * got, **TOL
    )


def test_composition_is_the_linear_combination_and_names_say_it():
    model, x = tiny_cnn(), images()
    c, n, lg = obj.channel("act1", 1), obj.neuron("act2", 0), obj.logit(2)
    vc, vn, vl = (obj.evaluate(model, o, x) for o in (c, n, lg))
    combo = c + 2 * n - 0.5 * lg
    torch.testing.assert_close(obj.evaluate(model, combo, x), vc + 2 * vn - 0.5 * vl, **TOL)
    torch.testing.assert_close(obj.evaluate(model, -c, x), -vc, **TOL)
    torch.testing.assert_close(obj.evaluate(model, c * 3, x), 3 * vc, **TOL)
    assert combo.layers == ("act1", "act2") and combo.needs_logits
    assert not (c + n).needs_logits
    assert c.name == "channel(act1, 1)"
    assert n.name == "neuron(act2, 0, centre)"
    assert obj.neuron("act2", 0, (1, 2)).name == "neuron(act2, 0, 1, 2)"
    assert lg.name == "logit(2)" and obj.layer_l2("act1").name == "layer_l2(act1)"
    assert obj.direction("act2", torch.ones(5), cosine=True).name == "direction(act2, cosine)"
    assert obj.direction("act2", torch.ones(5), name="atom 7").name == "atom 7"
    assert combo.name == "channel(act1, 1) + 2 * (neuron(act2, 0, centre)) - 0.5 * (logit(2))"
    with pytest.raises(TypeError):
        c + 1.0  # noqa: B018 - adding a number is not a linear combination of objectives
    with pytest.raises(TypeError):
        c * c  # noqa: B018


# -- values on ViT tokens ---------------------------------------------------------------------------
@pytest.mark.parametrize("declare_prefix", [False, True])
def test_token_objectives_read_cls_patches_or_all(declare_prefix):
    """Tokens (N, 17, C): "cls" is token 0, "patches" tokens 1..16 (a 4 x 4 grid), "all" all 17; a
    neuron at (i, j) is token 1 + 4 i + j. The prefix count is declared (timm) or inferred."""
    model, x = tiny_vit(declare_prefix=declare_prefix), images()
    t = model.activations(x, "blocks.1")["blocks.1"]  # (3, 17, 6)
    assert t.shape == (3, 17, 6)
    v = torch.tensor([1.0, -1.0, 0.5, 2.0, 0.0, -0.3])
    ev = lambda o: obj.evaluate(model, o, x)  # noqa: E731
    torch.testing.assert_close(ev(obj.channel("blocks.1", 2, tokens="cls")), t[:, 0, 2], **TOL)
    torch.testing.assert_close(ev(obj.channel("blocks.1", 2)), t[:, 1:, 2].mean(1), **TOL)
    torch.testing.assert_close(ev(obj.channel("blocks.1", 2, tokens="all")), t[:, :, 2].mean(1), **TOL)
    torch.testing.assert_close(ev(obj.layer_l2("blocks.1", tokens="cls")), t[:, 0].square().mean(1), **TOL)
    torch.testing.assert_close(ev(obj.layer_l2("blocks.1")), t[:, 1:].square().mean((1, 2)), **TOL)
    torch.testing.assert_close(ev(obj.direction("blocks.1", v)), (t[:, 1:] @ v).mean(1), **TOL)
    torch.testing.assert_close(ev(obj.direction("blocks.1", v, tokens="cls")), t[:, 0] @ v, **TOL)
    torch.testing.assert_close(ev(obj.neuron("blocks.1", 5)), t[:, 1 + 4 * 2 + 2, 5], **TOL)  # centre (2, 2)
    torch.testing.assert_close(ev(obj.neuron("blocks.1", 5, (3, 1))), t[:, 1 + 4 * 3 + 1, 5], **TOL)
    torch.testing.assert_close(ev(obj.logit(1)), model(x)[:, 1], **TOL)


def test_vit_shapes_cls_and_centre_neuron():
    """The zoo ViT: 64 px, 8 x 8 patch tokens + CLS (65 tokens) of width 64; centre neuron = (4, 4)."""
    from workbench.models import load_model

    model = load_model("zoo:vit_shapes")
    x = images(2, 64)
    t = model.activations(x, "blocks.3")["blocks.3"]
    assert t.shape == (2, 65, 64)
    ev = lambda o: obj.evaluate(model, o, x)  # noqa: E731
    torch.testing.assert_close(ev(obj.channel("blocks.3", 7, tokens="cls")), t[:, 0, 7], **TOL)
    torch.testing.assert_close(ev(obj.channel("blocks.3", 7)), t[:, 1:, 7].mean(1), **TOL)
    torch.testing.assert_close(ev(obj.neuron("blocks.3", 7)), t[:, 1 + 8 * 4 + 4, 7], **TOL)
    torch.testing.assert_close(ev(obj.logit(2)), model(x)[:, 2], **TOL)


# -- hooks and early stop -----------------------------------------------------------------------------
def test_hooks_are_removed_after_a_call_and_after_an_error():
    model, x = tiny_cnn(tail=Boom()), images()
    before = hook_count(model)
    obj.evaluate(model, obj.channel("act1", 0) + obj.neuron("act2", 1), x)
    assert hook_count(model) == before
    with pytest.raises(RuntimeError, match="Boom ran"):  # an error inside the forward pass
        obj.evaluate(model, obj.channel("act1", 0) + obj.logit(0), x)
    assert hook_count(model) == before
    with pytest.raises(ValueError, match="out of range"):  # an error in the score, after the pass
        obj.evaluate(model, obj.channel("act1", 99), x)
    assert hook_count(model) == before


def test_forward_stops_after_the_last_hooked_layer_unless_logits_are_read():
    """``tail`` raises when called and sits after act2: objectives on act1/act2 never reach it, a logit
    objective must (and then fails with Boom's error, which proves the check can fail)."""
    model, x = tiny_cnn(tail=Boom()), images()
    values = obj.evaluate(model, obj.channel("act1", 0) + obj.layer_l2("act2"), x)
    assert values.shape == (3,) and torch.isfinite(values).all()
    with pytest.raises(RuntimeError, match="Boom ran"):
        obj.evaluate(model, obj.logit(0), x)


def test_evaluate_is_differentiable_with_respect_to_the_images():
    model = tiny_cnn()
    x = images().requires_grad_(True)
    obj.evaluate(model, obj.channel("act2", 1), x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


# -- errors -------------------------------------------------------------------------------------------
def test_clear_errors():
    cnn, vit, x = tiny_cnn(), tiny_vit(), images()
    with pytest.raises(ValueError, match="out of range for layer 'act2', which has 5 channels"):
        obj.evaluate(cnn, obj.channel("act2", 5), x)
    with pytest.raises(ValueError, match="out of range for a model with 4 classes"):
        obj.evaluate(cnn, obj.logit(4), x)
    with pytest.raises(KeyError, match=r"unknown layer 'conv3'.*closest valid names: \['conv2', 'conv1'"):
        obj.evaluate(cnn, obj.channel("conv3", 0), x)
    with pytest.raises(ValueError, match="has 4 entries but layer 'act2' has 5 channels"):
        obj.evaluate(cnn, obj.direction("act2", torch.ones(4)), x)
    with pytest.raises(ValueError, match="finite and non-zero"):
        obj.direction("act2", torch.zeros(5))
    with pytest.raises(ValueError, match="float vector"):
        obj.direction("act2", torch.ones(5, 2))
    with pytest.raises(ValueError, match="tokens='cls'"):  # a CNN map has no CLS token
        obj.evaluate(cnn, obj.channel("act2", 0, tokens="cls"), x)
    with pytest.raises(ValueError, match="tokens: expected one of"):
        obj.channel("act2", 0, tokens="first")
    with pytest.raises(ValueError, match=r"\(8, 0\) is outside the 8 x 8 grid"):
        obj.evaluate(cnn, obj.neuron("act2", 0, position=(8, 0)), x)
    with pytest.raises(ValueError, match=r"\(0, 4\) is outside the 4 x 4 grid"):
        obj.evaluate(vit, obj.neuron("blocks.1", 0, position=(0, 4)), x)
    with pytest.raises(ValueError, match="position"):
        obj.neuron("act2", 0, position=(-1, 0))
    with pytest.raises(ValueError, match="expected an Objective"):
        obj.evaluate(cnn, "channel(act2, 0)", x)
    with pytest.raises(ValueError, match="c: expected an integer >= 0"):
        obj.channel("act2", -1)
    with pytest.raises(ValueError, match="pixel values in"):  # images outside [0, 1]
        obj.evaluate(cnn, obj.channel("act2", 0), 2 * x)
