import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from limuse_export.passes.shape_fold import fold_constants


def _graph_with_shape_chain():
    """x (2, 3, 8) -> Reshape(x, [Shape(x)[0] * Shape(x)[1], -1]) -> Pad by a computed amount -> Add w.
    Every shape computation is constant at the fixed input shape; a custom Quant node stays."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "i0"], ["d0"], axis=0),
        helper.make_node("Gather", ["s", "i1"], ["d1"], axis=0),
        helper.make_node("Mul", ["d0", "d1"], ["rows"]),
        helper.make_node("Unsqueeze", ["rows", "axes"], ["rows1"]),
        helper.make_node("Concat", ["rows1", "minus1"], ["target_shape"], axis=0),
        helper.make_node("Reshape", ["x", "target_shape"], ["flat"]),
        helper.make_node("Shape", ["flat"], ["fs"], start=1),
        helper.make_node("Sub", ["ten", "fs"], ["extra"]),
        helper.make_node("Concat", ["zeros2", "zero1", "extra"], ["pads"], axis=0),
        helper.make_node("Pad", ["flat", "pads"], ["padded"]),
        helper.make_node("Identity", ["w_raw"], ["w"]),
        helper.make_node("Quant", ["w", "scale", "zp", "bits"], ["wq"], domain="qonnx.custom_op.general",
                         narrow=0, signed=1, rounding_mode="ROUND"),
        helper.make_node("Add", ["padded", "wq"], ["y"]),
    ]
    inits = {"i0": np.array(0), "i1": np.array(1), "axes": np.array([0]), "minus1": np.array([-1]),
             "ten": np.array([10]), "zeros2": np.array([0, 0]), "zero1": np.array([0]),
             "w_raw": np.ones((1, 10), np.float32), "scale": np.array(0.5, np.float32),
             "zp": np.array(0.0, np.float32), "bits": np.array(4.0, np.float32)}
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, (2, 3, 8))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                   helper.make_opsetid("qonnx.custom_op.general", 1)])


def test_shape_chains_fold_to_initializers_and_quant_nodes_stay():
    model = _graph_with_shape_chain()
    folded = fold_constants(model)
    ops = [n.op_type for n in folded.graph.node]
    assert ops == ["Reshape", "Pad", "Quant", "Add"]
    values = {i.name: numpy_helper.to_array(i) for i in folded.graph.initializer}
    np.testing.assert_array_equal(values["target_shape"], [6, -1])
    np.testing.assert_array_equal(values["pads"], [0, 0, 0, 2])
    assert "w_raw" not in values and "w" in values  # unused initializers go


def test_folding_keeps_the_result():
    model = _graph_with_shape_chain()
    x = np.random.default_rng(0).standard_normal((2, 3, 8)).astype(np.float32)

    def run(m):  # the reference evaluator has no Quant: read it as identity for this check
        m = onnx.ModelProto.FromString(m.SerializeToString())
        for node in m.graph.node:
            if node.op_type == "Quant":
                del node.input[1:]
                del node.attribute[:]
                node.op_type, node.domain = "Identity", ""
        return ReferenceEvaluator(m).run(None, {"x": x})[0]

    np.testing.assert_array_equal(run(fold_constants(model)), run(model))


def test_a_graph_with_nothing_to_fold_is_returned_as_is():
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, (1, 4))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, (1, 4))])
    model = helper.make_model(graph)
    assert fold_constants(model) is model
