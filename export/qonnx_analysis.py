"""qonnx's analyses on graphs of limuse_k32's size, through a read-only ModelWrapper that finds tensors by
name in a dict built once.

qonnx's ModelWrapper lists every ValueInfoProto of the graph on each get_tensor_shape /
get_tensor_valueinfo call; its inference_cost analysis makes three such calls per input of every
Conv/MatMul node, 49 s on limuse_k32's QONNX graph (5 462 value infos) against under 1 s with the index.
ModelWrapper.__init__ makes the same lookup for every tensor (56 s there). The analysis functions are
qonnx's, unchanged; the graph must change only through this wrapper's lookups while it is in use
(analyses only read it)."""
from __future__ import annotations

import onnx
from onnx import helper
from qonnx.core.modelwrapper import ModelWrapper


class IndexedModelWrapper(ModelWrapper):
    def __init__(self, model: onnx.ModelProto):
        super().__init__(model, fix_missing_initializer_valueinfo=False)
        graph = self._model_proto.graph
        self._value_infos: dict[str, onnx.ValueInfoProto] = {}
        for vi in [*graph.input, *graph.output, *graph.value_info]:
            if vi.name in self._value_infos:
                raise ValueError(f"QONNX graph: two ValueInfoProto named {vi.name!r}; expected one per tensor")
            self._value_infos[vi.name] = vi
        self._initializers = {init.name: init for init in graph.initializer}
        # what ModelWrapper.__init__ does (value infos for initializers that lack one), through the index
        self.check_all_tensor_shapes_specified(fix_missing_init_shape=True)

    def get_tensor_valueinfo(self, tensor_name: str):
        return self._value_infos.get(tensor_name)

    def get_tensor_shape(self, tensor_name: str, fix_missing_init_shape: bool = False):
        vi = self._value_infos.get(tensor_name)
        if vi is not None:
            return [d.dim_value for d in vi.type.tensor_type.shape.dim]
        initializer = self._initializers.get(tensor_name)
        if initializer is None:
            return None
        if fix_missing_init_shape:  # as ModelWrapper.set_tensor_shape does for a tensor with no value info
            vi = helper.make_tensor_value_info(tensor_name, initializer.data_type, list(initializer.dims))
            self._model_proto.graph.value_info.append(vi)
            self._value_infos[tensor_name] = self._model_proto.graph.value_info[-1]
        return list(initializer.dims)


def inference_cost(model: onnx.ModelProto) -> dict:
    """qonnx.analysis.inference_cost (no sparsity discount, with the per-op breakdown)."""
    from qonnx.analysis.inference_cost import inference_cost as cost_analysis
    return IndexedModelWrapper(model).analysis(lambda m: cost_analysis(m, False, True))
