"""The three ONNX exports of one LiMuSE model, each returning the exporter's onnx.ModelProto; the graph
transformations that follow each format's export are listed in limuse_export.passes (nothing is written
to the output folder here; see save.py).

- float: torch's TorchScript exporter.
- qcdq (the "int8" file): Brevitas QuantizeLinear / Clip / DequantizeLinear, TorchScript exporter
  (dynamo=False: the dynamo path refuses Int32Bias and drifts from Brevitas by ~1e-2), initializers not
  graph inputs (otherwise onnxruntime neither constant-folds nor fuses).
- qonnx: Brevitas Quant nodes, TorchScript exporter, each node tagged with its torch module.
  qonnx's shape inference turns a symbolic axis into 0, so the QONNX file is exported (and cleaned) at
  the fixed shape of its example inputs; the float and int8 files keep batch, samples and frames dynamic.

Opset 17 throughout.

Export time (limuse_k32, profiled with cProfile on the 2-core machine): of 263 s for the int8 file,
146 s went to torch's `_jit_pass_lint`, a consistency check of the TorchScript graph that the exporter
runs ten times and that grows quadratically with the graph (tens of thousands of traced nodes), and 63 s
to the onnxoptimizer passes Brevitas runs afterwards (Constant nodes to initializers, unused
initializers), quadratic too. `_exporting` skips the lint (onnx.checker still checks every file written,
save.py) and the Brevitas managers here skip onnxoptimizer; `constants_to_initializers` does its job
in one pass. The dynamic-shape files are traced on a short example input (the graph does not depend on
its length; parity is measured on the full demo); what remains is the tracer itself.
"""
from __future__ import annotations

import contextlib
import copy
import tempfile
import warnings
from pathlib import Path
from unittest import mock

import onnx
import torch
from onnx import numpy_helper

from limuse_export.prepare import OnnxInterface
from limuse_runtime.contract import DYNAMIC_AXES, OUTPUT_NAME

OPSET = 17


def _kwargs(module: OnnxInterface, dynamic: bool) -> dict:
    names = module.input_names
    axes = {k: v for k, v in DYNAMIC_AXES.items() if k in names or k == OUTPUT_NAME}
    return dict(input_names=list(names), output_names=[OUTPUT_NAME], opset_version=OPSET, dynamo=False,
                dynamic_axes=axes if dynamic else None)


def _args(module: OnnxInterface, inputs: dict[str, torch.Tensor]) -> tuple:
    missing = [n for n in module.input_names if n not in inputs]
    if missing:
        raise ValueError(f"example inputs: missing {missing}; the model takes {module.input_names}")
    return tuple(inputs[n] for n in module.input_names)


@contextlib.contextmanager
def _exporting():
    """The TorchScript exporter without its repeated graph lint (see the module docstring)."""
    with warnings.catch_warnings(), mock.patch.object(torch._C, "_jit_pass_lint", lambda graph: None):
        # The model's input checks are Python conditionals on shapes; the tracer warns about each,
        # and they hold for every input the ONNX contract allows.
        warnings.simplefilter("ignore")
        yield


def _via_file(export, module, inputs, **kwargs) -> onnx.ModelProto:
    with tempfile.TemporaryDirectory(prefix="limuse_export_") as tmp, torch.no_grad():
        path = Path(tmp) / "model.onnx"
        try:
            with _exporting():
                export(module, _args(module, inputs), str(path), **kwargs)
        finally:
            _remove_export_handlers(module)
        return onnx.load(str(path))


def _remove_export_handlers(module: torch.nn.Module) -> None:
    """Brevitas attaches its manager's export handler to each quant layer or proxy and leaves it there; the
    next export of the same layers, to another format, would reuse it (prepare.exportable shares them)."""
    for m in module.modules():
        if getattr(m, "export_handler", None) is not None:
            m.export_handler = None


def constants_to_initializers(model: onnx.ModelProto) -> onnx.ModelProto:
    """Constant nodes become initializers of the same name and unused initializers go: what Brevitas
    asks onnxoptimizer for (extract_constant_to_initializer, eliminate_unused_initializer), in one pass."""
    model = copy.deepcopy(model)
    graph = model.graph
    kept, constants = [], []
    for node in graph.node:
        value = next((a for a in node.attribute if a.name == "value"), None) if node.op_type == "Constant" else None
        if value is None:
            kept.append(node)
            continue
        tensor = copy.deepcopy(value.t)
        tensor.name = node.output[0]
        constants.append(tensor)
    used = {name for node in kept for name in node.input} | {o.name for o in graph.output}
    initializers = [i for i in list(graph.initializer) + constants if i.name in used]
    del graph.node[:]
    graph.node.extend(kept)
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    return model


