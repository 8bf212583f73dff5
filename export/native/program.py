"""The kernel program the packer builds: values (the arena's tensors), kernel records in execution order,
and the strided-view fields of copy kernels, shared by lowering, fusion and memory planning."""
from __future__ import annotations

from dataclasses import dataclass, field

from limuse_export.native.format import ID_FIELDS, MAX_RANK, PackError, varint


@dataclass
class Value:
    kind: int
    size: int
    exponent: int = 0
    bound: int = 0  # max |code| for integer values (static)
    first: int = -1
    last: int = -1
    offset: int = -1


@dataclass
class Record:
    opcode: int
    fields: list
    blobs: bytes
    inputs: list  # value ids read
    outputs: list  # value ids written
    stage: int

    @property
    def payload(self) -> bytes:
        return b"".join(varint(v) for v in self.fields) + self.blobs


@dataclass
class Program:
    values: list = field(default_factory=list)
    records: list = field(default_factory=list)  # Record, in execution order
    stages: list = field(default_factory=list)  # names of the model's top-level modules, in order of use
    stage: int = 0

    def new_value(self, kind: int, size: int, exponent: int = 0, bound: int = 0) -> int:
        self.values.append(Value(kind, int(size), int(exponent), int(bound)))
        return len(self.values) - 1

    def emit(self, opcode: int, fields: list, inputs: list, outputs: list, blobs: bytes = b"") -> None:
        self.records.append(Record(opcode, [int(v) for v in fields], blobs, list(inputs), list(outputs), self.stage))

    def enter_stage(self, name: str) -> None:
        if name not in self.stages:
            self.stages.append(name)
        self.stage = self.stages.index(name)


def contiguous_strides(shape) -> tuple:
    strides, step = [], 1
    for d in reversed(shape):
        strides.append(step)
        step *= int(d)
    return tuple(reversed(strides))


def broadcast(shape, out_shape) -> tuple:
    """Strides (elements) that read a contiguous `shape` broadcast to `out_shape`."""
    shape = (1,) * (len(out_shape) - len(shape)) + tuple(shape)
    return tuple(0 if d == 1 and o != 1 else s for d, o, s in zip(shape, out_shape, contiguous_strides(shape)))


def coalesce(dims, *strides_list) -> tuple:
    """Merges adjacent axes that every view steps through as one (stride_d == stride_{d+1} * dim_{d+1}) and
    drops axes of size 1: the same elements in the same order, in fewer, longer runs for the C loops."""
    dims = list(dims)
    strides_list = [list(s) for s in strides_list]
    keep = [d for d in range(len(dims)) if dims[d] != 1] or [len(dims) - 1] if dims else []
    dims = [dims[d] for d in keep]
    strides_list = [[s[d] for d in keep] for s in strides_list]
    d = len(dims) - 2
    while d >= 0:
        if all(s[d] == s[d + 1] * dims[d + 1] for s in strides_list):
            dims[d] *= dims[d + 1]
            for s in strides_list:
                s[d] = s[d + 1]
                del s[d + 1]
            del dims[d + 1]
        d -= 1
    return (tuple(dims), *(tuple(s) for s in strides_list))


def copy_fields(out_id, in_id, dims, dst_off, dst_strides, src_off, src_strides, dequant=None):
    dims, dst_strides, src_strides = coalesce(dims, dst_strides, src_strides) if len(dims) else (dims, dst_strides,
                                                                                                  src_strides)
    if len(dims) > MAX_RANK:
        raise PackError(f"a layout op of rank {len(dims)}; the native engine handles rank <= {MAX_RANK}")
    fields = [out_id, in_id, 0 if dequant is None else 1, dequant or 0, len(dims), *dims, dst_off, *dst_strides,
              src_off, *src_strides]
    return fields


def renumber(program: Program, keep: list) -> dict:
    """Drops the values no record uses (those fusion made internal), renumbering the rest in order; returns
    {old id: new id}."""
    used = set(keep)
    for r in program.records:
        used.update(r.inputs)
        used.update(r.outputs)
    new = {old: k for k, old in enumerate(sorted(used))}
    program.values = [program.values[old] for old in sorted(used)]
    for r in program.records:
        for at in ID_FIELDS[r.opcode]:
            r.fields[at] = new[r.fields[at]]
        r.inputs = [new[v] for v in r.inputs]
        r.outputs = [new[v] for v in r.outputs]
    return new
