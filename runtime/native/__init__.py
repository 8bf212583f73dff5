"""The native integer engine (C, runtime/native/*.c) for packed models, through ctypes (numpy only).

    from limuse_runtime.native import NativeModel
    model = NativeModel("build/m.packed.bin")
    target = model.run(mixture, voiceprint, visual)        # one window of exactly the packed length
"""
from limuse_runtime.native.binding import NativeError, NativeModel, NativeSeparator, is_packed_model, library_path

__all__ = ["NativeError", "NativeModel", "NativeSeparator", "is_packed_model", "library_path"]
