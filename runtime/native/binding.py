"""ctypes binding of the native engine's C API (limuse_native.h), and the separator limuse-run uses."""
from __future__ import annotations

import ctypes
import json
import os
from pathlib import Path

import numpy as np

from limuse_runtime.contract import (INPUT_NAMES, SAMPLES_PER_VIDEO_FRAME, VIDEO_RATE, VISUAL, VISUAL_DIM, VOICEPRINT,
                                     ModelContract, check_inputs, check_threads)
from limuse_runtime.errors import InputError
from limuse_runtime.voiceprint import VOICEPRINT_VERSION_KEY, check_voiceprint_version

HERE = Path(__file__).resolve().parent
LIBRARY_ENV = "LIMUSE_NATIVE_LIB"
LIBRARY_NAME = "liblimuse_native.so.1"  # not a .so suffix: pkgutil would take it for an extension module
MAGIC = b"LIMUSEPK"
ERR_LEN = 256
HOW_TO_BUILD = ("install a C compiler (Debian: apt-get install gcc) and reinstall the runtime "
                "(pip install ./runtime), or build it in place with python -m limuse_runtime.native.build")


class NativeError(InputError):
    """A packed model or an input the native engine refuses, or a missing engine."""


def is_packed_model(path: "str | Path") -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def library_path() -> "Path | None":
    """The compiled engine: $LIMUSE_NATIVE_LIB, else the one built beside this file."""
    if os.environ.get(LIBRARY_ENV):
        return Path(os.environ[LIBRARY_ENV])
    found = sorted(HERE.glob("liblimuse_native.so.*"))
    return found[0] if found else None


_LIBRARY = None


class Buffers(ctypes.Structure):
    """lmn_buffers (limuse_native.h): the run's arrays, each with the floats it holds."""
    _fields_ = [("inputs", ctypes.c_void_p * 3), ("input_elements", ctypes.c_size_t * 3),
                ("out", ctypes.c_void_p), ("out_elements", ctypes.c_size_t)]

OBSERVER = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int)


def isa_list() -> "list[str]":
    """The SIMD paths this build of the engine can run on this CPU, worst first (limuse_native.h)."""
    return load_library().lmn_isa_list().decode().split()


def load_library() -> ctypes.CDLL:
    global _LIBRARY
    if _LIBRARY is not None:
        return _LIBRARY
    path = library_path()
    if path is None or not path.is_file():
        raise NativeError(f"native engine: the C library is not built ({LIBRARY_NAME} not found beside "
                          f"{HERE}); {HOW_TO_BUILD}")
    lib = ctypes.CDLL(str(path))
    p, c_long, c_int, c_double = ctypes.c_void_p, ctypes.c_long, ctypes.c_int, ctypes.c_double
    lib.lmn_load.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(p), ctypes.c_char_p, ctypes.c_size_t]
    lib.lmn_load.restype = c_int
    lib.lmn_free.argtypes = [p]
    lib.lmn_config_json.argtypes = [p]
    lib.lmn_config_json.restype = ctypes.c_char_p
    lib.lmn_input_elements.argtypes = [p, c_int]
    lib.lmn_input_elements.restype = c_long
    lib.lmn_output_samples.argtypes = [p]
    lib.lmn_output_samples.restype = c_long
    lib.lmn_scratch_bytes.argtypes = [p]
    lib.lmn_scratch_bytes.restype = ctypes.c_size_t
    lib.lmn_run.argtypes = [p, ctypes.POINTER(Buffers), c_int, ctypes.c_char_p, ctypes.c_size_t]
    lib.lmn_run.restype = c_int
    lib.lmn_kernel_count.restype = c_int
    lib.lmn_kernel_name.argtypes = [c_int]
    lib.lmn_kernel_name.restype = ctypes.c_char_p
    lib.lmn_kernel_seconds.argtypes = [p, c_int]
    lib.lmn_kernel_seconds.restype = c_double
    lib.lmn_stage_seconds.argtypes = [p, c_int]
    lib.lmn_stage_seconds.restype = c_double
    lib.lmn_reset_times.argtypes = [p]
    lib.lmn_set_observer.argtypes = [p, OBSERVER, p]
    lib.lmn_value_data.argtypes = [p, c_int, ctypes.POINTER(c_int), ctypes.POINTER(c_long)]
    lib.lmn_value_data.restype = p
    lib.lmn_isa_list.restype = ctypes.c_char_p
    lib.lmn_isa.argtypes = [p]
    lib.lmn_isa.restype = ctypes.c_char_p
    lib.lmn_set_isa.argtypes = [p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t]
    lib.lmn_set_isa.restype = c_int
    _LIBRARY = lib
    return lib


