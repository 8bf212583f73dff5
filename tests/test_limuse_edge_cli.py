"""`limuse-edge profile`: output, JSON file, and one-line errors with no partial output."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from limuse_edge.cli import main


def test_profile_prints_the_report_and_writes_json(tmp_path, capsys):
    out = tmp_path / "profile.json"
    assert main(["profile", "--preset", "tiny", "--recipe", "w3a8", "--samples", "400", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "preset tiny, recipe w3a8, input 400 samples" in printed
    data = json.loads(out.read_text())
    assert data["preset"] == "tiny" and data["recipe"] == "w3a8" and data["input_samples"] == 400
    assert data["quantized_layers"] == 76 and data["params"] == 47_645
    assert data["macs_core"] == sum(p["macs_core"] for p in data["parts"].values()) > 0
    assert [p.name for p in tmp_path.iterdir()] == ["profile.json"]


@pytest.mark.parametrize("argv, message", [
    (["--preset", "limuse_k64"], "preset: unknown 'limuse_k64'"),
    (["--preset", "tiny", "--recipe", "int3"], "recipe: unknown 'int3'"),
    (["--preset", "tiny", "--samples", "10"], "--samples: got 10; expected at least 16"),
])
def test_bad_arguments_exit_2_with_one_line_and_no_file(argv, message, tmp_path, capsys):
    out = tmp_path / "profile.json"
    assert main(["profile", *argv, "--json", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("limuse-edge profile: error: ") and message in err
    assert err.count("\n") == 1
    assert not out.exists() and not list(tmp_path.iterdir())


def test_missing_output_folder_is_refused(tmp_path, capsys):
    assert main(["profile", "--preset", "tiny", "--json", str(tmp_path / "no" / "p.json")]) == 2
    assert "--json: directory" in capsys.readouterr().err


def test_console_script_entry_point_exits_non_zero_on_bad_input():
    result = subprocess.run([sys.executable, "-m", "limuse_edge.cli", "profile", "--preset", "nope"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "preset: unknown 'nope'" in result.stderr and "Traceback" not in result.stderr
