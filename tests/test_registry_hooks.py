"""The shared Registry (_core) and the one hook helper (models.hooks)."""

import pytest
import torch
from torch import nn

from workbench._core.registry import Registry
from workbench.models import Model
from workbench.models.hooks import forward_hooks, network, resolve_layer
from workbench.models.scoring import predict


def test_registry_register_get_and_closest_names():
    reg = Registry("sampler")

    @reg.register("uniform", paper="i.i.d.")
    def uniform():
        return 1

    reg.register("sobol", lambda: 2, paper="Sobol 1967")
    assert reg.get("uniform") is uniform and reg["sobol"]() == 2
    assert reg.names() == ["sobol", "uniform"] and "sobol" in reg and len(reg) == 2
    entry = reg.entry("uniform")
    assert entry.paper == "i.i.d." and entry.module == __name__
    with pytest.raises(KeyError, match=r"unknown sampler 'unifrom'; closest: \['uniform'\]"):
        reg.get("unifrom")
    with pytest.raises(ValueError, match="already registered"):
        reg.register("uniform", uniform)
    assert "uniform" in reg.table() and "i.i.d." in reg.table()


def test_forward_hooks_capture_replace_and_always_remove():
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    seen = {}
    x = torch.randn(5, 3)
    with forward_hooks(net, ["0", "2"], lambda name, out: seen.setdefault(name, out)):
        net(x)
    assert set(seen) == {"0", "2"} and seen["2"].shape == (5, 2)
    # a returned tensor replaces the output
    with forward_hooks(net, ["2"], lambda name, out: torch.zeros_like(out)):
        assert bool(net(x).eq(0).all())
    # input hooks see the first positional input
    with forward_hooks(net, ["2"], lambda name, inp: seen.__setitem__("in", inp), on_input=True):
        net(x)
    assert seen["in"].shape == (5, 4)

    def boom(name, out):
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError), forward_hooks(net, ["0"], boom):
        net(x)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())


def test_network_resolve_layer_and_predict():
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    model = Model(net, input_size=(3, 2, 2))
    assert network(model) is net and network(net) is net
    with pytest.raises(ValueError, match="workbench Model or an nn.Module"):
        network(lambda x: x)
    assert resolve_layer(net, net[1]) == "1"
    with pytest.raises(KeyError, match="closest valid names"):
        resolve_layer(net, "11")
    net.train()
    x = torch.rand(7, 3, 2, 2)
    labels, conf = predict(model, x, batch_size=3)
    probs = model(x).softmax(1)
    assert torch.equal(labels, probs.argmax(1)) and torch.allclose(conf, probs.max(1).values)
    assert net.training  # the caller's mode is restored
    # NumPy images give the same predictions (float64 -> float32 at the boundary)
    np_labels, np_conf = predict(model, x.double().numpy(), batch_size=3)
    assert torch.equal(np_labels, labels) and torch.allclose(np_conf, conf)


def test_forward_hooks_can_skip_non_tensor_outputs():
    class Pair(nn.Module):
        def forward(self, x):
            return x, x

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.pair, self.lin = Pair(), nn.Linear(3, 2)

        def forward(self, x):
            return self.lin(self.pair(x)[0])

    net, seen = Net(), {}
    with (
        pytest.raises(ValueError, match="returns tuple, not a tensor"),
        forward_hooks(net, ["pair"], seen.setdefault),
    ):
        net(torch.randn(2, 3))
    with forward_hooks(net, ["pair", "lin"], seen.setdefault, skip_non_tensors=True):
        net(torch.randn(2, 3))
    assert set(seen) == {"lin"}


def test_metrics_zoo_and_baselines_are_registries_with_papers():
    from workbench.metrics import BASELINES, METRICS, deletion, mufidelity
    from workbench.models import ZOO

    for registry in (METRICS, ZOO, BASELINES):
        assert isinstance(registry, Registry)
        assert all(entry.paper for entry in registry.entries()), registry.kind
    assert METRICS.get("deletion") is deletion and METRICS["mufidelity"] is mufidelity
    assert METRICS.entry("mufidelity").module == "workbench.metrics.mufidelity_correlation"
    assert {"insertion", "mask_auc", "mege_reco", "average_stability", "model_randomization"} <= set(METRICS)
    with pytest.raises(KeyError, match=r"closest: \['mask_auc'"):
        METRICS.get("mask_au")
    assert ZOO.names() == sorted(
        [
            "resnet_shapes",
            "resnet_textures",
            "resnet_textures_twin",
            "resnet_shapes_shortcut",
            "resnet_shape_color",
            "vit_shapes",
        ]
    )
    assert "Xiao" in ZOO.entry("vit_shapes").paper


def test_every_registry_is_one_registry_and_names_its_papers():
    """Every named family (issue 11: methods, baselines, samplers, estimators, perturbations, zoo, SAEs,
    metrics) is a _core Registry, and every method, metric, baseline and SAE says which paper it is from,
    so ``REGISTRY.table()`` answers "where is the method of paper X"."""
    from workbench.attribution.estimators import BANDWIDTHS, ESTIMATORS
    from workbench.attribution.perturbations import PERTURBATIONS
    from workbench.attribution.registry import METHODS
    from workbench.attribution.sampling import BINARY_SAMPLERS, SAMPLERS
    from workbench.concepts import CONCEPT_IMPORTANCE_METHODS, FACTORIZATIONS
    from workbench.featviz import PARAMETERIZATIONS, SPECTRA
    from workbench.metrics import METRICS
    from workbench.metrics.baselines import BASELINES
    from workbench.models.zoo import ZOO
    from workbench.sae import SAES

    families = [METHODS, SAMPLERS, BINARY_SAMPLERS, ESTIMATORS, BANDWIDTHS, PERTURBATIONS, METRICS, BASELINES]
    families += [ZOO, SAES, FACTORIZATIONS, CONCEPT_IMPORTANCE_METHODS, PARAMETERIZATIONS, SPECTRA]
    for registry in families:
        assert isinstance(registry, Registry) and len(registry) > 0, registry
    for registry in (
        METHODS,
        METRICS,
        BASELINES,
        SAES,
        FACTORIZATIONS,
        CONCEPT_IMPORTANCE_METHODS,
        PARAMETERIZATIONS,
        SPECTRA,
    ):
        missing = [e.name for e in registry.entries() if not e.paper]
        assert not missing, f"{registry.kind}: no paper for {missing}"
