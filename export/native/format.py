"""The packed model file's byte layout (runtime/native/FORMAT.md): every constant the file and the C engine
share (magic, version, header and section table, value kinds, opcodes, limits), the encodings of its
numbers (zigzag varints, bit-packed integer arrays, float32 arrays) and the file around its sections
(header, section table, CRC-32). tests/export/native/test_pack_format.py keeps the constants equal to the
C engine's (runtime/native/limuse_native.h, model.h, model.c).
"""
from __future__ import annotations

import struct
import zlib

import numpy as np

from limuse_runtime.golden.fixed_point import GoldenError

MAGIC = b"LIMUSEPK"
VERSION = 3
RECIPE = "w3a8-po2-inorm"  # the recipe whose models the engine represents
INT, FLOAT = 0, 1  # value kinds: integer codes, float32
ALIGN = 16  # arena offsets in elements (64 bytes)
MAX_RANK = 8

# the header (magic, version, total size, CRC-32, section count) and each section table entry (tag, offset,
# length), in bytes; the sections every file has, in order
HEADER_BYTES = 24
SECTION_ENTRY_BYTES = 12
CONF, VALS, PROG = b"CONF", b"VALS", b"PROG"

# Kernel opcodes (runtime/native/FORMAT.md, "Kernels"); the C engine's enum has the same numbers.
OP_QUANT_FLOAT, OP_REQUANT, OP_LINEAR, OP_CONV, OP_INORM, OP_ADD_INT, OP_BINARY_FLOAT = 1, 2, 3, 4, 5, 6, 7
OP_PRELU_TABLE, OP_TABLE, OP_COPY, OP_ZERO, OP_REDUCE_MEAN, OP_RESIZE, OP_CONV_TRANSPOSE = 8, 9, 10, 11, 12, 13, 14
OP_TAC, OP_PRELU_QUANT, OP_GCBLOCK = 15, 16, 17  # fused kernels, made by fusion.fuse from the records above
# where each opcode's fields hold value ids (renumbering after fusion rewrites them)
ID_FIELDS = {OP_QUANT_FLOAT: (0, 1), OP_REQUANT: (0, 1), OP_LINEAR: (0, 1), OP_CONV: (0, 1), OP_INORM: (0, 1),
             OP_ADD_INT: (0, 1, 2), OP_BINARY_FLOAT: (0, 1, 4), OP_PRELU_TABLE: (0, 1), OP_TABLE: (0, 1),
             OP_COPY: (0, 1), OP_ZERO: (0,), OP_REDUCE_MEAN: (0, 1), OP_RESIZE: (0, 1), OP_CONV_TRANSPOSE: (0, 1),
             OP_TAC: (0, 1), OP_PRELU_QUANT: (0, 1), OP_GCBLOCK: (0, 1)}
TAC_MAX_CHANNELS = 512  # the fused kernels' stack tiles (model.h, LMN_TILE_CHANNELS)
BINARY_CODES = {"Add": 0, "Sub": 1, "Mul": 2, "Div": 3}
RESIZE_TRANSFORMS = {"half_pixel": 0, "pytorch_half_pixel": 0, "align_corners": 1, "asymmetric": 2}


class PackError(GoldenError):
    """A model the native engine cannot represent."""


def varint(value: int) -> bytes:
    """Zigzag LEB128: small numbers of either sign take one byte."""
    value = int(value)
    z = (value << 1) ^ (value >> 63) if value < 0 else value << 1
    out = bytearray()
    while True:
        byte = z & 0x7F
        z >>= 7
        if z:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def packed_ints(values: np.ndarray) -> bytes:
    """count, bit width b, then every value as b-bit two's complement, LSB first (FORMAT.md)."""
    values = np.asarray(values, np.int64).ravel()
    lo, hi = (int(values.min()), int(values.max())) if values.size else (0, 0)
    bits = 1
    while not (-(1 << (bits - 1)) <= lo and hi <= (1 << (bits - 1)) - 1):
        bits += 1
    if bits > 32:
        raise PackError(f"integer array outside int32 ([{lo}, {hi}])")
    u = (values & ((1 << bits) - 1)).astype(np.uint64)
    bitplanes = ((u[:, None] >> np.arange(bits, dtype=np.uint64)) & 1).astype(np.uint8).ravel()
    return varint(values.size) + varint(bits) + np.packbits(bitplanes, bitorder="little").tobytes()


def floats(values: np.ndarray) -> bytes:
    values = np.asarray(values, np.float32).ravel()
    return varint(values.size) + values.astype("<f4").tobytes()


def file_bytes(sections: list) -> bytes:
    """The file: header, section table, then the sections' bytes; sections are (tag, bytes) in order."""
    header_bytes = HEADER_BYTES + SECTION_ENTRY_BYTES * len(sections)
    table, blobs, offset = b"", b"", header_bytes
    for tag, data in sections:
        table += tag + struct.pack("<II", offset, len(data))
        blobs += data
        offset += len(data)
    total = header_bytes + len(blobs)
    rest = struct.pack("<I", len(sections)) + table + blobs
    head = MAGIC + struct.pack("<II", VERSION, total)
    # crc32 covers everything after its own field
    return head + struct.pack("<I", zlib.crc32(rest) & 0xFFFFFFFF) + rest
