"""The packed format's constants in Python (limuse_export.native.format) equal the C engine's: the magic,
version, header and section table sizes and section tags the loader reads (limuse_native.h, model.c),
the value kinds, opcodes and limits (model.h). The C sources are parsed as text; nothing is compiled."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from limuse_export.native import format as fmt

NATIVE = Path(__file__).resolve().parents[3] / "runtime" / "native"


@pytest.fixture(scope="module")
def header() -> str:
    return (NATIVE / "limuse_native.h").read_text()


@pytest.fixture(scope="module")
def model_h() -> str:
    return (NATIVE / "model.h").read_text()


@pytest.fixture(scope="module")
def model_c() -> str:
    return (NATIVE / "model.c").read_text()


def define(text: str, name: str) -> int:
    found = re.findall(rf"^#define {name} (\d+)\s*$", text, re.M)
    assert len(found) == 1, f"#define {name}: {len(found)} definitions"
    return int(found[0])


def c_enum(text: str, first: str) -> dict[str, int]:
    """The enum whose first member is `first`, as {name: value} (C's numbering: one more than the last)."""
    body = re.search(rf"enum\s*\{{\s*({first}\b[^}}]*)\}}", text)
    assert body, f"no enum starting with {first}"
    values, next_value = {}, 0
    for member in (m.strip() for m in body.group(1).split(",")):
        if not member:
            continue
        name, _, value = (part.strip() for part in member.partition("="))
        next_value = int(value) if value else next_value
        values[name] = next_value
        next_value += 1
    return values


def test_the_version_is_the_engines(header):
    assert fmt.VERSION == define(header, "LMN_FORMAT_VERSION")


def test_the_magic_and_header_are_what_the_loader_reads(model_c):
    magic = re.findall(r'memcmp\(data, "([^"]+)", (\d+)\)', model_c)
    assert magic == [(fmt.MAGIC.decode(), str(len(fmt.MAGIC)))]
    assert f"if (size < {fmt.HEADER_BYTES} ||" in model_c
    assert f"{fmt.HEADER_BYTES} + {fmt.SECTION_ENTRY_BYTES} * (size_t)n_sections" in model_c
    # the header's fields after the magic: version, total size, CRC-32, section count (u32 each)
    offsets = [int(o) for o in re.findall(r"u32_at\(data \+ (\d+)\)", model_c)]
    assert offsets == [8, 12, 16, 20] and offsets[-1] + 4 == fmt.HEADER_BYTES
    assert "lmn_crc32(data + 20, size - 20)" in model_c  # the CRC covers everything after its own field


def test_the_section_tags_are_the_loaders(model_c):
    tags = re.findall(r'section\(data, size, n_sections, "(\w+)"', model_c)
    assert tags == [t.decode() for t in (fmt.CONF, fmt.VALS, fmt.PROG)]


def test_the_opcodes_are_the_engines(model_h):
    c_ops = c_enum(model_h, "OP_QUANT_FLOAT")
    c_ops.pop("OP_COUNT")
    py_ops = {name: getattr(fmt, name) for name in dir(fmt) if name.startswith("OP_")}
    assert py_ops == c_ops
    assert set(fmt.ID_FIELDS) == set(c_ops.values())


def test_the_value_kinds_and_limits_are_the_engines(model_h):
    assert c_enum(model_h, "KIND_INT") == {"KIND_INT": fmt.INT, "KIND_FLOAT": fmt.FLOAT}
    assert fmt.MAX_RANK == define(model_h, "MAX_RANK")
    assert fmt.TAC_MAX_CHANNELS == define(model_h, "LMN_TILE_CHANNELS")


def test_the_parser_reads_c_numbering():
    assert c_enum("enum { A = 3, B, C = 7, D };", "A") == {"A": 3, "B": 4, "C": 7, "D": 8}
