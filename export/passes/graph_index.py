"""One index of a graph for the rewrites: who produces a tensor, who consumes it, which tensors are constants.

A rewrite builds it once from the graph it edits, instead of each rewrite rebuilding its own maps (and
`add_initializer` scanning the whole graph for a free name on every call).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper


class GraphIndex:
    def __init__(self, graph: onnx.GraphProto):
        self.graph = graph
        self.initializers = {init.name: init for init in graph.initializer}
        self.producers = {out: node for node in graph.node for out in node.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}  # one entry per input slot that reads the tensor
        for node in graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self._taken = set(self.initializers) | set(self.producers)

    def made_by(self, name: str, op_type: str) -> "onnx.NodeProto | None":
        """The node of type `op_type` that produces `name`, else None."""
        node = self.producers.get(name)
        return node if node is not None and node.op_type == op_type else None

    def only_user(self, name: str, op_type: str) -> "onnx.NodeProto | None":
        """The single consumer of `name` if it has one and it is of type `op_type`, else None."""
        users = self.consumers.get(name, [])
        return users[0] if len(users) == 1 and users[0].op_type == op_type else None

    def uses(self, name: str) -> int:
        return len(self.consumers.get(name, []))

    def constant(self, name: str) -> "np.ndarray | None":
        """The value of `name` if it is a constant (an initializer, a Constant node, an Identity of one:
        the TorchScript exporter deduplicates equal initializers into Identity chains; or a Clip of
        constants: Brevitas narrows low-bit weight codes with one), else None."""
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        node = self.producers.get(name)
        if node is None:
            return None
        if node.op_type == "Identity":
            return self.constant(node.input[0])
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            return numpy_helper.to_array(node.attribute[0].t)
        if node.op_type == "Clip":
            names = (list(node.input) + ["", ""])[:3]  # bounds are optional inputs
            value, low, high = (self.constant(i) if i else None for i in names)
            if value is None or any(i and v is None for i, v in zip(names[1:], (low, high))):
                return None  # a bound computed at run time
            return np.clip(value, value.min() if low is None else low, value.max() if high is None else high)
        return None

    def add_initializer(self, name: str, value: np.ndarray) -> str:
        """Adds `value` to the graph under `name`, suffixed if that is taken; returns the name used."""
        unique, suffix = name, 0
        while unique in self._taken:
            suffix += 1
            unique = f"{name}_{suffix}"
        self.graph.initializer.append(numpy_helper.from_array(value, unique))
        self._taken.add(unique)
        return unique
