"""Split a network into g (input -> activation) and h (activation -> output) at a module boundary.

The network is traced once with torch.fx. A module's output is a *valid split point* when it is the
only value computed before it that is still needed after it: then h can start from that single
tensor (a skip connection that jumps over the cut, or a later use of the input, makes the cut
invalid). This is exact for any fx-traceable network (timm, torchvision, plain modules), not a
per-architecture list. Tracing follows the module's current control flow, so graphs are traced in
eval mode and are meant for analysis.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import torch.fx as fx
from torch import nn

from workbench._core.devices import eval_mode

# Modules that are split points in form only: cutting after them is never useful.
_TRIVIAL = (nn.Identity, nn.Dropout, nn.Flatten)


def _tracer() -> fx.Tracer:
    """A tracer that honours timm's list of untraceable modules and functions when timm is present."""
    leaves: tuple[type, ...] = ()
    wrapped: tuple = ()
    try:
        from timm.models._features_fx import get_notrace_functions, get_notrace_modules

        leaves, wrapped = tuple(get_notrace_modules()), tuple(get_notrace_functions())
    except ImportError:  # timm is optional for plain modules
        pass

    class _Tracer(fx.Tracer):
        def __init__(self):
            super().__init__(autowrap_functions=wrapped)

        def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
            return isinstance(m, leaves) or super().is_leaf_module(m, qualname)

    return _Tracer()


@dataclass
class SplitGraph:
    """The traced graph of a network and the split points found in it."""

    net: nn.Module
    graph: fx.Graph
    nodes: list[fx.Node]
    # module qualname -> index of the node holding that module's output, for valid cuts only
    cut_index: dict[str, int] = field(default_factory=dict)

    @classmethod
    def trace(cls, net: nn.Module) -> SplitGraph:
        with eval_mode(net):
            concrete = {
                name: p.default
                for i, (name, p) in enumerate(inspect.signature(net.forward).parameters.items())
                if i > 0 and p.default is not inspect.Parameter.empty
            }
            graph = _tracer().trace(net, concrete_args=concrete or None)
        nodes = list(graph.nodes)
        return cls(net=net, graph=graph, nodes=nodes, cut_index=_valid_cuts(net, nodes))

    def layers(self) -> list[str]:
        """Split points, one name per distinct cut (the outermost module that ends there), in order."""
        by_node: dict[int, str] = {}
        for name, idx in self.cut_index.items():
            module = self.net.get_submodule(name)
            if isinstance(module, _TRIVIAL):
                continue
            best = by_node.get(idx)
            if best is None or name.count(".") < best.count("."):
                by_node[idx] = name
        return [by_node[i] for i in sorted(by_node)]

    def split(self, layer: str) -> tuple[fx.GraphModule, fx.GraphModule]:
        """(g, h) GraphModules sharing the network's parameters; h(g(x)) == net(x)."""
        idx = self.cut_index[layer]
        cut = self.nodes[idx]
        g_graph, h_graph = fx.Graph(), fx.Graph()
        g_env: dict[fx.Node, fx.Node] = {}
        for node in self.nodes[: idx + 1]:
            g_env[node] = g_graph.node_copy(node, lambda n: g_env[n])
        g_graph.output(g_env[cut])

        h_input = h_graph.placeholder("activation")
        if any(_is_inplace(self.net, user) for user in cut.users):
            # e.g. ReLU(inplace=True) right after the cut: h must not overwrite the caller's tensor
            h_input = h_graph.call_method("clone", (h_input,))
        h_env: dict[fx.Node, fx.Node] = {cut: h_input}
        for node in self.nodes[idx + 1 :]:
            for dep in node.all_input_nodes:
                if dep not in h_env and dep.op == "get_attr":  # parameters/buffers: re-read, not carried
                    h_env[dep] = h_graph.node_copy(dep, lambda n: h_env[n])
            h_env[node] = h_graph.node_copy(node, lambda n: h_env[n])
        g_mod, h_mod = fx.GraphModule(self.net, g_graph), fx.GraphModule(self.net, h_graph)
        g_mod.train(self.net.training)
        h_mod.train(self.net.training)
        return g_mod, h_mod


def _is_inplace(net: nn.Module, node: fx.Node) -> bool:
    if node.op == "call_module":
        return bool(getattr(net.get_submodule(node.target), "inplace", False))
    if node.op == "call_method" and str(node.target).endswith("_"):
        return True
    return bool(node.kwargs.get("inplace", False))


def _valid_cuts(net: nn.Module, nodes: list[fx.Node]) -> dict[str, int]:
    position = {n: i for i, n in enumerate(nodes)}
    output_pos = len(nodes) - 1
    # A value is live across position i when it was made at or before i and used after i.
    # get_attr values (parameters) can be re-read by h, so they never block a cut.
    last_use = {}
    for n in nodes:
        if n.op in ("get_attr", "output"):
            continue
        last_use[n] = max((position[u] for u in n.users), default=position[n])
    live_delta = [0] * (len(nodes) + 1)
    for n, last in last_use.items():
        if last > position[n]:
            live_delta[position[n]] += 1
            live_delta[last] -= 1
    live, live_count = 0, []
    for d in live_delta[:-1]:
        live += d
        live_count.append(live)

    # The output node of a module: the last node traced inside it.
    module_end: dict[str, int] = {}
    for n in nodes:
        for path in n.meta.get("nn_module_stack", {}).values():
            qualname = path[0] if isinstance(path, tuple) else path
            if qualname:
                module_end[qualname] = position[n]
    names = {name for name, _ in net.named_modules() if name}
    cuts = {}
    for name, idx in module_end.items():
        node = nodes[idx]
        if name not in names or node.op == "output":
            continue
        only_live_is_self = live_count[idx] == 1 and last_use.get(node, idx) > idx
        feeds_only_output = all(u.op == "output" for u in node.users)
        if only_live_is_self and not feeds_only_output and position[node] < output_pos:
            cuts[name] = idx
    return cuts