def _brevitas_manager(base):
    """A Brevitas export manager without its onnxoptimizer step (constants_to_initializers replaces it)."""
    return type(f"Lean{base.__name__}", (base,), {"run_onnx_passes": False})


def export_float(module: OnnxInterface, inputs: dict[str, torch.Tensor]) -> onnx.ModelProto:
    if module.model.recipe.quantized:
        raise ValueError(f"float export: the model uses recipe {module.model.recipe.name!r}; expected 'float'")
    return _via_file(torch.onnx.export, module, inputs, **_kwargs(module, dynamic=True))


def export_qcdq(module: OnnxInterface, inputs: dict[str, torch.Tensor]) -> onnx.ModelProto:
    _require_quantized(module, "int8 (QCDQ)")
    from brevitas.export.onnx.standard.qcdq.manager import StdQCDQONNXManager
    manager = _brevitas_manager(StdQCDQONNXManager)

    def export(m, args, path, **kw):
        manager.export(m, args=args, export_path=path, keep_initializers_as_inputs=False, **kw)
    return constants_to_initializers(_via_file(export, module, inputs, **_kwargs(module, dynamic=True)))


def export_qonnx(module: OnnxInterface, inputs: dict[str, torch.Tensor],
                 trace_inputs: "dict[str, torch.Tensor] | None" = None) -> onnx.ModelProto:
    """Quant-node graph at the fixed shape of `inputs`. With `trace_inputs`, the model is traced on those
    (shorter) inputs with dynamic axes and the graph's inputs and output are then given the shapes of
    `inputs`: the same graph (the int8 file relies on the same property) for a fraction of the tracing
    time, which grows with the input length (limuse_k32: most of the main job at 3 s)."""
    _require_quantized(module, "QONNX")
    from brevitas.export.onnx.qonnx.manager import QONNXManager
    manager = _brevitas_manager(QONNXManager)

    def export(m, args, path, **kw):
        manager.export(m, args=args, export_path=path, keep_initializers_as_inputs=False, **kw)
    if trace_inputs is None:
        raw = _via_file(export, module, inputs, **_kwargs(module, dynamic=False))
    else:
        raw = _fix_shapes(_via_file(export, module, trace_inputs, **_kwargs(module, dynamic=True)), module, inputs)
    raw = constants_to_initializers(raw)
    return tag_torch_modules(raw, module.model, scope="model")  # the OnnxInterface's attribute


def _fix_shapes(model: onnx.ModelProto, module: OnnxInterface, inputs: dict[str, torch.Tensor]) -> onnx.ModelProto:
    """Every graph input gets the shape of its example tensor, the output (batch, samples) of the mixture's."""
    model = copy.deepcopy(model)
    shapes = {name: tuple(inputs[name].shape) for name in module.input_names}
    mixture = shapes[module.input_names[0]]
    shapes[OUTPUT_NAME] = (mixture[0], mixture[2])
    for value in list(model.graph.input) + list(model.graph.output):
        if value.name in shapes:
            for dim, size in zip(value.type.tensor_type.shape.dim, shapes[value.name]):
                dim.Clear()
                dim.dim_value = int(size)
    return model


# A node's doc_string "torch module: audio_stage.encoder.layers.0.conv.project" names the torch module it was
# traced in; limuse_runtime.golden (which keeps its own copy of this prefix) names its integer layers so.
TORCH_MODULE_DOC = "torch module: "


def tag_torch_modules(model: onnx.ModelProto, root: torch.nn.Module, scope: str) -> onnx.ModelProto:
    """Each node's torch module, as in root.named_modules(), written into its doc_string. The TorchScript
    exporter names a node after its scope, "/<scope>/audio_stage/encoder/layers.0/conv/project/Gemm" for `root`
    traced as the attribute <scope> of the exported module; the deepest path prefix that names a module is
    kept (Brevitas's export handlers are gone after the export; a module called twice gets a suffixed scope,
    norm_1, that names none). Nodes with no module below the root keep their doc_string. qonnx's cleanup
    renames every node and tensor but edits the nodes in place, so their doc_strings reach the QONNX file."""
    model = copy.deepcopy(model)
    names = {name for name, _ in root.named_modules() if name}
    for node in model.graph.node:
        parts = node.name.split("/")[1:-1]
        if parts[:1] != [scope]:
            continue
        parts = parts[1:]
        while parts and ".".join(parts) not in names:
            parts.pop()
        if parts:
            node.doc_string = TORCH_MODULE_DOC + ".".join(parts)
    return model


EXPORTERS = {"float": export_float, "int8": export_qcdq, "qonnx": export_qonnx}


def _require_quantized(module: OnnxInterface, what: str) -> None:
    if not module.model.recipe.quantized:
        raise ValueError(f"{what} export: the model is float; expected a quantized recipe such as 'w3a8'")
