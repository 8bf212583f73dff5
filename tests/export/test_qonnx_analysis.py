import pytest
from qonnx.analysis.inference_cost import inference_cost as qonnx_inference_cost
from qonnx.core.modelwrapper import ModelWrapper

from limuse_export.qonnx_analysis import IndexedModelWrapper, inference_cost


@pytest.fixture(scope="module")
def tiny_qonnx(micro_report):
    import onnx
    return onnx.load(str(micro_report[1] / "micro.qonnx.onnx"))


def test_inference_cost_equals_qonnx_on_its_own_wrapper(tiny_qonnx):
    ours = inference_cost(tiny_qonnx)
    theirs = ModelWrapper(tiny_qonnx).analysis(lambda m: qonnx_inference_cost(m, False, True))
    assert ours == theirs
    assert any(k.startswith("op_mac") and v > 0 for k, v in ours["total_cost"].items()), ours["total_cost"]


def test_lookups_match_qonnx_for_every_tensor(tiny_qonnx):
    ours, theirs = IndexedModelWrapper(tiny_qonnx), ModelWrapper(tiny_qonnx)
    names = {t for n in tiny_qonnx.graph.node for t in [*n.input, *n.output] if t}
    for name in sorted(names)[:400]:
        assert ours.get_tensor_shape(name) == theirs.get_tensor_shape(name), name
        assert ours.get_tensor_valueinfo(name) == theirs.get_tensor_valueinfo(name), name


def test_a_duplicated_value_info_is_refused(tiny_qonnx):
    import copy
    broken = copy.deepcopy(tiny_qonnx)
    broken.graph.value_info.append(copy.deepcopy(broken.graph.value_info[0]))
    with pytest.raises(ValueError, match="two ValueInfoProto named"):
        IndexedModelWrapper(broken)


def test_initializer_value_infos_added_as_qonnx_adds_them(tiny_qonnx):
    import copy
    ours, theirs = copy.deepcopy(tiny_qonnx), copy.deepcopy(tiny_qonnx)
    del ours.graph.value_info[:], theirs.graph.value_info[:]  # initializers and activations without shapes
    IndexedModelWrapper(ours), ModelWrapper(theirs)
    assert ours.SerializeToString() == theirs.SerializeToString()
