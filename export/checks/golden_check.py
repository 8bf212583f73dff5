"""The export's check of the QONNX file: the golden engine (limuse_runtime.golden) against Brevitas, code
for code. Every integer layer's input and output codes in the engine's end-to-end run are compared with
the codes Brevitas's quantizer proxies produce on the same input (forward hooks); layers are matched by
their integer weight codes, independently of names. Goal: 0 mismatches (power-of-two recipes; with
`-inorm` the whole graph is integer and the goal holds end to end on 3 s of limuse_k32)."""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch

from limuse_runtime.contract import MIXTURE
from limuse_runtime.golden import GoldenEngine, QTensor, Trace


def _weight_key(codes: np.ndarray) -> tuple:
    return codes.shape, np.ascontiguousarray(codes, dtype=np.int64).tobytes()


def layer_names(engine: GoldenEngine, model) -> dict[str, str]:
    """{engine layer name: Brevitas module name}, matched by integer weight codes (engine linear weights are
    (C_in, C_out))."""
    from limuse_edge.quant import is_quant_layer
    modules: dict = {}
    for name, module in model.named_modules():
        if is_quant_layer(module):
            with torch.no_grad():
                modules.setdefault(_weight_key(module.quant_weight().int().numpy()), []).append(name)
    names = {}
    for layer in engine.layers:
        codes = layer.weight.codes.T if layer.kind == "linear" else layer.weight.codes
        found = modules.get(_weight_key(codes), [])
        if len(found) != 1:
            raise AssertionError(f"engine layer {layer.name}: {len(found)} Brevitas layers have its weight codes "
                                 f"({found}); expected exactly one")
        names[layer.name] = found[0]
    if len(set(names.values())) != len(names):
        raise AssertionError("two engine layers matched the same Brevitas layer")
    return names


@contextlib.contextmanager
def hook_quant_layers(model, make_hook):
    """with hook_quant_layers(model, make_hook): ... -- make_hook(name, key) -> a forward hook (module, args,
    output), registered on the input quantizer (key "in") and the output quantizer (key "out") of every
    quantized layer, `name` as in model.named_modules(); all removed on exit."""
    from limuse_edge.quant import is_quant_layer
    handles = []
    try:
        for name, module in model.named_modules():
            if is_quant_layer(module):
                handles.append(module.input_quant.register_forward_hook(make_hook(name, "in")))
                handles.append(module.output_quant.register_forward_hook(make_hook(name, "out")))
        yield
    finally:
        for h in handles:
            h.remove()


def _codes(output) -> np.ndarray:
    """The integer codes of a quantizer's output as int16: what QuantTensor.int() gives, without its
    validity check and int64 copy (on limuse_k32 at 3 s those cost more than the forward itself). The
    division is exact at power-of-two scales; any other scale is refused by the golden engine anyway."""
    if float(output.bit_width) > 16:
        raise ValueError(f"quantizer output of {float(output.bit_width):g} bits; expected at most 16")
    return torch.round(output.value / output.scale + output.zero_point).to(torch.int16).numpy()


def brevitas_codes(model, inputs: dict) -> tuple[dict, np.ndarray]:
    """{layer name: {"in"|"out": (int codes, exponent)}} from the quantizer proxies, and the waveform."""
    captured = {}

    def hook(name, key):
        def record(module, args, output):
            captured.setdefault(name, {})[key] = (_codes(output), int(np.log2(float(output.scale))))
        return record

    with hook_quant_layers(model, hook), torch.no_grad():
        waveform = model(**inputs).numpy()
    return captured, waveform


def same_layout(codes: np.ndarray, shape: tuple) -> "np.ndarray | None":
    """`codes` in `shape` when only the leading (batch-like) axes differ: a per-frame linear may run on
    (B*T, C) in eager torch and on (B, T, C) in the export; the order of the values is the same. None if
    the channel axis or the size differs."""
    if codes.shape == tuple(shape):
        return codes
    if codes.size != int(np.prod(shape)) or codes.shape[-1] != shape[-1]:
        return None
    return codes.reshape(shape)


def compare_codes(engine: GoldenEngine, inputs: dict, reference: dict, names: dict,
                  teacher_forced: bool = True) -> dict:
    """End-to-end (and, if asked, teacher-forced) code comparison of every integer layer, as counts.
    `reference` is keyed by Brevitas module name, `names` maps engine layer names to those (layer_names)."""
    trace = Trace()
    outputs = engine.run(inputs, trace)
    stats = {"layers": len(trace.records), "tensors": 0, "values": 0, "mismatches": 0,
             "teacher_forced_values": 0, "teacher_forced_mismatches": 0, "exponent_mismatches": 0,
             "max_accumulator": trace.max_accumulator, "mismatched_layers": []}
    for record in trace.records:
        ref = reference[names[record.layer.name]]
        layer_mismatch = 0
        for key, got in (("in", record.input), ("out", record.output)):
            codes, exponent = ref[key]
            stats["tensors"] += 1
            stats["values"] += codes.size
            stats["exponent_mismatches"] += int(got.exponent != exponent)
            got_codes = same_layout(got.codes, codes.shape)
            layer_mismatch += int(np.count_nonzero(got_codes != codes)) if got_codes is not None else codes.size
        stats["mismatches"] += layer_mismatch
        if layer_mismatch:
            stats["mismatched_layers"].append(names[record.layer.name])
        if teacher_forced:
            forced_input = same_layout(ref["in"][0], record.input.codes.shape)
            forced, _, _ = record.layer.forward(QTensor(forced_input, ref["in"][1], 8))
            stats["teacher_forced_values"] += forced.codes.size
            stats["teacher_forced_mismatches"] += int(np.count_nonzero(
                same_layout(forced.codes, ref["out"][0].shape) != ref["out"][0]))
    stats["waveform"] = next(iter(outputs.values()))
    return stats


def golden_vs_brevitas(model, qonnx_path: "str | Path", inputs: dict[str, np.ndarray],
                       brevitas: "tuple[dict, np.ndarray] | None" = None) -> dict:
    """The report's golden-engine parity on `inputs` (the QONNX file's static shape); `brevitas`: what
    brevitas_codes(model, inputs) gave, if it ran already."""
    engine = GoldenEngine(qonnx_path)
    if brevitas is None:
        brevitas = brevitas_codes(model, {k: torch.from_numpy(np.ascontiguousarray(v, np.float32))
                                          for k, v in inputs.items()})
    reference, waveform = brevitas
    stats = compare_codes(engine, inputs, reference, layer_names(engine, model), teacher_forced=False)
    golden = np.asarray(stats["waveform"], np.float64).reshape(-1)
    return {"golden_vs_brevitas_mismatches": stats["mismatches"], "golden_values_compared": stats["values"],
            "golden_integer_layers": stats["layers"], "golden_exponent_mismatches": stats["exponent_mismatches"],
            "golden_first_mismatched_layer": (stats["mismatched_layers"] or [None])[0],
            "golden_max_accumulator": stats["max_accumulator"],
            "golden_vs_brevitas_waveform_max_abs": float(np.abs(golden - waveform.reshape(-1)).max()),
            "golden_input_samples": int(inputs[MIXTURE].shape[-1])}