class NativeModel:
    """A loaded packed model: run(mixture (C, S), voiceprint (512,), visual (V, 256)) on exactly its window."""

    def __init__(self, path: "str | Path"):
        self.path = Path(path)
        if not self.path.is_file():
            raise NativeError(f"model: no such file {str(self.path)!r}; expected a <name>.packed.bin")
        self._lib = load_library()
        data = self.path.read_bytes()
        handle, err = ctypes.c_void_p(), ctypes.create_string_buffer(ERR_LEN)
        if self._lib.lmn_load(data, len(data), ctypes.byref(handle), err, ERR_LEN) != 0:
            raise NativeError(f"model: {str(self.path)!r}: {err.value.decode(errors='replace')}")
        self._handle = handle
        # the loader has checked CONF against the value table; a file it accepts still gets one-line errors
        try:
            self.config = json.loads(self._lib.lmn_config_json(handle).decode())
            self.input_shapes = {name: tuple(int(d) for d in shape) for name, shape in self.config["inputs"].items()}
            self.window = int(self.config["window_samples"])
            self.mic_channels = int(self.config["mic_channels"])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise NativeError(f"model: {str(self.path)!r}: the CONF section is malformed ({type(exc).__name__}); "
                              f"expected the JSON object of FORMAT.md") from None
        if VOICEPRINT in self.input_shapes:
            check_voiceprint_version(self.config.get(VOICEPRINT_VERSION_KEY), repr(str(self.path)))
        for which, name in enumerate(INPUT_NAMES):
            elements = int(np.prod(self.input_shapes[name])) if name in self.input_shapes else 0
            if elements != self._lib.lmn_input_elements(handle, which):
                raise NativeError(f"model: {str(self.path)!r}: CONF's {name} shape disagrees with the engine's "
                                  f"value table; the file is corrupt")

    def __del__(self):
        if getattr(self, "_handle", None):
            self._lib.lmn_free(self._handle)
            self._handle = None

    @property
    def isa(self) -> str:
        """The SIMD path this model runs (portable, sse2, avx2, neon): the CPU's best, or $LIMUSE_NATIVE_ISA."""
        return self._lib.lmn_isa(self._handle).decode()

    def set_isa(self, isa: "str | None") -> None:
        """Runs on the named SIMD path (None: the best this CPU has); NativeError if this build or CPU lacks it."""
        err = ctypes.create_string_buffer(ERR_LEN)
        if self._lib.lmn_set_isa(self._handle, isa.encode() if isa else None, err, ERR_LEN) != 0:
            raise NativeError(err.value.decode(errors="replace"))

    @property
    def scratch_bytes(self) -> int:
        return int(self._lib.lmn_scratch_bytes(self._handle))

    @property
    def has_voiceprint(self) -> bool:
        return VOICEPRINT in self.input_shapes

    @property
    def has_visual(self) -> bool:
        return VISUAL in self.input_shapes

    def run(self, mixture: np.ndarray, voiceprint: "np.ndarray | None" = None, visual: "np.ndarray | None" = None,
            threads: int = 1) -> np.ndarray:
        """Arrays of exactly the packed shapes (batch axis optional); returns the (samples,) waveform."""
        arrays = []
        for name, value in zip(INPUT_NAMES, (mixture, voiceprint, visual)):
            if name not in self.input_shapes:
                if value is not None:
                    raise NativeError(f"{name}: this model has no {name} input; expected none")
                arrays.append(None)
                continue
            want = self.input_shapes[name]
            if value is None:
                raise NativeError(f"{name}: missing; this model expects shape {want[1:]}")
            value = np.ascontiguousarray(value, dtype=np.float32)
            if value.shape != want[1:] and value.shape != want:
                raise NativeError(f"{name}: got shape {value.shape}; this packed model runs windows of shape {want[1:]}")
            arrays.append(value)
        out = np.empty(int(self._lib.lmn_output_samples(self._handle)), np.float32)
        err = ctypes.create_string_buffer(ERR_LEN)
        buffers = Buffers()
        for which, array in enumerate(arrays):
            if array is not None:  # the engine refuses any size but its own: it never reads past an array
                buffers.inputs[which] = array.ctypes.data
                buffers.input_elements[which] = array.size
        buffers.out, buffers.out_elements = out.ctypes.data, out.size
        if self._lib.lmn_run(self._handle, ctypes.byref(buffers), int(threads), err, ERR_LEN) != 0:
            raise NativeError(err.value.decode(errors="replace"))
        return out

    def observe(self, callback) -> None:
        """callback(kernel index) after every kernel of the following runs (None: stop); with value(id)
        it checks a run tensor by tensor."""
        self._observer = OBSERVER(lambda _, k: callback(k)) if callback else OBSERVER()
        self._lib.lmn_set_observer(self._handle, self._observer, None)

    def value(self, value_id: int) -> np.ndarray:
        """A copy of value `value_id` as it is in the arena now (int32 codes or float32)."""
        is_float, elements = ctypes.c_int(), ctypes.c_long()
        pointer = self._lib.lmn_value_data(self._handle, value_id, ctypes.byref(is_float), ctypes.byref(elements))
        if not pointer:
            raise NativeError(f"value {value_id}: no such value, or the model has not run yet")
        kind = ctypes.c_float if is_float.value else ctypes.c_int32
        return np.ctypeslib.as_array((kind * elements.value).from_address(pointer)).copy()

    def kernel_seconds(self) -> dict:
        return {self._lib.lmn_kernel_name(i).decode(): self._lib.lmn_kernel_seconds(self._handle, i)
                for i in range(1, self._lib.lmn_kernel_count())}

    def stage_seconds(self) -> dict:
        return {name: self._lib.lmn_stage_seconds(self._handle, i) for i, name in enumerate(self.config["stages"])}

    def reset_times(self) -> None:
        self._lib.lmn_reset_times(self._handle)


