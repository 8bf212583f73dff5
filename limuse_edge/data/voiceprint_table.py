"""Reading a corpus's voiceprint table (grid_vp.pkl: speaker or utterance key -> voiceprint) without
running whatever a crafted pickle asks for.

The released MC_Grid voiceprints come as a pickle, and `pickle.load` calls any function a file names.
The unpickler here resolves only the names that pickled numpy arrays and scalars need (array
reconstruction, dtype, the byte-string codec of protocol-2 files) and refuses every other global; the
loaded object must then be a dict of str keys to float arrays or lists of floats. Anything else is a
one-line ValueError naming the file.
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

# Where an item's voiceprint comes from: the utterance being extracted ("target", the paper's loader) or
# another utterance of the same voice ("reference", an enrolment recorded apart, as on a board).
VOICEPRINT_SOURCES = ("target", "reference")


def check_voiceprint_source(source: str) -> None:
    """A one-line ValueError for anything but the sources above (the corpus loader and dynamic mixing)."""
    if source not in VOICEPRINT_SOURCES:
        raise ValueError(f"voiceprint_source: got {source!r}; expected one of {list(VOICEPRINT_SOURCES)}")

# (module, name) that numpy's own pickles reference, numpy 1.x (numpy.core) and 2.x (numpy._core).
# None of them calls user code: they build an empty ndarray / dtype / scalar from plain data.
_ALLOWED_GLOBALS = frozenset(
    [(f"{core}.multiarray", name) for core in ("numpy.core", "numpy._core") for name in ("_reconstruct", "scalar")]
    + [(f"{core}.numeric", "_frombuffer") for core in ("numpy.core", "numpy._core")]
    + [("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")])


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, path: Path):
        super().__init__(io.BytesIO(data))
        self.path = path

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed")
        return super().find_class(module, name)

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent ids are not allowed")


def read_voiceprint_table(path: "str | Path") -> dict[str, np.ndarray]:
    """{key: float32 vector} from a grid_vp.pkl; a ValueError naming the file for anything else."""
    path = Path(path)
    expected = "expected a pickled dict of names to float arrays or lists (MC_Grid grid_vp.pkl)"
    try:
        table = _NumpyOnlyUnpickler(path.read_bytes(), path).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise ValueError(f"{path}: refused to unpickle ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                         f"{expected}") from None
    if not isinstance(table, dict):
        raise ValueError(f"{path}: holds a {type(table).__name__}; {expected}")
    vectors = {}
    for key, value in table.items():
        if not isinstance(key, str):
            raise ValueError(f"{path}: key {key!r} is a {type(key).__name__}; {expected}")
        if isinstance(value, (list, tuple)) and all(isinstance(v, (float, int, np.floating)) for v in value):
            value = np.asarray(value, dtype=np.float64)
        if not isinstance(value, np.ndarray) or not np.issubdtype(value.dtype, np.floating):
            raise ValueError(f"{path}: entry {key!r} is a {getattr(value, 'dtype', type(value).__name__)}; {expected}")
        vectors[key] = value.astype(np.float32)
    return vectors
