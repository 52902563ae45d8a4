"""A few ONNX messages written as protobuf bytes: enough to hand ONNX Runtime a graph of
standard operators built from numpy weights, without the ``onnx`` package or torch.

Field numbers are those of onnx.proto (ModelProto, GraphProto, NodeProto, AttributeProto,
TensorProto, ValueInfoProto, TypeProto, TensorShapeProto, OperatorSetIdProto).
"""

from __future__ import annotations

import struct

import numpy as np

IR_VERSION = 8
OPSET = 17
# TensorProto.DataType
FLOAT, UINT8, INT64 = 1, 2, 7
_DTYPES = {np.dtype(np.float32): FLOAT, np.dtype(np.uint8): UINT8, np.dtype(np.int64): INT64}
# AttributeProto.AttributeType
_A_FLOAT, _A_INT, _A_STRING, _A_INTS = 1, 2, 3, 7


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int64s as two's complement, as protobuf writes them
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _int(field: int, n: int) -> bytes:
    return _varint(field << 3) + _varint(n)


def _bytes(field: int, data: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def _str(field: int, s: str) -> bytes:
    return _bytes(field, s.encode())


def tensor(name: str, a: np.ndarray) -> bytes:
    """A TensorProto holding ``a`` (float32, uint8 or int64) as little-endian raw data."""
    a = np.asarray(a)
    dt = _DTYPES[a.dtype]
    body = b"".join(_int(1, d) for d in a.shape) + _int(2, dt) + _str(8, name)
    return body + _bytes(9, np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<"), copy=False).tobytes())


def node(op: str, inputs: list[str], outputs: list[str], **attrs) -> bytes:
    """A NodeProto; attributes are ints, floats, strings or lists of ints."""
    body = b"".join(_str(1, i) for i in inputs) + b"".join(_str(2, o) for o in outputs) + _str(4, op)
    for k, v in attrs.items():
        if isinstance(v, (list, tuple)):
            a = _str(1, k) + b"".join(_int(8, int(x)) for x in v) + _int(20, _A_INTS)
        elif isinstance(v, str):
            a = _str(1, k) + _str(4, v) + _int(20, _A_STRING)
        elif isinstance(v, float):
            a = _str(1, k) + _varint(2 << 3 | 5) + struct.pack("<f", v) + _int(20, _A_FLOAT)
        else:
            a = _str(1, k) + _int(3, int(v)) + _int(20, _A_INT)
        body += _bytes(5, a)
    return body


def value_info(name: str, elem_type: int, shape: list) -> bytes:
    """A ValueInfoProto of a tensor; a str in ``shape`` is a named (free) dimension."""
    dims = b"".join(_bytes(1, _str(2, d) if isinstance(d, str) else _int(1, d)) for d in shape)
    tensor_type = _int(1, elem_type) + _bytes(2, dims)
    return _str(1, name) + _bytes(2, _bytes(1, tensor_type))


def model(nodes: list[bytes], initializers: list[bytes], inputs: list[bytes], outputs: list[bytes]) -> bytes:
    """A serialised ModelProto of one graph (default domain, opset ``OPSET``)."""
    graph = (
        b"".join(_bytes(1, n) for n in nodes)
        + _str(2, "maxswitch")
        + b"".join(_bytes(5, t) for t in initializers)
        + b"".join(_bytes(11, i) for i in inputs)
        + b"".join(_bytes(12, o) for o in outputs)
    )
    opset = _str(1, "") + _int(2, OPSET)
    return _int(1, IR_VERSION) + _str(2, "maxswitch") + _bytes(7, graph) + _bytes(8, opset)
