"""A light, immutable view of an ONNX graph: nodes in topological order, constants, inputs, outputs.

The `onnx` package is used only to parse the protobuf (and its numpy_helper to decode tensors); the
engine itself executes with numpy. Parsing protobuf by hand would duplicate a well-kept library.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Node:
    op: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict = field(default_factory=dict)
    doc: str = ""  # the node's doc_string (limuse-export records the torch module there)


@dataclass(frozen=True)
class Graph:
    nodes: tuple[Node, ...]
    constants: dict  # name -> np.ndarray or QTensor
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    input_shapes: dict  # name -> tuple of int or None (symbolic)
    sources: dict = field(default_factory=dict)  # folded constant -> initializer it was computed from

    def consumers(self) -> dict[str, list[Node]]:
        users: dict[str, list[Node]] = {}
        for node in self.nodes:
            for name in node.inputs:
                users.setdefault(name, []).append(node)
        for name in self.outputs:
            users.setdefault(name, []).append(None)  # a graph output counts as a use
        return users


def _attribute_value(attr):
    from onnx import helper, numpy_helper
    value = helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode()
    if hasattr(value, "data_type") and hasattr(value, "dims"):  # TensorProto
        return numpy_helper.to_array(value)
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return [v.decode() for v in value]
    return value


def load_graph(path: "str | Path") -> Graph:
    """Read an ONNX/QONNX file into a Graph; a clear GoldenError if it is not one."""
    import onnx
    from onnx import numpy_helper

    from limuse_runtime.golden.fixed_point import GoldenError
    from limuse_runtime.contract import VOICEPRINT
    from limuse_runtime.voiceprint import VOICEPRINT_VERSION_KEY, check_voiceprint_version
    path = Path(path)
    if not path.is_file():
        raise GoldenError(f"model: no such file {str(path)!r}; expected a QONNX .onnx exported by limuse-export")
    try:
        proto = onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError and friends for foreign files
        raise GoldenError(f"model: cannot parse {str(path)!r} as ONNX ({type(exc).__name__}); "
                          f"expected a QONNX .onnx file") from None
    g = proto.graph
    constants = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    nodes = []
    for i, n in enumerate(g.node):
        attrs = {a.name: _attribute_value(a) for a in n.attribute}
        if n.op_type == "Constant":
            constants[n.output[0]] = _constant_value(attrs)
            continue
        nodes.append(Node(n.op_type, n.name or f"{n.op_type}_{i}", tuple(n.input), tuple(n.output), attrs,
                          n.doc_string))
    # Brevitas keeps initializers as graph inputs by default; only the others are real inputs.
    inputs = tuple(i.name for i in g.input if i.name not in constants)
    shapes = {i.name: tuple(d.dim_value if d.HasField("dim_value") else None
                            for d in i.type.tensor_type.shape.dim) for i in g.input if i.name in inputs}
    if not inputs or not g.output:
        raise GoldenError(f"model: {str(path)!r} has no graph inputs or outputs; expected an exported LiMuSE")
    if VOICEPRINT in inputs:
        check_voiceprint_version({p.key: p.value for p in proto.metadata_props}.get(VOICEPRINT_VERSION_KEY),
                                 repr(str(path)))
    return Graph(tuple(nodes), constants, inputs, tuple(o.name for o in g.output), shapes)


def _constant_value(attrs: dict) -> np.ndarray:
    if "value" in attrs:
        return np.asarray(attrs["value"])
    for key, dtype in (("value_float", np.float32), ("value_int", np.int64),
                       ("value_floats", np.float32), ("value_ints", np.int64)):
        if key in attrs:
            return np.asarray(attrs[key], dtype=dtype)
    raise ValueError(f"Constant node with unsupported attributes {sorted(attrs)}")
