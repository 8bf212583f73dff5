"""Bad packed files and models the native engine cannot represent: one-line errors naming the problem,
no output file; the loader's fuzz corpus replayed under AddressSanitizer and UndefinedBehaviorSanitizer."""
from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import onnx
import pytest
import soundfile as sf
from onnx import numpy_helper
from system_tools import missing_tool

from limuse_export.native.pack import PackError, pack, pack_graph
from limuse_runtime.cli import main as limuse_run
from limuse_runtime.golden.graph import Graph, Node
from limuse_runtime.native import NativeError, NativeModel
from limuse_runtime.native.build import HERE, SOURCES

CORPUS = HERE / "fuzz_corpus"


def _reseal(data: bytearray) -> bytes:
    """Rewrites the size and checksum fields, so that a deliberate change reaches the parser."""
    data[12:16] = struct.pack("<I", len(data))
    data[16:20] = struct.pack("<I", zlib.crc32(bytes(data[20:])) & 0xFFFFFFFF)
    return bytes(data)


def _program_offset(data: bytes) -> int:
    """Where the PROG section starts (FORMAT.md: the section table follows the 24-byte header)."""
    count = struct.unpack_from("<I", data, 20)[0]
    for i in range(count):
        tag, offset, _ = struct.unpack_from("<4sII", data, 24 + 12 * i)
        if tag == b"PROG":
            return offset
    raise AssertionError("no PROG section")


def _first_opcode(data: bytes) -> int:
    """PROG starts with the kernel count (a varint), then the first kernel's opcode."""
    at = _program_offset(data)
    while data[at] & 0x80:
        at += 1
    return at + 1


def _with_byte(data: bytearray, at: int, value: int) -> bytearray:
    data[at] = value
    return data


@pytest.mark.parametrize("damage, message", [
    (lambda d: d[: len(d) // 2], "truncated"),
    (lambda d: d[:300] + bytes([d[300] ^ 0x40]) + d[301:], "checksum"),
    (lambda d: d[:8] + struct.pack("<I", 2) + d[12:], "format version 2; this engine reads version 3"),
    (lambda d: b"NOTPACKD" + d[8:], "bad magic"),
    (lambda d: _reseal(bytearray(d[:-7])), "out of bounds"),
    (lambda d: _reseal(_with_byte(bytearray(d), _first_opcode(d), 0x7F)), "kernel table is inconsistent"),
], ids=["truncated", "corrupted", "other-version", "foreign", "short-section", "bad-opcode"])
def test_damaged_files_are_one_line_errors(tiny_packed, tmp_path, damage, message):
    data = tiny_packed[0].read_bytes()
    bad = tmp_path / "bad.packed.bin"
    bad.write_bytes(damage(data))
    with pytest.raises(NativeError, match=message) as info:
        NativeModel(bad)
    assert "\n" not in str(info.value)


def test_limuse_run_refuses_a_corrupted_packed_file_without_output(tiny_packed, tmp_path, capsys):
    path, inputs, _ = tiny_packed
    data = bytearray(path.read_bytes())
    data[1000] ^= 1
    (tmp_path / "bad.packed.bin").write_bytes(bytes(data))
    sf.write(str(tmp_path / "mix.wav"), inputs["mixture"][0].T, 16000, subtype="FLOAT")
    np.save(tmp_path / "vp.npy", inputs["voiceprint"][0])
    out = tmp_path / "y.wav"
    assert limuse_run(["--model", str(tmp_path / "bad.packed.bin"), "--mixture", str(tmp_path / "mix.wav"),
                       "--voiceprint", str(tmp_path / "vp.npy"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "checksum" in err and len(err.splitlines()) == 1 and not out.exists()


def _edited(qonnx: Path, tmp_path: Path, edit) -> Path:
    proto = onnx.load(str(qonnx))
    edit(proto)
    path = tmp_path / "edited.qonnx.onnx"
    onnx.save(proto, str(path))
    return path


def _initializer(proto, name):
    return next(t for t in proto.graph.initializer if t.name == name)


def _scale_weight_quant(proto, factor):
    conv = next(n for n in proto.graph.node if n.op_type == "Conv")
    quant = next(n for n in proto.graph.node if conv.input[1] in n.output)
    init = _initializer(proto, quant.input[1])
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(factor), init.name))


def test_non_power_of_two_model_is_refused_naming_the_recipe(tiny_inorm_qonnx, tmp_path):
    path = _edited(tiny_inorm_qonnx[0], tmp_path, lambda p: _scale_weight_quant(p, 0.75))
    with pytest.raises(PackError, match=r"not a power of two.*w3a8-po2-inorm") as info:
        pack(path, tmp_path / "x.packed.bin")
    assert "\n" not in str(info.value) and not (tmp_path / "x.packed.bin").exists()


def test_float_norms_are_refused_naming_the_recipe():
    graph = Graph((Node("InstanceNormalization", "gln", ("x", "s", "b"), ("y",)),), {}, ("mixture",), ("target",),
                  {"mixture": (1, 2, 100)})
    with pytest.raises(PackError, match=r"float normalisation.*w3a8-po2-inorm"):
        pack_graph(graph, {})


def test_an_accumulator_bound_beyond_int32_is_refused_naming_the_layer(tiny_inorm_qonnx, tmp_path):
    from limuse_runtime.golden.lower import TORCH_MODULE_DOC

    def raise_bias(proto):
        conv = next(n for n in proto.graph.node if n.op_type == "Conv" and len(n.input) > 2 and n.input[2])
        quant = next(n for n in proto.graph.node if conv.input[2] in n.output)
        scale = float(numpy_helper.to_array(_initializer(proto, quant.input[1])).ravel()[0])
        init = _initializer(proto, quant.input[0])
        value = np.full_like(numpy_helper.to_array(init), (2 ** 31 - 128) * scale)
        init.CopyFrom(numpy_helper.from_array(value, init.name))
        raise_bias.layer = conv.doc_string[len(TORCH_MODULE_DOC):]

    path = _edited(tiny_inorm_qonnx[0], tmp_path, raise_bias)
    with pytest.raises(PackError, match=rf"layer {raise_bias.layer}: accumulator bound \d+ exceeds int32"):
        pack(path, tmp_path / "x.packed.bin")


def test_fuzz_corpus_replays_clean_under_sanitizers(tmp_path):
    cc = shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        missing_tool("needs gcc or clang (their sanitizers), neither on PATH: apt-get install gcc")
    files = sorted(CORPUS.iterdir())
    assert len(files) >= 10, "the saved corpus is missing"
    replay = tmp_path / "replay"
    sources = [str(HERE / s) for s in SOURCES + ("fuzz_loader.c",)]
    subprocess.run([cc, "-std=c99", "-g", "-O1", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                    "-ffp-contract=off", "-DLMN_FUZZ_REPLAY", "-o", str(replay), *sources, "-lm"], check=True)
    result = subprocess.run([str(replay), *map(str, files)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"replayed {len(files)} inputs" in result.stdout and "runtime error" not in result.stderr
