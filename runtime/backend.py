"""onnxruntime backend: loads an exported LiMuSE graph and runs one window of audio through it.

The graph contract (written by limuse_export): inputs `mixture` (B, C, S) float32, optionally
`voiceprint` (B, 512) and `visual` (B, V, 256); output `target` (B, S). A model without a cue lacks
that input, so the channel count and the cues are read from the graph itself.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from limuse_runtime.contract import (INPUT_NAMES, MIXTURE, OUTPUT_NAME, VISUAL, VISUAL_DIM, VOICEPRINT, ModelContract,
                                     check_inputs, check_threads, n_video_frames)
from limuse_runtime.errors import InputError
from limuse_runtime.voiceprint import VOICEPRINT_VERSION_KEY, check_voiceprint_version


def session_options(threads: int, optimized_model_path: str | None = None,
                    profile_prefix: str | None = None) -> ort.SessionOptions:
    """EXTENDED: the QDQ -> QLinearConv / QGemm fusions happen from this level on. ALL adds the NCHWc layout
    transformer, which inserts reorders around every Conv of this network and measured slower."""
    check_threads(threads)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if optimized_model_path:
        opts.optimized_model_filepath = optimized_model_path
    if profile_prefix:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    return opts


def read_contract(session: ort.InferenceSession) -> ModelContract:
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = [o.name for o in session.get_outputs()]
    if MIXTURE not in inputs or outputs != [OUTPUT_NAME]:
        raise InputError(f"model: inputs {sorted(inputs)} -> outputs {outputs}; expected a LiMuSE export "
                         f"with inputs {MIXTURE}[, {VOICEPRINT}][, {VISUAL}] and the single output {OUTPUT_NAME}")
    unknown = sorted(set(inputs) - set(INPUT_NAMES))
    if unknown:
        raise InputError(f"model: unexpected inputs {unknown}; expected {', '.join(INPUT_NAMES)}")
    shape = inputs[MIXTURE].shape
    if len(shape) != 3 or not isinstance(shape[1], int):
        raise InputError(f"model: mixture input has shape {shape}; expected (batch, channels, samples) "
                         f"with a fixed channel count")
    return ModelContract(mic_channels=shape[1], has_voiceprint=VOICEPRINT in inputs, has_visual=VISUAL in inputs)


class OrtSeparator:
    """Callable: separator(mixture (C, S), voiceprint (512,) | None, visual (V, 256) | None) -> (S,)."""

    def __init__(self, model_path: str | Path, threads: int = 1, *, optimized_model_path: str | None = None,
                 profile_prefix: str | None = None):
        model_path = Path(model_path)
        if not model_path.is_file():
            raise InputError(f"model: no such file {str(model_path)!r}; expected an exported "
                             f"<name>.int8.onnx or <name>.float.onnx")
        opts = session_options(threads, optimized_model_path, profile_prefix)
        try:
            self.session = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own exception types for foreign or corrupt files
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"model: cannot load {str(model_path)!r} as ONNX ({first_line[:160]}); "
                             f"expected an exported <name>.int8.onnx or <name>.float.onnx") from None
        self.contract = read_contract(self.session)
        if self.contract.has_voiceprint:
            check_voiceprint_version(self.session.get_modelmeta().custom_metadata_map.get(VOICEPRINT_VERSION_KEY),
                                     repr(str(model_path)))
        self.path = model_path

    def check(self, mixture: np.ndarray, voiceprint: np.ndarray | None, visual: np.ndarray | None) -> None:
        check_inputs(self.contract, mixture, voiceprint, visual)

    def __call__(self, mixture: np.ndarray, voiceprint: np.ndarray | None = None,
                 visual: np.ndarray | None = None) -> np.ndarray:
        self.check(mixture, voiceprint, visual)
        feeds = {MIXTURE: np.ascontiguousarray(mixture[None], dtype=np.float32)}
        if self.contract.has_voiceprint:
            feeds[VOICEPRINT] = np.ascontiguousarray(voiceprint[None], dtype=np.float32)
        if self.contract.has_visual:
            if visual is None:  # no face: the published convention is an all-zero track
                visual = np.zeros((n_video_frames(mixture.shape[1]), VISUAL_DIM), np.float32)
            feeds[VISUAL] = np.ascontiguousarray(visual[None], dtype=np.float32)
        try:
            return self.session.run([OUTPUT_NAME], feeds)[0][0]
        except Exception as exc:  # ORT's own exception types: a graph that fails on these inputs
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"model: {str(self.path)!r} failed on a window of {mixture.shape[1]} samples "
                             f"({first_line[:160]}); expected an exported LiMuSE graph") from None