class NativeSeparator:
    """Callable like the onnxruntime backend's OrtSeparator: separator(mixture (C, S), voiceprint (512,) |
    None, visual (V, 256) | None) -> (S,), for any S the backend accepts. A packed model runs windows of
    one length W (its static export): a shorter input is padded with zeros to W (and its lip track with
    its last frame), a longer one runs as windows of W cross-faded like limuse-run's windows."""

    def __init__(self, path: "str | Path", threads: int = 1):
        check_threads(threads)
        self.model = NativeModel(path)
        self.threads = threads
        self.window = self.model.window
        self.contract = ModelContract(self.model.mic_channels, self.model.has_voiceprint, self.model.has_visual)
        self.frames = self.model.input_shapes[VISUAL][1] if self.model.has_visual else 0

    def check(self, mixture: np.ndarray, voiceprint: "np.ndarray | None", visual: "np.ndarray | None") -> None:
        check_inputs(self.contract, mixture, voiceprint, visual)

    def _visual(self, visual: "np.ndarray | None", start: int) -> "np.ndarray | None":
        if not self.model.has_visual:
            return None
        if visual is None:  # no face: the published convention is an all-zero track
            return np.zeros((self.frames, VISUAL_DIM), np.float32)
        first = start // SAMPLES_PER_VIDEO_FRAME
        index = np.minimum(np.arange(first, first + self.frames), len(visual) - 1)
        return np.ascontiguousarray(visual[index], np.float32)

    def _run(self, mixture: np.ndarray, voiceprint, visual, start: int) -> np.ndarray:
        window = mixture[:, start:start + self.window]
        if window.shape[1] < self.window:
            window = np.pad(window, ((0, 0), (0, self.window - window.shape[1])))
        return self.model.run(window, voiceprint, self._visual(visual, start), threads=self.threads)

    def __call__(self, mixture: np.ndarray, voiceprint: "np.ndarray | None" = None,
                 visual: "np.ndarray | None" = None) -> np.ndarray:
        self.check(mixture, voiceprint, visual)
        n, w = mixture.shape[1], self.window
        if n <= w:
            return self._run(mixture, voiceprint, visual, 0)[:n]
        hop = w // 2
        starts = list(range(0, n - w, hop)) + [n - w]
        out = np.zeros(n, np.float32)
        done = 0  # out[:done] holds the finished samples
        for start in starts:
            y = self._run(mixture, voiceprint, visual, start)
            overlap = done - start
            if overlap > 0:
                ramp = ((np.arange(overlap) + 0.5) / overlap).astype(np.float32)
                out[start:done] = out[start:done] * (1 - ramp) + y[:overlap] * ramp
            out[done:start + w] = y[max(overlap, 0):]
            done = start + w
        return out


def native_separator(path: "str | Path", threads: int = 1, window_s: "float | None" = None,
                     overlap_s: "float | None" = None):
    """(separator, WindowPlan) for limuse-run: the windows default to the packed model's own length (in
    whole video frames) and an overlap of 0.4 s or half the window, whichever is shorter."""
    from limuse_runtime.streaming import DEFAULT_OVERLAP_S, WindowPlan
    for name, value in (("window", window_s), ("overlap", overlap_s)):
        if value is not None:
            WindowPlan.check_seconds(name, value)
    separator = NativeSeparator(path, threads)
    frames = separator.window // SAMPLES_PER_VIDEO_FRAME
    if window_s is None:
        window_s = max(frames, 2) / VIDEO_RATE
    if overlap_s is None:
        overlap_s = min(DEFAULT_OVERLAP_S, (round(window_s * VIDEO_RATE) // 2) / VIDEO_RATE)
    return separator, WindowPlan.from_seconds(window_s, overlap_s)
