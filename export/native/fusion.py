"""Fusion: composes copies of copies and replaces the TAC blocks, PReLU + Quant pairs and GC-TCN
convolution blocks of a lowered program by fused kernels (the same integers; the values inside a pattern
leave the program)."""
from __future__ import annotations

import numpy as np

from limuse_export.native.format import (OP_CONV, OP_COPY, OP_GCBLOCK, OP_INORM, OP_LINEAR, OP_PRELU_QUANT,
                                         OP_PRELU_TABLE, OP_QUANT_FLOAT, OP_REDUCE_MEAN, OP_REQUANT, OP_TAC,
                                         TAC_MAX_CHANNELS)
from limuse_export.native.program import Program, Record, contiguous_strides, copy_fields


class _Flow:
    """Who writes and who reads each value, over a program's records."""

    def __init__(self, program: Program, keep: set):
        self.writers: dict = {}
        self.readers: dict = {}
        self.keep = keep  # graph inputs and output: never fused away
        for i, r in enumerate(program.records):
            for v in r.outputs:
                self.writers.setdefault(v, []).append(i)
            for v in r.inputs:
                self.readers.setdefault(v, []).append(i)

    def only_writer(self, program, vid, opcode):
        w = self.writers.get(vid, [])
        return program.records[w[0]] if len(w) == 1 and program.records[w[0]].opcode == opcode else None

    def read_only_by(self, vid, indices) -> bool:
        return vid not in self.keep and sorted(set(self.readers.get(vid, []))) == sorted(indices)


def _match_tac(program: Program, flow: _Flow, i3: int):
    """The TAC block (transform, average, concatenate) ending at LINEAR record i3, as the golden graph lowers it:

        a = L1(x) (rows, Ch); pa = PReLU(a); m = mean over the K groups of pa (outer, K, R Ch); mq = Quant(m);
        b = L2(mq) (outer R, Ch); pb = PReLU(b); e = pb expanded over K; cat = [pa, e] (rows, 2 Ch);
        out = L3(Quant(cat))

    Returns (records to drop, the fused record) or None. Every quantity is an integer code except pa, m, pb,
    e, cat: pa and pb are PReLU tables of 8-bit codes, so Quant(cat) is a code -> code table of a and b,
    and m is the same float32 sum in the same order from the same table; the K copies of e make the second
    half of L3's sum the same for the K rows of a frame (the kernel computes it once)."""
    rec = program.records
    l3 = rec[i3]
    if l3.opcode != OP_LINEAR:
        return None
    catq = l3.fields[1]
    q2 = flow.only_writer(program, catq, OP_QUANT_FLOAT)
    if q2 is None or not flow.read_only_by(catq, [i3]):
        return None
    cat = q2.fields[1]
    writers = flow.writers.get(cat, [])
    if len(writers) != 2 or any(rec[w].opcode != OP_COPY for w in writers):
        return None
    c2, c3 = rec[writers[0]], rec[writers[1]]
    pa, e = c2.fields[1], c3.fields[1]
    p1 = flow.only_writer(program, pa, OP_PRELU_TABLE)
    c1 = flow.only_writer(program, e, OP_COPY)
    if p1 is None or c1 is None:
        return None
    a = p1.fields[1]
    l1 = flow.only_writer(program, a, OP_LINEAR)
    pb = c1.fields[1]
    p2 = flow.only_writer(program, pb, OP_PRELU_TABLE)
    if l1 is None or p2 is None or not l1.fields[6] or not l3.fields[3] % 2 == 0:
        return None
    b = p2.fields[1]
    l2 = flow.only_writer(program, b, OP_LINEAR)
    if l2 is None or not l2.fields[6]:
        return None
    mq = l2.fields[1]
    q = flow.only_writer(program, mq, OP_QUANT_FLOAT)
    if q is None:
        return None
    mean = q.fields[1]
    r = flow.only_writer(program, mean, OP_REDUCE_MEAN)
    if r is None or r.fields[1] != pa or r.fields[2] != 0:
        return None
    rows, cin, ch = l1.fields[2:5]
    cout = l3.fields[4]
    outer, groups, inner = r.fields[4:7]
    if inner % ch or l3.fields[2] != rows or l3.fields[3] != 2 * ch or inner == 1:
        return None
    frames = inner // ch
    if outer * groups * frames != rows or l2.fields[2:5] != [outer * frames, ch, ch]:
        return None
    if max(cin, ch, cout) > TAC_MAX_CHANNELS:
        return None
    # the layouts: the concatenation puts pa first, e second, along the channels; e is pb repeated K times
    row = contiguous_strides((rows, 2 * ch))
    if c2.fields != copy_fields(cat, pa, (rows, ch), 0, row, 0, (ch, 1)) or \
            c3.fields != copy_fields(cat, e, (rows, ch), ch, row, 0, (ch, 1)) or \
            c1.fields != copy_fields(e, pb, (outer, groups, inner), 0, (groups * inner, inner, 1), 0, (inner, 0, 1)):
        return None
    index = {id(x): k for k, x in enumerate(rec)}
    i = {name: index[id(x)] for name, x in
         dict(l1=l1, p1=p1, r=r, q=q, l2=l2, p2=p2, c1=c1, c2=c2, c3=c3, q2=q2).items()}
    if not (flow.read_only_by(a, [i["p1"]]) and flow.read_only_by(pa, [i["r"], i["c2"]]) and
            flow.read_only_by(mean, [i["q"]]) and flow.read_only_by(mq, [i["l2"]]) and
            flow.read_only_by(b, [i["p2"]]) and flow.read_only_by(pb, [i["c1"]]) and
            flow.read_only_by(e, [i["c3"]]) and flow.read_only_by(cat, [i["q2"]])):
        return None
    x, out = l1.fields[1], l3.fields[0]
    fields = [out, x, outer, groups, frames, cin, ch, cout,
              l1.fields[5], *l1.fields[7:10],          # L1: has_bias, shift, lo, hi
              p1.fields[3], p1.fields[4],              # PReLU of a: exponent, signed
              q.fields[3], q.fields[4], q.fields[5],   # Quant of the mean: exponent, lo, hi
              l2.fields[5], *l2.fields[7:10],          # L2
              p2.fields[3], p2.fields[4],              # PReLU of b
              q2.fields[3], q2.fields[4], q2.fields[5],  # Quant of the concatenation
              l3.fields[5], *l3.fields[6:]]            # L3: has_bias, has_out[, shift, lo, hi]
    blobs = l1.blobs + p1.blobs + l2.blobs + p2.blobs + l3.blobs
    fused = Record(OP_TAC, fields, blobs, [x], [out], l3.stage)
    return set(i.values()), fused


