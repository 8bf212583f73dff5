"""The Brevitas reference of the golden-engine tests and benchmarks: calibrated power-of-two models, their
QONNX export by the project's pipeline, the integer codes Brevitas's quantizer proxies produce (hooks), and
their comparison with the engine's, layer by layer. Imported by tests/runtime and benchmarks alike."""
from __future__ import annotations

import contextlib

import numpy as np
import torch

from limuse_runtime.contract import MIXTURE, VISUAL, VISUAL_DIM, VOICEPRINT, VOICEPRINT_DIM, n_video_frames
from limuse_runtime.golden import GoldenEngine, QTensor, Trace

SAMPLES, VIDEO_FRAMES = 800, 10
INT32_MAX = 2 ** 31 - 1
PO2_PRETRAINED = "limuse_k32_w3a8_po2"


def calibrated_po2_model(preset: str, recipe: str = "w3a8-po2", passes: int = 3, samples: int = SAMPLES,
                         video_frames: int = VIDEO_FRAMES):
    """A quantized model whose activation scales come from calibration on random input (no training)."""
    from limuse_edge.checkpoint import build_model
    from limuse_edge.quant import calibrate
    torch.manual_seed(0)
    model = build_model(preset, recipe).eval()
    calibrate(model, [example_inputs(model, samples, video_frames, seed=100 + seed) for seed in range(passes)])
    return model.eval()


def example_inputs(model, samples: int = SAMPLES, video_frames: int = VIDEO_FRAMES, seed: int = 0) -> dict:
    """{input name: tensor}, batch 1, in the ONNX contract's names."""
    g = torch.Generator().manual_seed(seed)
    return {MIXTURE: 0.3 * torch.randn(1, model.config.mic_channels, samples, generator=g),
            VOICEPRINT: torch.randn(1, VOICEPRINT_DIM, generator=g),
            VISUAL: torch.randn(1, video_frames, VISUAL_DIM, generator=g)}


def export_qonnx(model, inputs: dict, path):
    """The project's QONNX export (fixed shape of `inputs`, qonnx-cleaned), written to `path`."""
    from limuse_export.pipeline import export_onnx
    from limuse_export.prepare import exportable
    from limuse_export.save import save_onnx
    save_onnx(export_onnx("qonnx", exportable(model), inputs), path)
    return path


def calibrated_qonnx(path, preset: str = "tiny", recipe: str = "w3a8-po2", samples: int = SAMPLES,
                     video_frames: int = VIDEO_FRAMES, seed: int = 1) -> tuple:
    """(model, inputs, path): calibrated_po2_model, example inputs of that length (seed `seed`) and the
    project's QONNX export of the model at their shape, written to `path`."""
    model = calibrated_po2_model(preset, recipe, samples=samples, video_frames=video_frames)
    inputs = example_inputs(model, samples, video_frames, seed=seed)
    return model, inputs, export_qonnx(model, inputs, path)


def _weight_key(codes: np.ndarray) -> tuple:
    return codes.shape, np.ascontiguousarray(codes, dtype=np.int64).tobytes()


def layer_names(engine: GoldenEngine, model) -> dict[str, str]:
    """{engine layer name: Brevitas module name}, matched by integer weight codes (engine linear weights are
    (C_in, C_out)), independently of the torch module names the export records (qonnx's cleanup renames every
    node and initializer; the names travel in the nodes' doc_strings)."""
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


def brevitas_codes(model, inputs: dict) -> tuple[dict, np.ndarray]:
    """{layer name: {"in"|"out": (int codes, exponent)}} from the quantizer proxies, and the waveform."""
    captured = {}

    def hook(name, key):
        def record(module, args, output):
            captured.setdefault(name, {})[key] = (output.int().numpy().astype(np.int64),
                                                  int(np.log2(float(output.scale))))
        return record

    with hook_quant_layers(model, hook), torch.no_grad():
        waveform = model(**inputs).numpy()
    return captured, waveform


def numpy_inputs(inputs: dict) -> dict:
    return {name: value.numpy() for name, value in inputs.items()}


def same_layout(codes: np.ndarray, shape: tuple) -> "np.ndarray | None":
    """`codes` in `shape` when only the leading (batch-like) axes differ: a per-frame linear may run on
    (B*T, C) in eager torch and on (B, T, C) in the export; the order of the values is the same. None if
    the channel axis or the size differs."""
    if codes.shape == tuple(shape):
        return codes
    if codes.size != int(np.prod(shape)) or codes.shape[-1] != shape[-1]:
        return None
    return codes.reshape(shape)


def compare_codes(engine: GoldenEngine, inputs: dict, reference: dict, names: dict) -> dict:
    """End-to-end and teacher-forced code comparison of every integer layer, as counts. `reference` is keyed
    by Brevitas module name, `names` maps engine layer names to those (layer_names)."""
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
        forced_input = same_layout(ref["in"][0], record.input.codes.shape)
        forced, _, _ = record.layer.forward(QTensor(forced_input, ref["in"][1], 8))
        stats["teacher_forced_values"] += forced.codes.size
        stats["teacher_forced_mismatches"] += int(np.count_nonzero(same_layout(forced.codes, ref["out"][0].shape)
                                                                   != ref["out"][0]))
    stats["waveform"] = next(iter(outputs.values()))
    return stats


def demo_inputs(samples: int) -> tuple[dict, np.ndarray]:
    """The bundled demo sample's first `samples` samples and matching 25 fps frames, and its target."""
    from limuse_export.demo_sample import load_demo
    demo = load_demo()
    frames = n_video_frames(samples)
    if demo.mixture.shape[1] < samples or demo.visual.shape[0] < frames:
        raise AssertionError(f"demo sample: {demo.mixture.shape[1]} samples; this benchmark needs {samples}")
    inputs = {MIXTURE: demo.mixture[None, :, :samples], VOICEPRINT: demo.voiceprint[None],
              VISUAL: demo.visual[None, :frames]}
    return {k: torch.from_numpy(np.ascontiguousarray(v, np.float32)) for k, v in inputs.items()}, demo.target[:samples]


def si_sdr(estimate: np.ndarray, reference: np.ndarray) -> float:
    """Zero-mean scale-invariant SDR in dB (the paper's convention), float64."""
    e = np.asarray(estimate, np.float64).ravel()
    r = np.asarray(reference, np.float64).ravel()
    e, r = e - e.mean(), r - r.mean()
    target = (e @ r) / (r @ r) * r
    return float(10 * np.log10((target @ target) / max(((e - target) @ (e - target)), 1e-30)))
