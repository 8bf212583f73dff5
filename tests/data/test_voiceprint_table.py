"""grid_vp.pkl is read by a restricted unpickler: numpy arrays and float lists load, a pickle that
would run code is refused before it runs, with an error naming the file."""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from limuse_edge.data.voiceprint_table import read_voiceprint_table


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_arrays_and_float_lists_load_in_every_protocol(tmp_path, protocol):
    rng = np.random.default_rng(0)
    table = {"s1": rng.standard_normal(512).astype(np.float32), "s2": rng.standard_normal(512),
             "s3": [float(v) for v in rng.standard_normal(512)], "s4": np.float32(rng.standard_normal(512))}
    path = tmp_path / "grid_vp.pkl"
    path.write_bytes(pickle.dumps(table, protocol=protocol))
    loaded = read_voiceprint_table(path)
    assert sorted(loaded) == sorted(table)
    for key, value in table.items():
        assert loaded[key].dtype == np.float32
        np.testing.assert_array_equal(loaded[key], np.asarray(value, np.float32))


def test_a_pickle_that_would_run_code_is_refused_before_it_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "grid_vp.pkl"
    path.write_bytes(pickle.dumps({"s1": _RunsCode(marker)}))
    with pytest.raises(ValueError) as info:
        read_voiceprint_table(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and "system is not allowed" in message
    assert not marker.exists()
    pickle.loads(path.read_bytes())  # the same file under plain pickle does run the command
    assert marker.exists()


@pytest.mark.parametrize("table, problem", [
    (["not", "a", "dict"], "holds a list"),
    ({"s1": "text"}, "entry 's1' is a str"),
    ({"s1": np.arange(512)}, "entry 's1' is a int64"),
    ({7: np.zeros(512)}, "key 7 is a int"),
])
def test_other_contents_are_refused_naming_the_file(tmp_path, table, problem):
    path = tmp_path / "grid_vp.pkl"
    path.write_bytes(pickle.dumps(table))
    with pytest.raises(ValueError, match=problem) as info:
        read_voiceprint_table(path)
    assert str(path) in str(info.value) and "expected a pickled dict" in str(info.value)


def test_a_truncated_file_is_a_clear_error(tmp_path):
    path = tmp_path / "grid_vp.pkl"
    path.write_bytes(pickle.dumps({"s1": np.zeros(512)})[:40])
    with pytest.raises(ValueError, match="refused to unpickle"):
        read_voiceprint_table(path)