def _match_prelu_quant(program: Program, flow: _Flow, iq: int):
    """Quant(PReLU(codes)) -> one code -> code table (the float PReLU output is read by nothing else)."""
    q = program.records[iq]
    if q.opcode != OP_QUANT_FLOAT:
        return None
    pf = q.fields[1]
    p = flow.only_writer(program, pf, OP_PRELU_TABLE)
    if p is None or not flow.read_only_by(pf, [iq]) or p.fields[2] != q.fields[2]:
        return None
    ip = flow.writers[pf][0]
    fused = Record(OP_PRELU_QUANT, [q.fields[0], p.fields[1], q.fields[2], p.fields[3], p.fields[4], *q.fields[3:6]],
                   p.blobs, [p.fields[1]], [q.fields[0]], q.stage)
    return {ip}, fused


def _match_gcblock(program: Program, flow: _Flow, ip: int):
    """The GC-TCN convolution block ending at LINEAR record ip (the projection), as the golden graph lowers it:

        h = PReLU+Quant(L_e(x)) (O T, Ch); g = Requant(Norm(h)) per block of T frames (channels last);
        the same transposed to (O, Ch, T), depthwise Conv over T, transposed back; PReLU+Quant; Norm;
        Requant; out = L_p(.)

    Every norm is over one block's T x Ch codes, so the kernel runs block by block with the block in the
    cache and without the transposes (the depthwise conv is computed channels-last: the same sums)."""
    rec = program.records
    lp = rec[ip]
    if lp.opcode != OP_LINEAR:
        return None
    chain, want = [], [OP_REQUANT, OP_INORM, OP_PRELU_QUANT, OP_COPY, OP_CONV, OP_REQUANT, OP_COPY, OP_INORM,
                       OP_PRELU_QUANT, OP_LINEAR]
    vid, reader = lp.fields[1], ip
    for opcode in want:
        r = flow.only_writer(program, vid, opcode)
        if r is None or not flow.read_only_by(vid, [reader]):
            return None
        reader = flow.writers[vid][0]
        chain.append(r)
        vid = r.fields[1]
    rq2, n2, pq2, c2, cv, rq1, c1, n1, pq1, le = chain
    rows, cin, ch = le.fields[2:5]
    outer = n1.fields[2]
    if not le.fields[6] or outer < 1 or rows % outer:
        return None
    frames = rows // outer
    n = rows * ch
    norm = [outer, frames * ch, ch, 1]
    if n1.fields[2:6] != norm or n2.fields[2:6] != norm or lp.fields[2:4] != [rows, ch] or \
            any(r.fields[2] != n for r in (pq1, pq2, rq1, rq2)):
        return None
    b, ci, t, co, k, stride, dil, padl, padr, groups, tout = cv.fields[2:13]
    if [b, ci, t, co, stride, groups, tout] != [outer, ch, frames, ch, 1, ch, frames] or not cv.fields[14]:
        return None
    if c1.fields != copy_fields(c1.fields[0], n1.fields[0], (outer, ch, frames), 0,
                                 contiguous_strides((outer, ch, frames)), 0, (frames * ch, 1, ch)) or \
            c2.fields != copy_fields(c2.fields[0], cv.fields[0], (outer, frames, ch), 0,
                                      contiguous_strides((outer, frames, ch)), 0, (frames * ch, 1, frames)):
        return None
    if max(cin, ch, lp.fields[4]) > TAC_MAX_CHANNELS:
        return None
    x, out = le.fields[1], lp.fields[0]
    fields = [out, x, outer, frames, cin, ch, lp.fields[4],
              le.fields[5], *le.fields[7:10],        # expand: has_bias, shift, lo, hi
              *pq1.fields[3:8],                      # PReLU + Quant: e, signed, e_q, lo, hi
              *n1.fields[6:8],                       # Norm: mean and norm fraction bits
              *rq1.fields[3:6],                      # Requant: shift, lo, hi
              k, dil, padl, padr, cv.fields[13], *cv.fields[15:18],  # depthwise conv
              *pq2.fields[3:8], *n2.fields[6:8], *rq2.fields[3:6],
              lp.fields[5], *lp.fields[6:]]          # projection: has_bias, has_out[, shift, lo, hi]
    blobs = le.blobs + pq1.blobs + n1.blobs + cv.blobs + pq2.blobs + n2.blobs + lp.blobs
    index = {id(r): i for i, r in enumerate(rec)}
    return {index[id(r)] for r in chain}, Record(OP_GCBLOCK, fields, blobs, [x], [out], lp.stage)


