"""Memory planning: static arena offsets for a program's values from their lifetimes, values whose
lifetimes do not overlap sharing memory, and an output written in place of its dying operand."""
from __future__ import annotations

from limuse_export.native.format import (ALIGN, OP_ADD_INT, OP_BINARY_FLOAT, OP_GCBLOCK, OP_INORM, OP_PRELU_QUANT,
                                         OP_PRELU_TABLE, OP_QUANT_FLOAT, OP_REQUANT, OP_TABLE, OP_TAC)
from limuse_export.native.program import Program, contiguous_strides


def allocate(program: Program, inputs: list, output: int) -> int:
    """Static arena offsets from value lifetimes; returns the arena size in elements. Values whose lifetimes
    do not overlap share memory; an output written in place of its dying operand shares its slot."""
    for vid in inputs:
        program.values[vid].first = -1
    for i, record in enumerate(program.records):
        used, written = record.inputs, record.outputs
        for vid in written:
            if program.values[vid].first == -1 and vid not in inputs:
                program.values[vid].first = i
            program.values[vid].last = max(program.values[vid].last, i)
        for vid in used:
            program.values[vid].last = max(program.values[vid].last, i)
    program.values[output].last = len(program.records)
    writers: dict = {}
    for i, record in enumerate(program.records):
        for vid in record.outputs:
            writers.setdefault(vid, []).append(i)
    # values that share a slot (an output written in place of its dying operand), as groups
    group = list(range(len(program.values)))

    def root(v):
        while group[v] != v:
            group[v] = group[group[v]]
            v = group[v]
        return v

    for vid in sorted(range(len(program.values)), key=lambda v: program.values[v].first):
        source = _in_place_source(program, vid, writers)
        if source is not None:
            group[vid] = root(source)
    members: dict = {}
    for vid in range(len(program.values)):
        members.setdefault(root(vid), []).append(vid)
    slots = []  # (size, first, last, members)
    for vids in members.values():
        vs = [program.values[v] for v in vids]
        size = -(-max(max(v.size for v in vs), 1) // ALIGN) * ALIGN
        slots.append((size, min(v.first for v in vs), max(v.last for v in vs), vids))
    # greedy by size: the largest slot first, each at the lowest offset free over its lifetime
    placed: list = []  # (offset, size, first, last)
    top = 0
    for size, first, last, vids in sorted(slots, key=lambda s: (-s[0], s[1])):
        busy = sorted((o, o + sz) for o, sz, f, l in placed if f <= last and first <= l)
        offset = 0
        for lo, hi in busy:
            if lo - offset >= size:
                break
            offset = max(offset, hi)
        placed.append((offset, size, first, last))
        for v in vids:
            program.values[v].offset = offset
        top = max(top, offset + size)
    return top


# Kernels whose element i of the output depends on element i of the operand alone (or, integer_norm, on
# its row, which it reads whole before writing): the output may take the operand's place when the
# operand dies there. Binary kernels qualify with an operand read contiguously; the fused TAC and GC-TCN
# kernels too (see _in_place_source).
_IN_PLACE = {OP_QUANT_FLOAT, OP_REQUANT, OP_PRELU_TABLE, OP_TABLE, OP_PRELU_QUANT, OP_INORM}


def _in_place_source(program: Program, vid: int, writers: dict) -> "int | None":
    v = program.values[vid]
    if len(writers.get(vid, [])) != 1 or v.first < 0:
        return None
    record = program.records[v.first]
    candidates = []
    if record.opcode in _IN_PLACE:
        candidates = [record.fields[1]]
    elif record.opcode in (OP_TAC, OP_GCBLOCK) and vid == record.fields[0]:
        # one outer block at a time: its input rows are read whole (into the kernel's scratch) before its
        # output rows are written, and with C_in == C_out those are the same elements
        candidates = [record.fields[1]]
    elif record.opcode in (OP_ADD_INT, OP_BINARY_FLOAT):
        f = record.fields
        rank_at = 6 if record.opcode == OP_ADD_INT else 8
        rank = f[rank_at]
        dims = f[rank_at + 1:rank_at + 1 + rank]
        sa, sb = f[rank_at + 1 + rank:rank_at + 1 + 2 * rank], f[rank_at + 1 + 2 * rank:rank_at + 1 + 3 * rank]
        contiguous = list(contiguous_strides(dims))
        a, b = (f[1], f[2]) if record.opcode == OP_ADD_INT else (f[1], f[4])
        candidates = [u for u, st in ((a, sa), (b, sb)) if st == contiguous]
    for u in candidates:
        src = program.values[u]
        if src.last == v.first and src.size == v.size and len(writers.get(u, [0])) <= 1:
            return u
    return None
