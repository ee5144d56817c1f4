"""A torch.fx pass for the fused copy of large CNNs on the CPU: each convolution, with the ReLU or the
residual addition + ReLU that follows it, becomes one call of oneDNN's fused convolution.

`torch.ops.mkldnn._convolution_pointwise` is the operator inductor's CPU freezing pass emits for the same
patterns (PyTorch's supported successor of TorchScript's frozen oneDNN graphs); its weights are reordered
once, for the shapes of an example batch, into oneDNN's preferred blocked layout.
"""

from __future__ import annotations

import operator

import torch
from torch import nn
from torch.fx import GraphModule, Node

_RELUS = (torch.relu, torch.relu_, torch.nn.functional.relu)
_ADDS = (operator.add, operator.iadd, torch.add)


def available() -> bool:
    """oneDNN's fused convolution exists in this build (CPU builds with oneDNN)."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise") and \
        hasattr(torch.ops.mkldnn, "_reorder_convolution_weight")


def fuse_conv_pointwise(graph_module: GraphModule, example: torch.Tensor) -> int:
    """Rewrite `graph_module` in place (its BatchNorms already folded): every zero-padded Conv2d becomes
    `_convolution_pointwise` with its ReLU ("relu"), or with the addition of another tensor and the ReLU
    after it ("add" then "relu", a residual block's end), or alone ("none"); weights prepacked for the
    shapes `example` (N,C,H,W) gives each convolution. Returns how many convolutions were rewritten."""
    from torch.fx.passes.shape_prop import ShapeProp

    ShapeProp(graph_module).propagate(example)
    modules = dict(graph_module.named_modules())
    graph = graph_module.graph
    shapes = {n.target: list(n.args[0].meta["tensor_meta"].shape) for n in graph.nodes
              if n.op == "call_module" and isinstance(n.args[0], Node) and "tensor_meta" in n.args[0].meta}

    def is_relu(n: Node) -> bool:
        return (n.op == "call_module" and type(modules.get(n.target)) is nn.ReLU) or \
            (n.op == "call_function" and n.target in _RELUS)

    rewritten = 0
    for node in list(graph.nodes):
        conv = modules.get(node.target) if node.op == "call_module" else None
        if type(conv) is not nn.Conv2d or conv.padding_mode != "zeros" or isinstance(conv.padding, str) \
                or node.target not in shapes or len(node.args) != 1 or node.kwargs:
            continue
        geometry = (list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)
        name = node.target.replace(".", "_")
        graph_module.register_buffer(f"{name}_packed", torch.ops.mkldnn._reorder_convolution_weight(
            conv.weight.detach(), *geometry, shapes[node.target]), persistent=False)
        if conv.bias is not None:
            graph_module.register_buffer(f"{name}_bias", conv.bias.detach(), persistent=False)
        with graph.inserting_before(node):
            weight = graph.get_attr(f"{name}_packed")
            bias = graph.get_attr(f"{name}_bias") if conv.bias is not None else None
        x, users = node.args[0], list(node.users)
        dead, call = [node], None  # the nodes the fused call replaces, the convolution first
        if len(users) == 1 and is_relu(users[0]):
            dead, call = [node, users[0]], (torch.ops.mkldnn._convolution_pointwise.default,
                                            (x, weight, bias, *geometry, "relu", [], ""))
        elif len(users) == 1 and users[0].op == "call_function" and users[0].target in _ADDS \
                and len(users[0].args) == 2 and not users[0].kwargs and len(users[0].users) == 1 \
                and is_relu(next(iter(users[0].users))):
            add = users[0]
            other = add.args[1] if add.args[0] is node else add.args[0]
            if isinstance(other, Node) and other is not node:
                dead, call = [node, add, next(iter(add.users))], (
                    torch.ops.mkldnn._convolution_pointwise.binary,
                    (x, other, weight, bias, *geometry, "add", 1.0, "relu", [], ""))
        if call is None:
            call = (torch.ops.mkldnn._convolution_pointwise.default, (x, weight, bias, *geometry, "none", [], ""))
        with graph.inserting_after(dead[-1]):
            fused = graph.call_function(*call)
        dead[-1].replace_all_uses_with(fused)
        for n in reversed(dead):
            graph.erase_node(n)
        rewritten += 1
    graph.lint()
    graph_module.delete_all_unused_submodules()
    graph_module.recompile()
    return rewritten