def _copy_view(fields):
    """(dims, dst offset, dst strides, src offset, src strides, deq, e) of a COPY record's fields."""
    rank = fields[4]
    dims = fields[5:5 + rank]
    dst_off, dst = fields[5 + rank], fields[6 + rank:6 + 2 * rank]
    src_off, src = fields[6 + 2 * rank], fields[7 + 2 * rank:7 + 3 * rank]
    return dims, dst_off, dst, src_off, src, fields[2], fields[3]


def _affine(index: np.ndarray):
    """(offset, strides) if the index array is offset + sum i_d stride_d, else None."""
    offset = int(index.flat[0])
    strides = [int(index[(0,) * d + (1,) + (0,) * (index.ndim - d - 1)] - offset) if index.shape[d] > 1 else 0
               for d in range(index.ndim)]
    rebuilt = np.full(index.shape, offset, np.int64)
    for d, st in enumerate(strides):
        rebuilt += (np.arange(index.shape[d], dtype=np.int64) * st).reshape((-1,) + (1,) * (index.ndim - d - 1))
    return (offset, strides) if np.array_equal(rebuilt, index) else None


def _affine_on_probes(dims2, off2, strides2, dims1, off1, strides1) -> bool:
    """A necessary condition for _affine of the composed index, on a few points (each axis's first and last
    step, the far corner): most candidates fail it, without building the whole index."""
    def source(points):
        flat = off2 + points @ np.asarray(strides2, np.int64)
        return off1 + np.stack(np.unravel_index(flat, tuple(dims1)), axis=-1) @ np.asarray(strides1, np.int64)
    dims = np.asarray(dims2, np.int64)
    rank = len(dims)
    points = np.vstack([np.eye(rank, dtype=np.int64) * (dims > 1), np.diag(dims - 1), (dims - 1)[None]])
    origin = source(np.zeros((1, rank), np.int64))[0]
    steps = source(points[:rank]) - origin
    return bool(np.array_equal(source(points), origin + points @ steps))


def _match_copy_chain(program: Program, flow: _Flow, i2: int):
    """COPY of a value that one plain COPY wrote whole (a layout op of a layout op: slices of a pad,
    transposes of a concatenation): one COPY from the first one's source, when the composed index is still
    a strided view. The middle value goes once no other kernel reads it."""
    rec = program.records
    c2 = rec[i2]
    if c2.opcode != OP_COPY:
        return None
    mid = c2.fields[1]
    c1 = flow.only_writer(program, mid, OP_COPY)
    if c1 is None or mid in flow.keep:
        return None
    dims1, dst_off1, dst1, src_off1, src1, deq1, _ = _copy_view(c1.fields)
    if deq1 or dst_off1 != 0 or list(dst1) != list(contiguous_strides(dims1)) or \
            int(np.prod(dims1)) != program.values[mid].size:
        return None
    dims2, dst_off2, dst2, src_off2, src2, deq2, e2 = _copy_view(c2.fields)
    if not dims2 or int(np.prod(dims2)) > 1 << 24:
        return None
    if not _affine_on_probes(dims2, src_off2, src2, dims1, src_off1, src1):
        return None
    flat = np.full(tuple(dims2), src_off2, np.int64)
    for d, st in enumerate(src2):
        flat += (np.arange(dims2[d], dtype=np.int64) * st).reshape((-1,) + (1,) * (len(dims2) - d - 1))
    source = np.full(flat.shape, src_off1, np.int64)
    for axis, st in zip(np.unravel_index(flat, tuple(dims1)), src1):
        source += axis * st
    view = _affine(source)
    if view is None:
        return None
    fields = copy_fields(c2.fields[0], c1.fields[1], tuple(dims2), dst_off2, tuple(dst2), view[0], tuple(view[1]),
                          e2 if deq2 else None)
    composed = Record(OP_COPY, fields, b"", [c1.fields[1]], list(c2.outputs), c2.stage)
    return set(), composed


def fuse(program: Program, keep: set) -> dict:
    """Rewrites the records into fused kernels where a pattern matches (TAC blocks, PReLU + Quant, then GC-TCN
    convolution blocks, which contain two of the latter);
    returns how many of each. The fused kernel takes the place of the pattern's last record; the values only
    the pattern used disappear from the program (renumber() drops them)."""
    counts = {}
    composed = 0
    flow = _Flow(program, keep)
    for i in range(len(program.records)):
        # One pass suffices: the program is in topological order, so composing record i changes what later
        # records see, never earlier ones; a composed copy may compose again with its new source's writer.
        while (found := _match_copy_chain(program, flow, i)) is not None:
            program.records[i] = found[1]
            flow = _Flow(program, keep)
            composed += 1
    flow = _Flow(program, keep)  # drop first copies whose value nothing reads any more
    program.records = [r for r in program.records
                       if not (r.opcode == OP_COPY and r.outputs[0] not in keep and not flow.readers.get(r.outputs[0]))]
    counts["copy_chains"] = composed
    for name, match in (("tac", _match_tac), ("prelu_quant", _match_prelu_quant), ("gcblock", _match_gcblock)):
        flow = _Flow(program, keep)
        drop, replace = set(), {}
        for i in range(len(program.records)):
            if i in drop:
                continue
            found = match(program, flow, i)
            if found is None or found[0] & (drop | set(replace)):
                continue
            drop |= found[0]
            replace[i] = found[1]
        program.records = [replace.get(i, r) for i, r in enumerate(program.records) if i not in drop]
        counts[name] = len(replace)
    return counts
